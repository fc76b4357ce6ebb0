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
three system calls in its life and otherwise sleeps, so ctypes costs nothing that
matters, and the arm then works where the helper is not built.

Anything that fails (not Linux, an architecture without known syscall numbers, a
32-bit process on a 64-bit kernel, no ctypes ``syscall``, a seccomp profile refusing
``set_robust_list``, no thread to be had) leaves the word 0: receivers keep 500 ms
liveness slices. Never an error for
the user; :attr:`OwnerArm.error` says which call failed, with its errno.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Optional, Tuple

from . import _futex
from ._fence import release_fence
from .layout import OWNER_TID_MASK, OWNER_WAITERS

# (SYS_set_robust_list, SYS_get_robust_list) per architecture (asm/unistd_64.h;
# asm-generic/unistd.h for aarch64 and riscv64): 64-bit ABIs only (_futex.host_numbers).
_ROBUST_SYSCALLS = {
    "x86_64": (273, 274),
    "amd64": (273, 274),
    "aarch64": (99, 100),
    "arm64": (99, 100),
    "riscv64": (99, 100),
}


def _robust_syscalls() -> Optional[Tuple[int, int]]:
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


def _run(arm: "OwnerArm", words: memoryview, index: int, address: int,
         ready: threading.Event) -> None:
    """The arming thread's body. The list head and entry are locals of this frame, and
    once the list is registered the frame does not end before glibc's list is back:
    they live as long as the kernel may walk them."""
    try:
        assert _NUMBERS is not None
        sys_set, sys_get = _NUMBERS
        head = _RobustListHead()
        entry = _RobustList()
        old_head = ctypes.c_void_p(0)
        old_len = ctypes.c_size_t(0)
        r = _syscall(sys_get, 0, ctypes.addressof(old_head), ctypes.addressof(old_len))
        if r < 0:
            arm.error = _failed("get_robust_list", r)
            return
        # A list of one entry: head -> entry -> head (the kernel stops when it is back
        # at the head). The word is at entry + futex_offset: 4-aligned, in a MAP_SHARED
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
            # At this thread's exit (the process dies or execs) the kernel finds this
            # id in the word, stores OWNER_WAITERS | OWNER_DIED and, WAITERS being set,
            # wakes one shared-futex sleeper on the word.
            release_fence()  # the header before the armed value (C++ StoreRelease)
            words[index] = (threading.get_native_id() & OWNER_TID_MASK) | OWNER_WAITERS
            arm.armed = True
            ready.set()
            arm._stop.wait()
        finally:
            # Disarmed (or failed): the word to 0 first (a death from here on finds no
            # id of ours and marks nothing; CLOSED, stored before, is the end of
            # stream), then glibc's list back.
            try:
                release_fence()
                words[index] = 0
            finally:
                _syscall(sys_set, old_head.value or 0, old_len.value)
    except Exception as e:  # never the user's error: the word stays (or goes back to) 0
        arm.error = f"arming the owner word failed: {e!r}"
    finally:
        ready.set()


class OwnerArm:
    """Arms one owner word for as long as it is not disarmed: see the module doc.

    ``words``: a native u32 view of the ring (``_atomics.word_view``), ``index`` the
    owner word's index in it and ``address`` its address. Producer, once, after the
    header is written; blocks until the word is armed (or not).
    """

    __slots__ = ("armed", "error", "_pid", "_stop", "_thread")

    def __init__(self, words: memoryview, index: int, address: int) -> None:
        #: Whether the word was armed. Any thread; never blocks.
        self.armed = False
        #: Why it was not armed ("" when it was, or when not tried on this system).
        self.error = ""
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if _NUMBERS is None:
            self.error = "no robust futexes known here (not Linux, or another architecture)"
            return
        if address % 4:
            self.error = f"owner word address 0x{address:x} is not 4-aligned"
            return
        ready = threading.Event()
        thread = threading.Thread(target=_run, args=(self, words, index, address, ready),
                                  name="shmring-owner", daemon=True)
        try:
            thread.start()
        except RuntimeError as e:  # no thread: the word stays 0
            self.error = f"cannot start the arming thread: {e}"
            return
        ready.wait()
        self._thread = thread

    def disarm(self) -> None:
        """Stores 0 into the word, takes it off the kernel's list and joins the thread:
        afterwards the kernel holds no pointer into the mapping, which may then be
        unmapped. In a forked child (the thread and the word belong to the parent)
        nothing is touched. Idempotent. Any thread but the arming one; blocks for the
        join (the thread wakes at once)."""
        thread, self._thread = self._thread, None
        if thread is None or os.getpid() != self._pid:
            return
        self._stop.set()
        if thread is not threading.current_thread():  # (a finalizer run by its own GC)
            thread.join()
        self.armed = False
