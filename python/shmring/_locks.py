"""Liveness and role locks: OFD byte-range locks on the segment's file (Linux).

The producer holds a write lock on byte 0 of its segment from before it stores the
magic until it is done with the ring; a consumer claims the consumer role with a
write lock on byte 1 (fan-out would use byte 1 + k; no other byte is used). The
kernel releases an open-file-description lock when the last descriptor of that
description closes or the process dies, whatever its pid namespace, so "byte 0 is
free and CLOSED is not set" means the producer is gone, and no pid is ever
compared. The pids in the header stay information for people (``ls``, messages).

Probing is ``F_OFD_GETLK`` with ``F_WRLCK`` over the byte: ``l_type == F_UNLCK``
after the call means nobody else holds it. OFD locks conflict between open file
descriptions even inside one process, so a second consumer in the same process is
refused too, and a process's own producer lock is seen by its own consumer.

Other platforms have no OFD locks: :data:`HAVE_OFD_LOCKS` is False and callers
fall back to the pid (``_process.process_alive``; Windows and macOS/BSD keep their
``OpenProcess`` / ``kill(pid, 0)`` checks in C++).
"""
from __future__ import annotations

import errno
import os
import struct
import sys

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

#: Byte of the segment the producer locks for as long as it owns the ring.
PRODUCER_BYTE = 0
#: Byte of the segment the (single) consumer locks while attached.
CONSUMER_BYTE = 1

HAVE_OFD_LOCKS = (sys.platform.startswith("linux") and fcntl is not None
                  and hasattr(fcntl, "F_OFD_SETLK") and hasattr(fcntl, "F_OFD_GETLK"))

# struct flock on x86-64 / aarch64 Linux: short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (l_pid must be 0 for OFD locks), padding.
_FLOCK = struct.Struct("hhqqi4x")


def _flock(l_type: int, byte: int) -> bytes:
    return _FLOCK.pack(l_type, os.SEEK_SET, byte, 1, 0)


def try_lock(fd: int, byte: int) -> bool:
    """Takes a non-blocking OFD write lock on ``byte`` of ``fd`` (open read-write).

    True when taken (held until ``fd``'s open file description is closed), False
    when another open file description holds it (EAGAIN / EACCES). Raises OSError
    naming the call for anything else. Any thread; never blocks.
    """
    assert fcntl is not None and HAVE_OFD_LOCKS
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK, byte))
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise OSError(e.errno, f"fcntl(F_OFD_SETLK, byte {byte}) failed: errno {e.errno} "
                               f"({os.strerror(e.errno or 0)})") from None
    return True


def is_locked(fd: int, byte: int) -> bool:
    """Whether another open file description holds a lock on ``byte`` of the file of
    ``fd`` (any open mode). Any thread; never blocks (one fcntl call)."""
    assert fcntl is not None and HAVE_OFD_LOCKS
    try:
        out = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK, byte))
    except OSError as e:
        raise OSError(e.errno, f"fcntl(F_OFD_GETLK, byte {byte}) failed: errno {e.errno} "
                               f"({os.strerror(e.errno or 0)})") from None
    l_type = _FLOCK.unpack(out)[0]
    return bool(l_type != fcntl.F_UNLCK)
