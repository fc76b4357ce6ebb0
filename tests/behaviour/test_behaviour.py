"""The shared behaviour suite: every scenario of scenarios.json, in every language assignment.

Each scenario names its language slots (e.g. producer/consumer, or first/second); every
assignment of C++ and Python to those slots is one test. Each actor of the scenario runs
as its own process (tests/behaviour/actor.cpp or actor.py), all at the same time, and
this harness routes the signals between them, performs the harness's own steps (kill,
start, poke the segment) and finally compares what each actor reported with what the
table expects. A missing driver, an unknown operation, an unsupported API or a hang
is a failure, never a skip.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("SHMRING_SOURCE_ROOT", os.path.abspath(os.path.join(HERE, "..", "..")))
TABLE = os.path.join(HERE, "scenarios.json")
LANGUAGES = ("cpp", "py")
# Far longer than any scenario needs on a loaded machine; only turns a hang into a failure.
WATCHDOG_S = float(os.environ.get("SHMRING_BEHAVIOUR_WATCHDOG_S", "60"))

with open(TABLE, encoding="utf-8") as _f:
    SCENARIOS: List[Dict[str, Any]] = json.load(_f)["scenarios"]

# Known drifts another change is fixing, each an xfail(strict=True) so that the fix turns
# it into a failure asking for the entry's removal. By scenario: {(scenario, assignment such
# as "producer=py,consumer=cpp", or None = every assignment): reason}; by operation:
# {(language, op): reason} marks every case in which an actor of that language performs op.
KNOWN_DRIFTS: Dict[Tuple[str, Optional[str]], str] = {}
KNOWN_OP_DRIFTS: Dict[Tuple[str, str], str] = {}

_TOKEN = os.urandom(2).hex()
_counter = itertools.count()


def payload(length: int, seed: int) -> bytes:
    """The payload generator of actor.py / actor.cpp: byte i = (i*31 + seed*17 + 5) mod 251."""
    return bytes((i * 31 + seed * 17 + 5) % 251 for i in range(length))


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def cpp_actor() -> str:
    path = os.environ.get("SHMRING_BEHAVIOUR_ACTOR") or os.path.join(
        os.environ.get("SHMRING_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build")),
        "tests", "behaviour", "behaviour_actor")
    if not os.access(path, os.X_OK):
        pytest.fail(f"the C++ driver {path} is not built (ninja -C build)")
    return path


def driver_command(lang: str, scenario: str, actor: str, ring: str,
                   table: str = TABLE) -> List[str]:
    args = ["--table", table, "--scenario", scenario, "--actor", actor, "--ring", ring]
    if lang == "cpp":
        return [cpp_actor()] + args
    return [sys.executable, os.path.join(HERE, "actor.py")] + args


def python_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(SOURCE_ROOT, "python")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Process:
    """One actor's process, with threads turning its stdout lines into queue events."""

    def __init__(self, name: str, lang: str, cmd: List[str], events: "queue.Queue[Any]") -> None:
        self.name, self.lang = name, lang
        self.reports: List[Dict[str, Any]] = []
        self.progress: List[str] = []
        self.stderr: List[str] = []
        self.done = False
        self.killed = False
        self.eof = False
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env=python_env())
        threading.Thread(target=self._pump_out, args=(events,), daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self, events: "queue.Queue[Any]") -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {"fatal": "not a JSON line: " + line.rstrip()}
            events.put((self, msg))
        events.put((self, None))

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def send(self, obj: Dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it finished or was killed: it awaits nothing more

    def kill(self) -> None:
        self.killed = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class ScenarioRun:
    def __init__(self, scenario: Dict[str, Any], langs: Dict[str, str], ring: str,
                 table: str = TABLE, watchdog_s: float = WATCHDOG_S) -> None:
        self.scenario = scenario
        self.table = table
        self.watchdog_s = watchdog_s
        self.langs = langs
        self.ring = ring
        self.events: "queue.Queue[Any]" = queue.Queue()
        self.procs: Dict[str, Process] = {}
        self.signals: List[str] = []
        self.problems: List[str] = []
        # The run stops at the first observation that differs from the table (the
        # actors' later steps would only wait for signals that never come).
        self.diverged = False

    def lang_of(self, actor: str) -> str:
        return self.langs[self.scenario["actors"][actor]["slot"]]

    def start(self, actor: str) -> None:
        lang = self.lang_of(actor)
        p = Process(actor, lang,
                    driver_command(lang, self.scenario["name"], actor, self.ring, self.table),
                    self.events)
        self.procs[actor] = p
        for name in self.signals:  # what it may await was perhaps signalled already
            p.send({"signal": name})

    def broadcast(self, name: str) -> None:
        self.signals.append(name)
        for p in self.procs.values():
            p.send({"signal": name})

    def handle(self, p: Process, msg: Optional[Dict[str, Any]]) -> None:
        if msg is None:
            p.eof = True
            p.proc.wait()
        elif "signal" in msg:
            self.broadcast(msg["signal"])
        elif "progress" in msg:
            p.progress.append(msg["progress"])
        elif "done" in msg:
            p.done = True
        elif "fatal" in msg:
            self.problems.append(f"{p.name} ({p.lang}): {msg['fatal']}")
            self.diverged = True
        else:
            p.reports.append(msg)
            found = self.expected_step(p.name, msg)
            if found is None:
                self.problems.append(f"{p.name} ({p.lang}): unexpected report {msg}")
                self.diverged = True
                return
            where, step, rep = found
            if step.get("blocks"):
                self.problems.append(f"{where}: expected to block until killed, returned {msg}")
                self.diverged = True
                return
            bad = self.check_step(where, step, rep, msg)
            if bad:
                self.problems += bad
                self.diverged = True

    def expected_step(self, actor: str, msg: Dict[str, Any]) -> Optional[Tuple[str, Dict[str, Any], int]]:
        steps = self.scenario["actors"][actor]["steps"]
        i, rep = msg.get("step"), msg.get("rep")
        if not isinstance(i, int) or not 0 <= i < len(steps) or not isinstance(rep, int):
            return None
        step = steps[i]
        if step["op"] in ("signal", "await") or not 0 <= rep < step.get("repeat", 1):
            return None
        where = f"{actor} ({self.lang_of(actor)}) step {i} {step['op']}"
        return where + (f" #{rep}" if "repeat" in step else ""), step, rep

    def run(self) -> None:
        actors = self.scenario["actors"]
        for name, spec in actors.items():
            if name != "harness" and spec.get("start", "at_once") == "at_once":
                self.start(name)
        harness = list(actors.get("harness", {}).get("steps", []))
        deadline = time.monotonic() + self.watchdog_s
        try:
            while True:
                # Harness steps that can go on now.
                while harness:
                    step = harness[0]
                    op = step["op"]
                    if op == "await" and step["name"] not in self.signals:
                        break
                    if op == "wait_exit" and not self.procs[step["actor"]].eof:
                        break
                    harness.pop(0)
                    if op == "signal":
                        self.broadcast(step["name"])
                    elif op == "kill":
                        self.procs[step["actor"]].kill()
                    elif op == "start":
                        self.start(step["actor"])
                    elif op == "poke":
                        fd = os.open("/dev/shm/" + self.ring, os.O_RDWR)
                        try:
                            os.pwrite(fd, bytes.fromhex(step["hex"]), step["offset"])
                        finally:
                            os.close(fd)
                    elif op == "create_segment":
                        fd = os.open("/dev/shm/" + self.ring, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                                     0o600)
                        try:
                            os.ftruncate(fd, step["size"])
                            os.pwrite(fd, bytes.fromhex(step["hex"]), step["offset"])
                        finally:
                            os.close(fd)
                    elif op == "check_segment":
                        self.check_segment(step)
                    elif op not in ("await", "wait_exit"):
                        raise AssertionError(f"unknown harness operation {op!r}")
                if self.diverged:
                    return
                if not harness and all(p.eof for p in self.procs.values()) and \
                        len(self.procs) == len([a for a in actors if a != "harness"]):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    self.hang(harness)
                    return
                try:
                    p, msg = self.events.get(timeout=min(left, 1.0))
                except queue.Empty:
                    continue
                self.handle(p, msg)
        finally:
            for p in self.procs.values():
                if p.proc.poll() is None:
                    p.kill()
            # Drain what the pumps still hold (reports written just before a kill): every
            # process is gone now, so each pump ends with its end-of-file event.
            while not all(p.eof for p in self.procs.values()):
                try:
                    p, msg = self.events.get(timeout=10)
                except queue.Empty:
                    break
                if msg is None:
                    p.eof = True
                elif not self.diverged:
                    self.handle(p, msg)

    def check_segment(self, step: Dict[str, Any]) -> None:
        """The segment still has its size and the bytes at the offset (nobody removed it)."""
        path = "/dev/shm/" + self.ring
        want = bytes.fromhex(step["hex"])
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.problems.append(f"harness: segment {path} was removed")
            return
        if len(data) != step["size"] or data[step["offset"]:step["offset"] + len(want)] != want:
            self.problems.append(f"harness: segment {path} changed ({len(data)} bytes)")

    def hang(self, harness: List[Dict[str, Any]]) -> None:
        for name, p in self.procs.items():
            if not p.eof:
                last = p.reports[-1] if p.reports else None
                self.problems.append(
                    f"HANG: {name} ({p.lang}) still running after {self.watchdog_s:.0f} s; last "
                    f"report {last}; progress {p.progress}; signals seen {self.signals}")
        if harness:
            self.problems.append(f"HANG: harness still at {harness[0]}")

    # ---- comparison ----------------------------------------------------------------

    def check(self) -> List[str]:
        problems = list(self.problems)
        if self.diverged:
            return problems + ["(the run stopped at this first divergence from the table)"]
        for name, spec in self.scenario["actors"].items():
            if name == "harness":
                continue
            p = self.procs.get(name)
            if p is None:
                problems.append(f"{name}: never started")
                continue
            problems += self.check_actor(name, spec["steps"], p)
        return problems

    def check_actor(self, name: str, steps: List[Dict[str, Any]], p: Process) -> List[str]:
        who = f"{name} ({p.lang})"
        out: List[str] = []
        observed = {(r.get("step"), r.get("rep")): r for r in p.reports}
        blocked = False
        for i, step in enumerate(steps):
            if step["op"] in ("signal", "await"):
                if step.get("blocks"):
                    blocked = True
                    break
                continue
            for rep in range(step.get("repeat", 1)):
                got = observed.pop((i, rep), None)
                if step.get("blocks"):
                    blocked = True
                    if got is not None:
                        out.append(f"{who} step {i} {step['op']}: expected to block until "
                                   f"killed, returned {got}")
                    break
                where = f"{who} step {i} {step['op']}" + (f" #{rep}" if "repeat" in step else "")
                if got is None:
                    out.append(f"{where}: no report (expected {step['expect']})")
            if blocked:
                break
        for key, r in observed.items():
            out.append(f"{who}: unexpected report {r}")
        if blocked:
            if not p.killed:
                out.append(f"{who}: expected to be killed while blocked, but was not")
        elif not p.killed:
            if p.proc.returncode != 0 or not p.done:
                out.append(f"{who}: exit status {p.proc.returncode}, done={p.done}; stderr: "
                           + " | ".join(p.stderr[-5:]))
        return out

    def check_step(self, where: str, step: Dict[str, Any], rep: int,
                   got: Dict[str, Any]) -> List[str]:
        status = got.get("status")
        note = f" ({got['message']})" if got.get("message") else ""
        if status != step["expect"]:
            return [f"{where}: expected {step['expect']}, observed {status}{note}"]
        out: List[str] = []
        if step["op"] in ("read", "interrupt_blocked_read") and status == "ok":
            want = payload(step["len"], step.get("seed", 0) + rep)
            if got.get("len") != len(want) or got.get("fnv") != fnv1a64(want):
                out.append(f"{where}: payload len {got.get('len')} fnv {got.get('fnv')}, "
                           f"expected len {len(want)} fnv {fnv1a64(want)}")
        if "value" in step and got.get("value") != step["value"]:
            out.append(f"{where}: value {got.get('value')}, expected {step['value']}")
        if step["op"].startswith("interrupt_blocked") and not got.get("interrupt_returned"):
            out.append(f"{where}: interrupt() did not return")
        pid_of = step.get("names_pid_of")
        if pid_of:
            pid = self.procs[pid_of].proc.pid
            if not re.search(r"(?<!\d)%d(?!\d)" % pid, got.get("message", "")):
                out.append(f"{where}: message does not name pid {pid} of {pid_of}: "
                           f"{got.get('message')!r}")
        return out


def cases() -> List[Any]:
    params = []
    for sc in SCENARIOS:
        for combo in itertools.product(LANGUAGES, repeat=len(sc["slots"])):
            langs = dict(zip(sc["slots"], combo))
            ident = ",".join(f"{k}={v}" for k, v in langs.items())
            reasons = [KNOWN_DRIFTS[key] for key in ((sc["name"], ident), (sc["name"], None))
                       if key in KNOWN_DRIFTS]
            for actor, spec in sc["actors"].items():
                if actor == "harness":
                    continue
                for step in spec["steps"]:
                    reason = KNOWN_OP_DRIFTS.get((langs[spec["slot"]], step["op"]))
                    if reason and reason not in reasons:
                        reasons.append(reason)
            marks = [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []
            params.append(pytest.param(sc, langs, id=f"{sc['name']}[{ident}]", marks=marks))
    return params


def run_scenario(scenario: Dict[str, Any], langs: Dict[str, str], table: str = TABLE,
                 watchdog_s: float = WATCHDOG_S) -> List[str]:
    """Runs one scenario on a fresh ring name (removed afterwards); returns the problems."""
    ring = f"bhv{os.getpid()}{_TOKEN}_{next(_counter)}"
    run = ScenarioRun(scenario, langs, ring, table, watchdog_s)
    try:
        run.run()
    finally:
        try:
            os.unlink("/dev/shm/" + ring)
        except FileNotFoundError:
            pass
    return run.check()


@pytest.mark.parametrize("scenario,langs", cases())
def test_scenario(scenario: Dict[str, Any], langs: Dict[str, str]) -> None:
    problems = run_scenario(scenario, langs)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_harness_sees_divergence_and_hangs(lang: str, tmp_path: Any) -> None:
    """The comparison is not vacuous: a wrong expectation, a wrong payload, an unknown
    operation and a hang each fail, for either driver."""
    base = next(s for s in SCENARIOS if s["name"] == "read_empty_then_timeout")
    variants = []
    wrong_status = json.loads(json.dumps(base))
    wrong_status["actors"]["proc"]["steps"][2]["expect"] = "ok"
    variants.append(("wrong_status", wrong_status, "expected ok, observed empty"))
    wrong_payload = json.loads(json.dumps(base))
    wrong_payload["actors"]["proc"]["steps"][5]["seed"] = 2
    variants.append(("wrong_payload", wrong_payload, "payload len 10"))
    unknown_op = json.loads(json.dumps(base))
    unknown_op["actors"]["proc"]["steps"].append({"op": "fly", "expect": "ok"})
    variants.append(("unknown_op", unknown_op, "observed unsupported"))
    hang = json.loads(json.dumps(base))
    hang["actors"]["proc"]["steps"].insert(0, {"op": "await", "name": "never"})
    variants.append(("hang", hang, "HANG: proc"))
    table = tmp_path / "table.json"
    scenarios = []
    for name, sc, _ in variants:
        sc["name"] = name
        scenarios.append(sc)
    table.write_text(json.dumps({"scenarios": scenarios}))
    for name, sc, needle in variants:
        problems = run_scenario(sc, {"process": lang}, str(table), watchdog_s=5)
        assert any(needle in p for p in problems), (name, problems)


def test_table_is_well_formed() -> None:
    """Every actor has a slot the scenario declares, every op is known, names are unique."""
    ops = {"producer_open", "consumer_open", "write", "read", "end_stream", "producer_close",
           "consumer_close", "interrupt", "clear_interrupt", "head_index",
           "interrupt_blocked_read", "interrupt_blocked_write", "signal", "await",
           "count_dropped", "dropped", "consumer_attached", "interrupt_blocked_open",
           "set_live", "producer_live", "receiver_slot", "skipped"}
    harness_ops = {"await", "signal", "kill", "start", "poke", "wait_exit", "create_segment",
                   "check_segment"}
    names = [s["name"] for s in SCENARIOS]
    assert len(names) == len(set(names))
    for sc in SCENARIOS:
        for actor, spec in sc["actors"].items():
            if actor == "harness":
                assert {s["op"] for s in spec["steps"]} <= harness_ops, sc["name"]
                continue
            assert spec["slot"] in sc["slots"], (sc["name"], actor)
            for step in spec["steps"]:
                assert step["op"] in ops, (sc["name"], actor, step)
                if step["op"] not in ("signal", "await"):
                    assert "expect" in step or step.get("blocks"), (sc["name"], actor, step)
