#!/usr/bin/python3
"""CPU cost of waiting in Python (a program, not a test): resource.getrusage CPU time,
never wall time.

1. Idle: an attached ShmConsumer blocked in read() on a live producer that writes
   nothing, for --idle seconds: CPU as a percentage of one core.
2. Blocking frames: a FrameWriter in another process writes --frames 1080p BGR frames
   at --fps; this process reads them with a blocking FrameReader (not touching the
   pixels): reader CPU per frame, and as a percentage of one core.

Usage: PYTHONPATH=python /usr/bin/python3 bench/py_cpu_bench.py [--idle 5] [--frames 150]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import shmring

WRITER = '''
import sys, time, numpy as np, shmring
caps = "video/x-raw,format=BGR,width=1920,height=1080,framerate=30/1"
img = np.zeros((1080, 1920, 3), np.uint8)
frames, fps = int(sys.argv[2]), float(sys.argv[3])
with shmring.FrameWriter(sys.argv[1], 64 << 20, caps=caps) as w:
    while not w.producer.consumer_attached():
        time.sleep(0.005)
    for i in range(frames):
        w.write(img, pts=i)
        time.sleep(1 / fps)
'''


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def idle(seconds: float) -> float:
    name = "cpuidle%d" % os.getpid()
    with shmring.ShmProducer(name, 1 << 16), shmring.ShmConsumer(name) as c:
        c0, w0 = cpu(), time.monotonic()
        assert c.read(timeout=seconds) is None
        return 100 * (cpu() - c0) / (time.monotonic() - w0)


def frames(count: int, fps: float) -> tuple:
    name = "cpufr%d" % os.getpid()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, name, str(count), str(fps)])
    try:
        with shmring.FrameReader(name, timeout=30) as reader:
            n, c0, w0 = 0, 0.0, 0.0
            for frame in reader:
                if n == 0:
                    c0, w0 = cpu(), time.monotonic()
                n += 1
                del frame
            c1, w1 = cpu(), time.monotonic()
    finally:
        writer.wait(60)
    return n, (c1 - c0) / max(1, n - 1) * 1e6, 100 * (c1 - c0) / max(1e-9, w1 - w0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=float, default=5.0, help="idle seconds (default 5)")
    ap.add_argument("--frames", type=int, default=150, help="frames (default 150)")
    ap.add_argument("--fps", type=float, default=30.0, help="writer rate (default 30)")
    args = ap.parse_args()
    print(f"idle attached reader: {idle(args.idle):.2f} % of a core")
    n, per_frame, share = frames(args.frames, args.fps)
    print(f"blocking FrameReader, {n} frames 1080p BGR at {args.fps:g} fps: "
          f"{per_frame:.0f} us CPU per frame, {share:.2f} % of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
