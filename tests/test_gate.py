"""The acceptance gate's checks, each able to fail for the reason it names."""

from __future__ import annotations

import pytest

from cd4ml.config import AcceptanceConfig, Bound
from cd4ml.evaluate.metrics import Bias
from cd4ml.gate.checks import Evidence, FoldScores, evaluate
from cd4ml.task import REGRESSION, TASKS


def _evidence(**kw) -> Evidence:
    base = dict(task=REGRESSION, primary="rmse", candidate={"rmse": 10.0, "r2": 0.6},
                baselines={"group_mean": {"rmse": 12.0, "r2": 0.4}},
                candidate_slices={"family": {"A": {"rmse": 9.0, "rows": 500.0}, "B": {"rmse": 11.0, "rows": 500.0}}},
                latency_p99_ms=2.0, parity_max_abs_diff=0.0)
    base.update(kw)
    return Evidence(**base)


def _check(report, name):
    return next(c for c in report.checks if c.name == name)


def test_all_pass_without_champion() -> None:
    report = evaluate(AcceptanceConfig(thresholds={"r2": Bound(min=0.5)}, latency_p99_ms=5), _evidence())
    assert report.passed
    assert _check(report, "vs_champion").reason == "no champion yet"


@pytest.mark.parametrize(
    ("rules", "evidence", "failing"),
    [
        (dict(thresholds={"r2": Bound(min=0.7)}), {}, "threshold:r2"),
        (dict(thresholds={"rmse": Bound(max=9.5)}), {}, "threshold:rmse"),
        ({}, {"baselines": {"group_mean": {"rmse": 9.0, "r2": 0.7}}}, "beats_baseline"),
        ({}, {"baselines": {"group_mean": {"rmse": 12.0}, "last_value": {"rmse": 10.0}}}, "beats_baseline"),
        (dict(bias_tolerance=0.05), {"bias": Bias(0.94)}, "bias"),
        (dict(bias_tolerance=0.05), {"bias": Bias(1.0, {"family": {"A": (1.2, 30)}})}, "bias"),
        (dict(bias_tolerance=0.05), {"bias": Bias(float("nan"))}, "bias"),
        (dict(champion_tolerance=0.05), {"champion": {"rmse": 9.0}, "champion_version": "3",
                                         "champion_slices": {"family": {"A": {"rmse": 9.0, "rows": 500.0},
                                                                        "B": {"rmse": 11.0, "rows": 500.0}}}},
         "vs_champion"),
        (dict(champion_tolerance=1.0, slice_tolerance=0.05),
         {"champion": {"rmse": 10.0}, "champion_version": "3",
          "champion_slices": {"family": {"A": {"rmse": 8.0, "rows": 500.0}, "B": {"rmse": 11.0, "rows": 500.0}}}},
         "slice:family"),
        (dict(latency_p99_ms=1.0), {}, "latency_p99_ms"),
        ({}, {"parity_max_abs_diff": 1e-6}, "parity"),
        ({}, {"champion_error": "ReleaseError: boom", "champion_version": "2"}, "vs_champion"),
    ],
)
def test_each_check_fails_for_its_reason(rules, evidence, failing) -> None:
    report = evaluate(AcceptanceConfig(**rules), _evidence(**evidence))
    assert not report.passed
    assert [c.name for c in report.failed][0] == failing
    assert _check(report, failing).reason


def test_small_slices_are_not_judged() -> None:
    ev = _evidence(champion={"rmse": 10.0}, champion_version="1",
                   candidate_slices={"family": {"A": {"rmse": 50.0, "rows": 5.0}}},
                   champion_slices={"family": {"A": {"rmse": 1.0, "rows": 5.0}}})
    assert evaluate(AcceptanceConfig(min_slice_rows=30), ev).passed


def test_tolerance_allows_a_small_regression() -> None:
    ev = _evidence(champion={"rmse": 9.95}, champion_version="1")
    assert evaluate(AcceptanceConfig(champion_tolerance=0.01), ev).passed
    assert not evaluate(AcceptanceConfig(champion_tolerance=0.0), ev).passed


def test_report_is_json_ready() -> None:
    import json

    doc = evaluate(AcceptanceConfig(), _evidence()).to_dict()
    assert json.loads(json.dumps(doc))["passed"] is True


class _Rounds:
    """Single-row latencies (ms) of successive measurement rounds, as `Release.latency_ms` gives them."""

    def __init__(self, *rounds: float) -> None:
        self.rounds = list(rounds)
        self.measured = 0

    def latency_ms(self, frame: object) -> list[float]:
        self.measured += 1
        return [self.rounds.pop(0)] * 300


