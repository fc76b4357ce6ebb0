"""Zero-copy sending in real two-process pipelines: videotestsrc writes its frames
into shmringsink's ring pool in one gst-launch process, shmringsrc reads them in
another. The receiver's per-frame checksums must equal those of the same source
read without any ring (checksumsink in one process) and those of the copy path
(identity drop-allocation=true: no pool, every frame copied), and the sender's
log must say the frames were sent in place. A synced video sink (fpsdisplaysink,
sync=true) behind shmringsrc receives the whole stream too.
Needs GST_PLUGIN_PATH to point at the built plugin (meson test sets it)."""
import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

HERE = pathlib.Path(__file__).parent
GST_LAUNCH = shutil.which("gst-launch-1.0")
FRAMES = 60
SRC = (f"videotestsrc num-buffers={FRAMES} pattern=ball ! "
       "video/x-raw,format=BGR,width=320,height=240,framerate=300/1")

pytestmark = pytest.mark.skipif(GST_LAUNCH is None, reason="gst-launch-1.0 not installed")


def unique(tag):
    return f"zc-{tag}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def run(desc, env=None, guard=120):
    p = subprocess.run([GST_LAUNCH, "-q"] + desc.split(), capture_output=True, text=True,
                       timeout=guard, env=env)
    assert p.returncode == 0, f"{desc}\nrc {p.returncode}\n{p.stderr[-3000:]}"
    return p


def checksums(text):
    return [line.split()[-1] for line in text.splitlines() if re.match(r"^\d+:\d+:\d+", line)]


def sender_env():
    env = dict(os.environ)
    env["GST_DEBUG"] = "shmringsink:4"
    env["GST_DEBUG_NO_COLOR"] = "1"
    return env


