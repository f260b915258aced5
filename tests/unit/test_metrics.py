"""Metric functions on inputs whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from argosy.evaluation.metrics import (
    MISSING_SLICE,
    calibration_points,
    score_metrics,
    slice_metrics,
    slice_values,
    to_json,
)
from argosy.training.train import TrainingError, check_parity, threshold_at_fpr


def test_perfect_ranking() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    scores = np.linspace(0, 1, 100)
    m = score_metrics(scores, labels, fpr=0.01, top_k=10, threshold=0.95)
    assert m["pr_auc"] == pytest.approx(1.0)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["recall_at_fpr"] == pytest.approx(1.0)
    assert m["precision_at_k"] == pytest.approx(1.0)
    assert m["fpr_at_threshold"] == 0.0


def test_inverted_ranking_and_brier() -> None:
    labels = np.array([1] * 10 + [0] * 90)
    scores = np.linspace(0, 1, 100)
    m = score_metrics(scores, labels, fpr=0.01, top_k=10)
    assert m["roc_auc"] == pytest.approx(0.0)
    assert m["precision_at_k"] == 0.0
    assert m["brier"] == pytest.approx(np.mean((scores - labels) ** 2))


def test_one_class_gives_nan_not_a_guess() -> None:
    m = score_metrics(np.random.default_rng(0).random(50), np.zeros(50), fpr=0.01, top_k=5)
    assert math.isnan(m["pr_auc"])
    assert math.isnan(m["roc_auc"])
    assert math.isnan(m["recall_at_fpr"])
    assert to_json(m)["pr_auc"] is None


def test_threshold_keeps_fpr_budget() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random(20_000) < 0.02).astype(int)
    scores = rng.random(20_000) + labels
    threshold = threshold_at_fpr(scores, labels, 0.01)
    assert (scores[labels == 0] >= threshold).mean() <= 0.01
    assert (scores[labels == 0] >= threshold).mean() > 0.008


def test_calibration_bins_cover_all_rows() -> None:
    scores, labels = np.linspace(0, 1, 1000), np.r_[np.zeros(900), np.ones(100)]
    points = calibration_points(scores, labels, 10)
    assert len(points) == 10
    assert points[-1]["observed"] == 1.0
    assert points[0]["observed"] == 0.0


def test_parity_check() -> None:
    a = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    assert check_parity(a, a + 1e-7, 1e-5) <= 1e-6
    with pytest.raises(TrainingError, match="ONNX parity check failed"):
        check_parity(a, a + 1e-3, 1e-5)
    with pytest.raises(TrainingError, match="ONNX parity check failed"):
        check_parity(a, np.array([np.nan, 0.2, 0.3], dtype=np.float32) * np.inf, 1e-5)


def test_device_resolution_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from argosy.training import train as training

    # Given no usable GPU (this machine, or a CUDA-less XGBoost build)
    monkeypatch.setattr(training, "cuda_available", lambda: False)
    # Then auto falls back to the CPU and an explicit cuda request fails loudly
    assert training.resolve_device("auto") == "cpu"
    assert training.resolve_device("cpu") == "cpu"
    with pytest.raises(TrainingError, match=r"train\.device is 'cuda' but no GPU is visible"):
        training.resolve_device("cuda")


def test_device_resolution_with_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from argosy.training import train as training

    monkeypatch.setattr(training, "cuda_available", lambda: True)
    assert training.resolve_device("auto") == "cuda"
    assert training.resolve_device("cpu") == "cpu"


def test_slices_from_batches_with_different_values_are_named_and_counted_as_one_column() -> None:
    # Given a slice column read in two batches that hold different values, one missing
    first = slice_values(pd.Series(["web", "pos", "web"]))
    second = slice_values(pd.Series(["atm", None], dtype=object))
    values = pd.api.types.union_categoricals([first, second])
    scores, labels = np.array([0.9, 0.1, 0.8, 0.2, 0.3]), np.array([1, 0, 1, 0, 0])
    # When sliced
    out = slice_metrics({"channel": values}, scores, labels, 0.01, 10, 0.5)["channel"]
    # Then each value is one slice, in sorted order, missing values under their own name
    assert list(out) == sorted(["atm", "pos", "web", MISSING_SLICE])
    assert {name: m["rows"] for name, m in out.items()} == {
        "atm": 1.0,
        "pos": 1.0,
        "web": 2.0,
        MISSING_SLICE: 1.0,
    }
    assert out["web"]["positives"] == 2.0
