"""Linux futex and membarrier through ctypes ``syscall``; a bounded back-off poll elsewhere.

``ctypes.CDLL`` functions release the GIL for the duration of the call, so a thread
asleep in ``FUTEX_WAIT`` never blocks the rest of the interpreter. The futex calls
are *shared* (no ``FUTEX_PRIVATE_FLAG``): waker and sleeper are different processes
mapping the same segment (the kernel keys shared futexes on the page, not the address).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple, TypeVar

from .layout import OWNER_DIED as _OWNER_DIED
from ._tuning import LIVENESS_SLICE_S, POLL_NAP_MAX_S, POLL_NAP_MIN_S, POLL_RETURN_S

try:  # the optional C helper (python/native/_native.c); absent: pure Python
    from . import _native as _native_module
except ImportError:
    _native_module = None  # type: ignore[assignment]

# Syscall numbers per architecture: (SYS_futex, SYS_membarrier). 64-bit ABIs only
# (host_numbers): a 32-bit process on one of these kernels has other numbers.
_SYSCALLS = {
    "x86_64": (202, 324),
    "amd64": (202, 324),
    "aarch64": (98, 283),
    "arm64": (98, 283),
    "riscv64": (98, 283),
}

FUTEX_WAIT = 0
FUTEX_WAKE = 1
_INT_MAX = 0x7FFFFFFF

MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2
MEMBARRIER_CMD_PRIVATE_EXPEDITED = 1 << 3
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 1 << 4


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _WaitV(ctypes.Structure):
    """``struct futex_waitv`` of <linux/futex.h>."""
    _fields_ = [("val", ctypes.c_uint64), ("uaddr", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]


# futex_waitv (Linux >= 5.16) has the same number on every architecture.
_SYS_FUTEX_WAITV = 449
_FUTEX_32 = 2  # futex_waitv flags: 32-bit word, shared (no FUTEX_PRIVATE_FLAG)
_CLOCK_MONOTONIC = 1
_L = ctypes.c_long


_Numbers = TypeVar("_Numbers")


def host_numbers(table: Dict[str, _Numbers]) -> Optional[_Numbers]:
    """The entry of ``table`` (system call numbers of 64-bit Linux ABIs, by
    ``platform.machine()``) for this process, or None. ``platform.machine()`` names
    the kernel's architecture, not the process's: a 32-bit Python on a 64-bit kernel
    (an i386 container on x86-64, armhf userland on an aarch64 kernel) has other
    numbers (i386 202 is getegid32, 32-bit ARM 100 is fstatfs), so a process whose
    pointers are not 8 bytes gets None. Never blocks."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    return table.get(platform.machine().lower())


def _load_syscall() -> Tuple[Any, Any, Any, int, int]:
    """(generic syscall, futex-typed syscall, futex_waitv-typed syscall, SYS_futex,
    SYS_membarrier). Each typed function object has its argtypes set once, so a
    call converts plain ints without building ctypes objects per call."""
    numbers = host_numbers(_SYSCALLS)
    if numbers is None:  # the bounded poll (poll_wait) instead
        return None, None, None, 0, 0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        generic = libc["syscall"]  # item access: a new function object each time
        futex = libc["syscall"]
        waitv = libc["syscall"]
    except (OSError, AttributeError):
        return None, None, None, 0, 0
    generic.restype = futex.restype = waitv.restype = ctypes.c_long
    # syscall(SYS_futex, uaddr, op, val, timeout*, uaddr2, val3)
    futex.argtypes = (_L, _L, _L, _L, _L, _L, _L)
    # syscall(SYS_futex_waitv, waiters*, nr, flags, timeout*, clockid)
    waitv.argtypes = (_L, _L, _L, _L, _L, _L)
    return generic, futex, waitv, numbers[0], numbers[1]


_syscall, _futex_call, _waitv_call, _SYS_FUTEX, _SYS_MEMBARRIER = _load_syscall()
_get_errno = ctypes.get_errno

#: True when this process can sleep on a shared word with futex.
HAVE_FUTEX = _syscall is not None
# Cleared the first time futex_waitv says ENOSYS (kernel < 5.16, seccomp).
_have_waitv = HAVE_FUTEX


class _Counters:
    """Process-wide counts for tests and benchmarks (the sleeping path only)."""
    __slots__ = ("sleeps", "heavy_barriers", "longest_timeout", "owner_wakes", "owner_deaths")

    def __init__(self) -> None:
        self.sleeps = 0
        self.heavy_barriers = 0
        self.longest_timeout = 0.0
        self.owner_wakes = 0  # sleeps ended by the owner word (PairSleeper's third word)
        self.owner_deaths = 0  # a consumer saw the owner word newly marked OWNER_DIED


