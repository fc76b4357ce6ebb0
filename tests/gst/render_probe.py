#!/usr/bin/env python3
"""Receiver helper for the live-timing tests: runs a gst-launch style pipeline
whose synced sink is a `fakesink name=fs ... signal-handoffs=true` (alone or
inside fpsdisplaysink), records for every rendered buffer its PTS, flags and the
CLOCK_MONOTONIC time it was rendered, and prints one JSON object at the end:
{"buffers": [[pts_ns, monotonic_ns, discont], ...], "stats": {...}, "error": str|null,
 "eos": bool, "timing": [[due_ns, rendered_ns, waited_ns], ...], "latency": ns}.
"timing" is parallel to "buffers": the buffer's running time in the sink's segment
plus the pipeline latency (when a synced sink renders it), the pipeline's running
time when it was rendered, and how long it sat in the sink between arriving and
being rendered (the sink waiting for it to be due). Stops after --count rendered
buffers, at EOS or at an error (exit status 0, 0 and 3)."""
import argparse
import json
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
from gi.repository import GLib, Gst, GstBase  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=0, help="stop after this many renders (0: EOS)")
    ap.add_argument("--guard", type=float, default=120.0, help="give up after this many seconds")
    ap.add_argument("pipeline")
    a = ap.parse_args()
    Gst.init(None)
    pipe = Gst.parse_launch(a.pipeline)
    fs = pipe.get_by_name("fs")
    got = []
    timing = []
    segment = [None]
    arrived = {}
    loop = GLib.MainLoop()

    def on_event(_pad, info):
        event = info.get_event()
        if event.type == Gst.EventType.SEGMENT:
            segment[0] = event.parse_segment()
        return Gst.PadProbeReturn.OK

    def on_buffer(_pad, info):
        arrived[info.get_buffer().pts] = time.monotonic_ns()
        return Gst.PadProbeReturn.OK

    sinkpad = fs.get_static_pad("sink")
    sinkpad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)
    sinkpad.add_probe(Gst.PadProbeType.BUFFER, on_buffer)
    result = {"error": None, "eos": False}

    def handoff(_sink, buf, _pad):
        now = time.monotonic_ns()
        got.append([buf.pts, now, bool(buf.get_flags() & Gst.BufferFlags.DISCONT)])
        clock = pipe.get_clock()
        seg = segment[0]
        running = seg.to_running_time(Gst.Format.TIME, buf.pts) if seg is not None else -1
        valid = 0 <= running < Gst.CLOCK_TIME_NONE
        timing.append([running + GstBase.BaseSink.get_latency(_sink) if valid else -1,
                       clock.get_time() - pipe.get_base_time() if clock else -1,
                       now - arrived.pop(buf.pts, now)])
        if a.count and len(got) == a.count:
            GLib.idle_add(loop.quit)

    fs.connect("handoff", handoff)

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            result["error"] = f"{err.message} | {dbg}"
            loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            result["eos"] = True
            loop.quit()

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add(int(a.guard * 1000), loop.quit)
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    stats = fs.get_property("stats")
    result["stats"] = {"rendered": stats.get_value("rendered"),
                       "dropped": stats.get_value("dropped")}
    pipe.set_state(Gst.State.NULL)
    result["buffers"] = got
    result["timing"] = timing
    result["latency"] = GstBase.BaseSink.get_latency(fs)
    print(json.dumps(result), flush=True)
    return 3 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
