#!/usr/bin/env python3
"""Sender helper for the pool tests of test_zero_copy_pipelines.py. Runs
`videotestsrc pattern=ball ! capsfilter name=f caps=CAPS ! SINK` in this process
(SINK: shmringsink ... or checksumsink, for the reference of the same stream) until
EOS, with one event in mid-stream, when the --at'th buffer (1-based) reaches the sink:
  --seek N: a flushing seek to frame N (endless before it, the stream then ends at
      --frames). The buffer that triggered it is held at the
      sink's pad until the flush reached the sink, then dropped (freed unsent, as a
      flush would), never rendered:
      the sink renders frames 0 .. at-2, then N .. --frames-1, the same every run.
  --recaps CAPS: the capsfilter's caps become CAPS. Upstream renegotiates caps and
      allocation before its next buffer, so frames at-1 and later have the new caps.
Prints one JSON line last: {"stats": {"in-place": n, "copied": n} (shmringsink only),
"stats_at_event": the same when the event happened, "error": str|null}.
Exit status 0, or 3 after an error."""
import argparse
import json
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

FPS = 30


def at_frame(n):
    """The time of frame n, as videotestsrc stamps it (rounded down)."""
    return n * Gst.SECOND // FPS


def stats_of(sink):
    if sink.find_property("stats") is None:
        return None
    s = sink.get_property("stats")
    return {"in-place": s.get_value("in-place"), "copied": s.get_value("copied")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--caps", required=True)
    ap.add_argument("--sink", required=True, help="the sink element, named or not")
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--at", type=int, required=True)
    ev = ap.add_mutually_exclusive_group(required=True)
    ev.add_argument("--seek", type=int)
    ev.add_argument("--recaps")
    a = ap.parse_args()
    Gst.init(None)
    num = "" if a.seek is not None else f"num-buffers={a.frames} "
    pipe = Gst.parse_launch(f"videotestsrc {num}pattern=ball ! capsfilter name=f "
                            f"caps={a.caps} ! {a.sink} name=out")
    sink = pipe.get_by_name("out")
    capsfilter = pipe.get_by_name("f")
    result = {"stats": None, "stats_at_event": None, "error": None}
    flushing = threading.Event()
    seek_now = threading.Event()
    count = [0]

    def on_event(pad, info):
        if info.get_event().type == Gst.EventType.FLUSH_START:
            flushing.set()
        return Gst.PadProbeReturn.OK

    def on_buffer(pad, info):
        count[0] += 1
        if count[0] != a.at:
            return Gst.PadProbeReturn.OK
        result["stats_at_event"] = stats_of(sink)
        if a.recaps is not None:
            capsfilter.set_property("caps", Gst.Caps.from_string(a.recaps))
            return Gst.PadProbeReturn.OK
        seek_now.set()
        # Held until the main thread's seek flushes, then dropped here: whether the
        # sink would still take it depends on how far its own flush got by then.
        flushing.wait()
        return Gst.PadProbeReturn.DROP

    pad = sink.get_static_pad("sink")
    pad.add_probe(Gst.PadProbeType.BUFFER, on_buffer)
    pad.add_probe(Gst.PadProbeType.EVENT_FLUSH, on_event)
    bus = pipe.get_bus()
    pipe.set_state(Gst.State.PLAYING)
    if a.seek is not None:
        # Endless until the seek, whose stop position ends the stream at --frames.
        seek_now.wait()
        pipe.seek(1.0, Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE,
                  Gst.SeekType.SET, at_frame(a.seek), Gst.SeekType.SET, at_frame(a.frames))
    msg = bus.timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if msg.type == Gst.MessageType.ERROR:
        result["error"] = msg.parse_error()[0].message
    result["stats"] = stats_of(sink)
    pipe.set_state(Gst.State.NULL)
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
    return 3 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
