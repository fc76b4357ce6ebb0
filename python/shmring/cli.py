"""``python3 -m shmring``: list, inspect, remove and dump shmring rings.

Subcommands::

    ls [--all] [--json]             rings in /dev/shm: pids, capacity, fill, state, drops
    inspect NAME [--json]           every header field, flags decoded
    rm NAME... [--force]            remove rings (refuses a live producer's ring)
    cat NAME [--count N] [--timeout S] [--preview B]
                                    attach as the consumer and dump messages

``ls``, ``inspect`` and ``rm`` use the standard library only. They map the 128-byte
header *read-only* straight from ``/dev/shm`` (never through
``multiprocessing.shared_memory``, so nothing is registered with a resource tracker
and nothing is ever unlinked behind the user's back), and read the header words with
single aligned native loads (see ``_atomics``), never ``struct.unpack`` on the live
segment. ``cat`` attaches as the ring's one consumer through the package's
``ShmConsumer`` and so consumes what it prints.

States (``ls``, ``inspect``):

* ``live``     the producer is alive and a live consumer is attached
* ``waiting``  the producer is alive, no (live) consumer is attached
* ``closed``   the producer ended the stream (CLOSED); unread data may remain
* ``stale``    the producer's pid is gone and it never set CLOSED (it crashed)
* ``uninitialized``  shorter than the header or magic 0: a producer is creating it
* ``abandoned``  the same, but unchanged for more than 5 s (st_ctime): debris of a
  creator that died mid-way; a new producer would replace it
* ``invalid``  carries the SRNG magic but a header field is out of range

User errors exit with status 1 and one line on stderr naming the field or the OS call;
argument errors exit with 2 (argparse).
"""
from __future__ import annotations

import argparse
import errno
import json
import mmap
import os
import re
import stat
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

from . import _atomics
from . import layout as L
from ._process import process_alive

SHM_DIR = "/dev/shm"
PROG = "python3 -m shmring"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,29}$")
_PROFILE_NAMES = {L.PROFILE_OPAQUE: "opaque", L.PROFILE_GST_FRAMING: "gst"}
_PRODUCER_BITS = [(L.PRODUCER_CLOSED, "CLOSED"), (L.PRODUCER_WAITING, "WAITING"),
                  (L.PRODUCER_MEMBARRIER, "MEMBARRIER")]
_CONSUMER_BITS = [(L.CONSUMER_ATTACHED, "ATTACHED"), (L.CONSUMER_WAITING, "WAITING"),
                  (L.CONSUMER_MEMBARRIER, "MEMBARRIER")]

# Profile 1 message kinds (docs/PROTOCOL.md section 6); messages are decoded with
# the package's framing module, from payloads cat already copied out of the ring.
_P1_KINDS = {1: "CAPS", 2: "BUFFER", 3: "EOS"}
_NONE64 = 0xFFFFFFFFFFFFFFFF
# A segment still uninitialized this long after its last status change (st_ctime) is
# abandoned debris, not a creator at work (docs/PROTOCOL.md section 5).
ABANDONED_AFTER_S = 5.0


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


# --------------------------------------------------------------------------- helpers

def normalize_name(raw: str) -> str:
    """Accepts ``cam0``, ``/cam0`` or ``/dev/shm/cam0``; returns ``cam0`` or raises CliError."""
    name = raw
    if name.startswith(SHM_DIR + "/"):
        name = name[len(SHM_DIR) + 1:]
    elif name.startswith("/"):
        name = name[1:]
    if not _NAME_RE.match(name):
        raise CliError(
            f"invalid ring name {raw!r}: a name is 1..30 characters of [A-Za-z0-9._-], "
            "not starting with '.' or '-'")
    return name


def pid_alive(pid: int) -> Optional[bool]:
    """True/False whether ``pid`` runs (a zombie counts as dead); None when unknown (0)."""
    if pid == 0:
        return None
    return process_alive(pid)


def decode_flags(value: int, bits: List) -> str:
    names = [label for bit, label in bits if value & bit]
    unknown = value & ~sum(bit for bit, _ in bits)
    if unknown:
        names.append(f"0x{unknown:x}")
    return "|".join(names) if names else "-"


