"""FrameReader on profile-1 rings written by FrameWriter (Python) and by the C++ peer."""
from __future__ import annotations

import contextlib
import subprocess
import threading
from typing import Iterator, List

import numpy as np
import pytest

from conftest import peer_path
from shmring import (FrameReader, FrameWriter, RingInterruptedError, ViewInUseError, framing,
                     layout)
from shmring.caps import video_layout

# Blocking reads run through the native consume path and the pure-Python one.
pytestmark = pytest.mark.usefixtures("wait_impl")


def caps_for(fmt: str, w: int, h: int) -> str:
    return (f"video/x-raw, format=(string){fmt}, width=(int){w}, height=(int){h}, "
            "framerate=(fraction)30/1")


def frame_bytes(fmt: str, w: int, h: int, i: int) -> bytes:
    size = video_layout(fmt, w, h).size
    return bytes((i * 7 + j) & 0xFF for j in range(size))


def test_writer_to_reader_exact_frames_timestamps_and_eos(ring_name):
    caps = caps_for("GRAY8", 4, 2)
    with FrameWriter(ring_name, 1 << 16, caps=caps) as w:
        for i in range(5):
            assert w.write(frame_bytes("GRAY8", 4, 2, i), pts=i * 1000, dts=None,
                           duration=1000, offset=i, offset_end=i + 1,
                           flags=0x40 if i == 0 else 0)
        with FrameReader(ring_name, timeout=0) as r:
            w.close()
            got = []
            for f in r:
                assert f.caps == caps
                assert (f.width, f.height, f.format) == (4, 2, "GRAY8")
                assert f.array.shape == (2, 4) and f.array.dtype == np.uint8
                assert not f.array.flags.writeable
                assert f.send_time_ns > 0
                got.append((bytes(f.data), f.pts, f.dts, f.duration, f.offset, f.offset_end,
                            f.flags))
            assert r.at_end
    assert got == [(frame_bytes("GRAY8", 4, 2, i), i * 1000, None, 1000, i, i + 1,
                    0x40 if i == 0 else 0) for i in range(5)]


def test_packed_bgr_with_row_padding(ring_name):
    w_, h_ = 5, 3  # rows of 15 bytes padded to 16
    data = bytearray(16 * 3)
    for y in range(3):
        for x in range(5):
            data[y * 16 + x * 3:y * 16 + x * 3 + 3] = bytes([y, x, 9])
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("BGR", w_, h_)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        w.write(bytes(data), pts=0)
        f = r.read_frame(timeout=5)
        assert f.array.shape == (3, 5, 3)
        assert f.array[2, 4].tolist() == [2, 4, 9]
        assert f.array.strides == (16, 3, 1)
        del f


