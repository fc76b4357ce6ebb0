"""A snapshot of a segment's header: every field, read once, for tools and tests.

:meth:`HeaderSnapshot.read` looks at ring ``name`` without attaching: it opens the
segment read-only (no symlink followed, never blocking on a FIFO), maps the
header read-only, loads each word with a single aligned native load (never
``struct.unpack`` on live memory), probes the producer and consumer lock bytes and
closes everything again. It never writes, never attaches, never unlinks, and
registers nothing with ``multiprocessing``'s resource tracker.
:meth:`HeaderSnapshot.from_buffer` reads the same from any buffer.

The snapshot is not atomic as a whole (each word is a separate load): a live ring's
head, tail and flags may move between the loads.
"""
from __future__ import annotations

import mmap
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import _atomics, _locks, _shm
from . import layout as L
from ._process import process_alive
from ._tuning import ABANDONED_AFTER_S
from ._shm import SHM_DIR, file_kind
from .errors import (IncompatibleSegmentError, InvalidNameError, RingNotFoundError,
                     RingOSError, RingPermissionError, ShmRingError)
from .ring import check_header_words

__all__ = ["HeaderSnapshot", "scan_segments", "decode_flags", "decode_consumer_flags",
           "file_kind", "SHM_DIR", "PROFILE_NAMES", "PRODUCER_BITS", "CONSUMER_BITS"]

PROFILE_NAMES = {L.PROFILE_OPAQUE: "opaque", L.PROFILE_GST_FRAMING: "gst"}
PRODUCER_BITS: List[Tuple[int, str]] = [
    (L.PRODUCER_CLOSED, "CLOSED"), (L.PRODUCER_WAITING, "WAITING"),
    (L.PRODUCER_MEMBARRIER, "MEMBARRIER"), (L.PRODUCER_LIVE, "LIVE"),
    (L.PRODUCER_COUNTS_SLEEPS, "COUNTS_SLEEPS")]
CONSUMER_BITS: List[Tuple[int, str]] = [
    (L.CONSUMER_ATTACHED, "ATTACHED"), (L.CONSUMER_WAITING, "WAITING"),
    (L.CONSUMER_MEMBARRIER, "MEMBARRIER"), (L.CONSUMER_COUNTS_SLEEPS, "COUNTS_SLEEPS")]


def decode_flags(value: int, bits: List[Tuple[int, str]]) -> str:
    """``"CLOSED|WAITING"``-style names of the set bits (unknown bits in hex), "-" for none."""
    names = [label for bit, label in bits if value & bit]
    unknown = value & ~sum(bit for bit, _ in bits)
    if unknown:
        names.append(f"0x{unknown:x}")
    return "|".join(names) if names else "-"


def decode_consumer_flags(value: int) -> str:
    """Consumer flag bits, then the attach count kept in bits 16..31."""
    low = value & (L.CONSUMER_ATTACH_COUNT_ONE - 1)
    return (f"{decode_flags(low, CONSUMER_BITS)} "
            f"attaches={value >> L.CONSUMER_ATTACH_COUNT_SHIFT}")


