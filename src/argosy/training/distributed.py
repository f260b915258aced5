"""``train.engine: dask``: XGBoost trained on a Dask cluster, each worker on its share of the data.

The cluster is the one ``train.dask.scheduler`` names (in Kubernetes, the scheduler of the
``DaskJob`` the Argo task creates), or a ``LocalCluster`` of ``train.dask.workers`` processes on
this machine when it is empty: the very same code path either way.

Each worker is given a share of the prepared splits' row groups and builds its part of the
training matrix from them as the local engine builds the whole one
(:func:`argosy.training.batches.training_matrix`: quantized one row group at a time, and kept in
pages on the worker's disk with ``train.external_memory``), so it never holds the rows themselves.
The workers train together through XGBoost's collective (a Rabit tracker on the scheduler, where
``xgboost.dask`` puts it), so the quantiles, the histograms and the early-stopping metric are the
whole data set's. ``xgboost.dask`` is not used: it keeps every partition's features in the
workers' memory for the whole training beside their quantized copies (6,429 MiB for the process
tree at 20M rows, against 3,778 MiB for the local engine; docs/benchmarks.md "Scale") and takes
no external-memory input. XGBoost's own distributed external-memory example
(``python/examples/distributed_extmem_basic.py``, 3.0) drives the collective the same way.

The booster that comes back is an ordinary one, and the ONNX export, parity check, MLflow logging
and metadata that follow are the local engine's.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from argosy.config import DaskParams
from argosy.data.contract import Contract

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30
WORKERS_TIMEOUT_S = 600.0
"""How long a cluster's workers may take to join (pods pulling images, GPU nodes scaling up)."""
WATCH_S = 0.5
"""How often training checks that its workers are still in the cluster."""
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
        joined = len(_workers(client))
        raise DistributedTrainingError(
            f"only {joined} of train.dask.workers={workers} Dask workers joined the scheduler at "
            f"{address} within {WORKERS_TIMEOUT_S:.0f} s; check the worker pods "
            "(`kubectl get pods -l dask.org/component=worker`) or lower train.dask.workers"
        ) from None


def shares(groups: int, workers: int) -> list[list[int]]:
    """Row groups ``0..groups-1`` dealt round-robin to ``workers`` workers."""
    return [list(range(rank, groups, workers)) for rank in range(workers)]


def tracker_host(scheduler: str) -> str | None:
    """The address the tracker listens on: loopback for a local scheduler, else its own choice.

    A scheduler on a loopback address (a LocalCluster) keeps the tracker there too. Otherwise
    XGBoost picks the scheduler host's own IP (in Kubernetes the pod's), as ``xgboost.dask`` lets
    it: the scheduler's address may be a Service's name, which no process can listen on.
    """
    from distributed.comm import get_address_host

    host = get_address_host(scheduler)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return None
    return host if loopback else None


def _start_tracker(workers: int, host: str | None) -> dict[str, Any]:
    """Start XGBoost's Rabit tracker in this process (the scheduler's); the workers' arguments."""
    import threading

    from xgboost.tracker import RabitTracker

    # The timeout bounds the workers' joining and leaving, not the training between them.
    tracker = RabitTracker(
        n_workers=workers, host_ip=host, sortby="task", timeout=int(WORKERS_TIMEOUT_S)
    )
    tracker.start()
    # The tracker lives until every worker has finished; nothing here waits on it.
    threading.Thread(target=tracker.wait_for, daemon=True).start()
    return tracker.worker_args()


def _train_share(
    rank: int,
    tracker: dict[str, Any],
    prepared_dir: Path,
    contract: Contract,
    booster_params: dict[str, Any],
    train_groups: list[int],
    valid_groups: list[int],
    training: dict[str, Any],
) -> tuple[bytes | None, dict[str, Any]]:
    """Run on one worker: its share of the matrices, trained with the others; rank 0's model."""
    import xgboost as xgb
    from distributed import get_worker
    from xgboost.collective import CommunicatorContext

    from argosy.training.batches import eval_matrix, page_cache, training_matrix

    threads = get_worker().state.nthreads
    history: dict[str, Any] = {}
    # The task id orders the ranks (the tracker sorts by it), so rank 0 is always the first share.
    with (
        page_cache(training["external_memory"], booster_params["device"]) as cache,
        CommunicatorContext(**tracker, dmlc_task_id=f"argosy-{rank:05d}"),
    ):
        dtrain = training_matrix(
            prepared_dir / "train.parquet",
            contract,
            booster_params["max_bin"],
            cache,
            train_groups,
            threads,
        )
        dvalid = eval_matrix(
            prepared_dir / "valid.parquet", contract, training["eval_rows"], valid_groups
        )
        booster = xgb.train(
            booster_params | {"nthread": threads},
            dtrain,
            num_boost_round=training["rounds"],
            evals=[(dvalid, "valid")],
            early_stopping_rounds=training["early_stopping_rounds"],
            evals_result=history,
            verbose_eval=50 if rank == 0 else False,
            callbacks=list(training["callbacks"]) or None,
        )
        del dtrain, dvalid  # its pages go with the directory
    return (booster.save_raw("ubj") if rank == 0 else None), history