def decode_consumer_flags(value: int) -> str:
    """Consumer flag bits, then the attach count kept in bits 16..31."""
    low = value & (L.CONSUMER_ATTACH_COUNT_ONE - 1)
    return (f"{decode_flags(low, _CONSUMER_BITS)} "
            f"attaches={value >> L.CONSUMER_ATTACH_COUNT_SHIFT}")


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "B":
                return f"{n} B"
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _os_error(call: str, path: str, exc: OSError) -> CliError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return CliError(f"{call}({path}) failed: {reason}")


# --------------------------------------------------------------------------- header

class Snapshot:
    """One read of a segment's header (words loaded one at a time, no locking)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = os.path.join(SHM_DIR, name)
        self.size = 0
        self.mode = 0
        self.uid = 0
        self.inode = 0
        self.ctime = 0.0
        self.magic = 0
        self.fields: Dict[str, int] = {}
        self.reserved_nonzero = False
        self.error: Optional[str] = None        # why it is not a valid ring
        self.error_field: Optional[str] = None  # the header field refused

    # Classification ----------------------------------------------------------------
    @property
    def is_shmring(self) -> bool:
        return self.magic == L.MAGIC

    @property
    def valid(self) -> bool:
        return self.is_shmring and self.error is None

    def used(self) -> int:
        f = self.fields
        used = (f["head"] - f["tail"]) & L.INDEX_MASK
        if used >= 0x80000000:  # tail read after head moved past it: momentarily negative
            used = 0
        return used

    def state(self) -> str:
        if self.error_field == "unreadable":
            return "unreadable"
        if self.error_field == "open":
            return "foreign"
        if self.error_field == "size" or self.magic == 0:
            if not L.may_be_ring_in_creation(self.size):
                return "foreign"  # no ring has this size: a semaphore, another program's
            if time.time() - self.ctime > ABANDONED_AFTER_S:
                return "abandoned"
            return "uninitialized"
        if not self.is_shmring:
            return "foreign"
        if self.error is not None:
            return "invalid"
        f = self.fields
        if f["producer_flags"] & L.PRODUCER_CLOSED:
            return "closed"
        if pid_alive(f["producer_pid"]) is False:
            return "stale"
        if (f["consumer_flags"] & L.CONSUMER_ATTACHED) and pid_alive(f["consumer_pid"]) is not False:
            return "live"
        return "waiting"

    def producer_blocks_removal(self) -> bool:
        """The producer is alive (pid 0 = unknown counts as alive) and has not closed.

        The same rule a new producer applies before replacing a segment.
        """
        f = self.fields
        if f["producer_flags"] & L.PRODUCER_CLOSED:
            return False
        return pid_alive(f["producer_pid"]) is not False

    def as_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name, "path": self.path, "size": self.size,
                               "mode": f"{self.mode & 0o777:04o}", "uid": self.uid,
                               "magic": self.magic, "state": self.state()}
        if self.error is not None:
            out["error"] = self.error
            out["error_field"] = self.error_field
        if self.is_shmring:
            f = self.fields
            out.update(f)
            out["generation_hex"] = f"0x{f['generation']:016x}"
            out["profile_name"] = _PROFILE_NAMES.get(f["profile"], "unknown")
            out["producer_flags_decoded"] = decode_flags(f["producer_flags"], _PRODUCER_BITS)
            out["consumer_flags_decoded"] = decode_consumer_flags(f["consumer_flags"])
            out["producer_alive"] = pid_alive(f["producer_pid"])
            out["consumer_alive"] = pid_alive(f["consumer_pid"])
            out["reserved_zero"] = not self.reserved_nonzero
            if self.valid:
                used = self.used()
                out["used"] = used
                out["free"] = f["capacity"] - used
                out["fill_percent"] = round(100.0 * used / f["capacity"], 1)
        return out


def read_snapshot(name: str, keep_fd: bool = False):
    """Maps ``/dev/shm/NAME``'s header read-only and reads it; returns Snapshot (and fd).

    Raises CliError for a missing/unreadable segment. Never writes, never unlinks.
    """
    snap = Snapshot(name)
    path = snap.path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CliError(f"no ring named {name!r} (open({path}): No such file or directory)")
    except OSError as exc:
        raise _os_error("open", path, exc)
    try:
        st = os.fstat(fd)
        snap.size, snap.mode, snap.uid, snap.inode = st.st_size, st.st_mode, st.st_uid, st.st_ino
        snap.ctime = st.st_ctime
        if not stat.S_ISREG(st.st_mode):
            raise CliError(f"{path} is not a shared-memory segment (not a regular file)")
        if st.st_size < L.HEADER_SIZE:
            snap.error, snap.error_field = (
                f"segment is {st.st_size} bytes, smaller than the {L.HEADER_SIZE}-byte header",
                "size")
            if keep_fd:
                return snap, fd
            return snap
        try:
            mapping = mmap.mmap(fd, L.HEADER_SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except OSError as exc:
            raise _os_error("mmap", path, exc)
        try:
            _read_header(mapping, snap)
        finally:
            mapping.close()
    except BaseException:
        os.close(fd)
        raise
    if keep_fd:
        return snap, fd
    os.close(fd)
    return snap


def _read_header(mapping: mmap.mmap, snap: Snapshot) -> None:
    # A read-only native u32 view: item reads are single aligned 4-byte loads, exactly
    # what _atomics.word_view gives (which insists on a writable buffer because the
    # ring itself stores tail; this tool only ever loads).
    words = memoryview(mapping).cast("I")
    qwords = _atomics.qword_view(mapping)
    try:
        magic = words[L.MAGIC_WORD]  # creator stores it last: read it first
        snap.magic = magic
        if magic != L.MAGIC:
            if magic == 0:
                snap.error, snap.error_field = (
                    "magic is 0: the segment is not initialized (a producer may be creating it)",
                    "magic")
            else:
                raw = magic.to_bytes(4, "little")
                snap.error, snap.error_field = (
                    f"magic is 0x{magic:08x} ({raw!r}), expected 0x{L.MAGIC:08x} (b'SRNG')",
                    "magic")
            return
        version_word = words[L.VERSION_WORD]
        f = snap.fields
        f["capacity"] = words[L.CAPACITY_WORD]
        f["version"] = version_word & 0xFFFF
        f["header_size"] = version_word >> 16
        f["profile"] = words[L.PROFILE_WORD]
        f["generation"] = _atomics.load_u64(words, qwords, L.GENERATION_WORD)
        f["head"] = words[L.HEAD_WORD]
        f["tail"] = words[L.TAIL_WORD]
        f["producer_flags"] = words[L.PRODUCER_FLAGS_WORD]
        f["producer_pid"] = words[L.PRODUCER_PID_WORD]
        f["consumer_flags"] = words[L.CONSUMER_FLAGS_WORD]
        f["consumer_pid"] = words[L.CONSUMER_PID_WORD]
        f["dropped"] = _atomics.load_u64(words, qwords, L.DROPPED_WORD)
        snap.reserved_nonzero = any(words[i] for i in range(L.RESERVED_OFFSET // 4,
                                                           L.HEADER_SIZE // 4))
    finally:
        if qwords is not None:
            qwords.release()
        words.release()
    _validate(snap)


def _validate(snap: Snapshot) -> None:
    """PROTOCOL.md section 2's opener checks, in order, naming the field."""
    f = snap.fields
    cap = f["capacity"]
    if f["version"] != L.VERSION:
        snap.error, snap.error_field = (
            f"version is {f['version']}, this tool reads version {L.VERSION}", "version")
    elif f["header_size"] != L.HEADER_SIZE:
        snap.error, snap.error_field = (
            f"header_size is {f['header_size']}, expected {L.HEADER_SIZE}", "header_size")
    elif not L.is_valid_capacity(cap):
        snap.error, snap.error_field = (
            f"capacity {cap} is not a power of two in [{L.MIN_CAPACITY}, {L.MAX_CAPACITY}]",
            "capacity")
    elif L.HEADER_SIZE + cap > snap.size:
        snap.error, snap.error_field = (
            f"capacity {cap} does not fit the {snap.size}-byte segment", "capacity")


