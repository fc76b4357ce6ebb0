"""bench/report.py: the latency rows in interleaved rounds (Report.latency_rounds,
latency_ratio, latency_goals) from synthetic results, no measurement."""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List

ROOT = os.environ.get("SHMRING_SOURCE_ROOT",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import report  # noqa: E402


def rounds(p50: List[float], p99: List[float]) -> List[Dict[str, Any]]:
    return [{"p50_ns": a, "p99_ns": b, "samples": 1000} for a, b in zip(p50, p99)]


def rep(latency: Dict[str, Any]) -> report.Report:
    results: Dict[str, object] = {"rows": {}, "latency": latency, "load_before": [0.0] * 3,
                                  "load_after": [0.0] * 3, "machine": {"cores": "2"}}
    return report.Report(results, "/nonexistent")


def test_ratios_are_taken_round_by_round_then_the_median() -> None:
    # Per round shmring/iceoryx p50: 5/10, 12/8, 6/20 = 0.5, 1.5, 0.3 -> median 0.5, where
    # the ratio of the medians would be 6/10 = 0.6 and the mean of the ratios 0.77.
    r = rep({"latency_wakeup": rounds([5e3, 12e3, 6e3], [40e3, 900e3, 50e3]),
             "latency_wakeup_iceoryx": rounds([10e3, 8e3, 20e3], [80e3, 60e3, 100e3])})
    assert r.latency_ratio("latency_wakeup", "p50_ns") == 0.5
    # p99: 0.5, 15, 0.5 -> median 0.5 (ratio of the medians: 50/80 = 0.625).
    assert r.latency_ratio("latency_wakeup", "p99_ns") == 0.5


def test_goals_hold_p50_to_iceoryxs_and_show_p99_as_information() -> None:
    r = rep({"latency_oneway": rounds([300, 300, 300], [900, 900, 900]),
             "latency_oneway_iceoryx": rounds([200, 250, 600], [1e3, 1e3, 1e3]),
             "latency_wakeup": rounds([5e3, 6e3, 7e3], [900e3, 900e3, 900e3]),
             "latency_wakeup_iceoryx": rounds([10e3, 10e3, 10e3], [60e3, 60e3, 60e3])})
    r.latency_goals()
    goals = {g[0]: g for g in r.goals}
    oneway = goals["one-way latency p50 (consumer polling): ≤ 1.0× iceoryx's"]
    assert oneway[1:3] == ("1.2×", "**no**")  # 300/250, lower is better
    wake = goals["wake-up latency p50 (consumer asleep): ≤ 1.0× iceoryx's"]
    assert wake[1:3] == ("0.6×", "yes")
    p99 = goals["wake-up latency p99, information: shmring / iceoryx"]
    assert p99[1:3] == ("15×", "—")


def test_a_run_recorded_before_the_rounds_is_one_round() -> None:
    r = rep({"latency_wakeup": {"p50_ns": 5e3, "p99_ns": 1e6, "samples": 3000},
             "latency_wakeup_iceoryx": {"p50_ns": 1e4, "p99_ns": 8e4, "samples": 3000}})
    assert len(r.latency_rounds("latency_wakeup")) == 1
    assert r.latency_ratio("latency_wakeup", "p50_ns") == 0.5


def test_no_goal_without_iceoryx() -> None:
    r = rep({"latency_wakeup": rounds([5e3], [1e6])})
    r.latency_goals()
    assert r.goals == []
