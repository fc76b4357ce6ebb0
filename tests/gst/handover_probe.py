#!/usr/bin/env python3
"""Helper processes for the live hand-over test of test_zero_copy_pipelines.py.

send NAME: `appsrc is-live=true ! shmringsink shm-name=NAME max-receivers=2 linger=60`
    (capacity 0). Pushes 160x120 BGR frames of zeros (the ring is created at their
    caps) until two shmringsink-receiver-attached messages came, then --small more
    160x120 frames, then 1280x720 frames (a move to a larger ring) until --large of them were
    written (a live sender writes nothing while no receiver is in the new ring: the
    sink's not-received counts those), then EOS. Each push waits until the sink has
    rendered it (its written and not-received counts). Prints "eos" once the EOS
    reached the sink, then stops (which waits for receivers still in the old ring).
receive NAME [--hold first|large]: `shmringsrc shm-name=NAME mode=live ! fakesink`
    (live mode whether or not the ring was marked live when it attached); prints one
    line per buffer ("<size> <sha1>"); with --hold, stops in the first buffer (or the
    first one larger than a 160x120 frame), prints "held" and holds it (and so its
    place in the ring) until a line arrives on stdin. Exits at EOS.
Exit status 0, or 3 after an error or a wait that ran into its guard (--guard s)."""
import argparse
import hashlib
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

SMALL = (160, 120)
LARGE = (1280, 720)


def caps(size):
    return Gst.Caps.from_string(
        f"video/x-raw,format=BGR,width={size[0]},height={size[1]},framerate=30/1")


def fail(msg):
    print(msg, file=sys.stderr, flush=True)
    sys.exit(3)


def send(a):
    pipe = Gst.parse_launch(
        "appsrc name=src is-live=true format=time ! "
        f"shmringsink name=sink shm-name={a.name} max-receivers=2 linger=60")
    src, sink = pipe.get_by_name("src"), pipe.get_by_name("sink")
    src.set_property("caps", caps(SMALL))
    bus = pipe.get_bus()
    pipe.set_state(Gst.State.PLAYING)
    deadline = time.monotonic() + a.guard

    def rendered():
        s = sink.get_property("stats")
        return s.get_value("in-place") + s.get_value("copied"), sink.get_property("not-received")

    attached = [0]  # shmringsink-receiver-attached messages so far

    def look_at_bus():
        while (msg := bus.pop()) is not None:
            if msg.type == Gst.MessageType.ERROR:
                fail(f"error: {msg.parse_error()}")
            if msg.type == Gst.MessageType.ELEMENT and \
                    msg.get_structure().get_name() == "shmringsink-receiver-attached":
                attached[0] += 1

    def push(n, size, fill=None):
        """Pushes frame n (every byte `fill`, default 1 + n % 255) and waits until the
        sink rendered it; True when it was written."""
        before = rendered()
        data = bytes([1 + n % 255 if fill is None else fill]) * (size[0] * size[1] * 3)
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = n * Gst.SECOND // 30
        buf.duration = Gst.SECOND // 30
        if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
            fail(f"push-buffer of frame {n} failed")
        while rendered() == before:
            look_at_bus()
            if time.monotonic() > deadline:
                fail(f"frame {n} was never rendered")
            time.sleep(0.001)
        return rendered()[0] > before[0]

    # Frames of zeros until both receivers are announced (the sink looks for them
    # when it renders a buffer); they may reach either receiver, or none.
    n = 0
    while attached[0] < 2:
        push(n, SMALL, fill=0)
        n += 1
        time.sleep(0.05)
        look_at_bus()
        if time.monotonic() > deadline:
            fail("the receivers never attached")
    first = n
    for n in range(first, first + a.small):
        if not push(n, SMALL):
            fail(f"small frame {n} was not written with two receivers attached")
    src.set_property("caps", caps(LARGE))
    n, written = first + a.small, 0
    while written < a.large:
        written += push(n, LARGE)
        n += 1
    src.emit("end-of-stream")
    msg = bus.timed_pop_filtered(int(max(0.0, deadline - time.monotonic()) * Gst.SECOND),
                                 Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        fail(f"no EOS: {msg.parse_error() if msg else 'guard'}")
    print("eos", flush=True)
    pipe.set_state(Gst.State.NULL)


def receive(a):
    pipe = Gst.parse_launch(
        f"shmringsrc shm-name={a.name} mode=live ! "
        "fakesink name=out sync=false signal-handoffs=true")
    small = SMALL[0] * SMALL[1] * 3
    held = [a.hold is None]

    def handoff(_sink, buf, _pad):
        data = buf.extract_dup(0, buf.get_size())
        if not held[0] and (a.hold == "first" or len(data) > small):
            held[0] = True
            print("held", flush=True)
            sys.stdin.readline()
        print(len(data), hashlib.sha1(data).hexdigest(), flush=True)
    pipe.get_by_name("out").connect("handoff", handoff)
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(int(a.guard * Gst.SECOND),
                                            Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        fail(f"no EOS: {msg.parse_error() if msg else 'guard'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["send", "receive"])
    ap.add_argument("name")
    ap.add_argument("--hold", choices=["first", "large"])
    ap.add_argument("--small", type=int, default=5)
    ap.add_argument("--large", type=int, default=3)
    ap.add_argument("--guard", type=float, default=120.0)
    a = ap.parse_args()
    Gst.init(None)
    send(a) if a.role == "send" else receive(a)


if __name__ == "__main__":
    main()
