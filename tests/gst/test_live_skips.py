"""A live shmringsrc that falls behind on an encoded stream, in a process of its own:
it resumes at the newest key frame still in the ring (so the decoder renders at once and
never gets a delta unit without its reference), and its `skipped` property counts the
buffers it missed (sender count - received count).

The sender (appsrc ! x264enc ! shmringsink max-receivers=2) runs in this process and is
driven frame by frame; the receiver (shmringsrc mode=live ! avdec_h264 ! appsink) stops
pulling when told and resumes when told, so the order of events is fixed: no timed
assertions. Progress is read from the ring header (published messages, the receiver's
position) and from what the receiver prints.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "python"))

from shmring.header import HeaderSnapshot  # noqa: E402

gi = pytest.importorskip("gi")
gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

PY = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(
    shutil.which("gst-launch-1.0") is None, reason="gst-launch-1.0 not installed")

GOP = 30
# The GOP + 9 frames written while the receiver is stalled before the lap (about 5.6 KB
# each, some 220 KB) must stay well inside the three quarters of a lap the producer
# keeps: with 256 KiB they sometimes lapped it there already (a second skip).
CAPACITY = 512 * 1024
RAW = "video/x-raw,format=I420,width=320,height=240,framerate=30/1"

# The receiver: `shmringsrc mode=live ! [<tail> !] appsink name=a`. For every buffer
# shmringsrc pushes it records pts, delta, discont, size and the width and height of the
# pad's caps at that moment. Pulls `first` samples, prints "stalled", waits for a line on
# stdin, then pulls to EOS and prints one JSON line: the pushed buffers, the samples
# pulled, skipped, and the pipeline's warnings/errors.
RECEIVER = r"""
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
name, first, tail = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pipe = Gst.parse_launch(
    f"shmringsrc name=r shm-name={name} mode=live timeout=60000000000 ! "
    + (f"{tail} ! " if tail else "") + "appsink name=a sync=false max-buffers=1")
pushed = []
def probe(pad, info):
    b = info.get_buffer()
    s = pad.get_current_caps().get_structure(0)
    pushed.append({"pts": b.pts, "delta": b.has_flags(Gst.BufferFlags.DELTA_UNIT),
                   "discont": b.has_flags(Gst.BufferFlags.DISCONT), "size": b.get_size(),
                   "width": s.get_value("width"), "height": s.get_value("height")})
    return Gst.PadProbeReturn.OK
pipe.get_by_name("r").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)
pipe.set_state(Gst.State.PLAYING)
sink = pipe.get_by_name("a")
pulled = 0
for _ in range(first):
    assert sink.emit("pull-sample") is not None
    pulled += 1
print("stalled", flush=True)
sys.stdin.readline()
while sink.emit("pull-sample") is not None:
    pulled += 1
problems = []
bus = pipe.get_bus()
while True:
    m = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
    if m is None:
        break
    problems.append(m.src.get_name() + ": " + str(m.parse_error()[0] if m.type ==
                    Gst.MessageType.ERROR else m.parse_warning()[0]))
skipped = pipe.get_by_name("r").get_property("skipped")
pipe.set_state(Gst.State.NULL)
print(json.dumps({"pushed": pushed, "pulled": pulled, "skipped": skipped,
                  "problems": problems}), flush=True)
