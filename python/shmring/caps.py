"""Caps strings and raw-video memory layouts (as GStreamer's GstVideoInfo computes them).

Only what a reader needs to shape frames: the media type and fields of the first
structure of a caps string (``gst_caps_to_string`` output), and for ``video/x-raw``
the plane offsets, strides and sizes of the common packed, gray and planar YUV
formats. Rows are 4-byte aligned, as in GStreamer's default video info.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

Value = Union[str, int, float, bool, Fraction]

# format -> (channels per pixel, bytes per sample, numpy dtype)
_PACKED = {
    "RGB": (3, 1, "u1"), "BGR": (3, 1, "u1"),
    "RGBx": (4, 1, "u1"), "BGRx": (4, 1, "u1"), "xRGB": (4, 1, "u1"), "xBGR": (4, 1, "u1"),
    "RGBA": (4, 1, "u1"), "BGRA": (4, 1, "u1"), "ARGB": (4, 1, "u1"), "ABGR": (4, 1, "u1"),
}
_GRAY = {"GRAY8": (1, "u1"), "GRAY16_LE": (2, "<u2"), "GRAY16_BE": (2, ">u2")}
_PLANAR_420 = ("I420", "YV12")
_SEMI_PLANAR_420 = ("NV12", "NV21")

SUPPORTED_FORMATS = tuple(_PACKED) + tuple(_GRAY) + _PLANAR_420 + _SEMI_PLANAR_420


def _split_top(text: str, sep: str) -> List[str]:
    """Splits at ``sep`` outside quotes and brackets."""
    parts: List[str] = []
    current: List[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{<":
            depth += 1
        elif not quoted and ch in ")]}>":
            depth -= 1
        elif not quoted and depth == 0 and ch == sep:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _parse_value(raw: str) -> Value:
    raw = raw.strip()
    type_name = ""
    if raw.startswith("("):
        close = raw.find(")")
        if close > 0:
            type_name, raw = raw[1:close].strip(), raw[close + 1:].strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if type_name in ("int", "i", "uint", "gint", "guint", "gint64", "guint64"):
        try:
            return int(raw, 0)
        except ValueError:
            return raw
    if type_name in ("fraction", "GstFraction"):
        try:
            return Fraction(raw.replace(" ", ""))
        except (ValueError, ZeroDivisionError):
            return raw
    if type_name in ("double", "float", "d", "f"):
        try:
            return float(raw)
        except ValueError:
            return raw
    if type_name in ("boolean", "bool", "b"):
        return raw.lower() in ("true", "yes", "1", "t")
    if not type_name:
        return _deduce(raw)
    return raw


def _deduce(raw: str) -> Value:
    """An untyped value as GStreamer deduces it (gst_structure_from_string tries int,
    double, fraction, boolean, then string): ``640`` is an int, ``30/1`` a fraction."""
    try:
        return int(raw, 0)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        pass
    if "/" in raw:
        try:
            return Fraction(raw.replace(" ", ""))
        except (ValueError, ZeroDivisionError):
            pass
    if raw.lower() in ("true", "yes", "t"):
        return True
    if raw.lower() in ("false", "no", "f"):
        return False
    return raw


def parse_caps(caps: str) -> Tuple[str, Dict[str, Value]]:
    """(media type, fields) of the first structure of a caps string.

    ``"video/x-raw, format=(string)GRAY8, width=(int)4"`` ->
    ``("video/x-raw", {"format": "GRAY8", "width": 4})``; values without a type
    annotation (``width=4``) are deduced as GStreamer does (int, double, fraction,
    boolean, string). Caps features such as
    ``(memory:SystemMemory)`` are dropped from the media type.
    """
    first = _split_top(caps.strip(), ";")[0]
    items = _split_top(first, ",")
    media = items[0].strip()
    if "(" in media:
        media = media[:media.index("(")].strip()
    fields: Dict[str, Value] = {}
    for item in items[1:]:
        if "=" not in item:
            continue
        key, raw = item.split("=", 1)
        fields[key.strip()] = _parse_value(raw)
    return media, fields


def _ru4(v: int) -> int:
    return (v + 3) & ~3


def _ru2(v: int) -> int:
    return (v + 1) & ~1


class Plane(NamedTuple):
    """One plane: byte offset in the frame, row stride, numpy shape and dtype."""

    offset: int
    stride: int
    shape: Tuple[int, ...]
    dtype: str


class VideoLayout(NamedTuple):
    """Memory layout of one raw video frame."""

    format: str
    width: int
    height: int
    planes: Tuple[Plane, ...]
    size: int  # bytes of one frame

    @property
    def packed(self) -> bool:
        """Whether the frame is one plane (a single image array)."""
        return len(self.planes) == 1


def video_layout(format_name: str, width: int, height: int) -> Optional[VideoLayout]:
    """The GstVideoInfo-compatible layout of a frame, or None for an unknown format."""
    if width <= 0 or height <= 0:
        return None
    if format_name in _PACKED:
        channels, _, dtype = _PACKED[format_name]
        stride = _ru4(width * channels)
        plane = Plane(0, stride, (height, width, channels), dtype)
        return VideoLayout(format_name, width, height, (plane,), stride * height)
    if format_name in _GRAY:
        sample, dtype = _GRAY[format_name]
        stride = _ru4(width * sample)
        plane = Plane(0, stride, (height, width), dtype)
        return VideoLayout(format_name, width, height, (plane,), stride * height)
    cw, ch = _ru2(width) // 2, _ru2(height) // 2
    if format_name in _PLANAR_420:
        y_stride = _ru4(width)
        c_stride = _ru4(_ru2(width) // 2)
        o1 = y_stride * _ru2(height)
        o2 = o1 + c_stride * ch
        planes: Tuple[Plane, ...] = (Plane(0, y_stride, (height, width), "u1"),
                                     Plane(o1, c_stride, (ch, cw), "u1"),
                                     Plane(o2, c_stride, (ch, cw), "u1"))
        return VideoLayout(format_name, width, height, planes, o2 + c_stride * ch)
    if format_name in _SEMI_PLANAR_420:
        stride = _ru4(width)
        o1 = stride * _ru2(height)
        planes = (Plane(0, stride, (height, width), "u1"),
                  Plane(o1, stride, (ch, cw, 2), "u1"))
        return VideoLayout(format_name, width, height, planes, o1 + stride * ch)
    return None


def _dtype_size(dtype: str) -> int:
    return int(dtype[-1])


def layout_with_strides(layout: VideoLayout, offsets: Tuple[int, ...],
                        strides: Tuple[int, ...]) -> VideoLayout:
    """``layout`` with its planes at ``offsets`` (bytes from the frame's start) and
    rows ``strides`` bytes apart, as a GstVideoMeta describes a padded frame; ``size``
    is the bytes the planes span. One offset and stride per plane; raises ValueError
    for a stride that is not positive or shorter than a row. Never blocks."""
    if len(offsets) < len(layout.planes) or len(strides) < len(layout.planes):
        raise ValueError(f"{len(layout.planes)} planes need as many offsets and strides")
    planes = []
    size = 0
    for plane, offset, stride in zip(layout.planes, offsets, strides):
        row = _dtype_size(plane.dtype)
        for extent in plane.shape[1:]:
            row *= extent
        if stride < row or offset < 0:
            raise ValueError(f"plane stride {stride} (offset {offset}) cannot hold rows of "
                             f"{row} bytes")
        planes.append(Plane(offset, stride, plane.shape, plane.dtype))
        size = max(size, offset + stride * (plane.shape[0] - 1) + row)
    return VideoLayout(layout.format, layout.width, layout.height, tuple(planes), size)


def layout_from_caps(caps: str) -> Optional[VideoLayout]:
    """The frame layout for ``video/x-raw`` caps of a supported format, else None."""
    media, fields = parse_caps(caps)
    if media != "video/x-raw":
        return None
    fmt, width, height = fields.get("format"), fields.get("width"), fields.get("height")
    if not isinstance(fmt, str) or not isinstance(width, int) or not isinstance(height, int):
        return None
    return video_layout(fmt, width, height)
