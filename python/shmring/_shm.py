"""Named POSIX shared-memory segments: create, open, peek, unlink. Knows nothing of rings.

Why not ``multiprocessing.shared_memory.SharedMemory``: before Python 3.13 every
instance, even one that merely *attaches*, registers the name with
multiprocessing's resource tracker, which unlinks the segment (and warns about a
"leak") when the attaching process exits -- destroying the producer's ring under
it (cpython issue 82300). ``track=False`` exists only from 3.13. This module opens
the segment itself instead: on Linux ``os.open('/dev/shm/<name>')`` (exactly where
glibc's ``shm_open('/<name>')`` puts it, so C++ and Python meet on the same object),
elsewhere ``_posixshmem.shm_open``; then ``mmap``. Nothing is registered anywhere,
so attaching can never unlink; only the producer that created a ring unlinks it.
"""
from __future__ import annotations

import errno
import mmap
import os
import re
import sys
import time
from typing import Optional

from .errors import InvalidNameError

MAX_NAME_LENGTH = 30  # macOS PSHMNAMLEN (31) less the leading '/'
_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]*\Z")
_DEV_SHM = "/dev/shm"
_USE_DEV_SHM = sys.platform.startswith("linux") and os.path.isdir(_DEV_SHM)

try:  # pragma: no cover - only used off Linux
    import _posixshmem  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    _posixshmem = None


def validate_name(name: str) -> None:
    """Raises InvalidNameError unless ``name`` is 1..30 chars of [A-Za-z0-9._-] not
    starting with '.' or '-'. Any thread; never blocks."""
    if not isinstance(name, str):
        raise InvalidNameError(f"ring name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidNameError("ring name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"ring name {name!r} is {len(name)} characters long; "
                               f"the limit is {MAX_NAME_LENGTH}")
    if name[0] in ".-":
        raise InvalidNameError(f"ring name {name!r} must not start with '.' or '-'")
    if not _NAME_CHARS.match(name):
        raise InvalidNameError(f"ring name {name!r} has a character outside [A-Za-z0-9._-]")


def os_name(name: str) -> str:
    """The POSIX object name of ring ``name``: '/' + name."""
    return "/" + name


def _os_error(call: str, name: str, err: int) -> OSError:
    return OSError(err, f"{call}({os_name(name)}) failed: errno {err} ({os.strerror(err)})")


def _open_fd(name: str, flags: int, mode: int) -> int:
    try:
        if _USE_DEV_SHM:
            return os.open(os.path.join(_DEV_SHM, name), flags | getattr(os, "O_CLOEXEC", 0),
                           mode)
        if _posixshmem is None:  # pragma: no cover
            raise OSError(errno.ENOSYS, "no POSIX shared memory on this platform")
        return int(_posixshmem.shm_open(os_name(name), flags, mode))  # pragma: no cover
    except OSError as e:
        raise _os_error("shm_open", name, e.errno or errno.EIO) from None


class Segment:
    """A mapped segment: ``mm`` (read-write, shared) of ``size`` bytes.

    ``close()`` unmaps; if views of it are still alive, unmapping happens when the
    last one goes (the memory stays valid for them). Never unlinks.
    """

    def __init__(self, name: str, mm: mmap.mmap, size: int, created: bool) -> None:
        self.name = name
        self.mm: Optional[mmap.mmap] = mm
        self.size = size
        self.created = created

    def close(self) -> None:
        mm, self.mm = self.mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # a live view still uses it: it is unmapped with the last one


