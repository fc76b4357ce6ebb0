#!/usr/bin/python3
"""The shmring performance report: runs every benchmark, writes docs/BENCHMARKS.md and plots.

A benchmark driver, not a test: it checks nothing about the numbers it prints.
scripts/bench.sh is the one command (release build, dependencies); this script is what it runs:

    bench/bench.py --build build-bench [--smoke] [--out docs] [--only cpp,iox,latency,gst,fanout,python,idle]

Every row compares shmring with its peer measured in the same run, in interleaved rounds
(A B A B ...): the report gives the median of the per-round ratios with their min-max, and the
median of each side with its min-max. The ratio-goal rows (GStreamer at the default capacity,
64 B messages) also run the peer a second time in each round (the A/A control, variant
PEER_aa), shmring between the two peer runs (aa_order). --smoke runs every program once
with tiny counts (no report unless --out is given): the `bench` meson test suite uses it so the
programs do not rot.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import grp
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from settle import wait_until_quiet
from shm_segments import remove_shmsink_segments, wait_for_path

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PY = "/usr/bin/python3"
CAPS_1080P = "video/x-raw,format=BGR,width=1920,height=1080"
FRAME = 1920 * 1080 * 3


class Source:
    """What the GStreamer rows' sender sends: videotestsrc's pattern and a BGR frame size.
    The issue's rows paint the default SMPTE pattern (about 2.5 ms of CPU per 1080p frame,
    more than the transport costs: those rows measure the painting); the transport rows use
    pattern=black (GStreamer caches a static pattern's frame and copies it: one memcpy per
    frame) so that what differs between the sinks shows, and smaller frames where the
    per-buffer cost of the elements shows."""

    def __init__(self, key: str, label: str, width: int, height: int, pattern: str,
                 frames_factor: int) -> None:
        self.key, self.label = key, label
        self.width, self.height, self.pattern = width, height, pattern
        self.frames_factor = frames_factor  # times --gst-frames (small frames go faster)

    @property
    def caps(self) -> str:
        return f"video/x-raw,format=BGR,width={self.width},height={self.height}"

    def head(self, n: int) -> List[str]:
        pat = [] if self.pattern == "smpte" else [f"pattern={self.pattern}"]
        return ["gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={n}"] + pat + ["!",
                                                                                   self.caps]


SMPTE_1080P = Source("", "1080p", 1920, 1080, "smpte", 1)
# The transport rows (key suffix of gst_{alloc,copy}_KEY and fanout_black_N).
# Frames a run: about 1-2 s at the rates these rows reach on the 2-core machine (2x-16x
# made runs of 0.2-0.5 s, short enough for one scheduler hiccup to decide a round);
# 320x240 only 32x (about 0.3 s for shmring): shmsink stalled in 12 of 14 runs of 128x.
TRANSPORT_SOURCES = (Source("black1080", "1080p, pattern=black", 1920, 1080, "black", 6),
                     Source("black720", "1280×720, pattern=black", 1280, 720, "black", 16),
                     Source("black480", "640×480, pattern=black", 640, 480, "black", 48),
                     Source("black240", "320×240, pattern=black", 320, 240, "black", 32))
CAPACITIES_MIB = (16, 32, 64, 128)
DEFAULT_CPP_CAPACITY_MIB = 32  # shmringsink's default capacity; the C++ goal row uses it
# Latency: samples over all rounds (each round takes its share), shmring and iceoryx in
# turn. A round of 1000 wake-ups lasts about a second.
LATENCY_ROUNDS = 3
LATENCY_ONEWAY_SAMPLES = 21000
LATENCY_WAKEUP_SAMPLES = 3000

_names = [0]


def unique(tag: str) -> str:
    _names[0] += 1
    return f"kb{tag}{os.getpid()}_{_names[0]}"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Config:
    def __init__(self, args: argparse.Namespace) -> None:
        self.build = os.path.abspath(args.build)
        self.smoke = args.smoke
        # 6 rounds: the lowest to highest of 6 is a 96.9 % interval of the median (5: 93.8 %).
        self.rounds = args.rounds or (1 if args.smoke else 6)
        # The rows with an A/A control get more rounds: with 9 the confidence interval of
        # the median (report.py median_ci) is the 2nd to 8th sorted round (96.1 %), with 11
        # the 2nd to 10th (98.8 %), where 8 or fewer leave only lowest to highest. The
        # GStreamer goal rows (default capacity) run 9, the 64 B row (about 5 s a round) 11.
        self.gst_rounds = args.rounds or (1 if args.smoke else 9)
        self.small_rounds = args.rounds or (1 if args.smoke else 11)
        self.sweep_rounds = 1 if args.smoke else (args.sweep_rounds or 3)
        self.gst_frames = args.gst_frames or (30 if args.smoke else 600)
        self.small = 20_000 if args.smoke else 20_000_000
        self.cpp_frames = 10 if args.smoke else 300
        self.idle_window = 1.0 if args.smoke else args.idle_window
        self.idle_rounds = 1 if args.smoke else 3
        self.fanout_rounds = 1 if args.smoke else 6
        self.env = dict(os.environ)
        self.env["GST_PLUGIN_PATH"] = os.path.join(self.build, "gst-plugin")
        self.env["PYTHONPATH"] = os.path.join(ROOT, "python")
        self.roudi: Optional["Roudi"] = None
        self.env.setdefault("GST_REGISTRY", os.path.join(self.build, "bench-registry.bin"))

    def exe(self, name: str) -> str:
        return os.path.join(self.build, "bench", name)


# ---------------------------------------------------------------- GStreamer throughput


def gst_sender(cfg: Config, sink: str, n: int, copy: bool,
               src: Source = SMPTE_1080P) -> subprocess.Popen:
    ident = "identity drop-allocation=true ! " if copy else ""
    cmd = (src.head(n) + ["!"] + (ident.split() if ident else []) + sink.split())
    return subprocess.Popen(cmd, env=cfg.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def gst_receive(cfg: Config, source: str, n: int) -> Tuple[float, int, float]:
    """(frames/s, buffers seen, receiver CPU ms per frame) of one gst_receive.py run (0
    buffers seen when it stalled before the end)."""
    warmup = min(20, n // 4)
    out = subprocess.run([PY, os.path.join(ROOT, "bench", "gst_receive.py"), source, str(n),
                          str(warmup)], env=cfg.env, capture_output=True, text=True,
                         timeout=180)
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        log(f"  receiver {source!r} printed no result (exit {out.returncode}): "
            f"{out.stderr.strip()[-300:]}")
        return float("nan"), 0, float("nan")
    if res["error"]:
        log(f"  receiver {source!r}: {res['error']}")
    if res.get("stalled"):
        return res["fps"], 0, res["cpu_ms"]
    return res["fps"], res["buffers"], res["cpu_ms"]


def end_sender(proc: subprocess.Popen) -> None:
    """Ends sender `proc` (started with start_new_session: SIGKILL to its group) unless it
    was reaped already, reaps it and removes the shm areas it left when it ran a shmsink
    (shm_segments.py: only names carrying its pid)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    remove_shmsink_segments(proc.pid)


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def gst_once(cfg: Config, variant: str, copy: bool, cap_mib: Optional[int],
             src: Source = SMPTE_1080P) -> Tuple[float, float, float]:
    """One sender and one receiver: (frames/s, sender CPU ms per frame over its whole run,
    receiver CPU ms per frame over the counted buffers). A run whose receiver did not get
    every buffer (the stream stalled) gives NaN for all three: it did not carry the stream."""
    n = cfg.gst_frames * src.frames_factor
    if variant == "shmring":
        name = unique("g")
        cap = f" capacity={cap_mib << 20}" if cap_mib else ""
        sender = gst_sender(cfg, f"shmringsink shm-name={name} sync=false{cap}", n, copy, src)
        try:
            fps, got, rcpu = gst_receive(cfg, f"shmringsrc shm-name={name}", n)
            scpu = wait_rusage(sender, 10 if got >= n else 0)
        finally:
            end_sender(sender)
            if os.path.exists(f"/dev/shm/{name}"):  # a sender that had to be killed
                os.unlink(f"/dev/shm/{name}")
    else:
        sock = os.path.join(tempfile.gettempdir(), unique("s") + ".sock")
        cap = f" shm-size={cap_mib << 20}" if cap_mib else ""
        sender = gst_sender(cfg, f"shmsink socket-path={sock} sync=false "
                            f"wait-for-connection=true{cap}", n, copy, src)
        try:
            wait_for_path(sock)  # shmsink's socket: the sender is ready
            fps, got, rcpu = gst_receive(cfg, f"shmsrc socket-path={sock} ! {src.caps}", n)
            scpu = wait_rusage(sender, 10 if got >= n else 0)
        finally:
            end_sender(sender)  # a killed shmsink leaves its shm area
            if os.path.exists(sock):
                os.unlink(sock)
    if got < n:
        log(f"  {variant} {'copy' if copy else 'alloc'} {cap_mib} {src.key or '1080p'}: {got} "
            f"of {n} buffers (stalled: no result this round)")
        return float("nan"), float("nan"), float("nan")
    return fps, 1e3 * scpu / n, rcpu


