"""`train.engine: dask`: the workers of a real LocalCluster train, then the local engine's export.

One small simulated period is prepared once; both engines train on it with the same params, so
the exported models can be compared. A worker killed mid-training must fail the stage with a
clear message and leave no model behind.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from argosy.config import DaskParams, Params
from argosy.data.contract import Contract
from argosy.data.prepare import prepare
from argosy.evaluation.metrics import OnnxModel, score_metrics
from argosy.examples.fraud.simulate import SimulationSpec, simulate_to
from argosy.training import distributed
from argosy.training.train import TrainingError, train
from tests.rowgroups import Reads, row_groups

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, params: Params, contract: Contract) -> Path:
    root = tmp_path_factory.mktemp("dask")
    simulate_to(SimulationSpec(40_000, 11, date(2026, 1, 1), 30), root / "data")
    prepare(root / "data", root / "prepared", params.prepare, contract)
    return root / "prepared"


def small(params: Params, **update) -> object:
    base = {"device": "cpu", "n_estimators": 80, "early_stopping_rounds": 15}
    return params.train.model_copy(update=base | update)


def pr_auc(model_dir: Path, test: pd.DataFrame, contract: Contract) -> float:
    model = OnnxModel(model_dir)
    scores = model.predict(model.matrix(test))
    return score_metrics(scores, contract.labels(test), 0.01, 100, model.threshold)["pr_auc"]


def test_dask_engine_trains_exports_and_matches_the_local_model(
    tmp_path: Path,
    prepared: Path,
    params: Params,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Given the same data and params, once per engine (dask: a two-worker LocalCluster), with a
    # max_bin other than XGBoost's default (both quantized matrices must be given it)
    local = train(prepared, tmp_path / "local", small(params, max_bin=128), contract, tmp_path)
    dask_params = small(params, max_bin=128, engine="dask", dask=DaskParams(workers=2))
    # When the dask engine trains, this process reading no split whole
    reads = Reads(monkeypatch)
    distributed = train(prepared, tmp_path / "dask", dask_params, contract, tmp_path)
    monkeypatch.undo()
    # Then the dask model went through the same export and parity check, and says how it trained
    meta = json.loads((tmp_path / "dask" / "metadata.json").read_text())
    assert meta["engine"] == "dask"
    assert distributed.onnx_max_abs_diff <= params.train.onnx_tolerance
    assert (tmp_path / "dask" / "model.onnx").stat().st_size > 1000
    # And this process read the splits one row group at a time (whole-file reads would raise)
    groups = [n for s in ("train", "valid", "test") for n in row_groups(prepared / f"{s}.parquet")]
    assert 0 < max(reads.rows) <= max(groups)
    # And it is as good as the local one on the held-out split
    test = pd.read_parquet(prepared / "test.parquet")
    ours, theirs = (
        pr_auc(tmp_path / "dask", test, contract),
        pr_auc(tmp_path / "local", test, contract),
    )
    assert abs(ours - theirs) < 0.05, (ours, theirs)
    assert local.best_iteration > 0
    assert distributed.best_iteration > 0


class _KillWorkerAt:
    """An XGBoost callback that kills the worker process it runs in at one round."""

    def __new__(cls, round_: int):  # built lazily: xgboost is imported inside the test
        import xgboost as xgb

        class Kill(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log) -> bool:
                if epoch == round_:
                    os._exit(1)
                return False

        return Kill()


def test_a_worker_dying_mid_training_fails_clearly_and_writes_no_model(
    tmp_path: Path,
    prepared: Path,
    params: Params,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Given a two-worker LocalCluster where a worker process dies at round 5
    killing = functools.partial(distributed.train_on_dask, callbacks=[_KillWorkerAt(5)])
    monkeypatch.setattr(distributed, "train_on_dask", killing)
    dask_params = small(params, engine="dask", dask=DaskParams(workers=2))
    # When the train stage runs there
    with pytest.raises(TrainingError, match="training on the Dask cluster failed") as failure:
        train(prepared, tmp_path / "model", dask_params, contract, tmp_path)
    # Then it fails with the cluster's reason and no model directory is left
    assert "no model was written" in str(failure.value)
    assert not (tmp_path / "model").exists()


def test_training_asks_the_scheduler_for_its_workers_not_the_clients_cache(
    tmp_path: Path,
    prepared: Path,
    params: Params,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client refreshes `scheduler_info()` in the background without any workers.

    Reading it mid-training once made a healthy 20M-row run fail with "worker left the cluster".
    """
    from distributed import Client

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Given a client whose cached scheduler info lists no workers, as after a background refresh
    monkeypatch.setattr(Client, "scheduler_info", lambda self, *a, **k: {"workers": {}})
    dask_params = small(params, engine="dask", dask=DaskParams(workers=2))
    # When the dask engine trains / Then it trains on both workers and writes the model
    result = train(prepared, tmp_path / "model", dask_params, contract, tmp_path)
    assert (tmp_path / "model" / "model.onnx").is_file()
    assert result.best_iteration > 0


def test_an_unreachable_scheduler_is_a_clear_error_before_any_work(
    tmp_path: Path,
    prepared: Path,
    params: Params,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr("argosy.training.distributed.CONNECT_TIMEOUT_S", 2)
    dead = small(params, engine="dask", dask=DaskParams(scheduler="tcp://127.0.0.1:9"))
    with pytest.raises(
        TrainingError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        train(prepared, tmp_path / "model", dead, contract, tmp_path)
    assert not (tmp_path / "model").exists()


def test_a_dask_cluster_trains_on_its_workers_gpus_not_the_job_pods(monkeypatch) -> None:
    """The DaskJob's job pod is on a CPU node: `cuda` is the workers' device, not checked there."""
    from argosy.training import train as train_module

    monkeypatch.setattr(train_module, "cuda_available", lambda: False)
    assert train_module.resolve_device("cuda", remote_workers=True) == "cuda"
    assert train_module.resolve_device("auto", remote_workers=True) == "cpu"
    with pytest.raises(train_module.TrainingError, match="no GPU is visible"):
        train_module.resolve_device("cuda")


@pytest.mark.parametrize(
    ("scheduler", "host"),
    [
        ("tcp://127.0.0.1:8786", "127.0.0.1"),
        ("tcp://[::1]:8786", "::1"),
        ("tcp://10.1.2.3:8786", None),
        ("tcp://argosy-train-abc12-scheduler:8786", None),
    ],
)
def test_the_tracker_stays_on_loopback_locally_and_picks_the_pods_ip_in_a_cluster(
    scheduler: str, host: str | None
) -> None:
    """A Service name cannot be listened on: XGBoost then picks the scheduler pod's own IP."""
    assert distributed.tracker_host(scheduler) == host