def receive_while_sending(receiver_argv, sender_desc, env=None):
    """Starts the receiver process, then runs the sender pipeline `sender_desc` to its
    end; returns (the receiver's CompletedProcess once it exited, the sender's).
    A receiver still running when something fails is killed."""
    recv = subprocess.Popen(receiver_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        send = run(sender_desc, env=env)
        out, err = recv.communicate(timeout=120)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.communicate()
    return subprocess.CompletedProcess(receiver_argv, recv.returncode, out, err), send


@contextlib.contextmanager
def killed_at_exit(procs, name):
    """Whatever in `procs` still runs when the block ends (a failed assertion, a hang
    guard) is killed and reaped, and a ring a killed sender left under `name` removed."""
    try:
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")


def through_ring(sender_middle, receiver_tail):
    """Runs the receiver (started first) and the sender; returns (receiver stdout,
    sender stderr)."""
    name = unique("p")
    recv, send = receive_while_sending(
        [GST_LAUNCH, "-q", "shmringsrc", f"shm-name={name}", "!"] + receiver_tail.split(),
        f"{SRC} {sender_middle} ! shmringsink shm-name={name}", env=sender_env())
    assert recv.returncode == 0, recv.stderr[-3000:]
    return recv.stdout, send.stderr


def sent_counts(log):
    m = re.search(r"buffers sent in place: (\d+), copied: (\d+)", log)
    assert m, log[-3000:]
    return int(m.group(1)), int(m.group(2))


def test_pool_frames_arrive_byte_exact_and_without_copies():
    reference = checksums(run(f"{SRC} ! checksumsink").stdout)
    assert len(reference) == FRAMES
    out, log = through_ring("", "checksumsink")
    assert checksums(out) == reference
    in_place, copied = sent_counts(log)
    # The first frame may be copied (reserved before the caps record); the rest not.
    assert in_place >= FRAMES - 2, (in_place, copied)
    assert in_place + copied == FRAMES


def test_copy_path_gives_the_same_bytes():
    reference = checksums(run(f"{SRC} ! checksumsink").stdout)
    out, log = through_ring("! identity drop-allocation=true", "checksumsink")
    assert checksums(out) == reference
    assert sent_counts(log) == (0, FRAMES)


def test_synced_video_sink_receives_every_frame():
    """fpsdisplaysink over a synced fakesink behind shmringsrc (render_probe.py
    records every rendered buffer): the whole stream arrives, in order, to EOS."""
    name = unique("sync")
    probe, send = receive_while_sending(
        [sys.executable, str(HERE / "render_probe.py"),
         f"shmringsrc shm-name={name} ! fpsdisplaysink text-overlay=false "
         "signal-fps-measurements=false video-sink=\"fakesink name=fs sync=true "
         "signal-handoffs=true\""],
        f"{SRC} ! shmringsink shm-name={name}", env=sender_env())
    res = json.loads(probe.stdout.strip().splitlines()[-1])
    assert res["error"] is None, res["error"]
    assert res["eos"]
    pts = [b[0] for b in res["buffers"]]
    assert len(pts) == FRAMES and pts == sorted(pts), pts
    in_place, _ = sent_counts(send.stderr)
    assert in_place >= FRAMES - 2


def probe_receiver(props="", lossless=True, src=SRC, sink_props=f"capacity={4 << 20}"):
    """Sends the stream through a ring to memory_probe.py (started first) and returns
    what it saw: where each buffer pushed by shmringsrc lives. A lossless receiver
    sees every buffer; a live one at least one (it skips when the sender laps it)."""
    name = unique("mem")
    # 4 MiB: 18 frames, so the one frame fakesink keeps and the one being pushed
    # never come near half the ring (past that the src copies).
    recv, _ = receive_while_sending(
        [sys.executable, str(HERE / "memory_probe.py"), "--props", props, name],
        f"{src} ! shmringsink shm-name={name} {sink_props}")
    assert recv.returncode == 0, recv.stderr[-3000:]
    res = json.loads(recv.stdout.strip().splitlines()[-1])
    assert res["buffers"] == FRAMES if lossless else res["buffers"] >= 1, res
    return res


def test_receiver_pushes_the_rings_memory_by_default():
    """shmringsrc hands out the ring's memory itself (as shmsrc hands out shared
    memory): every buffer at the fakesink's pad lies inside the receiver's mapping of
    the ring, read-only. (fakesink keeps only the last buffer: never half the ring.)"""
    res = probe_receiver()
    assert res["in_ring"] == FRAMES, res
    assert res["readonly"] == FRAMES, res


def test_receiver_stays_zero_copy_in_a_ring_sized_from_the_caps():
    """The default ring (sized from the caps) leaves room for the frame fakesink
    keeps and the one being pushed within half the ring, the receiver's limit for
    ring memory held downstream: 1280x720 BGR, where three frames fit 8 MiB (every
    frame was copied out of a ring that small)."""
    src = SRC.replace("width=320,height=240", "width=1280,height=720")
    res = probe_receiver(src=src, sink_props="")
    assert res["in_ring"] == FRAMES, res


def test_receiver_copies_with_zero_copy_false():
    res = probe_receiver("zero-copy=false")
    assert res["in_ring"] == 0, res
    assert res["readonly"] == 0, res


def test_live_receiver_copies():
    """A live receiver never holds the sender back, so it never pushes ring memory
    (a buffer kept downstream would pin the ring)."""
    res = probe_receiver("mode=live", lossless=False)
    assert res["in_ring"] == 0, res


# ---- the pool through caps changes, flushing seeks and renegotiation ---------------
# No tee before shmringsink here (a tee answers the allocation query without the
# sink's pool, so only the copy path would run): the pool is really used.

def concat_src(second, frames=20, first=20):
    """Two videotestsrc streams concatenated: `first` frames of 160x120, then `frames`
    of `second` (WIDTHxHEIGHT): one caps change in mid-stream. Ends with the concat's
    src pad still to be linked."""
    w, h = second.split("x")
    return (f"concat name=c videotestsrc num-buffers={first} pattern=ball ! "
            "video/x-raw,format=BGR,width=160,height=120,framerate=30/1 ! c. "
            f"videotestsrc num-buffers={frames} pattern=snow ! "
            f"video/x-raw,format=BGR,width={w},height={h},framerate=30/1 ! c. c.")


def caps_change_through_ring(second, sink_props=""):
    """The concatenated stream into shmringsink (capacity left at 0 unless
    `sink_props` says otherwise) and out of shmringsrc in another process: returns
    (reference checksums, received checksums, in place, copied, the sender's log)."""
    reference = checksums(run(f"{concat_src(second)} ! checksumsink").stdout)
    assert len(reference) == 40
    name = unique("caps")
    try:
        recv, send = receive_while_sending(
            [GST_LAUNCH, "-q", "shmringsrc", f"shm-name={name}", "!", "checksumsink"],
            f"{concat_src(second)} ! shmringsink shm-name={name} {sink_props}",
            env=sender_env())
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        if os.path.exists(f"/dev/shm/{name}"):  # a sender killed by its guard
            os.unlink(f"/dev/shm/{name}")
    assert recv.returncode == 0, recv.stderr[-3000:]
    in_place, copied = sent_counts(send.stderr)
    return reference, checksums(recv.stdout), in_place, copied, send.stderr


def test_caps_change_keeps_the_pool_and_every_frame():
    """160x120 then 320x240 (both fit the ring sized from the first caps): every frame
    arrives byte-exact and in order, and the frames of both caps go in place (each
    source takes the pool the sink offers for its caps)."""
    reference, got, in_place, copied, _ = caps_change_through_ring("320x240")
    assert got == reference
    # The first frame of each caps may be copied (reserved before its caps record).
    assert in_place >= 40 - 4, (in_place, copied)
    assert in_place + copied == 40


def test_caps_change_to_larger_frames_moves_to_a_larger_ring():
    """capacity=0: the ring sized from 160x120 frames (1 MiB) cannot hold a 1280x720
    frame (2764800 bytes). The sink moves the stream to a ring sized from the new
    caps; the receiver reads everything the old ring held and follows: every frame
    arrives byte-exact and in order, and the large frames go in place through the
    new ring's pool (upstream renegotiated it: RECONFIGURE)."""
    reference, got, in_place, copied, log = caps_change_through_ring("1280x720")
    assert "moving to a larger ring" in log, log[-3000:]
    assert got == reference
    assert in_place >= 40 - 4, (in_place, copied)
    assert in_place + copied == 40


def test_a_receiver_that_follows_a_move_is_announced_once():
    """capacity=0 and a caps change to 1280x720 frames (a move to a larger ring) with
    one receiver, which follows the stream: the sender's bus (gst-launch -m) carries
    one shmringsink-receiver-attached, with the receiver's pid, and no
    shmringsink-receiver-left for a receiver that is still there (before: a second
    attached from the new ring, for the same receiver)."""
    name = unique("announce")
    try:
        recv = subprocess.Popen([GST_LAUNCH, "-q", "shmringsrc", f"shm-name={name}", "!",
                                 "checksumsink"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            send = subprocess.run(
                [GST_LAUNCH, "-m"] + (f"{concat_src('1280x720')} ! shmringsink "
                                      f"shm-name={name}").split(),
                capture_output=True, text=True, timeout=120, env=sender_env())
            out, err = recv.communicate(timeout=120)
        finally:
            if recv.poll() is None:
                recv.kill()
                recv.communicate()
    finally:
        if os.path.exists(f"/dev/shm/{name}"):  # a sender killed by its guard
            os.unlink(f"/dev/shm/{name}")
    assert send.returncode == 0, send.stderr[-3000:]
    assert recv.returncode == 0, err[-3000:]
    assert "moving to a larger ring" in send.stderr, send.stderr[-3000:]
    assert len(checksums(out)) == 40
    attached = re.findall(r"shmringsink-receiver-attached, pid=\(uint\)(\d+)", send.stdout)
    assert attached == [str(recv.pid)], send.stdout[-3000:]
    left = re.findall(r"shmringsink-receiver-left", send.stdout)
    # The receiver ends after the sender's EOS; its leaving may be seen before the
    # sender stops, but once at most.
    assert len(left) <= 1, send.stdout[-3000:]


def test_a_live_receiver_behind_at_a_move_keeps_the_new_rings_frames():
    """A live sender (appsrc is-live=true, capacity=0, two receiver slots) moves to a
    larger ring for 1280x720 frames while one receiver is held at its first frame in
    the old ring. The other follows and is held at the first large frame, so the new
    ring keeps the large frames after it, written before the held receiver arrives
    there. Let go after the sender's EOS, that receiver drains the old ring, follows,
    and gets them: a ring followed after a hand-over holds the rest of the same
    stream, not a stale backlog to skip as a live receiver joining a ring does
    (before: skipped, no large frame at all). The held places, not timing, make the
    order (tests/gst/handover_probe.py)."""
    probe = str(HERE / "handover_probe.py")
    name = unique("livefollow")
    large = 1280 * 720 * 3

    def receiver(hold):
        return subprocess.Popen([sys.executable, probe, "receive", name, "--hold", hold],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    slow, fast = receiver("first"), receiver("large")
    send = subprocess.Popen([sys.executable, probe, "send", name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=sender_env())
    procs = (slow, fast, send)
    # Hang guard: whatever still runs then is killed, which ends the reads below.
    guard = threading.Timer(120, lambda: [p.kill() for p in procs if p.poll() is None])
    guard.start()
    with killed_at_exit(procs, name):
        try:
            assert send.stdout.readline() == "eos\n", send.stderr.read()[-3000:]
            fast_lines = []
            for line in fast.stdout:
                if line == "held\n":
                    break
                fast_lines.append(line.split())
            assert slow.stdout.readline() == "held\n"
            out, err = slow.communicate(input="go\n")
            assert slow.returncode == 0, err[-3000:]
            slow_lines = [line.split() for line in out.splitlines()]
            out, err = fast.communicate(input="go\n")
            assert fast.returncode == 0, err[-3000:]
            fast_lines += [line.split() for line in out.splitlines()]
            _, log = send.communicate()
            assert send.returncode == 0, log[-3000:]
        finally:
            guard.cancel()
    assert "moving to a larger ring" in log, log[-3000:]
    fast_large = [sha for size, sha in fast_lines if int(size) == large]
    slow_large = [sha for size, sha in slow_lines if int(size) == large]
    assert len(fast_large) == 3, fast_lines
    # From where the held receiver is (a live receiver copies a frame out and frees
    # it before pushing it; it has read at most one more): at least the last.
    assert_unbroken_end(fast_large, slow_large)


# A Python receiver (FrameReader) in its own process: one JSON line per frame.
PY_RECEIVER = """
import asyncio, hashlib, json, sys
sys.path.insert(0, sys.argv[3])
import shmring

def line(f):
    return json.dumps([list(f.array.shape), f.pts, hashlib.sha1(f.data).hexdigest()])

with shmring.FrameReader(sys.argv[1], timeout=120) as r:
    if sys.argv[2] == "async":
        async def main():
            async for f in r:
                print(line(f))
        asyncio.run(main())
    else:
        for f in r:
            print(line(f))
    print(json.dumps(["end", r.at_end]))
"""


@pytest.mark.parametrize("how", ["iterate", "async"])
def test_frame_reader_follows_the_stream_into_a_larger_ring(how):
    """capacity=0 and a caps change to 1280x720 frames: the sink moves the stream to a
    larger ring; a Python FrameReader in another process (iterating, or ``async for``)
    reads the old ring to its end, then follows into the new one: every frame
    byte-exact and in order, 160x120 then 1280x720 shapes, timestamps going forward
    across the move, the end at EOS (before: StreamTruncatedError at the move)."""
    reference = checksums(run(f"{concat_src('1280x720')} ! checksumsink").stdout)
    assert len(reference) == 40
    name = unique("pyfollow")
    python_dir = os.path.join(os.environ.get("SHMRING_SOURCE_ROOT", str(HERE.parents[1])),
                              "python")
    # The receiver first: a sender whose receiver failed would wait for one at the
    # move, so it is stopped once the receiver is done.
    recv = subprocess.Popen([sys.executable, "-c", PY_RECEIVER, name, how, python_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    send = subprocess.Popen([GST_LAUNCH, "-q"] + (f"{concat_src('1280x720')} ! shmringsink "
                                                  f"shm-name={name}").split(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=sender_env())
    with killed_at_exit((recv, send), name):
        out, err = recv.communicate(timeout=120)
        assert recv.returncode == 0, err[-3000:]
        _, log = send.communicate(timeout=120)
        assert send.returncode == 0, log[-3000:]
    assert "moving to a larger ring" in log, log[-3000:]
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[-1] == ["end", True]
    frames = lines[:-1]
    assert [sha for _, _, sha in frames] == reference
    assert [tuple(shape) for shape, _, _ in frames] == [(120, 160, 3)] * 20 + [(720, 1280, 3)] * 20
    pts = [t for _, t, _ in frames]
    assert all(a < b for a, b in zip(pts, pts[1:])), pts


def test_ring_grown_before_any_receiver_keeps_the_first_frames():
    """The sender starts alone: its 10 small frames fit the ring, so it reaches the
    caps change to 1280x720 before any receiver attached. It waits there for a first
    receiver (as it would for space) instead of moving on and leaving the old ring's
    frames where no receiver would ever find them; a receiver started then gets every
    frame, byte-exact and in order."""
    src = concat_src("1280x720", frames=20, first=10)
    reference = checksums(run(f"{src} ! checksumsink").stdout)
    assert len(reference) == 30
    name = unique("capsfirst")
    send = subprocess.Popen([GST_LAUNCH, "-q"] + f"{src} ! shmringsink shm-name={name}".split(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=sender_env())
    recv = None
    # Hang guard: a sender that never logs the line is killed, which ends the loop.
    guard = threading.Timer(120, send.kill)
    guard.start()
    try:
        for line in send.stderr:
            if "waiting for a first receiver before moving to a larger ring" in line:
                break
        else:
            raise AssertionError("the sender never waited for a receiver at the move")
        guard.cancel()
        recv = subprocess.run([GST_LAUNCH, "-q", "shmringsrc", f"shm-name={name}", "!",
                               "checksumsink"], capture_output=True, text=True, timeout=120)
        send.communicate(timeout=120)
        assert send.returncode == 0
    finally:
        guard.cancel()
        if send.poll() is None:
            send.kill()
            send.communicate()
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")
    assert recv.returncode == 0, recv.stderr[-3000:]
    assert checksums(recv.stdout) == reference


def concat_sizes(*parts):
    """videotestsrc streams concatenated, one per (frames, "WxH") in `parts`: a caps
    change at each joint. Ends with the concat's src pad still to be linked."""
    desc = "concat name=c "
    for frames, size in parts:
        w, h = size.split("x")
        desc += (f"videotestsrc num-buffers={frames} pattern=ball ! "
                 f"video/x-raw,format=BGR,width={w},height={h},framerate=30/1 ! c. ")
    return desc + "c."


def fast_and_slow_receivers(src, tag):
    """`src` into shmringsink max-receivers=2, read in two other processes: one fast,
    one slow (identity sleep-time, 60 ms a frame), both started before the sender.
    Returns (reference checksums, fast receiver, slow receiver) (CompletedProcess)."""
    reference = checksums(run(f"{src} ! checksumsink").stdout)
    name = unique(tag)
    argv = [GST_LAUNCH, "-q", "shmringsrc", f"shm-name={name}", "!"]
    fast = subprocess.Popen(argv + ["checksumsink"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    slow = subprocess.Popen(argv + ["identity", "sleep-time=60000", "!", "checksumsink"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = []
    with killed_at_exit((fast, slow), name):  # and a ring of a sender killed by its guard
        run(f"{src} ! shmringsink shm-name={name} max-receivers=2", env=sender_env())
        for p in (fast, slow):
            out, err = p.communicate(timeout=120)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return reference, done[0], done[1]


def assert_unbroken_end(reference, got):
    """`got` is the end of `reference` with nothing left out (a receiver that
    attached late may miss the start; none may miss frames after it)."""
    assert 0 < len(got) <= len(reference), (len(got), len(reference))
    assert got == reference[len(reference) - len(got):], (len(got), len(reference))


def test_stop_after_a_move_waits_for_a_receiver_still_in_the_old_ring():
    """Two receivers, one slow: the fast one follows the stream into the larger ring,
    which soon ends (3 frames, EOS) while the slow one still drains the old ring.
    The sender's stop keeps the old ring's role lock until the slow receiver has
    drained it and followed (it would otherwise read CLOSED without a hand-over and
    report a stream cut short): both receivers end cleanly, with every frame."""
    reference, fast, slow = fast_and_slow_receivers(
        concat_sizes((20, "160x120"), (3, "1280x720")), "capslow")
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert slow.returncode == 0, slow.stderr[-3000:]
    assert_unbroken_end(reference, checksums(fast.stdout))
    assert_unbroken_end(reference, checksums(slow.stdout))


def test_two_moves_in_a_row_keep_a_slow_receivers_frames():
    """Two receivers, one slow, two moves in a row (160x120 -> 1280x720 ->
    1920x1080): the second move waits until the slow receiver left the first ring
    and reached the second, so it does not follow straight into the third ring and
    skip the second one's frames."""
    reference, fast, slow = fast_and_slow_receivers(
        concat_sizes((20, "160x120"), (3, "1280x720"), (3, "1920x1080")), "capstwo")
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert slow.returncode == 0, slow.stderr[-3000:]
    assert_unbroken_end(reference, checksums(fast.stdout))
    assert_unbroken_end(reference, checksums(slow.stdout))


def test_a_drained_receiver_that_does_not_follow_holds_no_move_up():
    """A receiver that read the old ring to its end and stays attached without
    following (a program on the low-level ShmConsumer, whose iteration ends at the
    old ring's CLOSED; shmringsrc and FrameReader follow) does not stop the sender at
    the move for good: once it drained the old ring, the sender waits for it at most
    a short grace, moves on and ends."""
    src = concat_sizes((20, "160x120"), (3, "1280x720"))
    name = unique("capsstay")
    code = ("import sys, shmring\n"
            "c = shmring.ShmConsumer(sys.argv[1], timeout=60)\n"
            "n = sum(1 for m in c if len(m) > 160 * 120 * 3)\n"  # the frames' records
            "print(n, c.handed_over(), flush=True)\n"
            "sys.stdin.readline()\n"  # attached until told
            "c.close()\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(os.environ["SHMRING_SOURCE_ROOT"], "python")
    reader = subprocess.Popen(["/usr/bin/python3", "-c", code, name], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    try:
        send = subprocess.run([GST_LAUNCH, "-q"] + (f"{src} ! shmringsink shm-name={name} "
                                                     "linger=1").split(),
                              capture_output=True, text=True, timeout=60, env=sender_env())
        assert send.returncode == 0, send.stderr[-3000:]
        out, err = reader.communicate(input="done\n", timeout=60)
        assert reader.returncode == 0, err[-3000:]
        # Every frame of the old ring, which was handed over.
        assert out.split() == ["20", "True"], out + err[-3000:]
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")


def test_caps_change_beyond_a_set_capacity_is_still_an_error():
    """A capacity the user set is kept: larger frames than it holds are an error
    that names the property. (2 MiB: the 20 small frames fit without a receiver,
    one 1280x720 frame does not.)"""
    name = unique("capsfix")
    p = subprocess.run([GST_LAUNCH, "-q"] + (f"{concat_src('1280x720')} ! shmringsink "
                                              f"shm-name={name} capacity=2097152").split(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "does not fit in ring" in p.stderr and "capacity" in p.stderr, p.stderr[-3000:]
    assert not os.path.exists(f"/dev/shm/{name}")


POOL_CAPS = "video/x-raw,format=BGR,width=320,height=240,framerate=30/1"


def pool_sender(sink, *event):
    """Runs pool_sender.py with `sink` and the event arguments; returns (its
    checksumsink lines, its JSON result)."""
    p = subprocess.run([sys.executable, str(HERE / "pool_sender.py"), "--caps", POOL_CAPS,
                        "--sink", sink, *event], capture_output=True, text=True, timeout=120,
                       env=sender_env())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return checksums(p.stdout), json.loads(p.stdout.strip().splitlines()[-1])


def pool_event_through_ring(*event):
    """The same pool_sender.py stream into checksumsink (the reference, no ring) and
    into shmringsink, read by shmringsrc in another process: returns (reference,
    received checksums, the shmringsink sender's JSON result)."""
    reference, _ = pool_sender("checksumsink sync=false", *event)
    name = unique("pool")
    recv = subprocess.Popen([GST_LAUNCH, "-q", "shmringsrc", f"shm-name={name}", "!",
                             "checksumsink"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        _, res = pool_sender(f"shmringsink sync=false shm-name={name}", *event)
        out, err = recv.communicate(timeout=120)
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.communicate()
        if os.path.exists(f"/dev/shm/{name}"):  # a sender killed by its guard
            os.unlink(f"/dev/shm/{name}")
    assert recv.returncode == 0, err[-3000:]
    return reference, checksums(out), res


def test_flushing_seek_with_the_pool_active():
    """A flushing seek in the sender while upstream writes into the ring pool (a
    ring sized from the caps: four 320x240 frames): the frame in flight is given up
    unsent, and so is the first one videotestsrc makes after the seek; the receiver
    (whose checksumsink keeps its last frame, as every sink does) gets exactly the
    frames the sink rendered, byte-exact, to EOS, and the frames after the seek still
    go in place. As two PAD records those given-up places left no room for a next
    frame while the receiver's sink kept the one before them: the sender waited for
    space forever (the pool now takes the newest one back: ShmProducer::Retract)."""
    event = ("--frames", "60", "--at", "31", "--seek", "10")
    reference, got, res = pool_event_through_ring(*event)
    assert len(reference) == 30 + 50
    assert got == reference
    before, after = res["stats_at_event"], res["stats"]
    assert before["in-place"] + before["copied"] == 30, res
    # Every frame after the seek in place but perhaps the first.
    assert after["in-place"] - before["in-place"] >= 50 - 1, res
    assert after["in-place"] + after["copied"] == 80, res


def test_renegotiation_moves_upstream_to_a_new_pool():
    """The capsfilter in front of the sink changes its caps in mid-stream (320x240 to
    160x120): videotestsrc renegotiates caps and allocation (RECONFIGURE) and takes
    the pool the sink offers for the new caps. Every frame arrives byte-exact and
    the frames after the change go in place."""
    recaps = POOL_CAPS.replace("width=320,height=240", "width=160,height=120")
    event = ("--frames", "60", "--at", "30", "--recaps", recaps)
    reference, got, res = pool_event_through_ring(*event)
    assert len(reference) == 60
    assert got == reference
    before, after = res["stats_at_event"], res["stats"]
    assert after["in-place"] - before["in-place"] >= 31 - 1, res
    assert after["in-place"] + after["copied"] == 60, res
