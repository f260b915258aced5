"""Metrics for a binary classifier whose positive class may be rare.

Accuracy and ROC-AUC flatter a model on imbalanced data, so the default headline metric is PR-AUC
(the contract's ``metric.primary`` picks), with recall at a fixed false-positive budget (what a
team can review), precision in the top-k, the Brier score for calibration, per-slice metrics on the
contract's ``slices``; :func:`measure_latency` gives the ONNX latency per row.
A metric that is undefined on the data (a slice with no positive label, a split with one class) is
NaN, never a guess.

The test split is scored one Parquet row group at a time (:func:`score_split`; ``prepare`` writes
one per raw-data partition), keeping only each row's score, label and slice values: a few bytes a
row, whatever the number of features.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from argosy.config import EvaluateParams
from argosy.data.contract import Contract, encode_frame
from argosy.files import write_all
from argosy.modeldir import (
    MODEL_FILE,
    ModelDirError,
    check_onnx,
    open_session,
    positive_scores,
    read_metadata,
)

log = logging.getLogger(__name__)

#: Metrics reported for every model, in table order.
METRICS = ("pr_auc", "roc_auc", "recall_at_fpr", "precision_at_k", "brier")
#: Metrics where a smaller value is the better model (every other one: larger is better).
LOWER_IS_BETTER = frozenset({"brier", "latency_us_per_row", "latency_us_single_row"})
#: The value a slice column's missing entries are reported under.
MISSING_SLICE = "(missing)"


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def score_metrics(
    scores: np.ndarray, labels: np.ndarray, fpr: float, top_k: int, threshold: float | None = None
) -> dict[str, float]:
    """Ranking, calibration and decision metrics of ``scores`` against binary ``labels``."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    out: dict[str, float] = {"rows": float(len(labels)), "positives": float(positives)}
    both_classes = 0 < positives < len(labels)
    if both_classes:
        out["pr_auc"] = float(average_precision_score(labels, scores))
        out["roc_auc"] = float(roc_auc_score(labels, scores))
        curve_fpr, curve_tpr, _ = roc_curve(labels, scores)
        out["recall_at_fpr"] = float(curve_tpr[curve_fpr <= fpr].max())
    else:
        out["pr_auc"] = out["roc_auc"] = out["recall_at_fpr"] = math.nan
    k = min(top_k, len(scores))
    top = np.argsort(-scores, kind="stable")[:k]
    out["precision_at_k"] = float(labels[top].mean()) if k else math.nan
    out["brier"] = float(brier_score_loss(labels, scores)) if len(labels) else math.nan
    if threshold is not None:
        flagged = scores >= threshold
        out["precision_at_threshold"] = float(labels[flagged].mean()) if flagged.any() else math.nan
        out["recall_at_threshold"] = float(flagged[labels == 1].mean()) if positives else math.nan
        negatives = labels == 0
        out["fpr_at_threshold"] = float(flagged[negatives].mean()) if negatives.any() else math.nan
    return out


def slice_values(column: pd.Series) -> pd.Categorical:
    """A slice column's values as the text the slices are named by (missing: one slice)."""
    return pd.Categorical(column.astype("string").fillna(MISSING_SLICE))


