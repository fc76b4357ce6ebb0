"""The producer's owner word (layout.PRODUCER_OWNER_OFFSET): a C++ producer arms it
(a robust-futex word the kernel marks OWNER_DIED and wakes when the producer dies),
and a Python consumer asleep in a blocking read hears a kill -9 through it, not
through a liveness slice's expiry. Both the native fused wait and the pure-Python
one; what ended a sleep is read from ``_futex.owner_counters()``, never timed."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import threading
from typing import Any, Iterator, List, Tuple

import pytest

from conftest import peer_path, unique_name
from helpers import spawn_python, wait_until
from shmring import ProducerDeadError, ShmConsumer, ShmProducer, _futex, _locks, _tuning, layout

pytestmark = [
    pytest.mark.skipif(not _futex.HAVE_FUTEX or not _locks.HAVE_OFD_LOCKS,
                       reason="needs Linux futex and OFD locks"),
    pytest.mark.usefixtures("wait_impl"),
]


def _hold(name: str, receivers: int = 1) -> subprocess.Popen:
    """A C++ producer (tests/tools/shmring_peer hold) that creates ``name`` and idles."""
    proc = subprocess.Popen([peer_path(), "hold", name, "--capacity", "4096", "--count",
                             str(receivers)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    return proc


@contextlib.contextmanager
def _held(receivers: int = 1) -> Iterator[Tuple[str, subprocess.Popen]]:
    """A fresh ring name and the C++ producer holding it (``_hold``); on the way out the
    producer is killed if it still lives and the ring unlinked."""
    name = unique_name()
    proc = _hold(name, receivers)
    try:
        yield name, proc
    finally:
        if proc.poll() is None:
            _kill(proc)
        _unlink(name)


def _reader(c: ShmConsumer) -> "tuple[threading.Thread, List[Any]]":
    out: List[Any] = []

    def body() -> None:
        try:
            out.append(c.read(timeout=60))  # a hang guard far beyond any slice
        except BaseException as e:  # noqa: BLE001 - reported by the test
            out.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def _asleep(c: ShmConsumer) -> bool:
    return bool(c.ring.consumer_flags & layout.CONSUMER_WAITING)


def _owner(c: ShmConsumer) -> int:
    return int(c.ring._w[layout.PRODUCER_OWNER_WORD])


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    if proc.stdout is not None:
        proc.stdout.close()


def _kill_and_expect_death(proc: subprocess.Popen,
                           *readers: "tuple[threading.Thread, List[Any]]") -> None:
    """Kills the producer ``proc``; the read of every reader (``_reader``) ends with
    ProducerDeadError."""
    _kill(proc)
    for t, out in readers:
        t.join(60)
        assert len(out) == 1 and isinstance(out[0], ProducerDeadError), out


def _unlink(name: str) -> None:
    try:
        os.unlink("/dev/shm/" + name)
    except FileNotFoundError:
        pass


def test_killed_cpp_producer_wakes_a_python_reader_through_the_owner_word() -> None:
    with _held() as (name, proc), ShmConsumer(name) as c:
        armed = _owner(c)
        assert armed & (layout.OWNER_WAITERS | layout.OWNER_DIED) == layout.OWNER_WAITERS
        _futex.reset_counters()
        reader = _reader(c)
        assert wait_until(lambda: _asleep(c), 30)
        _kill_and_expect_death(proc, reader)
        wakes, deaths = _futex.owner_counters()
        assert wakes >= 1  # the sleep ended through the owner word
        assert deaths == 1
        assert _futex.counters()[2] > _tuning.LIVENESS_SLICE_S  # the armed slice


def test_both_receivers_of_a_fan_out_ring_hear_the_death() -> None:
    # The kernel wakes one sleeper of the word; that one wakes the other.
    with _held(receivers=2) as (name, proc), ShmConsumer(name) as a, ShmConsumer(name) as b:
        _futex.reset_counters()
        readers = (_reader(a), _reader(b))
        assert wait_until(lambda: _asleep(a) and _asleep(b), 30)
        _kill_and_expect_death(proc, *readers)
        wakes, deaths = _futex.owner_counters()
        assert wakes >= 2
        assert deaths == 2


def test_a_python_producer_leaves_the_word_unarmed_and_slices_notice_its_death() -> None:
    name = unique_name()
    proc = spawn_python(textwrap.dedent('''
        import sys, time
        from shmring import ShmProducer
        p = ShmProducer(sys.argv[1], 4096)
        print("holding", flush=True)
        time.sleep(600)
    '''), name)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        with ShmConsumer(name) as c:
            assert _owner(c) == 0
            _futex.reset_counters()
            reader = _reader(c)
            assert wait_until(lambda: _asleep(c), 30)
            _kill_and_expect_death(proc, reader)
            assert _futex.owner_counters() == (0, 0)
            assert _futex.counters()[2] <= _tuning.LIVENESS_SLICE_S
    finally:
        if proc.poll() is None:
            _kill(proc)
        proc.communicate(timeout=30)
        _unlink(name)


@pytest.mark.parametrize("value", [
    layout.OWNER_WAITERS | layout.OWNER_DIED,  # marked while the producer lives (a fork)
    layout.OWNER_DIED | 12345,
    0xFFFFFFFF,
    layout.OWNER_WAITERS | layout.OWNER_TID_MASK,  # a thread id nobody has
    1,
])
def test_hostile_owner_values_neither_hang_nor_fail_a_reader(value: int) -> None:
    name = unique_name()
    with ShmProducer(name, 4096) as p, ShmConsumer(name) as c:
        p.ring._w[layout.PRODUCER_OWNER_WORD] = value
        _futex.wake_word(c.ring._owner_address)
        assert c.read(timeout=0.02) is None  # timed out: no error, no hang
        assert p.write(b"x")
        assert c.read(timeout=30) == b"x"
        # A marked word while the reader sleeps: it wakes, looks (alive), sleeps on.
        t, out = _reader(c)
        assert wait_until(lambda: _asleep(c), 30)
        p.ring._w[layout.PRODUCER_OWNER_WORD] = layout.OWNER_WAITERS | layout.OWNER_DIED | 7
        _futex.wake_word(c.ring._owner_address)
        assert p.write(b"y")
        t.join(60)
        assert out == [b"y"]


def test_an_armed_word_keeps_short_slices_without_futex_waitv(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Sleeps on the head word alone do not hear the owner word: no 5 s slices then.
    monkeypatch.setattr(_futex, "_have_waitv", False)
    with _held() as (name, _), ShmConsumer(name) as c:
        assert _owner(c) & layout.OWNER_WAITERS
        _futex.reset_counters()
        assert c.read(timeout=1.2) is None
        sleeps, _, longest = _futex.counters()
        assert sleeps >= 2
        assert longest <= _tuning.LIVENESS_SLICE_S


def test_futex_waitv_refused_with_eperm_falls_back_to_one_word(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A seccomp profile older than futex_waitv answers EPERM: the one-word sleep from
    # then on, never an error per read nor a retry loop.
    import errno as errno_
    monkeypatch.setattr(_futex, "_have_waitv", True)
    real_errno = _futex._get_errno
    refused = [errno_.EPERM]  # the waitv call's errno; later calls see the real one
    monkeypatch.setattr(_futex, "_waitv_call", lambda *args: -1)
    monkeypatch.setattr(_futex, "_get_errno",
                        lambda: refused.pop() if refused else real_errno())
    name = unique_name()
    with ShmProducer(name, 4096) as p, ShmConsumer(name) as c:
        sleeper = c.ring._head_sleeper
        assert sleeper.sleep(c.ring._w[layout.HEAD_WORD], 0, 0.01) is False  # timed out
        assert not _futex.have_waitv()
        assert p.write(b"x")
        assert c.read(timeout=30) == b"x"


def test_readers_asleep_on_a_died_word_do_not_wake_each_other_in_a_loop() -> None:
    # Four readers of one fan-out ring asleep on an owner word already marked
    # OWNER_DIED while the producer's lock stays held (a forked child keeps the ring;
    # here a live Python producer with the word stored DIED): one outside wake ends
    # each sleep once and is not passed on again. Fails when every sleep woken on the
    # word passes the wake on whatever value it expected (the readers then wake each
    # other in a loop: hundreds of owner wakes). The sleeps only give a storm time to
    # show; the assertion is a count.
    import time
    name = unique_name()
    n = 4
    with ShmProducer(name, 4096, max_receivers=n) as p:
        cs = [ShmConsumer(name) for _ in range(n)]
        try:
            p.ring._w[layout.PRODUCER_OWNER_WORD] = layout.OWNER_WAITERS | layout.OWNER_DIED
            readers = [_reader(c) for c in cs]
            assert all(wait_until(lambda c=c: _asleep(c), 30) for c in cs)
            time.sleep(0.5)  # past their first looks (1 ms doubling)
            before = _futex.owner_counters()[0]
            _futex.wake_word(cs[0].ring._owner_address)
            time.sleep(0.3)
            after = _futex.owner_counters()[0]
            assert p.write(b"x")
            for t, out in readers:
                t.join(60)
                assert out == [b"x"]
            assert after - before <= n, "the readers woke each other in a loop"
        finally:
            for c in cs:
                c.close()
    _unlink(name)


def test_ring_level_acquire_wait_sleeps_on_an_armed_word_until_its_deadline() -> None:
    # A C++ producer arms its owner word from the start. The ring-level blocking
    # lookup of a caller that never calls owner_look() must sleep until its deadline
    # (WAIT_ENDED), not return WAIT_CHECK at once before check_at (the native path did,
    # for every call: a busy loop). Both twins.
    import time
    from shmring.ring import WAIT_ENDED
    with _held() as (name, _), ShmConsumer(name) as c:
        ring = c.ring
        assert _owner(c) & layout.OWNER_WAITERS
        try:
            r = ring.acquire_wait(time.monotonic() + 0.2, float("inf"))
        finally:
            ring.end_sleep()
        assert r == WAIT_ENDED
        assert not ring.take_owner_died()
