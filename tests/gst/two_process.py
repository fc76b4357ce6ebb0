#!/usr/bin/env python3
"""Two-process integration of shmringsink and shmringsrc with real gst-launch-1.0.

Each case runs a sender and a receiver process concurrently and checks that
  * the receiver got every buffer the sender wrote, byte for byte (checksumsink
    SHA-1 on both sides, the sender's taken from a tee in front of shmringsink),
    and with the same timestamps,
  * caps changes mid-stream reach the receiver without any caps typed there,
  * EOS ends both processes with exit status 0.
Every case puts a tee in front of shmringsink (the sender's checksums come from its
other branch), and a tee answers the allocation query without the sink's ring pool:
only the sink's copy path runs here. The pool (caps changes, a ring grown for larger
frames, flushing seeks, renegotiation) is tested without a tee in
test_zero_copy_pipelines.py.
The processes really overlap: "consumer first" waits until the receiver logs that
it is waiting for the producer before starting the sender; "producer first" waits
until the ring exists, and the sender cannot finish before a receiver drains it
(its stream is larger than its ring and it blocks for space). No timed assertions.

Needs GST_PLUGIN_PATH to point at the built plugin (meson test sets it).
"""
import argparse
import os
import re
import subprocess
import sys
import threading

LINE = re.compile(r"^(\d+:\d\d:\d\d\.\d+) ([0-9a-f]{40})$")


class Proc:
    """A gst-launch-1.0 process whose stdout and stderr are collected by threads."""

    def __init__(self, argv, env=None, watch=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env)
        self.out, self.err = [], []
        self.seen = threading.Event()
        self.watch = watch
        self.t_out = threading.Thread(target=self._pump, args=(self.p.stdout, self.out))
        self.t_err = threading.Thread(target=self._pump, args=(self.p.stderr, self.err))
        self.t_out.start()
        self.t_err.start()

    def _pump(self, stream, sink):
        for line in stream:
            sink.append(line.rstrip("\n"))
            if self.watch and self.watch in line:
                self.seen.set()
        # the process closed this stream: whatever we waited for will not come
        self.seen.set()

    def finish(self):
        rc = self.p.wait()
        self.t_out.join()
        self.t_err.join()
        return rc

    def checksums(self):
        return [m.groups() for m in map(LINE.match, self.out) if m]

    def describe(self):
        return "$ " + " ".join(self.argv) + "\n" + "\n".join(self.out[-20:] + self.err[-40:])


def gst_args(desc):
    return desc.split()


def run_case(gst, name, sender_desc, receiver_desc, order, expect_caps=(), same_pts=True):
    ring_path = "/dev/shm/" + name
    rx_env = dict(os.environ, GST_DEBUG="shmringsrc:4")
    sender = [gst, "-q"] + gst_args(sender_desc)
    receiver = [gst, "-v"] + gst_args(receiver_desc)
    if order == "consumer-first":
        rx = Proc(receiver, env=rx_env, watch="waiting for a producer")
        rx.seen.wait()
        assert rx.p.poll() is None, "receiver exited before the sender started:\n" + rx.describe()
        tx = Proc(sender)
    else:
        tx = Proc(sender)
        while not os.path.exists(ring_path):
            if tx.p.poll() is not None:
                raise AssertionError("sender exited before creating the ring:\n" + tx.describe())
            threading.Event().wait(0.005)
        assert tx.p.poll() is None, "sender must still run when the receiver starts"
        rx = Proc(receiver, env=rx_env)
    tx_rc = tx.finish()
    rx_rc = rx.finish()
    assert tx_rc == 0, f"sender exit {tx_rc}:\n" + tx.describe()
    assert rx_rc == 0, f"receiver exit {rx_rc}:\n" + rx.describe()
    sent, got = tx.checksums(), rx.checksums()
    assert sent, "sender printed no checksums:\n" + tx.describe()
    assert len(got) == len(sent), f"sent {len(sent)} buffers, received {len(got)}"
    for i, (s, g) in enumerate(zip(sent, got)):
        assert s[1] == g[1], f"buffer {i}: sent {s}, received {g}"
        if same_pts:
            assert s[0] == g[0], f"buffer {i}: timestamp sent {s[0]}, received {g[0]}"
    rx_caps = "\n".join(l for l in rx.out if "caps = " in l)
    for c in expect_caps:
        assert c in rx_caps, f"receiver never got caps with {c}:\n{rx_caps}"
    assert not os.path.exists(ring_path), "the sender unlinks its ring when it stops"
    return len(sent)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gst-launch", default="gst-launch-1.0")
    args = ap.parse_args()
    gst = args.gst_launch
    pid = os.getpid()

    # 60 frames of 320x240 I420 (115200 bytes) through a 256 KiB ring: the
    # sender must wait for the receiver many times over.
    video = "videotestsrc num-buffers=60 pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=30/1"
    cases = []
    for order in ("consumer-first", "producer-first"):
        name = f"it-{order}-{pid}"
        sender = (f"{video} ! tee name=t ! queue ! shmringsink shm-name={name} capacity=262144 "
                  f"sync=false t. ! queue ! checksumsink sync=false")
        receiver = f"shmringsrc shm-name={name} ! checksumsink sync=false"
        cases.append((f"plain stream, {order}", name, sender, receiver, order,
                      ("width=(int)320",), True))

    # Caps change mid-stream: concat switches from 160x120 to 320x240 (and to a new
    # segment, so timestamps are compared as checksums only). Copy path only (the
    # tee); test_zero_copy_pipelines.py has the same change through the pool.
    for order in ("consumer-first", "producer-first"):
        name = f"it-caps-{order}-{pid}"
        sender = (f"concat name=c ! tee name=t ! queue ! shmringsink shm-name={name} "
                  f"capacity=524288 sync=false t. ! queue ! checksumsink sync=false "
                  f"videotestsrc num-buffers=20 pattern=snow ! "
                  f"video/x-raw,format=RGB,width=160,height=120,framerate=30/1 ! c. "
                  f"videotestsrc num-buffers=20 pattern=smpte ! "
                  f"video/x-raw,format=RGB,width=320,height=240,framerate=30/1 ! c.")
        receiver = f"shmringsrc shm-name={name} ! checksumsink sync=false"
        cases.append((f"caps change, {order}", name, sender, receiver, order,
                      ("width=(int)160", "width=(int)320"), False))

    failed = 0
    for title, name, sender, receiver, order, caps, same_pts in cases:
        try:
            n = run_case(gst, name, sender, receiver, order, caps, same_pts)
            print(f"ok   {title}: {n} buffers identical")
        except AssertionError as e:
            failed += 1
            print(f"FAIL {title}: {e}")
        finally:
            try:
                os.unlink("/dev/shm/" + name)
            except FileNotFoundError:
                pass
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