@pytest.mark.parametrize(("rounds", "budget", "p99", "measured"), [
    ((0.7, 40.0, 40.0), 25.0, 0.7, 1),  # within budget: one round
    ((31.8, 0.7, 40.0), 25.0, 0.7, 2),  # a busy neighbour's round is measured again
    ((31.8, 30.0, 40.0), 25.0, 30.0, 3),  # slow every round: the best still fails the budget
    ((31.8, 0.7, 40.0), None, 31.8, 1),  # no budget: nothing to measure again for
])
def test_latency_over_budget_is_measured_again_and_the_best_round_counts(rounds, budget, p99, measured) -> None:
    from cd4ml.gate.checks import latency_p99

    release = _Rounds(*rounds)
    assert latency_p99(release, None, budget) == p99 and release.measured == measured


def test_also_no_worse_holds_the_champion_comparison_on_each_listed_metric() -> None:
    # Better on rmse, much worse on mae: the primary comparison alone lets it through.
    ev = _evidence(candidate={"rmse": 9.0, "mae": 8.0, "r2": 0.6}, champion={"rmse": 10.0, "mae": 5.0, "r2": 0.6},
                   champion_version="4", champion_slices={})
    assert evaluate(AcceptanceConfig(), ev).passed
    report = evaluate(AcceptanceConfig(also_no_worse=["mae", "r2"], champion_tolerance=0.01), ev)
    assert [c.name for c in report.failed] == ["vs_champion:mae"]
    assert _check(report, "vs_champion:mae").reason == "mae 8.0000 is 60.0% worse than champion v4's 5.0000"
    assert _check(report, "vs_champion:r2").passed and _check(report, "vs_champion").passed


def test_classification_metrics_are_judged_in_their_own_direction() -> None:
    binary = TASKS["binary"].configured("y", "bool", None, 0.5)
    ev = _evidence(task=binary, primary="auc", candidate={"auc": 0.80, "logloss": 0.50},
                   baselines={"group_mean": {"auc": 0.5, "logloss": 0.69}}, candidate_slices={},
                   champion={"auc": 0.78, "logloss": 0.45}, champion_version="2", champion_slices={})
    report = evaluate(AcceptanceConfig(thresholds={"auc": Bound(min=0.85), "logloss": Bound(max=0.6)},
                                       also_no_worse=["logloss"]), ev)
    assert [c.name for c in report.failed] == ["threshold:auc", "vs_champion:logloss"]
    assert _check(report, "beats_baseline").passed and _check(report, "vs_champion").passed


def test_every_baseline_is_named_and_beaten_and_bias_is_judged_per_slice_of_enough_rows() -> None:
    rules = AcceptanceConfig(bias_tolerance=0.05, min_slice_rows=30)
    ev = _evidence(baselines={"group_mean": {"rmse": 12.0}, "last_value": {"rmse": 10.5}},
                   bias=Bias(1.03, {"family": {"A": (0.97, 500), "B": (1.5, 29)}}))
    report = evaluate(rules, ev)
    assert report.passed  # the slice off by 50% has too few rows to be judged
    assert _check(report, "beats_baseline").threshold == "better than group mean 12.0000, last value 10.5000"
    losing = evaluate(rules, _evidence(baselines={"group_mean": {"rmse": 12.0}, "last_value": {"rmse": 9.0},
                                                  "seasonal_naive": {"rmse": 10.0}}, bias=Bias(1.0)))
    assert _check(losing, "beats_baseline").reason == ("rmse 10.0000 does not beat the last value baseline's "
                                                       "9.0000, the seasonal naive baseline's 10.0000")
    assert "bias" not in {c.name for c in evaluate(AcceptanceConfig(), ev).checks}  # reported, not enforced


def test_every_fold_holds_the_model_to_each_baseline_on_each_backtest_fold() -> None:
    def fold(k: int, model: float, last_value: float) -> FoldScores:
        return FoldScores(k, f"2024-0{k + 1}-01", f"2024-0{k + 1}-28", 100, {"rmse": model},
                          {"group_mean": {"rmse": 12.0}, "last_value": {"rmse": last_value}})

    rules = AcceptanceConfig(every_fold=True)
    won = evaluate(rules, _evidence(folds=[fold(0, 10.0, 11.0), fold(1, 9.0, 9.5)]))
    assert _check(won, "backtest").passed and _check(won, "backtest").value == 9.5  # the folds' mean
    lost = evaluate(rules, _evidence(folds=[fold(0, 10.0, 11.0), fold(1, 9.0, 8.0)]))
    assert _check(lost, "backtest").reason == ("rmse does not beat every baseline on fold 1 (2024-02-01..2024-02-28): "
                                               "9.0000 vs last value 8.0000")
    assert "backtest" not in {c.name for c in evaluate(AcceptanceConfig(), _evidence()).checks}
