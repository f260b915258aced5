"""Live model quality from late labels joined to logged predictions by row id.

Labels often arrive long after the prediction (a chargeback, a churned customer, a confirmed
diagnosis), so the estimate covers a lookback period, not the drift window. Labels are joined on the
contract's ``id`` column (``labels[contract.id] == log.row_id``) and made 0/1 with
``contract.labels`` (1 where the label column holds ``label.positive``). Three ways it can call for
retraining: PR-AUC or recall at the served threshold fall below their floors (contract.yaml
``monitoring.pr_auc_min``, ``monitoring.recall_min``), or the positive-label rate moves away from
the training period's by more than a ratio (params.yaml ``monitor.feedback.label_rate_ratio_max``:
concept drift that leaves the features' distributions alone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from argosy.config import FeedbackParams
from argosy.data.contract import Contract
from argosy.monitoring.columns import ROW_ID_COLUMN


class FeedbackError(ValueError):
    """Late labels cannot be joined (the contract declares no id, or a column is missing)."""


def require_id(contract: Contract, source: str = "contract.yaml") -> str:
    """The contract's id column, which the label join needs.

    Raises:
        FeedbackError: The contract declares no ``id``.
    """
    if contract.id is None:
        raise FeedbackError(
            f"{source} declares no `id`: late labels are joined to the logged predictions on the "
            "row id, so --labels needs one (add `id: <column>` to the contract, and send that "
            "column with each request)"
        )
    return contract.id


def id_text(values: pd.Series) -> pd.Series:
    """Row ids as strings, the form the prediction log stores (integers without a ``.0``)."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if len(whole) and bool((whole == np.floor(whole)).all()):
            values = values.astype("Int64")
    return values.astype("string")


@dataclass(frozen=True)
class Feedback:
    """The joined labels and what they say.

    Attributes:
        predictions: Logged predictions with a row id in the lookback.
        labelled: Those with a label.
        positives: Labelled positives (``label.positive``).
        label_rate: Positive-label rate among labelled predictions.
        reference_label_rate: Positive-label rate of the reference sample (training period).
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


def evaluate_feedback(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    reference_label_rate: float,
    params: FeedbackParams,
    contract: Contract,
) -> Feedback:
    """Join labels to predictions by row id and judge live quality.

    Args:
        predictions: Logged predictions (``row_id``, ``score``, ``decision``).
        labels: The contract's ``id`` and ``label.column`` (raw label values).
        reference_label_rate: The training period's positive-label rate.
        params: params.yaml ``monitor.feedback`` (the label-rate ratio).
        contract: The data contract: id and label columns, ``monitoring:`` counts and floors.

    Raises:
        FeedbackError: The contract declares no id, or a frame lacks a column it needs.
    """
    id_column = require_id(contract)
    label_column = contract.label.column
    for column, key in ((id_column, "id"), (label_column, "label.column")):
        if column not in labels.columns:
            raise FeedbackError(f"the labels lack column {column!r} (contract.yaml {key})")
    if ROW_ID_COLUMN not in predictions.columns:
        raise FeedbackError(f"the logged predictions lack the {ROW_ID_COLUMN!r} column")
    floors = contract.monitoring
    logged = predictions.drop(columns=[label_column, id_column], errors="ignore")
    logged = logged.dropna(subset=[ROW_ID_COLUMN])
    logged = logged.assign(**{ROW_ID_COLUMN: id_text(logged[ROW_ID_COLUMN])})
    logged = logged.drop_duplicates(ROW_ID_COLUMN, keep="last")
    known = labels.dropna(subset=[id_column, label_column])
    truth = pd.DataFrame(
        {ROW_ID_COLUMN: id_text(known[id_column]), "_label": contract.labels(known)}
    ).drop_duplicates(ROW_ID_COLUMN, keep="last")
    joined = logged.merge(truth, on=ROW_ID_COLUMN, how="inner")
    y = joined["_label"].to_numpy().astype(np.int64)
    positives = int(y.sum())
    label_rate = float(y.mean()) if len(y) else None
    common = {
        "predictions": len(logged),
        "labelled": len(joined),
        "positives": positives,
        "label_rate": label_rate,
        "reference_label_rate": reference_label_rate,
    }
    if len(joined) < floors.min_labelled_rows or positives < floors.min_positives:
        return Feedback(
            **common, pr_auc=None, recall=None, status="insufficient_labels", reasons=()
        )
    from sklearn.metrics import average_precision_score  # PR-AUC, as evaluate computes it

    scores = joined["score"].to_numpy(dtype=np.float64)
    pr_auc = float(average_precision_score(y, scores))
    recall = float(joined["decision"].to_numpy()[y == 1].mean())
    reasons = []
    if pr_auc < floors.pr_auc_min:
        reasons.append(
            f"live PR-AUC {pr_auc:.3f} below {floors.pr_auc_min} "
            "(contract.yaml monitoring.pr_auc_min)"
        )
    if recall < floors.recall_min:
        reasons.append(
            f"live recall {recall:.3f} below {floors.recall_min} "
            "(contract.yaml monitoring.recall_min)"
        )
    ratio = label_rate / reference_label_rate if reference_label_rate > 0 else float("inf")
    if ratio > params.label_rate_ratio_max or ratio < 1.0 / params.label_rate_ratio_max:
        reasons.append(
            f"positive-label rate {label_rate:.4f} is {ratio:.2f}x the training period's "
            f"{reference_label_rate:.4f} (limit {params.label_rate_ratio_max}x either way, "
            "params.yaml monitor.feedback.label_rate_ratio_max)"
        )
    return Feedback(
        **common,
        pr_auc=pr_auc,
        recall=recall,
        status="degraded" if reasons else "ok",
        reasons=tuple(reasons),
    )