def list_segments(include_all: bool) -> Iterator[Snapshot]:
    try:
        entries = sorted(os.listdir(SHM_DIR))
    except OSError as exc:
        raise _os_error("listdir", SHM_DIR, exc)
    for entry in entries:
        path = os.path.join(SHM_DIR, entry)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
        except OSError:
            continue  # vanished
        try:
            snap = read_snapshot(entry)
        except CliError as exc:
            # Not readable by us (mode 0600 rings of another user) may well be a
            # ring: always listed, so an empty list never hides rings.
            unreadable = not os.access(path, os.R_OK)
            if include_all or unreadable:
                snap = Snapshot(entry)
                snap.magic = -1
                snap.error = str(exc)
                snap.error_field = "unreadable" if unreadable else "open"
                yield snap
            continue
        if snap.is_shmring or include_all:
            yield snap


# --------------------------------------------------------------------------- commands

def _pid_text(pid: int, alive: Optional[bool], attached: bool = True) -> str:
    if pid == 0 or not attached:
        return "-"
    return f"{pid} {'alive' if alive else 'dead'}"


def cmd_ls(args: argparse.Namespace) -> int:
    snaps = list(list_segments(args.all))
    if args.json:
        print(json.dumps([s.as_dict() for s in snaps], indent=2))
        return 0
    if not snaps:
        print(f"no shmring rings in {SHM_DIR}")
        return 0
    rows = [("NAME", "PROFILE", "CAPACITY", "FILL", "PRODUCER", "CONSUMER", "STATE",
             "DROPPED")]
    for s in snaps:
        if not s.is_shmring or not s.valid:
            why = s.state()
            if why in ("invalid", "foreign") and s.error_field:
                why += f" ({s.error_field})"
            elif why == "unreadable":
                why += " (permission denied: run as its owner or root)"
            rows.append((s.name, "-", "-", "-", "-", "-", why, "-"))
            continue
        f = s.fields
        used = s.used()
        cap = f["capacity"]
        attached = bool(f["consumer_flags"] & L.CONSUMER_ATTACHED)
        rows.append((
            s.name,
            _PROFILE_NAMES.get(f["profile"], str(f["profile"])),
            human_bytes(cap),
            f"{human_bytes(used)} {100.0 * used / cap:.0f}%",
            _pid_text(f["producer_pid"], pid_alive(f["producer_pid"])),
            _pid_text(f["consumer_pid"], pid_alive(f["consumer_pid"]), attached),
            s.state(),
            str(f["dropped"]),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    name = normalize_name(args.name)
    snap = read_snapshot(name)
    if args.json:
        print(json.dumps(snap.as_dict(), indent=2))
    else:
        _print_inspect(snap)
    if snap.error is not None:
        state = snap.state()
        if state in ("uninitialized", "abandoned"):
            what = f"not initialized ({state})"
        else:
            what = "not a shmring ring" if not snap.is_shmring else "not a valid v1 ring"
        raise CliError(f"{name}: {what}: {snap.error_field}: {snap.error}")
    return 0


def _print_inspect(s: Snapshot) -> None:
    print(f"ring {s.name}: {s.path}, {s.size} bytes, mode {s.mode & 0o777:04o}, uid {s.uid}")
    if not s.is_shmring:
        if s.error_field not in ("size", "open", "unreadable"):
            print(f"  {'magic':<15} 0x{s.magic & 0xFFFFFFFF:08x}")
        age = time.time() - s.ctime
        print(f"  {'state':<15} {s.state()} (last status change {age:.1f} s ago)")
        return
    f = s.fields
    cap = f["capacity"]
    rows = [
        ("head", f"{f['head']} (0x{f['head']:08x}), data offset {f['head'] & (cap - 1) if L.is_power_of_two(cap) else '?'}"),
        ("tail", f"{f['tail']} (0x{f['tail']:08x}), data offset {f['tail'] & (cap - 1) if L.is_power_of_two(cap) else '?'}"),
        ("capacity", f"{cap} ({human_bytes(cap)})"),
        ("magic", f"0x{s.magic:08x} 'SRNG'"),
        ("version", str(f["version"])),
        ("header_size", str(f["header_size"])),
        ("profile", f"{f['profile']} ({_PROFILE_NAMES.get(f['profile'], 'unknown')})"),
        ("generation", f"0x{f['generation']:016x}"),
        ("producer_flags", f"0x{f['producer_flags']:08x} "
                           f"{decode_flags(f['producer_flags'], _PRODUCER_BITS)}"),
        ("producer_pid", _pid_long(f["producer_pid"])),
        ("consumer_flags", f"0x{f['consumer_flags']:08x} "
                           f"{decode_consumer_flags(f['consumer_flags'])}"),
        ("consumer_pid", _pid_long(f["consumer_pid"])),
        ("dropped", str(f["dropped"])),
        ("reserved", "all zero" if not s.reserved_nonzero else "NOT zero (a later version?)"),
    ]
    if s.valid:
        used = s.used()
        rows.append(("used", f"{used} bytes ({100.0 * used / cap:.1f}%), free {cap - used}"))
    rows.append(("state", s.state()))
    for key, value in rows:
        print(f"  {key:<15} {value}")


def _pid_long(pid: int) -> str:
    alive = pid_alive(pid)
    if alive is None:
        return "0 (none)"
    return f"{pid} ({'alive' if alive else 'dead'})"


def cmd_rm(args: argparse.Namespace) -> int:
    status = 0
    for raw in args.names:
        try:
            _rm_one(raw, args.force)
        except CliError as exc:
            print(f"{PROG} rm: {exc}", file=sys.stderr)
            status = 1
    return status


def _rm_one(raw: str, force: bool) -> None:
    name = normalize_name(raw)
    snap, fd = read_snapshot(name, keep_fd=True)
    try:
        state = snap.state()
        if state == "foreign":
            raise CliError(f"refusing to remove {name!r}: not a shmring segment "
                           f"({snap.error_field}: {snap.error})")
        if state == "uninitialized" and not force:
            raise CliError(f"refusing to remove {name!r}: {snap.error}; a producer may be "
                           f"creating it (it is debris once unchanged for "
                           f"{ABANDONED_AFTER_S:g} s; --force removes it now)")
        if snap.is_shmring and snap.producer_blocks_removal() and not force:
            pid = snap.fields["producer_pid"]
            who = f"producer pid {pid} is alive" if pid else \
                "producer pid is 0 (unknown, so counted as alive)"
            raise CliError(f"refusing to remove ring {name!r}: its {who} and has not closed "
                           "the stream (use --force to remove it anyway; processes that have "
                           "it mapped keep working)")
        # Guard against the name having been re-created between our check and unlink.
        try:
            now = os.stat(snap.path)
        except FileNotFoundError:
            raise CliError(f"{name!r} disappeared before it could be removed")
        if now.st_ino != snap.inode:
            raise CliError(f"refusing to remove {name!r}: it was re-created while being "
                           "checked; run rm again")
        try:
            os.unlink(snap.path)
        except OSError as exc:
            raise _os_error("unlink", snap.path, exc)
    finally:
        os.close(fd)
    print(f"removed {name} ({state})")


# --------------------------------------------------------------------------- cat

def describe_message(payload: bytes, profile: int, preview: int) -> str:
    """One line for a message: len + hex preview, or a decoded profile-1 message."""
    n = len(payload)
    if profile == L.PROFILE_GST_FRAMING:
        from . import framing
        try:
            header, start, body_len = framing.decode_header(payload)
        except framing.FramingError as exc:
            return f"len={n} (bad profile-1 message: {exc})"
        body = payload[start:start + body_len]
        kind = _P1_KINDS.get(header.kind, f"kind={header.kind}")
        parts = [f"len={n}", kind]
        if header.kind == framing.KIND_CAPS:
            parts.append(body.decode("utf-8", "replace"))
        elif header.kind == framing.KIND_BUFFER:
            parts.append(f"pts={_fmt_time(header.pts)} dts={_fmt_time(header.dts)} "
                         f"dur={_fmt_time(header.duration)}")
            if header.flags:
                parts.append(f"flags=0x{header.flags:x}")
            if header.offset is not None:
                parts.append(f"offset={header.offset}")
            parts.append(f"body={body_len}")
            if header.send_time_ns:
                age = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - header.send_time_ns
                parts.append(f"age={age / 1e6:.2f}ms")
            if preview and body_len:
                parts.append(body[:preview].hex(" ") + (" ..." if body_len > preview else ""))
        return " ".join(parts)
    text = f"len={n}"
    if preview and n:
        text += " " + payload[:preview].hex(" ") + (" ..." if n > preview else "")
    return text


def _fmt_time(t: Optional[int]) -> str:
    if t is None or t == _NONE64:
        return "none"
    return f"{t // 1_000_000_000}.{t % 1_000_000_000:09d}"


def cmd_cat(args: argparse.Namespace) -> int:
    name = normalize_name(args.name)
    try:
        from . import errors
        consumer_cls = _consumer_class()
    except ImportError as exc:  # pragma: no cover - a broken installation
        raise CliError(f"cat needs the shmring package's consumer: {exc}")
    path = os.path.join(SHM_DIR, name)
    if os.path.exists(path):
        snap = read_snapshot(name)
        if snap.state() == "foreign":
            raise CliError(f"{name}: not a shmring ring: {snap.error_field}: {snap.error}")
    # ShmConsumer: timeout None waits for the ring without limit, a number that long.
    try:
        consumer = consumer_cls(name, timeout=args.timeout)
    except errors.RingNotFoundError:
        raise CliError(f"no ring named {name!r} appeared within {args.timeout:g} s")
    except errors.ShmRingError as exc:
        field = getattr(exc, "field", None)
        what = f"{field}: " if field else ""
        raise CliError(f"cannot attach to {name!r} as its consumer: {what}{exc}")
    count = 0
    try:
        profile = consumer.profile
        print(f"{name}: attached as consumer (profile {profile} "
              f"{_PROFILE_NAMES.get(profile, '?')}, capacity {consumer.capacity})",
              file=sys.stderr, flush=True)
        while args.count is None or count < args.count:
            try:
                payload = consumer.read(timeout=args.timeout)
            except (errors.ProducerDeadError, errors.ProducerReplacedError,
                    errors.CorruptRecordError) as exc:
                raise CliError(f"{name}: after {count} messages: {exc}")
            if payload is None:
                if consumer.at_end:
                    print(f"{name}: end of stream after {count} messages", file=sys.stderr)
                    return 0
                raise CliError(f"{name}: no message within {args.timeout:g} s "
                               f"({count} received)")
            print(f"#{count} {describe_message(payload, profile, args.preview)}", flush=True)
            count += 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted after {count} messages", file=sys.stderr)
        return 130
    finally:
        consumer.close()
    return 0


def _consumer_class() -> Any:
    try:
        from . import ShmConsumer  # type: ignore[attr-defined]
    except ImportError:
        from .channel import ShmConsumer
    return ShmConsumer


# --------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect and manage shmring rings (shared-memory SPSC rings).",
        epilog="States: live (producer and consumer alive), waiting (producer alive, no "
               "consumer), closed (end of stream), stale (producer died without closing), "
               "uninitialized (being created: magic 0 or shorter than the header), abandoned "
               "(uninitialized for more than 5 s), invalid (a header field out of range), "
               "foreign (not a shmring segment).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("ls", help="list rings in /dev/shm")
    p.add_argument("--all", "-a", action="store_true",
                   help="also list segments that are not (valid) shmring rings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("inspect", help="print every header field of a ring")
    p.add_argument("name", metavar="NAME", help="ring name, e.g. cam0")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("rm", help="remove rings (refuses a live producer's ring)")
    p.add_argument("names", metavar="NAME", nargs="+")
    p.add_argument("--force", "-f", action="store_true",
                   help="remove even if the producer is alive and has not closed")
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("cat", help="attach as the consumer and dump messages (consumes them)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--count", "-n", type=_positive_int, default=None,
                   help="stop after N messages")
    p.add_argument("--timeout", "-t", type=_non_negative_float, default=None,
                   help="give up (exit 1) after this many seconds without a message "
                        "(including waiting for the ring to appear); default: wait forever")
    p.add_argument("--preview", type=_non_negative_int, default=16,
                   help="bytes of each payload to show in hex (default 16; 0 = none)")
    p.set_defaults(func=cmd_cat)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # e.g. Ctrl-C while `cat` waits for a producer
        return 130
    except BrokenPipeError:  # e.g. `ls | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
