"""Receiver timing and stream semantics in real two-process pipelines: a synced
video sink (fpsdisplaysink over fakesink sync=true qos=true max-lateness=20ms)
behind shmringsrc renders on time after a late join to a live stream and after a
sender restart; a sender that stops without EOS is an error at the receiver; a
second receiver is refused at once. Bounds on lag are generous (seconds); what
they catch is a receiver that stays seconds behind.
Needs GST_PLUGIN_PATH to point at the built plugin (meson test sets it)."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1] / "python"))  # shmring.layout for header words
GST_LAUNCH = shutil.which("gst-launch-1.0")
PY = sys.executable
SINK = ('fpsdisplaysink text-overlay=false signal-fps-measurements=false '
        'video-sink="fakesink name=fs sync=true qos=true max-lateness=20000000 '
        'signal-handoffs=true"')
CAM = "videotestsrc is-live=true ! video/x-raw,format=BGR,width=320,height=240,framerate=30/1"

pytestmark = pytest.mark.skipif(GST_LAUNCH is None, reason="gst-launch-1.0 not installed")


def unique(tag):
    return f"j-{tag}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def launch(desc, **kw):
    return subprocess.Popen([GST_LAUNCH, "-q"] + desc.split(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def probe(desc, count=0, guard=90.0, env=None):
    return subprocess.Popen([PY, str(HERE / "render_probe.py"), "--count", str(count),
                             "--guard", str(guard), desc],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def result_of(p, guard=120, stderr=None):
    """The receiver's JSON result; its stderr is appended to list ``stderr`` if given."""
    out, err = p.communicate(timeout=guard)
    if stderr is not None:
        stderr.append(err)
    assert out.strip(), f"receiver printed nothing (rc {p.returncode}):\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def wait_for_ring(name, proc):
    path = "/dev/shm/" + name
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.02)


def header_word(name, offset):
    """The 4-byte header word at ``offset`` of ring ``name`` (None: no ring)."""
    from shmring import layout
    try:
        with open("/dev/shm/" + name, "rb") as f:
            hdr = f.read(layout.HEADER_SIZE)
    except FileNotFoundError:
        return None
    return int.from_bytes(hdr[offset:offset + 4], "little")


def producer_flags(name):
    from shmring import layout
    return header_word(name, layout.PRODUCER_FLAGS_OFFSET)


def consumer_attached(name):
    from shmring import layout
    return bool((header_word(name, layout.CONSUMER_FLAGS_OFFSET) or 0) & layout.CONSUMER_ATTACHED)


def kill_all(*procs):
    """Kills and reaps each process given that still runs (None: skipped)."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup(name):
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


def run_with_sender(name, sender, receiver, count, guard=90.0, settle=None):
    """Runs gst-launch sender ``sender`` and, once its ring exists and ``settle()``
    (if given) returned, the receiving pipeline ``receiver`` under render_probe until
    ``count`` renders; stops the sender. The receiver's result, checked error-free."""
    tx = launch(sender)
    try:
        wait_for_ring(name, tx)
        if settle is not None:
            settle()
        res = result_of(probe(receiver, count=count, guard=guard))
    finally:
        stop(tx)
        cleanup(name)
    assert res["error"] is None, res["error"]
    return res


def test_late_joiner_on_a_live_stream_renders_in_time():
    """Receiver opened 4 s after a live sender: it starts at frames published after
    it attached (not the ~4 s backlog) and its synced sink renders them on time."""
    from shmring import layout
    name = unique("late")

    def settle():
        time.sleep(4.0)  # let a backlog build up in the 32 MiB ring
        if not producer_flags(name) & layout.PRODUCER_LIVE:
            pytest.skip("this shmringsink does not mark live streams (producer_flags LIVE)")

    t0 = time.monotonic_ns()  # the sender's running time starts after this
    res = run_with_sender(name, f"{CAM} ! shmringsink shm-name={name}",
                          f"shmringsrc shm-name={name} ! {SINK}", 60, settle=settle)
    bufs = res["buffers"]
    assert len(bufs) == 60
    # lag = (time since the sender started) - pts: an upper bound of the real lag.
    lags = [(mono - t0 - pts) / 1e9 for pts, mono, _ in bufs]
    assert bufs[0][0] > 3.0e9, f"started on the backlog: first pts {bufs[0][0] / 1e9:.3f} s"
    assert max(lags) < 2.0, f"receiver lags the live sender: {max(lags):.2f} s"
    st = res["stats"]
    assert st["rendered"] >= 59 and st["dropped"] <= st["rendered"] // 4, st


