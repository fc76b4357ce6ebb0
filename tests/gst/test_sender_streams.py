"""What a sender's stream means survives the ring, in real two-process pipelines
(sender and receiver gst-launch-1.0 processes running at the same time):
  * B-frame H.264 (x264enc defaults: the first DTS lie before the segment start)
    recorded behind shmringsrc with mp4mux decodes to every frame, with sample
    durations of about one frame;
  * opusenc's audio clipping meta (priming samples, end padding) reaches opusdec:
    the decoded audio equals a direct opusenc ! opusdec;
  * a GstVideoMeta (padded rows: a stride wider than the row) reaches the
    receiver's buffers;
  * caps with a memory feature other than system memory are refused at negotiation
    with a message that says so, while the same caps in system memory negotiate.
No timed assertions: every process runs to EOS (or its error).
Needs GST_PLUGIN_PATH to point at the built plugin (meson test sets it)."""
import hashlib
import os
import pathlib
import shutil
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

pytestmark = pytest.mark.skipif(GST_LAUNCH is None, reason="gst-launch-1.0 not installed")
Gst.init(None)


def need(*factories):
    missing = [f for f in factories if Gst.ElementFactory.find(f) is None]
    if missing:
        pytest.skip("not installed: " + ", ".join(missing))


def unique(tag):
    return f"s-{tag}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def launch(desc, quiet=True):
    return subprocess.Popen([GST_LAUNCH] + (["-q"] if quiet else []) + desc.split(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p, what, guard=180):
    out, err = p.communicate(timeout=guard)
    assert p.returncode == 0, f"{what} exited {p.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
    return out


def cleanup(name):
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


def two_process(name, sender, receiver):
    """Runs receiver (started first: it waits for the ring) and sender together."""
    rx = launch(receiver)
    tx = launch(sender)
    try:
        finish(tx, "sender")
        return finish(rx, "receiver")
    finally:
        for p in (rx, tx):
            if p.poll() is None:
                p.kill()
                p.wait()
        cleanup(name)


def pull(desc):
    """Buffers reaching `appsink name=out` of an in-process pipeline run to EOS."""
    pipe = Gst.parse_launch(desc)
    sink = pipe.get_by_name("out")
    sink.set_property("sync", False)
    bufs = []
    pipe.set_state(Gst.State.PLAYING)
    try:
        while True:
            sample = sink.emit("try-pull-sample", 120 * Gst.SECOND)
            if sample is None:
                break
            bufs.append(sample.get_buffer())
        msg = pipe.get_bus().pop_filtered(Gst.MessageType.ERROR)
        assert msg is None, msg.parse_error()
        assert sink.get_property("eos"), "no EOS within 120 s"
    finally:
        pipe.set_state(Gst.State.NULL)
    return bufs


def sha(buf):
    ok, info = buf.map(Gst.MapFlags.READ)
    assert ok
    try:
        return hashlib.sha1(bytes(info.data)).hexdigest()
    finally:
        buf.unmap(info)


def test_b_frame_h264_recorded_behind_the_receiver_keeps_every_frame(tmp_path):
    """x264enc's first DTS lie before its segment start; they must reach mp4mux as
    such (not as 'none'), or the file decodes to 298 of 300 frames and one sample
    lasts hundreds of hours."""
    need("x264enc", "avdec_h264", "mp4mux", "qtdemux", "h264parse")
    name = unique("dts")
    rec = tmp_path / "rec.mp4"
    two_process(name,
                "videotestsrc num-buffers=300 ! video/x-raw,width=320,height=240,"
                f"framerate=30/1 ! x264enc ! h264parse ! shmringsink shm-name={name}",
                f"shmringsrc shm-name={name} ! h264parse ! mp4mux ! filesink location={rec}")
    decoded = pull(f"filesrc location={rec} ! qtdemux ! h264parse ! avdec_h264 ! "
                   "appsink name=out")
    assert len(decoded) == 300
    samples = pull(f"filesrc location={rec} ! qtdemux ! appsink name=out")
    frame = Gst.SECOND // 30
    durations = [b.duration for b in samples]
    assert len(durations) == 300
    assert all(0 < d <= 2 * frame for d in durations), \
        f"sample durations beyond one frame: {sorted(durations)[-3:]}"
    # Presentation order is every frame once, one frame apart.
    pts = sorted(b.pts for b in decoded)
    assert all(abs((b - a) - frame) <= 1_000_000 for a, b in zip(pts, pts[1:])), pts[:8]


def test_opus_clipping_meta_reaches_the_decoder():
    """opusenc marks priming samples (first buffer) and end padding (last) with
    GstAudioClippingMeta; opusdec behind the ring must clip exactly as it does
    right behind opusenc."""
    need("opusenc", "opusdec")
    src = "audiotestsrc num-buffers=60 wave=sine freq=440 ! audio/x-raw,rate=48000,channels=1"
    direct = [sha(b) for b in pull(f"{src} ! opusenc ! opusdec ! appsink name=out")]
    name = unique("opus")
    out = two_process(name, f"{src} ! opusenc ! shmringsink shm-name={name}",
                      f"shmringsrc shm-name={name} ! opusdec ! checksumsink")
    through = [line.split()[-1] for line in out.splitlines() if len(line.split()) == 2]
    assert len(through) == len(direct)
    assert through[0] == direct[0], "first buffer: priming samples not clipped"
    assert through[-1] == direct[-1], "last buffer: end padding not clipped"
    assert through == direct


def with_padded_sender(name, receive):
    """Runs padded_sender.py (10 padded GRAY8 frames into ring `name`) while
    `receive()` reads them here; returns (what receive returned, the SHA-1s the
    sender printed). Kills the sender and removes the ring whatever happens."""
    sender = subprocess.Popen([PY, str(HERE / "padded_sender.py"), name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        received = receive()
        sent, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err[-3000:]
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        cleanup(name)
    return received, sent.split()


def test_video_meta_of_padded_frames_reaches_the_receiver():
    """Frames whose rows are padded (stride 80 for 64 GRAY8 pixels) travel with
    their GstVideoMeta: the receiver's buffers say stride 80, and the pixels read
    through it are the sender's frames."""
    need("appsrc")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import GstVideo
    name = unique("vmeta")
    bufs, expected = with_padded_sender(
        name, lambda: pull(f"shmringsrc shm-name={name} ! appsink name=out"))
    assert len(expected) == 10 and len(bufs) == 10
    got = []
    for b in bufs:
        meta = GstVideo.buffer_get_video_meta(b)
        assert meta is not None, "the video meta did not arrive"
        assert (meta.width, meta.height, meta.n_planes) == (64, 4, 1)
        assert (meta.offset[0], meta.stride[0]) == (0, 80)
        ok, info = b.map(Gst.MapFlags.READ)
        data = bytes(info.data)
        b.unmap(info)
        got.append(hashlib.sha1(b"".join(data[y * 80:y * 80 + 64] for y in range(4))).hexdigest())
    assert got == expected


def test_padded_frames_from_shmringsink_are_shaped_by_their_video_meta_in_frame_reader():
    """The same padded GRAY8 frames (rows 80 bytes apart, 64 wide) read by the Python
    FrameReader: each frame.array is the 4x64 image without its padding, as the
    sender hashed it (before, FrameReader ignored the meta and used stride 64)."""
    need("appsrc")
    sys.path.insert(0, os.path.join(os.environ.get("SHMRING_SOURCE_ROOT", HERE.parent.parent),
                                    "python"))
    import shmring
    name = unique("vmetapy")

    def read():
        got = []
        with shmring.FrameReader(name, timeout=120) as reader:
            for frame in reader:
                assert frame.array.shape == (4, 64) and frame.array.strides == (80, 1)
                got.append(hashlib.sha1(frame.array.tobytes()).hexdigest())
                del frame
        return got
    got, sent = with_padded_sender(name, read)
    assert got == sent and len(got) == 10


@pytest.mark.parametrize("feature", ["memory:GLMemory", "memory:DMABuf"])
def test_caps_in_other_memory_are_refused_at_negotiation(feature):
    """An upstream that offers only GL/DMABuf memory fails to negotiate, and the
    sink says why (system memory, what to insert) instead of a bare
    not-negotiated; its caps query answers such caps with nothing."""
    name = unique("mem")
    pipe = Gst.parse_launch(
        f"fakesrc num-buffers=1 sizetype=fixed sizemax=64 ! capsfilter "
        f"caps=video/x-raw({feature}),format=RGBA,width=4,height=4 ! shmringsink shm-name={name}")
    try:
        pipe.set_state(Gst.State.PLAYING)
        bus = pipe.get_bus()
        warnings = []
        while True:  # (a pipeline flushes its bus when it goes to NULL: read it first)
            msg = bus.timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.ERROR
                                         | Gst.MessageType.EOS | Gst.MessageType.WARNING)
            assert msg is not None and msg.type != Gst.MessageType.EOS, "negotiation did not fail"
            if msg.type == Gst.MessageType.ERROR:
                break
            warnings.append(msg.parse_warning()[0].message)
        while (msg := bus.pop_filtered(Gst.MessageType.WARNING)) is not None:
            warnings.append(msg.parse_warning()[0].message)
    finally:
        pipe.set_state(Gst.State.NULL)
        cleanup(name)
    said = [w for w in warnings if "needs buffers in system memory" in w and feature in w]
    assert said, f"no warning naming system memory and {feature}: {warnings}"
    sink = Gst.ElementFactory.make("shmringsink")
    pad = sink.get_static_pad("sink")
    offered = Gst.Caps.from_string(f"video/x-raw({feature}),format=RGBA,width=8,height=8")
    assert pad.query_caps(offered).is_empty()
    assert not pad.query_accept_caps(offered)
    plain = Gst.Caps.from_string("video/x-raw,format=RGBA,width=8,height=8")
    assert pad.query_accept_caps(plain)
    both = Gst.Caps.from_string(f"video/x-raw({feature}),format=RGBA; video/x-raw,format=RGBA")
    answer = pad.query_caps(both)
    assert answer.get_size() == 1
    assert answer.get_features(0).contains("memory:SystemMemory")


def test_system_memory_caps_negotiate_through_the_templates():
    """The same pipeline in system memory runs, and shmringsrc's output negotiates
    with a downstream that asks for system memory explicitly."""
    name = unique("sysmem")
    out = two_process(
        name,
        "videotestsrc num-buffers=5 ! capsfilter caps=video/x-raw(memory:SystemMemory),"
        f"format=GRAY8,width=16,height=8 ! shmringsink shm-name={name}",
        f"shmringsrc shm-name={name} ! capsfilter caps=video/x-raw(memory:SystemMemory) ! "
        "checksumsink")
    assert len([line for line in out.splitlines() if len(line.split()) == 2]) == 5


def test_eos_after_a_sender_error_reaches_the_receiver_as_cut_short():
    """identity error-after=50: the source posts its flow error and pushes EOS,
    which the sink receives (the sender app lets the pipeline drain). That EOS
    follows an error of the sender's pipeline: the ring is closed without an EOS
    record and the receiver fails saying the stream was cut short, instead of a
    clean EOS after 49 buffers."""
    name = unique("cut")
    rx = subprocess.Popen([GST_LAUNCH, "shmringsrc", f"shm-name={name}", "!", "fakesink"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tx = subprocess.Popen([PY, str(HERE / "error_sender.py"), name], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        _, tx_err = tx.communicate(timeout=120)
        assert tx.returncode == 1, f"sender: {tx.returncode}\n{tx_err[-2000:]}"
        out, err = rx.communicate(timeout=120)
    finally:
        for p in (rx, tx):
            if p.poll() is None:
                p.kill()
                p.wait()
        cleanup(name)
    assert rx.returncode != 0, "the receiver ended cleanly:\n" + out[-2000:]
    assert "cut short" in out + err, (out + err)[-3000:]
