"""The original design's Python API (section 5 of the original design), used exactly as
written there: ``ByteRingBuffer(buf, is_producer)`` over one buffer, and
``ShmProducer(name, capacity)`` / ``ShmConsumer(name)`` in two processes that run at
the same time. Code in the ``ORIGINAL_*`` strings uses nothing but that API."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from helpers import python_env
from shmring import ByteRingBuffer, IncompatibleSegmentError, layout

# Both ring views over one bytearray, as the original's sections 5.2/5.4 describe.
ORIGINAL_TWO_VIEWS = textwrap.dedent('''
    from typing import Optional
    from shmring import ByteRingBuffer

    buf = bytearray(ByteRingBuffer.HEADER_SIZE + 1024)
    producer = ByteRingBuffer(memoryview(buf), is_producer=True)
    consumer = ByteRingBuffer(memoryview(buf), is_producer=False)

    assert consumer.has_data() is False
    assert consumer.readable_bytes() == 0
    free = producer.writeable_bytes()
    assert producer.write(b"hello") is True
    assert producer.write(b"") is True
    assert producer.writeable_bytes() < free
    assert consumer.has_data() is True
    assert consumer.readable_bytes() > 0
    first: Optional[bytes] = consumer.read()
    assert first == b"hello", first
    assert consumer.read() == b""
    assert consumer.read() is None
    assert consumer.has_data() is False
    n = 0
    while producer.write(b"x" * 100):
        n += 1
    assert n > 0
    got = 0
    while consumer.read() is not None:
        got += 1
    assert got == n
    print("two views ok", n)
''')

# Section 5.5: a producer process and a consumer process over a named ring at once.
ORIGINAL_PRODUCER = textwrap.dedent('''
    import sys, time
    from shmring import ShmProducer

    name, count = sys.argv[1], int(sys.argv[2])
    producer = ShmProducer(name, 4096)
    print("created", flush=True)
    for i in range(count):
        message = b"%08d" % i + bytes(i % 50)
        while not producer.write(message):   # full: the consumer is reading meanwhile
            time.sleep(0.0005)
    # wait until the consumer has read everything before ending the stream
    while producer.writeable_bytes() != 4096:
        time.sleep(0.001)
    print("sent", count, flush=True)
''')

ORIGINAL_CONSUMER = textwrap.dedent('''
    import sys, time
    from shmring import ShmConsumer

    name, count = sys.argv[1], int(sys.argv[2])
    consumer = ShmConsumer(name)
    assert consumer.writeable_bytes() <= 4096
    got = 0
    while got < count:
        if not consumer.has_data():
            time.sleep(0.0005)
            continue
        message = consumer.read()
        assert message is not None and consumer.readable_bytes() >= 0
        assert message == b"%08d" % got + bytes(got % 50), (got, message[:8])
        got += 1
    print("received", got, flush=True)
''')


def _run(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_original_two_views_of_one_buffer_run_unchanged():
    proc = _run(ORIGINAL_TWO_VIEWS)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("two views ok")


def test_original_producer_and_consumer_processes_run_at_the_same_time(ring_name):
    count = 3000  # far more than the 4096-byte ring holds: both must run together
    producer = _run(ORIGINAL_PRODUCER, ring_name, str(count))
    try:
        assert producer.stdout is not None
        assert producer.stdout.readline().strip() == "created", producer.stderr
        consumer = _run(ORIGINAL_CONSUMER, ring_name, str(count))
        c_out, c_err = consumer.communicate(timeout=120)
        assert consumer.returncode == 0, c_err
        assert c_out.strip() == f"received {count}"
        p_out, p_err = producer.communicate(timeout=60)
        assert producer.returncode == 0, p_err
        assert p_out.strip() == f"sent {count}"
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    assert not os.path.exists("/dev/shm/" + ring_name)  # the producer removed it at exit


# ---- the initializing producer view -------------------------------------------------

@pytest.mark.parametrize("room,capacity", [(64, 64), (100, 64), (1000, 512), (1024, 1024),
                                           (4096 + 7, 4096)])
def test_producer_view_initializes_a_zeroed_buffer(room, capacity):
    buf = bytearray(layout.HEADER_SIZE + room)
    p = ByteRingBuffer(buf, True)
    assert p.capacity == capacity  # the largest power of two that fits
    assert bytes(buf[12:16]) == b"SRNG"
    c = ByteRingBuffer(buf)  # the original's default side: consumer
    assert not c.is_producer
    assert p.write(b"abc") and c.read() == b"abc"


def test_producer_view_over_a_too_small_buffer_is_a_clear_error():
    buf = bytearray(layout.HEADER_SIZE + 63)
    with pytest.raises(IncompatibleSegmentError, match="too small") as info:
        ByteRingBuffer(buf, True)
    assert info.value.field == "size"
    assert buf == bytearray(layout.HEADER_SIZE + 63)  # nothing written


def test_producer_view_over_a_live_ring_attaches_without_clobbering():
    buf = bytearray(layout.HEADER_SIZE + 256)
    first = ByteRingBuffer(buf, True)
    generation = first.generation
    c = ByteRingBuffer(buf)
    assert first.write(b"kept")
    second = ByteRingBuffer(buf, True)  # e.g. a restarted writer of the same buffer
    assert second.generation == generation
    assert second.capacity == 256
    assert c.read() == b"kept"
    assert second.write(b"next") and c.read() == b"next"


def test_foreign_magic_is_refused_and_left_alone():
    buf = bytearray(layout.HEADER_SIZE + 256)
    buf[12:16] = b"XXXX"
    before = bytes(buf)
    for side in (True, False):
        with pytest.raises(IncompatibleSegmentError) as info:
            ByteRingBuffer(buf, side)
        assert info.value.field == "magic"
    assert bytes(buf) == before


def test_consumer_view_over_an_uninitialized_buffer_is_a_clear_error():
    buf = bytearray(layout.HEADER_SIZE + 256)
    with pytest.raises(IncompatibleSegmentError, match="is_producer=True") as info:
        ByteRingBuffer(buf)
    assert info.value.field == "magic"
    assert buf == bytearray(layout.HEADER_SIZE + 256)
