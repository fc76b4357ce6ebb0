#!/usr/bin/python3
"""CPU per frame of the GStreamer senders and receivers, A/B between plugin builds (a
benchmark helper, not a test).

    bench/gst_sender_cpu.py [--rounds 5] [--frames 1800] [--pattern black|smpte]
                            [--mode copy|alloc] [--format BGR] [--width 1920]
                            [--height 1080] LABEL=PLUGIN_DIR[@PROPS] ... [--shmsink]

Each round runs, one after the other (interleaved A B C A B C ...), one sender and one
receiver per LABEL (`shmringsink` from the plugin in PLUGIN_DIR, a directory holding
libgstshmring.so, with the sink properties PROPS after an `@`, "capacity=N ...") and,
with --shmsink, the shmsink/shmsrc pair (--shm-size sets its area; a receiver still
running after --timeout seconds is killed and its run gives no result): the pipelines of
bench.py's GStreamer rows (1080p BGR videotestsrc unless --format/--width/--height say
otherwise: any raw video format videotestsrc paints, `identity drop-allocation=true` before
the sink in copy mode). The sender runs under `perf stat -e
task-clock,page-faults,context-switches` (software events: they work in VMs without
hardware counters); the receiver is bench/gst_receive.py. Prints one JSON line per run and
then, per label, the median (min-max) of the sender's CPU ms per frame (task-clock over
the whole run divided by the frames: startup included, about 0.05 ms a frame at 1800
frames, the same for every label), its page faults per frame, the receiver's CPU ms per
frame and frames/s, and the load average at each run; last, one JSON line per label with
those medians (min, max), the run's seconds and the loads ("summary": true), for tables.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

from shm_segments import child_pids, remove_shmsink_segments, wait_for_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"


def perf_stat(path: str) -> Dict[str, float]:
    out: Dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(",")
            if line.startswith("#") or len(parts) < 3 or not parts[0]:
                continue
            try:
                out[parts[2]] = float(parts[0])
            except ValueError:
                pass
    return out


def run_pair(plugin_dir: str, shmsink: bool, args: argparse.Namespace,
             tag: str, props: List[str]) -> Dict[str, object]:
    env = dict(os.environ)
    env["GST_PLUGIN_PATH"] = plugin_dir
    # One registry per plugin directory, kept between runs (a fresh one would rescan
    # every plugin in every run and count that as the sender's CPU).
    env["GST_REGISTRY"] = os.path.join(plugin_dir, "gst_sender_cpu-registry.bin")
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    n = args.frames
    head = ["videotestsrc", f"num-buffers={n}"]
    if args.pattern != "smpte":
        head.append(f"pattern={args.pattern}")
    caps = f"video/x-raw,format={args.format},width={args.width},height={args.height}"
    head += ["!", caps, "!"]
    if args.mode == "copy":
        head += ["identity", "drop-allocation=true", "!"]
    if shmsink:
        sock = os.path.join(tempfile.gettempdir(), f"{tag}.sock")
        sink = ["shmsink", f"socket-path={sock}", "sync=false", "wait-for-connection=true"]
        if args.shm_size:
            sink.append(f"shm-size={args.shm_size}")
        source = f"shmsrc socket-path={sock} ! {caps}"
    else:
        sink = ["shmringsink", f"shm-name={tag}", "sync=false"] + props
        source = f"shmringsrc shm-name={tag}"
    stat = os.path.join(tempfile.gettempdir(), f"{tag}.perf")
    sender = subprocess.Popen(["perf", "stat", "-x,", "-o", stat, "-e",
                               "task-clock,page-faults,context-switches", "--",
                               "gst-launch-1.0", "-q"] + head + sink, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    shmsink_pids: List[int] = []  # perf's child: the gst-launch-1.0 running shmsink
    if shmsink:
        wait_for_path(sock)
        shmsink_pids = child_pids(sender.pid)
    load = os.getloadavg()[0]
    result: Dict[str, object] = {"load": load}
    receiver = subprocess.Popen([PY, os.path.join(ROOT, "bench", "gst_receive.py"), source,
                                 str(n), "20"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        stdout, _ = receiver.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:  # seen once with shmsrc at 160x120 GRAY8
        os.killpg(receiver.pid, signal.SIGKILL)
        stdout, _ = receiver.communicate()
        result["hung"] = "receiver"
    try:
        sender.wait(20)
    except subprocess.TimeoutExpired:  # shmsink sometimes never sees its client go
        os.killpg(sender.pid, signal.SIGKILL)
        sender.wait()
        result["hung"] = result.get("hung", "sender")
    for pid in shmsink_pids:  # a killed shmsink leaves its shm area (64 MiB)
        remove_shmsink_segments(pid)
    try:
        res = json.loads(stdout.strip().splitlines()[-1])
        st = perf_stat(stat)
        if res["buffers"] == n and not result.get("hung"):
            result.update({"fps": res["fps"], "seconds": n / res["fps"],
                           "receiver_cpu_ms": res["cpu_ms"],
                           "sender_cpu_ms": st["task-clock"] / n,
                           "sender_faults": st["page-faults"] / n,
                           "sender_switches": st["context-switches"] / n})
    except (IndexError, ValueError, KeyError, OSError):
        pass
    for path in (stat, f"/dev/shm/{tag}", os.path.join(tempfile.gettempdir(), f"{tag}.sock")):
        if os.path.exists(path):
            os.unlink(path)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=1800)
    ap.add_argument("--pattern", default="black")
    ap.add_argument("--format", default="BGR", help="raw video format (GStreamer's name)")
    ap.add_argument("--width", type=int, default=1920, help="frame width")
    ap.add_argument("--height", type=int, default=1080, help="frame height")
    ap.add_argument("--mode", choices=("copy", "alloc"), default="copy")
    ap.add_argument("--shmsink", action="store_true", help="also the shmsink/shmsrc pair")
    ap.add_argument("--shm-size", type=int, default=0,
                    help="shmsink's shm-size (default: shmsink's, 64 MiB, which holds two "
                    "3840x2160 BGR frames)")
    ap.add_argument("--timeout", type=float, default=120,
                    help="seconds a receiver may run before it is killed (the run then "
                    "gives no result)")
    ap.add_argument("builds", nargs="+",
                    help="LABEL=PLUGIN_DIR[@PROPS]: PROPS, shmringsink properties "
                    "(\"capacity=16777216\", space-separated)")
    args = ap.parse_args()
    variants: List[Tuple[str, str, bool, List[str]]] = []
    for b in args.builds:
        label, _, spec = b.partition("=")
        path, _, extra = spec.partition("@")
        variants.append((label, os.path.abspath(path), False, extra.split() if extra else []))
    if args.shmsink:
        variants.append(("shmsink", variants[0][1], True, []))
    runs: Dict[str, List[Dict[str, object]]] = {v[0]: [] for v in variants}
    for r in range(args.rounds):
        for i, (label, path, shm, props) in enumerate(variants):
            res = run_pair(path, shm, args, f"gsc{os.getpid()}_{r}_{i}", props)
            res["label"] = label
            print(json.dumps(res), flush=True)
            runs[label].append(res)
    print(f"# {args.mode}, {args.format} {args.width}x{args.height}, pattern={args.pattern}, "
          f"{args.frames} frames, {args.rounds} rounds")
    summaries: List[Dict[str, object]] = []
    for label, rs in runs.items():
        ok = [x for x in rs if "sender_cpu_ms" in x]

        def fmt(key: str) -> str:
            v = [float(x[key]) for x in ok]  # type: ignore[arg-type]
            return (f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" if v else "-")

        loads = " ".join("%.1f" % float(x["load"]) for x in rs)  # type: ignore[arg-type]
        print(f"{label:10s} runs {len(ok)}/{len(rs)}  sender ms/frame {fmt('sender_cpu_ms')}  "
              f"faults/frame {fmt('sender_faults')}  receiver ms/frame "
              f"{fmt('receiver_cpu_ms')}  frames/s {fmt('fps')}  load {loads}")
        summary: Dict[str, object] = {
            "summary": True, "label": label, "mode": args.mode, "format": args.format,
            "width": args.width, "height": args.height, "pattern": args.pattern,
            "frames": args.frames, "runs": len(ok), "rounds": len(rs),
            "loads": [x["load"] for x in rs],
            "fps_runs": [x.get("fps") for x in rs]}  # per round, None for a failed run
        for key in ("fps", "sender_cpu_ms", "sender_switches", "receiver_cpu_ms", "seconds"):
            v = [float(x[key]) for x in ok]  # type: ignore[arg-type]
            if v:
                summary[key] = [statistics.median(v), min(v), max(v)]
        summaries.append(summary)
    for summary in summaries:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
