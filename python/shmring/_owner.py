"""The producer's owner word armed from Python (Linux): the twin of core/src/owner_word.cpp.

A small daemon thread per ring registers a robust-futex list of its own
(``set_robust_list``) whose only entry points at the header's owner word
(layout.PRODUCER_OWNER_OFFSET), stores its thread id | OWNER_WAITERS there and sleeps
until :meth:`OwnerArm.disarm`. When the process dies in any way (kill -9 included),
exits without closing the producer, or execs, the kernel finds that thread's id in
the word, stores OWNER_WAITERS | OWNER_DIED and wakes one sleeper on it: receivers
of a Python producer hear of its death at once and need only 5 s liveness slices,
as with a C++ producer (docs/DESIGN.md section 4, "Producer death wakes the
receivers"; docs/PROTOCOL.md section 5, "The owner word").

Why a thread of its own: the kernel keeps one robust list per thread, and glibc owns
the list of every thread it starts. This thread runs nothing but :func:`_run` (no
robust pthread mutex), so replacing its list takes nothing from glibc; it puts
glibc's list back before it returns.

Why ctypes and not the optional C helper (python/native/_native.c): the thread makes
a handful of system calls in its life and otherwise sleeps, so ctypes costs nothing that
matters, and the arm then works where the helper is not built.

Anything that fails (not Linux, an architecture without known syscall numbers, a
32-bit process on a 64-bit kernel, no ctypes ``syscall``, a seccomp profile refusing
``set_robust_list``, no thread to be had, threads that are greenlets on the
constructing thread under gevent or eventlet) leaves the word 0: receivers keep 500 ms
liveness slices. Never an error for the user; :attr:`OwnerArm.error` says which call
failed, with its errno.
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
import weakref
from typing import Any, List, Optional, Tuple

from . import _futex
from ._fence import release_fence
from .layout import OWNER_TID_MASK, OWNER_WAITERS

# (SYS_set_robust_list, SYS_get_robust_list, SYS_gettid) per architecture
# (asm/unistd_64.h; asm-generic/unistd.h for aarch64 and riscv64): 64-bit ABIs only
# (_futex.host_numbers).
_ROBUST_SYSCALLS = {
    "x86_64": (273, 274, 186),
    "amd64": (273, 274, 186),
    "aarch64": (99, 100, 178),
    "arm64": (99, 100, 178),
    "riscv64": (99, 100, 178),
}


def _robust_syscalls() -> Optional[Tuple[int, int, int]]:
    if not _futex.HAVE_FUTEX:
        return None
    return _futex.host_numbers(_ROBUST_SYSCALLS)


_NUMBERS = _robust_syscalls()
_syscall = _futex._call  # syscall(...) -> result or -errno (a test seam: seccomp refusals)


class _RobustList(ctypes.Structure):
    """``struct robust_list`` of <linux/futex.h>: one entry of the list."""
    _fields_ = [("next", ctypes.c_void_p)]


class _RobustListHead(ctypes.Structure):
    """``struct robust_list_head`` of <linux/futex.h>."""
    _fields_ = [("next", ctypes.c_void_p),  # list.next
                ("futex_offset", ctypes.c_long),
                ("list_op_pending", ctypes.c_void_p)]


def _failed(call: str, result: int) -> str:
    e = -result
    return f"{call} failed: errno {e} ({os.strerror(e)})"


# The arming thread's stop word: a private futex (this process only).
_FUTEX_WAIT_PRIVATE = _futex.FUTEX_WAIT | 128  # FUTEX_PRIVATE_FLAG
_FUTEX_WAKE_PRIVATE = _futex.FUTEX_WAKE | 128


def _sleep_until_stopped(stop: "ctypes.c_uint32") -> None:
    """The arming thread's sleep: until ``stop`` is not 0 (:meth:`OwnerArm.disarm`).

    A futex wait on the word, not a ``threading.Event``: it takes no Python lock, so a
    finalizer that this very thread runs (a garbage collection here) can stop it; an
    Event's ``set()`` would wait for the lock its own ``wait()`` holds. The word is read
    holding the GIL (ordered after the disarming thread's store, made holding it too);
    the kernel compares it again atomically with queueing the sleep against
    FUTEX_WAKE, so a stop stored after the read still ends the sleep. Blocks;
    releases the GIL."""
    address = ctypes.addressof(stop)
    while stop.value == 0:
        if _futex._futex_call(_futex._SYS_FUTEX, address, _FUTEX_WAIT_PRIVATE, 0, 0, 0,
                              0) < 0 and _futex._get_errno() not in (errno.EAGAIN,
                                                                   errno.EINTR):
            time.sleep(0.1)  # futex refused (seccomp): a slow poll, still lock-free


def _run(arm: "OwnerArm", buf: Any, offset: int, ready: threading.Event) -> None:
    """The arming thread's body.

    It takes its own export of the mapping ``buf`` and gives it back only after
    glibc's robust list is back: until then ``mmap.close()`` is refused (BufferError,
    which the closer leaves to the mapping's last reference), so the mapping cannot be
    unmapped while the word is listed with the kernel or while this thread still
    stores into it, whatever the closing thread did (interrupted in its join, or this
    thread itself running the closer from a finalizer)."""
    try:
        with memoryview(buf) as own, own.cast("B") as raw, \
                raw[offset:offset + 4] as word_bytes, word_bytes.cast("I") as word:
            arm._views = [own, raw, word_bytes, word]  # released in a forked child
            _arm_and_sleep(arm, word, ready)
    except Exception as e:  # never the user's error: the word stays (or goes back to) 0
        arm.error = f"arming the owner word failed: {e!r}"
    finally:
        arm._views = []
        arm.armed = False
        ready.set()


def _arm_and_sleep(arm: "OwnerArm", word: memoryview, ready: threading.Event) -> None:
    """Arms ``word`` (a u32 view of the owner word), sleeps until disarmed, stores 0 and
    puts glibc's list back. The list head and entry are locals of this frame, and once
    the list is registered the frame does not end before glibc's list is back: they
    live as long as the kernel may walk them."""
    assert _NUMBERS is not None
    sys_set, sys_get, sys_gettid = _NUMBERS
    tid = _syscall(sys_gettid)
    if tid < 0:
        arm.error = _failed("gettid", tid)
        return
    if tid == arm._creator:
        # gevent or eventlet monkey-patching: threading.Thread is a greenlet on the
        # constructing OS thread. set_robust_list would replace that thread's list
        # (glibc's), and two producers would chain their heads: not armed.
        arm.error = (f"the arming thread runs on the constructing OS thread {tid} "
                     "(threading monkey-patched, e.g. by gevent or eventlet): not armed")
        return
    anchor = ctypes.c_char.from_buffer(word)
    address = ctypes.addressof(anchor)
    del anchor  # its export on the view: the view must be releasable
    if address % 4:
        arm.error = f"owner word address 0x{address:x} is not 4-aligned"
        return
    head = _RobustListHead()
    entry = _RobustList()
    old_head = ctypes.c_void_p(0)
    old_len = ctypes.c_size_t(0)
    r = _syscall(sys_get, 0, ctypes.addressof(old_head), ctypes.addressof(old_len))
    if r < 0:
        arm.error = _failed("get_robust_list", r)
        return
    # A list of one entry: head -> entry -> head (the kernel stops when it is back at
    # the head). The word is at entry + futex_offset: 4-aligned, in a MAP_SHARED
    # mapping, as the kernel's handle_futex_death requires.
    entry.next = ctypes.addressof(head)
    head.next = ctypes.addressof(entry)
    head.futex_offset = address - ctypes.addressof(entry)
    head.list_op_pending = None
    r = _syscall(sys_set, ctypes.addressof(head), ctypes.sizeof(head))
    if r < 0:
        arm.error = _failed("set_robust_list", r)
        return
    try:
        # At this thread's exit (the process dies or execs) the kernel finds this id in
        # the word, stores OWNER_WAITERS | OWNER_DIED and, WAITERS being set, wakes one
        # shared-futex sleeper on the word.
        release_fence()  # the header before the armed value (C++ StoreRelease)
        word[0] = (tid & OWNER_TID_MASK) | OWNER_WAITERS
        arm.armed = True
        ready.set()
        _sleep_until_stopped(arm._stop)
    finally:
        # Disarmed (or failed): the word to 0 first (a death from here on finds no id
        # of ours and marks nothing; CLOSED, stored before, is the end of stream), then
        # glibc's list back.
        try:
            release_fence()
            word[0] = 0
        finally:
            _syscall(sys_set, old_head.value or 0, old_len.value)


class OwnerArm:
    """Arms one owner word for as long as it is not disarmed: see the module doc.

    ``buf``: the ring's writable mapping (an ``mmap``), ``offset`` the owner word's
    byte offset in it (layout.PRODUCER_OWNER_OFFSET). Producer, once, after the header
    is written, from the thread that constructs the producer; blocks until the word
    is armed (or not). Interrupted there (KeyboardInterrupt), it stops the thread
    again and re-raises.
    """

    __slots__ = ("armed", "error", "_pid", "_creator", "_stop", "_thread", "_views",
                 "__weakref__")

    def __init__(self, buf: Any, offset: int) -> None:
        #: Whether the word is armed. Any thread; never blocks.
        self.armed = False
        #: Why it was not armed ("" when it was, or when not tried on this system).
        self.error = ""
        self._pid = os.getpid()
        # Set (plain store holding the GIL, then FUTEX_WAKE) by disarm(); read by the
        # arming thread (_sleep_until_stopped).
        self._stop = ctypes.c_uint32(0)
        self._thread: Optional[threading.Thread] = None
        self._views: List[memoryview] = []  # the arming thread's export of the mapping
        self._creator = -1  # the constructing thread's kernel id (gettid)
        if _NUMBERS is None:
            self.error = ("no robust futexes known here (not Linux, another architecture, "
                          "or a 32-bit process)")
            return
        # The kernel's id, not threading.get_native_id(): right even where threading is
        # monkey-patched (the arming thread compares its own with it).
        self._creator = _syscall(_NUMBERS[2])
        ready = threading.Event()
        thread = threading.Thread(target=_run, args=(self, buf, offset, ready),
                                  name="shmring-owner", daemon=True)
        # Set before start(): an interrupt in start() or in the wait below finds the
        # thread to stop.
        self._thread = thread
        _ARMS.add(self)
        try:
            try:
                thread.start()
            except RuntimeError as e:  # no thread: the word stays 0
                self._thread = None
                self.error = f"cannot start the arming thread: {e}"
                return
            ready.wait()
        except BaseException:  # interrupted (Ctrl-C) in start() or in the wait
            self.disarm()
            raise

    def disarm(self) -> None:
        """Stops the arming thread, which stores 0 into the word, takes it off the
        kernel's list and then gives back its export of the mapping; joins it. In a
        forked child (the thread and the word belong to the parent) nothing is
        touched. Idempotent. Any thread; blocks for the join (the thread wakes at
        once), except in the arming thread itself (a finalizer run by a garbage
        collection there), which goes on once the caller returns to it: the mapping
        stays mapped until it has (its export), so the caller may close the mmap."""
        thread, self._thread = self._thread, None
        if thread is None or os.getpid() != self._pid:
            return
        stop = self._stop
        stop.value = 1
        _futex._futex_call(_futex._SYS_FUTEX, ctypes.addressof(stop), _FUTEX_WAKE_PRIVATE,
                           1, 0, 0, 0)
        if thread.ident == threading.get_ident():
            return  # the arming thread: it stops when this finalizer returns to it
        try:
            thread.join()
        except RuntimeError:
            # start() was interrupted before the thread said it runs: it finds the stop
            # word set and ends by itself, its export keeping the mapping until then.
            pass


# Arms of this process: a forked child gives back the views its copy of each arming
# thread (which does not exist in the child) held, so the child can unmap its copy.
_ARMS: "weakref.WeakSet[OwnerArm]" = weakref.WeakSet()


def _release_orphaned_views() -> None:
    for arm in list(_ARMS):
        views, arm._views = arm._views, []
        arm._thread = None
        arm.armed = False
        for view in reversed(views):
            try:
                view.release()
            except (BufferError, ValueError):
                pass  # forked while the thread held a derived export: kept


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_orphaned_views)