@dataclass
class ReceiverSnapshot:
    """One receiver slot of a ring's header (fan-out): its words as read, and
    whether its role byte (1 + slot) is held (None: not looked at / no OFD locks).

    A receiver attaches in two steps: it *claims* the slot (takes the role byte), then
    stores its start position and sets the slot's ATTACHED flag. :attr:`claimed` is
    true from the first step, :attr:`attached` only after the second: wait for
    :attr:`attached` before counting on the receiver reading what is written next.
    A receiver that claims a slot left by one that died without detaching clears the
    dead one's ATTACHED flag first (PROTOCOL.md section 7), so it shows as attaching
    until it finishes (a receiver of an older build that does not clear it shows as
    attached from its claim, with the dead one's pid until it stores its own)."""

    slot: int = 0
    flags: int = 0
    pid: int = 0
    mode: int = 0
    tail: int = 0       # the tail word as stored (a live receiver: its pin or position | 1)
    skipped: int = 0
    locked: Optional[bool] = None

    @property
    def claimed(self) -> bool:
        """A receiver holds the slot, attached or still attaching: its role byte is
        held (without lock information: ATTACHED is set)."""
        if self.locked is not None:
            return self.locked
        return bool(self.flags & L.CONSUMER_ATTACHED)

    @property
    def attached(self) -> bool:
        """A receiver holds the slot and finished attaching: claimed and ATTACHED set."""
        return self.claimed and bool(self.flags & L.CONSUMER_ATTACHED)

    @property
    def attaching(self) -> bool:
        """Claimed, ATTACHED not set yet: a receiver between its claim and its start."""
        return self.claimed and not self.flags & L.CONSUMER_ATTACHED

    @property
    def dead(self) -> bool:
        """ATTACHED is set but its role byte is free: killed without detaching."""
        return bool(self.flags & L.CONSUMER_ATTACHED) and self.locked is False

    @property
    def position(self) -> int:
        """The ring index it has read up to (its tail without the live idle bit)."""
        return self.tail & ~L.SLOT_IDLE

    @property
    def mode_name(self) -> str:
        return "live" if self.mode == L.MODE_LIVE else "lossless"

    def lag(self, head: int) -> int:
        """Bytes published and not yet read by this receiver."""
        return (head - self.position) & L.INDEX_MASK

    def as_dict(self, head: int) -> Dict[str, Any]:
        return {"slot": self.slot, "pid": self.pid, "mode": self.mode_name,
                "claimed": self.claimed, "attached": self.attached, "dead": self.dead,
                "position": self.position,
                "lag": self.lag(head), "skipped": self.skipped,
                "flags": self.flags, "flags_decoded": decode_consumer_flags(self.flags),
                "locked": self.locked}


