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
import stat
import sys
import time
from typing import Callable, NamedTuple, Optional

from .errors import (IncompatibleSegmentError, InvalidNameError, RingNotFoundError,
                     RingOSError, RingPermissionError)

MAX_NAME_LENGTH = 30  # macOS PSHMNAMLEN (31) less the leading '/'
_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]*\Z")
SHM_DIR = "/dev/shm"
_USE_DEV_SHM = sys.platform.startswith("linux") and os.path.isdir(SHM_DIR)
# Never follow a symbolic link planted at the name; never block opening a FIFO.
_OPEN_FLAGS = (getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_NONBLOCK", 0))

try:  # pragma: no cover - only used off Linux
    import _posixshmem  # type: ignore[import]
except ImportError:  # pragma: no cover
    _posixshmem = None


def validate_name(name: str) -> None:
    """Raises InvalidNameError unless ``name`` is 1..30 chars of [A-Za-z0-9._-] not
    starting with '.' or '-' (a trailing newline is refused too). Any thread; never
    blocks."""
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


def path_of(name: str) -> str:
    """Where ring ``name`` lives on Linux: /dev/shm/<name> (its POSIX name elsewhere)."""
    return os.path.join(SHM_DIR, name) if _USE_DEV_SHM else os_name(name)


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISLNK, "a symbolic link"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_kind(mode: int) -> str:
    """'a FIFO', 'a directory', ... for a st_mode that is not a regular file."""
    for test, what in _KINDS:
        if test(mode):
            return what
    return "not a regular file"


def owner_name(uid: int) -> str:
    """The user name of ``uid``, or '?' when it has none."""
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return "?"


def _not_a_ring(name: str, mode: int) -> IncompatibleSegmentError:
    return IncompatibleSegmentError(f"{path_of(name)} is {file_kind(mode)}, not a ring", "type")


def _permission_error(name: str, call: str, err: int) -> RingPermissionError:
    path = path_of(name)
    try:
        st = os.lstat(path)
    except OSError:
        return RingPermissionError(
            f"{call}({path}) failed: permission denied (errno {err}); its owner could "
            "not be looked up", path)
    who = owner_name(st.st_uid)
    return RingPermissionError(
        f"{call}({path}) failed: permission denied (errno {err}): it belongs to uid "
        f"{st.st_uid} ({who}), mode {stat.S_IMODE(st.st_mode):04o}; run as that user or "
        "ask it to create the ring with a mode that lets you in", path, st.st_uid, who,
        stat.S_IMODE(st.st_mode))


def _os_error(call: str, name: str, err: int) -> OSError:
    """The package's error for a failed OS call on segment ``name``."""
    if err == errno.ENOENT:
        return RingNotFoundError(errno.ENOENT, f"no ring {name!r} ({call}({path_of(name)}): "
                                               "No such file or directory)")
    if err in (errno.EACCES, errno.EPERM):
        return _permission_error(name, call, err)
    return RingOSError(err, f"{call}({path_of(name)}) failed: errno {err} "
                            f"({os.strerror(err)})")


def _open_fd(name: str, flags: int, mode: int) -> int:
    """Opens segment ``name`` without following a symlink and without blocking on a
    FIFO; anything that is not a regular file raises IncompatibleSegmentError
    (field "type") naming what it is."""
    try:
        if _USE_DEV_SHM:
            fd = os.open(path_of(name), flags | _OPEN_FLAGS, mode)
        elif _posixshmem is not None:  # pragma: no cover
            fd = int(_posixshmem.shm_open(os_name(name), flags, mode))
        else:  # pragma: no cover
            raise OSError(errno.ENOSYS, "no POSIX shared memory on this platform")
    except OSError as e:
        err = e.errno or errno.EIO
        if err in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR) and _USE_DEV_SHM:
            try:
                st = os.lstat(path_of(name))
            except OSError:
                raise _os_error("open", name, err) from None
            if not stat.S_ISREG(st.st_mode):
                raise _not_a_ring(name, st.st_mode) from None
        raise _os_error("open", name, err) from None
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise _os_error("fstat", name, e.errno or errno.EIO) from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _not_a_ring(name, st.st_mode)
    return fd


def open_readonly(name: str) -> int:
    """A read-only descriptor of segment ``name`` (no symlink followed, never blocking on a
    FIFO, regular files only), for looking without mapping. The caller closes it. Raises
    as :func:`open_existing` does. Never blocks beyond the OS calls."""
    validate_name(name)
    return _open_fd(name, os.O_RDONLY, 0)


