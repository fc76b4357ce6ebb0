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
from typing import Any, Optional, Tuple

from ._tuning import POLL_NAP_MAX_S, POLL_NAP_MIN_S, POLL_RETURN_S

# Syscall numbers per architecture: (SYS_futex, SYS_membarrier).
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


def _load_syscall() -> Tuple[Any, int, int]:
    if not sys.platform.startswith("linux"):
        return None, 0, 0
    numbers = _SYSCALLS.get(platform.machine().lower())
    if numbers is None:
        return None, 0, 0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.syscall
    except (OSError, AttributeError):
        return None, 0, 0
    fn.restype = ctypes.c_long
    return fn, numbers[0], numbers[1]


_syscall, _SYS_FUTEX, _SYS_MEMBARRIER = _load_syscall()

#: True when this process can sleep on a shared word with futex.
HAVE_FUTEX = _syscall is not None


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
    ts_ptr = None
    if timeout is not None:
        timeout = max(0.0, timeout)
        seconds = int(timeout)
        ts = _Timespec(seconds, int((timeout - seconds) * 1e9))
        ts_ptr = ctypes.addressof(ts)
    r = _call(_SYS_FUTEX, address, FUTEX_WAIT, expected & 0xFFFFFFFF, ts_ptr or 0, 0, 0)
    if r >= 0 or r in (-errno.EAGAIN, -errno.EINTR):
        return True
    if r == -errno.ETIMEDOUT:
        return False
    raise OSError(-r, f"futex(FUTEX_WAIT) failed: errno {-r} ({os.strerror(-r)})")


def futex_wake(address: int) -> None:
    """Wakes every sleeper on the u32 at ``address``, in any process. Never blocks."""
    if _syscall is None:
        return
    r = _call(_SYS_FUTEX, address, FUTEX_WAKE, _INT_MAX, 0, 0, 0)
    if r < 0:
        raise OSError(-r, f"futex(FUTEX_WAKE) failed: errno {-r} ({os.strerror(-r)})")


def poll_wait(words: memoryview, index: int, expected: int, timeout: Optional[float]) -> bool:
    """Bounded back-off poll: the wait where futex is unavailable.

    Returns True when the word changed or after about 20 ms (callers re-check their
    state regularly), False when ``timeout`` expired first. Blocks (time.sleep
    releases the GIL).
    """
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
    if _syscall is not None:
        return futex_wait(address, expected, timeout)
    return poll_wait(words, index, expected, timeout)


def wake_word(address: int) -> None:
    """Wakes sleepers on the word at ``address`` (no-op where waits are polls)."""
    if _syscall is not None:
        futex_wake(address)


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
