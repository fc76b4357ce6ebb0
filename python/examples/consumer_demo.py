#!/usr/bin/python3
"""Reads video frames from a shmring ring with the pure-Python FrameReader (no GStreamer).

    PYTHONPATH=python python3 python/examples/consumer_demo.py --name cam0 \\
        [--frames N] [--snapshot snapshot.png] [--timeout 10] [--latest]

Feed it from another process, e.g.
    gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,format=BGR,width=1920,height=1080 \\
        ! shmringsink shm-name=cam0

While frames arrive it prints one live line a second: frames/s, MB/s and the end-to-end
latency (now - the sender's send time; both CLOCK_MONOTONIC on this machine). At the end
(end of stream, --frames reached, or Ctrl-C) it prints a summary and writes one received
frame as a PNG (numpy + zlib; BGR, RGB, BGRx/RGBx/xRGB/xBGR, BGRA/RGBA/ARGB/ABGR, GRAY8,
GRAY16, I420/YV12, NV12/NV21, YUY2/UYVY).

Exit status: 0 when frames were received (and, with --frames N, all N of them),
1 otherwise (no producer within --timeout, the producer died, fewer frames than asked).
"""
from __future__ import annotations

import argparse
import os
import re
import struct
import sys
import time
import zlib
from typing import List, Optional, Tuple

import numpy as np

try:
    import shmring
except ImportError:  # run from a checkout without PYTHONPATH=python
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import shmring


# --------------------------------------------------------------------------- caps

def parse_caps(caps: str) -> Tuple[str, dict]:
    """'video/x-raw, format=(string)BGR, width=(int)4' -> ('video/x-raw', {...})."""
    parts = [p.strip() for p in re.split(r",(?![^(]*\))", caps or "") if p.strip()]
    if not parts:
        return "", {}
    fields = {}
    for part in parts[1:]:
        if "=" not in part:
            continue
        key, value = part.split("=", 1)
        value = re.sub(r"^\([a-z]+\)", "", value.strip()).strip().strip('"')
        fields[key.strip()] = value
    return parts[0], fields


def _round4(n: int) -> int:
    return (n + 3) & ~3


# --------------------------------------------------------------------------- PNG