def _reopen(fd: int, name: str) -> int:
    """A second, independent open file description of the file behind ``fd`` (O_RDWR).

    The liveness locks live on it. The mapping must not share it: CPython's ``mmap``
    keeps its own duplicate of the descriptor it was made from, and an OFD lock lasts
    as long as any descriptor of its description, so a lock on the mapped description
    would outlive ``close()`` while a view keeps the mapping, and be inherited by
    every forked child.
    """
    try:
        new = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        new = -1
    if new < 0:  # no /proc: the name again, checked to be the same file
        new = _open_fd(name, os.O_RDWR, 0)
    try:
        a, b = os.fstat(fd), os.fstat(new)
    except OSError as e:
        os.close(new)
        raise _os_error("fstat", name, e.errno or errno.EIO) from None
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        os.close(new)
        raise RingOSError(errno.ESTALE, f"{path_of(name)} was replaced while being opened")
    return new


class Segment:
    """A mapped segment: ``mm`` (read-write, shared) of ``size`` bytes, and ``fd``, a
    descriptor of the file kept open for the liveness and role locks (its own open file
    description, not the one the mapping was made from: see :func:`_reopen`).

    ``close()`` unmaps and then closes ``fd`` (which releases this side's locks); if
    views of the mapping are still alive, unmapping happens when the last one goes
    (the memory stays valid for them). Never unlinks.
    """

    def __init__(self, name: str, mm: mmap.mmap, size: int, created: bool, fd: int,
                 uid: int, mode: int = 0o600) -> None:
        self.name = name
        self.mode = mode  # permission bits
        self.mm: Optional[mmap.mmap] = mm
        self.size = size
        self.created = created
        self.fd = fd
        self.uid = uid

    def close(self) -> None:
        mm, self.mm = self.mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # a live view still uses it: it is unmapped with the last one
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def create(name: str, size: int, mode: int = 0o600) -> Segment:
    """Creates segment ``name`` of ``size`` zero bytes, permissions ``mode`` exactly.

    Raises FileExistsError if the name exists (whatever it is), the package's
    errors naming the call and errno otherwise. Blocks only in OS calls.
    """
    validate_name(name)
    try:
        fd = _open_fd(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    except RingOSError as e:
        if e.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, f"{path_of(name)} exists") from None
        raise
    except IncompatibleSegmentError:
        raise FileExistsError(errno.EEXIST, f"{path_of(name)} exists") from None
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
        try:
            lock_fd = _reopen(fd, name)
        except BaseException:
            mm.close()
            raise
    except BaseException:
        os.close(fd)
        unlink(name, missing_ok=True)
        raise
    os.close(fd)
    return Segment(name, mm, size, True, lock_fd, os.geteuid(), mode)


class NotReady(Exception):
    """The segment exists but has size 0: its creator has not sized it yet."""


def open_existing(name: str) -> Segment:
    """Maps existing segment ``name`` read-write at its real size (from fstat).

    Raises RingNotFoundError when absent, NotReady for a segment of size 0 (created,
    not sized yet), IncompatibleSegmentError for something that is not a regular
    file, RingPermissionError naming the owner when access is denied, RingOSError
    naming the call otherwise. Blocks only in OS calls.
    """
    validate_name(name)
    fd = _open_fd(name, os.O_RDWR, 0)
    try:
        try:
            st = os.fstat(fd)
        except OSError as e:
            raise _os_error("fstat", name, e.errno or errno.EIO) from None
        size = st.st_size
        if size == 0:
            raise NotReady(f"segment {path_of(name)} has size 0")
        try:
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise _os_error("mmap", name, e.errno or errno.EIO) from None
        try:
            lock_fd = _reopen(fd, name)
        except BaseException:
            mm.close()
            raise
    finally:
        os.close(fd)
    return Segment(name, mm, size, False, lock_fd, st.st_uid, stat.S_IMODE(st.st_mode))


class Peek(NamedTuple):
    """What a look at a segment without mapping it found (see :func:`peek`)."""

    data: bytes            # up to the asked length from offset 0
    size: int              # st_size
    uid: int               # owner
    mode: int              # st_mode
    changed: float         # the later of st_ctime and st_mtime
    producer_locked: Optional[bool]  # byte 0 held by someone; None = no OFD locks here
    consumer_locked: Optional[bool]  # byte 1 held by someone


