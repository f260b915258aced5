"""Live model quality from late labels (chargebacks) joined to logged predictions.

Fraud labels arrive weeks after the transaction, so the estimate covers a lookback period, not the
drift window. Three ways it can call for retraining: PR-AUC or recall at the served threshold fall
below their floors, or the fraud rate moves away from the training period's by more than a ratio
(concept drift that leaves the features' distributions alone, such as a new fraud pattern).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from argosy.config import FeedbackParams
from argosy.data import schema


@dataclass(frozen=True)
class Feedback:
    """The joined labels and what they say.

    Attributes:
        predictions: Logged predictions with a transaction id in the lookback.
        labelled: Those with a label.
        positives: Labelled frauds.
        label_rate: Fraud rate among labelled predictions.
        reference_label_rate: Fraud rate of the reference sample (training period).
        pr_auc: Average precision of the logged scores, or None with too few labels.
        recall: Recall of the logged decisions, or None with too few labels.
        status: ``ok``, ``degraded`` or ``insufficient_labels``.
        reasons: Why it is degraded (empty otherwise).
    """

    predictions: int
    labelled: int
    positives: int
    label_rate: float | None
    reference_label_rate: float
    pr_auc: float | None
    recall: float | None
    status: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {**asdict(self), "reasons": list(self.reasons)}


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """PR-AUC as average precision (ties broken pessimistically, like scikit-learn's)."""
    order = np.argsort(-scores, kind="stable")
    y, s = labels[order], scores[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[distinct]
    precision = tp / (distinct + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def evaluate_feedback(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    reference_label_rate: float,
    params: FeedbackParams,
) -> Feedback:
    """Join labels to predictions by transaction id and judge live quality.

    Args:
        predictions: Logged predictions (``transaction_id``, ``score``, ``decision``).
        labels: ``transaction_id`` and ``is_fraud``.
        reference_label_rate: The training period's fraud rate.
        params: Floors and minimum counts.
    """
    logged = predictions.drop(columns=[schema.LABEL_COLUMN], errors="ignore")
    logged = logged.dropna(subset=[schema.ID_COLUMN])
    logged = logged.drop_duplicates(schema.ID_COLUMN, keep="last")
    joined = logged.merge(labels, on=schema.ID_COLUMN, how="inner")
    y = joined[schema.LABEL_COLUMN].to_numpy().astype(np.int64)
    positives = int(y.sum())
    label_rate = float(y.mean()) if len(y) else None
    common = {
        "predictions": len(logged),
        "labelled": len(joined),
        "positives": positives,
        "label_rate": label_rate,
        "reference_label_rate": reference_label_rate,
    }
    if len(joined) < params.min_labelled_rows or positives < params.min_positives:
        return Feedback(
            **common, pr_auc=None, recall=None, status="insufficient_labels", reasons=()
        )
    scores = joined["score"].to_numpy(dtype=np.float64)
    pr_auc = average_precision(y, scores)
    recall = float(joined["decision"].to_numpy()[y == 1].mean())
    reasons = []
    if pr_auc < params.pr_auc_min:
        reasons.append(f"live PR-AUC {pr_auc:.3f} below {params.pr_auc_min}")
    if recall < params.recall_min:
        reasons.append(f"live recall {recall:.3f} below {params.recall_min}")
    ratio = label_rate / reference_label_rate if reference_label_rate > 0 else float("inf")
    if ratio > params.label_rate_ratio_max or ratio < 1.0 / params.label_rate_ratio_max:
        reasons.append(
            f"fraud rate {label_rate:.4f} is {ratio:.2f}x the training period's "
            f"{reference_label_rate:.4f} (limit {params.label_rate_ratio_max}x either way)"
        )
    return Feedback(
        **common,
        pr_auc=pr_auc,
        recall=recall,
        status="degraded" if reasons else "ok",
        reasons=tuple(reasons),
    )
