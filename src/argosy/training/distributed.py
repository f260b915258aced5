"""``train.engine: dask``: XGBoost trained by ``xgboost.dask`` on a Dask cluster.

The cluster is the one ``train.dask.scheduler`` names (in Kubernetes, the scheduler of the
``DaskJob`` the Argo task creates), or a ``LocalCluster`` of ``train.dask.workers`` processes on
this machine when it is empty: the very same code path either way. The splits are read as Dask
dataframes (one partition per Parquet row group) and encoded on the workers with the contract's
one encoder, so no process holds the whole training set; the booster that comes back is an
ordinary one, and the ONNX export, parity check, MLflow logging and metadata that follow are the
local engine's, which read the splits on this process one row group at a time
(:mod:`argosy.training.batches`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from argosy.config import DaskParams
from argosy.data.contract import Contract

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30
WORKERS_TIMEOUT_S = 600.0
"""How long a cluster's workers may take to join (pods pulling images, GPU nodes scaling up)."""
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
"""Read when ``train.dask.scheduler`` is empty: the dask-kubernetes operator sets it in a
DaskJob's job pod."""


class DistributedTrainingError(RuntimeError):
    """The Dask cluster could not be reached, or training on it failed; nothing was written."""


@contextmanager
def dask_client(settings: DaskParams) -> Iterator[Any]:
    """A client of the configured scheduler, or of a LocalCluster started (and stopped) here.

    The scheduler is ``train.dask.scheduler``, else ``$DASK_SCHEDULER_ADDRESS``; with neither,
    a LocalCluster of ``train.dask.workers`` processes on 127.0.0.1.

    Raises:
        DistributedTrainingError: The scheduler does not answer within
            :data:`CONNECT_TIMEOUT_S` seconds.
    """
    from distributed import Client, LocalCluster

    address = settings.scheduler or os.environ.get(SCHEDULER_ENV, "")
    if address:
        try:
            client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise DistributedTrainingError(
                f"cannot reach the Dask scheduler at {address} within "
                f"{CONNECT_TIMEOUT_S} s ({exc}); check train.dask.scheduler, or leave it empty "
                "to train on a LocalCluster"
            ) from None
        with client:
            _wait_for_workers(client, settings.workers, address)
            yield client
        return
    with (
        LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _wait_for_workers(client: Any, workers: int, address: str) -> None:
    """Wait until ``workers`` workers joined, so that every run spreads the data alike.

    Raises:
        DistributedTrainingError: Fewer joined within :data:`WORKERS_TIMEOUT_S` seconds.
    """
    try:
        client.wait_for_workers(workers, timeout=WORKERS_TIMEOUT_S)
    except TimeoutError:
        joined = len(client.scheduler_info().get("workers", {}))
        raise DistributedTrainingError(
            f"only {joined} of train.dask.workers={workers} Dask workers joined the scheduler at "
            f"{address} within {WORKERS_TIMEOUT_S:.0f} s; check the worker pods "
            "(`kubectl get pods -l dask.org/component=worker`) or lower train.dask.workers"
        ) from None


def _encoded(path: Path, contract: Contract) -> tuple[Any, Any]:
    """(features, labels) of one split as Dask arrays, encoded partition by partition."""
    import dask.dataframe as dd

    frame = dd.read_parquet(str(path), split_row_groups=True)
    columns = list(contract.feature_names)
    meta = pd.DataFrame({c: pd.Series(dtype=np.float32) for c in columns})

    def encode(part: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(contract.to_matrix(part), columns=columns, index=part.index)

    def label(part: pd.DataFrame) -> pd.Series:
        return pd.Series(contract.labels(part), index=part.index, name="label")

    features = frame.map_partitions(encode, meta=meta)
    labels = frame.map_partitions(label, meta=pd.Series(dtype=np.int64, name="label"))
    return features.to_dask_array(lengths=True), labels.to_dask_array(lengths=True)


def train_on_dask(
    prepared_dir: Path,
    contract: Contract,
    booster_params: dict[str, Any],
    rounds: int,
    early_stopping_rounds: int,
    settings: DaskParams,
    *,
    eval_rows: int,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, dict[str, Any], float]:
    """Train on the cluster; return the booster, the per-round evaluation history and seconds.

    Args:
        prepared_dir: Holds ``train.parquet`` and ``valid.parquet``.
        contract: The data contract (features, label, encoder).
        booster_params: XGBoost parameters (as the local engine's).
        rounds: Most boosting rounds.
        early_stopping_rounds: Rounds without improvement on the validation split before stopping.
        settings: params.yaml ``train.dask``.
        eval_rows: Most validation rows early stopping scores (``train.early_stopping_rows``;
            the local engine's rows: every k-th, see
            :func:`argosy.training.batches.training_matrices`).
        callbacks: XGBoost training callbacks, run on the workers.

    Raises:
        DistributedTrainingError: The cluster is unreachable, a worker died or training failed.
    """
    from xgboost import dask as dxgb

    from argosy.training.batches import eval_stride

    with dask_client(settings) as client:
        log.info("training on Dask: %s", client.dashboard_link or client.scheduler.address)
        try:
            x_train, y_train = _encoded(prepared_dir / "train.parquet", contract)
            x_valid, y_valid = _encoded(prepared_dir / "valid.parquet", contract)
            stride = eval_stride(x_valid.shape[0], eval_rows)
            x_valid, y_valid = x_valid[::stride], y_valid[::stride]
            # The booster's max_bin on both: XGBoost refuses a reference quantized otherwise.
            max_bin = booster_params["max_bin"]
            dtrain = dxgb.DaskQuantileDMatrix(client, x_train, y_train, max_bin=max_bin)
            dvalid = dxgb.DaskQuantileDMatrix(client, x_valid, y_valid, max_bin=max_bin, ref=dtrain)
            started = time.perf_counter()
            output = dxgb.train(
                client,
                booster_params,
                dtrain,
                num_boost_round=rounds,
                evals=[(dvalid, "valid")],
                early_stopping_rounds=early_stopping_rounds,
                callbacks=list(callbacks) or None,
            )
        except Exception as exc:  # anything the cluster raises: a lost worker, a bad partition
            raise DistributedTrainingError(
                f"training on the Dask cluster failed ({type(exc).__name__}: {exc}); no model "
                "was written"
            ) from exc
    return output["booster"], output["history"], time.perf_counter() - started
