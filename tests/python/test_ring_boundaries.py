"""ByteRingBuffer at its boundaries, each test named for the boundary it pins."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from shmring import (ByteRingBuffer, CorruptRecordError, MessageTooLargeError, ShmRingError,
                     ViewInUseError, layout)

DATA = layout.HEADER_SIZE


def make_ring(capacity: int = 64, start_index: int = 0):
    buf = bytearray(layout.HEADER_SIZE + capacity)
    ByteRingBuffer.initialize(buf, capacity, 0, 0xABCDEF, start_index)
    return buf, ByteRingBuffer(buf, True), ByteRingBuffer(buf, False)


def head_tail(buf) -> tuple:
    return (struct.unpack_from("<I", buf, layout.HEAD_OFFSET)[0],
            struct.unpack_from("<I", buf, layout.TAIL_OFFSET)[0])


def test_original_api_names_exist():
    _, p, c = make_ring()
    for name in ("write", "read", "has_data", "readable_bytes", "writeable_bytes"):
        assert callable(getattr(p, name)) and callable(getattr(c, name))


def test_empty_ring_reads_none():
    _, p, c = make_ring()
    assert c.read() is None
    assert not c.has_data()
    assert c.readable_bytes() == 0
    assert p.writeable_bytes() == 64
    assert c.peek() is None


def test_zero_length_message_is_a_message():
    buf, p, c = make_ring()
    assert p.write(b"")
    assert c.has_data()
    assert head_tail(buf) == (8, 0)
    assert c.read() == b""
    assert c.read() is None
    assert head_tail(buf) == (8, 8)


def test_full_ring_refuses_then_accepts_after_read():
    _, p, c = make_ring()
    for i in range(8):  # eight 8-byte records fill 64 bytes
        assert p.write(bytes([i]) * 4)
    assert p.writeable_bytes() == 0
    assert not p.write(b"")
    assert c.read() == b"\x00" * 4
    assert p.write(b"x")
    assert [c.read() for _ in range(8)] == [bytes([i]) * 4 for i in range(1, 8)] + [b"x"]


def test_exact_fit_max_length_fills_the_ring():
    buf, p, c = make_ring()
    assert p.max_message_size == 60
    payload = bytes(range(60))
    assert p.write(payload)
    assert p.writeable_bytes() == 0
    assert head_tail(buf) == (64, 0)
    assert c.read() == payload


def test_too_large_raises_value_error():
    _, p, _ = make_ring()
    with pytest.raises(MessageTooLargeError, match="61 bytes can never fit"):
        p.write(bytes(61))
    with pytest.raises(ValueError):
        p.write(bytes(1000))
    with pytest.raises(ShmRingError):
        p.reserve(61)


def test_padding_is_zero():
    buf, p, _ = make_ring()
    buf[DATA:DATA + 16] = b"\xff" * 16
    assert p.write(b"abc")
    assert bytes(buf[DATA:DATA + 8]) == b"\x03\x00\x00\x00abc\x00"


def test_wrap_marker_written_and_skipped():
    buf, p, c = make_ring()
    assert p.write(b"\xaa" * 40)        # record 48 at 0
    assert c.read() == b"\xaa" * 40
    assert p.write(b"\xbb" * 16)        # record 24 does not fit the 16 left
    assert struct.unpack_from("<I", buf, DATA + 48)[0] == layout.WRAP_MARKER
    assert head_tail(buf) == (88, 48)
    assert c.read() == b"\xbb" * 16
    assert head_tail(buf) == (88, 88)


def test_wrap_marker_published_before_the_record_fits():
    buf, p, c = make_ring()
    assert p.write(b"\xaa" * 40)        # 48 used, 16 to the end, all free
    assert not p.write(b"\xbb" * 16)   # needs 24 at offset 0: not free yet
    assert head_tail(buf) == (64, 0)   # ...but the marker is published
    assert c.read() == b"\xaa" * 40
    assert not c.has_data()             # a marker alone is not a message
    assert head_tail(buf) == (64, 64)   # and the consumer freed its lap at once
    assert p.write(b"\xbb" * 16)
    assert c.read() == b"\xbb" * 16


def test_max_length_after_wrap_needs_the_whole_ring():
    buf, p, c = make_ring()
    assert p.write(b"a")                # record 8 at 0
    assert c.read() == b"a"
    assert not p.write(bytes(60))       # marker over the 56 to the end; 64 at 0 not free
    assert head_tail(buf) == (64, 8)
    assert not c.has_data()             # consumer frees the marker's lap
    assert p.write(bytes(60))
    assert c.read() == bytes(60)


@pytest.mark.parametrize("start", [0xFFFFFFF8, 0xFFFFFFE8, 0xFFFFFFC0, 0xFFFFFF00])
def test_index_wrap_at_2_to_32(start):
    buf, p, c = make_ring(64, start)
    sent = []
    for i in range(40):
        msg = bytes([i]) * (i % 13)
        assert p.write(msg)
        sent.append(msg)
        assert c.readable_bytes() >= layout.record_size(len(msg))  # (+ a WRAP marker)
        assert c.read() == msg
        assert c.readable_bytes() == 0
        assert p.writeable_bytes() == 64
    head, tail = head_tail(buf)
    assert head == tail and head < start  # wrapped past 2^32, masked back to small
    assert head <= 0xFFFFFFFF


def test_index_wrap_with_data_in_flight():
    buf, p, c = make_ring(64, 0xFFFFFFF0)
    assert p.write(b"\x01" * 4)   # 0xFFFFFFF0..F8
    assert p.write(b"\x02" * 4)   # ..0x100000000 -> 0
    assert p.write(b"\x03" * 12)  # 0..16
    assert head_tail(buf) == (16, 0xFFFFFFF0)
    assert c.readable_bytes() == 32
    assert p.writeable_bytes() == 32
    assert [c.read(), c.read(), c.read()] == [b"\x01" * 4, b"\x02" * 4, b"\x03" * 12]


def plant(buf, offset, length_word, head):
    struct.pack_into("<I", buf, DATA + offset, length_word)
    struct.pack_into("<I", buf, layout.HEAD_OFFSET, head)


@pytest.mark.parametrize("bad_len", [0x80000005, 0x80000038, 0x9ABCDEF0, 0xFFFFFFFE])
def test_corrupt_pad_len(bad_len):
    """A len word with the top bit set is a PAD record; one passing head or the end
    of the data area is corrupt."""
    buf, _, c = make_ring()
    plant(buf, 0, bad_len, 8)
    with pytest.raises(CorruptRecordError, match="PAD record"):
        c.read()


def test_pad_records_are_skipped_and_freed():
    """PAD records (a reservation the producer gave up) are skipped silently; with
    nothing held before them they are freed at once, so the producer goes on."""
    buf, p, c = make_ring()
    for _ in range(2):
        view = p.reserve(20)
        assert view is not None
        del view
        p.abandon()
    assert not c.has_data()
    assert c.read() is None
    assert c.tail == 48
    assert p.write(b"after")
    assert c.read() == b"after"


def test_pad_between_acquired_records():
    buf, p, c = make_ring()
    assert p.write(b"one")
    view = p.reserve(4)
    assert view is not None
    del view
    p.abandon()
    assert p.write(b"two")
    first = c.acquire()
    second = c.acquire()
    assert first is not None and second is not None
    assert bytes(buf[first[0]:first[0] + first[1]]) == b"one"
    assert bytes(buf[second[0]:second[0] + second[1]]) == b"two"
    assert c.acquire() is None
    c.release_to(second[2])
    assert c.tail == 24


def test_corrupt_record_past_head():
    buf, _, c = make_ring()
    plant(buf, 0, 20, 8)  # record of 24 bytes, head says 8 were written
    with pytest.raises(CorruptRecordError, match="passes head"):
        c.read()


def test_corrupt_record_crossing_the_end():
    buf, _, c = make_ring(64, 56)
    plant(buf, 56, 12, 56 + 64)  # 16-byte record at offset 56 of 64
    with pytest.raises(CorruptRecordError, match="crosses the end"):
        c.read()


def test_corrupt_wrap_marker_past_head():
    buf, _, c = make_ring(64, 48)
    plant(buf, 48, layout.WRAP_MARKER, 56)  # marker spans 16 bytes, head only 8 on
    with pytest.raises(CorruptRecordError, match="skips past head"):
        c.read()


def test_corrupt_head_more_than_capacity_ahead():
    buf, _, c = make_ring()
    struct.pack_into("<I", buf, layout.HEAD_OFFSET, 72)
    with pytest.raises(CorruptRecordError, match="not a valid index"):
        c.has_data()


def test_corrupt_misaligned_head():
    buf, _, c = make_ring()
    plant(buf, 0, 0, 4)
    with pytest.raises(CorruptRecordError):
        c.read()


def test_corrupt_misaligned_tail():
    buf, p, _ = make_ring()
    struct.pack_into("<I", buf, layout.TAIL_OFFSET, 60)
    struct.pack_into("<I", buf, layout.HEAD_OFFSET, 68)
    c = ByteRingBuffer(buf, False)
    with pytest.raises(CorruptRecordError):
        c.read()


def test_producer_refuses_misaligned_head():
    buf, _, _ = make_ring()
    struct.pack_into("<I", buf, layout.HEAD_OFFSET, 12)
    with pytest.raises(CorruptRecordError, match="multiple of 8"):
        ByteRingBuffer(buf, True)


def test_producer_refuses_tail_ahead_of_head():
    buf, p, _ = make_ring()
    struct.pack_into("<I", buf, layout.TAIL_OFFSET, 200)  # consumer bug: tail beyond head
    with pytest.raises(CorruptRecordError, match="tail 200"):
        for _ in range(20):
            p.write(bytes(4))


def test_wrong_side_is_refused():
    _, p, c = make_ring()
    with pytest.raises(ShmRingError):
        c.write(b"x")
    with pytest.raises(ShmRingError):
        p.read()


def test_reserve_commit_shorter_length():
    buf, p, c = make_ring()
    view = p.reserve(20)
    assert view is not None and len(view) == 20
    view[:5] = b"hello"
    del view
    p.commit(5)
    assert head_tail(buf)[0] == 16
    assert c.read() == b"hello"


def test_reserve_view_still_referenced_at_commit():
    _, p, c = make_ring()
    view = p.reserve(8)
    assert view is not None
    arr = np.frombuffer(view, dtype=np.uint8)
    with pytest.raises(ViewInUseError):
        p.commit()
    assert not c.has_data()  # nothing published
    del arr
    p.commit()
    assert c.read() == bytes(8)


def test_reserve_cancel_publishes_nothing():
    _, p, c = make_ring()
    view = p.reserve(8)
    assert view is not None
    del view
    p.cancel()
    assert not c.has_data()
    assert p.write(b"ok") and c.read() == b"ok"


def test_peek_release_zero_copy_view():
    _, p, c = make_ring()
    p.write(b"first")
    p.write(b"second")
    view = c.peek()
    assert view is not None and view.readonly and bytes(view) == b"first"
    assert c.peek() is view  # same message until released
    c.release()
    with pytest.raises(ValueError):
        bytes(view)  # the released view can no longer be used
    assert c.read() == b"second"


def test_peek_view_still_exported_is_an_error_not_reuse():
    _, p, c = make_ring()
    p.write(b"abcd")
    view = c.peek()
    arr = np.frombuffer(view, dtype=np.uint8)
    with pytest.raises(ViewInUseError):
        c.release()
    p.write(b"next")
    with pytest.raises(ViewInUseError):
        c.read()  # retries the pending release first
    assert bytes(arr) == b"abcd"  # still intact: the record was not given back
    del arr
    assert c.read() == b"next"    # "abcd" is not delivered twice


def test_peek_slice_still_alive_is_detected():
    _, p, c = make_ring()
    p.write(b"abcdefgh")
    view = c.peek()
    part = view[2:4]
    with pytest.raises(ViewInUseError):
        c.release()
    assert bytes(part) == b"cd"
    del part, view
    c.release()
    assert c.read() is None


def test_acquire_release_to_in_order():
    buf, p, c = make_ring()
    for m in (b"a", b"b", b"c"):
        p.write(m)
    r1, r2, r3 = c.acquire(), c.acquire(), c.acquire()
    assert c.acquire() is None
    assert [bytes(buf[s:s + n]) for s, n, _ in (r1, r2, r3)] == [b"a", b"b", b"c"]
    assert head_tail(buf)[1] == 0          # nothing released yet
    c.release_to(r2[2])
    assert head_tail(buf)[1] == 16
    c.release_to(r1[2])                    # backwards: ignored
    assert head_tail(buf)[1] == 16
    c.release_to(r3[2])
    assert head_tail(buf) == (24, 24)


def test_initialize_refuses_bad_arguments():
    buf = bytearray(layout.HEADER_SIZE + 64)
    for capacity in (0, 32, 100, 128):
        with pytest.raises(ValueError, match="capacity"):
            ByteRingBuffer.initialize(buf, capacity)
    with pytest.raises(ValueError, match="start_index"):
        ByteRingBuffer.initialize(buf, 64, start_index=4)


def test_dropped_counter_u64():
    buf, p, c = make_ring()
    p.add_dropped(0xFFFFFFFF)
    p.add_dropped(2)
    assert c.dropped == 0x100000001
    assert struct.unpack_from("<Q", buf, layout.DROPPED_OFFSET)[0] == 0x100000001


def test_large_ring_batches_tail_stores_but_frees_all_when_empty():
    capacity = 1 << 16
    buf, p, c = make_ring(capacity)
    for i in range(10):
        assert p.write(bytes([i]) * 100)
    assert c.read() == b"\x00" * 100
    assert head_tail(buf)[1] == 0               # 104 bytes released, below the batch
    assert c.readable_bytes() == 9 * 104        # ...but accounted as released
    for i in range(1, 10):
        assert c.read() == bytes([i]) * 100
    assert c.read() is None                     # empty: everything goes back at once
    assert head_tail(buf) == (1040, 1040)
    assert p.writeable_bytes() == capacity


# ---- review fixes: wake after a WRAP marker, capacity read once, capped naps, fences ----

import threading  # noqa: E402
import time  # noqa: E402

from shmring import _fence, _futex  # noqa: E402
from shmring import ring as ring_mod  # noqa: E402


def set_word(buf, offset: int, value: int) -> None:
    struct.pack_into("<I", buf, offset, value)


def get_word(buf, offset: int) -> int:
    return struct.unpack_from("<I", buf, offset)[0]


def test_marker_alone_wakes_a_waiting_consumer_when_the_record_does_not_fit(monkeypatch):
    # capacity 256: head = tail = 104, the consumer asleep on head 104; reserve(200)
    # publishes a marker (head 256) but the record does not fit behind it: only the
    # consumer skipping the marker can free the room, so it must be woken.
    buf, p, c = make_ring(256)
    assert p.write(bytes(100))
    assert c.read() == bytes(100)
    assert head_tail(buf) == (104, 104)
    woken = []
    monkeypatch.setattr(_futex, "wake_word", woken.append)
    set_word(buf, layout.CONSUMER_FLAGS_OFFSET, layout.CONSUMER_ATTACHED | layout.CONSUMER_WAITING)
    assert p.reserve(200) is None
    assert head_tail(buf) == (256, 104)
    assert woken == [p._head_address]


def test_marker_published_by_wait_writable_wakes_a_waiting_consumer(monkeypatch):
    buf, p, c = make_ring(256)
    assert p.write(bytes(100)) and p.write(bytes(100))   # head 208, 48 to the end
    assert c.read() == bytes(100)                         # tail 104
    woken = []
    monkeypatch.setattr(_futex, "wake_word", woken.append)
    set_word(buf, layout.CONSUMER_FLAGS_OFFSET, layout.CONSUMER_ATTACHED | layout.CONSUMER_WAITING)
    assert p.wait_writable(200, 0) is False               # marker yes, record no
    assert head_tail(buf) == (256, 104)
    assert woken == [p._head_address]


def test_marker_with_the_record_fitting_behind_it_wakes_once_for_the_record(monkeypatch):
    buf, p, c = make_ring(256)
    assert p.write(bytes(100)) and p.write(bytes(100))
    assert c.read() == bytes(100) and c.read() == bytes(100)  # all free
    woken = []
    monkeypatch.setattr(_futex, "wake_word", woken.append)
    set_word(buf, layout.CONSUMER_FLAGS_OFFSET, layout.CONSUMER_ATTACHED | layout.CONSUMER_WAITING)
    assert p.write(bytes(60))                                # marker, then the record
    assert woken == [p._head_address]                        # the commit's wake only


def test_capacity_is_validated_once_and_never_re_read(monkeypatch):
    # A hostile peer changes capacity right after the check: the ring must keep the
    # value it validated.
    buf = bytearray(layout.HEADER_SIZE + 1024)
    ByteRingBuffer.initialize(buf, 64, 0, 1)
    real = ring_mod.is_valid_capacity

    def check_then_toggle(capacity):
        ok = real(capacity)
        set_word(buf, layout.CAPACITY_OFFSET, 1024)
        return ok

    monkeypatch.setattr(ring_mod, "is_valid_capacity", check_then_toggle)
    r = ByteRingBuffer(buf, False)
    assert r.capacity == 64 and r.max_message_size == 60


def test_initialize_stores_the_producer_pid_before_the_magic():
    buf = bytearray(layout.HEADER_SIZE + 64)
    ByteRingBuffer.initialize(buf, 64, 0, 1, 0, 4321)
    assert get_word(buf, layout.PRODUCER_PID_OFFSET) == 4321
    ByteRingBuffer.initialize(buf, 64, 0, 1)                # default: pid 0 (vectors)
    assert get_word(buf, layout.PRODUCER_PID_OFFSET) == 0


def _run_blocked(fn, ring):
    """Runs fn() in a thread; returns (thread, results)."""
    results = []
    t = threading.Thread(target=lambda: results.append(fn()), daemon=True)
    t.start()
    assert _wait(lambda: len(ring._asleep()) > 0)
    time.sleep(0.1)  # ordering aid: let it get into the futex wait (not an assertion)
    return t, results


def _wait(predicate, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.001)
    return predicate()


def _finish(t, ring, results) -> None:
    t.join(30)  # hang guard only
    hung = t.is_alive()
    if hung:
        ring.interrupt()  # unstick it (the woken wait may then even succeed)
        t.join(30)
    assert not hung, "the sleeper never noticed (lost wake-up)"
    assert results == [True]


@pytest.mark.skipif(not _futex.HAVE_FUTEX, reason="needs futex")
def test_closed_set_without_a_wake_is_still_seen_by_a_sleeping_consumer(wait_impl):
    # CLOSED set with no wake at all (a producer that died between its store and its
    # wake): the consumer's sleep, a liveness slice at most, brings it back.
    buf, p, c = make_ring(64)
    t, results = _run_blocked(lambda: c.wait_readable(None), c)
    flags = get_word(buf, layout.PRODUCER_FLAGS_OFFSET)
    set_word(buf, layout.PRODUCER_FLAGS_OFFSET, flags | layout.PRODUCER_CLOSED)  # no wake
    _finish(t, c, results)
    assert c.at_end


def test_consumer_sleeps_are_liveness_slices_not_short_naps(monkeypatch, pure_wait):
    # No 50 ms nap cap: an idle sleep lasts up to a liveness slice (the only
    # periodic wake-up), never longer.
    buf, p, c = make_ring(64)
    naps = []
    monkeypatch.setattr(c, "_sleep", lambda sleeper, seen, seen2, timeout: naps.append(timeout))
    assert c.wait_readable(0.3) is False
    assert naps and max(naps) > 0.1  # more than the old 50 ms cap, whatever the load
    naps.clear()
    monkeypatch.setattr(c, "_sleep", lambda sleeper, seen, seen2, timeout: (
        naps.append(timeout), c.interrupt() if len(naps) == 3 else None))
    with pytest.raises(ShmRingError):  # RingInterruptedError
        c.wait_readable(None)
    assert naps and max(naps) == ring_mod.LIVENESS_SLICE_S


@pytest.mark.skipif(not _futex.HAVE_FUTEX, reason="needs futex")
def test_consumer_sleeps_are_liveness_slices_through_either_wait(wait_impl):
    # The same rule seen through the counters seam, so the native wait is held to it.
    buf, p, c = make_ring(64)
    assert (c._waiter is not None) == (wait_impl == "native")
    _futex.reset_counters()
    assert c.wait_readable(0.3) is False
    sleeps, _, longest = _futex.counters()
    assert sleeps >= 1 and longest > 0.1  # more than the old 50 ms cap
    _futex.reset_counters()
    t, results = _run_blocked(lambda: c.wait_readable(None), c)
    p.write(b"x")  # wakes it
    _finish(t, c, results)
    assert 0 < _futex.counters()[2] <= ring_mod.LIVENESS_SLICE_S


@pytest.mark.skipif(not _futex.HAVE_FUTEX, reason="needs futex")
def test_waiting_is_fenced_once_across_re_sleeps(monkeypatch, wait_impl):
    # WAITING stays set across timed-out re-sleeps: the producer relies on our
    # membarrier (MEMBARRIER bit), yet a wait of several sleeps issues one.
    buf, p, c = make_ring(64)
    set_word(buf, layout.PRODUCER_FLAGS_OFFSET, layout.PRODUCER_MEMBARRIER)
    monkeypatch.setattr(ring_mod, "LIVENESS_SLICE_S", 0.02)  # many short sleeps
    _futex.reset_counters()
    assert c.wait_readable(0.2) is False
    sleeps, barriers, _ = _futex.counters()
    assert sleeps >= 3
    assert barriers == 1
    assert not get_word(buf, layout.CONSUMER_FLAGS_OFFSET) & layout.CONSUMER_WAITING
    # keep_waiting leaves it set (and fenced) for the caller's next wait
    _futex.reset_counters()
    assert c.wait_readable(0.05, keep_waiting=True) is False
    assert c.wait_readable(0.05, keep_waiting=True) is False
    assert _futex.counters()[1] == 1
    assert get_word(buf, layout.CONSUMER_FLAGS_OFFSET) & layout.CONSUMER_WAITING
    c.end_sleep()
    assert not get_word(buf, layout.CONSUMER_FLAGS_OFFSET) & layout.CONSUMER_WAITING


@pytest.mark.skipif(not _futex.HAVE_FUTEX, reason="needs futex")
def test_a_changed_second_word_ends_a_pair_sleep_at_once():
    # CLOSED (producer_flags) stored between the consumer's last look and its sleep:
    # the sleep on head + producer_flags returns at once (a plain futex wait on the
    # unchanged head word would sleep its whole timeout).
    buf, p, c = make_ring(64)
    flags = get_word(buf, layout.PRODUCER_FLAGS_OFFSET)
    set_word(buf, layout.PRODUCER_FLAGS_OFFSET, flags | layout.PRODUCER_CLOSED)
    assert c._head_sleeper.sleep(c.head, flags, 60.0) is True  # not a 60 s timeout


def test_failed_membarrier_caps_the_consumer_nap(monkeypatch, pure_wait):
    buf, p, c = make_ring(64)
    monkeypatch.setattr(ring_mod, "heavy_barrier", lambda: False)
    set_word(buf, layout.PRODUCER_FLAGS_OFFSET, layout.PRODUCER_MEMBARRIER)
    naps = []
    monkeypatch.setattr(c, "_sleep", lambda sleeper, seen, seen2, timeout: naps.append(timeout))
    assert c.wait_readable(0.1) is False
    assert naps and max(naps) <= ring_mod.UNFENCED_NAP_S


@pytest.mark.skipif(not _futex.HAVE_FUTEX, reason="needs futex")
def test_failed_membarrier_makes_the_producer_poll_instead_of_trusting_the_wake(monkeypatch):
    # The consumer relies on our membarrier (MEMBARRIER bit) and the call fails:
    # its wake check is unordered, so a wake can be lost. The producer must poll.
    buf, p, c = make_ring(64)
    assert p.write(bytes(56))                             # full
    monkeypatch.setattr(ring_mod, "heavy_barrier", lambda: False)
    set_word(buf, layout.CONSUMER_FLAGS_OFFSET, layout.CONSUMER_ATTACHED |
             layout.CONSUMER_MEMBARRIER)
    t, results = _run_blocked(lambda: p.wait_writable(8, None), p)
    set_word(buf, layout.TAIL_OFFSET, 64)                 # space freed, wake lost
    _finish(t, p, results)


def test_heavy_barrier_reports_failure(monkeypatch):
    assert _fence.heavy_barrier() in (True, False)
    monkeypatch.setattr(_fence._futex, "membarrier", lambda cmd: -38)  # -ENOSYS
    assert _fence.heavy_barrier() is False


@pytest.mark.skipif(not _futex.HAVE_FUTEX, reason="needs Linux membarrier")
def test_private_expedited_fence_keeps_a_sibling_thread_also_after_fork():
    # The weak-CPU full fence (exercised here on any Linux): membarrier
    # PRIVATE_EXPEDITED only runs smp_mb() when the process has a second thread.
    _fence._membarrier_fence()
    if _fence._pe_state != 1:
        pytest.skip("membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) is unavailable here")
    assert _fence._sibling is not None and _fence._sibling.is_alive()
    assert _futex.membarrier(_futex.MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0
    import os
    pid = os.fork()
    if pid == 0:  # child: only the forking thread survives; the fence re-arms itself
        code = 1
        try:
            if _fence._pe_state == 0:
                _fence._membarrier_fence()
                if _fence._pe_state == 1 and _fence._sibling is not None and \
                        _fence._sibling.is_alive():
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_view_tokens_are_reused_only_when_nothing_uses_them():
    # Tokens are pooled: a released record's token carries the next view, but only
    # once no view or array made from it is alive (never reused under a live view).
    _, p, c = make_ring(256)
    p.write(b"first")
    assert bytes(c.peek()) == b"first"
    token = id(c._peeked.token)            # an id, not a reference (that would hold it)
    c.release()
    p.write(b"second")
    c.peek()
    assert id(c._peeked.token) == token    # free: reused (the pool kept it alive)
    arr = np.frombuffer(c.peek(), dtype=np.uint8)
    with pytest.raises(ViewInUseError):
        c.release()
    p.write(b"third")
    with pytest.raises(ViewInUseError):
        c.peek()                           # retries the pending release: still in use
    assert bytes(arr) == b"second"
    del arr
    view = c.peek()
    assert bytes(view) == b"third"
    del view
    c.release()


def test_pooled_token_of_a_slice_kept_past_release_is_not_reused():
    _, p, c = make_ring(256)
    p.write(b"abcdefgh")
    view = c.peek()
    part = view[2:4]
    token = id(c._peeked.token)
    del view
    with pytest.raises(ViewInUseError):
        c.release()
    del part
    c.release()
    p.write(b"next")
    assert bytes(c.peek()) == b"next" and id(c._peeked.token) == token
    c.release()


def test_detach_drops_pooled_tokens_so_an_mmap_can_close():
    import mmap
    mm = mmap.mmap(-1, layout.HEADER_SIZE + 4096)
    ByteRingBuffer.initialize(mm, 4096)
    p, c = ByteRingBuffer(mm, True), ByteRingBuffer(mm, False)
    for i in range(3):
        p.write(b"x%d" % i)
        view = c.peek()
        assert bytes(view) == b"x%d" % i
        del view
        c.release()
    assert c._tokens._free                 # a token waits in the pool
    c.detach()
    p.detach()
    mm.close()                             # BufferError if an export were left


def test_skip_to_head_never_moves_back_to_a_head_mark_that_lags_the_head():
    # A consumer that read up to the head while the producer had stored that head but
    # not yet the head mark that follows it: skipping to the head must not move it back
    # to the mark's older head and hand out again a record it has read (C++ twin:
    # SkipToHead.NeverMovesBackToAHeadMarkThatLagsTheHead). Planted: the mark as it is
    # between the two stores.
    buf, p, c = make_ring(256)
    assert p.write(b"message!")
    lagging = bytes(buf[layout.HEAD_MARK_OFFSET:layout.HEAD_MARK_OFFSET + 8])
    assert p.write(b"message!")
    assert c.read() == b"message!" and c.read() == b"message!"
    buf[layout.HEAD_MARK_OFFSET:layout.HEAD_MARK_OFFSET + 8] = lagging
    assert c.skip_to_head() == head_tail(buf)[0]
    assert c.read() is None, "a record already read is handed out again"