def create(name: str, size: int, mode: int = 0o600) -> Segment:
    """Creates segment ``name`` of ``size`` zero bytes, permissions ``mode`` exactly.

    Raises FileExistsError if the name exists, other OSErrors naming the call and
    errno. Blocks only in OS calls.
    """
    validate_name(name)
    fd = _open_fd(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # shm_open applies the umask; honour what was asked
        except OSError as e:
            raise _os_error("fchmod", name, e.errno or errno.EIO) from None
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            raise _os_error("ftruncate", name, e.errno or errno.EIO) from None
        try:
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise _os_error("mmap", name, e.errno or errno.EIO) from None
    except BaseException:
        os.close(fd)
        unlink(name, missing_ok=True)
        raise
    os.close(fd)
    return Segment(name, mm, size, True)


def open_existing(name: str) -> Segment:
    """Maps existing segment ``name`` read-write at its real size (from fstat).

    Raises FileNotFoundError when absent, OSError naming the call otherwise; a
    segment of size 0 raises OSError(EAGAIN) (created, not sized yet). Blocks only
    in OS calls.
    """
    validate_name(name)
    fd = _open_fd(name, os.O_RDWR, 0)
    try:
        try:
            size = os.fstat(fd).st_size
        except OSError as e:
            raise _os_error("fstat", name, e.errno or errno.EIO) from None
        if size == 0:
            raise OSError(errno.EAGAIN, f"segment {os_name(name)} has size 0")
        try:
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise _os_error("mmap", name, e.errno or errno.EIO) from None
    finally:
        os.close(fd)
    return Segment(name, mm, size, False)


def peek_header(name: str, length: int) -> Optional[bytes]:
    """Up to ``length`` bytes at offset 0 of segment ``name`` without mapping it.

    None when the segment does not exist. Used to look at a name's generation or
    producer cheaply. Never blocks beyond the OS calls.
    """
    try:
        fd = _open_fd(name, os.O_RDONLY, 0)
    except FileNotFoundError:
        return None
    try:
        return os.pread(fd, length, 0)
    finally:
        os.close(fd)


def unlink(name: str, missing_ok: bool = False) -> None:
    """Removes the name of segment ``name`` (mappings stay valid). Creator side only."""
    validate_name(name)
    try:
        if _USE_DEV_SHM:
            os.unlink(os.path.join(_DEV_SHM, name))
        elif _posixshmem is not None:  # pragma: no cover
            _posixshmem.shm_unlink(os_name(name))
        else:  # pragma: no cover
            raise OSError(errno.ENOSYS, "no POSIX shared memory on this platform")
    except FileNotFoundError:
        if not missing_ok:
            raise _os_error("shm_unlink", name, errno.ENOENT) from None
    except OSError as e:
        raise _os_error("shm_unlink", name, e.errno or errno.EIO) from None


def age_seconds(name: str) -> float:
    """Seconds since segment ``name`` was created, resized or written through
    write() (now minus the later of st_ctime and st_mtime); -1 when it cannot be
    looked at (absent, or no timestamps on this platform). Never blocks beyond the
    OS calls."""
    try:
        fd = _open_fd(name, os.O_RDONLY, 0)
    except OSError:
        return -1.0
    try:
        st = os.fstat(fd)
    except OSError:
        return -1.0
    finally:
        os.close(fd)
    changed = max(st.st_ctime, st.st_mtime)
    if changed <= 0:
        return -1.0
    return time.time() - changed


def segment_size(name: str) -> Optional[int]:
    """Size in bytes of segment ``name``; None when it cannot be looked at."""
    try:
        fd = _open_fd(name, os.O_RDONLY, 0)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_size
    except OSError:
        return None
    finally:
        os.close(fd)


def claim_exclusive(name: str) -> Optional[int]:
    """Takes an exclusive, non-blocking ``flock`` on segment ``name`` through a new
    read-only descriptor and returns it (keep it open to keep the claim; closing it
    releases it). The lock belongs to that open file description, so a second
    claim fails even in the same process.

    Raises BlockingIOError when someone else holds the claim, FileNotFoundError
    when the segment is gone. Returns None where flock on segments is unsupported
    (no /dev/shm, no fcntl, or the OS refuses): the caller falls back to another
    check. Never blocks.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    if not _USE_DEV_SHM:  # pragma: no cover - macOS shm fds do not support flock
        return None
    fd = _open_fd(name, os.O_RDONLY, 0)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:  # pragma: no cover - e.g. EOPNOTSUPP, ENOLCK
        os.close(fd)
        return None
    return fd
