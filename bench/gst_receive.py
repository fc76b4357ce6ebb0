#!/usr/bin/python3
"""Receiver process for bench/bench.py's GStreamer rows (a benchmark helper, not a test).

    gst_receive.py 'shmringsrc shm-name=X' COUNT [WARMUP]

Runs ``SOURCE ! fakesink`` and counts buffers at the fakesink's pad until COUNT buffers,
end of stream, an error (shmsrc ends with an error when its sender goes away) or 2 s
without a buffer after the first ("stalled": true; also when no buffer came within the
120 s guard). Prints one JSON line: the buffers seen, the frames/s from buffer WARMUP to the last one (so the
backlog the sender wrote before this process attached is not counted) and this process's
CPU time per frame over the same buffers (CLOCK_PROCESS_CPUTIME_ID: every thread).
"""
from __future__ import annotations

import json
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def main() -> int:
    source, count = sys.argv[1], int(sys.argv[2])
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    Gst.init(None)
    pipeline = Gst.parse_launch(f"{source} ! fakesink name=sink sync=false async=false")
    times = []
    cpu = []
    loop = GLib.MainLoop()
    clock = time.perf_counter

    def probe(_pad, _info):
        times.append(clock())
        cpu.append(time.process_time())
        if len(times) == count:
            GLib.idle_add(loop.quit)
        return Gst.PadProbeReturn.OK

    pipeline.get_by_name("sink").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
    error = []

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            error.append(msg.parse_error()[0].message)
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    stall = []

    def guard() -> bool:  # never hang a benchmark run
        stall.append(True)
        loop.quit()
        return False

    GLib.timeout_add_seconds(120, guard)

    def stalled() -> bool:
        # A receiver that joined late (a second shmsrc client) may miss buffers and never
        # count COUNT, and shmsrc may not see its sender go: 2 s without a buffer ends it.
        if times and clock() - times[-1] > 2.0:
            stall.append(True)
            loop.quit()
            return False
        return True

    GLib.timeout_add(100, stalled)
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    n = len(times)
    fps = (n - 1 - warmup) / (times[-1] - times[warmup]) if n > warmup + 1 else float("nan")
    cpu_ms = (1e3 * (cpu[-1] - cpu[warmup]) / (n - 1 - warmup) if n > warmup + 1
              else float("nan"))
    print(json.dumps({"buffers": n, "fps": fps, "cpu_ms": cpu_ms,
                      "error": error[0] if error else None,
                      "stalled": bool(stall) and n < count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