_counts = _Counters()


def counters() -> Tuple[int, int, float]:
    """(sleeps, heavy barriers, longest sleep timeout in s; inf = no limit) since the
    last :func:`reset_counters`, of the pure-Python and the native waits together.
    Test seam and benchmark aid. Never blocks."""
    sleeps, barriers, longest = _counts.sleeps, _counts.heavy_barriers, _counts.longest_timeout
    if _native_module is not None:
        n_sleeps, n_barriers, n_longest = _native_module.counters()
        sleeps += n_sleeps
        barriers += n_barriers
        longest = max(longest, n_longest)
    return sleeps, barriers, longest


def owner_counters() -> Tuple[int, int]:
    """(sleeps ended by the producer's owner word, owner words newly seen marked
    OWNER_DIED) since the last :func:`reset_counters`, of the pure-Python and the
    native waits together. Test seam. Never blocks."""
    wakes = _counts.owner_wakes
    if _native_module is not None:
        wakes += _native_module.owner_wakes()
    return wakes, _counts.owner_deaths


def note_owner_died() -> None:
    """Counts one owner word newly seen marked OWNER_DIED (:func:`owner_counters`)."""
    _counts.owner_deaths += 1


def reset_counters() -> None:
    """Zeroes :func:`counters` and :func:`owner_counters`. Never blocks."""
    _counts.sleeps = 0
    _counts.heavy_barriers = 0
    _counts.longest_timeout = 0.0
    _counts.owner_wakes = 0
    _counts.owner_deaths = 0
    if _native_module is not None:
        _native_module.reset_counters()


#: Whether new consumer rings use the native fused wait (``_native.Waiter``) when it
#: is built: on unless ``SHMRING_NO_NATIVE=1``. Tests flip it (:func:`use_native`) to
#: run the same behaviour through both paths.
_use_native = os.environ.get("SHMRING_NO_NATIVE") != "1"


def native_available() -> bool:
    """Whether the compiled helper ``shmring._native`` was found. Never blocks."""
    return _native_module is not None and HAVE_FUTEX


def use_native(enabled: bool) -> bool:
    """Rings created after this call use the native wait (when available) or the
    pure-Python one; returns the previous setting. Test seam. Never blocks."""
    global _use_native
    previous = _use_native
    _use_native = enabled
    return previous


def have_waitv() -> bool:
    """Whether sleeps include every word they are given (futex_waitv works, not found
    missing or refused so far): only then does a sleeper hear the owner word. Never
    blocks."""
    return _have_waitv


def no_waitv() -> None:
    """Records that futex_waitv is missing (the native wait said ENOSYS): new rings and
    PairSleeper use the one-word wait. Never blocks."""
    global _have_waitv
    _have_waitv = False


def native_waiter(head_address: int, producer_flags_address: int, flags_address: int,
                  waiting_bit: int, closed_bit: int, membarrier_bit: int,
                  unfenced_nap: float, spin_polls: int, spin_after: float,
                  owner_address: int = 0) -> Any:
    """A ``_native.Waiter`` for a consumer ring view, or None when the native wait is
    unavailable or switched off (the caller then uses :class:`PairSleeper`).
    ``owner_address``: the producer's owner word, slept on as a third word at the
    waiter's ``owner_seen`` value."""
    if _native_module is None or not _use_native or not HAVE_FUTEX or not _have_waitv:
        return None
    return _native_module.Waiter(head_address, producer_flags_address, flags_address,
                                 waiting_bit, closed_bit, membarrier_bit, unfenced_nap,
                                 spin_polls, spin_after, owner_address)


def count_heavy_barrier() -> None:
    """Counts one membarrier(GLOBAL_EXPEDITED) (``_fence.heavy_barrier``)."""
    _counts.heavy_barriers += 1


def _count_sleep(timeout: Optional[float]) -> None:
    c = _counts
    c.sleeps += 1
    t = float("inf") if timeout is None else timeout
    if t > c.longest_timeout:
        c.longest_timeout = t


def _call(*args: int) -> int:
    """syscall(...) with every argument passed as a full C long; returns -errno on failure."""
    assert _syscall is not None
    result = _syscall(*[ctypes.c_long(a) for a in args])
    if result == -1:
        return -ctypes.get_errno()
    return int(result)


