"""The native wait helper shmring._native (python/native/_native.c) on its own: its
results, the WAITING bit it leaves, its counters and its refusal after close. Skipped
where it is not built (the test run builds it: tests/python/meson.build, and
test_wait_protocol.py fails when the build made it and it does not import)."""
from __future__ import annotations

import threading
from typing import Any, List, Tuple

import pytest

from shmring import ByteRingBuffer, _futex, layout
from shmring._tuning import SPIN_POLLS, UNFENCED_NAP_S

pytestmark = pytest.mark.skipif(not _futex.native_available(),
                                reason="shmring._native is not built")


def _ring() -> Tuple[bytearray, ByteRingBuffer, ByteRingBuffer, Any]:
    buf = bytearray(layout.HEADER_SIZE + 64)
    ByteRingBuffer.initialize(buf, 64, 0, 0xABC, 0)
    p, c = ByteRingBuffer(buf, True), ByteRingBuffer(buf, False)
    assert c._waiter is not None
    return buf, p, c, c._waiter


def _flags(buf: bytearray) -> int:
    return int(memoryview(buf).cast("I")[layout.CONSUMER_FLAGS_OFFSET // 4])


def test_a_moved_head_returns_at_once_without_sleeping() -> None:
    buf, p, c, waiter = _ring()
    _futex.reset_counters()
    assert waiter.wait(c.head + 8, 60.0) == 1  # not the head it saw: look again
    assert _futex.counters()[0] == 0


def test_a_timed_out_sleep_leaves_waiting_set_until_end() -> None:
    buf, p, c, waiter = _ring()
    _futex.reset_counters()
    assert waiter.wait(c.head, 0.01) == 0
    assert waiter.sleeping and _flags(buf) & layout.CONSUMER_WAITING
    assert _futex.counters()[0] == 1 and _futex.counters()[2] == 0.01
    assert waiter.wait(c.head, 0.01) == 0  # a re-sleep: WAITING stays, fence once
    waiter.end()
    assert not waiter.sleeping and not _flags(buf) & layout.CONSUMER_WAITING
    waiter.end()  # idempotent


def test_closed_set_before_the_sleep_returns_at_once() -> None:
    buf, p, c, waiter = _ring()
    p.set_closed()
    _futex.reset_counters()
    assert waiter.wait(c.head, 60.0) == 1
    assert _futex.counters()[0] == 0  # seen by the re-check, no sleep at all


def test_a_publish_wakes_the_native_sleeper() -> None:
    buf, p, c, waiter = _ring()
    out: List[int] = []
    t = threading.Thread(target=lambda: out.append(waiter.wait(c.head, 60.0)), daemon=True)
    t.start()
    for _ in range(300_000):  # hang guard (30 s), not a timing
        if _flags(buf) & layout.CONSUMER_WAITING:
            break
        threading.Event().wait(0.0001)
    assert p.write(b"wake")  # sees WAITING, wakes the head word
    t.join(60)
    assert out == [1]
    waiter.end()


def test_membarrier_producer_costs_one_heavy_barrier_per_wait() -> None:
    buf, p, c, waiter = _ring()
    words = memoryview(buf).cast("I")
    words[layout.PRODUCER_FLAGS_WORD] |= layout.PRODUCER_MEMBARRIER
    _futex.reset_counters()
    for _ in range(3):
        waiter.wait(c.head, 0.005)
    waiter.end()
    waiter.wait(c.head, 0.005)  # a new wait: fenced again
    waiter.end()
    assert _futex.counters()[1] == 2
    del words


def test_a_closed_waiter_refuses_and_clears_waiting() -> None:
    buf, p, c, waiter = _ring()
    assert waiter.wait(c.head, 0.001) == 0
    c.detach()  # closes the waiter before the buffer could go
    assert not _flags(buf) & layout.CONSUMER_WAITING
    with pytest.raises(ValueError, match="closed"):
        waiter.wait(0, 0.001)


def test_bad_addresses_are_refused() -> None:
    from shmring import _native
    with pytest.raises(ValueError):
        _native.Waiter(0, 8, 16, 2, 1, 4, UNFENCED_NAP_S, SPIN_POLLS, 0.001)
    with pytest.raises(ValueError):
        _native.Waiter(4098, 8, 16, 2, 1, 4, UNFENCED_NAP_S, SPIN_POLLS, 0.001)


def test_next_finds_a_record_and_says_why_it_returns_otherwise() -> None:
    buf, p, c, waiter = _ring()
    inf = float("inf")
    pos = c.head
    assert waiter.next(pos, 0, -1.0, inf, -1) == 0  # empty, deadline passed: ended
    assert waiter.next(pos, 0, None, 0.0, -1) == 1  # empty, liveness look due
    assert p.write(b"abc")
    start, length, end, head, skip = waiter.next(pos, 0, None, inf, -1)
    assert bytes(buf[start:start + length]) == b"abc" and skip == -1
    assert (end, head) == (pos + 8, pos + 8)  # len word + 3 bytes, rounded to 8
    assert waiter.next(pos, 1, None, inf, -1) == 2  # a pin first: the Python lookup
    waiter.interrupted = True
    assert waiter.next(end, 0, None, inf, -1) == 3  # interrupted, nothing to read
    assert waiter.interrupted and waiter.sleeper == 0  # not inside next() any more
    waiter.interrupted = False
    p.set_closed()
    assert waiter.next(end, 0, None, inf, -1) == 2  # CLOSED and drained: Python's
    waiter.end()


def test_next_refuses_before_set_records_and_after_close() -> None:
    from shmring import _native
    buf, p, c, waiter = _ring()
    fresh = _native.Waiter(c._head_address, c._head_address + 128, c._head_address + 384,
                           2, 1, 4, UNFENCED_NAP_S, SPIN_POLLS, 0.001)
    with pytest.raises(ValueError, match="set_records"):
        fresh.next(0, 0, None, 1.0, -1)
    with pytest.raises(ValueError):
        fresh.set_records(0, layout.HEADER_SIZE, 64, layout.WRAP_MARKER, layout.PAD_FLAG,
                          layout.MAX_VALID_LEN, 4, 8, c._tail_address, 1)
    with pytest.raises(ValueError):  # not a power of two
        fresh.set_records(c._head_address, layout.HEADER_SIZE, 96, layout.WRAP_MARKER,
                          layout.PAD_FLAG, layout.MAX_VALID_LEN, 4, 8, c._tail_address, 1)
    c.detach()
    with pytest.raises(ValueError, match="closed"):
        waiter.next(0, 0, None, 1.0, -1)
