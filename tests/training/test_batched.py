"""The train stage reads the splits one row group at a time and trains what whole frames would.

The raw data is written in small row groups, so each prepared split has several. Whole-split
reads (``pd.read_parquet``, ``pq.read_table``, ``ParquetFile.read``) fail the test while training
runs; afterwards the same quantities are computed here from whole frames and compared.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from argosy.config import Params, TrainParams
from argosy.data.contract import Contract
from argosy.evaluation.metrics import OnnxModel, score_metrics
from argosy.training.batches import batches, eval_matrix
from argosy.training.batches import row_groups as group_count
from argosy.training.distributed import shares
from argosy.training.train import TrainResult, booster_params, threshold_at_fpr, train
from tests.rowgroups import GROUP, Reads, prepared_splits, row_groups


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, params: Params, contract: Contract) -> Path:
    return prepared_splits(tmp_path_factory.mktemp("batched"), params.prepare, contract)


def small(params: Params, **update: object) -> TrainParams:
    base = {"device": "cpu", "n_estimators": 80, "early_stopping_rounds": 15}
    return params.train.model_copy(update=base | update)


def whole(prepared: Path, split: str, contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_parquet(prepared / f"{split}.parquet")
    return contract.to_matrix(frame), contract.labels(frame)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, prepared: Path, params: Params, contract: Contract
) -> tuple[TrainResult, list[int], Path]:
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        reads = Reads(mp)
        result = train(prepared, root / "model", small(params), contract, root)
    return result, reads.rows, root


def test_each_split_has_several_row_groups(prepared: Path) -> None:
    for split in ("train", "valid", "test"):
        assert len(row_groups(prepared / f"{split}.parquet")) >= 2, split


def test_training_reads_no_split_whole_only_row_groups(
    trained: tuple[TrainResult, list[int], Path], prepared: Path
) -> None:
    # Given the splits' row groups / When train ran with whole-file reads refused (the fixture)
    _, rows, _ = trained
    groups = [n for s in ("train", "valid", "test") for n in row_groups(prepared / f"{s}.parquet")]
    # Then it finished, reading no more than one row group at a time, and at least each once
    assert max(rows) <= max(groups) <= GROUP
    assert len(rows) >= len(groups)


def test_threshold_parity_and_validation_pr_auc_equal_the_whole_frame_figures(
    trained: tuple[TrainResult, list[int], Path], prepared: Path, contract: Contract, params: Params
) -> None:
    import xgboost as xgb

    result, _, _ = trained
    booster = xgb.Booster(model_file=str(result.model_dir / "model.ubj"))
    # Given the whole validation and test splits as single matrices
    valid, valid_labels = whole(prepared, "valid", contract)
    test, _ = whole(prepared, "test", contract)
    # Then the threshold is the one whole-frame validation scores give: a row's score does not
    # depend on the batch it is predicted in
    scores = booster.predict(xgb.DMatrix(valid))
    assert result.threshold == threshold_at_fpr(scores, valid_labels, params.train.threshold_fpr)
    # And the parity figure is the whole test split's largest difference
    model = OnnxModel(result.model_dir)
    whole_diff = float(np.max(np.abs(booster.predict(xgb.DMatrix(test)) - model.predict(test))))
    assert result.onnx_max_abs_diff == whole_diff
    assert result.onnx_max_abs_diff <= params.train.onnx_tolerance
    # And the validation PR-AUC (XGBoost's, on the quantized matrix) is XGBoost's on raw values
    booster.set_param({"eval_metric": "aucpr"})
    evaluated = booster.eval(xgb.DMatrix(valid, label=valid_labels), "valid")
    aucpr = float(evaluated.split("valid-aucpr:")[1].split()[0])
    assert result.valid_pr_auc == pytest.approx(aucpr, abs=1e-6)


def test_the_model_is_as_good_as_one_trained_on_whole_frames(
    trained: tuple[TrainResult, list[int], Path], prepared: Path, contract: Contract, params: Params
) -> None:
    import xgboost as xgb

    result, _, _ = trained
    # Given a booster trained the whole-frame way: DMatrix of all rows, same params and rounds
    settings = small(params)
    reference = xgb.train(
        booster_params(settings, "cpu"),
        xgb.DMatrix(*whole(prepared, "train", contract)),
        num_boost_round=settings.n_estimators,
        evals=[(xgb.DMatrix(*whole(prepared, "valid", contract)), "valid")],
        early_stopping_rounds=settings.early_stopping_rounds,
        verbose_eval=False,
    )
    reference = reference[: reference.best_iteration + 1]
    test, labels = whole(prepared, "test", contract)
    # Then the batched model's test PR-AUC is the reference's within a tight tolerance (the
    # quantile sketch built batch by batch may place a cut differently on other data)
    ours = OnnxModel(result.model_dir).predict(test)
    theirs = reference.predict(xgb.DMatrix(test))
    assert score_metrics(ours, labels, 0.01, 100)["pr_auc"] == pytest.approx(
        score_metrics(theirs, labels, 0.01, 100)["pr_auc"], abs=1e-3
    )


def test_mlflow_records_row_counts_from_the_footers(
    trained: tuple[TrainResult, list[int], Path], prepared: Path, contract: Contract
) -> None:
    result, _, root = trained
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(result.run_id)
    train_rows = sum(len(labels) for _, labels in batches(prepared / "train.parquet", contract))
    assert run.data.metrics["train_rows"] == train_rows
    contexts = sorted(d.tags[0].value for d in run.inputs.dataset_inputs)
    assert contexts == ["testing", "training", "validation"]


def test_max_bin_reaches_the_quantized_matrix(
    tmp_path: Path, prepared: Path, params: Params, contract: Contract, isolated_mlflow: str
) -> None:
    # Given max_bin other than XGBoost's default, which refuses matrices quantized otherwise
    settings = small(params, max_bin=64, n_estimators=10)
    # When trained / Then training succeeds with that max_bin
    result = train(prepared, tmp_path / "model", settings, contract, tmp_path)
    assert result.best_iteration >= 0
    assert mlflow.get_run(result.run_id).data.params["max_bin"] == "64"


def test_early_stopping_scores_every_kth_validation_row_past_its_limit(
    prepared: Path, contract: Contract
) -> None:
    """`train.early_stopping_rows` bounds the validation matrix, whatever the split's size."""
    valid, labels = whole(prepared, "valid", contract)
    limit = len(valid) // 3 + 1  # a stride of 3, across row groups of other sizes
    # When the matrix is built with a limit below the split's rows
    bounded = eval_matrix(prepared / "valid.parquet", contract, limit)
    # Then it holds every third row of the whole split, in order, with its label
    assert bounded.num_row() == len(valid[::3]) <= limit
    assert np.array_equal(bounded.get_label(), labels[::3].astype(np.float32))
    native = xgb.train({"max_depth": 2}, xgb.DMatrix(valid, label=labels), 3)
    np.testing.assert_array_equal(native.predict(bounded), native.predict(xgb.DMatrix(valid[::3])))
    # And at or above the split's rows, every row
    full = eval_matrix(prepared / "valid.parquet", contract, len(valid))
    assert full.num_row() == len(valid)