def frame_to_image(data: bytes, fmt: str, width: int, height: int) -> np.ndarray:
    """Raw video/x-raw bytes (GStreamer's default strides) -> (h, w, 3) RGB or (h, w) gray."""
    buf = np.frombuffer(data, dtype=np.uint8)
    w, h = width, height

    def packed(bpp: int) -> np.ndarray:
        stride = _round4(w * bpp) if bpp in (1, 2, 3) else w * bpp
        rows = buf[: stride * h].reshape(h, stride)
        return rows[:, : w * bpp].reshape(h, w, bpp) if bpp > 1 else rows[:, :w]

    order4 = {"BGRx": (2, 1, 0), "BGRA": (2, 1, 0), "RGBx": (0, 1, 2), "RGBA": (0, 1, 2),
              "xRGB": (1, 2, 3), "ARGB": (1, 2, 3), "xBGR": (3, 2, 1), "ABGR": (3, 2, 1)}
    if fmt == "RGB":
        return packed(3)
    if fmt == "BGR":
        return packed(3)[:, :, ::-1]
    if fmt in order4:
        return packed(4)[:, :, list(order4[fmt])]
    if fmt == "GRAY8":
        return packed(1)
    if fmt in ("GRAY16_LE", "GRAY16_BE"):
        stride = _round4(w * 2)
        dt = "<u2" if fmt.endswith("LE") else ">u2"
        rows = np.frombuffer(data[: stride * h], dtype=dt).reshape(h, stride // 2)[:, :w]
        return (rows >> 8).astype(np.uint8)
    cw, ch = (w + 1) // 2, (h + 1) // 2
    if fmt in ("I420", "YV12"):
        ys, cs = _round4(w), _round4(cw)
        y = buf[: ys * h].reshape(h, ys)[:, :w]
        off1 = ys * ((h + 1) & ~1)
        off2 = off1 + cs * ch
        p1 = buf[off1: off1 + cs * ch].reshape(ch, cs)[:, :cw]
        p2 = buf[off2: off2 + cs * ch].reshape(ch, cs)[:, :cw]
        u, v = (p1, p2) if fmt == "I420" else (p2, p1)
        return _yuv_to_rgb(y, u, v)
    if fmt in ("NV12", "NV21"):
        ys = _round4(w)
        y = buf[: ys * h].reshape(h, ys)[:, :w]
        off = ys * ((h + 1) & ~1)
        uv = buf[off: off + ys * ch].reshape(ch, ys)[:, : cw * 2].reshape(ch, cw, 2)
        u, v = (uv[:, :, 0], uv[:, :, 1]) if fmt == "NV12" else (uv[:, :, 1], uv[:, :, 0])
        return _yuv_to_rgb(y, u, v)
    if fmt in ("YUY2", "UYVY"):
        px = packed(2).reshape(h, w * 2)
        if fmt == "YUY2":
            y, u, v = px[:, 0::2], px[:, 1::4], px[:, 3::4]
        else:
            y, u, v = px[:, 1::2], px[:, 0::4], px[:, 2::4]
        return _yuv_to_rgb(y, u, v)
    raise ValueError(f"no PNG conversion for format {fmt!r}")


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited range, chroma upsampled by repetition."""
    h, w = y.shape
    u = np.repeat(np.repeat(u, 2 if u.shape[0] < h else 1, axis=0), 2, axis=1)[:h, :w]
    v = np.repeat(np.repeat(v, 2 if v.shape[0] < h else 1, axis=0), 2, axis=1)[:h, :w]
    yf = (y.astype(np.float32) - 16.0) * 1.164
    uf = u.astype(np.float32) - 128.0
    vf = v.astype(np.float32) - 128.0
    rgb = np.stack([yf + 1.596 * vf, yf - 0.392 * uf - 0.813 * vf, yf + 2.017 * uf], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """(h, w, 3) uint8 RGB or (h, w) uint8 gray -> PNG file bytes (filter 0, zlib level 6)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    color_type = 2 if image.ndim == 3 else 0
    rows = image.reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type None for every scanline
    raw[:, 1:] = rows

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b""))


def write_snapshot(path: str, data: bytes, caps: str) -> str:
    media, fields = parse_caps(caps)
    if media != "video/x-raw":
        raise ValueError(f"cannot make a PNG of {media or 'unknown'} caps {caps!r}")
    fmt, w, h = fields.get("format", "?"), int(fields.get("width", 0)), int(fields.get("height", 0))
    png = encode_png(frame_to_image(data, fmt, w, h))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(png)
    os.replace(tmp, path)
    return f"{w}x{h} {fmt}, {len(png)} bytes"


# --------------------------------------------------------------------------- stats

