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
60     …    extensions   entries up to header_size (see below)
====== ==== ============ ===================================================

Header extensions (between byte 60 and ``header_size``): entries
``[u16 type][u16 length][value][zero padding to a multiple of 4]``; unknown types
are skipped, and the fields a reader knows of a longer value are read, the rest
ignored. A BUFFER whose DTS lies before running time 0 carries ``dts`` none and an
``EXT_NEGATIVE_DTS`` entry: :func:`decode_header` then reports ``dts`` as a negative
int (readers that predate extensions see ``None``).
"""
from __future__ import annotations

import struct
import time
from typing import Any, Iterator, List, NamedTuple, Optional, Tuple

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

HEADER_SIZE = 60      # the fixed part; extensions follow it
MIN_HEADER_SIZE = 60  # what this version requires to read
MAX_HEADER_SIZE = 65532  # header_size is a u16; entries are 4-aligned

# Header extension entry types (framing.hpp ``enum class Ext``).
EXT_NEGATIVE_DTS = 1         # u64 ns before running time 0 (dts is none)
EXT_AUDIO_CLIPPING = 2       # u32 format, u32 0, u64 start, u64 end
EXT_VIDEO_META = 3           # u32 flags, format, width, height, n_planes, 0; u64 offset[4]; i32 stride[4]
EXT_REFERENCE_TIMESTAMP = 4  # u64 timestamp, u64 duration, reference caps text (UTF-8)
EXT_ENTRY_HEADER_SIZE = 4
EXT_ALIGN = 4
NEGATIVE_DTS_SIZE = 8
AUDIO_CLIPPING_SIZE = 24
VIDEO_MAX_PLANES = 4
VIDEO_META_SIZE = 72
REFERENCE_TIMESTAMP_FIXED_SIZE = 16
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
    """A decoded message header; absent times and offsets are None.

    ``dts`` is negative when the DTS lies before running time 0 (an
    ``EXT_NEGATIVE_DTS`` entry); ``extensions`` is the raw extension area (see
    :func:`parse_extensions`)."""

    kind: int
    header_size: int
    flags: int
    pts: Optional[int]
    dts: Optional[int]
    duration: Optional[int]
    offset: Optional[int]
    offset_end: Optional[int]
    send_time_ns: int
    extensions: bytes = b""


class AudioClipping(NamedTuple):
    """GstAudioClippingMeta: ``start``/``end`` units of GstFormat ``format`` (2 samples,
    3 ns) to clip from the start and end of the buffer."""

    format: int
    start: int
    end: int


class VideoMeta(NamedTuple):
    """GstVideoMeta: plane offsets (bytes from the body's start) and strides (bytes)
    of the frame in the body; ``format`` is the GstVideoFormat value."""

    flags: int
    format: int
    width: int
    height: int
    n_planes: int
    offsets: Tuple[int, ...]
    strides: Tuple[int, ...]


class ReferenceTimestamp(NamedTuple):
    """GstReferenceTimestampMeta: ``timestamp`` (ns) on the clock named by the caps
    text ``reference``, over ``duration`` (None = unknown)."""

    reference: str
    timestamp: Optional[int]
    duration: Optional[int]


class Extensions(NamedTuple):
    """The known extensions of one message (None / empty when absent)."""

    negative_dts: Optional[int] = None
    audio_clipping: Optional[AudioClipping] = None
    video_meta: Optional[VideoMeta] = None
    reference_timestamps: Tuple[ReferenceTimestamp, ...] = ()


_U64 = struct.Struct("<Q")
_AUDIO_CLIPPING = struct.Struct("<I4xQQ")
_VIDEO_META = struct.Struct("<IIIII4x4Q4i")
_REF_TS = struct.Struct("<QQ")
assert _AUDIO_CLIPPING.size == AUDIO_CLIPPING_SIZE and _VIDEO_META.size == VIDEO_META_SIZE


def ext_entry(ext_type: int, value: bytes) -> bytes:
    """One extension entry: type, length, value, zero padding to 4 bytes."""
    if len(value) > 0xFFFF:
        raise FramingError(f"extension value of {len(value)} bytes exceeds 65535")
    pad = -(EXT_ENTRY_HEADER_SIZE + len(value)) % EXT_ALIGN
    return struct.pack("<HH", ext_type, len(value)) + bytes(value) + bytes(pad)


def ext_negative_dts(ns_before_zero: int) -> bytes:
    """The entry saying the DTS is ``ns_before_zero`` ns before running time 0."""
    return ext_entry(EXT_NEGATIVE_DTS, _U64.pack(ns_before_zero))


def ext_audio_clipping(clip: AudioClipping) -> bytes:
    """The GstAudioClippingMeta entry."""
    return ext_entry(EXT_AUDIO_CLIPPING, _AUDIO_CLIPPING.pack(clip.format, clip.start, clip.end))


def ext_video_meta(meta: VideoMeta) -> bytes:
    """The GstVideoMeta entry (up to 4 planes; missing offsets/strides are 0)."""
    offsets = (tuple(meta.offsets) + (0,) * VIDEO_MAX_PLANES)[:VIDEO_MAX_PLANES]
    strides = (tuple(meta.strides) + (0,) * VIDEO_MAX_PLANES)[:VIDEO_MAX_PLANES]
    return ext_entry(EXT_VIDEO_META, _VIDEO_META.pack(meta.flags, meta.format, meta.width,
                                                      meta.height, meta.n_planes, *offsets,
                                                      *strides))


def ext_reference_timestamp(ref: ReferenceTimestamp) -> bytes:
    """The GstReferenceTimestampMeta entry."""
    return ext_entry(EXT_REFERENCE_TIMESTAMP,
                     _REF_TS.pack(_wire(ref.timestamp), _wire(ref.duration))
                     + ref.reference.encode("utf-8"))


def iter_extensions(ext: Any) -> Iterator[Tuple[int, memoryview]]:
    """(type, value view) of each entry of an extension area, unknown types included.

    Raises FramingError when an entry runs past the area's end."""
    view = memoryview(ext).cast("B")
    at = 0
    while len(view) - at >= EXT_ENTRY_HEADER_SIZE:
        ext_type, length = struct.unpack_from("<HH", view, at)
        start = at + EXT_ENTRY_HEADER_SIZE
        if length > len(view) - start:
            raise FramingError("a header extension entry runs past header_size")
        yield ext_type, view[start:start + length]
        at = start + ((length + EXT_ALIGN - 1) & ~(EXT_ALIGN - 1))


def parse_extensions(ext: Any) -> Extensions:
    """The known entries of an extension area (``MessageHeader.extensions``).

    Unknown types are skipped; raises FramingError naming the entry when one runs
    past the area or a known one is shorter than its fields. Never blocks."""
    negative_dts: Optional[int] = None
    clip: Optional[AudioClipping] = None
    video: Optional[VideoMeta] = None
    refs: List[ReferenceTimestamp] = []
    for ext_type, v in iter_extensions(ext):
        if ext_type == EXT_NEGATIVE_DTS:
            if len(v) < NEGATIVE_DTS_SIZE:
                raise FramingError("negative-DTS extension shorter than 8 bytes")
            negative_dts = _U64.unpack_from(v)[0]
        elif ext_type == EXT_AUDIO_CLIPPING:
            if len(v) < AUDIO_CLIPPING_SIZE:
                raise FramingError("audio-clipping extension shorter than 24 bytes")
            clip = AudioClipping(*_AUDIO_CLIPPING.unpack_from(v))
        elif ext_type == EXT_VIDEO_META:
            if len(v) < VIDEO_META_SIZE:
                raise FramingError("video-meta extension shorter than 72 bytes")
            f = _VIDEO_META.unpack_from(v)
            if f[4] > VIDEO_MAX_PLANES:
                raise FramingError("video-meta extension with more than 4 planes")
            video = VideoMeta(f[0], f[1], f[2], f[3], f[4], tuple(f[5:9]), tuple(f[9:13]))
        elif ext_type == EXT_REFERENCE_TIMESTAMP:
            if len(v) < REFERENCE_TIMESTAMP_FIXED_SIZE:
                raise FramingError("reference-timestamp extension shorter than 16 bytes")
            ts, dur = _REF_TS.unpack_from(v)
            refs.append(ReferenceTimestamp(
                bytes(v[REFERENCE_TIMESTAMP_FIXED_SIZE:]).decode("utf-8", "replace"),
                _opt(ts), _opt(dur)))
    return Extensions(negative_dts, clip, video, tuple(refs))


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
                  send_time_ns: int = 0, extensions: bytes = b"") -> bytes:
    """The message header: 60 bytes, then the ``extensions`` entries (from the
    ``ext_*`` functions) and zero padding up to the body's offset. A negative ``dts``
    (before running time 0) is written as dts none plus an ``EXT_NEGATIVE_DTS``
    entry. Either side; never blocks."""
    if dts is not None and dts < 0:
        extensions = ext_negative_dts(-dts) + bytes(extensions)
        dts = None
    header_size = HEADER_SIZE + len(extensions)
    if header_size > MAX_HEADER_SIZE:
        raise FramingError(f"header of {header_size} bytes exceeds {MAX_HEADER_SIZE}")
    fixed = _HEADER.pack(kind, header_size, flags, _wire(pts), _wire(dts), _wire(duration),
                         _wire(offset), _wire(offset_end), send_time_ns, 0)
    if not extensions:
        return fixed
    return fixed + bytes(extensions) + bytes(body_offset(header_size) - header_size)


