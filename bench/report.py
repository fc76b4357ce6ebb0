"""Writes docs/BENCHMARKS.md and the plots under docs/bench/ from bench/bench.py's results.

write(results, out_dir) is called by bench.py --out; `bench/report.py RESULTS.json OUT_DIR`
re-renders a saved run (bench.py --json) without measuring again.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CAPACITIES_MIB = (16, 32, 64, 128)
GOAL_CPP_CAPACITY = 32


def spread(v: List[float]) -> Tuple[float, float, float]:
    """Median, min, max of the values that were measured (a failed round is NaN)."""
    v = [x for x in v if not math.isnan(x)] or [float("nan")]
    return statistics.median(v), min(v), max(v)


def ratios(a: List[float], b: List[float]) -> List[float]:
    return [x / y for x, y in zip(a, b) if y > 0 and not math.isnan(x) and not math.isnan(y)]


def fmt(x: float) -> str:
    if math.isnan(x):
        return "no result"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e4:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"


def source_has(path: str, needle: str) -> bool:
    """Whether a source file of the measured tree mentions `needle` (for the 'why' column)."""
    try:
        with open(os.path.join(ROOT, path)) as f:
            return needle in f.read()
    except OSError:
        return False


def tree_has(directory: str, needle: str) -> bool:
    """Whether any source file under `directory` of the measured tree mentions `needle`."""
    for base, _dirs, files in os.walk(os.path.join(ROOT, directory)):
        for name in files:
            if name.endswith((".cpp", ".hpp", ".py")) and source_has(
                    os.path.relpath(os.path.join(base, name), ROOT), needle):
                return True
    return False


def layout_version() -> str:
    try:
        with open(os.path.join(ROOT, "core/include/shm/layout.hpp")) as f:
            for line in f:
                if "kVersion" in line and "=" in line:
                    return line.split("=", 1)[1].strip().rstrip(";").strip()
    except OSError:
        pass
    return "?"


class Report:
    def __init__(self, results: Dict[str, Any], out_dir: str) -> None:
        self.r = results
        self.rows: Dict[str, Dict[str, Any]] = results["rows"]
        self.out = out_dir
        self.plots = os.path.join(out_dir, "bench")
        self.lines: List[str] = []
        self.goals: List[Tuple[str, str, str, str]] = []  # goal, measured, met, note
        self.failed: List[str] = []

    def p(self, s: str = "") -> None:
        self.lines.append(s)

    # ------------------------------------------------------------ table rows

    def ratio_row(self, label: str, row: str, a: str, b: str) -> Optional[List[float]]:
        d = self.rows.get(row)
        if not d or a not in d or b not in d:
            return None
        rs = ratios(d[a], d[b])
        for side in (a, b):
            if all(math.isnan(x) for x in d[side]):
                self.p(f"| {label} | {fmt(spread(d[a])[0])} | {b}: {fmt(spread(d[b])[0])} | "
                       f"— | {len(d[a])} |")
                self.failed.append(f"{label}: {side} gave no result in any round (its receiver "
                                   "saw too few buffers: the stream stalled)")
                return None
        ma, la, ha = spread(d[a])
        mb, lb, hb = spread(d[b])
        mr, lr, hr = spread(rs)
        self.p(f"| {label} | {fmt(ma)} ({fmt(la)}–{fmt(ha)}) | {b}: {fmt(mb)} ({fmt(lb)}–{fmt(hb)})"
               f" | **{mr:.2f}** ({lr:.2f}–{hr:.2f}) | {len(rs)} |")
        return rs

    def goal(self, what: str, value: Optional[float], bar: float, unit: str, why: str,
             lower_is_better: bool = False) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.goals.append((what, "not measured", "—", why))
            return
        met = value <= bar if lower_is_better else value >= bar
        if met:
            note = ""
        elif lower_is_better:
            note = f"missed: {value / bar:.2f}× the bar" if bar > 0 else "missed"
        else:
            note = f"missed by {(1 - value / bar) * 100:.0f} %"
        if not met and why:
            note += f"; {why}"
        shown = f"{value:.3g}{unit}" if value != float("inf") else "not noticed within 5 s"
        self.goals.append((what, shown, "yes" if met else "**no**", note))

    # ------------------------------------------------------------ plots

    def plot(self) -> List[str]:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        os.makedirs(self.plots, exist_ok=True)
        made = []
        # 1. ratios of every throughput row
        labels, meds, los, his = [], [], [], []
        for label, row, a, b in self.throughput_rows():
            d = self.rows.get(row)
            if not d or a not in d or b not in d:
                continue
            m, lo, hi = spread(ratios(d[a], d[b]))
            labels.append(label)
            meds.append(m)
            los.append(m - lo)
            his.append(hi - m)
        if labels:
            fig, ax = plt.subplots(figsize=(9, 0.45 * len(labels) + 1.5))
            y = range(len(labels))
            ax.barh(list(y), meds, xerr=[los, his], color="#4c72b0", capsize=3)
            ax.axvline(1.0, color="k", lw=0.8, ls="--")
            ax.set_yticks(list(y))
            ax.set_yticklabels(labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel("shmring / peer (median of per-round ratios, min–max)")
            ax.set_title("Throughput ratios (> 1: shmring faster)")
            fig.tight_layout()
            fig.savefig(os.path.join(self.plots, "ratios.png"), dpi=100)
            plt.close(fig)
            made.append("ratios.png")
        # 2. capacity sweep
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        any_sweep = False
        for ax, (title, prefix, a, b) in zip(axes, (
                ("GStreamer, sink allocator path", "gst_alloc_", "shmring", "shmsink"),
                ("GStreamer, forced copy", "gst_copy_", "shmring", "shmsink"),
                ("C++ Reserve/Commit→Peek", "frames_", "shmring", "memcpy"))):
            caps = [c for c in CAPACITIES_MIB if f"{prefix}{c}" in self.rows]
            if not caps:
                ax.set_visible(False)
                continue
            any_sweep = True
            for variant, color in ((a, "#4c72b0"), (b, "#dd8452")):
                med = [spread(self.rows[f"{prefix}{c}"][variant])[0] for c in caps]
                lo = [spread(self.rows[f"{prefix}{c}"][variant])[1] for c in caps]
                hi = [spread(self.rows[f"{prefix}{c}"][variant])[2] for c in caps]
                ax.plot(caps, med, "o-", color=color, label=variant)
                ax.fill_between(caps, lo, hi, color=color, alpha=0.2)
            ax.set_xscale("log", base=2)
            ax.set_xticks(caps)
            ax.set_xticklabels([str(c) for c in caps])
            ax.set_xlabel("ring / shm area (MiB)")
            ax.set_ylabel("1080p BGR frames/s")
            ax.set_title(title, fontsize=10)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
        if any_sweep:
            fig.tight_layout()
            fig.savefig(os.path.join(self.plots, "capacity_sweep.png"), dpi=100)
            made.append("capacity_sweep.png")
        plt.close(fig)
        # 3. several receivers
        keys = sorted((k for k in self.rows if k.startswith("fanout_")),
                      key=lambda k: int(k.split("_")[1]))
        if keys:
            ns = [int(k.split("_")[1]) for k in keys]
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
            for variant, color in (("shmring", "#55a868"), ("tee+rings", "#4c72b0"),
                                   ("shmsink", "#dd8452")):
                if variant not in self.rows[keys[0]]:
                    continue
                axes[0].plot(ns, [spread(self.rows[k][variant])[0] for k in keys], "o-",
                             color=color, label=variant)
                axes[1].plot(ns, [spread(self.rows[k]["sender_cpu_ms"][variant])[0]
                                  for k in keys], "o-", color=color, label=variant)
            axes[0].set_ylabel("frames/s (slowest receiver)")
            axes[1].set_ylabel("sender CPU ms per frame")
            for ax in axes:
                ax.set_xlabel("receivers")
                ax.set_xticks(ns)
                ax.set_ylim(bottom=0)
                ax.legend(fontsize=8)
            fig.suptitle("1080p BGR, one sender, N receivers", fontsize=10)
            fig.tight_layout()
            fig.savefig(os.path.join(self.plots, "fanout.png"), dpi=100)
            plt.close(fig)
            made.append("fanout.png")
        # 4. idle
        idle = self.r.get("idle")
        if idle:
            names = list(idle)
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
            for ax, key, title, bar in ((axes[0], "cpu_pct_ns", "CPU % of a core", 0.1),
                                        (axes[1], "wakeups", "wake-ups/s", 2)):
                med = [spread(idle[n][key])[0] for n in names]
                lo = [med[i] - spread(idle[n][key])[1] for i, n in enumerate(names)]
                hi = [spread(idle[n][key])[2] - med[i] for i, n in enumerate(names)]
                ax.bar(names, med, yerr=[lo, hi], color="#55a868", capsize=3)
                ax.axhline(bar, color="r", lw=0.8, ls="--", label=f"goal ≤ {bar}")
                ax.set_title(f"Idle receiver, 1 frame/s: {title}", fontsize=10)
                ax.tick_params(axis="x", labelsize=8)
                ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(os.path.join(self.plots, "idle.png"), dpi=100)
            plt.close(fig)
            made.append("idle.png")
        return made

    def throughput_rows(self) -> List[Tuple[str, str, str, str]]:
        out = [("GStreamer 1080p, sink allocator path, default capacity", "gst_alloc_default",
                "shmring", "shmsink"),
               ("GStreamer 1080p, forced copy, default capacity", "gst_copy_default", "shmring",
                "shmsink")]
        for c in CAPACITIES_MIB:
            out.append((f"GStreamer 1080p, allocator path, {c} MiB", f"gst_alloc_{c}", "shmring",
                        "shmsink"))
        for c in CAPACITIES_MIB:
            out.append((f"GStreamer 1080p, forced copy, {c} MiB", f"gst_copy_{c}", "shmring",
                        "shmsink"))
        for c in CAPACITIES_MIB:
            out.append((f"C++ 1080p Reserve/Commit→Peek, {c} MiB ring vs memcpy", f"frames_{c}",
                        "shmring", "memcpy"))
        out.append(("C++ 1080p vs iceoryx (loan/publish→take)",
                    f"frames_{GOAL_CPP_CAPACITY}", "shmring", "iceoryx"))
        out.append(("64 B messages, two processes, vs minimal head/tail ring", "small", "shmring",
                    "minimal"))
        out.append(("64 B messages vs iceoryx", "small", "shmring", "iceoryx"))
        return out

    # ------------------------------------------------------------ document

    def median_ratio(self, row: str, a: str, b: str) -> Optional[float]:
        d = self.rows.get(row)
        if not d or a not in d or b not in d:
            return None
        return spread(ratios(d[a], d[b]))[0]

    def render(self) -> str:
        r, m = self.r, self.r["machine"]
        self.p("# shmring benchmarks")
        self.p()
        self.p("Written by `scripts/bench.sh` (bench/bench.py, bench/report.py); do not edit by "
               "hand — rerun it. Every row compares shmring with its peer measured in the same "
               "run, in interleaved rounds (A B A B …). Numbers are the median over the rounds "
               "with the min–max in brackets; the ratio is the median of the per-round ratios "
               "(shmring / peer, > 1 = shmring faster).")
        self.p()
        self.p("## Machine and build")
        self.p()
        self.p(f"- CPU: {m['cpu']}, {m['cores']} cores (`/proc/cpuinfo`)")
        self.p(f"- Kernel: {m['uname']}")
        self.p(f"- Commit: `{m['commit'][:12]}` ({m['commit_subject']})"
               + (", with uncommitted changes" if m["dirty"] == "yes" else ""))
        self.p(f"- Build: meson buildtype `{m['buildtype']}`; {m['gstreamer']}; Python {m['python']}")
        self.p(f"- Date: {m['date']}")
        lb, la = r["load_before"], r["load_after"]
        self.p(f"- Load average (1/5/15 min) before: {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}, "
               f"after: {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}"
               + (" — the machine was busy with other work: treat the numbers as noisy."
                  if max(lb[0], la[0]) > 0.5 else ""))
        if r.get("smoke"):
            self.p("- **Smoke run** (tiny counts): these numbers mean nothing.")
        self.p()
        self.p("## Goals (issue 10)")
        self.p()
        self.compute_goals()
        self.p("| goal | measured | met | note |")
        self.p("|---|---|---|---|")
        for g in self.goals:
            self.p(f"| {g[0]} | {g[1]} | {g[2]} | {g[3]} |")
        self.p()
        self.p("## Throughput")
        self.p()
        self.p(f"GStreamer: `videotestsrc num-buffers={r['gst_frames']} ! {CAPS} ! [identity "
               "drop-allocation=true !] shmringsink shm-name=N sync=false [capacity=C]` in one "
               "process and `shmringsrc shm-name=N ! fakesink sync=false` in another, vs "
               "`shmsink socket-path=P sync=false wait-for-connection=true [shm-size=C]` → "
               "`shmsrc socket-path=P ! caps ! fakesink`. Every other property at its default "
               "(shmringsrc included: its zero-copy property stays as it ships). frames/s = buffers counted at the receiver's "
               "fakesink pad over wall time, from the 20th buffer to the last (so the backlog "
               "written before the receiver attached is not counted). \"Allocator path\" is "
               "whatever allocation upstream negotiates with the sink; \"forced copy\" puts "
               "`identity drop-allocation=true` before the sink.")
        self.p()
        self.p(f"C++ (bench/ring_bench.cpp): producer and consumer in two processes. 64 B = "
               f"{r['small_count']:,} records of 64 bytes (4-byte length + 60-byte body) "
               "through ShmProducer::WriteFor → ShmConsumer::ReadFor (the public blocking API with "
               "its wait protocol) vs a minimal ring with only head and tail words (adjacent, as "
               "in the original design), no flags, no wait protocol, both sides spinning, same "
               f"record format. 1080p = {r['cpp_frames']} frames of 6,220,800 bytes through "
               "Reserve + memcpy + Commit → PeekFor + touch + Release vs one process memcpy-ing "
               "the frame into a buffer of the same size slot after slot. iceoryx "
               "(bench/iox_bench.cpp, Debian's iceoryx 2.0 with bench/iox_roudi.toml): "
               "UntypedPublisher loan + memcpy + publish → UntypedSubscriber take (spinning) + "
               "release, WAIT_FOR_CONSUMER/BLOCK_PRODUCER.")
        self.p()
        self.p("| row | shmring | peer | ratio | rounds |")
        self.p("|---|---|---|---|---|")
        for label, row, a, b in self.throughput_rows():
            self.ratio_row(label, row, a, b)
        self.p()
        for f in self.failed:
            self.p(f"- {f}.")
        if self.failed:
            self.p()
        for step, err in r.get("errors", {}).items():
            self.p(f"**Step `{step}` failed** and is missing from this report: {err}")
            self.p()
        if r.get("iceoryx") and r["iceoryx"] != "ok":
            self.p(f"iceoryx: {r['iceoryx']}.")
            self.p()
        for png, alt in (("ratios.png", "throughput ratios"),
                         ("capacity_sweep.png", "capacity sweep")):
            if png in self.made:
                self.p(f"![{alt}](bench/{png})")
                self.p()
        self.fanout()
        self.latency()
        if self.r.get("python"):
            self.p("## Python 1080p view")
            self.p()
            self.p("`bench/py_consumer_bench.py --only frames` (see docs/PERF-PYTHON.md for what "
                   "it times), as it printed it:")
            self.p()
            self.p(self.r["python"].strip())
            self.p()
        self.idle()
        self.p("## Reproducing")
        self.p()
        self.p("`scripts/bench.sh` installs the `--bench` packages (scripts/deps.sh), configures "
               "a release build in build-bench/, runs bench/bench.py and rewrites this file and "
               "docs/bench/*.png (raw numbers: docs/bench/results.json). "
               "`scripts/bench.sh --smoke` runs every program once with tiny counts (its report goes "
               "to build-bench/smoke-docs/). bench/README.md lists the programs and how to add "
               "a row.")
        return "\n".join(self.lines) + "\n"

    def fanout(self) -> None:
        keys = sorted((k for k in self.rows if k.startswith("fanout_")),
                      key=lambda k: int(k.split("_")[1]))
        if not keys:
            return
        self.p("## Several receivers")
        self.p()
        self.p("One 1080p BGR sender, N receiver processes (`gst_receive.py`: `… ! fakesink`) at "
               "once: `videotestsrc ! tee` into one `queue ! shmringsink` per receiver "
               "(\"tee+rings\") and one `shmringsink max-receivers=N` with N lossless "
               "`shmringsrc` on that ring (\"shmring\", each frame written once) vs one "
               "`shmsink` with N `shmsrc` clients. frames/s = the slowest receiver's; sender "
               "CPU = the sender process's user+system time (wait4 rusage) per frame.")
        self.p()
        if all("shmring" in self.rows[k] for k in keys):
            self.p("| receivers | shmring (one ring) frames/s | shmsink frames/s | ratio | "
                   "sender CPU ms/frame (shmring / shmsink) |")
            self.p("|---|---|---|---|---|")
            for k in keys:
                d = self.rows[k]
                a, b = spread(d["shmring"]), spread(d["shmsink"])
                rr = spread(ratios(d["shmring"], d["shmsink"]))
                ca = spread(d["sender_cpu_ms"]["shmring"])[0]
                cb = spread(d["sender_cpu_ms"]["shmsink"])[0]
                self.p(f"| {k.split('_')[1]} | {fmt(a[0])} ({fmt(a[1])}–{fmt(a[2])}) | "
                       f"{fmt(b[0])} ({fmt(b[1])}–{fmt(b[2])}) | **{rr[0]:.2f}** "
                       f"({rr[1]:.2f}–{rr[2]:.2f}) | {ca:.2f} / {cb:.2f} |")
            self.p()
        self.p("| receivers | tee+rings frames/s | shmsink frames/s | ratio | sender CPU ms/frame "
               "(tee+rings / shmsink) | rounds |")
        self.p("|---|---|---|---|---|---|")
        for k in keys:
            d = self.rows[k]
            a, b = spread(d["tee+rings"]), spread(d["shmsink"])
            rr = spread(ratios(d["tee+rings"], d["shmsink"]))
            ca = spread(d["sender_cpu_ms"]["tee+rings"])[0]
            cb = spread(d["sender_cpu_ms"]["shmsink"])[0]
            self.p(f"| {k.split('_')[1]} | {fmt(a[0])} ({fmt(a[1])}–{fmt(a[2])}) | {fmt(b[0])} "
                   f"({fmt(b[1])}–{fmt(b[2])}) | **{rr[0]:.2f}** ({rr[1]:.2f}–{rr[2]:.2f}) | "
                   f"{ca:.2f} / {cb:.2f} | {len(d['shmsink'])} |")
        self.p()
        if "fanout.png" in self.made:
            self.p("![several receivers](bench/fanout.png)")
            self.p()

    def latency(self) -> None:
        lat = self.r.get("latency")
        if not lat:
            return
        self.p("## Latency")
        self.p()
        self.p("64-byte message, two processes, CLOCK_MONOTONIC time stamp written by the "
               "producer and subtracted by the consumer; the producer sends the next message "
               "only after the previous one was read (no queueing counted).")
        self.p()
        self.p("| what | p50 | p99 | samples |")
        self.p("|---|---|---|---|")
        labels = {"latency_oneway": "one-way, consumer polling (TryRead loop), 20 µs apart",
                  "latency_wakeup": "wake-up, consumer asleep in ReadFor, 1 ms apart",
                  "latency_oneway_iceoryx": "iceoryx one-way, subscriber polling take(), "
                                            "20 µs apart",
                  "latency_wakeup_iceoryx": "iceoryx wake-up, subscriber asleep in a WaitSet, "
                                            "1 ms apart"}
        for key, label in labels.items():
            if key in lat:
                d = lat[key]
                self.p(f"| {label} | {d['p50_ns'] / 1e3:.1f} µs | {d['p99_ns'] / 1e3:.1f} µs | "
                       f"{d['samples']} |")
        self.p()
        if "iceoryx_latency" in self.r:
            self.p(f"iceoryx latency: {self.r['iceoryx_latency']}.")
            self.p()

    def idle(self) -> None:
        idle = self.r.get("idle")
        if not idle:
            return
        w = self.r.get("idle_window_s", 0)
        self.p("## Idle receiver")
        self.p()
        self.p("A live 1080p BGR stream at 1 frame/s (`videotestsrc is-live=true ! …,framerate=1/1"
               " ! shmringsink` or `! shmsink`), one receiver: `shmringsrc is-live=true ! "
               "fakesink`, a Python `for frame in FrameReader(name)` loop, the C++ "
               "`ShmConsumer::PeekFor(kForever)` loop of bench/idle_receiver.cpp, `shmsrc "
               "is-live=true ! fakesink`, and an iceoryx subscriber waiting in a WaitSet "
               "(bench/iox_bench.cpp idle-sub; its publisher sends one 1080p sample a second)."
               f" Over a {w:.0f} s window after 3 s of warm-up: CPU % "
               "of one core from the receiver's `/proc/PID/stat` utime+stime (10 ms ticks: "
               f"resolution {100 * 0.01 / w if w else 0:.2f} %) and from the sum of its threads' "
               "`/proc/PID/task/*/schedstat` run time (ns resolution; the goal uses this one), "
               "wake-ups/s = voluntary + nonvoluntary context switches of all its threads "
               "(`/proc/PID/task/*/status`). Then the sender is killed with SIGKILL: \"death "
               "noticed\" is the time until the receiver process has ended (polled every 5 ms).")
        self.p()
        self.p("| receiver | CPU % (schedstat) | CPU % (stat) | wake-ups/s | death noticed | "
               "rounds |")
        self.p("|---|---|---|---|---|---|")
        for name, d in idle.items():
            c = spread(d["cpu_pct_ns"])
            s = spread(d["cpu_pct"])
            wk = spread(d["wakeups"])
            deaths = [x for x in d["death_s"] if not math.isnan(x)]
            if not deaths:
                death = "n/a (a subscriber is not told)"
            elif max(deaths) == float("inf"):
                death = "not within 5 s in some round"
            else:
                dd = spread(deaths)
                death = f"{dd[0] * 1e3:.0f} ms ({dd[1] * 1e3:.0f}–{dd[2] * 1e3:.0f})"
            self.p(f"| {name} | {c[0]:.3f} ({c[1]:.3f}–{c[2]:.3f}) | {s[0]:.2f} ({s[1]:.2f}–"
                   f"{s[2]:.2f}) | {wk[0]:.1f} ({wk[1]:.1f}–{wk[2]:.1f}) | {death} | "
                   f"{len(d['wakeups'])} |")
        self.p()
        if "idle.png" in self.made:
            self.p("![idle receivers](bench/idle.png)")
            self.p()

    def compute_goals(self) -> None:
        sink_alloc = source_has("gst-plugin/gstshmringsink.cpp", "propose_allocation")
        v = layout_version()
        ra = self.median_ratio("gst_alloc_default", "shmring", "shmsink")
        self.goal("GStreamer 1080p, allocator path, default capacity: ≥ 1.0× shmsink", ra, 1.0,
                  "×", "" if sink_alloc else
                  "no allocator on the sink yet: every frame is copied with gst_buffer_extract "
                  "while videotestsrc paints straight into shmsink's shared memory")
        rc = self.median_ratio("gst_copy_default", "shmring", "shmsink")
        self.goal("GStreamer 1080p, forced copy, default capacity: ≥ 1.0× shmsink", rc, 1.0, "×",
                  "the ring walks its whole capacity (cache/TLB footprint) where shmsink reuses "
                  "a few hot blocks; see the capacity sweep")
        rf = self.median_ratio(f"frames_{GOAL_CPP_CAPACITY}", "shmring", "memcpy")
        self.goal(f"C++ 1080p frames ({GOAL_CPP_CAPACITY} MiB ring): ≥ 0.9× memcpy", rf, 0.9, "×",
                  "a consumer in another process reads every frame from memory the producer's "
                  "core just wrote, and the ring walks its whole capacity; see the sweep")
        rs = self.median_ratio("small", "shmring", "minimal")
        self.goal("64 B messages: ≥ 1.0× the minimal head/tail ring", rs, 1.0, "×",
                  f"layout version {v}: " + ("the peer's flags word shares the cache line of "
                                             "head and tail (header ping-pong)" if v == "1" else
                                             "the wait protocol's flag loads per message"))
        idle = self.r.get("idle", {})
        if tree_has("core/src", "kMaxConsumerSleepNs = 50'000'000"):
            nap = ("the consumer naps at most 50 ms (about 20 wake-ups/s), issues a membarrier "
                   "before each sleep and looks at the producer's liveness every 200 ms")
        else:
            nap = "cause not analysed by this report"
        for name in ("shmringsrc", "FrameReader", "C++ PeekFor"):
            d = idle.get(name)
            if not d:
                continue
            self.goal(f"idle {name}: ≤ 0.1 % of a core", spread(d["cpu_pct_ns"])[0], 0.1, " %",
                      nap, lower_is_better=True)
            self.goal(f"idle {name}: ≤ 2 wake-ups/s", spread(d["wakeups"])[0], 2, "/s", nap,
                      lower_is_better=True)
            self.goal(f"idle {name}: producer death noticed ≤ 0.5 s", max(d["death_s"]), 0.5,
                      " s (worst round)", "", lower_is_better=True)

    def write(self) -> None:
        os.makedirs(self.out, exist_ok=True)
        self.made = self.plot()
        text = self.render()
        with open(os.path.join(self.out, "BENCHMARKS.md"), "w") as f:
            f.write(text)
        with open(os.path.join(self.plots, "results.json"), "w") as f:
            json.dump(self.r, f, indent=1, default=str)


CAPS = "video/x-raw,format=BGR,width=1920,height=1080"


def write(results: Dict[str, Any], out_dir: str) -> None:
    Report(results, out_dir).write()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        data = json.load(f)
    write(data, sys.argv[2])
