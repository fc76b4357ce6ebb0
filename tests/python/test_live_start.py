"""Where a consumer starts and which rings it waits past (C++
tests/core/test_consumer_start.cpp): a live ring's backlog is never read (FrameReader
keeps its caps and waits for a key frame), a non-live ring is read from its oldest
record, a CLOSED ring already read to its end is not a new stream, and a profile-1
stream closed without its EOS record raises StreamTruncatedError."""
import mmap
import os

import pytest

from shmring import (FrameReader, FrameWriter, RingNotFoundError, ShmConsumer, ShmProducer,
                     StreamTruncatedError)
from shmring.layout import HEADER_SIZE, PRODUCER_FLAGS_OFFSET, PRODUCER_LIVE

# Blocking reads run through the native consume path and the pure-Python one.
pytestmark = pytest.mark.usefixtures("wait_impl")

CAPS = "video/x-raw,format=GRAY8,width=4,height=2,framerate=30/1"
DELTA_UNIT = 1 << 13


def mark_live(name):
    """Sets producer_flags LIVE as a live producer does (test hook: no producer call
    runs meanwhile)."""
    fd = os.open("/dev/shm/" + name, os.O_RDWR)
    try:
        with mmap.mmap(fd, HEADER_SIZE) as m:
            o = PRODUCER_FLAGS_OFFSET
            flags = int.from_bytes(m[o:o + 4], "little") | PRODUCER_LIVE
            m[o:o + 4] = flags.to_bytes(4, "little")
    finally:
        os.close(fd)


def test_newest_if_live_skips_the_backlog(ring_name):
    with ShmProducer(ring_name, 4096) as p:
        mark_live(ring_name)
        for i in range(5):
            p.write(bytes([i]))
        c = ShmConsumer(ring_name, start_at="newest_if_live")
        try:
            assert c.live and not c.has_data()
            assert c.ring.tail == c.ring.head  # the backlog's space is free again
            p.write(b"new")
            assert c.read(5.0) == b"new"
        finally:
            c.close()


def test_newest_if_live_reads_a_non_live_ring_from_its_oldest(ring_name):
    with ShmProducer(ring_name, 4096) as p:
        for i in range(3):
            p.write(bytes([i]))
        c = ShmConsumer(ring_name, start_at="newest_if_live")
        try:
            assert not c.live
            assert [c.read(5.0) for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
        finally:
            c.close()


def test_start_at_is_checked(ring_name):
    with ShmProducer(ring_name, 4096):
        with pytest.raises(ValueError, match="start_at"):
            ShmConsumer(ring_name, start_at="middle")


def test_a_drained_closed_ring_is_not_a_new_stream(ring_name):
    p = ShmProducer(ring_name, 4096)
    try:
        p.write(b"a")
        p.end_stream()  # CLOSED, the name stays
        c = ShmConsumer(ring_name)
        assert c.read(5.0) == b"a" and c.read(5.0) is None and c.at_end
        c.close()
        with pytest.raises(RingNotFoundError, match="read to its end"):
            ShmConsumer(ring_name, timeout=0.1, wait_for_open_producer=True)
        ShmConsumer(ring_name).close()  # without the option it still attaches
    finally:
        p.close()


def test_a_closed_ring_with_unread_data_is_still_a_stream(ring_name):
    p = ShmProducer(ring_name, 4096)
    try:
        p.write(b"a")
        p.end_stream()
        c = ShmConsumer(ring_name, wait_for_open_producer=True)
        assert c.read(5.0) == b"a"
        c.close()
    finally:
        p.close()


def test_frame_reader_on_a_live_ring_keeps_caps_and_starts_at_a_key_frame(ring_name):
    with FrameWriter(ring_name, 1 << 16, caps=CAPS) as w:
        for i in range(3):
            w.write(bytes(8), pts=i)  # backlog, with the CAPS record before it
        mark_live(ring_name)
        r = FrameReader(ring_name, timeout=5.0)
        try:
            w.write(bytes(8), pts=10, flags=DELTA_UNIT)  # useless before a key frame
            w.write(bytes([7] * 8), pts=11)
            f = r.read_frame(5.0)
            assert f.pts == 11
            assert r.caps == CAPS  # from the backlog's CAPS record
            assert r.skipped == 4
        finally:
            r.close()


def test_frame_reader_on_a_non_live_ring_reads_everything(ring_name):
    with FrameWriter(ring_name, 1 << 16, caps=CAPS) as w:
        for i in range(3):
            w.write(bytes(8), pts=i, flags=DELTA_UNIT if i else 0)
        r = FrameReader(ring_name, timeout=5.0)
        try:
            assert [r.read_frame(5.0).pts for _ in range(3)] == [0, 1, 2]
        finally:
            r.close()


def test_frame_reader_reports_a_stream_cut_short(ring_name):
    w = FrameWriter(ring_name, 1 << 16, caps=CAPS)
    try:
        w.write(bytes(8), pts=0)
        w.producer.end_stream()  # CLOSED without the EOS record: the sender stopped early
        r = FrameReader(ring_name, timeout=5.0)
        try:
            assert r.read_frame(5.0).pts == 0
            with pytest.raises(StreamTruncatedError, match="cut short"):
                r.read_frame(5.0)
        finally:
            r.close()
    finally:
        w.producer.close()


def test_frame_reader_eos_record_still_ends_cleanly(ring_name):
    w = FrameWriter(ring_name, 1 << 16, caps=CAPS)
    w.write(bytes(8), pts=0)
    r = FrameReader(ring_name, timeout=5.0)
    try:
        w.close()  # EOS record, then CLOSED
        assert r.read_frame(5.0).pts == 0
        assert r.read_frame(5.0) is None
    finally:
        r.close()
