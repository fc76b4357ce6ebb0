"""The consumer's blocking lookup (ByteRingBuffer.acquire_wait / read_wait, and the
native ``_native.Waiter.next`` behind them when it is built): the same records, the
same released markers and the same errors as the non-blocking lookup (acquire / read),
and one lookup per wake-up for ShmConsumer.read and FrameReader. Counted, never timed.
Every test runs through the native path and the pure-Python one (``wait_impl``)."""
from __future__ import annotations

import os
import random
import struct
import sys
import threading
from typing import Any, Callable, List, Tuple

import pytest

from shmring import (ByteRingBuffer, CorruptRecordError, FrameReader, FrameWriter,
                     RingInterruptedError, ShmConsumer, ShmProducer, _futex, layout)
from shmring.ring import WAIT_CHECK, WAIT_ENDED

pytestmark = pytest.mark.usefixtures("wait_impl")

DATA = layout.HEADER_SIZE
NOW_IS_LATE = -1.0  # a deadline already passed: look once, never sleep
NEVER = float("inf")  # a check_at never reached


def make_ring(capacity: int = 256) -> Tuple[bytearray, ByteRingBuffer, ByteRingBuffer]:
    buf = bytearray(layout.HEADER_SIZE + capacity)
    ByteRingBuffer.initialize(buf, capacity, 0, 0xC0FFEE, 0)
    return buf, ByteRingBuffer(buf, True), ByteRingBuffer(buf, False)


def tail_of(buf: bytearray) -> int:
    return int(struct.unpack_from("<I", buf, layout.TAIL_OFFSET)[0])


def _wait_for(pred: Callable[[], bool]) -> None:
    ev = threading.Event()
    for _ in range(300_000):  # a hang guard (30 s), not a timing
        if pred():
            return
        ev.wait(0.0001)
    raise AssertionError("condition never held")


def _fill_with_markers(p: ByteRingBuffer, rng: random.Random) -> None:
    """Messages of random sizes with PAD records (abandoned reservations) between them,
    so the ring's laps end in WRAP markers."""
    for i in range(rng.randrange(1, 5)):
        n = rng.randrange(0, 60)
        if rng.random() < 0.3:
            if p.reserve(n) is None:
                return
            p.abandon()
        elif not p.write(bytes([i & 0xFF]) * n):
            return


def test_blocking_lookup_finds_and_releases_what_acquire_does(wait_impl: str) -> None:
    # Twin rings fed the same records (WRAP markers, PAD records, laps): one consumer
    # uses acquire(), the other acquire_wait(); every answer, read position and tail
    # word must agree, held records or not.
    rng = random.Random(12)
    a_buf, a_p, a_c = make_ring()
    b_buf, b_p, b_c = make_ring()
    held: List[int] = []
    for step in range(3000):
        seed = rng.random()
        _fill_with_markers(a_p, random.Random(seed))
        _fill_with_markers(b_p, random.Random(seed))
        for _ in range(rng.randrange(1, 4)):
            want = a_c.acquire()
            got = b_c.acquire_wait(NOW_IS_LATE, NEVER)
            assert (got if got != WAIT_ENDED else None) == want, step
            if want is not None:
                held.append(want[2])
                assert bytes(a_buf[want[0]:want[0] + want[1]]) == \
                    bytes(b_buf[want[0]:want[0] + want[1]])
        if held and rng.random() < 0.6:  # give back, in order, what is held
            end = held[rng.randrange(len(held))]
            del held[:held.index(end) + 1]
            a_c.release_to(end)
            b_c.release_to(end)
        assert (a_c._read_pos, a_c._freed, tail_of(a_buf)) == \
            (b_c._read_pos, b_c._freed, tail_of(b_buf)), step
    b_c.end_sleep()