def encode_message(kind: int, body: Any = b"", **fields: Any) -> bytes:
    """Header plus body as one payload (``fields`` as for :func:`encode_header`)."""
    return encode_header(kind, **fields) + bytes(body)


def encode_caps(caps: str, send_time_ns: int = 0) -> bytes:
    """A CAPS message: body = the caps string (UTF-8, no NUL)."""
    return encode_message(KIND_CAPS, caps.encode("utf-8"), send_time_ns=send_time_ns)


def encode_buffer(data: Any, pts: Optional[int] = None, dts: Optional[int] = None,
                  duration: Optional[int] = None, offset: Optional[int] = None,
                  offset_end: Optional[int] = None, flags: int = 0,
                  send_time_ns: int = 0, extensions: bytes = b"") -> bytes:
    """A BUFFER message carrying ``data``, its timestamps (``dts`` may be negative)
    and the ``extensions`` entries (metas)."""
    return encode_message(KIND_BUFFER, data, flags=flags, pts=pts, dts=dts, duration=duration,
                          offset=offset, offset_end=offset_end, send_time_ns=send_time_ns,
                          extensions=extensions)


def encode_eos(send_time_ns: int = 0) -> bytes:
    """An EOS message (empty body)."""
    return encode_message(KIND_EOS, send_time_ns=send_time_ns)


def decode_header(payload: Any, offset: int = 0, length: Optional[int] = None
                  ) -> Tuple[MessageHeader, int, int]:
    """Parses the message at ``payload[offset:offset + length]``.

    Returns (header, body start, body length) with the body start relative to
    ``payload``. Raises FramingError naming the problem when the payload is shorter
    than its header, declares a header smaller than 60 bytes or a body offset past
    its end, or has a malformed extension area. Never reads outside the given range. Either side; never blocks.
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
    ext = b""
    dts_value = _opt(dts)
    if header_size > HEADER_SIZE:
        ext = bytes(memoryview(payload).cast("B")[offset + HEADER_SIZE:offset + header_size])
        negative = parse_extensions(ext).negative_dts
        if dts_value is None and negative is not None:
            dts_value = -negative
    header = MessageHeader(kind, header_size, flags, _opt(pts), dts_value, _opt(duration),
                           _opt(off), _opt(off_end), send, ext)
    return header, offset + start, length - start


def decode_message(payload: Any) -> Tuple[MessageHeader, memoryview]:
    """(header, body view) of a whole payload; see :func:`decode_header`."""
    header, start, body_len = decode_header(payload)
    return header, memoryview(payload).cast("B")[start:start + body_len]
