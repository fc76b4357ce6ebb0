#!/usr/bin/python3
"""A plain Python ShmProducer writing raw video frames that a GStreamer pipeline displays.

    PYTHONPATH=python python3 python/examples/py_producer_to_gst.py --name pycam

The ring is profile 0 (opaque messages: one message = one frame, no in-band caps), so
the receiving pipeline says what the bytes are with shmringsrc's ``caps`` property; the
script prints that pipeline, e.g.

    GST_PLUGIN_PATH=build/gst-plugin gst-launch-1.0 shmringsrc shm-name=pycam \\
        caps="video/x-raw,format=BGR,width=640,height=480,framerate=30/1" \\
        is-live=true do-timestamp=true ! videoconvert ! autovideosink

Frames are a moving colour pattern (frame k is a deterministic function of k), laid out
with GStreamer's default strides (rows of 1- and 3-byte formats padded to 4 bytes), and
written zero-copy with ``reserve()``. ``--print-checksums`` prints each frame's SHA-1 so
that a ``shmringsrc ... ! checksumsink`` receiver can be checked against it.

By default the producer waits for a consumer to attach before writing (so a receiver
started a little later still sees frame 0), paces at --fps, and ends the stream with
``close()``: shmringsrc then sends EOS and gst-launch exits 0.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from typing import Optional

import numpy as np

try:
    import shmring
except ImportError:  # run from a checkout without PYTHONPATH=python
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import shmring

# format -> bytes per pixel (packed formats GStreamer's videoconvert understands)
FORMATS = {"GRAY8": 1, "RGB": 3, "BGR": 3, "BGRx": 4, "RGBx": 4, "BGRA": 4, "RGBA": 4}


def stride_of(fmt: str, width: int) -> int:
    """GStreamer's default row stride for a packed format."""
    bpp = FORMATS[fmt]
    row = width * bpp
    return row if bpp == 4 else (row + 3) & ~3


def frame_size(fmt: str, width: int, height: int) -> int:
    return stride_of(fmt, width) * height


class PatternMaker:
    """Frame k: diagonal colour bands scrolling 4 px per frame, a frame counter bar."""

    def __init__(self, fmt: str, width: int, height: int) -> None:
        self.fmt, self.width, self.height = fmt, width, height
        self.bpp = FORMATS[fmt]
        self.stride = stride_of(fmt, width)
        y, x = np.mgrid[0:height, 0:width]
        self._diag = (x + y).astype(np.int64)
        self._x = x

    def fill(self, out: np.ndarray, k: int) -> None:
        """Writes frame ``k`` into ``out`` (a flat uint8 array of frame_size bytes)."""
        h, w, bpp = self.height, self.width, self.bpp
        rows = out.reshape(h, self.stride)
        rows[:, w * bpp:] = 0  # stride padding
        px = rows[:, : w * bpp].reshape(h, w, bpp)
        t = self._diag + 4 * k
        if bpp == 1:
            px[:, :, 0] = (t & 0xFF).astype(np.uint8)
        else:
            px[:, :, 0] = ((t * 1) & 0xFF).astype(np.uint8)
            px[:, :, 1] = ((t * 2 + 85) & 0xFF).astype(np.uint8)
            px[:, :, 2] = ((255 - t) & 0xFF).astype(np.uint8)
            if bpp == 4:
                px[:, :, 3] = 255
        bar = min(h, 8)  # a bar whose length counts frames
        px[:bar, :, :] = 0
        px[:bar, : (k * 4) % (w + 1), :] = 255

    def frame(self, k: int) -> bytes:
        out = np.empty(self.stride * self.height, dtype=np.uint8)
        self.fill(out, k)
        return out.tobytes()


def caps_string(fmt: str, width: int, height: int, fps: float) -> str:
    rate = f"{int(round(fps))}/1" if fps > 0 else "0/1"
    return f"video/x-raw,format={fmt},width={width},height={height},framerate={rate}"


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="pycam", help="ring name (shmringsrc shm-name)")
    ap.add_argument("--frames", type=int, default=300, help="frames to send (default 300)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--format", default="BGR", choices=sorted(FORMATS))
    ap.add_argument("--fps", type=float, default=30.0, help="pace; 0 = as fast as possible")
    ap.add_argument("--capacity", type=int, default=0,
                    help="ring data-area bytes (default: room for 4 frames)")
    ap.add_argument("--wait-consumer", type=float, default=30.0, metavar="S",
                    help="wait up to S seconds for a consumer before writing (0 = don't)")
    ap.add_argument("--print-checksums", action="store_true",
                    help="print 'sha1 <hex>' for every frame sent")
    args = ap.parse_args(argv)
    if args.width <= 0 or args.height <= 0 or args.frames < 0:
        ap.error("width, height must be > 0 and frames >= 0")

    size = frame_size(args.format, args.width, args.height)
    capacity = args.capacity or 4 * (size + 64)
    caps = caps_string(args.format, args.width, args.height, args.fps)
    # docker/systemd stop (SIGTERM) then ends the stream and removes the ring like Ctrl-C
    shmring.exit_on_sigterm()
    try:
        producer = shmring.ShmProducer(args.name, capacity)
    except (shmring.ShmRingError, ValueError, OSError) as exc:
        print(f"py_producer_to_gst: cannot create ring {args.name!r}: {exc}", file=sys.stderr)
        return 1
    pattern = PatternMaker(args.format, args.width, args.height)
    with producer:
        if size > producer.max_message_size:
            print(f"py_producer_to_gst: a {size}-byte frame does not fit a "
                  f"{producer.capacity}-byte ring", file=sys.stderr)
            return 1
        print(f"py_producer_to_gst: ring {args.name!r}, capacity {producer.capacity}, "
              f"{args.frames} frames of {size} bytes ({caps})", file=sys.stderr)
        print("receive with:\n  gst-launch-1.0 shmringsrc shm-name=" + args.name
              + f' caps="{caps}" is-live=true do-timestamp=true ! videoconvert ! autovideosink',
              file=sys.stderr, flush=True)
        if args.wait_consumer > 0:
            deadline = time.monotonic() + args.wait_consumer
            while not producer.consumer_attached():
                if time.monotonic() >= deadline:
                    print(f"py_producer_to_gst: no consumer attached within "
                          f"{args.wait_consumer:g} s", file=sys.stderr)
                    return 1
                time.sleep(0.01)
        start = time.monotonic()
        for k in range(args.frames):
            if args.fps > 0:
                delay = start + k / args.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                with producer.reserve(size, timeout=10.0) as view:
                    out = np.frombuffer(view, dtype=np.uint8)
                    pattern.fill(out, k)
                    digest = hashlib.sha1(out).hexdigest() if args.print_checksums else None
                    del out
            except shmring.ShmRingError as exc:
                print(f"py_producer_to_gst: frame {k}: {exc} (is the consumer reading?)",
                      file=sys.stderr)
                return 1
            if digest:
                print(f"sha1 {digest}", flush=True)
        elapsed = time.monotonic() - start
        print(f"py_producer_to_gst: sent {args.frames} frames in {elapsed:.2f} s, "
              "closing the stream", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the main loop (e.g. waiting for the ring)
        sys.exit(130)