def peek(name: str, length: int) -> Optional[Peek]:
    """Up to ``length`` bytes at offset 0 of segment ``name`` plus its status and its
    lock bytes, without mapping it. None when the name does not exist.

    Opens read-only with O_NOFOLLOW|O_NONBLOCK: a symlink, FIFO, directory... raises
    IncompatibleSegmentError (field "type") at once (never hangs); permission
    denied raises RingPermissionError naming the owner. Never blocks beyond the OS
    calls.
    """
    from . import _locks
    try:
        fd = _open_fd(name, os.O_RDONLY, 0)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        data = os.pread(fd, length, 0)
        prod: Optional[bool] = None
        cons: Optional[bool] = None
        if _locks.HAVE_OFD_LOCKS:
            prod = _locks.is_locked(fd, _locks.PRODUCER_BYTE)
            cons = _locks.is_locked(fd, _locks.CONSUMER_BYTE)
    except OSError as e:
        raise _os_error("read", name, e.errno or errno.EIO) from None
    finally:
        os.close(fd)
    return Peek(data, st.st_size, st.st_uid, st.st_mode, max(st.st_ctime, st.st_mtime),
                prod, cons)


def peek_header(name: str, length: int) -> Optional[bytes]:
    """Up to ``length`` bytes at offset 0 of segment ``name`` (see :func:`peek`);
    None when it does not exist."""
    found = peek(name, length)
    return None if found is None else found.data


def unlink(name: str, missing_ok: bool = False) -> None:
    """Removes the name of segment ``name`` (mappings stay valid). Creator side only."""
    validate_name(name)
    try:
        if _USE_DEV_SHM:
            os.unlink(path_of(name))
        elif _posixshmem is not None:  # pragma: no cover
            _posixshmem.shm_unlink(os_name(name))
        else:  # pragma: no cover
            raise OSError(errno.ENOSYS, "no POSIX shared memory on this platform")
    except FileNotFoundError:
        if not missing_ok:
            raise _os_error("shm_unlink", name, errno.ENOENT) from None
    except OSError as e:
        raise _os_error("shm_unlink", name, e.errno or errno.EIO) from None


# What unlink_if_still did (C++ SharedMemory::Unlinked).
UNLINKED, LEFT, BUSY = "unlinked", "left", "busy"

# For tests only: called by unlink_if_still between its checks and the unlink, with
# the flock held (None: nothing).
before_unlink_for_tests: Optional[Callable[[str], None]] = None


def unlink_if_still(name: str, fd: Optional[int], wait: bool,
                    still: Callable[[int], bool]) -> str:
    """Removes name ``name`` only while it names the file of descriptor ``fd`` (None:
    the file it names when called, opened here) and ``still(fd)`` agrees, holding an
    exclusive flock() on that file meanwhile (C++ SharedMemory::UnlinkIfStill, the
    same protocol): every producer takes that flock before it removes a ring's name,
    so between one process's check and its unlink nobody else can remove the file and
    put a new ring under the name. UNLINKED, LEFT (gone already, another file now,
    or ``still`` said no) or BUSY (another process holds the flock; ``wait`` waits
    for it instead). Without /dev/shm (no file to lock): a plain unlink. Any thread;
    blocks only with ``wait``."""
    validate_name(name)
    if not _USE_DEV_SHM:  # pragma: no cover - Linux runs the /dev/shm path
        unlink(name, missing_ok=True)
        return UNLINKED
    import fcntl
    path = path_of(name)
    own = fd is not None
    if fd is None:
        try:
            fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
        except FileNotFoundError:
            return LEFT
        except OSError as e:
            raise _os_error("open", name, e.errno or errno.EIO) from None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                return BUSY
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
        try:
            try:
                named = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                return LEFT
            held = os.fstat(fd)
            if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino) or not still(fd):
                return LEFT
            hook = before_unlink_for_tests
            if hook is not None:
                hook(name)
            try:
                os.unlink(path)
            except FileNotFoundError:
                return LEFT
            except OSError as e:
                raise _os_error("shm_unlink", name, e.errno or errno.EIO) from None
            return UNLINKED
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if not own:
            os.close(fd)


def age_seconds(name: str) -> float:
    """Seconds since segment ``name`` was created, resized or written through
    write() (now minus the later of st_ctime and st_mtime); -1 when it cannot be
    looked at (absent, not a regular file, or no timestamps on this platform).
    Never blocks beyond the OS calls."""
    try:
        found = peek(name, 0)
    except (OSError, IncompatibleSegmentError):
        return -1.0
    if found is None or found.changed <= 0:
        return -1.0
    return time.time() - found.changed
