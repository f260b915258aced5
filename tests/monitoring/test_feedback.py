"""Label feedback: late labels joined to predictions give live quality and a retraining reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from argosy.config import FeedbackParams
from argosy.monitoring.feedback import average_precision, evaluate_feedback

PARAMS = FeedbackParams(
    lookback_days=30,
    min_labelled_rows=1000,
    min_positives=20,
    pr_auc_min=0.5,
    recall_min=0.5,
    label_rate_ratio_max=1.5,
)


def logged(n: int, fraud_rate: float, quality: float, seed: int = 0) -> tuple[pd.DataFrame, ...]:
    """Predictions and labels where ``quality`` of the frauds score high."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fraud_rate).astype(np.int64)
    caught = rng.random(n) < quality
    score = np.where((y == 1) & caught, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.55, n))
    ids = [f"tx-{i}" for i in range(n)]
    predictions = pd.DataFrame(
        {"transaction_id": ids, "score": score, "decision": (score >= 0.5).astype(np.int8)}
    )
    return predictions, pd.DataFrame({"transaction_id": ids, "is_fraud": y})


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 20)), min_size=2, max_size=60).filter(
        lambda rows: 0 < sum(y for y, _ in rows) < len(rows)
    )
)
def test_average_precision_matches_scikit_learn(rows: list[tuple[int, int]]) -> None:
    # Given labels and tied integer scores
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=float)
    # When PR-AUC is computed without scikit-learn
    # Then it equals scikit-learn's average precision
    assert abs(average_precision(y, s) - average_precision_score(y, s)) < 1e-12


def test_good_live_quality_is_ok() -> None:
    # Given 20k labelled predictions at the reference fraud rate, 90% of frauds scored high
    predictions, labels = logged(20_000, 0.01, 0.9)
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels, 0.01, PARAMS)
    # Then quality is ok with recall near 0.9
    assert fb.status == "ok", fb.reasons
    assert 0.8 < fb.recall < 1.0
    assert fb.pr_auc > 0.8


def test_low_recall_is_a_retraining_reason() -> None:
    # Given predictions that catch only 30% of frauds
    predictions, labels = logged(20_000, 0.01, 0.3)
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels, 0.01, PARAMS)
    # Then it is degraded, naming recall and PR-AUC
    assert fb.status == "degraded"
    assert any(r.startswith("live recall") for r in fb.reasons)
    assert any(r.startswith("live PR-AUC") for r in fb.reasons)


def test_a_fraud_rate_far_from_the_training_period_is_a_reason_either_way() -> None:
    # Given a live fraud rate of 2.5% against a training rate of 1%, and one of 0.4%
    high = evaluate_feedback(*logged(20_000, 0.025, 0.9), 0.01, PARAMS)
    low = evaluate_feedback(*logged(40_000, 0.004, 0.9), 0.01, PARAMS)
    # Then both are degraded by the fraud-rate rule
    assert high.status == low.status == "degraded"
    assert any("fraud rate" in r for r in high.reasons)
    assert any("fraud rate" in r for r in low.reasons)


def test_too_few_labels_is_insufficient_not_ok() -> None:
    # Given 20k predictions of which only 500 have arrived labels
    predictions, labels = logged(20_000, 0.01, 0.1)
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels.head(500), 0.01, PARAMS)
    # Then it does not judge quality at all
    assert fb.status == "insufficient_labels"
    assert fb.pr_auc is None
    assert fb.reasons == ()
    assert fb.labelled == 500


def test_predictions_without_transaction_id_are_not_joined() -> None:
    # Given predictions whose transaction ids are missing (clients that do not send them)
    predictions, labels = logged(2_000, 0.02, 0.9)
    predictions["transaction_id"] = None
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels, 0.02, PARAMS)
    # Then nothing is labelled
    assert fb.predictions == 0
    assert fb.labelled == 0
