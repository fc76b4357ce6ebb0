"""Every snippet in README.md and python/README.md runs as pasted.

Snippets are the code blocks preceded by ``<!-- snippet: NAME -->``. Each test takes
its snippet's text from README.md and runs it; the only changes are a unique ring name
in place of the README's (``cam0``, ``demo0``, ``demo1``: tests may run in parallel)
and, for the receiver, ``fakesink`` in place of ``autovideosink`` (no display here).
"""
from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time

import pytest

SOURCE = os.environ["SHMRING_SOURCE_ROOT"]
BUILD = os.environ["SHMRING_BUILD_ROOT"]
PLUGIN_DIR = os.path.join(BUILD, "gst-plugin")
HAVE_GST = os.path.exists(os.path.join(PLUGIN_DIR, "libgstshmring.so"))
GUARD = 60  # seconds: hang guard only


def snippets(path: str) -> dict:
    text = open(os.path.join(SOURCE, path), encoding="utf-8").read()
    found = re.findall(r"<!-- snippet: (\S+) -->\n```\w*\n(.*?)```", text, re.S)
    return {name: body for name, body in found}


SNIPPETS = snippets("README.md")
PY_SNIPPETS = snippets(os.path.join("python", "README.md"))


def unique(prefix: str) -> str:
    return "%s-%d-%d" % (prefix, os.getpid(), time.monotonic_ns() % 1000000)


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.path.join(SOURCE, "python")
    e["GST_PLUGIN_PATH"] = PLUGIN_DIR
    return e


def head_of(name: str) -> int:
    """The ring's head word (a test-only look; no concurrency claim)."""
    try:
        with open("/dev/shm/" + name, "rb") as f:
            f.seek(128)  # layout v2: head at offset 128 (python/shmring/layout.py HEAD_OFFSET)
            return struct.unpack("<I", f.read(4))[0]
    except (OSError, struct.error):
        return 0


def send_frames(name: str, count: int, caps: str,
                capacity: int = 0) -> subprocess.CompletedProcess:
    """A gst-launch sender of `count` videotestsrc frames (30/1) into ring `name`.
    A `capacity` smaller than the stream makes the sender wait for its first receiver
    (the sink blocks on a full ring until one attaches), whichever starts first."""
    sink = ["shmringsink", "shm-name=" + name] + (["capacity=%d" % capacity] if capacity else [])
    return subprocess.run(
        ["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=%d" % count, "!",
         "video/x-raw,%s,framerate=30/1" % caps, "!"] + sink,
        env=env(), capture_output=True, text=True, timeout=GUARD)


def test_every_snippet_has_a_test():
    assert set(SNIPPETS) == {"gst-env", "gst-sender", "gst-receiver", "py-roundtrip",
                             "py-frames", "py-frame-writer-asyncio", "cli", "cpp",
                             "fanout-sender", "fanout-recorder", "fanout-preview",
                             "fanout-python"}
    assert set(PY_SNIPPETS) == {"producer", "consumer", "frames", "frame-writer", "asyncio",
                                "original"}