@pytest.mark.parametrize("live", ["true", "false"])
def test_reconnect_renders_the_restarted_stream_at_once(live):
    """Sender kill -9'd and restarted: the first new buffer is DISCONT and the new
    stream is rendered, not dropped as late against the old stream's timeline."""
    name = unique("reco")
    src = f"videotestsrc num-buffers=60 is-live={live} ! video/x-raw,format=BGR,width=320,height=240,framerate=30/1"
    # The receiver's element log (INFO: attach, reconnect, end of stream) goes with a
    # failure: this failed once under load without saying where the receiver stood.
    rx_env = dict(os.environ, GST_DEBUG="shmringsrc:4", GST_DEBUG_NO_COLOR="1")
    rx = probe(f"shmringsrc shm-name={name} reconnect=true ! {SINK}", count=0, guard=90,
               env=rx_env)
    rx_err = []
    tx2 = None
    try:
        tx1 = launch(f"{CAM} ! shmringsink shm-name={name}")
        wait_for_ring(name, tx1)
        time.sleep(3.0)
        tx1.kill()  # SIGKILL: the ring stays, not CLOSED
        tx1.wait()
        time.sleep(2.0)
        restart = time.monotonic_ns()
        tx2 = launch(f"{src} ! shmringsink shm-name={name}")
        res = result_of(rx, stderr=rx_err)
        assert tx2.wait(timeout=60) == 0, tx2.communicate()[1][-2000:]
    finally:
        kill_all(rx, tx2)
        cleanup(name)
    log = "".join(rx_err)[-4000:]
    assert res["error"] is None, res["error"]
    assert res["eos"], (f"the restarted sender's EOS did not end the receiver "
                        f"({len(res['buffers'])} buffers, stats {res['stats']}); its log:\n{log}")
    after = [b for b in res["buffers"] if b[1] > restart]
    assert after, "nothing rendered after the restart"
    assert after[0][2], "the first buffer after the restart is not DISCONT"
    # Nearly all 60 new frames render (a frozen sink renders none of them).
    assert len(after) >= 45, f"only {len(after)} of 60 restarted frames rendered: {res['stats']}"


