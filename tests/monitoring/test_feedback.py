"""Label feedback: late labels joined to predictions give live quality and a retraining reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from argosy.config import FeedbackParams
from argosy.data.contract import Contract, MonitoringContract
from argosy.monitoring.feedback import FeedbackError, evaluate_feedback
from tests.monitoring.conftest import fraud_contract
from tests.monitoring.second import second_contract

PARAMS = FeedbackParams(lookback_days=30, label_rate_ratio_max=1.5)
FLOORS = MonitoringContract(
    min_rows=1000, min_labelled_rows=1000, min_positives=20, pr_auc_min=0.5, recall_min=0.5
)


def example() -> Contract:
    """The example's contract with this module's label counts and floors."""
    return fraud_contract().model_copy(update={"monitoring": FLOORS})


def logged(
    n: int,
    positive_rate: float,
    quality: float,
    seed: int = 0,
    contract: Contract | None = None,
) -> tuple[pd.DataFrame, ...]:
    """Predictions and labels where ``quality`` of the positives score high."""
    contract = contract or example()
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(np.int64)
    caught = rng.random(n) < quality
    score = np.where((y == 1) & caught, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.55, n))
    ids = [f"id-{i}" for i in range(n)]
    predictions = pd.DataFrame(
        {"row_id": ids, "score": score, "decision": (score >= 0.5).astype(np.int8)}
    )
    label = contract.label
    values = np.where(y == 1, label.positive, label.negative)
    return predictions, pd.DataFrame({contract.id: ids, label.column: values})


def test_good_live_quality_is_ok() -> None:
    # Given 20k labelled predictions at the reference positive rate, 90% of positives scored high
    predictions, labels = logged(20_000, 0.01, 0.9)
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels, 0.01, PARAMS, example())
    # Then quality is ok with recall near 0.9
    assert fb.status == "ok", fb.reasons
    assert 0.8 < fb.recall < 1.0
    assert fb.pr_auc > 0.8


def test_low_recall_is_a_retraining_reason() -> None:
    # Given predictions that catch only 30% of the positives
    predictions, labels = logged(20_000, 0.01, 0.3)
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels, 0.01, PARAMS, example())
    # Then it is degraded, naming recall and PR-AUC and the contract keys of their floors
    assert fb.status == "degraded"
    assert any(
        r.startswith("live recall") and "contract.yaml monitoring.recall_min" in r
        for r in fb.reasons
    )
    assert any(
        r.startswith("live PR-AUC") and "contract.yaml monitoring.pr_auc_min" in r
        for r in fb.reasons
    )


def test_a_positive_rate_far_from_the_training_period_is_a_reason_either_way() -> None:
    # Given a live positive rate of 2.5% against a training rate of 1%, and one of 0.4%
    high = evaluate_feedback(*logged(20_000, 0.025, 0.9), 0.01, PARAMS, example())
    low = evaluate_feedback(*logged(40_000, 0.004, 0.9), 0.01, PARAMS, example())
    # Then both are degraded by the label-rate rule
    assert high.status == low.status == "degraded"
    assert any("positive-label rate" in r for r in high.reasons)
    assert any("positive-label rate" in r for r in low.reasons)


def test_too_few_labels_is_insufficient_not_ok() -> None:
    # Given 20k predictions of which only 500 have arrived labels
    predictions, labels = logged(20_000, 0.01, 0.1)
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels.head(500), 0.01, PARAMS, example())
    # Then it does not judge quality at all
    assert fb.status == "insufficient_labels"
    assert fb.pr_auc is None
    assert fb.reasons == ()
    assert fb.labelled == 500


def test_predictions_without_row_id_are_not_joined() -> None:
    # Given predictions whose row ids are missing (clients that do not send them)
    predictions, labels = logged(2_000, 0.02, 0.9)
    predictions["row_id"] = None
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels, 0.02, PARAMS, example())
    # Then nothing is labelled
    assert fb.predictions == 0
    assert fb.labelled == 0


def test_another_contract_joins_on_its_id_and_its_positive_value() -> None:
    # Given a contract whose id is `row-key` and whose label is "yes"/"no", and labels whose
    # integer row keys the server logged as strings
    contract = second_contract()
    predictions, labels = logged(8_000, 0.25, 0.9, seed=3, contract=contract)
    predictions["row_id"] = [str(i) for i in range(len(predictions))]
    labels["row-key"] = np.arange(len(labels), dtype=np.int64)
    # When feedback is evaluated
    fb = evaluate_feedback(predictions, labels, 0.25, PARAMS, contract)
    # Then every prediction is joined, "yes" counts as the positive class, and quality is ok
    assert fb.labelled == 8_000
    assert fb.positives == int((labels["churned"] == "yes").sum())
    assert fb.label_rate == pytest.approx(0.25, abs=0.02)
    assert fb.status == "ok", fb.reasons


def test_labels_without_the_contract_columns_name_the_contract_key() -> None:
    # Given labels that lack the contract's label column
    contract = second_contract()
    predictions, labels = logged(100, 0.25, 0.9, contract=contract)
    # When feedback is evaluated
    # Then the error names the column and its key in contract.yaml
    with pytest.raises(FeedbackError, match=r"'churned' \(contract.yaml label.column\)"):
        evaluate_feedback(predictions, labels.drop(columns="churned"), 0.25, PARAMS, contract)


def test_a_contract_without_id_cannot_join_labels() -> None:
    # Given a contract that declares no id
    contract = second_contract(id_column=None)
    predictions, labels = logged(100, 0.25, 0.9, contract=second_contract())
    # When feedback is evaluated
    # Then it says the contract declares no id
    with pytest.raises(FeedbackError, match=r"declares no `id`"):
        evaluate_feedback(predictions, labels, 0.25, PARAMS, contract)
