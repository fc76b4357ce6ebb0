"""Live receivers that fall behind, in Python: where they resume (the newest sync point
still in the ring, else the newest record) and how many records ``skipped`` says they
lost (sequence numbers from the producer's marks). No timed
assertions."""
from __future__ import annotations

from typing import Optional

import pytest

from shmring import FrameReader, FrameWriter, ShmConsumer, ShmProducer
from shmring._atomics import load_u64, store_u64
from shmring.layout import (FLOOR_WORD, HEAD_MARK_WORD, LAST_MARK_WORD, SYNC_MARK_WORD, mark,
                            record_size)

# Blocking reads run through the native consume path and the pure-Python one.
pytestmark = pytest.mark.usefixtures("wait_impl")

MSG = 200
CAPACITY = 4096
PER_LAP = CAPACITY // record_size(MSG)  # 19


def message(seq: int) -> bytes:
    return seq.to_bytes(8, "little") + bytes(MSG - 8)


def read_seq(c: ShmConsumer) -> Optional[int]:
    msg = c.read(timeout=0)
    return None if msg is None else int.from_bytes(msg[:8], "little")


def test_lapped_live_receiver_resumes_at_the_newest_sync_point(ring_name):
    """Encoded video: a key frame every 10 messages. A receiver lapped three times over
    resumes at the newest key frame still in the ring, not at the newest record."""
    with ShmProducer(ring_name, CAPACITY, max_receivers=2) as p, \
            ShmConsumer(ring_name, mode="live") as live:
        written = 3 * PER_LAP + 4  # the newest key frame is 60
        for seq in range(written):
            assert p.write(message(seq), sync=seq % 10 == 0)
        assert read_seq(live) == 60
        assert live.skipped == 60, "records 0..59 were never read"
        assert [read_seq(live) for _ in range(written - 61)] == list(range(61, written))
        assert read_seq(live) is None


def test_no_sync_point_left_resumes_at_the_newest_record(ring_name):
    with ShmProducer(ring_name, CAPACITY, max_receivers=2) as p, \
            ShmConsumer(ring_name, mode="live") as live:
        written = 3 * PER_LAP
        for seq in range(written):
            with p.reserve(MSG, timeout=0, sync=seq == 0) as view:
                view[:] = message(seq)
        assert read_seq(live) == written - 1
        assert live.skipped == written - 1
        assert p.write(message(written), sync=False)
        assert read_seq(live) == written


def test_received_plus_skipped_is_what_was_written(ring_name):
    """``skipped`` counts records, not skip events."""
    with ShmProducer(ring_name, CAPACITY, max_receivers=2) as p, \
            ShmConsumer(ring_name, mode="live") as live:
        seq = received = 0
        for round_ in range(5):
            burst = 2 * PER_LAP + round_ if round_ % 2 == 0 else 3
            for _ in range(burst):
                assert p.write(message(seq))
                seq += 1
            last = None
            while True:
                got = read_seq(live)
                if got is None:
                    break
                assert last is None or got == last + 1, "in order after a skip"
                last = got
                received += 1
            assert received + live.skipped == seq, f"round {round_}"
        assert live.skipped > PER_LAP


def test_live_receiver_starting_at_the_oldest_counts_from_its_start(ring_name):
    with ShmProducer(ring_name, CAPACITY, max_receivers=2) as p:
        for seq in range(5):
            assert p.write(message(seq))
        with ShmConsumer(ring_name, mode="live", start_at="oldest") as live:
            assert live.ring._read_seq_known and live.ring._read_seq == 0
            assert [read_seq(live), read_seq(live)] == [0, 1]
            written = 3 * PER_LAP
            for seq in range(5, written):
                assert p.write(message(seq))
            resumed = read_seq(live)
            assert resumed == written - 1
            assert live.skipped == resumed - 2


@pytest.mark.parametrize("garbage", [mark(3, 7), mark(1 << 30, 9), mark(8, 0xFFFFFFFF),
                                     0xFFFFFFFFFFFFFFFF])
def test_garbage_marks_never_move_a_receiver_outside_the_published_records(ring_name, garbage):
    with ShmProducer(ring_name, CAPACITY, max_receivers=2) as p, \
            ShmConsumer(ring_name, mode="live") as live:
        written = 3 * PER_LAP
        for seq in range(written):
            assert p.write(message(seq))
        w = p.ring._w
        for word in (HEAD_MARK_WORD, SYNC_MARK_WORD, LAST_MARK_WORD):
            store_u64(w, None, word, garbage)
        got = read_seq(live)
        assert got is None or 0 <= got < written
        assert live.skipped >= 1
        assert p.write(message(written))  # the producer's own marks are sound again
        last = got
        while True:
            nxt = read_seq(live)
            if nxt is None:
                break
            last = nxt
        assert last == written


