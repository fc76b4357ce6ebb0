"""bench/settle.py (waiting for quiet CPUs before the benchmark measures) and the report's
load line that uses what it measured (Report.load_line, Report.load_why): from synthetic
/proc/stat files, a fake clock and synthetic results, no measurement."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = os.environ.get("SHMRING_SOURCE_ROOT",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import report  # noqa: E402
import settle  # noqa: E402


def test_cpu_times_counts_all_but_idle_and_iowait(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 2 30 5000 40 5 6 7 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    busy, total = settle.cpu_times(str(stat))
    assert total == 100 + 2 + 30 + 5000 + 40 + 5 + 6 + 7  # guest is inside user already
    assert busy == total - 5000 - 40


def test_cpu_times_names_the_file_when_its_first_line_is_not_the_cpu_line(
        tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("intr 1 2 3\n")
    with pytest.raises(ValueError, match=str(stat)):
        settle.cpu_times(str(stat))


class FakeMachine:
    """A CPU whose busy share in window i is shares[i] (the last one repeats), a clock that
    the waits advance, and the sleeps asked for."""

    def __init__(self, shares: List[float]) -> None:
        self.shares = shares
        self.window = 0
        self.busy = 0
        self.total = 0
        self.clock = 0.0
        self.sleeps: List[float] = []

    def sample(self) -> Tuple[int, int]:
        return self.busy, self.total

    def sleep(self, s: float) -> None:
        share = self.shares[min(self.window, len(self.shares) - 1)]
        self.window += 1
        self.busy += round(1000 * share)
        self.total += 1000
        self.clock += s
        self.sleeps.append(s)

    def now(self) -> float:
        return self.clock


def test_waits_window_after_window_until_one_is_quiet() -> None:
    m = FakeMachine([0.9, 0.4, 0.12, 0.03, 0.0])
    got = settle.wait_until_quiet(max_wait_s=180, window_s=5, threshold=0.10,
                                  sample=m.sample, sleep=m.sleep, now=m.now)
    assert got.quiet
    assert got.busy_share == pytest.approx(0.03)
    assert m.sleeps == [5, 5, 5, 5]
    assert got.waited_s == 20


def test_a_quiet_machine_costs_one_window() -> None:
    m = FakeMachine([0.01])
    got = settle.wait_until_quiet(max_wait_s=180, window_s=5, sample=m.sample, sleep=m.sleep,
                                  now=m.now)
    assert got.quiet and m.sleeps == [5]


def test_gives_up_after_the_longest_wait_and_says_so() -> None:
    m = FakeMachine([0.5])
    got = settle.wait_until_quiet(max_wait_s=30, window_s=5, sample=m.sample, sleep=m.sleep,
                                  now=m.now)
    assert not got.quiet
    assert got.busy_share == pytest.approx(0.5)
    assert got.waited_s == 30 and len(m.sleeps) == 6


def rep(extra: Dict[str, object]) -> report.Report:
    results: Dict[str, object] = {"rows": {}, "load_before": [0.95, 0.6, 0.3],
                                  "load_after": [0.08, 0.4, 0.3], "machine": {"cores": "2"}}
    results.update(extra)
    return report.Report(results, "/nonexistent")


def test_a_load_average_still_decaying_from_the_build_does_not_make_a_quiet_run_noisy() -> None:
    # The report of 2026-12-01 15:07: load 0.95 at the start (bench.sh's own build a moment before),
    # the CPUs idle; the report called it busy.
    r = rep({"busy_before": 0.02, "settle_s": 5.0})
    assert r.load_why() == ""
    line = r.load_line()
    assert "noisy" not in line
    assert "2.0 % of the CPUs" in line and "waiting 5 s" in line


def test_other_work_before_the_run_makes_it_noisy() -> None:
    r = rep({"busy_before": 0.30, "settle_s": 180.0})
    assert r.load_why() == "other work used 30 % of the 2 CPUs before the run"
    assert r.load_line().endswith("treat the numbers as noisy.")


def test_a_busy_end_still_makes_it_noisy() -> None:
    r = rep({"busy_before": 0.02, "settle_s": 5.0, "load_after": [1.7, 1.0, 0.5]})
    assert r.load_why() == (
        "load average up to 1.7 on 2 cores at the end (this benchmark's last step included)")


def test_results_without_the_busy_share_are_judged_by_the_load_at_both_ends() -> None:
    r = rep({})
    assert r.load_why() == "load average up to 0.9 on 2 cores"
    assert "of the CPUs" not in r.load_line()
