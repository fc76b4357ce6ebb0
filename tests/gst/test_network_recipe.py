"""The README's network recipe, run whole on 127.0.0.1: machine A's live camera
writes ring A; a relay reads it (shmringsrc is-live=true), serializes buffers with
their caps and timestamps (gdppay) and serves them over SRT; machine B's bridge
(srtsrc ! gdpdepay) writes ring B, which a local receiver reads with a clock-synced
sink. Every process is a real process running at the same time. Checked, without
timed assertions: the receiver's frames are the camera's frames (SHA-1, in order),
its caps are the camera's, and its timestamps and running times advance exactly as
the camera's did (no rebase or freeze on the way).
Needs GST_PLUGIN_PATH to point at the built plugin (meson test sets it)."""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

HERE = pathlib.Path(__file__).parent
GST_LAUNCH = shutil.which("gst-launch-1.0")
PY = sys.executable
LINE = re.compile(r"^(\d+):(\d\d):(\d\d)\.(\d{9}) ([0-9a-f]{40})$")
FRAME = Gst.SECOND // 30 if Gst.init_check(None) else 0
COUNT = 60

pytestmark = pytest.mark.skipif(GST_LAUNCH is None, reason="gst-launch-1.0 not installed")


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(desc):
    return subprocess.Popen([GST_LAUNCH] + desc.split(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            return p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    return p.communicate()


def checksums(text):
    out = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            h, mi, s, ns, digest = m.groups()
            out.append(((int(h) * 3600 + int(mi) * 60 + int(s)) * 10**9 + int(ns), digest))
    return out


def test_srt_relay_between_two_machines_on_loopback():
    missing = [f for f in ("srtsink", "srtsrc", "gdppay", "gdpdepay", "checksumsink")
               if Gst.ElementFactory.find(f) is None]
    if missing:
        pytest.skip("not installed: " + ", ".join(missing))
    tag = f"{os.getpid()}-{time.monotonic_ns() % 10**9}"
    ring_a, ring_b = f"s-netA-{tag}", f"s-netB-{tag}"
    port = free_udp_port()
    procs = []
    try:
        # Machine B: a local receiver waiting for ring B, and the bridge from SRT
        # (1 s of SRT latency: room to retransmit on a loaded machine; a packet
        # SRT gives up on would corrupt the GDP stream).
        probe = subprocess.Popen([PY, str(HERE / "frames_probe.py"), "--count", str(COUNT),
                                  ring_b], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        procs.append(probe)
        bridge = launch(f"srtsrc uri=srt://127.0.0.1:{port} latency=1000 ! gdpdepay ! "
                        f"shmringsink shm-name={ring_b}")
        procs.append(bridge)
        # Machine A: the relay (waits for ring A) and the live camera, whose own
        # checksums (a tee in front of its shmringsink) are the reference.
        relay = launch(f"shmringsrc shm-name={ring_a} is-live=true ! gdppay ! "
                       f"srtsink uri=srt://:{port} mode=listener latency=1000")
        procs.append(relay)
        camera = launch("videotestsrc is-live=true pattern=snow ! "
                        "video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! "
                        f"tee name=t ! queue ! shmringsink shm-name={ring_a} "
                        "t. ! queue ! checksumsink")
        procs.append(camera)
        out, err = probe.communicate(timeout=180)
        cam_out, _ = stop(camera)
        for p in (relay, bridge):
            stop(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for name in (ring_a, ring_b):
            try:
                os.unlink("/dev/shm/" + name)
            except FileNotFoundError:
                pass
    assert probe.returncode == 0, f"receiver: {out[-2000:]}\n{err[-3000:]}"
    res = json.loads(out.strip().splitlines()[-1])
    frames = res["frames"]
    assert len(frames) == COUNT
    caps = Gst.Caps.from_string(res["caps"]).get_structure(0)
    assert caps.get_name() == "video/x-raw"
    assert (caps.get_string("format"), caps.get_int("width")[1], caps.get_int("height")[1],
            caps.get_fraction("framerate")[1:]) == ("GRAY8", 64, 48, (30, 1))
    # Every frame is a camera frame, in the camera's order (snow: all differ).
    sent = checksums(cam_out)
    index = {digest: i for i, (_pts, digest) in enumerate(sent)}
    positions = [index.get(digest) for _pts, _rt, digest, _d in frames]
    assert None not in positions, "frames that the camera never sent arrived"
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # Timing travels with them: between any two received frames, as much PTS and
    # running time passed as between those frames at the camera.
    cam_pts = [sent[i][0] for i in positions]
    for k in range(1, len(frames)):
        assert frames[k][0] - frames[0][0] == cam_pts[k] - cam_pts[0], (k, frames[k], cam_pts[k])
        assert frames[k][1] - frames[0][1] == cam_pts[k] - cam_pts[0], (k, frames[k], cam_pts[k])
    assert not any(d for _p, _r, _s, d in frames[1:]), "a DISCONT after the first frame"
    # Nearly every camera frame in that span arrived (SRT retransmits on loss).
    span = positions[-1] - positions[0] + 1
    assert span <= COUNT + COUNT // 10, f"{COUNT} frames arrived over {span} camera frames"