@dataclass
class HeaderSnapshot:
    """One read of a segment's header; ``error``/``error_field`` say why it is not a
    usable ring (None when it is). Header fields are 0 when the magic is not ours.

    States (:meth:`state`): ``live`` (producer alive, consumer attached), ``waiting``
    (producer alive, no consumer), ``closed`` (CLOSED set), ``stale`` (producer gone
    without CLOSED), ``uninitialized`` (no magic yet, of a size a ring in creation
    has), ``abandoned`` (the same, unchanged for ABANDONED_AFTER_S), ``invalid``
    (our magic, a field out of range), ``foreign`` (not a ring: other magic, a
    size no ring has, a FIFO, a directory, a symlink), ``unreadable`` (permission
    denied).
    """

    name: str = ""
    path: str = ""
    size: int = 0
    mode: int = 0           # st_mode (file type and permission bits)
    uid: int = -1
    inode: int = 0
    changed: float = 0.0    # the later of st_ctime and st_mtime (0 = unknown)
    magic: int = 0
    capacity: int = 0
    version: int = 0
    header_size: int = 0
    max_receivers: int = 0
    profile: int = 0
    generation: int = 0
    head: int = 0
    tail: int = 0
    producer_flags: int = 0
    producer_pid: int = 0
    consumer_flags: int = 0
    consumer_pid: int = 0
    consumer_mode: int = 0
    consumer_skipped: int = 0
    dropped: int = 0
    published: int = 0      # messages published so far (the head mark's sequence number)
    reserved_zero: bool = True
    producer_locked: Optional[bool] = None  # byte 0 held; None = not looked at / no OFD
    consumer_locked: Optional[bool] = None  # byte 1 held
    error: Optional[str] = None
    error_field: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    # Receiver slots 0 .. max_receivers - 1 (fan-out), and the stream-info side area.
    receivers: List[ReceiverSnapshot] = field(default_factory=list)
    stream_info: Optional[bytes] = None

    # ---- reading ------------------------------------------------------------------

    @classmethod
    def read(cls, name: str) -> "HeaderSnapshot":
        """Reads the header of ring ``name`` (see the module doc). Raises
        RingNotFoundError, RingPermissionError (naming the owner), InvalidNameError,
        RingOSError; something that is not a regular file (FIFO, directory,
        symlink...) gives a snapshot with ``error_field == "type"``. Any thread;
        never blocks beyond the OS calls."""
        _shm.validate_name(name)
        path = _shm.path_of(name)
        try:
            fd = _shm.open_readonly(name)
        except IncompatibleSegmentError as e:
            snap = cls(name=name, path=path, error=str(e), error_field=e.field)
            try:
                st = os.lstat(path)
                snap.mode, snap.uid, snap.inode = st.st_mode, st.st_uid, st.st_ino
                snap.changed = max(st.st_ctime, st.st_mtime)
            except OSError:
                pass
            return snap
        try:
            st = os.fstat(fd)
            snap = cls(name=name, path=path, size=st.st_size, mode=st.st_mode, uid=st.st_uid,
                       inode=st.st_ino, changed=max(st.st_ctime, st.st_mtime))
            if _locks.HAVE_OFD_LOCKS:
                snap.producer_locked = _locks.is_locked(fd, _locks.PRODUCER_BYTE)
                snap.consumer_locked = _locks.is_locked(fd, _locks.CONSUMER_BYTE)
                locked = [_locks.is_locked(fd, _locks.CONSUMER_BYTE + k)
                          for k in range(L.MAX_RECEIVERS_LIMIT)]
            if st.st_size >= L.IDENT_SIZE:
                try:
                    mapping = mmap.mmap(fd, min(st.st_size, L.HEADER_SIZE), flags=mmap.MAP_SHARED,
                                        prot=mmap.PROT_READ)
                except OSError as e:
                    raise RingOSError(e.errno, f"mmap({path}) failed: errno {e.errno} "
                                               f"({os.strerror(e.errno or 0)})") from None
                try:
                    snap._load(mapping, st.st_size)
                finally:
                    mapping.close()
                if _locks.HAVE_OFD_LOCKS:
                    for r in snap.receivers:
                        r.locked = locked[r.slot]
            else:
                snap._validate_size_only()
        finally:
            os.close(fd)
        return snap

    @classmethod
    def from_buffer(cls, buf: Any, size: Optional[int] = None) -> "HeaderSnapshot":
        """Reads the header at the start of ``buf`` (a segment of ``size`` bytes,
        default ``len(buf)``). Lock bytes are not looked at. Never blocks."""
        raw = memoryview(buf).cast("B")
        total = raw.nbytes if size is None else size
        snap = cls(size=total)
        if raw.nbytes >= L.IDENT_SIZE:
            snap._load(raw[:min(raw.nbytes, L.HEADER_SIZE)], total)
        else:
            snap._validate_size_only()
        return snap

    def _validate_size_only(self) -> None:
        self.error, self.error_field = (
            f"segment size {self.size} is smaller than the {L.HEADER_SIZE}-byte header",
            "size")

    def _load(self, header: Any, total: int) -> None:
        whole = memoryview(header).cast("B")
        raw = whole[:whole.nbytes & ~3]
        whole.release()
        words = raw.cast("I")
        qwords = _atomics.qword_view(raw) if raw.nbytes % 8 == 0 else None
        try:
            bad, _ = check_header_words(words, total)  # loads magic first
            self.magic = int(words[L.MAGIC_WORD]) if len(words) > L.MAGIC_WORD else 0
            if self.magic == L.MAGIC and len(words) > L.VERSION_WORD:
                version_word = int(words[L.VERSION_WORD])
                self.version = version_word & 0xFFFF
            # The other fields only where this version's header is (another version
            # keeps only the magic and the version where they are).
            if (self.magic == L.MAGIC and self.version == L.VERSION and
                    len(words) >= L.HEADER_SIZE // 4):
                self.capacity = int(words[L.CAPACITY_WORD])
                self.header_size = version_word >> 16
                self.max_receivers = int(words[L.MAX_RECEIVERS_WORD])
                self.consumer_mode = int(words[L.CONSUMER_MODE_WORD])
                self.consumer_skipped = _atomics.load_u64(words, qwords,
                                                          L.CONSUMER_SKIPPED_WORD)
                self.profile = int(words[L.PROFILE_WORD])
                self.generation = _atomics.load_u64(words, qwords, L.GENERATION_WORD)
                self.head = int(words[L.HEAD_WORD])
                self.tail = int(words[L.TAIL_WORD])
                self.producer_flags = int(words[L.PRODUCER_FLAGS_WORD])
                self.producer_pid = int(words[L.PRODUCER_PID_WORD])
                self.consumer_flags = int(words[L.CONSUMER_FLAGS_WORD])
                self.consumer_pid = int(words[L.CONSUMER_PID_WORD])
                self.dropped = _atomics.load_u64(words, qwords, L.DROPPED_WORD)
                self.published = _atomics.load_u64(words, qwords, L.HEAD_MARK_WORD) >> 32
                # Block 3 is reserved; past the slots is the stream-info area.
                self.reserved_zero = not any(
                    words[i] for i in range(3 * L.BLOCK_SIZE // 4, L.SLOTS_OFFSET // 4))
                n = self.max_receivers if 1 <= self.max_receivers <= L.MAX_RECEIVERS_LIMIT else 0
                self.receivers = [ReceiverSnapshot(
                    slot=k, flags=int(words[L.slot_word(k, L.SLOT_FLAGS)]),
                    pid=int(words[L.slot_word(k, L.SLOT_PID)]),
                    mode=int(words[L.slot_word(k, L.SLOT_MODE)]),
                    tail=int(words[L.slot_word(k, L.SLOT_TAIL)]),
                    skipped=_atomics.load_u64(words, qwords, L.slot_word(k, L.SLOT_SKIPPED)))
                    for k in range(n)]
                seq = int(words[(L.INFO_OFFSET + L.INFO_SEQ) // 4])
                length = int(words[(L.INFO_OFFSET + L.INFO_LEN) // 4])
                if seq and not seq & 1 and length <= L.INFO_MAX:
                    start = L.INFO_OFFSET + L.INFO_DATA
                    self.stream_info = bytes(raw[start:start + length])
        finally:
            if qwords is not None:
                qwords.release()
            words.release()
            raw.release()
        if total < L.HEADER_SIZE and (
                self.magic != L.MAGIC or self.version == L.VERSION):
            # Too small for this version's header and not a ring of another version:
            # not a ring, whatever its first bytes say.
            self.magic = self.version = 0
            self._validate_size_only()
            return
        if bad is not None:
            self.error_field, self.error = bad
            if self.magic == 0:
                self.error = ("magic is 0: the segment is not initialized (a producer may be "
                              "creating it)")
        elif total % L.RECORD_ALIGN:
            self.error, self.error_field = (
                f"segment size {total} is not a multiple of {L.RECORD_ALIGN}: not a shmring "
                "segment", "size")

    # ---- classification ---------------------------------------------------------

    @property
    def is_shmring(self) -> bool:
        """Whether the segment carries our magic."""
        return self.magic == L.MAGIC

    @property
    def valid(self) -> bool:
        """Whether it is a ring an opener would accept."""
        return self.is_shmring and self.error is None

    @property
    def used(self) -> int:
        """Bytes between tail and head (0 when tail was read after head moved past it)."""
        used = (self.head - self.tail) & L.INDEX_MASK
        return 0 if used > self.capacity else used

    @property
    def producer_alive(self) -> Optional[bool]:
        """Whether the producer is alive: its byte-0 lock (Linux), else its pid; None
        when unknown (no lock information and pid 0)."""
        if self.producer_locked is not None:
            return self.producer_locked
        return None if self.producer_pid == 0 else process_alive(self.producer_pid)

    @property
    def consumer_alive(self) -> Optional[bool]:
        """Whether a consumer is attached and alive: its byte-1 lock (Linux), else
        ATTACHED and its pid; None when unknown."""
        if self.consumer_locked is not None:
            return self.consumer_locked
        if not self.consumer_flags & L.CONSUMER_ATTACHED or self.consumer_pid == 0:
            return None
        return process_alive(self.consumer_pid)

    def state(self) -> str:
        """The segment's state (see the class doc)."""
        if self.error_field == "unreadable":
            return "unreadable"
        if self.error_field in ("type", "name"):
            return "foreign"
        if not self.is_shmring:
            if self.magic != 0 or not L.may_be_ring_in_creation(self.size):
                return "foreign"  # a semaphore, another program's data
            if self.changed and time.time() - self.changed > ABANDONED_AFTER_S \
                    and not self.producer_locked:
                return "abandoned"
            return "uninitialized"
        if self.error is not None:
            return "invalid"
        if self.producer_flags & L.PRODUCER_CLOSED:
            return "closed"
        if self.producer_alive is False:
            return "stale"
        if self.consumer_alive:
            return "live"
        return "waiting"

    def producer_blocks_removal(self) -> bool:
        """The producer is alive (unknown counts as alive) and has not closed: the rule
        a new producer applies before replacing a segment."""
        if self.producer_flags & L.PRODUCER_CLOSED:
            return False
        return self.producer_alive is not False

    def as_dict(self) -> Dict[str, Any]:
        """Every field as JSON-ready values (``ls --json`` / ``inspect --json``)."""
        out: Dict[str, Any] = {
            "name": self.name, "path": self.path, "size": self.size,
            "mode": f"{stat.S_IMODE(self.mode):04o}", "uid": self.uid,
            "owner": _shm.owner_name(self.uid) if self.uid >= 0 else "?",
            "magic": self.magic, "state": self.state()}
        if self.error_field == "type":
            out["type"] = _shm.file_kind(self.mode)
        if self.error is not None:
            out["error"] = self.error
            out["error_field"] = self.error_field
        if self.is_shmring:
            out.update({
                "capacity": self.capacity, "version": self.version,
                "max_receivers": self.max_receivers, "consumer_mode": self.consumer_mode,
                "consumer_skipped": self.consumer_skipped,
                "header_size": self.header_size, "profile": self.profile,
                "generation": self.generation, "head": self.head, "tail": self.tail,
                "producer_flags": self.producer_flags, "producer_pid": self.producer_pid,
                "consumer_flags": self.consumer_flags, "consumer_pid": self.consumer_pid,
                "dropped": self.dropped, "published": self.published,
                "generation_hex": f"0x{self.generation:016x}",
                "profile_name": PROFILE_NAMES.get(self.profile, "unknown"),
                "producer_flags_decoded": decode_flags(self.producer_flags, PRODUCER_BITS),
                "consumer_flags_decoded": decode_consumer_flags(self.consumer_flags),
                "producer_alive": self.producer_alive,
                "consumer_alive": self.consumer_alive,
                "producer_locked": self.producer_locked,
                "consumer_locked": self.consumer_locked,
                "reserved_zero": self.reserved_zero,
                "receivers": [r.as_dict(self.head) for r in self.receivers],
                "stream_info": (None if self.stream_info is None
                                else self.stream_info.decode("utf-8", "replace"))})
            if self.valid:
                used = self.used
                out["used"] = used
                out["free"] = self.capacity - used
                out["fill_percent"] = round(100.0 * used / self.capacity, 1)
        out.update(self.extra)
        return out


def _may_be_ring_size(size: int) -> bool:
    return size > L.HEADER_SIZE and L.may_be_ring_in_creation(size)


def scan_segments(include_all: bool) -> Iterator[HeaderSnapshot]:
    """Snapshots of the entries of /dev/shm, sorted by name: rings (valid or flagged),
    and with ``include_all`` everything else, as ``foreign``. An entry we may not read
    is listed (as ``unreadable``) when its size is one a ring can have, or with
    ``include_all``: other users' private files do not clutter the list. Raises
    RingOSError when /dev/shm cannot be listed. Never blocks beyond the OS calls."""
    try:
        entries = sorted(os.listdir(SHM_DIR))
    except OSError as exc:
        raise RingOSError(exc.errno, f"listdir({SHM_DIR}) failed: "
                                     f"{os.strerror(exc.errno or 0)}") from None
    for entry in entries:
        path = os.path.join(SHM_DIR, entry)
        try:
            snap = HeaderSnapshot.read(entry)
        except RingNotFoundError:
            continue  # vanished
        except (InvalidNameError, ShmRingError) as exc:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            unreadable = isinstance(exc, RingPermissionError)
            if not include_all and not (unreadable and stat.S_ISREG(st.st_mode)
                                        and _may_be_ring_size(st.st_size)):
                continue
            yield HeaderSnapshot(name=entry, path=path, size=st.st_size, mode=st.st_mode,
                                 uid=st.st_uid, inode=st.st_ino, magic=-1, error=str(exc),
                                 error_field="unreadable" if unreadable else "name")
            continue
        if snap.is_shmring or include_all:
            yield snap