"""


def unique(tag):
    return f"x-{tag}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def wait_for(check, procs):
    """Polls `check` (a look at the ring header or a process); fails if a process died."""
    while not check():
        for p in procs:
            assert p.poll() is None, p.communicate()
        time.sleep(0.01)


class StalledReceiverRun:
    """A live sender `appsrc name=in ! ... ! shmringsink name=s` in this process, driven
    frame by frame, and RECEIVER in a process of its own, stalled and resumed when told.
    Use as a context manager: the sender stops, the receiver is killed if still running
    and the ring removed on the way out."""

    def __init__(self, name, sender_desc, receiver_tail):
        Gst.init(None)
        self.name = name
        self.receiver_tail = receiver_tail
        self.sender = Gst.parse_launch(sender_desc)
        self.written = []  # (pts, delta) of every buffer that reached the sink
        self.sender.get_by_name("s").get_static_pad("sink").add_probe(
            Gst.PadProbeType.BUFFER, self._count)
        self.appsrc = self.sender.get_by_name("in")
        self.pushed = 0
        self.procs = []
        self.receiver = None

    def _count(self, pad, info):
        b = info.get_buffer()
        self.written.append((b.pts, b.has_flags(Gst.BufferFlags.DELTA_UNIT)))
        return Gst.PadProbeReturn.OK

    def push(self, n, make_data):
        """Pushes n frames (`make_data(i)` gives frame i's bytes; pts i/30 s) and waits
        until the sink has them all (it renders in the streaming thread: a buffer reaching
        its pad means the one before is in the ring)."""
        for _ in range(n):
            buf = Gst.Buffer.new_wrapped(make_data(self.pushed))
            buf.pts = self.pushed * Gst.SECOND // 30
            buf.duration = Gst.SECOND // 30
            assert self.appsrc.emit("push-buffer", buf) == Gst.FlowReturn.OK
            self.pushed += 1
        wait_for(lambda: len(self.written) == self.pushed, self.procs)

    def slot(self):
        """The receiver's slot once it finished attaching (its start stored, ATTACHED set),
        else None."""
        return next((r for r in HeaderSnapshot.read(self.name).receivers if r.attached), None)

    def start(self, make_data):
        """Starts the sender (the ring is created at the first caps: two frames) and the
        receiver; returns once the receiver finished attaching (the sink writes for it
        from then on: a frame pushed earlier would be neither received nor counted as
        skipped, and the test counts both)."""
        self.sender.set_state(Gst.State.PLAYING)
        self.push(2, make_data)  # a live sender writes nothing until a receiver is in
        wait_for(lambda: os.path.exists("/dev/shm/" + self.name), self.procs)
        self.receiver = subprocess.Popen(
            [PY, "-c", RECEIVER, self.name, "3", self.receiver_tail], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(self.receiver)
        wait_for(lambda: self.slot() is not None, self.procs)

    def wait_stalled(self):
        """Waits until the receiver pulled its first frames and stalled (its streaming
        thread blocked downstream, holding no ring record); returns its ring position."""
        line = self.receiver.stdout.readline()
        assert line.startswith("stalled"), line + self.receiver.stderr.read()
        return self.slot().position

    def resume(self, stalled_at):
        """Lets the receiver go on; returns once it pinned a new position."""
        self.receiver.stdin.write("go\n")
        self.receiver.stdin.flush()
        wait_for(lambda: self.slot().position != stalled_at, self.procs)

    def finish(self):
        """Ends the stream; returns the receiver's JSON result."""
        assert self.appsrc.emit("end-of-stream") == Gst.FlowReturn.OK
        msg = self.sender.get_bus().timed_pop_filtered(
            120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        assert msg is not None and msg.type == Gst.MessageType.EOS, msg and msg.parse_error()
        out, err = self.receiver.communicate(timeout=120)
        assert self.receiver.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sender.set_state(Gst.State.NULL)
        if self.receiver is not None and self.receiver.poll() is None:
            self.receiver.kill()
            self.receiver.wait()
        try:
            os.unlink("/dev/shm/" + self.name)
        except FileNotFoundError:
            pass


def test_lapped_live_receiver_resumes_at_the_newest_key_frame_and_counts_what_it_missed():
    y_size = 320 * 240

    def frame(i):
        # A 64x64 block of noise on a flat frame: a few KB per frame, key or delta.
        data = bytearray(y_size * 3 // 2)
        noise = os.urandom(64 * 64)
        for row in range(64):
            data[row * 320:row * 320 + 64] = noise[row * 64:(row + 1) * 64]
        return bytes(data)

    name = unique("lskip")
    with StalledReceiverRun(
            name,
            f"appsrc name=in is-live=true format=time caps={RAW} ! "
            f"x264enc key-int-max={GOP} tune=zerolatency speed-preset=ultrafast bframes=0 "
            "option-string=scenecut=0 ! "
            "video/x-h264,stream-format=byte-stream,alignment=au ! "
            f"shmringsink name=s shm-name={name} max-receivers=2 capacity={CAPACITY} sync=false",
            "avdec_h264 name=d max-threads=1") as run:
        written = run.written
        run.start(frame)
        # A live receiver of a live ring starts at what is published after its attach,
        # at the first key frame (the deltas before it are dropped and counted; the sink
        # asks upstream for a key frame when a receiver attaches).
        run.push(GOP + 9, frame)
        stalled_at = run.wait_stalled()
        # Stalled: lap it twice, and stop 5 frames after a key frame, so the newest key
        # frame is surely among the newest three quarters of a lap.
        while True:
            run.push(1, frame)
            lapped = (HeaderSnapshot.read(name).head - stalled_at) & 0xFFFFFFFF > 2 * CAPACITY
            last_key = max(i for i, (_, delta) in enumerate(written) if not delta)
            if lapped and run.pushed - 1 - last_key == 5:
                break
        run.push(1, frame)  # the frame before it is now in the ring too
        # Frame i has pts i/30 s as the receiver sees it (x264enc shifts the times it
        # outputs; the sink writes running times).
        newest_key = max(i for i, (_, delta) in enumerate(written) if not delta) * Gst.SECOND // 30
        # It resumes (pins a new position) before the stream goes on with the next key frame.
        run.resume(stalled_at)
        run.push(GOP + 3, frame)
        result = run.finish()
        # Buffers the sender wrote into the ring: the others came before any receiver.
        sent = len(written) - run.sender.get_by_name("s").get_property("not-received")
        pushed = run.pushed
    got = result["pushed"]
    times = [b["pts"] for b in got]
    assert not got[0]["delta"], "a live receiver starts at a key frame"
    # The one jump in the received times is the skip; nothing after it is missing.
    step = Gst.SECOND // 30
    jumps = [i for i in range(1, len(times)) if times[i] - times[i - 1] > step + 1]
    assert len(jumps) == 1, times
    resumed = got[jumps[0]]
    assert resumed["discont"], "the first buffer after the skip is DISCONT"
    assert not resumed["delta"], "the first buffer after the skip is a key frame"
    assert resumed["pts"] == newest_key, "the newest key frame still in the ring, not a later one"
    assert times[-1] == (pushed - 1) * Gst.SECOND // 30, "to the end of the stream"
    # Every buffer the sender wrote was received or counted as skipped.
    assert 0 < sent < pushed
    assert result["skipped"] == sent - len(got)
    assert result["pulled"] == len(got), "the decoder made a frame of every buffer"
    assert result["problems"] == [], result["problems"]


BIG = "video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1"
SMALL = "video/x-raw,format=GRAY8,width=32,height=24,framerate=30/1"
CAPS_CAPACITY = 64 * 1024


def test_lapped_live_receiver_pushes_the_caps_it_skipped_before_the_next_buffer():
    """The sender changes caps (64x48 -> 32x24) while a live receiver is stalled and
    lapped twice: the CAPS record is reused before the receiver reads it. After the skip
    the receiver takes the sender's current caps from the ring header, so every buffer
    it pushes has the size its caps say (GRAY8 at these widths has no row padding: a
    frame is width * height bytes)."""
    size = 64 * 48

    def frame(i):
        return bytes([i % 256]) * size

    name = unique("lcaps")
    with StalledReceiverRun(
            name,
            f"appsrc name=in is-live=true format=time caps={BIG} ! "
            f"shmringsink name=s shm-name={name} max-receivers=2 capacity={CAPS_CAPACITY} "
            "sync=false",
            "") as run:
        run.start(frame)
        run.push(8, frame)
        stalled_at = run.wait_stalled()
        # The caps change, then small frames until the receiver is lapped twice.
        run.appsrc.set_property("caps", Gst.Caps.from_string(SMALL))
        size = 32 * 24
        changed_at = run.pushed
        while (HeaderSnapshot.read(name).head - stalled_at) & 0xFFFFFFFF <= 2 * CAPS_CAPACITY:
            run.push(1, frame)
        run.resume(stalled_at)
        run.push(5, frame)
        result = run.finish()
        pushed = run.pushed
    got = result["pushed"]
    assert result["skipped"] > 0, "the receiver was lapped"
    # No buffer of the new size reached the receiver before the skip.
    assert all(b["pts"] < changed_at * Gst.SECOND // 30 for b in got[:3])
    assert got[-1]["pts"] == (pushed - 1) * Gst.SECOND // 30, "to the end of the stream"
    wrong = [b for b in got if b["size"] != b["width"] * b["height"]]
    assert wrong == [], "buffers whose size is not what their caps say"
    assert (got[-1]["width"], got[-1]["height"]) == (32, 24)