def test_marks_name_the_head_the_newest_sync_point_and_the_newest_record(ring_name):
    """The words a lapped receiver resumes by (the C++ side builds the same bytes: the
    golden vectors)."""
    with ShmProducer(ring_name, CAPACITY, max_receivers=2) as p:
        for seq in range(3):
            assert p.write(message(seq), sync=seq == 1)
        with p.reserve(MSG, timeout=0):
            pass  # a fourth message
        ring = p.ring
        words = ring._w, ring._q
        assert load_u64(*words, HEAD_MARK_WORD) == mark(ring.head, 4)
        assert load_u64(*words, SYNC_MARK_WORD) == mark(3 * record_size(MSG), 3)
        assert load_u64(*words, LAST_MARK_WORD) == mark(3 * record_size(MSG), 3)
        ring.reserve(MSG)
        ring.abandon()  # a PAD record: the newest record, no message
        pad = 4 * record_size(MSG)
        assert load_u64(*words, LAST_MARK_WORD) == mark(pad, 4)
        assert load_u64(*words, HEAD_MARK_WORD) == mark(ring.head, 4)


DELTA_UNIT = 1 << 13  # GST_BUFFER_FLAG_DELTA_UNIT
CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


def _write_gop_stream(w: FrameWriter, first: int, count: int, gop: int) -> None:
    for seq in range(first, first + count):
        flags = 0 if seq % gop == 0 else DELTA_UNIT
        assert w.write(bytes(400), pts=seq, flags=flags, timeout=0)


def test_frame_reader_that_fell_behind_resumes_at_the_newest_key_frame(ring_name):
    with FrameWriter(ring_name, 8192, caps=CAPS) as w, \
            FrameReader(ring_name, timeout=0, mode="live") as r:
        _write_gop_stream(w, 0, 80, 10)  # laps the 8 KiB ring several times
        frame = r.read_frame(0)
        assert frame is not None and frame.pts == 70, "the newest key frame in the ring"
        assert not frame.flags & DELTA_UNIT
        assert r.ring_skips >= 70


def test_frame_reader_with_no_key_frame_left_drops_deltas_until_the_next(ring_name):
    with FrameWriter(ring_name, 8192, caps=CAPS) as w, \
            FrameReader(ring_name, timeout=0, mode="live") as r:
        _write_gop_stream(w, 0, 80, 100)  # one key frame (0), long reused
        assert r.read_frame(0) is None, "a delta without its key frame is never returned"
        skipped = r.skipped
        assert skipped >= 1
        _write_gop_stream(w, 80, 25, 100)  # deltas 80..99, then key frame 100..
        frame = r.read_frame(0)
        assert frame is not None and frame.pts == 100
        # Every record before frame 100 (the CAPS record and frames 0..99) was either
        # lost (ring_skips) or a delta the reader dropped (skipped).
        assert r.ring_skips + r.skipped == 101


def test_frame_reader_lapped_past_a_caps_change_takes_the_caps_from_the_header(ring_name):
    """The CAPS record of a caps change was reused before a stalled live reader got to it:
    after the skip, the frames are shaped by the new caps (the producer's current caps in
    the ring header), not the old ones."""
    big = "video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1"
    small = "video/x-raw,format=GRAY8,width=32,height=24,framerate=30/1"
    with FrameWriter(ring_name, 16384, caps=big) as w, \
            FrameReader(ring_name, timeout=0, mode="live") as r:
        assert w.write(bytes(64 * 48), pts=0, timeout=0)
        frame = r.read_frame(0)
        assert frame is not None and (frame.width, frame.height) == (64, 48)
        del frame
        assert r.read_frame(0) is None  # gives frame 0 back: the reader holds nothing
        w.set_caps(small)
        for seq in range(1, 60):  # 60 small frames lap the 16 KiB ring three times
            assert w.write(bytes([seq]) * (32 * 24), pts=seq, timeout=0)
        frame = r.read_frame(0)
        assert r.ring_skips > 0, "the reader was lapped"
        assert frame is not None and frame.pts == 59
        assert r.caps == small
        assert (frame.width, frame.height) == (32, 24)
        assert frame.data.nbytes == 32 * 24 and frame.data[0] == 59



def test_live_receiver_idle_on_a_wrap_marker_is_not_lapped_while_the_next_lap_is_intact(
        ring_name):
    """A live receiver read lap 0 to its end (2096 of 4096 bytes) and stalls there. The
    next record does not fit: the producer writes a WRAP marker at 2096 and the record
    at 4096, moving its reuse floor past the marker (what it needs plus a quarter of
    the ring) but not past 4096. It then fills lap 1 with small records without moving
    the floor again: nothing the receiver still needs (4096 onwards) was reused, so it
    is not lapped: it goes on at 4096 and loses nothing."""
    big = 2092  # a 2096-byte record: two do not fit in one lap
    assert record_size(big) == 2096 and record_size(8) == 16
    with ShmProducer(ring_name, CAPACITY, max_receivers=2) as p, \
            ShmConsumer(ring_name, mode="live") as live:
        assert p.write((0).to_bytes(8, "little") + bytes(big - 8))
        assert read_seq(live) == 0
        assert read_seq(live) is None  # idle at 2096, holding nothing
        assert p.write((1).to_bytes(8, "little") + bytes(big - 8))  # WRAP marker at 2096
        floor = p.ring._w[FLOOR_WORD]
        assert 2096 < floor <= CAPACITY, "the marker may be reused, lap 1 may not"
        seq = 2
        while p.ring.head + 16 <= floor + CAPACITY:  # room without moving the floor
            assert p.write(seq.to_bytes(8, "little"))
            seq += 1
        assert p.ring._w[FLOOR_WORD] == floor
        assert [read_seq(live) for _ in range(1, seq)] == list(range(1, seq))
        assert live.skipped == 0