def wait_rusage(proc: subprocess.Popen, timeout: float = 30) -> float:
    """Waits for `proc` (SIGKILL after `timeout` s) and returns its CPU seconds (user +
    system, all threads, from wait4's rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            # A shmsink sender that had to be killed leaves its shm area: remove it.
            remove_shmsink_segments(proc.pid)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = float("inf")
        time.sleep(0.01)


def fanout_sender(cfg: Config, clients: int, pipeline: List[str]) -> subprocess.Popen:
    """bench/gst_fanout_sender (a C++ gst-launch-1.0 -q): every variant of the fan-out rows
    runs its sender with it, so the sender CPU (wait4 over the whole process) is charged the
    same way. It holds the stream (PAUSED, the first frame prerolled) until its shmsink
    name=sink has `clients` clients and every receiver slot of each shmringsink's ring is
    attached."""
    return subprocess.Popen([cfg.exe("gst_fanout_sender"), str(clients), " ".join(pipeline)],
                            env=cfg.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def gst_fanout_once(cfg: Config, variant: str, receivers: int,
                    src: Source = SMPTE_1080P) -> Tuple[float, float, float]:
    """One sender, `receivers` receiver processes at once: (frames/s of the slowest receiver,
    sender CPU ms per frame, mean receiver CPU ms per frame). Variants: "shmring" (one
    shmringsink max-receivers=N, N lossless shmringsrc on that one ring: each frame written
    once), "tee+rings" (tee into one shmringsink per receiver), "shmsink" (one shmsink, one
    shmsrc client per receiver). Every receiver gets the stream from its first frame: the
    sender (fanout_sender) holds it until every shmringsrc receiver is attached to its ring
    (they are started first and wait for the ring) or every shmsrc client is connected to
    the shmsink. A round in which a receiver did not count every frame gives no result."""
    n = cfg.gst_frames * src.frames_factor
    head = src.head(n)[2:]  # the pipeline without "gst-launch-1.0 -q"
    names: List[str] = []
    early: List[subprocess.Popen] = []
    warmup = min(20, n // 4)

    def receiver(source: str) -> subprocess.Popen:
        return subprocess.Popen([PY, os.path.join(ROOT, "bench", "gst_receive.py"), source,
                                 str(n), str(warmup)], env=cfg.env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    sender: Optional[subprocess.Popen] = None
    sock = ""
    try:
        if variant == "shmring":
            names = [unique("f")]
            # The receivers first (they wait for the ring); the sender starts the stream once
            # all N are attached.
            early = [receiver(f"shmringsrc shm-name={names[0]} mode=lossless")
                     for _ in range(receivers)]
            sender = fanout_sender(cfg, 0, head + ["!", "shmringsink", f"shm-name={names[0]}",
                                                   f"max-receivers={receivers}", "sync=false"])
        elif variant == "tee+rings":
            names = [unique("f") for _ in range(receivers)]
            branches: List[str] = []
            for name in names:
                branches += ["t.", "!", "queue", "!", "shmringsink", f"shm-name={name}",
                             "sync=false"]
            early = [receiver(f"shmringsrc shm-name={name}") for name in names]
            sender = fanout_sender(cfg, 0, head + ["!", "tee", "name=t"] + branches)
        else:
            sock = os.path.join(tempfile.gettempdir(), unique("f") + ".sock")
            # shmsrc needs the socket: the sender first, holding the stream until all N
            # clients are connected (wait-for-connection=true alone waits for the first one).
            sender = fanout_sender(cfg, receivers, head + [
                "!", "shmsink", "name=sink", f"socket-path={sock}", "sync=false",
                "wait-for-connection=true"])
            wait_for_path(sock)  # shmsink's socket: the sender is ready
            early = [receiver(f"shmsrc socket-path={sock} ! {src.caps}")
                     for _ in range(receivers)]
        procs = early
        fps = []
        rcpu = []
        complete = True
        for proc in procs:
            out, _ = proc.communicate(timeout=180)
            try:
                res = json.loads(out.strip().splitlines()[-1])
                fps.append(res["fps"])
                rcpu.append(res["cpu_ms"])
                # A receiver that stopped getting buffers before the end (stalled) or that
                # missed some (it counted fewer than were sent) did not get the whole stream.
                complete = (complete and not res.get("stalled", False)
                            and res.get("buffers", 0) >= n)
            except (IndexError, ValueError):
                fps.append(float("nan"))
                rcpu.append(float("nan"))
                complete = False
        cpu = wait_rusage(sender, 30 if complete else 0)
    finally:
        # Also when a step raised (a receiver over its guard): nothing left running, and
        # no ring, socket or shmsink shm area left behind.
        for p in early:
            if p.poll() is None:
                p.kill()
                p.wait()
        if sender is not None:
            end_sender(sender)
        if sock and os.path.exists(sock):
            os.unlink(sock)
        for name in names:
            if os.path.exists(f"/dev/shm/{name}"):
                os.unlink(f"/dev/shm/{name}")
    if not complete:  # a receiver did not get the whole stream: no result this round
        log(f"  fanout {variant} N={receivers} {src.key or '1080p'}: stalled (no result)")
        return float("nan"), float("nan"), float("nan")
    return min(fps), 1e3 * cpu / n, statistics.mean(rcpu)


FANOUT = (1, 2, 4)


def bench_fanout(cfg: Config, results: Dict[str, Any]) -> None:
    # The rows (SMPTE: the painting dominates), then the transport rows with a cheap
    # source (shmring on one ring vs shmsink only).
    for src, variants, prefix in ((SMPTE_1080P, ("shmring", "tee+rings", "shmsink"), "fanout_"),
                                  (TRANSPORT_SOURCES[0], ("shmring", "shmsink"),
                                   "fanoutblack_")):
        for receivers in ((1, 2) if cfg.smoke else FANOUT):
            row: Dict[str, Any] = {"unit": "frames/s", "sender_cpu_ms": {},
                                   "receiver_cpu_ms": {}, "pattern": src.pattern}
            for _ in range(cfg.fanout_rounds):
                for variant in variants:
                    fps, ms, rms = gst_fanout_once(cfg, variant, receivers, src)
                    row.setdefault(variant, []).append(fps)
                    row["sender_cpu_ms"].setdefault(variant, []).append(ms)
                    row["receiver_cpu_ms"].setdefault(variant, []).append(rms)
            results["rows"][f"{prefix}{receivers}"] = row
            log(f"{prefix}{receivers}: " + " ".join(
                f"{v} {median_or_nan(row[v]):.0f}" for v in variants))


def aa_order(peer: str, variant: str, r: int) -> List[str]:
    """The order of round `r` (from 0) of a row with an A/A control: `variant` always between
    two runs of the peer, the second stored as PEER_aa, which two swap places from round to
    round (A B A', then A' B A, ...). The report takes `variant` against the geometric mean
    of the two peer runs (report.py row_ratios), which cancels a drift of the machine's
    speed that is linear over the round, and A'/A as the A/A control: how far two runs of
    the same thing stray."""
    return [peer, variant, f"{peer}_aa"] if r % 2 == 0 else [f"{peer}_aa", variant, peer]


def gst_row(cfg: Config, copy: bool, cap: Optional[int], src: Source,
            rounds: int, aa: bool = False) -> Dict[str, Any]:
    """One GStreamer row: shmring and shmsink in `rounds` interleaved rounds; with `aa`,
    shmsink a second time in each round ("shmsink_aa", the A/A control), in aa_order."""
    variants = ["shmring", "shmsink"] + (["shmsink_aa"] if aa else [])
    d: Dict[str, Any] = {"unit": "frames/s", **{v: [] for v in variants},
                         "sender_cpu_ms": {v: [] for v in variants},
                         "receiver_cpu_ms": {v: [] for v in variants},
                         "frames": cfg.gst_frames * src.frames_factor, "pattern": src.pattern,
                         "size": [src.width, src.height]}
    for r in range(rounds):
        for variant in (aa_order("shmsink", "shmring", r) if aa else ("shmring", "shmsink")):
            run = "shmsink" if variant == "shmsink_aa" else variant
            fps, scpu, rcpu = gst_once(cfg, run, copy, cap, src)
            d[variant].append(fps)
            d["sender_cpu_ms"][variant].append(scpu)
            d["receiver_cpu_ms"][variant].append(rcpu)
    return d


def median_or_nan(v: List[float]) -> float:
    v = [x for x in v if x == x]
    return statistics.median(v) if v else float("nan")


def bench_gst(cfg: Config, results: Dict[str, Any]) -> None:
    caps: List[Optional[int]] = [None] + ([32] if cfg.smoke else list(CAPACITIES_MIB))
    for copy in (False, True):
        mode = "copy" if copy else "alloc"
        # The goal rows (default capacity) get every round, the sweep fewer.
        for cap in caps:
            row = f"gst_{mode}_{cap or 'default'}"
            # The goal row (default capacity) with the A/A control; the sweep without.
            d = gst_row(cfg, copy, cap, SMPTE_1080P, cfg.gst_rounds if cap is None
                        else cfg.sweep_rounds, aa=cap is None)
            results["rows"][row] = d
            log_gst_row(row, d)
        # The transport rows: default capacity, a cheap source, with the A/A control.
        for src in (TRANSPORT_SOURCES[:1] if cfg.smoke else TRANSPORT_SOURCES):
            row = f"gst_{mode}_{src.key}"
            d = gst_row(cfg, copy, None, src, cfg.gst_rounds, aa=True)
            results["rows"][row] = d
            log_gst_row(row, d)


def log_gst_row(row: str, d: Dict[str, Any]) -> None:
    log(f"{row}: " + " ".join(f"{v} {median_or_nan(d[v]):.0f}"
                              for v in ("shmring", "shmsink", "shmsink_aa") if v in d))


# ---------------------------------------------------------------- C++ rows (+ iceoryx)


def ring_bench(cfg: Config, only: str, extra: List[str]) -> List[Dict[str, Any]]:
    cmd = [cfg.exe("ring_bench"), "--rounds", "1", "--only", only,
           "--small-count", str(cfg.small), "--frames", str(cfg.cpp_frames)] + extra
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


class Roudi:
    """iox-roudi with bench/iox_roudi.toml, for the iceoryx rows."""

    def __init__(self) -> None:
        # -k 1: at shutdown, SIGKILL within 1 s an application that does not answer.
        self.proc = subprocess.Popen(["iox-roudi", "-c", os.path.join(ROOT, "bench",
                                                                      "iox_roudi.toml"),
                                      "-l", "error", "-k", "1"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(1.5)
        if os.path.exists("/dev/shm/iceoryx_mgmt") and self.proc.poll() is not None:
            raise RuntimeError("another RouDi seems to run (/dev/shm/iceoryx_mgmt exists)")
        if self.proc.poll() is not None:
            raise RuntimeError(f"iox-roudi exited with {self.proc.returncode}")

    # What RouDi leaves behind when it does not shut down cleanly: its management segment,
    # the payload segment (named after the user's group) and its lock files.
    LEFTOVERS = ("/dev/shm/iceoryx_mgmt", "/dev/shm/{group}", "/tmp/roudi.lock",
                 "/tmp/iox-unique-roudi.lock")

    def close(self) -> None:
        # RouDi 2.0 aborts at shutdown while it still lists an application that was killed
        # (the idle row kills a publisher); its monitoring drops such entries within ~2 s.
        time.sleep(3)
        self.proc.send_signal(signal.SIGINT)
        stop(self.proc, 20)
        if self.proc.returncode != 0:
            group = grp.getgrgid(os.getgid()).gr_name
            for path in self.LEFTOVERS:
                try:
                    os.unlink(path.format(group=group))
                except OSError:
                    pass


def end_iox(proc: subprocess.Popen, how: int) -> None:
    """Ends an iox_bench process (SIGTERM: deregisters from RouDi; SIGKILL: a crash, RouDi
    cleans up after it) and removes the lock file a killed iceoryx runtime leaves behind."""
    if proc.poll() is None:
        proc.send_signal(how)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for lock in glob.glob(f"/tmp/iox_bench_*{proc.pid}.lock"):
        try:
            os.unlink(lock)
        except OSError:
            pass


def iox_once(cfg: Config, kind: str, count: int) -> float:
    topic = unique("t")
    sub = subprocess.Popen([cfg.exe("iox_bench"), "sub", kind, str(count), topic],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pub = subprocess.Popen([cfg.exe("iox_bench"), "pub", kind, str(count), topic],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out, _ = sub.communicate(timeout=300)
    pub.wait(60)
    if sub.returncode != 0:
        raise RuntimeError(f"iox_bench sub {kind} exited {sub.returncode}")
    return float(json.loads(out.strip().splitlines()[-1])["value"])


def start_roudi(cfg: Config, results: Dict[str, Any]) -> Optional[Roudi]:
    if not os.access(cfg.exe("iox_bench"), os.X_OK) or not shutil_which("iox-roudi"):
        results["iceoryx"] = "not built (libiceoryx-posh-dev or iox-roudi missing)"
        return None
    try:
        roudi = Roudi()
    except (OSError, RuntimeError) as e:
        results["iceoryx"] = f"iox-roudi did not start: {e}"
        return None
    results["iceoryx"] = "ok"
    return roudi


def bench_cpp(cfg: Config, results: Dict[str, Any]) -> None:
    rows: Dict[str, Dict[str, Any]] = results["rows"]
    caps = "32" if cfg.smoke else ",".join(str(c) for c in CAPACITIES_MIB)
    with_iox = cfg.roudi is not None

    def iox(kind: str) -> None:
        nonlocal with_iox
        if not with_iox:
            return
        try:
            # iceoryx moves far fewer 64 B samples/s: a tenth of the count keeps its
            # rounds as long as the others'.
            n = max(cfg.small // 10, 1000) if kind == "small" else cfg.cpp_frames
            v = iox_once(cfg, kind, n)
            target = "small" if kind == "small" else f"frames_{DEFAULT_CPP_CAPACITY_MIB}"
            rows[target].setdefault("iceoryx", []).append(v)
        except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            results["iceoryx"] = f"iox_bench failed: {e}"
            with_iox = False

    for r in range(cfg.small_rounds):
        # The 64 B goal row: shmring, minimal and minimal again (the A/A control,
        # "minimal_aa"), one ring_bench process each, in aa_order.
        for variant in aa_order("minimal", "shmring", r):
            run = "minimal" if variant == "minimal_aa" else variant
            for rec in ring_bench(cfg, "small", ["--variants", run]):
                row = rows.setdefault(rec["row"], {"unit": rec["unit"]})
                row.setdefault(variant, []).append(rec["value"])
        # Information, not a goal: the minimal ring plus the per-message work of shmring's
        # protocol (ring_bench --variants minimal_protocol), what keeping it costs.
        for rec in ring_bench(cfg, "small", ["--variants", "minimal_protocol"]):
            rows["small"].setdefault(rec["variant"], []).append(rec["value"])
        iox("small")
        log(f"64 B round {r + 1}/{cfg.small_rounds} done")
    for r in range(cfg.rounds):
        for rec in ring_bench(cfg, "frames", ["--caps", caps]):
            row = rows.setdefault(rec["row"], {"unit": rec["unit"]})
            row.setdefault(rec["variant"], []).append(rec["value"])
        iox("frames")
        log(f"C++ frames round {r + 1}/{cfg.rounds} done")


def shutil_which(name: str) -> Optional[str]:
    import shutil
    return shutil.which(name)


def bench_latency(cfg: Config, results: Dict[str, Any]) -> None:
    """One-way and wake-up latency of shmring (ring_bench) and iceoryx (iox_bench) in
    interleaved rounds (shmring first in odd rounds, iceoryx first in even ones): each
    round's percentiles go to results["latency"][row] as one entry of a list."""
    rounds = 1 if cfg.smoke else LATENCY_ROUNDS
    oneway = "200" if cfg.smoke else str(LATENCY_ONEWAY_SAMPLES // rounds)
    wakeup = "50" if cfg.smoke else str(LATENCY_WAKEUP_SAMPLES // rounds)
    lat: Dict[str, List[Dict[str, Any]]] = results["latency"]

    def ours() -> None:
        for rec in ring_bench(cfg, "latency", ["--latency-samples", oneway,
                                               "--wake-samples", wakeup]):
            lat.setdefault(rec["row"], []).append(rec)

    failed: Set[str] = set()  # iceoryx rows that failed once: not tried again

    def theirs() -> None:
        if cfg.roudi is None:
            return
        for row, how, n in (("latency_oneway", "poll", oneway), ("latency_wakeup", "wait",
                                                                  wakeup)):
            if row in failed:
                continue
            try:
                with tempfile.NamedTemporaryFile(dir="/dev/shm", prefix="kbench_ack") as ack:
                    ack.write(bytes(4096))
                    ack.flush()
                    topic = unique("l")
                    sub = subprocess.Popen([cfg.exe("iox_bench"), "lat-sub", how, n, topic,
                                            ack.name], stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, text=True)
                    pub = subprocess.Popen([cfg.exe("iox_bench"), "lat-pub", how, n, topic,
                                            ack.name], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                    out, _ = sub.communicate(timeout=300)
                    pub.wait(60)
                rec = json.loads(out.strip().splitlines()[-1])
                lat.setdefault(row + "_iceoryx", []).append(dict(rec, row=row,
                                                                 variant="iceoryx"))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as e:
                results["iceoryx_latency"] = f"iox_bench {how} latency failed: {e}"
                failed.add(row)

    for r in range(rounds):
        for step in ((ours, theirs) if r % 2 == 0 else (theirs, ours)):
            step()
        log(f"latency round {r + 1}/{rounds} done")


# ---------------------------------------------------------------- Python frames


def bench_python(cfg: Config, results: Dict[str, Any]) -> None:
    """bench/py_consumer_bench.py --only frames: the Python-side cost of a 1080p zero-copy
    view (its own Markdown table, embedded in the report as it prints it)."""
    peer = os.path.join(cfg.build, "tests", "tools", "shmring_peer")
    if not os.access(peer, os.X_OK):
        results["python"] = f"not measured: {peer} not built (-Dtests=false?)"
        return
    out = subprocess.run([PY, os.path.join(ROOT, "bench", "py_consumer_bench.py"), "--peer", peer,
                          "--only", "frames", "--frames", "20" if cfg.smoke else "300",
                          "--runs", "1" if cfg.smoke else "3"], env=cfg.env,
                         capture_output=True, text=True, timeout=600)
    results["python"] = out.stdout if out.returncode == 0 else \
        f"py_consumer_bench.py failed ({out.returncode}): {out.stderr.strip()[-300:]}"


# ---------------------------------------------------------------- idle receivers

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> Tuple[float, int, int, Dict[str, int]]:
    """(CPU seconds from /proc/PID/stat utime+stime, CPU ns from task schedstat,
    context switches of all threads, context switches per thread name: voluntary under the
    name, nonvoluntary under "NAME (preempted)")."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    ns = 0
    switches = 0
    per_thread: Dict[str, int] = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(os.path.join(task, "schedstat")) as f:
                ns += int(f.read().split()[0])
            with open(os.path.join(task, "comm")) as f:
                comm = f.read().strip()
            with open(os.path.join(task, "status")) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
                        # "comm" (sleeps and wakes) and "comm (preempted)" (nonvoluntary)
                        key = comm + (" (preempted)" if line.startswith("non") else "")
                        per_thread[key] = per_thread.get(key, 0) + int(line.split()[1])
        except (OSError, ValueError):
            pass  # a thread that ended between glob and open
    return cpu, ns, switches, per_thread


IDLE_PY = ("import sys\n"
           "from shmring import FrameReader\n"
           "r = FrameReader(sys.argv[1], timeout=20)\n"
           "try:\n"
           "    for f in r:\n"
           "        del f\n"
           "except Exception as e:\n"
           "    print(type(e).__name__, e, file=sys.stderr)\n")

IDLE_PY_SENDER_ROW = "shmringsrc (from a Python FrameWriter)"
# The Python sender of that idle row: one black 1080p BGR frame a second through
# FrameWriter, until killed.
IDLE_PY_SENDER = ("import sys, time\n"
                  "import numpy as np\n"
                  "from shmring import FrameWriter\n"
                  "caps = 'video/x-raw,format=BGR,width=1920,height=1080,framerate=1/1'\n"
                  "frame = np.zeros((1080, 1920, 3), np.uint8)\n"
                  "with FrameWriter(sys.argv[1], caps=caps) as w:\n"
                  "    n = 0\n"
                  "    while True:\n"
                  "        w.write(frame, pts=n * 1_000_000_000)\n"
                  "        n += 1\n"
                  "        time.sleep(1.0)\n")


def idle_once(cfg: Config, receiver: str) -> Dict[str, Any]:
    live = (f"videotestsrc is-live=true ! {CAPS_1080P},framerate=1/1 ! ")
    name = sock = ""
    if receiver == "iceoryx WaitSet":
        topic = unique("w")
        sender = subprocess.Popen([cfg.exe("iox_bench"), "idle-pub", topic],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        cmd = [cfg.exe("iox_bench"), "idle-sub", topic]
    elif receiver == "shmsrc":
        sock = os.path.join(tempfile.gettempdir(), unique("i") + ".sock")
        sender = subprocess.Popen(["gst-launch-1.0", "-q"] + (live + f"shmsink socket-path={sock}"
                                  " wait-for-connection=false").split(), env=cfg.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        wait_for_path(sock)  # shmsink's socket: the sender is ready
        cmd = ["gst-launch-1.0", "-q", "shmsrc", f"socket-path={sock}", "is-live=true", "!",
               CAPS_1080P + ",framerate=1/1", "!", "fakesink"]
    else:
        name = unique("i")
        if receiver == IDLE_PY_SENDER_ROW:
            sender_cmd = [PY, "-c", IDLE_PY_SENDER, name]
        else:
            sender_cmd = ["gst-launch-1.0", "-q"] + (live + f"shmringsink shm-name={name}").split()
        sender = subprocess.Popen(sender_cmd, env=cfg.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        if receiver == IDLE_PY_SENDER_ROW:
            # The Python sender starts slower (numpy, a 64 MiB ring faulted in): the
            # receiver's warm-up counts from the ring's creation, as shmsrc's from the socket.
            wait_for_path(f"/dev/shm/{name}")
        src = ["gst-launch-1.0", "-q", "shmringsrc", f"shm-name={name}", "is-live=true", "!",
               "fakesink"]
        cmd = {"shmringsrc": src,
               IDLE_PY_SENDER_ROW: src,
               "FrameReader": [PY, "-c", IDLE_PY, name],
               "C++ PeekFor": [cfg.exe("idle_receiver"), name, "20"]}[receiver]
    recv = subprocess.Popen(cmd, env=cfg.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        time.sleep(1.0 if cfg.smoke else 3.0)  # attach, first frames, warm caches
        if recv.poll() is not None:
            raise RuntimeError(f"idle receiver {receiver} exited early ({recv.returncode})")
        cpu0, ns0, sw0, th0 = proc_sample(recv.pid)
        t0 = time.monotonic()
        time.sleep(cfg.idle_window)
        cpu1, ns1, sw1, th1 = proc_sample(recv.pid)
        window = time.monotonic() - t0
        # Producer death: SIGKILL the sender, time until the receiver process has ended.
        if receiver == "iceoryx WaitSet":
            end_iox(sender, signal.SIGKILL)
        else:
            os.killpg(sender.pid, signal.SIGKILL)
        killed = time.monotonic()
        sender.wait()
        death: Optional[float] = None
        # An iceoryx subscriber is not told that its publisher died: nothing to time.
        while receiver != "iceoryx WaitSet" and time.monotonic() - killed < 5.0:
            if recv.poll() is not None:
                death = time.monotonic() - killed
                break
            time.sleep(0.005)
    finally:
        if receiver == "iceoryx WaitSet":
            end_iox(recv, signal.SIGTERM)
            end_iox(sender, signal.SIGKILL)
        for p in (recv, sender):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        # The killed shmsink sender (receiver shmsrc) leaves its shm area.
        remove_shmsink_segments(sender.pid)
        if sock and os.path.exists(sock):
            os.unlink(sock)
        if name and os.path.exists(f"/dev/shm/{name}"):  # the killed sender's segment
            os.unlink(f"/dev/shm/{name}")
    return {"cpu_pct": 100 * (cpu1 - cpu0) / window, "cpu_pct_ns": 100 * (ns1 - ns0) / 1e9 / window,
            "wakeups": (sw1 - sw0) / window,
            "threads": {k: (v - th0.get(k, 0)) / window for k, v in th1.items()},
            "death_s": (float("nan") if receiver == "iceoryx WaitSet" else
                        death if death is not None else float("inf"))}


IDLE_RECEIVERS = ("shmringsrc", "FrameReader", "C++ PeekFor", IDLE_PY_SENDER_ROW, "shmsrc")


def bench_idle(cfg: Config, results: Dict[str, Any]) -> None:
    idle: Dict[str, Dict[str, List[Any]]] = {r: {} for r in IDLE_RECEIVERS}
    receivers = IDLE_RECEIVERS + (("iceoryx WaitSet",) if cfg.roudi else ())
    idle.update({r: {} for r in receivers})
    for i in range(cfg.idle_rounds):
        for receiver in receivers:
            res = idle_once(cfg, receiver)
            for k, v in res.items():
                idle[receiver].setdefault(k, []).append(v)
        log(f"idle round {i + 1}/{cfg.idle_rounds} done")
    results["idle"] = idle
    results["idle_window_s"] = cfg.idle_window


# ---------------------------------------------------------------- machine


def machine() -> Dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", ROOT] + list(a), capture_output=True,
                              text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    buildtype = "unknown"
    try:
        out = subprocess.run(["meson", "introspect", "--buildoptions", "."], capture_output=True,
                             text=True, cwd=os.environ.get("BENCH_BUILD", ".")).stdout
        for opt in json.loads(out or "[]"):
            if opt["name"] == "buildtype":
                buildtype = opt["value"]
    except (OSError, ValueError):
        pass
    return {"cpu": model, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "uname": " ".join(platform.uname()[:3]), "commit": git("rev-parse", "HEAD"),
            "commit_subject": git("log", "-1", "--format=%s"),
            "dirty": "yes" if dirty else "no", "buildtype": buildtype,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(),
            "gstreamer": subprocess.run(["gst-launch-1.0", "--version"], capture_output=True,
                                        text=True).stdout.splitlines()[1:2][0]
            if shutil_which("gst-launch-1.0") else "?"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--out", help="write BENCHMARKS.md and bench/*.png under this directory")
    ap.add_argument("--smoke", action="store_true", help="tiny counts, every program once")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--sweep-rounds", type=int,
                    help="rounds of the GStreamer capacity sweep rows (default 3)")
    ap.add_argument("--gst-frames", type=int)
    ap.add_argument("--idle-window", type=float, default=10.0)
    ap.add_argument("--only", default="cpp,iox,latency,gst,fanout,python,idle")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    cfg = Config(args)
    os.environ["BENCH_BUILD"] = cfg.build
    only = set(args.only.split(","))
    results: Dict[str, Any] = {"rows": {}, "latency": {}, "rounds": cfg.rounds,
                               "gst_frames": cfg.gst_frames, "small_count": cfg.small,
                               "cpp_frames": cfg.cpp_frames, "smoke": cfg.smoke}
    results["machine"] = machine()
    if not cfg.smoke:
        # Not while the build that scripts/bench.sh just ran, or anyone else's work, still
        # holds the CPUs (a smoke run measures nothing: it does not wait).
        log("waiting for the CPUs to be quiet (at most 3 min)")
        settled = wait_until_quiet()
        results["busy_before"] = settled.busy_share
        results["settle_s"] = settled.waited_s
        log(f"other work: {100 * settled.busy_share:.1f} % of the CPUs after "
            f"{settled.waited_s:.0f} s" + ("" if settled.quiet else " (gave up waiting)"))
    results["load_before"] = os.getloadavg()
    started = time.monotonic()
    log(f"load average {results['load_before']}, build {cfg.build}")
    steps: List[Tuple[str, Callable[[], None]]] = [
        ("cpp", lambda: bench_cpp(cfg, results)),
        ("latency", lambda: bench_latency(cfg, results)),
        ("gst", lambda: bench_gst(cfg, results)),
        ("fanout", lambda: bench_fanout(cfg, results)),
        ("python", lambda: bench_python(cfg, results)),
        ("idle", lambda: bench_idle(cfg, results)),
    ]
    cfg.roudi = start_roudi(cfg, results) if "iox" in only else None
    try:
        for key, step in steps:
            if key in only:
                log(f"running {key}")
                try:
                    step()
                except Exception as e:  # keep what the other steps measured
                    log(f"{key} failed: {type(e).__name__}: {e}")
                    results.setdefault("errors", {})[key] = f"{type(e).__name__}: {e}"
                    if cfg.smoke:
                        raise
    finally:
        if cfg.roudi:
            cfg.roudi.close()
    results["load_after"] = os.getloadavg()
    results["duration_s"] = time.monotonic() - started
    log(f"load average {results['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    if args.out:
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        import report
        report.write(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