def _percentile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def _fmt_ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f} ms"


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="cam0", help="ring name (shmringsink shm-name)")
    ap.add_argument("--frames", type=int, default=0,
                    help="stop after N frames (default 0: until end of stream)")
    ap.add_argument("--snapshot", default=None, metavar="PATH",
                    help="write one received frame to PATH as PNG")
    ap.add_argument("--snapshot-frame", type=int, default=None, metavar="K",
                    help="which frame to snapshot (default: the middle of --frames, else 30; "
                         "frame 0 if the stream ends earlier)")
    ap.add_argument("--timeout", type=non_negative_float, default=10.0,
                    help="seconds to wait for the producer, and for each frame (default 10)")
    ap.add_argument("--latest", action="store_true",
                    help="skip to the newest frame when behind (live viewing)")
    ap.add_argument("--quiet", action="store_true", help="no live line, summary only")
    ap.add_argument("--ready-file", metavar="PATH",
                    help="create PATH once started up and waiting for the ring (for scripts "
                         "that start the producer only then, so start-up time is not "
                         "counted as latency)")
    args = ap.parse_args(argv)

    snap_at = args.snapshot_frame
    if snap_at is None:
        snap_at = args.frames // 2 if args.frames else 30
    if args.ready_file:
        with open(args.ready_file, "w"):
            pass
    try:
        reader = shmring.FrameReader(args.name, timeout=args.timeout, latest=args.latest)
    except shmring.ShmRingError as exc:
        print(f"consumer_demo: cannot open ring {args.name!r}: {exc}", file=sys.stderr)
        return 1
    tty = sys.stdout.isatty()
    count = 0
    total_bytes = 0
    latencies: List[float] = []          # ms, whole run
    window_lat: List[float] = []         # ms, since the last live line
    caps = ""
    snapshot: Optional[Tuple[bytes, str, int]] = None
    first_t = last_line_t = last_t = None
    window_frames = window_bytes = 0
    error: Optional[str] = None
    ended = "end of stream"
    try:
        while True:
            frame = reader.read_frame(timeout=args.timeout)
            if frame is None:
                if not reader.at_end:
                    error = f"no frame within {args.timeout:g} s"
                    ended = "timeout"
                break
            now_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            now = now_ns / 1e9
            if first_t is None:
                first_t = last_line_t = now
            last_t = now
            sent = frame.send_time_ns  # sender's CLOCK_MONOTONIC, 0 = unknown
            nbytes = frame.data.nbytes
            count += 1
            total_bytes += nbytes
            window_frames += 1
            window_bytes += nbytes
            if sent:
                lat = (now_ns - sent) / 1e6
                latencies.append(lat)
                window_lat.append(lat)
            caps = frame.caps or caps
            if args.snapshot and (snapshot is None or count - 1 == snap_at):
                snapshot = (bytes(frame.data), caps, count - 1)
            del frame
            if not args.quiet and now - last_line_t >= 1.0:
                dt = now - last_line_t
                lat_text = (f"latency {sum(window_lat) / len(window_lat):.2f} ms avg, "
                            f"{max(window_lat):.2f} ms max" if window_lat else "latency n/a")
                line = (f"{count:6d} frames  {window_frames / dt:6.1f} frames/s  "
                        f"{window_bytes / dt / 1e6:8.1f} MB/s  {lat_text}")
                print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
                last_line_t, window_frames, window_bytes, window_lat = now, 0, 0, []
            if args.frames and count >= args.frames:
                ended = f"{args.frames} frames"
                break
    except KeyboardInterrupt:
        ended = "interrupted"
    except shmring.ShmRingError as exc:
        error = f"{type(exc).__name__}: {exc}"
        ended = "error"
    finally:
        close = getattr(reader, "close", None)
        if close:
            close()
    if tty and not args.quiet and count:
        print()
    # --- summary
    print(f"consumer_demo: ring {args.name!r}: {count} frames ({ended})")
    if caps:
        print(f"  caps      {caps}")
    if count > 1 and first_t is not None and last_t is not None and last_t > first_t:
        span = last_t - first_t  # first to last arrival: count - 1 intervals
        print(f"  rate      {(count - 1) / span:.1f} frames/s, "
              f"{total_bytes * (count - 1) / count / span / 1e6:.1f} MB/s over {span:.2f} s "
              f"({total_bytes / 1e6:.1f} MB in total)")
    if latencies:
        s = sorted(latencies)
        print(f"  latency   avg {_fmt_ms(sum(s) / len(s))}, p50 {_fmt_ms(_percentile(s, 0.5))}, "
              f"p99 {_fmt_ms(_percentile(s, 0.99))}, max {_fmt_ms(s[-1])} "
              f"(send time -> received, {len(s)} frames)")
    elif count:
        print("  latency   n/a (the frames carry no send time)")
    if args.latest:
        print(f"  skipped   {reader.skipped} frames to catch up (--latest)")
    status = 0
    if snapshot is not None and args.snapshot:
        try:
            what = write_snapshot(args.snapshot, snapshot[0], snapshot[1])
            print(f"  snapshot  {args.snapshot} (frame {snapshot[2]}, {what})")
        except (ValueError, OSError) as exc:
            print(f"consumer_demo: snapshot not written: {exc}", file=sys.stderr)
            status = 1
    if error:
        print(f"consumer_demo: {error}", file=sys.stderr)
        status = 1
    if count == 0:
        print("consumer_demo: no frames received", file=sys.stderr)
        status = 1
    elif args.frames and count < args.frames and ended != "interrupted":
        print(f"consumer_demo: expected {args.frames} frames, got {count}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the main loop (e.g. waiting for the ring)
        sys.exit(130)
