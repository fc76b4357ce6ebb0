#!/usr/bin/python3
"""A sweep of raw video formats and sizes through shmringsink/shmringsrc against
shmsink/shmsrc (a benchmark helper, not a test).

    bench/gst_sweep.py --out FILE.jsonl [--rounds 3] [--modes alloc,copy]
                       [--formats BGR,BGRx,...] [--sizes 1920x1080,...]
                       [--pattern black|smpte] [--seconds 0.7 | --frames N] [--timeout 15]
                       [--shm-size BYTES] LABEL=PLUGIN_DIR

For every format, size and mode: one short probe run of each sink (bench/gst_sender_cpu.py,
1 round) gives the frame rates, then bench/gst_sender_cpu.py runs ROUNDS interleaved rounds
with enough frames that the faster sink's run lasts about SECONDS. The summary lines of each
row (gst_sender_cpu.py's, plus "ratio": the shmring label's median frames/s over
shmsink's) are appended to FILE, one JSON object a line; a row whose ratio is below 0.95 is
flagged on stdout. `--table FILE.jsonl` prints FILE as a Markdown table instead.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
FORMATS = "BGR,BGRx,I420,NV12,YUY2,GRAY8"
SIZES = "3840x2160,1920x1080,1366x768,1280x720,854x480,640x360,160x120"
BYTES_PER_PIXEL = {"BGR": 3.0, "RGB": 3.0, "BGRx": 4.0, "RGBA": 4.0, "BGRA": 4.0, "xRGB": 4.0,
                   "I420": 1.5, "YV12": 1.5, "NV12": 1.5, "NV21": 1.5, "YUY2": 2.0, "UYVY": 2.0,
                   "GRAY8": 1.0, "GRAY16_LE": 2.0}


def summaries(cmd: List[str]) -> List[Dict[str, object]]:
    """Runs gst_sender_cpu.py and returns its summary lines."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    rows = []
    for line in out.stdout.splitlines():
        if line.startswith("{") and '"summary": true' in line:
            rows.append(json.loads(line))
    if not rows:
        sys.stderr.write(f"no summary from {' '.join(cmd)}:\n{out.stdout}\n{out.stderr}\n")
    return rows


def fps_of(rows: List[Dict[str, object]], label: str) -> Optional[float]:
    for r in rows:
        if r["label"] == label and "fps" in r:
            return float(r["fps"][0])  # type: ignore[index]
    return None


