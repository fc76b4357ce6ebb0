#!/usr/bin/env python3
"""Smoke check of ring_bench --counters in the frames rows (suite 'bench'): each ring run
prints one JSON line on stderr with the per-frame split (ReportFrameTimes in
ring_bench.cpp) whose counts add up (every frame but the first is one Reserve, with or
without a sleep; at least one place; a front share in (0, 1]); with --full-fences the
receiver issues no membarrier (its producer fences fully); without --counters, no line.
Checks that the split is there and consistent, never its timings.

    check_ring_counters.py RING_BENCH
"""
import json
import subprocess
import sys
from typing import Any, Dict, List

FRAMES = 6
CAPS = [16, 32]


def counter_lines(exe: str, extra: List[str]) -> List[Dict[str, Any]]:
    res = subprocess.run([exe, "--only", "frames", "--rounds", "1", "--frames", str(FRAMES),
                          "--caps", ",".join(str(c) for c in CAPS)] + extra,
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=100)
    return [json.loads(line) for line in res.stderr.splitlines()
            if line.startswith('{"frames_counters"')]


def main(argv: List[str]) -> int:
    exe = argv[1]
    lines = counter_lines(exe, ["--counters"])
    if [d["frames_counters"] for d in lines] != CAPS:
        print(f"ring_bench --counters: one line per capacity {CAPS} expected, got {lines}")
        return 1
    for d in lines:
        problems = []
        if d["reserve_fast_n"] + d["reserve_waited_n"] != FRAMES - 1:
            problems.append("reserve_fast_n + reserve_waited_n != frames - 1")
        if d["places"] < 1:
            problems.append("no place")
        if not 0 < d["front_share"] <= 1:
            problems.append("front_share outside (0, 1]")
        if not 0 <= d["same_cpu_share"] <= 1:
            problems.append("same_cpu_share outside [0, 1]")
        for key in ("period_us", "copy_us", "copy_ring_same_us", "copy_ring_two_us",
                    "copy_peer_two_us"):
            if not d[key] > 0:
                problems.append(f"{key} not positive")
        for key in ("reserve_sleeps_per_frame", "peek_sleeps_per_frame", "commit_us"):
            if not d[key] >= 0:
                problems.append(f"{key} negative")
        if problems:
            print(f"ring_bench --counters: {d}: {'; '.join(problems)}")
            return 1
    # With --full-fences the frames rows' producer fences every publication fully
    # (ProducerOptions::full_fences), so its sleeping receiver never issues a membarrier.
    for d in counter_lines(exe, ["--counters", "--full-fences"]):
        if d["peek_membarriers_per_frame"] != 0:
            print(f"ring_bench --counters --full-fences: the receiver issued membarriers: {d}")
            return 1
    quiet = counter_lines(exe, [])
    if quiet:
        print(f"ring_bench without --counters printed {quiet}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
