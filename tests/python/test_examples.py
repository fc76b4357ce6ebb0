"""The Python examples and the demo, run as the user runs them: separate processes at the
same time.

* ``py_producer_to_gst.py`` (a plain ShmProducer, profile 0) feeding
  ``shmringsrc caps=... ! checksumsink``: every frame arrives, byte for byte.
* ``consumer_demo.py`` (FrameReader) fed by a Python FrameWriter and by
  ``gst-launch-1.0 videotestsrc ! shmringsink``: frame counts, and a valid PNG whose
  chunks and CRCs check out and whose pixels are the frame that was sent.
* ``scripts/demo.sh`` end to end (short), against the meson build directory.

GStreamer-dependent tests skip (with the reason) when the plugin is not built.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from conftest import _SOURCE_ROOT, unique_name

import shmring

EXAMPLES = os.path.join(_SOURCE_ROOT, "python", "examples")
PRODUCER = os.path.join(EXAMPLES, "py_producer_to_gst.py")
CONSUMER = os.path.join(EXAMPLES, "consumer_demo.py")
DEMO = os.path.join(_SOURCE_ROOT, "scripts", "demo.sh")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(_SOURCE_ROOT, "python") + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    plugin_dir = _plugin_dir()
    if plugin_dir:
        env["GST_PLUGIN_PATH"] = plugin_dir
    return env


def _plugin_dir() -> Optional[str]:
    """Where libgstshmring.so is: GST_PLUGIN_PATH (set by meson), else build/gst-plugin."""
    candidates = [p for p in os.environ.get("GST_PLUGIN_PATH", "").split(os.pathsep) if p]
    if "GST_PLUGIN_PATH" not in os.environ:
        candidates.append(os.path.join(_SOURCE_ROOT, "build", "gst-plugin"))
    for d in candidates:
        if os.path.exists(os.path.join(d, "libgstshmring.so")):
            return d
    return None


def need_gst(*elements: str) -> str:
    """The plugin directory, or skip: plugin not built / gst-launch or an element missing."""
    plugin_dir = _plugin_dir()
    if plugin_dir is None:
        pytest.skip("the shmring GStreamer plugin is not built (no libgstshmring.so in "
                    "GST_PLUGIN_PATH)")
    if shutil.which("gst-launch-1.0") is None or shutil.which("gst-inspect-1.0") is None:
        pytest.skip("gst-launch-1.0 / gst-inspect-1.0 not installed (gstreamer1.0-tools)")
    for element in ("shmringsink", "shmringsrc") + elements:
        probe = subprocess.run(["gst-inspect-1.0", element], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode != 0:
            pytest.skip(f"GStreamer element {element} is not available")
    return plugin_dir


@pytest.fixture
def ring() -> str:
    name = unique_name("ex")
    yield name
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


def _finish(proc: subprocess.Popen, timeout: float = 60.0) -> Tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish in {timeout} s\n{out}\n{err}")
    return proc.returncode, out, err


# --------------------------------------------------------------------------- PNG

def read_png(path: str) -> np.ndarray:
    """Parses a PNG written by consumer_demo: chunk lengths, CRCs, IHDR, IDAT, IEND."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert len(body) == length, f"truncated {kind!r} chunk"
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, comp, filt, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3}[color]
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all(), "consumer_demo writes filter type 0 only"
    pixels = rows[:, 1:].reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


# --------------------------------------------------------------------------- producer -> gst

@pytest.mark.parametrize("fmt, width, height", [("BGR", 322, 240), ("GRAY8", 161, 97),
                                                ("BGRx", 160, 120)])