def test_i420_planes_and_opencv_layout(ring_name):
    fmt, w_, h_ = "I420", 8, 4
    frame = frame_bytes(fmt, w_, h_, 3)
    with FrameWriter(ring_name, 1 << 12, caps=caps_for(fmt, w_, h_)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        w.write(frame)
        f = r.read_frame(timeout=5)
        y, u, v = f.planes
        assert (y.shape, u.shape, v.shape) == ((4, 8), (2, 4), (2, 4))
        assert y.tobytes() == frame[:32] and u.tobytes() == frame[32:40]
        assert v.tobytes() == frame[40:48]
        assert f.array.shape == (6, 8) and f.array.tobytes() == frame
        del f, y, u, v


def test_nv12_planes_and_odd_i420(ring_name):
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("NV12", 8, 4)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        w.write(frame_bytes("NV12", 8, 4, 1))
        w.set_caps(caps_for("I420", 5, 3))
        w.write(frame_bytes("I420", 5, 3, 2))
        f = r.read_frame(timeout=5)
        assert [p.shape for p in f.planes] == [(4, 8), (2, 4, 2)]
        assert f.planes[1][1, 3].tolist() == list(frame_bytes("NV12", 8, 4, 1)[32 + 8 + 6:][:2])
        f = r.read_frame(timeout=5)
        assert [p.shape for p in f.planes] == [(3, 5), (2, 3), (2, 3)]
        assert f.planes[0].strides == (8, 1)
        assert f.array.shape == (48,)  # padded rows: the raw bytes (use planes)
        del f


def test_latest_skips_to_the_newest_frame_keeping_its_caps(ring_name):
    a, b = caps_for("GRAY8", 4, 2), caps_for("GRAY8", 2, 2)
    with FrameWriter(ring_name, 1 << 14, caps=a) as w:
        w.write(frame_bytes("GRAY8", 4, 2, 0), pts=0)
        w.write(frame_bytes("GRAY8", 4, 2, 1), pts=1)
        w.set_caps(b)
        w.write(frame_bytes("GRAY8", 2, 2, 2), pts=2)
        w.write(frame_bytes("GRAY8", 2, 2, 3), pts=3)
        with FrameReader(ring_name, timeout=0, latest=True) as r:
            f = r.read_frame(timeout=5)
            assert f.pts == 3 and f.caps == b and f.array.shape == (2, 2)
            assert bytes(f.data) == frame_bytes("GRAY8", 2, 2, 3)
            assert r.skipped == 3
            w.set_caps(a)
            w.write(frame_bytes("GRAY8", 4, 2, 4), pts=4)
            f = r.read_frame(timeout=5)
            assert f.pts == 4 and f.caps == a and f.array.shape == (2, 4)
            del f
            w.close()
            assert r.read_frame(timeout=5) is None and r.at_end


def test_latest_delivers_the_last_frame_before_eos(ring_name):
    with FrameWriter(ring_name, 1 << 14, caps=caps_for("GRAY8", 4, 2)) as w, \
            FrameReader(ring_name, timeout=0, latest=True) as r:
        for i in range(4):
            w.write(frame_bytes("GRAY8", 4, 2, i), pts=i)
        w.close()
        assert [f.pts for f in r] == [3]
        assert r.skipped == 3


def test_frames_kept_across_one_iteration_while_a_writer_streams(ring_name):
    """The usual loop (`img = frame.array` kept until the next pass) never corrupts data."""
    n, fmt = 200, "GRAY8"
    frame_size = video_layout(fmt, 64, 8).size

    def write():
        with FrameWriter(ring_name, 4 * (frame_size + 128), caps=caps_for(fmt, 64, 8)) as w:
            for i in range(n):
                assert w.write(frame_bytes(fmt, 64, 8, i), pts=i, timeout=30)

    with _StartWriterThenRead(ring_name, write) as (r, t):
        previous = None
        count = 0
        for frame in r:
            img = frame.array
            if previous is not None:  # still intact one frame later
                assert previous.tobytes() == frame_bytes(fmt, 64, 8, count - 1)
            assert img.tobytes() == frame_bytes(fmt, 64, 8, count)
            previous = img
            count += 1
        del previous, img, frame
        t.join(30)
    assert count == n


class _StartWriterThenRead:
    """Starts ``write`` in a thread and opens a FrameReader that waits for the ring."""

    def __init__(self, name, write):
        self.name, self.write = name, write

    def __enter__(self):
        self.thread = threading.Thread(target=self.write)
        self.thread.start()
        self.reader = FrameReader(self.name, timeout=30)
        return self.reader, self.thread

    def __exit__(self, *exc):
        self.reader.close()
        self.thread.join(30)


# The blocked-writer cases: GRAY8 64x8 frames into a ring with room for four.
SMALL = ("GRAY8", 64, 8)
SMALL_RING = 4 * (video_layout(*SMALL).size + 128)


@contextlib.contextmanager
def _streaming_writer(ring_name: str, timeout: float) -> Iterator[threading.Event]:
    """A FrameWriter on ``ring_name`` (SMALL_RING bytes, SMALL frames) whose thread
    writes frames 0..49 (``frame_bytes``, pts i, each write waiting up to ``timeout``
    s for space) until a write fails or the yielded event is set. On the way out the
    event is set, the writer interrupted (a write waiting for space ends), the thread
    joined and the writer closed."""
    writer = FrameWriter(ring_name, SMALL_RING, caps=caps_for(*SMALL))
    stop = threading.Event()

    def write() -> None:
        try:
            for i in range(50):
                if not writer.write(frame_bytes(*SMALL, i), pts=i, timeout=timeout) or \
                        stop.is_set():
                    return
        except RingInterruptedError:
            pass  # the end of the test: still waiting for space

    t = threading.Thread(target=write)
    t.start()
    try:
        yield stop
    finally:
        stop.set()
        writer.producer.interrupt()
        t.join(30)
        writer.producer.close()


def _hold_until_the_writer_waits(r: FrameReader, kept: List[object]) -> None:
    """Reads every frame into ``kept`` (holding it) until the writer waits for space
    and nothing is left to read: the ring is full of frames ``r`` holds."""
    ring = r._ring
    while not (ring.producer_flags & layout.PRODUCER_WAITING and not ring.has_data()):
        if ring.has_data():
            kept.append(r.read_frame(timeout=5))
    assert kept


def test_keeping_every_frame_with_a_blocked_writer_is_an_error(ring_name):
    kept = []
    with _streaming_writer(ring_name, timeout=10) as stop:
        with FrameReader(ring_name, timeout=5) as r:
            with pytest.raises(ViewInUseError, match="still referenced"):
                for frame in r:
                    kept.append(frame.array)  # never copied: the ring fills up
            # Every kept frame is still intact (nothing was reused under it).
            for i, arr in enumerate(kept):
                assert arr.tobytes() == frame_bytes(*SMALL, i)
            stop.set()
            kept.clear()
            del frame


def test_owner_word_looks_are_not_taken_for_a_hoarding_reader(ring_name, monkeypatch):
    # The reader holds every frame and the writer waits for space. The owner word is
    # then marked OWNER_DIED while the writer lives (as after a fork): looks come at
    # 1 ms doubling. Two looks with the head unchanged are not a whole liveness slice
    # of waiting, so no ViewInUseError (the slice is made very long here so that no
    # clock is involved: the read times out). Fails when every look runs the hoarding
    # check (ViewInUseError at the second look, a millisecond after the mark).
    from shmring import _futex, frames
    monkeypatch.setattr(frames, "_HOARDING_S", 1e9, raising=False)
    kept: List[object] = []
    with _streaming_writer(ring_name, timeout=30) as stop:
        with FrameReader(ring_name, timeout=5) as r:
            _hold_until_the_writer_waits(r, kept)
            ring = r._ring
            checks = []
            consumer = r._consumer
            check = consumer._check_producer
            monkeypatch.setattr(consumer, "_check_producer",
                                lambda ring, force: (checks.append(force), check(ring, force)))
            ring._w[layout.PRODUCER_OWNER_WORD] = layout.OWNER_WAITERS | layout.OWNER_DIED
            _futex.wake_word(ring._owner_address)
            assert r.read_frame(timeout=0.3) is None  # timed out, no ViewInUseError
            assert len(checks) >= 2  # the owner word's looks came
            stop.set()
            kept.clear()


def test_a_reader_holding_frames_of_a_dead_writer_gets_producer_dead(ring_name):
    # The reader holds every frame, the writer (another process) waits for space and
    # is killed. A stuck head with frames held looks like hoarding, but the producer is
    # looked at first: ProducerDeadError, not ViewInUseError. Fails when the hoarding
    # check runs before the look (the head was already seen stuck by the read before).
    import signal
    import textwrap
    from helpers import spawn_python
    from shmring import ProducerDeadError
    proc = spawn_python(textwrap.dedent('''
        import sys
        from shmring import FrameWriter
        w = FrameWriter(sys.argv[1], int(sys.argv[2]), caps=sys.argv[3])
        print("created", flush=True)
        for i in range(50):
            w.write(bytes(int(sys.argv[4])), pts=i, timeout=600)
    '''), ring_name, str(SMALL_RING), caps_for(*SMALL), str(video_layout(*SMALL).size))
    kept: List[object] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "created"
        with FrameReader(ring_name, timeout=5) as r:
            _hold_until_the_writer_waits(r, kept)
            assert r.read_frame(timeout=0) is None  # sees the head stuck
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            with pytest.raises(ProducerDeadError):
                r.read_frame(timeout=5)
            kept.clear()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_unset_timestamps_are_none(ring_name):
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("GRAY8", 4, 2)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        w.write(bytes(8))
        f = r.read_frame(timeout=5)
        assert (f.pts, f.dts, f.duration, f.offset, f.offset_end) == (None,) * 5
        del f


def test_unknown_kinds_are_skipped(ring_name):
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("GRAY8", 4, 2)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        w.write(bytes(8), pts=1)
        w.producer.write(framing.encode_message(99, b"future kind"))
        w.write(bytes(8), pts=2)
        assert [r.read_frame(5).pts, r.read_frame(5).pts] == [1, 2]


@pytest.mark.parametrize("fmt,w,h", [("I420", 64, 48), ("BGR", 30, 20), ("GRAY8", 13, 7)])
def test_cpp_peer_frames_to_frame_reader(ring_name, fmt, w, h):
    peer = peer_path()
    count, change = 40, 20
    proc = subprocess.Popen([peer, "produce-frames", ring_name, "--count", str(count),
                             "--width", str(w), "--height", str(h), "--format", fmt,
                             "--capacity", "65536", "--caps-change-at", str(change),
                             "--wait-consumer-ms", "20000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with FrameReader(ring_name, timeout=20) as r:
            seen = 0
            for i, f in enumerate(r):
                width = w if i < change else w // 2
                assert f.caps == caps_for(fmt, width, h)
                assert (f.pts, f.duration, f.offset, f.offset_end) == (
                    i * 33333333, 33333333, i, i + 1)
                assert f.dts is None and f.flags == (0x40 if i == 0 else 0)
                assert bytes(f.data) == frame_bytes(fmt, width, h, i)
                if fmt == "BGR":
                    assert f.array.shape == (h, width, 3)
                elif fmt == "GRAY8":
                    assert f.array.shape == (h, width)
                else:
                    assert f.array.shape == (h * 3 // 2, width)
                seen += 1
            assert seen == count and r.at_end
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("fmt,w,h,shape", [("BGR", 6, 4, (4, 6, 3)), ("GRAY8", 5, 3, (3, 5)),
                                           ("I420", 8, 4, (6, 8)), ("I420", 6, 3, None)])
def test_array_fast_path_matches_planes_and_bytes(ring_name, fmt, w, h, shape):
    size = video_layout(fmt, w, h).size
    with FrameWriter(ring_name, 1 << 14, caps=caps_for(fmt, w, h)) as wr, \
            FrameReader(ring_name, timeout=0) as r:
        for i in range(3):
            assert wr.write(frame_bytes(fmt, w, h, i), pts=i)
        for i in range(3):
            f = r.read_frame(5)
            arr = f.array
            assert arr is f.array and not arr.flags.writeable
            assert arr.shape == (shape if shape is not None else (size,))
            if f.layout.packed:
                assert f.planes[0] is arr
            sent = np.ndarray(arr.shape, arr.dtype, frame_bytes(fmt, w, h, i), 0, arr.strides)
            assert np.array_equal(arr, sent)
            assert f.pts == i and f.dts is None
            del arr, f


def test_array_of_a_short_frame_is_a_value_error(ring_name):
    with FrameWriter(ring_name, 1 << 14, caps=caps_for("BGR", 4, 4)) as wr, \
            FrameReader(ring_name, timeout=0) as r:
        # FrameWriter refuses such a frame; another writer (C++, a bug) may not.
        from shmring import framing
        assert wr.producer.write(framing.encode_caps(caps_for("BGR", 4, 4)))
        assert wr.producer.write(framing.encode_buffer(bytes(10)))
        f = r.read_frame(5)
        with pytest.raises(ValueError, match="need"):
            f.array
        del f


def test_video_caps_that_cannot_be_shaped_warn_instead_of_degrading_silently(ring_name):
    from shmring import FrameReader, FrameWriter
    with FrameWriter(ring_name, 4096, caps="video/x-raw,format=YUY2,width=4,height=2") as w:
        assert w.write(bytes(16), timeout=0)
        with FrameReader(ring_name, timeout=0) as r:
            with pytest.warns(RuntimeWarning, match="cannot shape frames"):
                frame = r.read_frame(timeout=5)
            assert frame is not None and frame.array.shape == (16,)
            del frame


def test_untyped_caps_from_a_frame_writer_shape_frames(ring_name):
    from shmring import FrameReader, FrameWriter
    with FrameWriter(ring_name, 1 << 16, caps="video/x-raw,format=BGR,width=4,height=2") as w:
        assert w.write(bytes(range(24)), timeout=0)
        with FrameReader(ring_name, timeout=0) as r:
            frame = r.read_frame(timeout=5)
            assert frame is not None and frame.array.shape == (2, 4, 3)
            del frame


def test_a_referenced_frame_stays_valid_after_the_reader_moves_on(ring_name):
    # Frame differencing: prev = frame ... diff(frame.array, prev.array).
    from shmring import FrameReader, FrameWriter
    caps = "video/x-raw,format=GRAY8,width=4,height=2"
    with FrameWriter(ring_name, 4096, caps=caps) as w:
        for i in range(5):
            assert w.write(bytes([i]) * 8, timeout=0)
        with FrameReader(ring_name, timeout=0) as r:
            prev = None
            diffs = []
            for _ in range(5):
                frame = r.read_frame(timeout=5)
                assert frame is not None
                if prev is not None:
                    diffs.append(int(frame.array[0, 0]) - int(prev.array[0, 0]))
                prev = frame
            assert diffs == [1, 1, 1, 1]
            assert prev is not None and bytes(prev.data) == bytes([4]) * 8
            del frame, prev


def test_frame_writer_pads_a_tight_frame_to_gstreamer_strides(ring_name):
    # 1366x768 BGR: rows of 4098 bytes, GStreamer's stride is 4100.
    from shmring import FrameReader, FrameWriter
    img = (np.arange(768 * 1366 * 3, dtype=np.uint32) % 251).astype(np.uint8)
    img = img.reshape(768, 1366, 3)
    with FrameWriter(ring_name, 8 << 20,
                     caps="video/x-raw,format=BGR,width=1366,height=768") as w:
        assert w.write(img, timeout=0)
        with pytest.raises(ValueError, match="does not match caps BGR 1366x768"):
            w.write(bytes(1000), timeout=0)
        with FrameReader(ring_name, timeout=0) as r:
            frame = r.read_frame(timeout=5)
            assert frame is not None
            assert frame.data.nbytes == 4100 * 768
            assert np.array_equal(frame.array, img)
            del frame


def test_frame_writer_drops_instead_of_blocking_once_its_consumer_left(ring_name):
    from shmring import FrameReader, FrameWriter
    caps = "video/x-raw,format=GRAY8,width=4,height=2"
    with FrameWriter(ring_name, 512, caps=caps) as w:
        with FrameReader(ring_name, timeout=0) as r:
            assert w.write(bytes(8), timeout=0)
            frame = r.read_frame(timeout=5)
            assert frame is not None
            del frame
        # the reader left: fill the ring, then a blocking write must drop, not hang
        while w.write(bytes(8), timeout=0):
            pass
        dropped = w.dropped
        done = []
        t = threading.Thread(target=lambda: done.append(w.write(bytes(8), timeout=None)),
                             daemon=True)
        t.start()
        t.join(30)  # watchdog only
        assert done == [False] and w.dropped == dropped + 1


def test_frame_array_is_read_only_and_writable_array_is_a_copy(ring_name):
    caps = "video/x-raw,format=GRAY8,width=8,height=4"
    with FrameWriter(ring_name, 1 << 16, caps=caps) as w, FrameReader(ring_name) as r:
        w.write(bytes(range(32)), pts=0)
        frame = r.read_frame()
        assert frame is not None
        assert not frame.array.flags.writeable
        with pytest.raises(ValueError):
            frame.array[0, 0] = 255            # numpy refuses: the flag
        mine = frame.writable_array()
        assert mine.flags.writeable and mine.shape == (4, 8)
        mine[:] = 255                          # a copy: the ring's bytes stay as written
        assert bytes(frame.data[:32]) == bytes(range(32))
        assert frame.array[0, 1] == 1
        del frame, mine


def test_frame_writer_marks_the_buffer_after_a_drop_discont(ring_name):
    """A full ring drops a buffer (counted in dropped); the next buffer written
    carries DISCONT (0x40), the ones before and after it do not (PROTOCOL.md section 6)."""
    discont = 1 << 6
    caps = "video/x-raw,format=GRAY8,width=4,height=2"
    with FrameWriter(ring_name, 4096, caps=caps) as w, FrameReader(ring_name, timeout=0) as r:
        written = 0
        while w.write(bytes(8), pts=written, timeout=0):
            written += 1
        assert w.dropped == 1
        flags = []
        for _ in range(2):  # room for two more
            frame = r.read_frame(timeout=5)
            assert frame is not None
            flags.append(frame.flags)
            del frame
        assert w.write(bytes(8), pts=written + 1, timeout=0)
        assert w.write(bytes(8), pts=written + 2, timeout=0)
        while True:
            frame = r.read_frame(timeout=0)
            if frame is None:
                break
            flags.append(frame.flags)
            del frame
        assert len(flags) == written + 2
        assert [bool(f & discont) for f in flags] == [False] * written + [True, False]


# ---- header extensions on FrameReader's path (negative DTS, video meta) ----

def test_negative_dts_from_a_frame_writer_reaches_frame_reader(ring_name):
    # A DTS before running time 0 travels as dts none + a NEGATIVE_DTS extension:
    # FrameReader reports it negative, as decode_header does (it said None).
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("GRAY8", 4, 2)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        assert w.write(bytes(8), pts=0, dts=-66_666_667)
        assert w.write(bytes(8), pts=1, dts=5)
        f = r.read_frame(5)
        assert f.dts == -66_666_667 and f.extensions.negative_dts == 66_666_667
        g = r.read_frame(5)
        assert g.dts == 5 and g.extensions == framing.Extensions()
        del f, g


def _padded_gray8_with_meta(w: framing.VideoMeta) -> bytes:
    return framing.encode_buffer(bytes([1, 2, 3, 4, 0xEE, 0xEE, 0xEE, 0xEE,
                                        5, 6, 7, 8, 0xEE, 0xEE, 0xEE, 0xEE]), pts=7,
                                 extensions=framing.ext_video_meta(w))


@pytest.mark.parametrize("latest", [False, True])
def test_video_meta_strides_shape_the_frame(ring_name, latest):
    # GRAY8 4x2 whose rows are 8 bytes apart (the caps' default stride is 4): the
    # array must use the meta's stride (before: row 1 came out as the padding).
    meta = framing.VideoMeta(0, 25, 4, 2, 1, (0,), (8,))
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("GRAY8", 4, 2)) as w, \
            FrameReader(ring_name, timeout=0, latest=latest) as r:
        assert w.write(bytes(8), pts=0)
        assert r.read_frame(5).pts == 0
        assert w.producer.write(_padded_gray8_with_meta(meta))
        f = r.read_frame(5)
        assert f.pts == 7 and f.extensions.video_meta == framing.VideoMeta(
            0, 25, 4, 2, 1, (0, 0, 0, 0), (8, 0, 0, 0))
        assert f.array.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
        assert f.array.strides == (8, 1) and f.planes[0].tolist() == f.array.tolist()
        del f


def test_video_meta_plane_offsets_and_strides_shape_i420_planes(ring_name):
    # I420 8x4 laid out with Y rows 16 bytes apart, U at 64 and V at 96 with rows 8
    # apart (GStreamer's default: strides 8/4, U at 32, V at 40).
    body = bytearray(b"\xee" * 112)
    for y in range(4):
        body[y * 16:y * 16 + 8] = bytes(range(y * 8, y * 8 + 8))
    for y in range(2):
        body[64 + y * 8:64 + y * 8 + 4] = bytes([100 + y * 4 + x for x in range(4)])
        body[96 + y * 8:96 + y * 8 + 4] = bytes([200 + y * 4 + x for x in range(4)])
    meta = framing.VideoMeta(0, 2, 8, 4, 3, (0, 64, 96), (16, 8, 8))
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("I420", 8, 4)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        assert w.write(bytes(48), pts=0)
        assert r.read_frame(5).pts == 0
        assert w.producer.write(framing.encode_buffer(bytes(body), pts=1,
                                                      extensions=framing.ext_video_meta(meta)))
        f = r.read_frame(5)
        y, u, v = f.planes
        assert y.tolist() == [list(range(k * 8, k * 8 + 8)) for k in range(4)]
        assert u.tolist() == [[100, 101, 102, 103], [104, 105, 106, 107]]
        assert v.tolist() == [[200, 201, 202, 203], [204, 205, 206, 207]]
        del f, y, u, v


def test_a_video_meta_that_does_not_fit_the_caps_is_a_framing_error(ring_name):
    meta = framing.VideoMeta(0, 25, 4, 3, 1, (0,), (8,))  # 4x3, the caps say 4x2
    with FrameWriter(ring_name, 1 << 12, caps=caps_for("GRAY8", 4, 2)) as w, \
            FrameReader(ring_name, timeout=0) as r:
        assert w.write(bytes(8), pts=0)
        assert r.read_frame(5).pts == 0
        assert w.producer.write(_padded_gray8_with_meta(meta))
        assert w.write(bytes(8), pts=9)
        with pytest.raises(framing.FramingError, match="4x3"):
            r.read_frame(5)
        assert r.read_frame(5).pts == 9  # the reader goes on with the next frame


@pytest.mark.parametrize("live", [False, True])
@pytest.mark.parametrize("how", ["iterate", "read_frame", "async"])
def test_frame_reader_follows_a_handed_over_ring(ring_name, how, live):
    """A stream moved to a larger ring (release_name, a new ring under the name, the
    old one CLOSED while its producer lives: what shmringsink does at a caps change
    that needs more room): the reader reads what the old ring held, then goes on in
    the new one: every frame in order with the new caps' shape, timestamps going on,
    the end at EOS (before, StreamTruncatedError at the move). A frame of the old ring
    kept across the move stays valid. A live new ring too: what it holds when the
    reader comes is the stream's continuation, not a backlog to skip."""
    import asyncio

    small, large = caps_for("GRAY8", 4, 2), caps_for("GRAY8", 8, 4)
    sent = [(bytes([i]) * 8, small) for i in range(3)] + \
        [(bytes([i]) * 32, large) for i in range(3, 6)]
    old = FrameWriter(ring_name, 4096, caps=small)
    try:
        for i in range(3):
            assert old.write(sent[i][0], pts=i * 1000, timeout=0)
        with FrameReader(ring_name, timeout=0) as r:
            kept = r.read_frame(timeout=5)
            assert kept is not None and kept.array.shape == (2, 4)
            old.producer.release_name()
            new = FrameWriter(ring_name, 1 << 16, caps=large)
            new.producer.live = live
            old.producer.end_stream()
            for i in range(3, 6):
                assert new.write(sent[i][0], pts=i * 1000, timeout=0)

            def end_once_followed() -> None:
                # The new ring keeps the name (and the old ring counts as handed over)
                # until the reader is in it; then EOS and close, as a sender would.
                for _ in range(300_000):  # a hang guard (30 s), not a timing
                    if new.producer.consumer_attached() or reading_ended.wait(0.0001):
                        break
                new.close()
            reading_ended = threading.Event()
            closer = threading.Thread(target=end_once_followed)
            closer.start()
            try:
                frames = [kept]
                if how == "iterate":
                    frames += list(r)
                elif how == "read_frame":
                    while (f := r.read_frame(timeout=5)) is not None:
                        frames.append(f)
                else:
                    async def rest() -> List[object]:
                        return [f async for f in r]
                    frames += asyncio.run(rest())
            finally:
                reading_ended.set()
                closer.join(60)
            assert r.at_end
            got = [(bytes(f.data), f.caps, f.array.shape, f.pts) for f in frames]
            del frames
    finally:
        old.producer.close()  # its stream already ended (no EOS to send)
    assert got == [(data, caps, (2, 4) if caps == small else (4, 8), i * 1000)
                   for i, (data, caps) in enumerate(sent)]
    assert bytes(kept.data) == bytes([0]) * 8  # still the old ring's frame


def test_frame_writer_close_after_end_stream_only_closes(ring_name):
    """producer.end_stream() (CLOSED, as after a hand-over's release_name), then
    FrameWriter.close(): it closes (the name goes) without trying to write an EOS
    after the end (before: StreamClosedError from that write), as C++ ShmProducer's
    destructor after Close(). The reader gets the frame, then the end without EOS."""
    import os

    from helpers import dev_shm
    from shmring import StreamTruncatedError

    w = FrameWriter(ring_name, 4096, caps=caps_for("GRAY8", 4, 2))
    with FrameReader(ring_name, timeout=0) as r:
        assert w.write(bytes([7]) * 8, pts=0, timeout=0)
        w.producer.end_stream()
        w.close()
        assert w.producer.closed
        assert not os.path.exists(dev_shm(ring_name))
        f = r.read_frame(timeout=5)
        assert f is not None and bytes(f.data) == bytes([7]) * 8
        del f
        with pytest.raises(StreamTruncatedError):
            r.read_frame(timeout=5)


def test_release_name_then_close_without_end_stream_ends_the_readers(ring_name):
    """What FrameWriter.close()'s docstring warns of: release_name(), a new ring under
    the name, then close() without end_stream() writes EOS into the old ring, so its
    reader ends there (EOS) and does not follow into the new ring."""
    small = caps_for("GRAY8", 4, 2)
    old = FrameWriter(ring_name, 4096, caps=small)
    try:
        assert old.write(bytes([1]) * 8, pts=0, timeout=0)
        with FrameReader(ring_name, timeout=0) as r:
            old.producer.release_name()
            with FrameWriter(ring_name, 4096, caps=small) as new:
                assert new.write(bytes([2]) * 8, pts=1000, timeout=0)
                old.close()  # EOS, not a hand-over
                f = r.read_frame(timeout=5)
                assert f is not None and bytes(f.data) == bytes([1]) * 8
                del f
                assert r.read_frame(timeout=5) is None and r.at_end
                assert not new.producer.consumer_attached()
    finally:
        old.close()


def test_frame_reader_that_claims_its_slot_after_the_move_follows(ring_name, monkeypatch):
    """A reader that opened the old ring just before the stream moved and claims its
    slot only after the old producer, seeing no receiver there, let go of it
    (shmringsink's drop_left_rings): the ring was CLOSED before the claim, so
    handed_over() holds without the old producer's lock, and the reader reads the
    old ring's frame, then follows into the new ring (before: StreamTruncatedError,
    a stream cut short). As C++ HandoverWindow.AReceiverThatClaimsAfterTheMoveFollows."""
    from shmring import ShmConsumer

    small, large = caps_for("GRAY8", 4, 2), caps_for("GRAY8", 8, 4)
    old = FrameWriter(ring_name, 4096, caps=small)
    moved: List[FrameWriter] = []
    try:
        assert old.write(bytes([1]) * 8, pts=0, timeout=0)
        real_claim = ShmConsumer._claim

        def claim_after_the_move(name: str, segment: object) -> int:
            if not moved:  # the sender's move, between the reader's open and its claim
                old.producer.release_name()
                moved.append(FrameWriter(ring_name, 1 << 16, caps=large))
                old.producer.end_stream()
                old.producer.close()  # no receiver attached: the old ring and its lock go
            return real_claim(name, segment)
        with monkeypatch.context() as m:
            m.setattr(ShmConsumer, "_claim", staticmethod(claim_after_the_move))
            r = FrameReader(ring_name, timeout=0)
        with r:
            assert moved, "the move ran before the claim"
            new = moved[0]
            assert new.write(bytes([2]) * 32, pts=1000, timeout=0)
            got = []
            for _ in range(2):
                f = r.read_frame(timeout=5)
                assert f is not None
                got.append((bytes(f.data), f.array.shape, f.pts))
                del f
            new.close()  # EOS
            assert r.read_frame(timeout=5) is None and r.at_end
    finally:
        old.producer.close()
        for w in moved:
            w.close()
    assert got == [(bytes([1]) * 8, (2, 4), 0), (bytes([2]) * 32, (4, 8), 1000)]


@pytest.mark.parametrize("end", ["interrupt", "close"])
def test_interrupt_reaches_a_reader_waiting_for_the_ring_it_follows(ring_name, monkeypatch, end):
    """A hand-over whose new ring is not under the name yet (handed_over() forced true
    here; in the field: the next move's release already removed it): read_frame(0)
    gives None and leaves the follow to the next call; a blocking read waits for the
    name, and interrupt() ends that wait (RingInterruptedError; before, interrupt()
    reached only the old ring and the wait went on), and so does close() from
    another thread (StreamClosedError). Once the ring is there, the reader goes on
    in it."""
    from shmring import StreamClosedError
    from shmring import ShmConsumer, _shm

    small, large = caps_for("GRAY8", 4, 2), caps_for("GRAY8", 8, 4)
    old = FrameWriter(ring_name, 4096, caps=small)
    try:
        assert old.write(bytes([1]) * 8, timeout=0)
        with FrameReader(ring_name, timeout=0) as r:
            f = r.read_frame(timeout=5)
            assert f is not None and bytes(f.data) == bytes([1]) * 8
            del f
            old.producer.release_name()
            old.producer.end_stream()
            with monkeypatch.context() as m:
                m.setattr(ShmConsumer, "handed_over", lambda self: True)
                assert r.read_frame(timeout=0) is None and not r.at_end
                looking = threading.Event()
                real_open = _shm.open_existing

                def open_existing(name: str) -> object:
                    looking.set()
                    return real_open(name)
                m.setattr(_shm, "open_existing", open_existing)
                raised: List[BaseException] = []

                def read() -> None:
                    try:
                        r.read_frame()
                    except BaseException as e:  # noqa: B902 - reported below
                        raised.append(e)
                t = threading.Thread(target=read)
                t.start()
                assert looking.wait(30)  # a hang guard: it is in the wait for the name
                r.interrupt() if end == "interrupt" else r.close()
                t.join(30)  # a hang guard, not a timing
                assert not t.is_alive(), f"{end}() did not end the wait for the new ring"
            if end == "close":
                assert len(raised) == 1 and isinstance(raised[0], StreamClosedError), raised
                return
            r.clear_interrupt()
            assert len(raised) == 1 and isinstance(raised[0], RingInterruptedError), raised
            with FrameWriter(ring_name, 1 << 16, caps=large) as new:
                assert new.write(bytes([2]) * 32, pts=5, timeout=0)
                f = r.read_frame(timeout=5)
                assert f is not None and f.array.shape == (4, 8) and f.pts == 5
                del f
    finally:
        old.producer.close()