def test_sender_error_is_a_cut_short_stream_not_eos():
    """identity error-after=50 in the sender: the ring is CLOSED without an EOS
    record; the receiver errors (non-zero exit) saying the stream was cut short."""
    name = unique("cut")
    env = dict(os.environ, GST_DEBUG="shmringsrc:4")
    rx = subprocess.Popen([GST_LAUNCH, "shmringsrc", f"shm-name={name}", "!", "fakesink"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # The receiver waits first, so it attaches while the sender is streaming.
        time.sleep(1.0)
        tx = launch(f"{CAM} ! identity error-after=50 ! shmringsink shm-name={name}")
        assert tx.wait(timeout=60) != 0
        out, err = rx.communicate(timeout=60)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
        cleanup(name)
    assert rx.returncode != 0, out[-2000:]
    assert "cut short" in out + err, (out + err)[-3000:]


def test_second_receiver_is_refused_at_once_naming_the_first():
    """20 tries: a second receiver fails its state change with "already has a
    receiver (pid N)" in the main message and exits; it never hangs."""
    name = unique("two")
    tx = launch(f"{CAM} ! shmringsink shm-name={name}")
    first = None
    try:
        wait_for_ring(name, tx)
        first = launch(f"shmringsrc shm-name={name} ! fakesink")
        while not consumer_attached(name):
            assert first.poll() is None
            time.sleep(0.02)
        for i in range(20):
            second = subprocess.run([GST_LAUNCH, "shmringsrc", f"shm-name={name}", "!",
                                     "fakesink"], capture_output=True, text=True, timeout=60)
            assert second.returncode != 0, f"try {i}: {second.stdout[-1000:]}"
            assert f"already has a receiver (pid {first.pid})" in second.stdout + second.stderr, \
                f"try {i}: {(second.stdout + second.stderr)[-2000:]}"
    finally:
        for p in (first, tx):
            if p is not None:
                stop(p)
        cleanup(name)


@pytest.mark.parametrize("live", ["false", "true"])
def test_latest_skip_renders_the_skipped_to_frame_when_it_arrives(live):
    """latest=true behind a slow element (identity sleeping 1.2 s per frame) fed by a
    2 fps live sender: every pull skips ahead. The sender's spacing from the frame
    before says nothing about when a skipped-to frame reaches the sink (it would be
    late by the age of the newest frame, up to 500 ms, or, with is-live=true and the
    1.2 s the slow element does not report as latency, dropped); rebased, every
    rendered frame renders when it arrives: neither waited for (early) nor late.
    The first two are left out: the first QoS report from the sink, which the
    rebase needs, comes with the second buffer of a segment."""
    name = unique("latest")
    res = run_with_sender(
        name, "videotestsrc is-live=true ! "
        f"video/x-raw,format=BGR,width=64,height=48,framerate=2/1 ! shmringsink shm-name={name}",
        f"shmringsrc shm-name={name} latest=true is-live={live} ! "
        f"identity sleep-time=1200000 ! {SINK}", 10, guard=40)
    assert len(res["buffers"]) == 10, f"only {len(res['buffers'])} of 10 rendered: {res}"
    # Two or more frames arrive during each 1.2 s pull: every pull skips, and a
    # skipped-to buffer is DISCONT.
    assert all(b[2] for b in res["buffers"][1:]), res["buffers"]
    for i, (due, rendered, waited) in enumerate(res["timing"][2:], start=2):
        assert due >= 0 and rendered >= 0, res["timing"]
        assert waited < 150e6, \
            f"frame {i} waited {waited / 1e6:.0f} ms in the sink (early): {res['timing']}"
        assert rendered - due < 150e6, \
            f"frame {i} rendered {(rendered - due) / 1e6:.0f} ms late: {res['timing']}"


@pytest.mark.parametrize("order", ["receiver-first", "sender-first"])
def test_short_stream_reaches_a_receiver_started_at_the_same_time(order):
    """A 200-buffer audiotestsrc sender (non-live: it can create, fill, close and
    leave its ring within the receiver's polling interval) and a receiver started
    together, 10 cycles: every receiver gets all 200 buffers and EOS, both exit 0
    (the sink, sync=false, finishes in milliseconds; it lingers with its ring for
    the first receiver; nobody waits forever)."""
    for cycle in range(10):
        name = unique(f"short{cycle}")
        sender = [GST_LAUNCH, "-q", "audiotestsrc", "num-buffers=200", "!",
                  "audio/x-raw,format=S16LE,rate=48000,channels=2", "!",
                  "shmringsink", f"shm-name={name}", "sync=false"]
        receiver = [GST_LAUNCH, "-q", "shmringsrc", f"shm-name={name}", "!",
                    "checksumsink", "sync=false"]
        first, second = (receiver, sender) if order == "receiver-first" else (sender, receiver)
        p1 = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        p2 = None
        try:
            if order == "sender-first":
                # The sender has its ring and (in milliseconds) its whole stream in it:
                # without linger it would be gone before the receiver looks.
                wait_for_ring(name, p1)
                time.sleep(1.0)
            p2 = subprocess.Popen(second, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
            rx, tx = (p1, p2) if order == "receiver-first" else (p2, p1)
            rx_out, rx_err = rx.communicate(timeout=30)
            tx_out, tx_err = tx.communicate(timeout=30)
        finally:
            kill_all(p1, p2)
            cleanup(name)
        assert tx.returncode == 0, f"cycle {cycle}: sender exit {tx.returncode}: {tx_err[-2000:]}"
        assert rx.returncode == 0, f"cycle {cycle}: receiver exit {rx.returncode}: {rx_err[-2000:]}"
        got = [line for line in rx_out.splitlines() if len(line.split()) == 2]
        assert len(got) == 200, f"cycle {cycle}: received {len(got)} of 200 buffers"


def test_first_buffer_after_a_gap_is_discont():
    """wait-for-space=false with a ring of four frames and a receiver slowed to
    10 fps by identity: the sender drops frames; every buffer the receiver pushes
    after a gap in the stream (pts jumps by more than a frame) is DISCONT, the
    others are not (decoders resynchronise on DISCONT)."""
    name = unique("gap")
    res = run_with_sender(
        name, f"{CAM} ! shmringsink shm-name={name} wait-for-space=false capacity=1048576",
        f"shmringsrc shm-name={name} ! identity sleep-time=100000 ! "
        "fakesink name=fs sync=false signal-handoffs=true", 40, guard=60)
    bufs = res["buffers"]
    assert len(bufs) == 40
    frame = 1e9 / 30
    gaps = 0
    for i in range(1, len(bufs)):
        gap = bufs[i][0] - bufs[i - 1][0] > 1.5 * frame
        gaps += gap
        assert bufs[i][2] == gap, \
            f"buffer {i}: pts step {(bufs[i][0] - bufs[i - 1][0]) / 1e6:.1f} ms, DISCONT {bufs[i][2]}"
    assert gaps > 0, "the sender dropped nothing: the test saw no gap"


def test_sender_stopped_without_eos_is_a_cut_short_error():
    """A live sender stopped with Ctrl-C without -e (no EOS: the ring is CLOSED
    without an EOS record) ends the receiving gst-launch with an error saying the
    stream was cut short and a non-zero exit; with -e it is a clean EOS (exit 0)."""
    for with_eos in (False, True):
        name = unique("stop")
        tx = subprocess.Popen([GST_LAUNCH, "-q"] + (["-e"] if with_eos else []) +
                              f"{CAM} ! shmringsink shm-name={name}".split(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rx = None
        try:
            wait_for_ring(name, tx)
            rx = subprocess.Popen([GST_LAUNCH, "shmringsrc", f"shm-name={name}", "!",
                                   "fakesink", "sync=false"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while not consumer_attached(name):
                assert rx.poll() is None, rx.communicate()[0][-2000:]
                time.sleep(0.02)
            tx.send_signal(signal.SIGINT)
            tx.wait(timeout=30)
            out, err = rx.communicate(timeout=30)
        finally:
            kill_all(rx, tx)
            cleanup(name)
        if with_eos:
            assert rx.returncode == 0, (out + err)[-2000:]
            assert "cut short" not in out + err
        else:
            assert rx.returncode != 0, (out + err)[-2000:]
            assert "stream was cut short" in out + err, (out + err)[-2000:]


RESTARTING_RECEIVER = r'''
import sys, gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
name, cycles = sys.argv[1], int(sys.argv[2])
for _ in range(cycles):
    pipe = Gst.parse_launch(f"shmringsrc shm-name={name} ! fakesink name=fs signal-handoffs=true")
    count = [0]
    pipe.get_by_name("fs").connect("handoff", lambda *a: count.__setitem__(0, count[0] + 1))
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(60 * Gst.SECOND,
                                            Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    kind = "none" if msg is None else ("eos" if msg.type == Gst.MessageType.EOS else "error")
    print(kind, count[0], flush=True)
'''


def test_receiver_restarted_right_after_eos_waits_for_the_next_stream():
    """A receiving app that restarts its pipeline as soon as it sees EOS, against a
    sender run 5 times in a row under the same name: every cycle gets a whole new
    stream (30 buffers and EOS), never the old CLOSED ring it already read."""
    name = unique("again")
    rx = subprocess.Popen([PY, "-c", RESTARTING_RECEIVER, name, "5"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for run in range(5):
            tx = subprocess.run([GST_LAUNCH, "-q", "videotestsrc", "num-buffers=30", "!",
                                 "video/x-raw,format=GRAY8,width=64,height=48", "!",
                                 "shmringsink", f"shm-name={name}"],
                                capture_output=True, text=True, timeout=60)
            assert tx.returncode == 0, f"sender run {run}: {tx.stderr[-2000:]}"
        out, err = rx.communicate(timeout=120)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
        cleanup(name)
    cycles = [line.split() for line in out.splitlines()]
    assert cycles == [["eos", "30"]] * 5, f"{cycles}\n{err[-2000:]}"
