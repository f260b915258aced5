"""Every simulator drift scenario is detected, and baseline traffic is not, across five seeds.

Feature drift (Evidently) catches the scenarios that move feature distributions; the new fraud
pattern moves little but the fraud rate, so label feedback is what catches it. The baseline runs
are the false-positive count: it must be zero.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from argosy.config import FeedbackParams
from argosy.data.simulate import SimulationSpec, simulate
from argosy.monitoring.drift import DriftSettings, evidently_drift, numpy_drift
from argosy.monitoring.feedback import evaluate_feedback
from tests.monitoring.conftest import encoded

ROWS = 60_000
DRIFT_SHARE = 0.08  # params.yaml monitor.drift_share
SETTINGS = DriftSettings(max_rows=200_000)
FEEDBACK = FeedbackParams(
    lookback_days=30,
    min_labelled_rows=5000,
    min_positives=30,
    pr_auc_min=0.0001,  # the stand-in score says nothing about a real model's quality
    recall_min=0.0001,
    label_rate_ratio_max=1.5,
)


def window(scenario: str, seed: int) -> pd.DataFrame:
    """A later period of traffic in ``scenario``, encoded as the server logs it."""
    spec = SimulationSpec(rows=ROWS, seed=seed, start=date(2026, 4, 1), days=14, scenario=scenario)
    return encoded(simulate(spec))


@pytest.mark.parametrize("scenario", ["merchant_mix", "amount_inflation", "channel_shift"])
def test_feature_drift_scenarios_are_detected(reference: pd.DataFrame, scenario: str) -> None:
    # Given a window of drifted traffic and the training period's reference sample
    current = window(scenario, seed=99)
    # When Evidently's drift preset compares them
    result = evidently_drift(reference.drop(columns="score", errors="ignore"), current, SETTINGS)
    # Then the drift share is over the threshold, led by the columns the scenario changes
    assert result.drift_share > DRIFT_SHARE, result.to_dict()["features"]
    expected = {
        "merchant_mix": "merchant_category",
        "amount_inflation": "customer_avg_amount_30d",
        "channel_shift": "channel",
    }[scenario]
    assert expected in result.drifted_columns


def test_new_fraud_pattern_is_detected_by_label_feedback(reference: pd.DataFrame) -> None:
    # Given traffic with the new bust-out fraud pattern and its late labels
    current = window("new_fraud_pattern", seed=99)
    labels = current[["transaction_id", "is_fraud"]]
    # When the labels are joined to the logged predictions
    fb = evaluate_feedback(current, labels, float(reference["is_fraud"].mean()), FEEDBACK)
    # Then the fraud rate is far from the training period's: a retraining reason
    assert fb.status == "degraded"
    assert any("fraud rate" in r for r in fb.reasons)


def test_baseline_is_not_detected_across_five_seeds(reference: pd.DataFrame) -> None:
    # Given five windows of baseline traffic with different seeds
    false_positives = []
    shares = []
    for seed in range(1, 6):
        current = window("baseline", seed)
        # When drift and label feedback are evaluated
        drift = evidently_drift(reference, current, SETTINGS)
        labels = current[["transaction_id", "is_fraud"]]
        fb = evaluate_feedback(current, labels, float(reference["is_fraud"].mean()), FEEDBACK)
        shares.append(round(drift.drift_share, 3))
        if drift.drift_share > DRIFT_SHARE or fb.status == "degraded":
            false_positives.append((seed, drift.drifted_columns, fb.reasons))
    # Then none of them calls for retraining (false-positive count 0 of 5)
    print(f"baseline drift shares {shares}; false positives {len(false_positives)} of 5")
    assert false_positives == []


def test_evidently_and_numpy_compute_the_same_distances(reference: pd.DataFrame) -> None:
    # Given a drifted window and a reference with scores (prediction drift)
    current = window("channel_shift", seed=3).head(20_000)
    scored = reference.assign(score=reference["merchant_risk_score"].clip(0, 1))
    # When both implementations compare them
    ev = evidently_drift(scored, current, SETTINGS)
    np_ = numpy_drift(scored, current, SETTINGS)
    # Then every column's distance agrees (the benchmark's floor computes the same thing)
    for a, b in zip(ev.features, np_.features, strict=True):
        assert a.column == b.column
        assert abs(a.distance - b.distance) < 1e-6, a.column
    assert ev.prediction is not None
    assert np_.prediction is not None
    assert abs(ev.prediction.distance - np_.prediction.distance) < 1e-6