def futex_wait(address: int, expected: int, timeout: Optional[float]) -> bool:
    """Sleeps while the u32 at ``address`` equals ``expected``, at most ``timeout`` s.

    Returns False when the timeout expired, True otherwise (woken, value already
    different, or a signal: callers re-check). Blocks; releases the GIL.
    """
    _count_sleep(timeout)
    ts_ptr = 0
    if timeout is not None:
        timeout = max(0.0, timeout)
        seconds = int(timeout)
        ts = _Timespec(seconds, int((timeout - seconds) * 1e9))
        ts_ptr = ctypes.addressof(ts)
    if _futex_call(_SYS_FUTEX, address, FUTEX_WAIT, expected & 0xFFFFFFFF, ts_ptr, 0, 0) == 0:
        return True
    e = _get_errno()
    if e == errno.EAGAIN or e == errno.EINTR:
        return True
    if e == errno.ETIMEDOUT:
        return False
    raise OSError(e, f"futex(FUTEX_WAIT) failed: errno {e} ({os.strerror(e)})")


def futex_wake(address: int) -> None:
    """Wakes every sleeper on the u32 at ``address``, in any process. Never blocks."""
    if _futex_call is None:
        return
    if _futex_call(_SYS_FUTEX, address, FUTEX_WAKE, _INT_MAX, 0, 0, 0) < 0:
        e = _get_errno()
        raise OSError(e, f"futex(FUTEX_WAKE) failed: errno {e} ({os.strerror(e)})")


class PairSleeper:
    """Sleeps on two shared u32 words at once (``futex_waitv``): while ``words[index]``
    still holds one value and ``words[index2]`` another. A store to either word
    followed by a wake on either ends the sleep, and a store made before the call
    ends it at once (the kernel compares both after queueing the sleeper): this is
    how a sleeper on an index word also hears a flag that does not change the index
    (CLOSED, a detach). Without futex_waitv (kernel < 5.16, not Linux) it sleeps on
    the first word alone (futex or poll), so a change of the second word is seen at
    the caller's next look (its timeout).

    Everything the system call needs is built once here: a sleep only stores four
    integers into a preallocated buffer. One instance per sleeping side of a ring;
    the calls on one instance come from one thread at a time.

    ``index3`` (> 0): a third word, the producer's owner word, slept on at
    :attr:`expected3` (what the consumer last judged; it sets the attribute when the
    word changes): the kernel's wake at the producer's death ends the sleep.
    """

    __slots__ = ("_words", "_index", "_address", "_buf", "_vals", "_ts", "_ts_address",
                 "_waiters_address", "_keep", "_index3", "_address3", "_count", "expected3")

    def __init__(self, words: memoryview, index: int, address: int, index2: int,
                 address2: int, index3: int = 0, address3: int = 0) -> None:
        self._words = words
        self._index = index
        self._address = address
        self._index3 = index3
        self._address3 = address3
        self._count = 3 if index3 else 2
        self.expected3 = 0
        waiters = (_WaitV * 3)()
        waiters[0].uaddr = address
        waiters[0].flags = _FUTEX_32
        waiters[1].uaddr = address2
        waiters[1].flags = _FUTEX_32
        waiters[2].uaddr = address3
        waiters[2].flags = _FUTEX_32
        ts = _Timespec(0, 0)
        self._keep = (waiters, ts)
        self._waiters_address = ctypes.addressof(waiters)
        self._ts_address = ctypes.addressof(ts)
        # val of waiter 0 is u64 #0, of waiter 1 #3, of waiter 2 #6 (24-byte entries).
        self._vals = memoryview(waiters).cast("B").cast("Q")
        self._ts = memoryview(ts).cast("B").cast("q")

    def sleep(self, expected: int, expected2: int, timeout: Optional[float]) -> bool:
        """Sleeps while word 1 == ``expected`` and word 2 == ``expected2``, at most
        ``timeout`` s (None = no limit). False only when the timeout expired.
        Blocks; releases the GIL."""
        global _have_waitv
        if self._index3 and (timeout is None or timeout > LIVENESS_SLICE_S):
            # The one-word sleep below does not hear the owner word (nor CLOSED): a
            # caller that chose a long slice because of it gets at most a liveness slice.
            one_word: Optional[float] = LIVENESS_SLICE_S
        else:
            one_word = timeout
        if not _have_waitv:
            return wait_on_word(self._words, self._index, self._address, expected, one_word)
        _count_sleep(timeout)
        vals = self._vals
        vals[0] = expected & 0xFFFFFFFF
        vals[3] = expected2 & 0xFFFFFFFF
        vals[6] = self.expected3 & 0xFFFFFFFF
        ts_address = 0
        if timeout is not None:  # an absolute CLOCK_MONOTONIC deadline (time.monotonic)
            deadline = time.monotonic() + max(0.0, timeout)
            seconds = int(deadline)
            ts = self._ts
            ts[0] = seconds
            ts[1] = int((deadline - seconds) * 1e9)
            ts_address = self._ts_address
        r = _waitv_call(_SYS_FUTEX_WAITV, self._waiters_address, self._count, 0, ts_address,
                        _CLOCK_MONOTONIC)
        if r >= 0:
            if r == 2:
                # A sleep that expected a value without OWNER_DIED may have taken the
                # kernel's one wake at the producer's death: pass it on to the word's
                # other sleepers (the ring's other receivers). One that expected
                # OWNER_DIED was woken by such a pass-on (or by anyone): passing it on
                # again would make sleepers on a dead word wake each other in a loop.
                _counts.owner_wakes += 1
                if not self.expected3 & _OWNER_DIED:
                    wake_word(self._address3)
            return True
        e = _get_errno()
        if e == errno.EAGAIN or e == errno.EINTR:
            if e == errno.EAGAIN and self._index3 and \
                    self._words[self._index3] != self.expected3:
                _counts.owner_wakes += 1
            return True
        if e == errno.ETIMEDOUT:
            return False
        # ENOSYS: kernel < 5.16; EPERM (or ENOSYS) from a seccomp profile that predates
        # the call; anything else it refuses: the one-word wait from now on.
        _have_waitv = False
        _counts.sleeps -= 1  # counted again by the one-word wait
        return wait_on_word(self._words, self._index, self._address, expected, one_word)


