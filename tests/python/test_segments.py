"""Bad segments planted in /dev/shm get IncompatibleSegmentError naming the field."""
from __future__ import annotations

import mmap
import os
import threading
import struct

import pytest

from helpers import dev_shm
from shmring import (ByteRingBuffer, FrameReader, IncompatibleSegmentError, ShmConsumer,
                     ShmProducer, ShmRingError, layout)


def good_header(capacity: int = 64) -> bytearray:
    img = bytearray(layout.HEADER_SIZE + capacity)
    ByteRingBuffer.initialize(img, capacity, 0, 42)
    return img


def plant(name: str, data: bytes) -> None:
    fd = os.open(dev_shm(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def with_field(offset: int, fmt: str, value: int, capacity: int = 64) -> bytes:
    img = good_header(capacity)
    struct.pack_into(fmt, img, offset, value)
    return bytes(img)


CASES = {
    "bad_magic": (with_field(layout.MAGIC_OFFSET, "<I", 0x12345678), "magic", "0x12345678"),
    "bad_version": (with_field(layout.VERSION_OFFSET, "<H", 1), "version",
                    "version is 1; this build reads version 2"),
    "bad_max_receivers": (with_field(layout.MAX_RECEIVERS_OFFSET, "<I", 0), "max_receivers",
                          "max_receivers is 0"),
    "bad_header_size": (with_field(layout.HEADER_SIZE_OFFSET, "<H", 64), "header_size",
                        "header_size is 64"),
    "capacity_not_power_of_two": (with_field(layout.CAPACITY_OFFSET, "<I", 100), "capacity",
                                  "capacity 100"),
    "capacity_too_small": (with_field(layout.CAPACITY_OFFSET, "<I", 32), "capacity",
                           "capacity 32"),
    "capacity_too_large": (with_field(layout.CAPACITY_OFFSET, "<I", 0xC0000000),
                           "capacity", "capacity"),
    "capacity_past_segment": (with_field(layout.CAPACITY_OFFSET, "<I", 1024), "size",
                              f"does not fit the segment size {layout.HEADER_SIZE + 64}"),
    "smaller_than_header": (bytes(good_header()[:64]), "size", "smaller than the 8192-byte"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_segment_is_refused_naming_the_field(ring_name, case):
    data, field, text = CASES[case]
    plant(ring_name, data)
    with pytest.raises(IncompatibleSegmentError) as info:
        ShmConsumer(ring_name)
    assert info.value.field == field
    assert text in str(info.value) and ring_name in str(info.value)
    assert isinstance(info.value, ShmRingError)
    # Waiting for a producer does not turn a bad segment into a hang.
    with pytest.raises(IncompatibleSegmentError):
        ShmConsumer(ring_name, timeout=None)
    assert os.path.exists(dev_shm(ring_name))  # consumers never unlink


def test_uninitialized_segment_is_refused_when_the_timeout_expires(ring_name):
    plant(ring_name, bytes(layout.HEADER_SIZE + 64))  # magic 0, never initialized
    with pytest.raises(IncompatibleSegmentError) as info:
        ShmConsumer(ring_name, timeout=0.2)
    assert info.value.field == "magic" and "not initialized" in str(info.value)


def test_uninitialized_segment_is_waited_for_until_its_creator_finishes(ring_name):
    # A creator between shm_open and its magic store: the consumer waits (no timeout)
    # and attaches once the header is complete, as it would for a missing name.
    plant(ring_name, bytes(layout.HEADER_SIZE + 64))
    result = {}

    def consume():
        with ShmConsumer(ring_name, timeout=None) as c:
            result["capacity"] = c.capacity

    t = threading.Thread(target=consume)
    t.start()
    with open(dev_shm(ring_name), "r+b") as f:
        mm = mmap.mmap(f.fileno(), layout.HEADER_SIZE + 64)
        try:
            ByteRingBuffer.initialize(mm, 64, 0, 0x42)  # the creator finishes
        finally:
            t.join(timeout=30)  # hang guard
            mm.close()
    assert not t.is_alive()
    assert result == {"capacity": 64}


def test_empty_file_is_refused(ring_name):
    plant(ring_name, b"")
    with pytest.raises(IncompatibleSegmentError) as info:
        ShmConsumer(ring_name, timeout=0)
    assert info.value.field == "size"


def test_producer_will_not_replace_a_foreign_segment(ring_name):
    plant(ring_name, CASES["bad_magic"][0])
    with pytest.raises(IncompatibleSegmentError) as info:
        ShmProducer(ring_name, 64)
    assert info.value.field == "magic"
    assert os.path.getsize(dev_shm(ring_name)) == layout.HEADER_SIZE + 64  # left as it was


def test_frame_reader_refuses_profile_0(ring_name):
    with ShmProducer(ring_name, 64):
        with pytest.raises(IncompatibleSegmentError) as info:
            FrameReader(ring_name, timeout=0)
        assert info.value.field == "profile"


def test_ring_buffer_refuses_bad_header_in_memory():
    img = bytearray(CASES["bad_version"][0])
    with pytest.raises(IncompatibleSegmentError) as info:
        ByteRingBuffer(img, False)
    assert info.value.field == "version"
