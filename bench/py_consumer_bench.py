#!/usr/bin/python3
"""Python-side speed of shmring (a benchmark program, not a test).

1. Messages/s of a Python consumer reading 64-byte messages from the C++ peer
   (tests/tools/shmring_peer produce), both processes running at once, through
   three APIs: the ring's read(), ShmConsumer.read(), and `for msg in consumer`.
2. Python-side cost of handing a 1080p BGR frame to numpy without copying: the
   time FrameReader.read_frame() + frame.array take per frame, and
   ShmConsumer.read_view() + np.frombuffer().reshape(), with the frames already
   in the ring (so only Python overhead is measured, no producer, no copy).

Usage: bench/py_consumer_bench.py [--peer PATH] [--messages N] [--runs R]
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
                    if ring.at_end():
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


def frame_overhead_us(frames: int, api: str) -> float:
    """Mean Python time per 1080p frame: read + zero-copy numpy view (+ release).

    The ring holds 4 frames and is written one frame ahead of the reader, so after
    the first lap every page is already mapped in both processes' page tables: the
    steady state of a live stream. Only the reader's calls are timed.
    """
    width, height = 1920, 1080
    caps = (f"video/x-raw, format=(string)BGR, width=(int){width}, height=(int){height}, "
            "framerate=(fraction)30/1")
    frame = np.random.default_rng(1).integers(0, 255, (height, width, 3), np.uint8)
    name = ring_name("frm")
    writer = FrameWriter(name, (frame.nbytes + 4096) * 4, caps=caps)
    elapsed = 0.0
    try:
        if api == "FrameReader":
            reader = FrameReader(name, timeout=0)
            for i in range(frames):
                writer.write(frame, pts=i, timeout=5)
                start = time.perf_counter()
                f = reader.read_frame(0)
                arr = f.array
                elapsed += time.perf_counter() - start
                assert arr.shape == (height, width, 3)
            del f, arr
            reader.close()
        else:
            consumer = ShmConsumer(name, timeout=0)
            writer.write(frame, pts=0, timeout=5)
            consumer.read()  # the CAPS message
            for i in range(frames):
                if i:
                    writer.write(frame, pts=i, timeout=5)
                start = time.perf_counter()
                with consumer.read_view(0) as view:
                    arr = np.frombuffer(view, np.uint8, frame.nbytes, 56).reshape(
                        height, width, 3)
                    del arr
                elapsed += time.perf_counter() - start
            consumer.close()
    finally:
        writer.close(timeout=0)
    return elapsed / frames * 1e6


def summary(values):
    return statistics.median(values), min(values), max(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", default=os.path.join(ROOT, "build", "tests", "tools",
                                                   "shmring_peer"))
    ap.add_argument("--messages", type=int, default=2_000_000)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not os.access(args.peer, os.X_OK):
        print(f"shmring_peer not found at {args.peer} (build first, or --peer)",
              file=sys.stderr)
        return 2
    print(f"python {sys.version.split()[0]}, shmring {shmring.__version__}, "
          f"membarrier={'yes' if shmring._futex.register_membarrier() else 'no'}, "
          f"{os.cpu_count()} CPUs")
    print()
    print("| measurement | median | min | max |")
    print("|---|---|---|---|")
    for api in ("ring.read", "ShmConsumer.read", "for msg in consumer"):
        rates = [messages_per_second(args.peer, args.messages, api) / 1e6
                 for _ in range(args.runs)]
        print("| 64-byte messages from C++, %s (M msg/s) | %.2f | %.2f | %.2f |"
              % ((api,) + summary(rates)))
    for api in ("FrameReader", "read_view"):
        costs = [frame_overhead_us(args.frames, api) for _ in range(args.runs)]
        label = ("FrameReader.read_frame + .array" if api == "FrameReader"
                 else "read_view + np.frombuffer().reshape")
        print("| 1080p BGR zero-copy, %s (us/frame) | %.1f | %.1f | %.1f |"
              % ((label,) + summary(costs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
