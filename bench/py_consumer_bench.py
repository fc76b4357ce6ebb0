#!/usr/bin/python3
"""Python-side speed of shmring (a benchmark program, not a test).

1. Messages/s of a Python consumer reading 64-byte messages from the C++ peer
   (tests/tools/shmring_peer produce), both processes running at once, through
   three APIs: the ring's read(), ShmConsumer.read(), and `for msg in consumer`.
2. Python-side cost of handing a 1080p BGR frame to numpy without copying,
   through FrameReader.read_frame() + frame.array and through
   ShmConsumer.read_view() + np.frombuffer().reshape(), in two set-ups:
   - "C++ producer process": tests/tools/shmring_peer produce-frames runs at the
     same time in its own process and writes the frames; before each timed call
     the reader spins (untimed) until the next record is in the ring, so no time
     spent waiting for the producer is counted.
   - "same process": a FrameWriter in the reader's own thread writes each frame
     (a 6 MB copy, untimed) just before the timed read, which evicts much of the
     reader's cached working set: a pessimistic comparison row.
   Only the reader's calls are timed (perf_counter_ns around them), including the
   release of earlier frames that happens inside them.

Usage: bench/py_consumer_bench.py [--peer PATH] [--messages N] [--frames F]
                                  [--runs R] [--only messages|frames]
Prints a Markdown table (median of R runs, min and max beside it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402

import shmring  # noqa: E402
from shmring import FrameReader, FrameWriter, ShmConsumer  # noqa: E402
from shmring.framing import HEADER_SIZE as MESSAGE_HEADER_SIZE, body_offset  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
FRAME_BYTES = WIDTH * HEIGHT * 3
BODY_OFFSET = body_offset(MESSAGE_HEADER_SIZE)
CAPS = (f"video/x-raw, format=(string)BGR, width=(int){WIDTH}, height=(int){HEIGHT}, "
        "framerate=(fraction)30/1")
# Frames read before timing starts (first lap of the ring: page faults, imports).
WARMUP = 8

_counter = [0]


def ring_name(tag: str) -> str:
    _counter[0] += 1
    return f"bench_{tag}{os.getpid()}_{_counter[0]}"


def messages_per_second(peer: str, count: int, api: str) -> float:
    name = ring_name("msg")
    proc = subprocess.Popen([peer, "produce", name, "--count", str(count), "--seed", "1",
                             "--min-size", "64", "--max-size", "64", "--capacity",
                             str(1 << 20), "--wait-consumer-ms", "20000"],
                            stdout=subprocess.DEVNULL)
    try:
        consumer = ShmConsumer(name, timeout=20)
        n = 0
        start = time.perf_counter()
        if api == "ring.read":
            ring = consumer.ring
            read = ring.read
            while True:
                msg = read()
                if msg is None:
                    if ring.at_end:
                        break
                    ring.wait_readable(0.2)
                    continue
                n += 1
        elif api == "ShmConsumer.read":
            read = consumer.read
            while read(None) is not None:
                n += 1
        else:
            for _ in consumer:
                n += 1
        elapsed = time.perf_counter() - start
        consumer.close()
    finally:
        proc.wait(60)
    assert n == count, (n, count)
    return count / elapsed


def _spin_until_data(ring) -> None:
    """Untimed: polls until a record is readable (the producer is another process)."""
    has_data = ring.has_data
    deadline = time.monotonic() + 20
    while not has_data():
        if time.monotonic() > deadline:
            raise RuntimeError("the producer stopped writing")


def frames_cross_process(peer: str, frames: int, api: str) -> list:
    """Per-frame ns of the reader's calls, the C++ peer writing in its own process."""
    name = ring_name("xfrm")
    total = frames + WARMUP
    # 4 frames of ring (32 MiB): the producer can run up to 4 frames ahead.
    proc = subprocess.Popen([peer, "produce-frames", name, "--count", str(total), "--width",
                             str(WIDTH), "--height", str(HEIGHT), "--format", "BGR",
                             "--capacity", str(1 << 25), "--wait-consumer-ms", "20000"],
                            stdout=subprocess.DEVNULL)
    times = []
    perf = time.perf_counter_ns
    try:
        if api == "FrameReader":
            reader = FrameReader(name, timeout=20)
            ring = reader._ring  # FrameReader has no has_data(); its ring answers it
            n = 0
            while n < total:
                _spin_until_data(ring)
                t0 = perf()
                f = reader.read_frame(0)
                if f is None:  # only the CAPS message was there: not a frame
                    continue
                arr = f.array
                t1 = perf()
                assert arr.shape == (HEIGHT, WIDTH, 3)
                if n >= WARMUP:
                    times.append(t1 - t0)
                n += 1
            del f, arr
            reader.close()
        else:
            consumer = ShmConsumer(name, timeout=20)
            ring = consumer.ring
            assert consumer.read(None) is not None  # the CAPS message
            frombuffer, uint8 = np.frombuffer, np.uint8
            for n in range(total):
                _spin_until_data(ring)
                t0 = perf()
                with consumer.read_view(0) as view:
                    arr = frombuffer(view, uint8, FRAME_BYTES, BODY_OFFSET).reshape(
                        HEIGHT, WIDTH, 3)
                    del arr
                t1 = perf()
                if n >= WARMUP:
                    times.append(t1 - t0)
            consumer.close()
    finally:
        if proc.wait(60) != 0:
            raise RuntimeError(f"shmring_peer produce-frames exited {proc.returncode}")
    return times


