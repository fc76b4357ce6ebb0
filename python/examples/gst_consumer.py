#!/usr/bin/env python3
"""Read video from a shmring ring inside a gst-python pipeline, as numpy arrays.

    shmringsrc shm-name=NAME ! videoconvert ! video/x-raw,format=BGR ! appsink

Start a sender in another shell, before or after this script, e.g.

    gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,width=1280,height=720 \\
        ! shmringsink shm-name=cam0
    GST_PLUGIN_PATH=build/gst-plugin python3 python/examples/gst_consumer.py cam0

The receiving side types no caps: they travel in the ring. Prints the frame rate
once a second; ends when the sender ends its stream (EOS). Use frames() from
your own code to get (pts, array) pairs.
"""
import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

import numpy as np  # noqa: E402

CHANNELS = {"BGR": 3, "RGB": 3, "BGRx": 4, "BGRA": 4, "RGBx": 4, "RGBA": 4, "GRAY8": 1}


def frames(name, fmt="BGR", timeout_ns=0, latest=False, is_live=False):
    """Yields (pts_ns or None, HxWxC uint8 array) for every frame of ring `name`
    until the sender's end of stream. Each array is this caller's own copy.
    Raises RuntimeError with GStreamer's message on an error (no sender within
    `timeout_ns` when it is non-zero, sender died, ...)."""
    if fmt not in CHANNELS:
        raise ValueError(f"format {fmt} is not one of {', '.join(CHANNELS)}")
    Gst.init(None)
    pipeline = Gst.parse_launch(
        "shmringsrc name=src ! videoconvert ! "
        f"video/x-raw,format={fmt} ! appsink name=sink sync=false max-buffers=8")
    src = pipeline.get_by_name("src")
    src.set_property("shm-name", name)
    src.set_property("timeout", timeout_ns)
    src.set_property("latest", latest)
    src.set_property("is-live", is_live)
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while True:
            sample = sink.emit("try-pull-sample", 100 * Gst.MSECOND)
            if sample is None:
                msg = bus.pop_filtered(Gst.MessageType.ERROR)
                if msg is not None:
                    err, debug = msg.parse_error()
                    raise RuntimeError(f"{err.message} ({debug})")
                if sink.get_property("eos"):
                    return
                continue
            yield to_array(sample, fmt)
    finally:
        pipeline.set_state(Gst.State.NULL)


def to_array(sample, fmt):
    """(pts, HxWxC copy) of a video sample, honouring the row stride."""
    info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
    buf = sample.get_buffer()
    ok, mapping = buf.map(Gst.MapFlags.READ)
    if not ok:
        raise RuntimeError("cannot map buffer")
    try:
        c = CHANNELS[fmt]
        view = np.ndarray((info.height, info.width, c), dtype=np.uint8, buffer=mapping.data,
                          offset=info.offset[0], strides=(info.stride[0], c, 1))
        array = view.copy()
    finally:
        buf.unmap(mapping)
    pts = buf.pts if buf.pts != Gst.CLOCK_TIME_NONE else None
    return pts, array


def non_negative_float(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="ring name, as the sender's shmringsink shm-name (e.g. cam0)")
    ap.add_argument("--format", default="BGR", choices=sorted(CHANNELS),
                    help="pixel format of the arrays (default BGR, as OpenCV uses)")
    ap.add_argument("--timeout", type=non_negative_float, default=0,
                    help="seconds to wait for a sender (default 0 = forever)")
    ap.add_argument("--latest", action="store_true",
                    help="skip to the newest frame when behind (live viewing)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many frames")
    args = ap.parse_args()

    n, window_start, window_frames = 0, time.monotonic(), 0
    try:
        for pts, array in frames(args.name, args.format, int(args.timeout * 1e9), args.latest):
            n += 1
            window_frames += 1
            now = time.monotonic()
            if now - window_start >= 1.0:
                fps = window_frames / (now - window_start)
                ts = f"{pts / 1e9:.3f} s" if pts is not None else "none"
                print(f"{fps:7.1f} fps  frame {n}  {array.shape[1]}x{array.shape[0]}  pts {ts}",
                      flush=True)
                window_start, window_frames = now, 0
            if args.count and n >= args.count:
                break
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    print(f"{n} frames")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the main loop (e.g. waiting for the ring)
        sys.exit(130)