def slice_metrics(
    slices: dict[str, pd.Categorical],
    scores: np.ndarray,
    labels: np.ndarray,
    fpr: float,
    top_k: int,
    threshold: float | None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``score_metrics`` for every value of every slice column, values in sorted order.

    Args:
        slices: Per slice column, each row's :func:`slice_values`.
        scores: Each row's score.
        labels: Each row's label as 0/1.
        fpr: The false-positive budget of ``recall_at_fpr``.
        top_k: The k of ``precision_at_k``.
        threshold: The model's decision threshold.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column, values in slices.items():
        names = values.categories
        out[column] = {}
        for code in sorted(range(len(names)), key=names.__getitem__):
            rows = values.codes == code
            out[column][str(names[code])] = score_metrics(
                scores[rows], labels[rows], fpr, top_k, threshold
            )
    return out


def pr_curve_points(scores: np.ndarray, labels: np.ndarray, points: int = 200) -> list[dict]:
    """A down-sampled precision-recall curve for DVC plots."""
    from sklearn.metrics import precision_recall_curve

    if labels.sum() == 0:
        return []
    precision, recall, _ = precision_recall_curve(labels, scores)
    index = np.unique(np.linspace(0, len(precision) - 1, points).astype(int))
    return [
        {"recall": round(float(recall[i]), 6), "precision": round(float(precision[i]), 6)}
        for i in index
    ]


def calibration_points(scores: np.ndarray, labels: np.ndarray, bins: int) -> list[dict]:
    """Mean predicted vs observed positive rate per score quantile bin."""
    order = np.argsort(scores, kind="stable")
    out = []
    for i, chunk in enumerate(np.array_split(order, bins)):
        if len(chunk):
            out.append(
                {
                    "bin": i,
                    "predicted": round(float(scores[chunk].mean()), 6),
                    "observed": round(float(labels[chunk].mean()), 6),
                }
            )
    return out


class OnnxModel:
    """An exported model directory, its ``model.onnx`` checked against the recorded sha256."""

    def __init__(self, model_dir: Path, expected_sha256: str | None = None) -> None:
        """Load and verify the model.

        Raises:
            ModelDirError: A file is missing or invalid, or the model's sha256 differs from the
                expected one (default: the one ``metadata.json`` records).
        """
        self.metadata = read_metadata(model_dir)
        self.sha256 = check_onnx(model_dir, expected_sha256 or self.metadata.sha256)
        self.onnx_path = model_dir / MODEL_FILE
        self.features = self.metadata.features
        self.specs = self.metadata.specs
        self.threshold = self.metadata.threshold
        self._session = open_session(self.onnx_path)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode ``frame`` as this model's input, with the feature specs it was trained with.

        Raises:
            ModelDirError: The frame lacks a feature this model reads.
        """
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ModelDirError(f"model expects features the data lacks: {missing[:10]}")
        return encode_frame(frame, self.specs)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Positive-class probabilities for an encoded matrix."""
        return np.asarray(positive_scores(self._session, matrix, self.metadata.input_name))

    def latency_us_per_row(self, matrix: np.ndarray, repeats: int) -> dict[str, float]:
        """Median wall time per row for a batch, and for single rows, in microseconds."""
        batch_times, single_times = [], []
        self.predict(matrix[:1])
        for _ in range(repeats):
            started = time.perf_counter()
            self.predict(matrix)
            batch_times.append((time.perf_counter() - started) / len(matrix))
            started = time.perf_counter()
            self.predict(matrix[:1])
            single_times.append(time.perf_counter() - started)
        return {
            "latency_us_per_row": float(np.median(batch_times) * 1e6),
            "latency_us_single_row": float(np.median(single_times) * 1e6),
        }


@dataclass(frozen=True)
class ScoredSplit:
    """A model's scores on a split, in file order, with what the metrics read beside them.

    Attributes:
        scores: Each row's positive-class probability.
        labels: Each row's label as 0/1.
        slices: Per slice column of the contract, each row's :func:`slice_values`.
    """

    scores: np.ndarray
    labels: np.ndarray
    slices: dict[str, pd.Categorical]


def score_split(model: OnnxModel, path: Path, contract: Contract) -> ScoredSplit:
    """Score a prepared split one row group at a time, keeping scores, labels and slices only.

    Raises:
        ModelDirError: The split lacks a feature this model reads.
    """
    scores, labels = [], []
    slices: dict[str, list[pd.Categorical]] = {column: [] for column in contract.slices}
    with pq.ParquetFile(path) as parquet:
        present = set(parquet.schema_arrow.names)
        wanted = [*model.features, contract.label.column, *contract.slices]
        columns = [c for c in dict.fromkeys(wanted) if c in present]
        for index in range(parquet.num_row_groups):
            frame = parquet.read_row_group(index, columns=columns).to_pandas()
            scores.append(model.predict(model.matrix(frame)))
            labels.append(contract.labels(frame))
            for column, parts in slices.items():
                parts.append(slice_values(frame[column]))
    return ScoredSplit(
        np.concatenate(scores),
        np.concatenate(labels),
        {c: pd.api.types.union_categoricals(parts) for c, parts in slices.items()},
    )


def evaluate_model(
    model: OnnxModel, test: Path, params: EvaluateParams, contract: Contract
) -> tuple[dict[str, Any], ScoredSplit]:
    """Every metric of ``model`` on the split file ``test``; returns them and the scored split."""
    scored = score_split(model, test, contract)
    metrics: dict[str, Any] = score_metrics(
        scored.scores, scored.labels, params.fpr, params.top_k, model.threshold
    )
    metrics["slices"] = slice_metrics(
        scored.slices, scored.scores, scored.labels, params.fpr, params.top_k, model.threshold
    )
    return metrics, scored


def measure_latency(model: OnnxModel, test: Path, params: EvaluateParams) -> dict:
    """``latency_us_per_row`` (on the split's first ``latency_rows``) and ``latency_us_single_row``.

    A measurement of this machine at this moment, so it is taken by the gate for both models side
    by side, never stored with the reproducible metrics. Only those first rows are read.
    """
    with pq.ParquetFile(test) as parquet:
        columns = [f for f in model.features if f in parquet.schema_arrow.names]
        head = next(parquet.iter_batches(batch_size=params.latency_rows, columns=columns))
    sample = model.matrix(head.to_pandas())
    return model.latency_us_per_row(sample, params.latency_repeats)


def to_json(value: Any) -> Any:
    """Replace NaN/inf with None so the JSON is strict and NaN reads as 'missing'."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    return value


def run_evaluate(
    model_dir: Path,
    prepared_dir: Path,
    reports_dir: Path,
    params: EvaluateParams,
    contract: Contract,
) -> dict:
    """The evaluate stage: metrics.json, slices.json and the PR / calibration plots.

    The headline metrics are also logged, as ``test_<metric>``, on the model's MLflow training
    run, so the run shows how the model did on the held-out split next to how it trained.

    Raises:
        ModelDirError: The model directory is incomplete or altered.
        TrackingServerError: The tracking server is not reachable (checked before any scoring).
    """
    from argosy import tracking

    model = OnnxModel(model_dir)
    tracking_uri = tracking.connect(tracking.tracking_uri())
    metrics, scored = evaluate_model(model, prepared_dir / "test.parquet", params, contract)
    scores, labels = scored.scores, scored.labels
    headline = {k: v for k, v in metrics.items() if k != "slices"}
    plots = reports_dir / "plots"
    write_all(
        {
            reports_dir / "metrics.json": json.dumps(to_json(headline), indent=2) + "\n",
            reports_dir / "slices.json": json.dumps(to_json(metrics["slices"]), indent=2) + "\n",
            plots / "pr_curve.json": json.dumps(pr_curve_points(scores, labels)) + "\n",
            plots / "calibration.json": json.dumps(
                calibration_points(scores, labels, params.calibration_bins)
            )
            + "\n",
        }
    )
    run_id = tracking.training_run(tracking_uri, model.sha256)
    if run_id is None:
        log.warning("no MLflow run records model %s: test metrics not logged", model.sha256[:12])
    else:
        log_test_metrics(tracking_uri, run_id, headline)
    return metrics


def log_test_metrics(tracking_uri: str, run_id: str, metrics: dict[str, Any]) -> None:
    """``test_<name>`` for every finite headline metric, on the training run ``run_id``."""
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(f"test_{name}", float(value), now, 0)
        for name, value in metrics.items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    ]
    mlflow.MlflowClient(tracking_uri=tracking_uri).log_batch(run_id, metrics=batch)
