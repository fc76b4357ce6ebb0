#!/usr/bin/env python3
"""Sender helper for test_sender_streams: runs
`videotestsrc num-buffers=100 ! identity error-after=50 ! shmringsink shm-name=NAME`
and, like an application that lets its pipeline drain after an error, keeps it
running after the ERROR message until the sink has handled the EOS the source
pushes after its flow error (the EOS message), then stops. Exit status 1 when an
error was posted (it will be), 2 when no EOS message followed it within 60 s."""
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def main():
    Gst.init(None)
    pipe = Gst.parse_launch("videotestsrc num-buffers=100 ! video/x-raw,width=64,height=48 ! "
                            f"identity error-after=50 ! shmringsink shm-name={sys.argv[1]}")
    bus = pipe.get_bus()
    pipe.set_state(Gst.State.PLAYING)
    errored = False
    rc = 2
    while True:
        msg = bus.timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.ERROR | Gst.MessageType.EOS)
        if msg is None:
            break
        if msg.type == Gst.MessageType.ERROR:
            errored = True
            print("error:", msg.parse_error()[0].message, file=sys.stderr)
            continue
        rc = 1 if errored else 0
        break
    pipe.set_state(Gst.State.NULL)
    return rc


if __name__ == "__main__":
    sys.exit(main())
