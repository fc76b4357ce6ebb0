#!/usr/bin/env python3
"""Receiver helper for the zero-copy receiving tests: runs
`shmringsrc shm-name=NAME [PROPS] ! fakesink` until end of stream and looks, with a pad
probe on the fakesink's sink pad, at where each pushed buffer's memory lives: inside this
process's mapping of the ring (/dev/shm/NAME in /proc/self/maps) or elsewhere (a copy).
Prints one JSON object: {"buffers": n, "in_ring": n, "readonly": n, "error": str|null}.
Exit status 0, or 3 after an error or when nothing arrived within --guard s."""
import argparse
import json
import sys

import gi
import numpy as np

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def ring_mappings(name):
    """[start, end) of every mapping of /dev/shm/NAME in this process."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip().split(" (deleted)")[0] == f"/dev/shm/{name}":
                lo, hi = fields[0].split("-")
                out.append((int(lo, 16), int(hi, 16)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guard", type=float, default=120.0)
    ap.add_argument("--props", default="")
    ap.add_argument("name")
    a = ap.parse_args()
    Gst.init(None)
    pipe = Gst.parse_launch(f"shmringsrc shm-name={a.name} {a.props} ! fakesink name=out")
    result = {"buffers": 0, "in_ring": 0, "readonly": 0, "error": None}

    def probe(_pad, info):
        buf = info.get_buffer()
        ok, m = buf.map(Gst.MapFlags.READ)
        if not ok:
            result["error"] = "buffer not mappable"
            return Gst.PadProbeReturn.OK
        try:
            start = np.frombuffer(m.data, dtype=np.uint8).__array_interface__["data"][0]
            size = m.size
        finally:
            buf.unmap(m)
        result["buffers"] += 1
        if any(lo <= start and start + size <= hi for lo, hi in ring_mappings(a.name)):
            result["in_ring"] += 1
        if buf.n_memory() == 1 and buf.peek_memory(0).mini_object.flags & Gst.MemoryFlags.READONLY:
            result["readonly"] += 1
        return Gst.PadProbeReturn.OK

    pipe.get_by_name("out").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
    loop = GLib.MainLoop()

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            result["error"] = msg.parse_error()[0].message
            loop.quit()

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)

    def guard():
        if result["error"] is None:
            result["error"] = f"no end of stream within {a.guard} s"
        loop.quit()
        return False

    GLib.timeout_add(int(a.guard * 1000), guard)
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    print(json.dumps(result))
    return 3 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
