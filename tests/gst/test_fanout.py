"""Fan-out through the elements: one shmringsink max-receivers=N, receivers of mixed
kinds in processes of their own (gst-launch shmringsrc, a Python FrameReader, the C++
peer), each byte-exact against the same stream; a receiver killed with SIGKILL
mid-stream; a live receiver that stops pulling never holds the sender back.

The sender runs in this process (gi) so it can stay PAUSED (the ring exists, nothing
is rendered) until every receiver is attached: each then sees the whole stream. No
timed assertions: the order of events is enforced by waiting on what the processes
print or on the ring header.
"""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "python"))

from shmring.errors import RingNotFoundError  # noqa: E402
from shmring.header import HeaderSnapshot  # noqa: E402

gi = pytest.importorskip("gi")
gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

GST_LAUNCH = shutil.which("gst-launch-1.0")
PY = "/usr/bin/python3"
PEER = os.path.join(os.environ.get("SHMRING_BUILD_ROOT", str(ROOT / "build")), "tests", "tools",
                    "shmring_peer")
pytestmark = pytest.mark.skipif(GST_LAUNCH is None, reason="gst-launch-1.0 not installed")

FRAMES = 24
CAPS = "video/x-raw,format=BGR,width=1920,height=1080,framerate=30/1"
SOURCE = f"videotestsrc num-buffers={FRAMES} pattern=ball ! {CAPS}"
CHECKSUM = re.compile(r"^(\d+):(\d\d):(\d\d)\.(\d+) ([0-9a-f]{40})$")

# A Python FrameReader receiver: prints "slot K", then "frame PTS SHA1 CRC32" per frame.
FRAME_READER = """
import hashlib, sys, zlib
sys.path.insert(0, sys.argv[2])
from shmring import FrameReader
reader = FrameReader(sys.argv[1], timeout=60, mode=sys.argv[3])
print("slot", reader.slot, flush=True)
n = 0
for frame in reader:
    data = bytes(frame.data)
    print("frame", frame.pts, hashlib.sha1(data).hexdigest(), "%08x" % zlib.crc32(data),
          flush=True)
    n += 1
print("frames", n, flush=True)
"""


def unique(tag):
    return f"x-{tag}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def checksumsink_lines(text):
    out = []
    for line in text.splitlines():
        m = CHECKSUM.match(line.strip())
        if m:
            h, mi, s, frac, sha = m.groups()
            ns = ((int(h) * 60 + int(mi)) * 60 + int(s)) * 10**9 + int(frac.ljust(9, "0"))
            out.append((ns, sha))
    return out


