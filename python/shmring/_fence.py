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
load), so every fence is a system call that executes the kernel's ``smp_mb()``
(``dmb ish`` on arm64, ``fence rw,rw`` on riscv: a full barrier towards every other
CPU, hence every other process). The same barrier serves acquire and release, so
those CPUs pay a syscall per index access: correct, slower. In order of preference:

1. ``membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)``, after
   ``MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`` (Linux >= 4.14). Its documented
   guarantee (membarrier(2), ``include/uapi/linux/membarrier.h``) is that every
   running thread of the process passes through a state where its accesses match
   program order; to give it, ``membarrier_private_expedited()`` executes
   ``smp_mb()`` on the calling CPU on entry and again before returning (the
   "system call entry/exit is not a mb" barriers that order the caller's accesses
   against the IPI-fenced siblings: scenarios A and B in
   ``kernel/sched/membarrier.c``). Caveat: the kernel returns early, with *no*
   barrier at all, when the address space has a single user (``mm_users == 1``, a
   single-threaded process: the common CPython case) or one CPU is online (that
   case is harmless: a lone CPU sees its own accesses in order). So this module
   keeps one parked daemon thread ("shmring-fence-sibling", started on first use,
   re-started in a forked child) whose only job is to make ``mm_users >= 2``. The
   sibling sleeps, so the call sends no IPI: cost is one cheap system call.
2. Fallback, when (1) is unavailable (old kernel, seccomp, membarrier disabled, the
   sibling thread cannot start): ``FUTEX_WAKE`` on a private dummy word. The wake
   path runs ``smp_mb()`` in ``futex_hb_waiters_pending()`` before looking for
   waiters. That is a kernel implementation detail, not a documented guarantee,
   which is why it is only the fallback.

Other weakly ordered hosts without futex get a lock round-trip and a warning: no
ordering claim is made for them.
"""
from __future__ import annotations

import ctypes
import os
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


def _futex_fence() -> None:
    """Full barrier from FUTEX_WAKE's smp_mb() (implementation detail; the fallback)."""
    _futex.futex_wake(_dummy_address)


# membarrier(PRIVATE_EXPEDITED) state for this process: 0 = not set up yet (or
# forked since), 1 = registered and the sibling thread runs, -1 = unavailable.
_pe_state = 0
_pe_lock = threading.Lock()
_sibling: "threading.Thread | None" = None


def _park_forever(started: threading.Event) -> None:
    parked = threading.Event()
    started.set()
    parked.wait()  # never set: this thread exists only to keep mm_users >= 2


def _start_sibling() -> bool:
    global _sibling
    started = threading.Event()
    try:
        t = threading.Thread(target=_park_forever, args=(started,), daemon=True,
                             name="shmring-fence-sibling")
        t.start()
    except RuntimeError:  # cannot start threads (interpreter shutting down, limits)
        return False
    if not started.wait(5.0):
        return False
    _sibling = t
    return True


def _setup_private_expedited() -> bool:
    global _pe_state
    with _pe_lock:
        if _pe_state == 0:
            ok = _futex.HAVE_FUTEX and _futex.register_private_expedited() and \
                _start_sibling()
            _pe_state = 1 if ok else -1
        return _pe_state == 1


def _after_fork_in_child() -> None:
    # The child has a new address space (registration may not carry over) and only
    # the forking thread: register again and start a new sibling on first use.
    global _pe_state, _sibling, _pe_lock
    _pe_state = 0
    _sibling = None
    _pe_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _membarrier_fence() -> None:
    """Full barrier from membarrier(PRIVATE_EXPEDITED), or the futex fallback."""
    if _pe_state != 1 and not _setup_private_expedited():
        _futex_fence()
        return
    if _futex.membarrier(_futex.MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0:
        _futex_fence()


def _noop() -> None:
    pass


if STRONGLY_ORDERED:
    full_fence = _lock_round_trip
    acquire_fence = _noop
    release_fence = _noop
    FENCE_KIND = "lock"
elif _futex.HAVE_FUTEX:
    full_fence = _membarrier_fence
    acquire_fence = _membarrier_fence
    release_fence = _membarrier_fence
    FENCE_KIND = "membarrier-private-expedited (futex fallback)"
else:  # pragma: no cover - no such CI host
    warnings.warn(
        f"shmring: no known full barrier for pure Python on {_machine!r} without futex; "
        "cross-process ordering is not guaranteed on this host", RuntimeWarning)
    full_fence = _lock_round_trip
    acquire_fence = _lock_round_trip
    release_fence = _lock_round_trip
    FENCE_KIND = "lock (no ordering guarantee)"


def heavy_barrier() -> bool:
    """The sleeper's side of an asymmetric fence: membarrier(GLOBAL_EXPEDITED).

    Forces a full barrier on every CPU running a registered process (the light
    peer) and on ours, then issues a local ``full_fence``. Returns False when the
    membarrier call failed: then only the local fence happened, which does NOT
    order a peer that relies on our membarrier (its fast path has only a compiler
    barrier), so the caller must not trust a wake-up and must sleep briefly
    (poll). Blocks for one IPI round (well under a millisecond).
    """
    _futex.count_heavy_barrier()
    ok = _futex.membarrier(_futex.MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0
    full_fence()
    return ok