def run_pair(first: str, second: str, name: str) -> tuple:
    """Starts two Python snippets as processes (first, then second), both running."""
    procs = [subprocess.Popen(["/usr/bin/python3", "-c", code.replace("cam0", name)],
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for code in (first, second)]
    outs = [p.communicate(timeout=GUARD) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


@pytest.mark.parametrize("consumer_first", [True, False])
def test_python_readme_producer_and_consumer(consumer_first):
    name = unique("rdpair")
    producer, consumer = PY_SNIPPETS["producer"], PY_SNIPPETS["consumer"]
    if consumer_first:
        (crc, cout, cerr), (prc, _, perr) = run_pair(consumer, producer, name)
    else:
        (prc, _, perr), (crc, cout, cerr) = run_pair(producer, consumer, name)
    assert prc == 0, perr
    assert crc == 0, cerr
    assert cout.splitlines() == ["4", "1024"]  # "hello" read, "more" viewed, 1024 iterated
    assert not os.path.exists("/dev/shm/" + name)


def test_python_readme_original_api():
    proc = subprocess.run(["/usr/bin/python3", "-c", PY_SNIPPETS["original"]], env=env(),
                          capture_output=True, text=True, timeout=GUARD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "16", "b'hello'"]


def run_snippet(code: str, old: str, prefix: str) -> str:
    name = unique(prefix)
    r = subprocess.run(["/usr/bin/python3", "-c", code.replace(old, name)], env=env(),
                       capture_output=True, text=True, timeout=GUARD)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists("/dev/shm/" + name)
    return r.stdout


def test_python_readme_frame_writer():
    out = run_snippet(PY_SNIPPETS["frame-writer"], "cam0", "rdfw")
    assert out.splitlines() == ["0 (480, 640, 3) 0", "33333333 (480, 640, 3) 1",
                                "66666666 (480, 640, 3) 2"]


def test_python_readme_asyncio():
    out = run_snippet(PY_SNIPPETS["asyncio"], "cam0", "rdaio")
    assert out.splitlines() == ["(48, 64)", "no frame within 0.5 s"]


def test_readme_frame_writer_and_asyncio():
    out = run_snippet(SNIPPETS["py-frame-writer-asyncio"], "demo2", "rdfwa")
    assert out.splitlines() == ["0 (480, 640, 3)"]


@pytest.mark.skipif(not HAVE_GST, reason="GStreamer plugin not built")
def test_python_readme_frames():
    name = unique("rdpyfr")
    reader = subprocess.Popen(["/usr/bin/python3", "-c",
                               PY_SNIPPETS["frames"].replace("cam0", name)],
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    # 8 KiB holds two 64x48 GRAY8 frames: the sender cannot finish (and remove its
    # ring) before the reader, however late it starts, has attached.
    sender = send_frames(name, 10, "format=GRAY8,width=64,height=48", capacity=8192)
    out, err = reader.communicate(timeout=GUARD)
    assert sender.returncode == 0, sender.stdout + sender.stderr
    assert reader.returncode == 0, err
    lines = out.splitlines()
    assert 1 <= len(lines) <= 10, out  # latest=True may skip frames
    assert all("format=(string)GRAY8" in line for line in lines), out


@pytest.mark.skipif(not HAVE_GST, reason="GStreamer plugin not built")
def test_gst_env_finds_the_plugin(tmp_path):
    # The snippet is written for the source root with the default build dir "build".
    os.symlink(BUILD, tmp_path / "build")
    script = SNIPPETS["gst-env"] + "gst-inspect-1.0 shmringsink >/dev/null\n"
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=dict(os.environ),
                       capture_output=True, text=True, timeout=GUARD)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not HAVE_GST, reason="GStreamer plugin not built")
def test_gst_sender_and_receiver():
    name = unique("rdcam")
    receiver_cmd = SNIPPETS["gst-receiver"].replace("cam0", name).replace(
        "autovideosink", "fakesink")
    sender_cmd = SNIPPETS["gst-sender"].replace("cam0", name)
    receiver = subprocess.Popen(["bash", "-c", "exec " + receiver_cmd], env=env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sender = subprocess.Popen(["bash", "-c", "exec " + sender_cmd], env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Let frames flow: wait until several 1280x720 BGR frames went through the ring.
        deadline = time.monotonic() + GUARD
        while head_of(name) < 5 * 1280 * 720 * 3 and time.monotonic() < deadline:
            assert sender.poll() is None, sender.communicate()[0]
            time.sleep(0.05)
        assert head_of(name) >= 5 * 1280 * 720 * 3, "no frames flowed"
        sender.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        sender_out = sender.communicate(timeout=GUARD)[0]
        receiver_out = receiver.communicate(timeout=GUARD)[0]
    finally:
        for p in (sender, receiver):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert receiver.returncode == 0, receiver_out
    assert "EOS" in receiver_out, receiver_out
    assert "ERROR" not in receiver_out, receiver_out
    assert sender.returncode == 0, sender_out
    assert not os.path.exists("/dev/shm/" + name)


@pytest.mark.skipif(not HAVE_GST, reason="GStreamer plugin not built")
def test_fanout_three_receivers(tmp_path):
    """The three-receiver example as pasted: recorder, preview and Python reader attach
    first (a live sender keeps no backlog), then the sender; Ctrl-C ends the stream and every
    receiver ends with EOS, the recording is not empty and the Python reader saw frames."""
    name = unique("rdfan")

    def start(cmd: str, python: bool = False) -> subprocess.Popen:
        argv = ["/usr/bin/python3", "-c", cmd] if python else ["bash", "-c", "exec " + cmd]
        return subprocess.Popen(argv, env=env(), cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    receivers = [start(SNIPPETS["fanout-recorder"].replace("cam0", name)),
                 start(SNIPPETS["fanout-preview"].replace("cam0", name).replace(
                     "autovideosink", "fakesink")),
                 start(SNIPPETS["fanout-python"].replace("cam0", name), python=True)]
    sender = None
    try:
        sender = start(SNIPPETS["fanout-sender"].replace("cam0", name))
        deadline = time.monotonic() + GUARD
        while head_of(name) < 30 * 640 * 360 * 3 and time.monotonic() < deadline:
            assert sender.poll() is None, sender.communicate()[0]
            time.sleep(0.05)
        assert head_of(name) >= 30 * 640 * 360 * 3, "no frames flowed"
        sender.send_signal(signal.SIGINT)
        sender_out = sender.communicate(timeout=GUARD)[0]
        outs = [p.communicate(timeout=GUARD)[0] for p in receivers]
    finally:
        for p in receivers + ([sender] if sender else []):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert sender.returncode == 0, sender_out
    for p, out in zip(receivers, outs):
        assert p.returncode == 0, out
    assert os.path.getsize(tmp_path / "recording.avi") > 0
    assert any(line.startswith("slot ") for line in outs[2].splitlines()), outs[2]


def test_py_roundtrip():
    code = SNIPPETS["py-roundtrip"].replace("demo0", unique("rdpy"))
    r = subprocess.run(["/usr/bin/python3", "-c", code], env=env(), capture_output=True,
                       text=True, timeout=GUARD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "b'hello'\n"


@pytest.mark.skipif(not HAVE_GST, reason="GStreamer plugin not built")
def test_py_frames_from_a_gst_sender():
    name = unique("rdfr")
    code = SNIPPETS["py-frames"].replace("cam0", name)
    reader = subprocess.Popen(["/usr/bin/python3", "-c", code], env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = send_frames(name, 30, "format=BGR,width=1280,height=720")
    out, err = reader.communicate(timeout=GUARD)
    assert sender.returncode == 0, sender.stdout + sender.stderr
    assert reader.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 30, out
    assert all(line.endswith("(720, 1280, 3)") for line in lines), out
    assert lines[0].split()[0] == "0"  # the sender's first PTS came through


def test_cli_ls():
    cmd = SNIPPETS["cli"].strip()
    r = subprocess.run(["bash", "-c", cmd], cwd=SOURCE, env=dict(os.environ),
                       capture_output=True, text=True, timeout=GUARD)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_cpp_snippet_compiles_and_runs(tmp_path):
    src = tmp_path / "demo.cpp"
    src.write_text(SNIPPETS["cpp"].replace("demo1", unique("rdcpp")))
    exe = tmp_path / "demo"
    cxx = os.environ.get("CXX", "c++")
    build = subprocess.run(
        [cxx, "-std=c++17", "-Wall", "-Werror", "-I", os.path.join(SOURCE, "core", "include"),
         str(src), os.path.join(BUILD, "core", "libshmring.a"), "-lpthread", "-o", str(exe)],
        capture_output=True, text=True, timeout=GUARD * 2)
    assert build.returncode == 0, build.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=GUARD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "frame\n"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

