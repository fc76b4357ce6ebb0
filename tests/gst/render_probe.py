#!/usr/bin/env python3
"""Receiver helper for the live-timing tests: runs a gst-launch style pipeline
whose synced sink is a `fakesink name=fs ... signal-handoffs=true` (alone or
inside fpsdisplaysink), records for every rendered buffer its PTS, flags and the
CLOCK_MONOTONIC time it was rendered, and prints one JSON object at the end:
{"buffers": [[pts_ns, monotonic_ns, discont], ...], "stats": {...}, "error": str|null,
 "eos": bool}. Stops after --count rendered buffers, at EOS or at an error
(exit status 0, 0 and 3)."""
import argparse
import json
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


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
    loop = GLib.MainLoop()
    result = {"error": None, "eos": False}

    def handoff(_sink, buf, _pad):
        got.append([buf.pts, time.monotonic_ns(),
                    bool(buf.get_flags() & Gst.BufferFlags.DISCONT)])
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
    print(json.dumps(result), flush=True)
    return 3 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
