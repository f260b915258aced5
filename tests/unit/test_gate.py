"""The gate's decision table: better, equal, worse, NaN, no champion, slice regression, latency."""

from __future__ import annotations

import math

import pytest

from argosy.config import GateParams
from argosy.data.contract import MetricContract
from argosy.evaluation.gate import decide as decide_with
from argosy.evaluation.gate import render_markdown

METRIC = MetricContract(primary="pr_auc", floors={"pr_auc": 0.3, "roc_auc": 0.85})
PARAMS = GateParams(
    max_regression=0.01,
    slice_max_regression=0.05,
    slice_min_positives=20,
    max_latency_us_per_row=50.0,
)


def decide(challenger: dict, champion: dict | None, params: GateParams):
    return decide_with(challenger, champion, params, METRIC)


def metrics(pr_auc: float, roc_auc: float = 0.95, latency: float = 10.0, slices=None) -> dict:
    return {
        "pr_auc": pr_auc,
        "roc_auc": roc_auc,
        "latency_us_per_row": latency,
        "slices": slices or {"channel": {"pos": {"pr_auc": pr_auc, "positives": 50.0}}},
    }


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.80, 0.70, True),  # better
        (0.70, 0.70, True),  # equal
        (0.695, 0.70, True),  # worse, within the margin
        (0.60, 0.70, False),  # worse beyond the margin
        (math.nan, 0.70, False),  # NaN challenger fails closed
        (0.80, math.nan, False),  # NaN champion fails closed
    ],
)
def test_against_champion(challenger: float, champion: float, promote: bool) -> None:
    decision = decide(metrics(challenger), metrics(champion), PARAMS)
    assert decision.promote is promote


def test_no_champion_floors_decide() -> None:
    assert decide(metrics(0.5), None, PARAMS).promote
    rejected = decide(metrics(0.2), None, PARAMS)
    assert not rejected.promote
    assert any("pr_auc 0.2000 vs floor 0.3000" in c.detail for c in rejected.checks)
    assert any("no champion yet" in c.detail for c in rejected.checks)


def test_missing_metric_fails_closed() -> None:
    challenger = metrics(0.8)
    del challenger["roc_auc"]
    decision = decide(challenger, None, PARAMS)
    assert not decision.promote
    assert any("roc_auc is missing or NaN" in c.detail for c in decision.checks)


def test_slice_regression_rejects_despite_better_overall() -> None:
    # Given a challenger better overall but much worse on one well-populated slice
    slices_ours = {"channel": {"pos": {"pr_auc": 0.5, "positives": 40.0}}}
    slices_theirs = {"channel": {"pos": {"pr_auc": 0.7, "positives": 40.0}}}
    decision = decide(metrics(0.8, slices=slices_ours), metrics(0.7, slices=slices_theirs), PARAMS)
    # Then the slice check rejects it and names the slice
    assert not decision.promote
    assert [c.name for c in decision.checks if not c.passed] == ["slice:channel=pos"]


def test_small_slices_are_not_gated() -> None:
    slices_ours = {"channel": {"moto": {"pr_auc": 0.1, "positives": 5.0}}}
    slices_theirs = {"channel": {"moto": {"pr_auc": 0.9, "positives": 5.0}}}
    assert decide(
        metrics(0.8, slices=slices_ours), metrics(0.7, slices=slices_theirs), PARAMS
    ).promote


def test_latency_budget() -> None:
    decision = decide(metrics(0.9, latency=75.0), None, PARAMS)
    assert not decision.promote
    assert any(c.name == "latency" and not c.passed for c in decision.checks)


def test_markdown_is_a_pr_body() -> None:
    report = {
        "decision": "reject",
        "challenger": metrics(0.6),
        "champion": metrics(0.7),
        "champion_version": "3",
        "checks": [{"name": "non-regression:pr_auc", "passed": False, "detail": "worse"}],
        "floors": {"pr_auc": 0.3},
        "model": {"name": "example-model", "sha256": "a" * 64, "run_id": "r1"},
        "data_hash": "d1.dir",
        "git_commit": "c" * 40,
    }
    body = render_markdown(report)
    assert "❌ reject" in body
    assert "| pr_auc | 0.7000 | 0.6000 | -0.1000 | 0.3000 |" in body
    assert "version 3" in body
    assert "❌ `non-regression:pr_auc`: worse" in body