@pytest.mark.parametrize("workers", [2, 3])
def test_the_dask_workers_shares_of_the_early_stopping_rows_are_the_local_engines(
    prepared: Path, contract: Contract, workers: int
) -> None:
    """Each worker scores the every-k-th rows of its row groups: together, the local rows."""
    path = prepared / "valid.parquet"
    valid, labels = whole(prepared, "valid", contract)
    limit = len(valid) // 3 + 1
    # Given the validation row groups dealt to the workers
    dealt = shares(group_count(path), workers)
    parts = [eval_matrix(path, contract, limit, share) for share in dealt]
    # Then their rows together are the local engine's every third row, each exactly once
    native = xgb.train({"max_depth": 3}, xgb.DMatrix(valid, label=labels), 3)
    ours = np.sort(np.concatenate([native.predict(part) for part in parts]))
    theirs = np.sort(native.predict(xgb.DMatrix(valid[::3])))
    np.testing.assert_array_equal(ours, theirs)
    assert sum(p.get_label().sum() for p in parts) == labels[::3].sum()


def test_external_memory_pages_are_on_disk_while_training_and_gone_after(
    tmp_path: Path,
    prepared: Path,
    params: Params,
    contract: Contract,
    isolated_mlflow: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`train.external_memory` trains from pages in $TMPDIR the model in-memory training would."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    pages: list[int] = []
    real_train = xgb.train

    def spying(*args: object, **kwargs: object) -> xgb.Booster:
        pages.append(sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file()))
        return real_train(*args, **kwargs)

    # Given a scratch directory for temporary files, watched when XGBoost starts boosting
    with monkeypatch.context() as patched:
        patched.setattr(tempfile, "tempdir", str(scratch))
        patched.setattr(xgb, "train", spying)
        # When the train stage runs with and without external memory
        paged = train(prepared, tmp_path / "paged", small(params), contract, tmp_path)
        in_memory = train(
            prepared, tmp_path / "memory", small(params, external_memory=False), contract, tmp_path
        )
    # Then pages were written for the external-memory run only, and removed when it ended
    assert params.train.external_memory is True  # the default
    paged_bytes, in_memory_bytes = pages
    assert paged_bytes > 0
    assert in_memory_bytes == 0
    assert list(scratch.iterdir()) == []
    # And both trained the same model: the same rounds and the same scores
    assert paged.best_iteration == in_memory.best_iteration
    test, _ = whole(prepared, "test", contract)
    np.testing.assert_allclose(
        OnnxModel(paged.model_dir).predict(test),
        OnnxModel(in_memory.model_dir).predict(test),
        rtol=0,
        atol=1e-6,
    )