def _workers(client: Any) -> list[str]:
    """The addresses of the cluster's workers, asked of the scheduler.

    Not ``client.scheduler_info()``: the client refreshes what that returns in the background
    without the workers, so reading it may find none (a 20M-row run failed on it).
    """
    return sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


def _gather(client: Any, futures: list[Any], workers: list[str]) -> list[Any]:
    """The training tasks' results, or an error as soon as one fails or its worker leaves.

    A task is pinned to its worker (its rank's share), so one whose worker died would wait for
    that worker forever, and its peers with it: losing a worker fails the training instead.

    Raises:
        DistributedTrainingError: A worker left the cluster before its task finished.
    """
    while not all(future.done() for future in futures):
        if any(future.status == "error" for future in futures):
            break
        present = _workers(client)
        gone = [w for w, f in zip(workers, futures, strict=True) if not (f.done() or w in present)]
        if gone:
            raise DistributedTrainingError(
                f"training on the Dask cluster failed: worker {gone[0]} left the cluster (killed, "
                "or out of memory: see its log, or raise train.dask.memory_limit); no model was "
                "written"
            )
        time.sleep(WATCH_S)
    return client.gather(futures)


def train_on_dask(
    prepared_dir: Path,
    contract: Contract,
    booster_params: dict[str, Any],
    rounds: int,
    early_stopping_rounds: int,
    settings: DaskParams,
    *,
    eval_rows: int,
    external_memory: bool,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, dict[str, Any], float]:
    """Train on the cluster; return the booster, the per-round evaluation history and seconds.

    Args:
        prepared_dir: Holds ``train.parquet`` and ``valid.parquet``, readable at this path on
            every worker.
        contract: The data contract (features, label, encoder).
        booster_params: XGBoost parameters (as the local engine's).
        rounds: Most boosting rounds.
        early_stopping_rounds: Rounds without improvement on the validation split before stopping.
        settings: params.yaml ``train.dask``.
        eval_rows: Most validation rows early stopping scores (``train.early_stopping_rows``):
            the local engine's rows, every k-th of the split, spread over the workers.
        external_memory: ``train.external_memory``: each CPU worker keeps its share of the
            training matrix in pages on its local disk
            (:func:`argosy.training.batches.training_matrix`).
        callbacks: XGBoost training callbacks, run on the workers.

    Raises:
        DistributedTrainingError: The cluster is unreachable, a worker died or training failed.
    """
    import xgboost as xgb

    from argosy.training.batches import row_groups

    groups = {split: row_groups(prepared_dir / f"{split}.parquet") for split in ("train", "valid")}
    training = {
        "rounds": rounds,
        "early_stopping_rounds": early_stopping_rounds,
        "eval_rows": eval_rows,
        "external_memory": external_memory,
        "callbacks": list(callbacks),
    }
    with dask_client(settings) as client:
        log.info("training on Dask: %s", client.dashboard_link or client.scheduler.address)
        # Every worker needs rows of both splits: a split of few row groups uses fewer workers.
        workers = _workers(client)
        world = max(1, min(len(workers), *groups.values()))
        train_shares, valid_shares = (shares(groups[s], world) for s in ("train", "valid"))
        try:
            host = tracker_host(client.scheduler.address)
            tracker = client.run_on_scheduler(_start_tracker, world, host)
            started = time.perf_counter()
            futures = [
                client.submit(
                    _train_share,
                    rank,
                    tracker,
                    prepared_dir,
                    contract,
                    booster_params,
                    train_shares[rank],
                    valid_shares[rank],
                    training,
                    key=f"argosy-train-{rank}",
                    workers=[worker],
                    allow_other_workers=False,
                    pure=False,
                )
                for rank, worker in enumerate(workers[:world])
            ]
            model, history = _gather(client, futures, workers[:world])[0]
        except DistributedTrainingError:
            raise
        except Exception as exc:  # anything the cluster raises: a lost worker, a bad partition
            raise DistributedTrainingError(
                f"training on the Dask cluster failed ({type(exc).__name__}: {exc}); no model "
                "was written"
            ) from exc
    booster = xgb.Booster(model_file=bytearray(model))
    return booster, history, time.perf_counter() - started
