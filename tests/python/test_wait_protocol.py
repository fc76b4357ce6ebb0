"""The wait protocol's idle costs and a peer's disappearance, counted through the
``_futex.counters()`` seam (sleeps, membarriers), never timed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any, List

import pytest

from conftest import unique_name
from helpers import python_env
from shmring import RingTimeoutError, ShmConsumer, ShmProducer, _futex, _locks
from shmring import layout

needs_futex = pytest.mark.skipif(not _futex.HAVE_FUTEX, reason="needs Linux futex")
needs_ofd = pytest.mark.skipif(not _locks.HAVE_OFD_LOCKS, reason="needs OFD locks")

# Every test here runs through the native fused wait and the pure-Python one.
pytestmark = pytest.mark.usefixtures("wait_impl")


def test_the_native_wait_is_there_when_the_build_made_it(wait_impl: str) -> None:
    # Under meson (SHMRING_NATIVE_BUILT=1, tests/python/meson.build) the native twin of
    # every test in this file really runs: the helper must import, and a consumer
    # ring must use it (or not, when switched off).
    if os.environ.get("SHMRING_NATIVE_BUILT") == "1":
        assert _futex.native_available()
    with ShmProducer(unique_name(), 4096) as p, ShmConsumer(p.name) as c:
        assert (c.ring._waiter is not None) == (wait_impl == "native")


def _fill(p: ShmProducer) -> None:
    while p.write(bytes(56)):
        pass


def _producer_waiting(p: ShmProducer) -> bool:
    return bool(p.ring.producer_flags & layout.PRODUCER_WAITING)


def _wait_for(pred: Any) -> None:
    ev = threading.Event()
    for _ in range(300_000):  # a hang guard (30 s), not a timing
        if pred():
            return
        ev.wait(0.0001)
    raise AssertionError("condition never held")


@needs_futex
def test_idle_consumer_sleeps_whole_slices_and_fences_once(ring_name: str) -> None:
    # 1.2 s: two whole liveness slices and part of a third. Before: a 50 ms nap cap
    # (about 24 sleeps) and one membarrier per sleep. The producer's owner word
    # unarmed (as by an older producer): 500 ms slices (armed: test_owner_word.py).
    with ShmProducer(ring_name, 4096) as p:
        p._owner.disarm()
        with ShmConsumer(ring_name) as c:
            _futex.reset_counters()
            assert c.read(timeout=1.2) is None
            sleeps, barriers, longest = _futex.counters()
            assert 2 <= sleeps <= 8
            assert longest > 0.1  # more than the old 50 ms cap
            assert barriers <= 1
            assert not c.ring.consumer_flags & layout.CONSUMER_WAITING  # cleared on return


def _run(fn: Any) -> "tuple[threading.Thread, List[Any]]":
    out: List[Any] = []

    def body() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - reported by the test
            out.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


@needs_ofd
def test_consumer_detach_ends_a_producer_wait_for_space(ring_name: str) -> None:
    with ShmProducer(ring_name, 4096) as p:
        c = ShmConsumer(ring_name)
        _fill(p)
        t, out = _run(lambda: p.write(bytes(56), timeout=60))
        _wait_for(lambda: _producer_waiting(p))
        c.close()
        t.join(60)
        assert out == [False]  # nobody is left to make room


@needs_ofd
def test_consumer_detach_ends_a_producer_reserve_with_a_timeout_error(ring_name: str) -> None:
    with ShmProducer(ring_name, 4096) as p:
        c = ShmConsumer(ring_name)
        _fill(p)

        def reserve() -> Any:
            with p.reserve(56, timeout=60):
                return "reserved"
        t, out = _run(reserve)
        _wait_for(lambda: _producer_waiting(p))
        c.close()
        t.join(60)
        assert len(out) == 1 and isinstance(out[0], RingTimeoutError)
        assert "consumer left" in str(out[0])


@needs_ofd
def test_consumer_killed_ends_a_producer_wait_for_space(ring_name: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time, shmring
            c = shmring.ShmConsumer({ring_name!r}, timeout=30)
            sys.stdout.write("ready\\n"); sys.stdout.flush()
            time.sleep(600)
        """)], stdout=subprocess.PIPE, env=python_env())
    try:
        with ShmProducer(ring_name, 4096) as p:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"ready"
            _fill(p)
            t, out = _run(lambda: p.write(bytes(56), timeout=60))
            _wait_for(lambda: _producer_waiting(p))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(60)
            t.join(60)
            assert out == [False]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_producer_wait_before_any_consumer_keeps_waiting(ring_name: str) -> None:
    with ShmProducer(ring_name, 4096) as p:
        _fill(p)
        t, out = _run(lambda: p.write(b"y" * 56, timeout=60))
        _wait_for(lambda: _producer_waiting(p))
        with ShmConsumer(ring_name) as c:
            assert c.read(timeout=60) == bytes(56)
            t.join(60)
            assert out == [True]