def poll_wait(words: memoryview, index: int, expected: int, timeout: Optional[float]) -> bool:
    """Bounded back-off poll: the wait where futex is unavailable.

    Returns True when the word changed or after about 20 ms (callers re-check their
    state regularly), False when ``timeout`` expired first. Blocks (time.sleep
    releases the GIL).
    """
    _count_sleep(timeout)
    start = time.monotonic()
    pause = POLL_NAP_MIN_S
    while words[index] == expected:
        elapsed = time.monotonic() - start
        if timeout is not None and elapsed >= timeout:
            return False
        if elapsed > POLL_RETURN_S:
            return True
        step = pause if timeout is None else min(pause, timeout - elapsed)
        time.sleep(max(step, 0.0))
        pause = min(pause * 2, POLL_NAP_MAX_S)
    return True


def wait_on_word(words: memoryview, index: int, address: int, expected: int,
                 timeout: Optional[float]) -> bool:
    """Sleeps while ``words[index]`` (at ``address``) == ``expected``: futex or poll.

    Returns False only when ``timeout`` expired. Blocks.
    """
    if _futex_call is not None:
        return futex_wait(address, expected, timeout)
    return poll_wait(words, index, expected, timeout)


def wake_word(address: int) -> None:
    """Wakes sleepers on the word at ``address`` (no-op where waits are polls).
    Any thread; never blocks."""
    if _futex_call is not None:
        if _futex_call(_SYS_FUTEX, address, FUTEX_WAKE, _INT_MAX, 0, 0, 0) < 0:
            e = _get_errno()
            raise OSError(e, f"futex(FUTEX_WAKE) failed: errno {e} ({os.strerror(e)})")


def membarrier(cmd: int) -> int:
    """Raw membarrier(cmd, 0, 0); returns its result or -errno (-ENOSYS where absent)."""
    if _syscall is None:
        return -errno.ENOSYS
    return _call(_SYS_MEMBARRIER, cmd, 0, 0)


_register_lock = threading.Lock()
_registered: Optional[bool] = None


def register_membarrier() -> bool:
    """Registers this process for MEMBARRIER_CMD_GLOBAL_EXPEDITED once; True on success.

    False where membarrier is missing or ``SHMRING_NO_MEMBARRIER=1`` is set. A
    registered process is reached by a peer's GLOBAL_EXPEDITED barrier, which is what
    lets its fast path skip the full fence. Thread-safe; never blocks.
    """
    global _registered
    with _register_lock:
        if _registered is None:
            _registered = _try_register()
        return _registered


def _try_register() -> bool:
    if os.environ.get("SHMRING_NO_MEMBARRIER") == "1":
        return False
    commands = membarrier(MEMBARRIER_CMD_QUERY)
    needed = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
    if commands < 0 or (commands & needed) != needed:
        return False
    return membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0


def register_private_expedited() -> bool:
    """Registers this process for MEMBARRIER_CMD_PRIVATE_EXPEDITED; True on success.

    Idempotent (the kernel keeps the registration per address space; a forked
    child has a new one and must register again). Used by ``_fence`` as the full
    barrier on weakly ordered CPUs. Never blocks beyond the system call.
    """
    commands = membarrier(MEMBARRIER_CMD_QUERY)
    needed = MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
    if commands < 0 or (commands & needed) != needed:
        return False
    return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