def test_a_hostile_record_gets_the_lookups_error_through_the_blocking_path(
        wait_impl: str) -> None:
    # Random garbage in a len word (or the head) of a ring holding records: the blocking
    # lookup raises what acquire() raises, word for word, or finds what it finds; it
    # never reads outside the data area.
    rng = random.Random(7)
    for trial in range(400):
        a_buf, a_p, a_c = make_ring(128)
        for _ in range(rng.randrange(1, 4)):
            a_p.write(bytes(rng.randrange(0, 40)))
            if rng.random() < 0.3:
                a_c.release_to(a_c.acquire()[2])  # type: ignore[index]
        words = memoryview(a_buf).cast("I")
        if rng.random() < 0.8:
            at = layout.DATA_WORD + rng.randrange(128 // 4)
            words[at] = rng.choice([layout.WRAP_MARKER, layout.PAD_FLAG | rng.randrange(200),
                                    rng.randrange(300), rng.getrandbits(32)])
        else:
            words[layout.HEAD_WORD] = rng.choice([rng.getrandbits(32),
                                                  words[layout.HEAD_WORD] + 4])
        b_buf = bytearray(a_buf)
        b_c = ByteRingBuffer(b_buf, False)
        a_c = ByteRingBuffer(a_buf, False)
        for _ in range(4):
            try:
                want: Any = a_c.acquire()
            except CorruptRecordError as e:
                want = str(e)
            try:
                got: Any = b_c.acquire_wait(NOW_IS_LATE, NEVER)
                got = None if got == WAIT_ENDED else got
            except CorruptRecordError as e:
                got = str(e)
            assert got == want, trial
            if want is None or isinstance(want, str):
                break
        b_c.end_sleep()


def test_a_record_published_while_the_blocking_lookup_sleeps_is_returned(
        wait_impl: str) -> None:
    buf, p, c = make_ring()
    out: List[Any] = []
    t = threading.Thread(target=lambda: out.append(c.acquire_wait(None, NEVER)))
    t.start()
    _wait_for(lambda: bool(memoryview(buf).cast("I")[layout.CONSUMER_FLAGS_WORD]
                           & layout.CONSUMER_WAITING))
    assert p.write(b"after the sleep")
    t.join(30)
    start, length, end = out[0]
    assert bytes(buf[start:start + length]) == b"after the sleep"
    c.end_sleep()
    # And a liveness look falls due: WAIT_CHECK, with nothing consumed.
    assert c.acquire_wait(None, 0.0) == WAIT_CHECK
    c.end_sleep()


def test_interrupt_wakes_the_blocking_lookup(wait_impl: str) -> None:
    buf, p, c = make_ring()
    errors: List[BaseException] = []

    def run() -> None:
        try:
            c.acquire_wait(None, NEVER)
        except RingInterruptedError as e:
            errors.append(e)
    t = threading.Thread(target=run)
    t.start()
    _wait_for(lambda: bool(memoryview(buf).cast("I")[layout.CONSUMER_FLAGS_WORD]
                           & layout.CONSUMER_WAITING))
    c.interrupt()  # returns once the sleeper is awake
    t.join(30)
    assert not t.is_alive() and len(errors) == 1
    c.end_sleep()
    c.clear_interrupt()
    assert c.acquire_wait(NOW_IS_LATE, NEVER) == WAIT_ENDED


class _Counted:
    """Counts a consumer ring's lookups: Python ones (_locate) and native ones
    (Waiter.next calls, minus those that came back for a liveness look)."""

    def __init__(self, ring: ByteRingBuffer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.python = 0
        self.native = 0
        self.checks = 0
        locate = ring._locate

        def counted_locate(start: int) -> Any:
            self.python += 1
            return locate(start)
        monkeypatch.setattr(ring, "_locate", counted_locate)
        waiter = ring._waiter
        if waiter is not None:
            counted = self

            class Proxy:
                def next(self, *args: Any) -> Any:
                    r = waiter.next(*args)
                    counted.native += 1
                    if r == WAIT_CHECK:
                        counted.checks += 1
                    return r

                def __getattr__(self, name: str) -> Any:
                    return getattr(waiter, name)

                def __setattr__(self, name: str, value: Any) -> None:
                    setattr(waiter, name, value)
            ring._waiter = Proxy()


def _sleeps() -> int:
    return _futex.counters()[0]


def test_a_blocking_read_looks_once_per_wake_up(ring_name: str, wait_impl: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: read() looked, then _wait looked (has_data, at_end), the wait looked
    # before and after each sleep, has_data looked again and read() once more: 3-4
    # lookups per wake-up.
    with ShmProducer(ring_name, 4096) as p, ShmConsumer(ring_name) as c:
        counted = _Counted(c.ring, monkeypatch)
        gone = c._producer_gone
        checks = [0]

        def counted_gone(ring: ByteRingBuffer) -> Any:
            checks[0] += 1
            return gone(ring)
        monkeypatch.setattr(c, "_producer_gone", counted_gone)
        messages = 20
        got: List[bytes] = []
        _futex.reset_counters()
        t = threading.Thread(target=lambda: got.extend(c.read(None) for _ in range(messages)))
        t.start()
        for i in range(messages):
            _wait_for(lambda: bool(c.ring.consumer_flags & layout.CONSUMER_WAITING))
            assert p.write(b"m%d" % i)
            _wait_for(lambda: len(got) > i or not t.is_alive())
        t.join(30)
        assert got == [b"m%d" % i for i in range(messages)]
        sleeps = _sleeps()
        assert sleeps >= messages  # each read slept for its message
        if wait_impl == "native":
            # Every look native: one call per read, plus one per liveness look.
            assert counted.python == 0
            assert counted.native == messages + counted.checks
            assert counted.checks == checks[0]
        else:
            # One look before the first sleep of each read, one after each sleep (and
            # one more after each liveness look).
            assert counted.python <= messages + sleeps + checks[0]


def test_a_blocking_frame_reader_looks_once_per_wake_up(ring_name: str, wait_impl: str,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    caps = "video/x-raw,format=GRAY8,width=8,height=8"
    writer = FrameWriter(ring_name, 1 << 16, caps=caps)
    try:
        with FrameReader(ring_name, timeout=5) as reader:
            counted = _Counted(reader._ring, monkeypatch)
            checks = [0]
            gone = reader._consumer._producer_gone

            def counted_gone(ring: ByteRingBuffer) -> Any:
                checks[0] += 1
                return gone(ring)
            monkeypatch.setattr(reader._consumer, "_producer_gone", counted_gone)
            frames = 20
            pts: List[Any] = []

            def read() -> None:
                for frame in reader:
                    pts.append(frame.pts)
                    del frame
            _futex.reset_counters()
            t = threading.Thread(target=read)
            t.start()
            for i in range(frames):
                _wait_for(lambda: bool(reader._ring.consumer_flags & layout.CONSUMER_WAITING))
                assert writer.write(bytes(64), pts=i)
                _wait_for(lambda: len(pts) > i or not t.is_alive())
            writer.close()
            t.join(30)
            assert pts == list(range(frames))
            records = frames + 2  # CAPS, the buffers, EOS
            if wait_impl == "native":
                assert counted.python == 0
                assert counted.native <= records + counted.checks
                assert counted.checks == checks[0]
            else:
                assert counted.python <= records + _sleeps() + checks[0]
    finally:
        writer.close()


# The Python one blocking FrameReader frame runs (the native path; the liveness step,
# _between_sleeps, left out: it runs once per slice, not per frame). Each is called at
# most once per frame; read_frame itself holds the lookup loop, the header check and the
# Frame's construction (on cold caches after each sleep every extra Python frame costs
# several microseconds: docs/PERF-PYTHON.md). Before (f29119f): 15 calls per frame,
# read_frame -> _read_frame, _make_frame, ring.view_of, _views.TokenPool._give_back and
# _current_slice on top of these.
_FRAME_PATH_CALLS = {
    ("frames.py", "read_frame"),
    ("channel.py", "_enter"), ("channel.py", "_leave"),  # the call's registration
    ("frames.py", "_ready_end"), ("_views.py", "try_release"),  # the previous frame
    ("channel.py", "_check_at"),  # when the next liveness look is due
    ("ring.py", "acquire_wait"),  # the native lookup and sleep
    ("_views.py", "held"), ("_views.py", "__init__"),  # the frame's tracked view
    ("ring.py", "end_sleep"),
}


def test_a_blocking_frame_runs_one_call_of_each_step(ring_name: str, wait_impl: str) -> None:
    if wait_impl != "native":
        pytest.skip("the pure-Python wait runs its sleep in Python: counted above")
    caps = "video/x-raw,format=GRAY8,width=8,height=8"
    writer = FrameWriter(ring_name, 1 << 16, caps=caps)
    try:
        with FrameReader(ring_name, timeout=5) as reader:
            frames = 20
            calls: List[Tuple[str, str]] = []
            checks = [0]  # liveness steps (a slice passed with nothing to read)
            done: List[int] = []

            def per_frame(frame: Any) -> bool:
                """Whether this Python frame runs for the blocking frame itself (under
                read_frame, not under its liveness step)."""
                while frame is not None:
                    name = frame.f_code.co_name
                    if name == "_between_sleeps":
                        return False
                    if name == "read_frame":
                        return True
                    frame = frame.f_back
                return False

            def tracer(frame: Any, event: str, arg: Any) -> Any:
                if event == "call":
                    if frame.f_code.co_name == "_between_sleeps":
                        checks[0] += 1
                    elif per_frame(frame):
                        calls.append((os.path.basename(frame.f_code.co_filename),
                                      frame.f_code.co_name))
                return None  # calls only, not lines

            def read() -> None:
                frame = reader.read_frame(None)  # the CAPS record and the first frame
                assert frame is not None
                done.append(0)
                sys.settrace(tracer)
                try:
                    for i in range(1, frames + 1):
                        frame = reader.read_frame(None)  # the previous one still referenced
                        assert frame is not None and frame.pts == i
                        done.append(i)
                finally:
                    sys.settrace(None)
            t = threading.Thread(target=read)
            t.start()
            for i in range(frames + 1):
                _wait_for(lambda: bool(reader._ring.consumer_flags & layout.CONSUMER_WAITING)
                          or not t.is_alive())
                assert writer.write(bytes(64), pts=i)
                _wait_for(lambda: len(done) > i or not t.is_alive())
            t.join(30)
            assert done == list(range(frames + 1))
            assert set(calls) <= _FRAME_PATH_CALLS, sorted(set(calls) - _FRAME_PATH_CALLS)
            for call in _FRAME_PATH_CALLS:  # each step at most once per frame
                # (a liveness step makes read_frame look once more)
                again = checks[0] if call[1] in ("acquire_wait", "_check_at") else 0
                assert calls.count(call) <= frames + again, (call, calls.count(call))
    finally:
        writer.close()


def test_a_release_passed_to_the_blocking_lookup_wakes_a_producer_waiting_for_space(
        wait_impl: str) -> None:
    # FrameReader hands the previous frame's release to its next lookup (one native
    # call stores the tail, fences and wakes the producer asleep for that space).
    buf, p, c = make_ring(128)
    while p.write(bytes(24)):
        pass
    first = c.acquire()
    assert first is not None
    out: List[bool] = []
    t = threading.Thread(target=lambda: out.append(p.wait_writable(24, None)), daemon=True)
    t.start()
    _wait_for(lambda: bool(p.producer_flags & layout.PRODUCER_WAITING))
    got = c.acquire_wait(NOW_IS_LATE, NEVER, first[2])
    assert got != WAIT_ENDED and got[0] > first[0]  # the next record, found
    t.join(30)
    assert out == [True]  # woken by the release
    assert tail_of(buf) == first[2] and (c._freed, c._released) == (first[2], first[2])
    c.end_sleep()