def test_consumer_gone_before_the_wait_ends_it_at_once(ring_name: str) -> None:
    with ShmProducer(ring_name, 4096) as p:
        ShmConsumer(ring_name).close()
        _fill(p)
        assert p.write(bytes(56), timeout=60) is False  # nobody is left to make room
        with pytest.raises(RingTimeoutError, match="consumer left"):
            with p.reserve(56, timeout=60):
                pass


def test_attach_clears_a_dead_receivers_waiting_and_counts_sleeps(ring_name: str) -> None:
    # A receiver that died asleep leaves WAITING | COUNTS_SLEEPS in its slot's flags.
    # This package does not count its sleeps (it sets WAITING only): with the dead
    # receiver's COUNTS_SLEEPS left set, a C++ producer that woke the dead receiver's
    # last sleep would skip every wake of ours on that unchanged count (C++ twin:
    # WakeOncePerSleep.ReceiverThatDoesNotCountIsWokenAfterADeadCountingOne).
    stale = layout.CONSUMER_WAITING | layout.CONSUMER_COUNTS_SLEEPS
    with ShmProducer(ring_name, 4096) as p:
        w = p.ring._w
        flags_word = layout.slot_word(0, layout.SLOT_FLAGS)
        w[flags_word] = w[flags_word] | stale  # the dead receiver's flags, as it left them
        with ShmConsumer(ring_name) as c:
            assert not c.ring.consumer_flags & stale


def _as_32_bit_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes this process look like a 32-bit Python on this (64-bit) kernel to the
    system-call number lookup: 4-byte pointers, platform.machine() unchanged."""
    import ctypes
    real = ctypes.sizeof
    monkeypatch.setattr(ctypes, "sizeof",
                        lambda t: 4 if t is ctypes.c_void_p else real(t))


@needs_futex
def test_a_32_bit_process_gets_no_64_bit_system_call_numbers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # platform.machine() names the kernel's architecture: a 32-bit Python on an
    # x86-64 or aarch64 kernel must not call futex or set_robust_list by the 64-bit
    # numbers (i386 202 is getegid32; 32-bit ARM 100, "get_robust_list", is fstatfs,
    # which would write a struct statfs into a 4-byte pointer). Before: the numbers
    # of the kernel's architecture.
    from shmring import _owner
    assert _futex._load_syscall()[3] == _futex._SYS_FUTEX != 0  # this 64-bit process
    _as_32_bit_process(monkeypatch)
    assert _futex._load_syscall() == (None, None, None, 0, 0)
    assert _owner._robust_syscalls() is None


# A process that looks 32-bit (_as_32_bit_process, done before shmring is imported):
# it must use the fallbacks (poll waits, no owner word) and still work: a blocking
# read ended by a write from another thread, then by the end of stream.
_THIRTY_TWO_BIT = textwrap.dedent('''
    import ctypes, sys, threading
    real = ctypes.sizeof
    ctypes.sizeof = lambda t: 4 if t is ctypes.c_void_p else real(t)
    from shmring import ShmConsumer, ShmProducer, _futex, _owner, layout
    name = sys.argv[1]
    assert not _futex.HAVE_FUTEX and not _futex.native_available()
    assert _owner._NUMBERS is None
    with ShmProducer(name, 4096) as p, ShmConsumer(name) as c:
        assert not p._owner.armed and p._owner.error.startswith("no robust futexes")
        assert c.ring._w[layout.PRODUCER_OWNER_WORD] == 0
        got = []
        t = threading.Thread(target=lambda: got.append((c.read(timeout=60),
                                                        c.read(timeout=60))))
        t.start()
        while not c.ring.consumer_flags & layout.CONSUMER_WAITING:
            threading.Event().wait(0.001)
        assert p.write(b"x")
        p.end_stream()
        t.join(60)
        assert got == [(b"x", None)] and c.at_end, got
        sleeps = _futex.counters()[0]
        assert sleeps >= 1  # the reader slept (poll_wait counts its sleeps too)
    print("ok", flush=True)
''')


def test_a_32_bit_process_uses_the_poll_fallback_and_works(ring_name: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _THIRTY_TWO_BIT, ring_name],
                          env=python_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "ok\n", (proc.stdout, proc.stderr)