def table(path: str) -> None:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    print("| format | size | mode | pattern | frames a run | runs ring / shmsink | shmring frames/s (min–max) | "
          "shmsink frames/s (min–max) | ratio | sender ms/frame ring / shmsink | "
          "receiver ms/frame ring / shmsink | sender switches/frame ring / shmsink | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def f(r: Dict[str, object], key: str, nd: int = 3) -> str:
        v = r.get(key)
        return "-" if v is None else f"{v[0]:.{nd}f}"  # type: ignore[index]

    def span(r: Dict[str, object]) -> str:
        v = r.get("fps")
        if v is None:
            return "-"
        return f"{v[0]:,.0f} ({v[1]:,.0f}–{v[2]:,.0f})".replace(",", " ")  # type: ignore[index]

    for ring in rows:
        if ring["label"] == "shmsink" or "peer" not in ring:
            continue
        peer = ring["peer"]
        loads = ring["loads"] + peer["loads"]  # type: ignore[operator]
        ratio = ring.get("ratio")
        flag = " **" if ratio is not None and ratio < 0.95 else ""
        pairs = [a / b for a, b in zip(ring.get("fps_runs") or [], peer.get("fps_runs") or [])
                 if a and b]
        if pairs:  # the ratios of the rounds (each round runs both, one after the other)
            flag += (f" (rounds {statistics.median(pairs):.2f}, "
                     f"{min(pairs):.2f}–{max(pairs):.2f})")
        print(f"| {ring['format']} | {ring['width']}×{ring['height']} | {ring['mode']} | "
              f"{ring['pattern']} | {ring['frames']} | {ring['runs']}/{ring['rounds']} / "
              f"{peer['runs']}/{peer['rounds']} | {span(ring)} | "
              f"{span(peer)} | "
              f"{'-' if ratio is None else f'{ratio:.2f}'}{flag} | "
              f"{f(ring, 'sender_cpu_ms')} / {f(peer, 'sender_cpu_ms')} | "
              f"{f(ring, 'receiver_cpu_ms')} / {f(peer, 'receiver_cpu_ms')} | "
              f"{f(ring, 'sender_switches', 2)} / {f(peer, 'sender_switches', 2)} | "
              f"{min(loads):.1f}–{max(loads):.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--table")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="alloc,copy")
    ap.add_argument("--formats", default=FORMATS)
    ap.add_argument("--sizes", default=SIZES)
    ap.add_argument("--pattern", default="black")
    ap.add_argument("--seconds", type=float, default=0.7)
    ap.add_argument("--frames", type=int, default=0,
                    help="frames a run (default: from a probe run, SECONDS of the faster sink)")
    ap.add_argument("--timeout", type=float, default=15,
                    help="seconds a receiver may run (shmsrc sometimes never ends)")
    ap.add_argument("--shm-size", type=int, default=0, help="shmsink's shm-size")
    ap.add_argument("build", nargs="?", help="LABEL=PLUGIN_DIR")
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return 0
    if not args.out or not args.build:
        ap.error("--out and LABEL=PLUGIN_DIR are needed")
    label = args.build.partition("=")[0]
    tool = [PY, os.path.join(ROOT, "bench", "gst_sender_cpu.py"), "--timeout", str(args.timeout)]
    for fmt in args.formats.split(","):
        for size in args.sizes.split(","):
            w, h = (int(x) for x in size.split("x"))
            frame = w * h * BYTES_PER_PIXEL.get(fmt, 4.0)
            for mode in args.modes.split(","):
                common = ["--format", fmt, "--width", str(w), "--height", str(h), "--mode", mode,
                          "--pattern", args.pattern, "--shmsink", args.build]
                if args.shm_size:
                    common[-2:-2] = ["--shm-size", str(args.shm_size)]
                frames = args.frames
                if not frames:
                    guess = max(200, int(0.25 / (20e-6 + frame / 8e9)))
                    probe = summaries(tool + ["--rounds", "1", "--frames", str(guess)] + common)
                    rates = [x for x in (fps_of(probe, label), fps_of(probe, "shmsink")) if x]
                    if not rates:
                        print(f"{fmt} {size} {mode}: probe failed", flush=True)
                        continue
                    frames = max(200, int(math.ceil(args.seconds * max(rates) / 100.0)) * 100)
                rows = summaries(tool + ["--rounds", str(args.rounds), "--frames", str(frames)]
                                 + common)
                ring = next((r for r in rows if r["label"] == label), None)
                peer = next((r for r in rows if r["label"] == "shmsink"), None)
                if ring is None or peer is None:
                    print(f"{fmt} {size} {mode}: no result", flush=True)
                    continue
                ring["peer"] = peer
                a, b = fps_of(rows, label), fps_of(rows, "shmsink")
                ring["ratio"] = a / b if a and b else None
                with open(args.out, "a", encoding="utf-8") as out:
                    out.write(json.dumps(ring) + "\n")
                r = ring["ratio"]
                loads = ring["loads"] + peer["loads"]  # type: ignore[operator]
                print(f"{fmt:6s} {size:10s} {mode:5s} {frames:6d} frames  ring "
                      f"{a or 0:9.0f}  shmsink {b or 0:9.0f}  ratio "
                      f"{'-' if r is None else f'{r:.2f}'}"
                      f"{'  <0.95' if r is not None and r < 0.95 else ''}  load "
                      f"{min(loads):.1f}-{max(loads):.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
