"""bench/report.py: the confidence interval of a median from order statistics (median_ci) and
the verdict of a ratio goal (Report.ratio_goal) drawn from it and from the A/A control."""
from __future__ import annotations

import math
import os
import sys
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = os.environ.get("SHMRING_SOURCE_ROOT",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import report  # noqa: E402

# Coverage of [x(k), x(n+1-k)] = P(k <= B <= n-k), B ~ Binomial(n, 1/2), worked out by hand:
#   n = 5:  k = 1: 1 - 2*C(5,0)/32 = 30/32 = 0.9375 (< 95 %, but no k does better: min-max).
#   n = 7:  k = 1: 1 - 2/128 = 126/128 = 0.984375; k = 2: 1 - 2*(1+7)/128 = 112/128 = 0.875.
#           -> k = 1, x(1)-x(7).
#   n = 9:  k = 2: 1 - 2*(1+9)/512 = 492/512 = 0.9609375; k = 3: 1 - 2*(1+9+36)/512 =
#           420/512 = 0.8203125. -> k = 2, x(2)-x(8).
#   n = 11: k = 2: 1 - 2*(1+11)/2048 = 2024/2048 = 0.98828125; k = 3: 1 - 2*(1+11+55)/2048 =
#           1914/2048 = 0.9345703125 < 95 %. -> k = 2, x(2)-x(10).
#   n = 1:  k = 1: the interval [x(1), x(1)] holds the median with probability 0.
HAND = [(5, 1, 5, 30 / 32), (7, 1, 7, 126 / 128), (9, 2, 8, 492 / 512),
        (11, 2, 10, 2024 / 2048), (1, 1, 1, 0.0)]


@pytest.mark.parametrize("n,lo_index,hi_index,coverage", HAND)
def test_median_ci_order_statistics(n: int, lo_index: int, hi_index: int,
                                    coverage: float) -> None:
    # Values 10, 20, ..., 10n in a shuffled order (2i mod n permutes 0..n-1 for odd n):
    # x(i) = 10 i.
    values = [10.0 * ((i * 2) % n + 1) for i in range(n)]
    assert sorted(values) == [10.0 * (i + 1) for i in range(n)]
    ci = report.median_ci(values)
    assert (ci.low, ci.high) == (10.0 * lo_index, 10.0 * hi_index)
    assert (ci.k, ci.n) == (lo_index, n)
    assert math.isclose(ci.coverage, coverage, rel_tol=0, abs_tol=1e-12)


def test_median_ci_refuses_empty_and_nan() -> None:
    with pytest.raises(ValueError, match="empty"):
        report.median_ci([])
    with pytest.raises(ValueError, match="NaN"):
        report.median_ci([1.0, float("nan"), 2.0])


PEER = 1000.0


def row(ratios: List[float], aa: Optional[List[float]] = None) -> Dict[str, object]:
    """A GStreamer-like row whose per-round ratios of shmring to its peer are `ratios`: to
    shmsink, or, given `aa` (the shmsink_aa/shmsink ratios), to the geometric mean of
    shmsink and shmsink_aa (report.row_ratios)."""
    aa_rs = aa if aa is not None else [1.0] * len(ratios)
    d: Dict[str, object] = {"unit": "frames/s", "shmsink": [PEER] * len(ratios),
                            "shmring": [r * PEER * math.sqrt(q) for r, q in zip(ratios, aa_rs)]}
    if aa is not None:
        d["shmsink_aa"] = [r * PEER for r in aa]
    return d


def judge(ratios: List[float], aa: Optional[List[float]] = None) -> Tuple[str, str, str]:
    """(measured, met, note) of a ≥ 1.0× goal on a synthetic row."""
    results = {"rows": {"r": row(ratios, aa)}, "load_before": [0.0, 0.0, 0.0],
               "load_after": [0.0, 0.0, 0.0], "machine": {"cores": "2"}}
    rep = report.Report(results, "/nonexistent")
    rep.ratio_goal("goal", "r", "shmring", "shmsink", 1.0, "why")
    _, measured, met, note = rep.goals[-1]
    return measured, met, note


# An A/A control that strays little: sorted 0.97, 0.98, ..., 1.05 (steps of 0.01): median
# x(5) = 1.01, CI x(2)-x(8) = 0.98-1.04, which holds 1.0.
AA_CLEAN = [1.01, 0.97, 1.05, 0.99, 1.03, 0.98, 1.04, 1.00, 1.02]


def test_yes_when_the_ci_is_above_the_bar_though_one_round_is_below() -> None:
    # 9 rounds, one below the bar: sorted 0.97 1.10 1.11 1.12 1.13 1.14 1.15 1.16 1.20, CI
    # x(2)-x(8) = 1.10-1.16 >= 1. (The fixed-5 % rule called this "yes (not every round)".)
    measured, met, note = judge([0.97, 1.10, 1.12, 1.15, 1.20, 1.11, 1.13, 1.14, 1.16],
                                AA_CLEAN)
    assert met == "yes"
    assert measured == "1.13×"
    assert "8 of 9 rounds ≥ 1×" in note
    assert "CI 1.10–1.16 (96.1 %, x(2)–x(8) of 9 sorted)" in note
    assert "the peer against itself: 1.01×, CI 0.98–1.04 (96.1 %" in note
    assert "bias" not in note
    assert "why" not in note  # the reason is given for a goal not met only


def test_no_when_the_ci_is_below_the_bar_though_the_median_is_within_5_percent() -> None:
    # Median 0.98 (within the old fixed 5 %: "tie within noise"), one round above the bar,
    # but CI x(2)-x(8) = 0.96-0.99 lies below it.
    measured, met, note = judge([0.99, 0.95, 0.975, 1.01, 0.96, 0.982, 0.97, 0.98, 0.985],
                                AA_CLEAN)
    assert met == "**no**"
    assert measured == "0.98×"
    assert note.startswith("missed by 2 %; 1 of 9 rounds ≥ 1×; median 0.98×, CI 0.96–0.99 "
                           "(96.1 %")
    assert "the peer against itself: 1.01×" in note
    assert note.endswith("; why")


def test_tie_when_the_ci_holds_the_bar_though_the_median_misses_it_by_10_percent() -> None:
    # 7 rounds: the CI is min-max (98.4 %), 0.80-1.05, and holds the bar; the median 0.90
    # misses it by 10 % (the fixed-5 % rule said "no").
    measured, met, note = judge([0.90, 0.80, 1.05, 0.85, 0.94, 0.88, 0.92],
                                [1.00, 0.99, 1.02, 0.98, 1.01, 1.03, 0.97])
    assert met == "tie within noise"
    assert measured == "0.9×"
    assert "1 of 7 rounds ≥ 1×; median 0.9×, CI 0.80–1.05 (98.4 %, lowest to highest of 7)" \
        in note
    assert "the peer against itself: 1.00×, CI 0.97–1.03 (98.4 %, lowest to highest of 7)" \
        in note
    assert "bias" not in note


def test_an_aa_control_whose_ci_excludes_one_is_reported_as_a_bias() -> None:
    # The peer's second run was 3-7 % faster in every round: CI 1.03-1.07 excludes 1.0.
    _, met, note = judge([0.98, 1.02, 0.99, 1.03, 0.97, 1.01, 1.00],
                         [1.05, 1.03, 1.04, 1.06, 1.07, 1.05, 1.05])
    assert met == "tie within noise"
    assert "the peer against itself: 1.05×, CI 1.03–1.07 (98.4 %" in note
    assert "order/drift bias of about 5 %" in note


def test_a_row_without_aa_is_judged_by_its_ci_alone() -> None:
    # 5 rounds (older results.json, fan-out rows): CI min-max at 93.8 %, 0.96-1.08 holds 1.0.
    measured, met, note = judge([1.08, 0.96, 1.01, 0.99, 1.02])
    assert met == "tie within noise"
    assert measured == "1.01×"
    assert "CI 0.96–1.08 (93.8 %, lowest to highest of 5)" in note
    assert "no A/A measured" in note


def test_one_round_does_not_crash() -> None:
    # bench.py --smoke: one round; the CI is that round (coverage 0).
    _, met, note = judge([1.2], [0.9])
    assert met == "yes (at 0.0 % coverage only)"
    assert "CI 1.20–1.20 (0.0 %, lowest to highest of 1)" in note
    # One A/A round that strays is no evidence of a bias (coverage 0): a hint only.
    assert "the peer against itself: 0.90×, CI 0.90–0.90 (0.0 %" in note
    assert "but at 0.0 % coverage only: this run may have had an order/drift bias of about " \
        "10 %" in note
    assert "this run had" not in note


def test_aa_order_puts_shmring_between_the_two_peer_runs_which_swap_places() -> None:
    import bench  # bench/bench.py (on sys.path above)
    rounds = [bench.aa_order("shmsink", "shmring", r) for r in range(4)]
    assert rounds == [["shmsink", "shmring", "shmsink_aa"], ["shmsink_aa", "shmring", "shmsink"],
                      ["shmsink", "shmring", "shmsink_aa"], ["shmsink_aa", "shmring", "shmsink"]]


def test_the_ratio_against_two_peer_runs_cancels_a_steady_drift() -> None:
    # The machine slows 4 % from run to run within every round (A B A' then A' B A): shmring,
    # as fast as its peer, gets 0.96 of the first peer run's rate and 1/0.96 of the last's.
    # Against the first peer run alone the ratio would swing 0.96 / 1.04; against the
    # geometric mean of both it is 1.00 in every round.
    first, mid, last = 1000.0, 960.0, 921.6
    d = {"shmring": [mid] * 4, "shmsink": [first, last, first, last],
         "shmsink_aa": [last, first, last, first]}
    assert [round(x, 9) for x in report.row_ratios(d, "shmring", "shmsink")] == [1.0] * 4
    # A round where one peer run stalled (NaN) uses the other; without shmsink_aa, plain a/b.
    d2 = {"shmring": [900.0, 900.0], "shmsink": [1000.0, float("nan")],
          "shmsink_aa": [float("nan"), 800.0]}
    assert report.row_ratios(d2, "shmring", "shmsink") == [0.9, 1.125]
    assert report.row_ratios({"shmring": [500.0], "shmsink": [1000.0]}, "shmring",
                             "shmsink") == [0.5]


def test_yes_or_no_below_95_percent_coverage_says_the_coverage() -> None:
    # 5 rounds all above the bar: min-max at 93.75 %.
    _, met, _ = judge([1.10, 1.20, 1.15, 1.12, 1.30])
    assert met == "yes (at 93.8 % coverage only)"
    # 6 rounds all above: min-max at 96.9 %, a plain yes.
    _, met, _ = judge([1.10, 1.20, 1.15, 1.12, 1.30, 1.11])
    assert met == "yes"
    _, met, note = judge([0.80, 0.85, 0.90, 0.82, 0.88])
    assert met == "**no** (at 93.8 % coverage only)"
    assert note.endswith("; why")


def test_a_cpu_cell_of_a_side_without_results_says_so() -> None:
    """A peer whose every round stalled has no CPU per frame: the cell says "no result",
    not "nan" (the 2026-12-01 report's 16 MiB allocator row)."""
    nan = float("nan")
    d = {"sender_cpu_ms": {"shmring": [3.5, 3.3, nan], "shmsink": [nan, nan, nan]}}
    assert report.Report.cpu_cell(d, "sender_cpu_ms", "shmring", "shmsink") == "3.4 / no result"
    assert report.Report.cpu_cell(d, "receiver_cpu_ms", "shmring", "shmsink") == "—"