def reference():
    """(pts, sha1) of every frame of the stream, straight from the source."""
    p = subprocess.run([GST_LAUNCH, "-q"] + f"{SOURCE} ! checksumsink hash=sha1".split(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    ref = checksumsink_lines(p.stdout)
    assert len(ref) == FRAMES
    return ref


def gst_env():
    env = dict(os.environ)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def start_sender(name, max_receivers, extra=""):
    Gst.init(None)
    pipe = Gst.parse_launch(f"{SOURCE} ! shmringsink name=s shm-name={name} "
                            f"max-receivers={max_receivers} {extra}")
    pipe.set_state(Gst.State.PAUSED)
    deadline_guard = 60 * Gst.SECOND
    ret, _, _ = pipe.get_state(deadline_guard)  # prerolled: the ring exists
    assert ret in (Gst.StateChangeReturn.SUCCESS, Gst.StateChangeReturn.NO_PREROLL), ret
    assert os.path.exists("/dev/shm/" + name)
    return pipe


def run_to_eos(pipe):
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(300 * Gst.SECOND,
                                            Gst.MessageType.EOS | Gst.MessageType.ERROR)
    assert msg is not None, "the sender did not finish"
    assert msg.type == Gst.MessageType.EOS, msg.parse_error()


def attached_slots(name):
    """The slots whose receiver has finished attaching (`attached`: its role byte is held
    and its ATTACHED flag is set). A claimed slot (the role byte alone) is not enough: a
    receiver claims it before it picks its start, and a lossless one joining a ring
    others read starts at the oldest position the attached ones still hold. Frames
    written between the claim and the start may already be behind that position (a live
    receiver reads them at once), so a receiver counted on its claim alone could miss the
    first frames (seen: a keeper that printed 19 checksums of 20, the first missing, and
    waited for the 20th forever). ATTACHED is set after the start is stored. None while
    the ring does not exist yet (a sink whose capacity comes from the caps creates it when
    the first caps arrive, on its streaming thread, after set_state returned)."""
    try:
        snapshot = HeaderSnapshot.read(name)
    except RingNotFoundError:
        return []
    return sorted(r.slot for r in snapshot.receivers if r.attached)


def wait_attached(name, count, procs):
    while len(attached_slots(name)) < count:
        for p in procs:
            assert p.poll() is None, p.communicate()
        time.sleep(0.02)


def finish(p, guard=300):
    out, err = p.communicate(timeout=guard)
    assert p.returncode == 0, f"rc {p.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    return out


def read_lines(p, count, guard=300):
    """The next `count` lines `p` prints. A guard, not a timed assertion: when they do not
    come within `guard` seconds (a receiver that lost frames waits for more forever), `p`
    is killed and the test fails with what it printed and its stderr, instead of hanging
    until meson's timeout."""
    got = []
    done = threading.Event()

    def pump():
        while len(got) < count:
            line = p.stdout.readline()
            if not line:
                break
            got.append(line)
        done.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    done.wait(guard)
    if len(got) < count:
        if p.poll() is None:
            p.kill()
        reader.join()  # ends at the pipe's end
        p.wait()
        pytest.fail(f"{len(got)} of {count} lines, rc {p.returncode}:\n{''.join(got)}\n"
                    f"stderr:\n{p.stderr.read()[-3000:]}")
    return got


def frame_reader(name, mode="lossless"):
    return subprocess.Popen([PY, "-c", FRAME_READER, name, str(ROOT / "python"), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def src(name, mode="lossless", tail="checksumsink hash=sha1"):
    return subprocess.Popen([GST_LAUNCH, "-q"] + f"shmringsrc shm-name={name} timeout=60000000000 "
                            f"mode={mode} ! {tail}".split(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=gst_env())


def reader_frames(out):
    return [(int(f[1]), f[2], f[3]) for f in (line.split() for line in out.splitlines())
            if f and f[0] == "frame"]


def cleanup(name):
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


def test_four_receivers_of_mixed_kinds_are_byte_exact():
    ref = reference()
    name = unique("four")
    pipe = start_sender(name, 4)
    procs = []
    try:
        procs = [src(name), src(name), frame_reader(name),
                 subprocess.Popen([PEER, "consume-frames", name, "--timeout-ms", "60000"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        wait_attached(name, 4, procs)
        assert attached_slots(name) == [0, 1, 2, 3]
        run_to_eos(pipe)
        outs = [finish(p) for p in procs]
    finally:
        pipe.set_state(Gst.State.NULL)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        cleanup(name)
    assert checksumsink_lines(outs[0]) == ref
    assert checksumsink_lines(outs[1]) == ref
    frames = reader_frames(outs[2])
    assert [(pts, sha) for pts, sha, _ in frames] == ref
    crcs = [(pts, crc) for pts, _, crc in frames]
    peer = [(int(f[1]), f[2]) for f in (line.split() for line in outs[3].splitlines())
            if f and f[0] == "frame"]
    assert peer == crcs, "the C++ receiver's frames differ from the Python receiver's"


def test_killed_receiver_does_not_stop_the_sender_or_the_others():
    ref = reference()
    name = unique("kill")
    pipe = start_sender(name, 3)
    procs = []
    try:
        keeper = src(name)
        reader = frame_reader(name)
        # Lossless and slow: it holds the sender back until it is killed.
        victim = src(name, tail="identity sleep-time=200000 ! fakesink")
        procs = [keeper, reader, victim]
        wait_attached(name, 3, procs)
        pipe.set_state(Gst.State.PLAYING)
        assert reader.stdout.readline().startswith("slot")
        for _ in range(3):  # mid-stream: the reader has frames, the stream is not over
            assert reader.stdout.readline().startswith("frame")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        msg = pipe.get_bus().timed_pop_filtered(300 * Gst.SECOND,
                                                Gst.MessageType.EOS | Gst.MessageType.ERROR)
        assert msg is not None and msg.type == Gst.MessageType.EOS
        keeper_out = finish(keeper)
        reader_out = finish(reader)
    finally:
        pipe.set_state(Gst.State.NULL)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        cleanup(name)
    assert checksumsink_lines(keeper_out) == ref
    assert [(pts, sha) for pts, sha, _ in reader_frames(reader_out)] == ref[3:]


def test_stalled_live_receiver_never_holds_the_sender_back():
    """A live shmringsrc whose appsink is not pulled: the sender still writes every frame
    for a lossless receiver; once pulled again, the live one skips ahead (counted in
    skipped) and its next buffer is DISCONT. The sender is an appsrc driven from here, so
    the order is fixed: frames, then the live receiver resumes, then EOS."""
    name = unique("live")
    Gst.init(None)
    sender = Gst.parse_launch(f"appsrc name=in format=time caps={CAPS} ! "
                              f"shmringsink shm-name={name} max-receivers=2")
    sender.set_state(Gst.State.PLAYING)
    appsrc = sender.get_by_name("in")
    live = Gst.parse_launch(f"shmringsrc name=r shm-name={name} mode=live "
                            "timeout=60000000000 ! appsink name=a max-buffers=1 sync=false")
    keeper = None
    frame_bytes = 1920 * 1080 * 3
    count = 20
    try:
        live.set_state(Gst.State.PLAYING)
        keeper = src(name, mode="lossless")
        wait_attached(name, 2, [keeper])
        for i in range(count):
            buf = Gst.Buffer.new_wrapped(bytes([i]) * frame_bytes)
            buf.pts = i * Gst.SECOND // 30
            buf.duration = Gst.SECOND // 30
            assert appsrc.emit("push-buffer", buf) == Gst.FlowReturn.OK
        # Every frame reached the lossless receiver while the live one pulled nothing.
        for line in read_lines(keeper, count):
            assert CHECKSUM.match(line.strip()), line
        appsink = live.get_by_name("a")
        samples = []
        # The one appsink holds, the one its blocked push carries, then what comes
        # after the skip.
        for _ in range(3):
            sample = appsink.emit("try-pull-sample", 60 * Gst.SECOND)
            assert sample is not None
            samples.append(sample.get_buffer())
        skipped = live.get_by_name("r").get_property("skipped")
        assert appsrc.emit("end-of-stream") == Gst.FlowReturn.OK
        finish(keeper)
    finally:
        live.set_state(Gst.State.NULL)
        sender.set_state(Gst.State.NULL)
        if keeper is not None and keeper.poll() is None:
            keeper.kill()
            keeper.wait()
        cleanup(name)
    assert skipped > 0
    assert not samples[1].has_flags(Gst.BufferFlags.DISCONT)
    assert samples[2].has_flags(Gst.BufferFlags.DISCONT)
    assert samples[2].pts > samples[1].pts + Gst.SECOND // 30, "it skipped ahead"
