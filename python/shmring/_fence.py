"""Memory ordering for the Python side, which cannot emit fence instructions itself.

What each side needs (docs/DESIGN.md, "wait protocol"):

* acquire after loading the peer's index, release before storing our own;
* a store-load (full) fence between storing our index and loading the peer's
  WAITING flag, unless this process registered for membarrier (then the peer's
  ``membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`` supplies it), and between
  setting our own WAITING flag and re-checking the peer's index before we sleep.

x86-64 (TSO): loads are not reordered with older loads and stores are not
reordered with older stores, and each shared-word access is a separate, opaque C
call in CPython (the compiler cannot move one across another), so program order
already gives acquire and release: ``acquire_fence``/``release_fence`` are no-ops.
The one reordering TSO allows, a load passing an older store, is what the full
fence stops: an uncontended ``threading.Lock`` acquire/release pair, which runs a
``lock``-prefixed read-modify-write (glibc semaphores or CPython's PyMutex), and on
x86 every locked instruction is a full barrier.

Weakly ordered CPUs (aarch64, riscv64) on Linux: a lock round-trip is *not* a full
barrier there (acquire plus release does not order an older store before a younger
load), so the full fence is a ``FUTEX_WAKE`` syscall on a private dummy word: the
kernel's wake path starts with ``smp_mb()`` (``futex_hb_waiters_pending``). The same
barrier is used for acquire and release on those CPUs, so they pay a syscall per
index access: correct, slower. Other weakly ordered hosts without futex get a lock
round-trip and a warning: no ordering claim is made for them.
"""
from __future__ import annotations

import ctypes
import platform
import threading
import warnings

from . import _futex

_machine = platform.machine().lower()
STRONGLY_ORDERED = _machine in ("x86_64", "amd64", "i386", "i686", "x86")

_lock = threading.Lock()


def _lock_round_trip() -> None:
    with _lock:
        pass


_dummy_word = ctypes.c_uint32(0)
_dummy_address = ctypes.addressof(_dummy_word)


def _kernel_barrier() -> None:
    _futex.futex_wake(_dummy_address)


def _noop() -> None:
    pass


if STRONGLY_ORDERED:
    full_fence = _lock_round_trip
    acquire_fence = _noop
    release_fence = _noop
elif _futex.HAVE_FUTEX:
    full_fence = _kernel_barrier
    acquire_fence = _kernel_barrier
    release_fence = _kernel_barrier
else:  # pragma: no cover - no such CI host
    warnings.warn(
        f"shmring: no known full barrier for pure Python on {_machine!r} without futex; "
        "cross-process ordering is not guaranteed on this host", RuntimeWarning)
    full_fence = _lock_round_trip
    acquire_fence = _lock_round_trip
    release_fence = _lock_round_trip

full_fence.__doc__ = "Store-load (full) barrier; see the module docstring. Never blocks."


def heavy_barrier() -> None:
    """The sleeper's side of an asymmetric fence: membarrier(GLOBAL_EXPEDITED).

    Forces a full barrier on every CPU running a registered process (the light
    peer) and on ours; falls back to ``full_fence`` when the call fails. Blocks
    for one IPI round (well under a millisecond).
    """
    if _futex.membarrier(_futex.MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0:
        full_fence()
    full_fence()
