"""``python3 -m shmring``: list, inspect, remove and dump shmring rings.

Subcommands::

    ls [--all] [--json]             rings in /dev/shm: pids, capacity, fill, state, drops
    inspect NAME [--json]           every header field, flags decoded
    rm NAME... [--force]            remove rings (refuses a live producer's ring)
    cat NAME [--count N] [--timeout S] [--preview B]
                                    attach as the consumer and dump messages

This module is argparse and formatting only. ``ls``, ``inspect`` and ``rm`` read
headers through :class:`shmring.header.HeaderSnapshot` (read-only, nothing attached,
registered or unlinked); ``cat`` attaches as the ring's one consumer through
``ShmConsumer`` and so consumes what it prints.

States (``ls``, ``inspect``):

* ``live``     the producer is alive and a live consumer is attached
* ``waiting``  the producer is alive, no (live) consumer is attached
* ``closed``   the producer ended the stream (CLOSED); unread data may remain
* ``stale``    the producer is gone (its lock on byte 0 is free) and it never set
  CLOSED (it crashed)
* ``uninitialized``  shorter than the header or magic 0: a producer is creating it
* ``abandoned``  the same, but unchanged for more than 5 s (st_ctime): debris of a
  creator that died mid-way; a new producer would replace it
* ``invalid``  carries the SRNG magic but a header field is out of range
* ``foreign``  not a ring (``--all`` only): another magic, a size no ring has, or not a
  regular file at all (a FIFO, a directory, a symlink; ``rm --force`` removes those)
* ``unreadable``  permission denied (listed when its size is a ring's, or with ``--all``)

Receiver slots (a ring made with max_receivers > 1): ``ls`` counts the attached
receivers ("2/3 receivers") and prints a line per slot in use: ``pid N alive``
(attached), ``pid N dead`` (killed while attached), ``attaching`` (claimed, its start
not stored yet); ``inspect`` prints every slot, ``free`` ones too.

User errors exit with status 1 and one line on stderr naming the field or the OS call;
argument errors exit with 2 (argparse).
"""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from typing import List, Optional

from . import framing
from . import layout as L
from ._shm import validate_name  # also shmring.validate_name
from ._tuning import ABANDONED_AFTER_S
from .channel import ShmConsumer
from .errors import (CorruptRecordError, InvalidNameError, ProducerDeadError,
                     ProducerReplacedError, RingNotFoundError, ShmRingError)
from .header import (PRODUCER_BITS, PROFILE_NAMES, SHM_DIR, HeaderSnapshot,
                     decode_consumer_flags, decode_flags, file_kind, scan_segments)

PROG = "python3 -m shmring"
_KIND_NAMES = {framing.KIND_CAPS: "CAPS", framing.KIND_BUFFER: "BUFFER",
               framing.KIND_EOS: "EOS"}


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
    try:
        validate_name(name)
    except InvalidNameError as exc:
        raise CliError(f"invalid ring name {raw!r}: {exc}; a name is 1..30 characters of "
                       "[A-Za-z0-9._-], not starting with '.' or '-'") from None
    return name


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "B":
                return f"{n} B"
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def read_snapshot(name: str) -> HeaderSnapshot:
    """The header snapshot of ring ``name``; CliError for a missing or unreadable one."""
    try:
        return HeaderSnapshot.read(name)
    except RingNotFoundError:
        raise CliError(f"no ring named {name!r} (open({os.path.join(SHM_DIR, name)}): "
                       "No such file or directory)") from None
    except ShmRingError as exc:
        raise CliError(str(exc)) from None


# --------------------------------------------------------------------------- commands

def _pid_text(pid: int, alive: Optional[bool], attached: bool = True) -> str:
    if pid == 0 or not attached:
        return "-"
    return f"{pid} {'alive' if alive else 'dead'}"


