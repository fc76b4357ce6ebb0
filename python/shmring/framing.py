"""Profile 1 ("GStreamer framing"): encode and decode the message in each payload.

Every payload is a fixed little-endian message header, then the body at
``body_offset(header_size)``: the first offset >= header_size that is 4 mod 8, so
the body is 8-aligned in the ring (a payload starts 4 bytes into its record). Mirrors ``core/include/shm/framing.hpp``:

====== ==== ============ ===================================================
offset size field        meaning
====== ==== ============ ===================================================
0      2    kind         1 CAPS, 2 BUFFER, 3 EOS (readers skip unknown kinds)
2      2    header_size  60 in this version; readers refuse < 60
4      4    flags        GstBufferFlags (BUFFER), else 0
8      8    pts          ns, all-ones = none
16     8    dts          ns, all-ones = none
24     8    duration     ns, all-ones = none
32     8    offset       all-ones = none
40     8    offset_end   all-ones = none
48     8    send_time_ns writer's CLOCK_MONOTONIC at write, 0 = unknown
56     4    reserved     zero
====== ==== ============ ===================================================
"""
from __future__ import annotations

import struct
import time
from typing import Any, NamedTuple, Optional, Tuple

from .errors import FramingError

KIND_CAPS = 1
KIND_BUFFER = 2
KIND_EOS = 3

# Header field offsets within a payload.
KIND_OFFSET = 0         # u16
HEADER_SIZE_OFFSET = 2  # u16, bytes; body at body_offset(header_size)
FLAGS_OFFSET = 4        # u32, GstBufferFlags (BUFFER), else 0
PTS_OFFSET = 8          # u64 ns, TIME_NONE = unset
DTS_OFFSET = 16         # u64 ns
DURATION_OFFSET = 24    # u64 ns
OFFSET_OFFSET = 32      # u64, OFFSET_NONE = unset
OFFSET_END_OFFSET = 40  # u64
SEND_TIME_OFFSET = 48   # u64 ns, writer's CLOCK_MONOTONIC at write; 0 = unknown
RESERVED_OFFSET = 56    # u32, zero

HEADER_SIZE = 60      # what this version writes
MIN_HEADER_SIZE = 60  # what this version requires to read
TIME_NONE = 0xFFFFFFFFFFFFFFFF    # GST_CLOCK_TIME_NONE
OFFSET_NONE = 0xFFFFFFFFFFFFFFFF  # GST_BUFFER_OFFSET_NONE

_HEADER = struct.Struct("<HHIQQQQQQI")
assert _HEADER.size == HEADER_SIZE == RESERVED_OFFSET + 4
#: ``unpack_header(buf, offset)``: the ten raw header fields (kind, header_size,
#: flags, pts, dts, duration, offset, offset_end, send_time_ns, reserved) in one
#: call, absent values still all-ones. No checks: callers validate (see
#: :func:`decode_header`).
unpack_header = _HEADER.unpack_from


class MessageHeader(NamedTuple):
    """A decoded message header; absent times and offsets are None."""

    kind: int
    header_size: int
    flags: int
    pts: Optional[int]
    dts: Optional[int]
    duration: Optional[int]
    offset: Optional[int]
    offset_end: Optional[int]
    send_time_ns: int


def body_offset(header_size: int) -> int:
    """Offset of the body in a payload whose header declares ``header_size`` bytes.

    The first offset >= header_size that is 4 mod 8: 8-aligned in the ring."""
    return ((header_size + 4 + 7) & ~7) - 4


def _wire(value: Optional[int]) -> int:
    return TIME_NONE if value is None else value


def _opt(value: int) -> Optional[int]:
    return None if value == TIME_NONE else value


def monotonic_ns() -> int:
    """The clock send_time_ns is taken from (CLOCK_MONOTONIC on Linux)."""
    return time.monotonic_ns()


def encode_header(kind: int, flags: int = 0, pts: Optional[int] = None,
                  dts: Optional[int] = None, duration: Optional[int] = None,
                  offset: Optional[int] = None, offset_end: Optional[int] = None,
                  send_time_ns: int = 0) -> bytes:
    """The 60-byte message header. Either side; never blocks."""
    return _HEADER.pack(kind, HEADER_SIZE, flags, _wire(pts), _wire(dts), _wire(duration),
                        _wire(offset), _wire(offset_end), send_time_ns, 0)


def encode_message(kind: int, body: Any = b"", **fields: Any) -> bytes:
    """Header plus body as one payload (``fields`` as for :func:`encode_header`)."""
    return encode_header(kind, **fields) + bytes(body)


def encode_caps(caps: str, send_time_ns: int = 0) -> bytes:
    """A CAPS message: body = the caps string (UTF-8, no NUL)."""
    return encode_message(KIND_CAPS, caps.encode("utf-8"), send_time_ns=send_time_ns)


def encode_buffer(data: Any, pts: Optional[int] = None, dts: Optional[int] = None,
                  duration: Optional[int] = None, offset: Optional[int] = None,
                  offset_end: Optional[int] = None, flags: int = 0,
                  send_time_ns: int = 0) -> bytes:
    """A BUFFER message carrying ``data`` and its timestamps."""
    return encode_message(KIND_BUFFER, data, flags=flags, pts=pts, dts=dts, duration=duration,
                          offset=offset, offset_end=offset_end, send_time_ns=send_time_ns)


def encode_eos(send_time_ns: int = 0) -> bytes:
    """An EOS message (empty body)."""
    return encode_message(KIND_EOS, send_time_ns=send_time_ns)


def decode_header(payload: Any, offset: int = 0, length: Optional[int] = None
                  ) -> Tuple[MessageHeader, int, int]:
    """Parses the message at ``payload[offset:offset + length]``.

    Returns (header, body start, body length) with the body start relative to
    ``payload``. Raises FramingError naming the problem when the payload is shorter
    than its header, declares a header smaller than 60 bytes or a body offset past
    its end. Never reads outside the given range. Either side; never blocks.
    """
    if length is None:
        length = memoryview(payload).nbytes - offset
    if length < MIN_HEADER_SIZE:
        raise FramingError(f"payload of {length} bytes is shorter than the "
                           f"{MIN_HEADER_SIZE}-byte message header")
    kind, header_size, flags, pts, dts, duration, off, off_end, send, _reserved = \
        _HEADER.unpack_from(payload, offset)
    if header_size < MIN_HEADER_SIZE:
        raise FramingError(f"message header_size {header_size} is below the minimum "
                           f"{MIN_HEADER_SIZE}")
    start = body_offset(header_size)
    if start > length:
        raise FramingError(f"message header_size {header_size} puts the body past the end "
                           f"of the {length}-byte payload")
    header = MessageHeader(kind, header_size, flags, _opt(pts), _opt(dts), _opt(duration),
                           _opt(off), _opt(off_end), send)
    return header, offset + start, length - start


def decode_message(payload: Any) -> Tuple[MessageHeader, memoryview]:
    """(header, body view) of a whole payload; see :func:`decode_header`."""
    header, start, body_len = decode_header(payload)
    return header, memoryview(payload).cast("B")[start:start + body_len]
