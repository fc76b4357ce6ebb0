#!/usr/bin/env python3
"""Receiver helper for the network-recipe test: runs
`shmringsrc shm-name=NAME ! appsink sync=true` (a live, clock-synced receiver) until
--count buffers arrived, and prints one JSON object:
{"caps": str, "frames": [[pts_ns, running_time_ns, sha1, discont], ...],
 "error": str|null}. Exit status 0, or 3 after an error or a timeout of --guard s."""
import argparse
import hashlib
import json
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--guard", type=float, default=120.0)
    ap.add_argument("name")
    a = ap.parse_args()
    Gst.init(None)
    pipe = Gst.parse_launch(f"shmringsrc shm-name={a.name} ! appsink name=out sync=true")
    sink = pipe.get_by_name("out")
    pipe.set_state(Gst.State.PLAYING)
    result = {"caps": None, "frames": [], "error": None}
    while len(result["frames"]) < a.count:
        sample = sink.emit("try-pull-sample", int(a.guard * Gst.SECOND))
        if sample is None:
            msg = pipe.get_bus().pop_filtered(Gst.MessageType.ERROR)
            result["error"] = msg.parse_error()[0].message if msg else "no sample in time"
            break
        buf = sample.get_buffer()
        if result["caps"] is None:
            result["caps"] = sample.get_caps().to_string()
        ok, info = buf.map(Gst.MapFlags.READ)
        digest = hashlib.sha1(bytes(info.data)).hexdigest()
        buf.unmap(info)
        rt = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
        result["frames"].append([buf.pts, rt, digest,
                                 bool(buf.get_flags() & Gst.BufferFlags.DISCONT)])
    pipe.set_state(Gst.State.NULL)
    print(json.dumps(result))
    return 3 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
