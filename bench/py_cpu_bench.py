#!/usr/bin/python3
"""CPU cost of waiting in Python (a program, not a test): resource.getrusage CPU time,
never wall time.

1. Idle: an attached ShmConsumer blocked in read() on a live producer that writes
   nothing, for --idle seconds: CPU as a percentage of one core.
2. Blocking frames: a FrameWriter in another process writes --frames 1080p BGR frames
   at --fps; this process reads them with a blocking FrameReader (not touching the
   pixels): reader CPU per frame (RUSAGE_SELF over the whole loop), and as a
   percentage of one core. Run with the native wait (shmring._native, when built)
   and with the pure-Python one, interleaved, --rounds times.
3. The zero-copy view alone, two ways: "hot", read_frame(timeout=0) on 9 frames
   already in the ring, read back to back (CPU of the reads); and "at the same
   cadence", the same frames as in 2 arriving at --fps, read with read_frame(0)
   after a time.sleep of one frame period, so the reader keeps up and never wakes
   the writer (CPU of each read_frame call alone: the
   thread's CPU clock, CLOCK_THREAD_CPUTIME_ID, before and after it, since getrusage
   cannot resolve one call; "empty" is the two clock reads with nothing between, at
   the same cadence: the measurement's own floor). After an idle period
   every bytecode runs on cold caches, so the view costs far more at 30 fps than hot.
   And "polling at the same cadence": the same stream read by a loop of time.sleep(one
   frame period) + read_frame(0), the whole loop's CPU (getrusage, as in 2) per frame
   read: what a reader that does not block pays for the same frames.
4. Floors, for comparison: the CPU per wake-up of the smallest Python loops that sleep
   between events arriving at --fps from another process: the smallest blocking frame
   reader on the ring's own calls (acquire, sleep_after_empty_look, view_of,
   release_to: no FrameReader), a loop that only sleeps a frame period (time.sleep),
   a blocking os.read() of a pipe, and a bare futex wait through the package's ctypes
   call (_futex.futex_wait).

Usage: PYTHONPATH=python [SHMRING_NATIVE_DIR=build/python] /usr/bin/python3 \
       bench/py_cpu_bench.py [--idle 5] [--frames 150] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import shmring
from shmring import _futex

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


def thread_cpu() -> float:
    """This thread's CPU time in s, exact to the call: CLOCK_THREAD_CPUTIME_ID. (getrusage
    reports a thread's runtime as of the scheduler's last update of it, so two calls
    around one short call usually differ by 0 or a whole tick.)"""
    return time.thread_time_ns() * 1e-9


def start_writer(name: str, count: int, fps: float) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, "-c", WRITER, name, str(count), str(fps)])


def idle(seconds: float) -> float:
    name = "cpuidle%d" % os.getpid()
    with shmring.ShmProducer(name, 1 << 16), shmring.ShmConsumer(name) as c:
        c0, w0 = cpu(), time.monotonic()
        assert c.read(timeout=seconds) is None
        return 100 * (cpu() - c0) / (time.monotonic() - w0)


def frames(count: int, fps: float) -> Tuple[int, float, float]:
    """(frames, reader CPU us per frame, % of a core) of a blocking FrameReader."""
    name = "cpufr%d" % os.getpid()
    writer = start_writer(name, count, fps)
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


def view_hot(rounds: int = 30) -> float:
    """CPU us per read_frame(0) of frames already in the ring, read back to back."""
    import numpy as np
    name = "cpuvh%d" % os.getpid()
    caps = "video/x-raw,format=BGR,width=1920,height=1080,framerate=30/1"
    img = np.zeros((1080, 1920, 3), np.uint8)
    spent, n = 0.0, 0
    with shmring.FrameWriter(name, 64 << 20, caps=caps) as w, \
            shmring.FrameReader(name, timeout=5) as reader:
        for _ in range(rounds):
            for i in range(9):
                w.write(img, pts=i)
            c0 = thread_cpu()
            for _ in range(9):
                frame = reader.read_frame(0)
                assert frame is not None
                del frame
            spent += thread_cpu() - c0
            n += 9
    return spent / n * 1e6


def view_cadence(count: int, fps: float) -> Tuple[float, float]:
    """(median CPU us of one read_frame(0), median CPU us of an empty measurement) for
    frames arriving at ``fps``, each read after sleeping one frame period (the reader
    keeps up, so the writer never waits for space and the reads wake nobody)."""
    name = "cpuvc%d" % os.getpid()
    writer = start_writer(name, count, fps)
    reads: List[float] = []
    empty: List[float] = []
    try:
        with shmring.FrameReader(name, timeout=30) as reader:
            first = reader.read_frame(None)
            del first
            while not reader.at_end:
                time.sleep(1 / fps)
                c0 = thread_cpu()
                frame = reader.read_frame(0)
                c1 = thread_cpu()
                if frame is not None:
                    reads.append(c1 - c0)
                del frame
    finally:
        writer.wait(60)
    for _ in range(min(count, 60)):
        time.sleep(1 / fps)
        c0 = thread_cpu()
        c1 = thread_cpu()
        empty.append(c1 - c0)
    return statistics.median(reads) * 1e6, statistics.median(empty) * 1e6


def poll_cadence(count: int, fps: float) -> float:
    """CPU us per frame (getrusage over the whole loop) of a reader polling the stream
    of 2 with time.sleep(one frame period) + read_frame(0) instead of blocking."""
    name = "cpupo%d" % os.getpid()
    writer = start_writer(name, count, fps)
    n, c0, c1 = 0, 0.0, 0.0
    try:
        with shmring.FrameReader(name, timeout=30) as reader:
            first = reader.read_frame(None)
            del first
            c0 = cpu()
            while not reader.at_end:
                time.sleep(1 / fps)
                frame = reader.read_frame(0)
                if frame is not None:
                    n += 1
                del frame
            c1 = cpu()
    finally:
        writer.wait(60)
    return (c1 - c0) / max(1, n) * 1e6


def floor_ring(count: int, fps: float) -> float:
    """CPU us per frame of the smallest blocking reader on the ring's own calls: acquire,
    sleep_after_empty_look when empty, one header unpack, a tracked view, release."""
    from shmring.framing import KIND_BUFFER, KIND_EOS, unpack_header
    name = "cpufl%d" % os.getpid()
    writer = start_writer(name, count, fps)
    n, c0 = 0, 0.0
    try:
        with shmring.FrameReader(name, timeout=30) as reader:
            ring = reader._ring
            buf = ring.buffer
            while True:
                record = ring.acquire()
                if record is None:
                    ring.sleep_after_empty_look(0.5)
                    continue
                start, length, end = record
                kind = unpack_header(buf, start)[0]
                if kind == KIND_BUFFER:
                    held = ring.view_of(start + 60, length - 60, end)
                    if n == 0:
                        c0 = cpu()
                    n += 1
                    held.try_release()
                ring.release_to(end)
                if kind == KIND_EOS:
                    break
            c1 = cpu()
            ring.end_sleep()
    finally:
        writer.wait(60)
    return (c1 - c0) / max(1, n - 1) * 1e6


def floor_sleep(count: int, fps: float) -> float:
    """CPU us per wake-up of a loop that only sleeps one frame period (time.sleep)."""
    c0 = cpu()
    for _ in range(count):
        time.sleep(1 / fps)
    return (cpu() - c0) / count * 1e6


def floor_pipe(count: int, fps: float) -> float:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: one byte per event
        os.close(r)
        for _ in range(count):
            time.sleep(1 / fps)
            os.write(w, b"x")
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    n, c0 = 0, cpu()
    while os.read(r, 1):
        n += 1
    c1 = cpu()
    os.close(r)
    os.waitpid(pid, 0)
    return (c1 - c0) / max(1, n) * 1e6


def floor_futex(count: int, fps: float) -> float:
    import ctypes
    import mmap
    if not _futex.HAVE_FUTEX:
        return float("nan")
    m = mmap.mmap(-1, 4096)
    words = memoryview(m).cast("I")
    anchor = ctypes.c_char.from_buffer(m)
    address = ctypes.addressof(anchor)
    pid = os.fork()
    if pid == 0:  # child: bump the word and wake, once per event
        for i in range(1, count + 1):
            time.sleep(1 / fps)
            words[0] = i
            _futex.futex_wake(address)
        os._exit(0)
    while words[0] == 0:
        _futex.futex_wait(address, 0, 0.05)
    seen, n, c0 = words[0], 0, cpu()
    while seen < count:
        if words[0] == seen:
            _futex.futex_wait(address, seen, 0.05)
            continue
        seen = words[0]
        n += 1
    c1 = cpu()
    os.waitpid(pid, 0)
    del anchor, words
    m.close()
    return (c1 - c0) / max(1, n) * 1e6


def spread(values: List[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--idle", type=float, default=5.0, help="idle seconds (default 5)")
    ap.add_argument("--frames", type=int, default=150, help="frames (default 150)")
    ap.add_argument("--fps", type=float, default=30.0, help="writer rate (default 30)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--no-floors", action="store_true", help="skip the floor loops")
    args = ap.parse_args()
    native = _futex.native_available()
    modes = ["native", "pure"] if native else ["pure"]
    print(f"native wait (shmring._native): {'built' if native else 'NOT built'}; "
          f"{args.rounds} interleaved rounds, 1080p BGR at {args.fps:g} fps, "
          f"{args.frames} frames per run")
    results: Dict[str, List[float]] = {}

    def add(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    steps: List[Tuple[str, Callable[[], None]]] = []
    for mode in modes:
        def run_idle(mode: str = mode) -> None:
            add(f"idle reader, % of a core ({mode})", idle(args.idle))

        def run_frames(mode: str = mode) -> None:
            n, per_frame, share = frames(args.frames, args.fps)
            add(f"blocking FrameReader, us CPU per frame ({mode})", per_frame)
            add(f"blocking FrameReader, % of a core ({mode})", share)
        steps += [(mode, run_idle), (mode, run_frames)]

    def run_views() -> None:
        add("view, hot: read_frame(0) back to back, us per frame", view_hot())
        read, empty = view_cadence(args.frames, args.fps)
        add(f"view at {args.fps:g} fps: read_frame(0) after a frame period, us", read)
        add("  (empty measurement at the same cadence, us)", empty)
        add(f"polling reader at {args.fps:g} fps: sleep a frame period + read_frame(0), "
            "us CPU per frame", poll_cadence(args.frames, args.fps))
    steps.append(("native" if native else "pure", run_views))
    if not args.no_floors:
        def run_floors() -> None:
            add(f"floor: smallest blocking ring reader, us per frame ({modes[0]})",
                floor_ring(args.frames, args.fps))
            add("floor: time.sleep(frame period) loop, us per wake-up",
                floor_sleep(args.frames, args.fps))
            add("floor: pipe os.read loop, us per wake-up", floor_pipe(args.frames, args.fps))
            add("floor: ctypes futex_wait loop, us per wake-up",
                floor_futex(args.frames, args.fps))
        steps.append((modes[0], run_floors))
    loads: List[float] = []
    for r in range(args.rounds):
        for mode, step in steps:
            _futex.use_native(mode == "native")
            loads.append(os.getloadavg()[0])
            step()
        print(f"round {r + 1}/{args.rounds} done, 1-min load {os.getloadavg()[0]:.2f}",
              flush=True)
    _futex.use_native(True)
    print(f"1-minute load average during the runs: {min(loads):.2f}-{max(loads):.2f}")
    print("median [min-max] over the rounds:")
    for key, values in results.items():
        text = spread(values) if "%" not in key else (
            f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]")
        print(f"  {key}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
