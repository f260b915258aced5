"""Metric functions on inputs whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from argosy.evaluation.metrics import calibration_points, score_metrics, to_json
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