def cmd_ls(args: argparse.Namespace) -> int:
    try:
        snaps = list(scan_segments(args.all))
    except ShmRingError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps([s.as_dict() for s in snaps], indent=2))
        return 0
    if not snaps:
        print(f"no shmring rings in {SHM_DIR}")
        return 0
    rows = [("NAME", "PROFILE", "CAPACITY", "FILL", "PRODUCER", "CONSUMER", "STATE",
             "DROPPED")]
    for s in snaps:
        if not s.valid:
            why = s.state()
            if s.error_field == "type":
                why += f" ({file_kind(s.mode)})"
            elif why in ("invalid", "foreign") and s.error_field:
                why += f" ({s.error_field})"
            elif why == "unreadable":
                why += f" (permission denied: owned by uid {s.uid}; run as its owner or root)"
            rows.append((s.name, "-", "-", "-", "-", "-", why, "-"))
            continue
        used, cap = s.used, s.capacity
        attached = bool(s.consumer_flags & L.CONSUMER_ATTACHED) or bool(s.consumer_locked)
        consumer = _pid_text(s.consumer_pid, s.consumer_alive, attached)
        if s.max_receivers > 1:
            consumer = f"{sum(r.attached for r in s.receivers)}/{s.max_receivers} receivers"
        rows.append((
            s.name,
            PROFILE_NAMES.get(s.profile, str(s.profile)),
            human_bytes(cap),
            f"{human_bytes(used)} {100.0 * used / cap:.0f}%",
            _pid_text(s.producer_pid, s.producer_alive),
            consumer,
            s.state(),
            str(s.dropped),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    by_name = {s.name: s for s in snaps}
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        snap = by_name.get(r[0])
        if snap is not None and snap.valid and snap.max_receivers > 1:
            for line in _receiver_lines(snap, taken_only=True):
                print("    " + line)
    return 0


def _receiver_lines(s: HeaderSnapshot, taken_only: bool) -> List[str]:
    """One line per receiver slot: who holds it (free, attaching: claimed and not
    attached yet, pid alive, pid dead: died attached), mode, position, lag, skipped
    (taken_only: every slot but the free ones)."""
    lines = []
    for r in s.receivers:
        if r.dead:
            who = f"pid {r.pid} dead"
        elif r.attaching:
            who = "attaching"  # its pid word is not written yet
        elif r.attached:
            who = f"pid {r.pid} alive"
        else:
            if taken_only:
                continue
            who = "free"
        lines.append(f"slot {r.slot}: {who}, {r.mode_name}, position {r.position}, "
                     f"lag {human_bytes(r.lag(s.head))}, skipped {r.skipped} buffers")
    return lines


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


def _print_inspect(s: HeaderSnapshot) -> None:
    print(f"ring {s.name}: {s.path}, {s.size} bytes, mode {stat.S_IMODE(s.mode):04o}, "
          f"uid {s.uid}")
    if not s.is_shmring:
        if s.error_field == "type":
            print(f"  {'type':<15} {file_kind(s.mode)}")
        elif s.error_field != "size":
            print(f"  {'magic':<15} 0x{s.magic & 0xFFFFFFFF:08x}")
        age = time.time() - s.changed
        print(f"  {'state':<15} {s.state()} (last change {age:.1f} s ago)")
        return
    cap = s.capacity
    mask = cap - 1 if L.is_power_of_two(cap) else None

    def offset(index: int) -> str:
        return str(index & mask) if mask is not None else "?"

    rows = [
        ("head", f"{s.head} (0x{s.head:08x}), data offset {offset(s.head)}"),
        ("tail", f"{s.tail} (0x{s.tail:08x}), data offset {offset(s.tail)}"),
        ("capacity", f"{cap} ({human_bytes(cap)})"),
        ("magic", f"0x{s.magic:08x} 'SRNG'"),
        ("version", str(s.version)),
        ("header_size", str(s.header_size)),
        ("max_receivers", str(s.max_receivers)),
        ("profile", f"{s.profile} ({PROFILE_NAMES.get(s.profile, 'unknown')})"),
        ("generation", f"0x{s.generation:016x}"),
        ("producer_flags", f"0x{s.producer_flags:08x} "
                           f"{decode_flags(s.producer_flags, PRODUCER_BITS)}"),
        ("producer_pid", _pid_long(s.producer_pid, s.producer_alive)),
        ("consumer_flags", f"0x{s.consumer_flags:08x} "
                           f"{decode_consumer_flags(s.consumer_flags)}"),
        ("consumer_pid", _pid_long(s.consumer_pid, s.consumer_alive)),
        ("consumer_mode", "live" if s.consumer_mode == L.MODE_LIVE else "lossless"),
        ("skipped", f"{s.consumer_skipped} buffers (records a live receiver lost)"),
        ("dropped", str(s.dropped)),
        ("published", f"{s.published} messages"),
        ("reserved", "all zero" if s.reserved_zero else "NOT zero (a later version?)"),
    ]
    if s.valid:
        used = s.used
        rows.append(("used", f"{used} bytes ({100.0 * used / cap:.1f}%), free {cap - used}"))
    rows.append(("state", s.state()))
    for key, value in rows:
        print(f"  {key:<15} {value}")
    if s.valid:
        print("  receivers")
        for line in _receiver_lines(s, taken_only=False):
            print("    " + line)
        if s.stream_info is not None:
            print(f"  {'stream info':<15} {s.stream_info.decode('utf-8', 'replace')}")


def _pid_long(pid: int, alive: Optional[bool]) -> str:
    if pid == 0:
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
    snap = read_snapshot(name)
    state = snap.state()
    if snap.error_field == "type":
        if not force:
            raise CliError(f"refusing to remove {name!r}: {snap.error} (--force removes it)")
    elif state == "foreign":
        raise CliError(f"refusing to remove {name!r}: not a shmring segment "
                       f"({snap.error_field}: {snap.error})")
    elif state == "uninitialized" and not force:
        raise CliError(f"refusing to remove {name!r}: {snap.error}; a producer may be "
                       f"creating it (it is debris once unchanged for "
                       f"{ABANDONED_AFTER_S:g} s; --force removes it now)")
    elif snap.is_shmring and snap.producer_blocks_removal() and not force:
        raise CliError(f"refusing to remove ring {name!r}: its producer (pid "
                       f"{snap.producer_pid} as it recorded it) is alive and has not closed "
                       "the stream (use --force to remove it anyway; processes that have "
                       "it mapped keep working)")
    # Guard against the name having been re-created between our check and unlink.
    try:
        now = os.lstat(snap.path)
    except FileNotFoundError:
        raise CliError(f"{name!r} disappeared before it could be removed") from None
    if now.st_ino != snap.inode:
        raise CliError(f"refusing to remove {name!r}: it was re-created while being "
                       "checked; run rm again")
    try:
        if stat.S_ISDIR(now.st_mode):
            os.rmdir(snap.path)
        else:
            os.unlink(snap.path)
    except OSError as exc:
        raise CliError(f"unlink({snap.path}) failed: {os.strerror(exc.errno or 0)}") from None
    print(f"removed {name} ({state})")


# --------------------------------------------------------------------------- cat

def describe_message(payload: bytes, profile: int, preview: int) -> str:
    """One line for a message: len + hex preview, or a decoded profile-1 message."""
    n = len(payload)
    if profile == L.PROFILE_GST_FRAMING:
        try:
            header, start, body_len = framing.decode_header(payload)
        except CorruptRecordError as exc:
            return f"len={n} (bad profile-1 message: {exc})"
        body = payload[start:start + body_len]
        kind = _KIND_NAMES.get(header.kind, f"kind={header.kind}")
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
                age = framing.monotonic_ns() - header.send_time_ns
                parts.append(f"age={age / 1e6:.2f}ms")
            if preview and body_len:
                parts.append(body[:preview].hex(" ") + (" ..." if body_len > preview else ""))
        return " ".join(parts)
    text = f"len={n}"
    if preview and n:
        text += " " + payload[:preview].hex(" ") + (" ..." if n > preview else "")
    return text


def _fmt_time(t: Optional[int]) -> str:
    if t is None or t == framing.TIME_NONE:
        return "none"
    return f"{t // 1_000_000_000}.{t % 1_000_000_000:09d}"


def cmd_cat(args: argparse.Namespace) -> int:
    name = normalize_name(args.name)
    # ShmConsumer refuses anything that is not a ring at once (naming the field) and
    # waits (timeout None: without limit) only for a name that is missing or a ring
    # still being created.
    try:
        consumer = ShmConsumer(name, timeout=args.timeout)
    except RingNotFoundError:
        raise CliError(f"no ring named {name!r} appeared within {args.timeout:g} s") from None
    except ShmRingError as exc:
        field = getattr(exc, "field", None)
        what = f"{field}: " if field else ""
        raise CliError(f"cannot attach to {name!r} as its consumer: {what}{exc}") from None
    count = 0
    try:
        profile = consumer.profile
        print(f"{name}: attached as consumer (profile {profile} "
              f"{PROFILE_NAMES.get(profile, '?')}, capacity {consumer.capacity})",
              file=sys.stderr, flush=True)
        while args.count is None or count < args.count:
            try:
                payload = consumer.read(timeout=args.timeout)
            except (ProducerDeadError, ProducerReplacedError, CorruptRecordError) as exc:
                raise CliError(f"{name}: after {count} messages: {exc}") from None
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