def frames_same_process(frames: int, api: str) -> list:
    """Per-frame ns of the reader's calls, a FrameWriter in this thread writing each
    frame (untimed) just before it is read."""
    frame = np.random.default_rng(1).integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
    name = ring_name("frm")
    writer = FrameWriter(name, (frame.nbytes + 4096) * 4, caps=CAPS)
    times = []
    perf = time.perf_counter_ns
    total = frames + WARMUP
    try:
        if api == "FrameReader":
            reader = FrameReader(name, timeout=0)
            for i in range(total):
                writer.write(frame, pts=i, timeout=5)
                t0 = perf()
                f = reader.read_frame(0)
                arr = f.array
                t1 = perf()
                assert arr.shape == (HEIGHT, WIDTH, 3)
                if i >= WARMUP:
                    times.append(t1 - t0)
            del f, arr
            reader.close()
        else:
            consumer = ShmConsumer(name, timeout=0)
            writer.write(frame, pts=0, timeout=5)
            consumer.read()  # the CAPS message
            frombuffer, uint8 = np.frombuffer, np.uint8
            for i in range(total):
                if i:
                    writer.write(frame, pts=i, timeout=5)
                t0 = perf()
                with consumer.read_view(0) as view:
                    arr = frombuffer(view, uint8, FRAME_BYTES, BODY_OFFSET).reshape(
                        HEIGHT, WIDTH, 3)
                    del arr
                t1 = perf()
                if i >= WARMUP:
                    times.append(t1 - t0)
            consumer.close()
    finally:
        writer.close(timeout=0)
    return times


def summary(values):
    return statistics.median(values), min(values), max(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", default=os.path.join(ROOT, "build", "tests", "tools",
                                                   "shmring_peer"))
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=("messages", "frames"))
    args = ap.parse_args()
    if not os.access(args.peer, os.X_OK):
        print(f"shmring_peer not found at {args.peer} (build first, or --peer)",
              file=sys.stderr)
        return 2
    print(f"python {sys.version.split()[0]}, shmring {shmring.__version__}, "
          f"membarrier={'yes' if shmring._futex.register_membarrier() else 'no'}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print()
    if args.only != "frames":
        print("| measurement | median | min | max |")
        print("|---|---|---|---|")
        for api in ("ring.read", "ShmConsumer.read", "for msg in consumer"):
            rates = [messages_per_second(args.peer, args.messages, api) / 1e6
                     for _ in range(args.runs)]
            print("| 64-byte messages from C++, %s (M msg/s) | %.2f | %.2f | %.2f |"
                  % ((api,) + summary(rates)))
        print()
    if args.only != "messages":
        print(f"1080p BGR zero-copy, us per frame: mean of {args.frames} frames per run "
              f"(after {WARMUP} warm-up frames); median, min and max over {args.runs} runs; "
              "p50/p99 of single frames over all runs")
        print()
        print("| producer | reader calls timed | median | min | max | frame p50 | frame p99 |")
        print("|---|---|---|---|---|---|---|")
        for setup in ("C++ producer process", "same process, same thread"):
            for api in ("read_view", "FrameReader"):
                means, every = [], []
                for _ in range(args.runs):
                    if setup.startswith("C++"):
                        t = frames_cross_process(args.peer, args.frames, api)
                    else:
                        t = frames_same_process(args.frames, api)
                    means.append(statistics.fmean(t) / 1e3)
                    every.extend(t)
                every.sort()
                p50 = every[len(every) // 2] / 1e3
                p99 = every[min(len(every) - 1, int(len(every) * 0.99))] / 1e3
                label = ("FrameReader.read_frame(0) + frame.array" if api == "FrameReader"
                         else "with read_view(0) + np.frombuffer().reshape()")
                print("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |"
                      % ((setup, label) + summary(means) + (p50, p99)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