def test_py_producer_feeds_shmringsrc(ring, fmt, width, height):
    need_gst("checksumsink")
    frames = 40
    producer = subprocess.Popen(
        [sys.executable, PRODUCER, "--name", ring, "--frames", str(frames), "--format", fmt,
         "--width", str(width), "--height", str(height), "--fps", "0", "--print-checksums",
         "--wait-consumer", "30"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caps = f"video/x-raw,format={fmt},width={width},height={height},framerate=30/1"
    receiver_env = dict(_env(), GST_DEBUG="shmringsrc:4")  # its story, should this fail
    receiver = subprocess.Popen(
        ["gst-launch-1.0", "-q", "shmringsrc", f"shm-name={ring}", f"caps={caps}",
         "timeout=20000000000", "!", "checksumsink", "hash=sha1"],
        env=receiver_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prc, pout, perr = _finish(producer)
    grc, gout, gerr = _finish(receiver)
    assert prc == 0, perr + "\n--- receiver (rc %s):\n" % grc + gout + gerr
    assert grc == 0, gout + gerr
    sent = [line.split()[1] for line in pout.splitlines() if line.startswith("sha1 ")]
    got = [line.split()[-1] for line in gout.splitlines() if line.strip()]
    assert len(sent) == frames
    assert got == sent
    assert "receive with:" in perr and f'caps="video/x-raw,format={fmt}' in perr
    assert not os.path.exists("/dev/shm/" + ring)  # the producer unlinked its ring


def test_py_producer_pattern_matches_its_checksums():
    sys.path.insert(0, EXAMPLES)
    try:
        import py_producer_to_gst as ex
    finally:
        sys.path.remove(EXAMPLES)
    maker = ex.PatternMaker("BGR", 322, 3)
    frame = maker.frame(5)
    assert len(frame) == ex.frame_size("BGR", 322, 3) == 968 * 3  # rows padded to 4
    assert frame[966:968] == b"\0\0" and frame != maker.frame(6)


# --------------------------------------------------------------------------- consumer_demo

def _pattern(fmt: str, width: int, height: int, k: int) -> np.ndarray:
    """A frame in the layout GStreamer expects (rows of 1/3-byte formats padded to 4)."""
    bpp = {"BGR": 3, "RGB": 3, "BGRx": 4, "GRAY8": 1}[fmt]
    stride = width * bpp if bpp == 4 else (width * bpp + 3) & ~3
    y, x = np.mgrid[0:height, 0:width]
    out = np.zeros((height, stride), dtype=np.uint8)
    px = out[:, : width * bpp].reshape(height, width, bpp)
    for c in range(bpp):
        px[:, :, c] = (x * (c + 1) + y * 3 + k * 7 + c * 50) & 0xFF
    return out


def _expected_rgb(frame: np.ndarray, fmt: str, width: int, height: int) -> np.ndarray:
    bpp = {"BGR": 3, "RGB": 3, "BGRx": 4, "GRAY8": 1}[fmt]
    px = frame[:, : width * bpp].reshape(height, width, bpp)
    if fmt == "GRAY8":
        return px[:, :, 0]
    if fmt == "RGB":
        return px
    return px[:, :, [2, 1, 0]]


def _write_frames(name: str, fmt: str, width: int, height: int, count: int,
                  started: threading.Event, errors: List[BaseException]) -> None:
    caps = (f"video/x-raw, format=(string){fmt}, width=(int){width}, height=(int){height}, "
            "framerate=(fraction)30/1")
    try:
        with shmring.FrameWriter(name, 8 * (width * height * 4 + 128), caps=caps) as writer:
            started.set()
            deadline = time.monotonic() + 30
            while not writer.producer.consumer_attached():
                assert time.monotonic() < deadline, "consumer_demo never attached"
                time.sleep(0.005)
            for k in range(count):
                assert writer.write(_pattern(fmt, width, height, k), pts=k * 33_333_333,
                                    duration=33_333_333, timeout=20)
    except BaseException as exc:  # reported by the test
        errors.append(exc)
        started.set()


@pytest.mark.parametrize("fmt, width, height", [("BGR", 66, 50), ("RGB", 64, 48),
                                                ("BGRx", 33, 17), ("GRAY8", 37, 21)])
def test_consumer_demo_from_python_writer(ring, tmp_path, fmt, width, height):
    frames, snap_at = 25, 7
    png = str(tmp_path / "snap.png")
    consumer = subprocess.Popen(
        [sys.executable, CONSUMER, "--name", ring, "--snapshot", png, "--snapshot-frame",
         str(snap_at), "--timeout", "20"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started, errors = threading.Event(), []
    writer = threading.Thread(target=_write_frames,
                              args=(ring, fmt, width, height, frames, started, errors))
    writer.start()
    rc, out, err = _finish(consumer)
    writer.join(30)
    assert not errors, errors
    assert rc == 0, out + err
    assert f"{frames} frames (end of stream)" in out
    assert "latency   avg" in out  # FrameWriter stamps send_time_ns
    assert f"snapshot  {png} (frame {snap_at}, {width}x{height} {fmt}" in out
    image = read_png(png)
    expected = _expected_rgb(_pattern(fmt, width, height, snap_at), fmt, width, height)
    assert image.shape == expected.shape
    assert np.array_equal(image, expected)


def test_consumer_demo_stops_after_frames(ring, tmp_path):
    consumer = subprocess.Popen(
        [sys.executable, CONSUMER, "--name", ring, "--frames", "10", "--timeout", "20",
         "--quiet"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started, errors = threading.Event(), []
    # The writer sends more than the consumer takes: it must not block forever once the
    # consumer left (its FrameWriter.write times out and the thread reports it).
    writer = threading.Thread(target=_write_frames,
                              args=(ring, "GRAY8", 16, 16, 10, started, errors))
    writer.start()
    rc, out, err = _finish(consumer)
    writer.join(30)
    assert not errors, errors
    assert rc == 0, out + err
    assert "10 frames (10 frames)" in out


def test_consumer_demo_without_producer_fails_clearly(ring):
    proc = subprocess.run([sys.executable, CONSUMER, "--name", ring, "--timeout", "0.3"],
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert "cannot open ring" in proc.stderr and "Traceback" not in proc.stderr


def test_consumer_demo_from_gst_launch(ring, tmp_path):
    need_gst("videotestsrc")
    frames = 30
    png = str(tmp_path / "gst.png")
    consumer = subprocess.Popen(
        [sys.executable, CONSUMER, "--name", ring, "--frames", str(frames), "--snapshot", png,
         "--timeout", "20"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = subprocess.Popen(
        # Not live: a live sender writes nothing before the receiver attaches (no
        # backlog), and this test counts every frame of the stream.
        ["gst-launch-1.0", "-q", "-e", "videotestsrc", "pattern=ball", "is-live=false",
         f"num-buffers={frames}", "!",
         "video/x-raw,format=BGR,width=320,height=240,framerate=30/1", "!",
         "shmringsink", f"shm-name={ring}"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rc, out, err = _finish(consumer)
    grc, gout, gerr = _finish(sender)
    assert grc == 0, gout + gerr
    assert rc == 0, out + err
    assert f"{frames} frames ({frames} frames)" in out
    assert "format=(string)BGR, width=(int)320, height=(int)240" in out
    image = read_png(png)
    assert image.shape == (240, 320, 3)
    assert image.max() == 255 and image.min() == 0  # a white ball on black
    assert not os.path.exists("/dev/shm/" + ring)


def test_demo_sh_end_to_end(tmp_path):
    plugin_dir = need_gst("videotestsrc")
    build_root = os.environ.get("SHMRING_BUILD_ROOT") or os.path.dirname(plugin_dir)
    if not os.path.exists(os.path.join(build_root, "build.ninja")):
        pytest.skip(f"no meson build directory at {build_root}")
    png = str(tmp_path / "demo.png")
    name = unique_name("demo")
    env = _env()
    env["SHMRING_BUILD_DIR"] = build_root
    proc = subprocess.run(
        ["bash", DEMO, "--no-build", "--frames", "20", "--width", "320", "--height", "180",
         "--snapshot", png, "--name", name],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo: OK: 20 frames" in proc.stdout
    assert read_png(png).shape == (180, 320, 3)
    assert not os.path.exists("/dev/shm/" + name)
