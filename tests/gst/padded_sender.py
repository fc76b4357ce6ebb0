#!/usr/bin/env python3
"""Sender helper for test_sender_streams: pushes 10 GRAY8 64x4 frames whose rows
are padded to a stride of 80 bytes (padding bytes 0xEE), each with a GstVideoMeta
saying so, through appsrc into shmringsink shm-name=NAME; prints the SHA-1 of each
frame without its padding (what a reader honouring the meta sees), one a line."""
import hashlib
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

W, H, STRIDE = 64, 4, 80


def main():
    Gst.init(None)
    pipe = Gst.parse_launch(
        f"appsrc name=src format=time caps=video/x-raw,format=GRAY8,width={W},height={H},"
        f"framerate=30/1 ! shmringsink shm-name={sys.argv[1]}")
    src = pipe.get_by_name("src")
    pipe.set_state(Gst.State.PLAYING)
    sums = []
    for n in range(10):
        rows = [bytes((n * 7 + y * 13 + x) % 251 for x in range(W)) for y in range(H)]
        data = b"".join(r + b"\xee" * (STRIDE - W) for r in rows)
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = n * Gst.SECOND // 30
        buf.duration = Gst.SECOND // 30
        GstVideo.buffer_add_video_meta_full(buf, GstVideo.VideoFrameFlags.NONE,
                                            GstVideo.VideoFormat.GRAY8, W, H, 1,
                                            [0, 0, 0, 0], [STRIDE, 0, 0, 0])
        assert src.emit("push-buffer", buf) == Gst.FlowReturn.OK
        sums.append(hashlib.sha1(b"".join(rows)).hexdigest())
    src.emit("end-of-stream")
    msg = pipe.get_bus().timed_pop_filtered(120 * Gst.SECOND,
                                            Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if msg is None or msg.type != Gst.MessageType.EOS:
        print(msg.parse_error() if msg else "no EOS", file=sys.stderr)
        return 1
    print("\n".join(sums))
    return 0


if __name__ == "__main__":
    sys.exit(main())
