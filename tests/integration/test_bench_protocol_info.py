"""bench/report.py: the information line under the 64 B goal (Report.protocol_info), the
minimal ring plus shmring's per-message protocol work vs the minimal ring, from synthetic
rows (no measurement)."""
from __future__ import annotations

import os
import sys
from typing import Dict, List

ROOT = os.environ.get("SHMRING_SOURCE_ROOT",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import report  # noqa: E402


def rep(small: Dict[str, List[float]]) -> report.Report:
    row: Dict[str, object] = {"unit": "msg/s", **small}
    results: Dict[str, object] = {"rows": {"small": row}, "load_before": [0.0, 0.0, 0.0],
                                  "load_after": [0.0, 0.0, 0.0], "machine": {"cores": "2"}}
    return report.Report(results, "/nonexistent")


def test_protocol_info_gives_the_median_per_round_ratios() -> None:
    # Per round: minimal_protocol/minimal 0.90, 0.95, 1.00 (median 0.95); shmring/
    # minimal_protocol 30/27, 33/38, 40/40 = 1.11, 0.868, 1.00 (median 1.00).
    r = rep({"minimal": [30e6, 40e6, 40e6], "minimal_protocol": [27e6, 38e6, 40e6],
             "shmring": [30e6, 33e6, 40e6]})
    r.protocol_info()
    assert len(r.goals) == 1
    what, measured, met, note = r.goals[0]
    assert "minimal_protocol" in what
    assert measured == "0.95×"
    assert met == "—"  # information: no bar, no verdict
    assert note == "shmring vs minimal_protocol 1×"


def test_protocol_info_absent_without_minimal_protocol_rounds() -> None:
    r = rep({"minimal": [30e6, 40e6], "shmring": [30e6, 33e6]})
    r.protocol_info()
    assert r.goals == []
