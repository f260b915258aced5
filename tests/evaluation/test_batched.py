"""Evaluate and the gate score the test split one row group at a time, as whole frames would.

A small model is trained on splits of several row groups. Evaluate runs with whole-file reads
refused; its files must equal, exactly, what the metric functions give on the whole test split
scored at once: ONNX Runtime scores each row on its own, so the batch it is in does not change it,
and the metrics then see the same arrays in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from argosy.config import Params
from argosy.data.contract import Contract
from argosy.evaluation.metrics import (
    MISSING_SLICE,
    OnnxModel,
    calibration_points,
    measure_latency,
    pr_curve_points,
    run_evaluate,
    score_metrics,
    to_json,
)
from argosy.training.train import train
from tests.rowgroups import GROUP, Reads, prepared_splits, row_groups


@pytest.fixture(scope="module")
def model(
    tmp_path_factory: pytest.TempPathFactory, params: Params, contract: Contract
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    prepared = prepared_splits(root, params.prepare, contract)
    settings = params.train.model_copy(update={"device": "cpu", "n_estimators": 30})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        train(prepared, root / "model", settings, contract, root)
    return root / "model", prepared


def whole_frame_reports(
    model: OnnxModel, test: pd.DataFrame, params: Params, contract: Contract
) -> dict[str, object]:
    """What evaluate wrote when it scored the whole test frame at once."""
    settings = params.evaluate
    scores = model.predict(model.matrix(test))
    labels = contract.labels(test)
    headline = score_metrics(scores, labels, settings.fpr, settings.top_k, model.threshold)
    slices = {}
    for column in contract.slices:
        values = test[column].astype("string").fillna(MISSING_SLICE).to_numpy(dtype=object)
        slices[column] = {
            str(value): score_metrics(
                scores[values == value],
                labels[values == value],
                settings.fpr,
                settings.top_k,
                model.threshold,
            )
            for value in sorted(pd.unique(values))
        }
    return {
        "metrics.json": to_json(headline),
        "slices.json": to_json(slices),
        "plots/pr_curve.json": pr_curve_points(scores, labels),
        "plots/calibration.json": calibration_points(scores, labels, settings.calibration_bins),
    }


def test_evaluate_reads_row_groups_and_writes_the_whole_frame_reports(
    model: tuple[Path, Path],
    tmp_path: Path,
    params: Params,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
    isolated_mlflow: str,
) -> None:
    model_dir, prepared = model
    test = pd.read_parquet(prepared / "test.parquet")
    expected = whole_frame_reports(OnnxModel(model_dir), test, params, contract)
    # Given a test split of several row groups, and whole-file reads refused
    assert len(row_groups(prepared / "test.parquet")) >= 2
    reads = Reads(monkeypatch)
    # When evaluate runs
    run_evaluate(model_dir, prepared, tmp_path / "reports", params.evaluate, contract)
    # Then it read one row group at a time, each once
    assert reads.rows == row_groups(prepared / "test.parquet")
    assert max(reads.rows) <= GROUP
    # And every report is the whole-frame one, exactly
    for name, content in expected.items():
        written = json.loads((tmp_path / "reports" / name).read_text())
        assert written == json.loads(json.dumps(content)), name
    assert set(json.loads((tmp_path / "reports" / "slices.json").read_text())) == set(
        contract.slices
    )


def test_latency_reads_only_the_first_rows_across_row_groups(
    model: tuple[Path, Path], params: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir, prepared = model
    loaded = OnnxModel(model_dir)
    first = pd.read_parquet(prepared / "test.parquet").head(GROUP + 500)
    # Given latency_rows spanning the first two row groups
    settings = params.evaluate.model_copy(
        update={"latency_rows": GROUP + 500, "latency_repeats": 1}
    )
    timed: list[np.ndarray] = []
    monkeypatch.setattr(
        loaded, "latency_us_per_row", lambda matrix, repeats: timed.append(matrix) or {}
    )
    Reads(monkeypatch)
    # When latency is measured
    measure_latency(loaded, prepared / "test.parquet", settings)
    # Then it timed exactly the split's first latency_rows rows
    np.testing.assert_array_equal(timed[0], loaded.matrix(first))
