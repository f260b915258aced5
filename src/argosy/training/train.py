"""Train the XGBoost classifier, export it to ONNX and record the run in MLflow.

The export is trusted only after a parity check: ONNX and native predictions on the test split must
agree within ``train.onnx_tolerance``. The deployable directory (``model.onnx`` + ``metadata.json``)
is written atomically, so a failed run leaves the previous model untouched.

No split is ever held whole (:mod:`argosy.training.batches`): training and validation are
quantized matrices built row group by row group, and the validation scores, the parity check over
the whole test split and the input example are computed one row group at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from argosy import proc, tracking
from argosy.config import TrainParams
from argosy.data.contract import Contract
from argosy.hashing import file_sha256
from argosy.modeldir import (
    INPUT_NAME,
    MODEL_FILE,
    NATIVE_FILE,
    SERVING_ARTIFACT_DIR,
    TAG_DATA_HASH,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_MODEL_NAME,
    TAG_MODEL_URI,
    TAG_SHA256,
    Metadata,
    open_session,
    positive_scores,
    write_metadata,
)

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training could not produce a trustworthy model."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    model_dir: Path
    sha256: str
    run_id: str
    device: str
    best_iteration: int
    threshold: float
    onnx_max_abs_diff: float
    valid_pr_auc: float


def cuda_available() -> bool:
    """Whether XGBoost was built with CUDA and a GPU is visible."""
    import xgboost

    if not xgboost.build_info().get("USE_CUDA"):
        return False
    try:
        listed = proc.run_bytes(["nvidia-smi", "-L"], check=False, timeout=20)
    except proc.CommandError:  # not installed, or hung
        return False
    return listed.returncode == 0 and b"GPU" in listed.stdout


def _on_dask_cluster(params: TrainParams) -> bool:
    """Whether training runs on a Dask cluster's workers rather than in this process."""
    from argosy.training.distributed import SCHEDULER_ENV

    return params.engine == "dask" and bool(params.dask.scheduler or os.environ.get(SCHEDULER_ENV))


def resolve_device(requested: str, remote_workers: bool = False) -> str:
    """Map ``auto|cpu|cuda`` to the device XGBoost will use.

    Args:
        requested: ``train.device``.
        remote_workers: Training runs on a Dask cluster's workers, whose GPUs this process (the
            DaskJob's job pod, on a CPU node) cannot see: ``cuda`` is taken as asked, ``auto``
            is the CPU (the cluster template places GPU workers only for ``cuda``).

    Raises:
        TrainingError: ``cuda`` was requested and no GPU is usable here.
    """
    if requested == "cpu":
        return "cpu"
    if remote_workers:
        return "cuda" if requested == "cuda" else "cpu"
    available = cuda_available()
    if requested == "cuda" and not available:
        raise TrainingError(
            "train.device is 'cuda' but no GPU is visible to XGBoost (nvidia-smi -L failed or "
            "XGBoost lacks CUDA support); use 'auto' or 'cpu'"
        )
    return "cuda" if available else "cpu"


def booster_params(params: TrainParams, device: str) -> dict[str, Any]:
    """The XGBoost parameters for ``params`` on ``device``."""
    return {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "aucpr"],
        "tree_method": "hist",
        "device": device,
        "max_depth": params.max_depth,
        "learning_rate": params.learning_rate,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "min_child_weight": params.min_child_weight,
        "reg_lambda": params.reg_lambda,
        "max_bin": params.max_bin,
        "seed": params.seed,
    }


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """The lowest threshold whose false-positive rate on negatives is at most ``fpr``."""
    negatives = np.sort(scores[labels == 0])
    if len(negatives) == 0:
        raise TrainingError("the validation split has no negative labels")
    allowed = int(np.floor(fpr * len(negatives)))
    # Scores strictly above the (allowed+1)-th highest negative flag at most `allowed` negatives.
    cutoff = negatives[len(negatives) - allowed - 1]
    return float(np.nextafter(np.float32(cutoff), np.float32(np.inf)))


def export_onnx(booster: Any, n_features: int, name: str) -> bytes:
    """Convert a binary:logistic booster to an ONNX model with one FP32 ``features`` input.

    Args:
        booster: The trained booster.
        n_features: Width of the input.
        name: The graph's name (the contract's model name).
    """
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    # A fixed graph name: the converter's default is a random UUID, which would make the same
    # booster export to different bytes and break sha256 pinning and cross-run comparison.
    model = onnxmltools.convert_xgboost(
        booster,
        name=name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
    )
    return model.SerializeToString()


def onnx_scores(model_bytes: bytes, matrix: np.ndarray) -> np.ndarray:
    """Positive-class probabilities from the ONNX model."""
    return np.asarray(positive_scores(open_session(model_bytes), matrix))


def check_parity(native: np.ndarray, exported: np.ndarray, tolerance: float) -> float:
    """Return the largest difference, or raise when it exceeds ``tolerance``.

    Raises:
        TrainingError: The ONNX model does not reproduce the native predictions.
    """
    if native.shape != exported.shape:
        raise TrainingError(f"ONNX returned {exported.shape} scores for {native.shape} rows")
    diff = float(np.nanmax(np.abs(native - exported))) if len(native) else 0.0
    if not np.isfinite(diff) or diff > tolerance:
        raise TrainingError(
            f"ONNX parity check failed: max |onnx - native| = {diff:.3g} > {tolerance:.1g}"
        )
    return diff


def onnx_environment() -> dict[str, Any]:
    """The logged MLflow model's environment: this Python, MLflow, ONNX and ONNX Runtime.

    Given whole, so MLflow infers nothing (it would probe uv and pip, which a uv-made venv lacks,
    and warn).
    """
    import platform
    from importlib.metadata import version

    packages = ("mlflow", "onnx", "onnxruntime")
    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={platform.python_version()}",
            "pip",
            {"pip": [f"{name}=={version(name)}" for name in packages]},
        ],
    }


def run_params(params: TrainParams, device: str) -> dict[str, Any]:
    """params.yaml ``train:`` as flat MLflow params (``dask.*`` only when the engine is dask)."""
    flat = params.model_dump(exclude={"dask"}) | {"device": device}
    if params.engine == "dask":
        flat |= {f"dask.{k}": v for k, v in params.dask.model_dump().items()}
    return flat


def run_name(model: str, commit: str, dirty: bool) -> str:
    """The MLflow run's name: the model and the commit it was trained from (``+dirty`` if so)."""
    short = commit[:10] if commit and commit != "unknown" else "uncommitted"
    return f"{model}@{short}{'+dirty' if dirty else ''}"


def log_curves(evals_result: dict[str, Any]) -> None:
    """Every evaluation metric of every boosting round, as a stepped MLflow metric.

    ``valid_aucpr`` at step ``i`` is the validation PR-AUC after round ``i``, so the run's chart
    shows the learning curve and where early stopping cut it.
    """
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{split}_{name}", float(value), now, step)
        for split, by_name in evals_result.items()
        for name, values in by_name.items()
        for step, value in enumerate(values)
    ]
    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def log_datasets(
    rows: dict[str, int], contract: Contract, prepared_dir: Path, data_hash: str
) -> None:
    """The splits as the run's dataset inputs: schema from the contract, digest from DVC's hash.

    Only the description travels (the rows stay in DVC): the source is the split's file, the
    digest is derived from ``data.dvc``'s hash, the split and its row count (``rows``, from the
    Parquet footers), and the schema is the contract's (features and label), so no pass over the
    rows is needed however large the data.
    """
    import mlflow
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    kinds = {"numeric": "double", "integer": "long", "boolean": "boolean", "categorical": "string"}
    # A nullable integer arrives as a float column (NaN for missing), as the encoder sees it.
    columns = [
        ColSpec(
            "double" if f.type == "integer" and f.nullable else kinds[f.type],
            column,
            required=not f.nullable,
        )
        for column, f in contract.features.items()
    ]
    positive = contract.label.positive
    label_type = (
        "boolean"
        if isinstance(positive, bool)
        else "long"
        if isinstance(positive, int)
        else "double"
        if isinstance(positive, float)
        else "string"
    )
    schema = Schema([*columns, ColSpec(label_type, contract.label.column)])
    context = {"train": "training", "valid": "validation", "test": "testing"}
    for name, count in rows.items():
        digest = hashlib.sha256(f"{data_hash}/{name}/{count}".encode()).hexdigest()[:10]
        uri = (prepared_dir / f"{name}.parquet").resolve().as_uri()
        source = get_dataset_source_from_json(json.dumps({"uri": uri}), "local")
        dataset = MetaDataset(source, name=f"{contract.name}-{name}", digest=digest, schema=schema)
        mlflow.log_input(dataset, context=context.get(name, name))


def _input_example(matrix: np.ndarray, rows: int = 5) -> np.ndarray:
    complete = matrix[~np.isnan(matrix).any(axis=1)]
    return (complete if len(complete) else np.nan_to_num(matrix))[:rows]


def parity_on_split(
    booster: Any, model_bytes: bytes, test_path: Path, contract: Contract, tolerance: float
) -> tuple[float, np.ndarray]:
    """:func:`check_parity` over every row of the test split, one row group at a time.

    The whole split rather than a sample: a disagreement confined to rare values (a category, a
    value at a split point) is what the check is for, and both predictions cost far less than
    the training before them.

    Returns:
        The largest difference, and the logged model's input example (from the first row group).

    Raises:
        TrainingError: A row group's ONNX scores differ from the native ones beyond ``tolerance``.
    """
    from argosy.training.batches import batches

    session = open_session(model_bytes)
    worst, example = 0.0, None
    for features, _ in batches(test_path, contract):
        if example is None:
            example = _input_example(features)
        native = booster.inplace_predict(features)
        exported = np.asarray(positive_scores(session, features))
        worst = max(worst, check_parity(native, exported, tolerance))
    if example is None:
        raise TrainingError(f"{test_path}: the test split has no rows to check the export on")
    return worst, example


def train(
    prepared_dir: Path,
    model_dir: Path,
    params: TrainParams,
    contract: Contract,
    root: Path | None = None,
) -> TrainResult:
    """Train, export, check and log the model.

    Args:
        prepared_dir: Holds ``train/valid/test.parquet`` from ``prepare``.
        model_dir: Receives ``model.onnx``, ``metadata.json`` and ``model.ubj``.
        params: The ``train`` section of params.yaml.
        contract: The data contract (features, label, the model's name).
        root: Repository root for provenance and the embedded MLflow store (default: cwd).

    Raises:
        TrainingError: The GPU is missing, the data is unusable or the ONNX export is not faithful.
    """
    import mlflow
    import onnx
    import xgboost as xgb
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    from argosy.training.batches import (
        page_cache,
        positives,
        predict,
        row_count,
        training_matrices,
    )

    root = root or Path.cwd()
    # Reach the tracking server before reading data or spending minutes on training.
    try:
        uri = tracking.connect(tracking.tracking_uri(root))
    except tracking.TrackingServerError as exc:
        raise TrainingError(str(exc)) from exc
    paths = {s: prepared_dir / f"{s}.parquet" for s in ("train", "valid", "test")}
    rows = {s: row_count(p) for s, p in paths.items()}
    for name in ("train", "valid"):
        if positives(paths[name], contract) == 0:
            raise TrainingError(f"the {name} split has no positive labels to learn from")

    device = resolve_device(params.device, remote_workers=_on_dask_cluster(params))
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id = tracking.ensure_experiment(contract.name, root)
    except (MlflowException, OSError) as exc:
        raise TrainingError(f"cannot reach the MLflow tracking server at {uri}: {exc}") from exc
    log.info(
        "training on %s (engine %s): %d rows, %d features",
        device,
        params.engine,
        rows["train"],
        len(contract.features),
    )
    if params.engine == "dask":
        from argosy.training.distributed import SCHEDULER_ENV

        if device == "cuda" and not (params.dask.scheduler or os.environ.get(SCHEDULER_ENV)):
            raise TrainingError(
                "train.engine dask on a GPU needs a cluster of dask-cuda workers "
                "(train.dask.scheduler); a LocalCluster trains on the CPU: set train.device cpu"
            )
        from argosy.training.distributed import DistributedTrainingError, train_on_dask

        try:
            booster, evals_result, train_seconds = train_on_dask(
                prepared_dir,
                contract,
                booster_params(params, device),
                params.n_estimators,
                params.early_stopping_rounds,
                params.dask,
                eval_rows=params.early_stopping_rows,
                external_memory=params.external_memory,
            )
        except DistributedTrainingError as exc:
            raise TrainingError(str(exc)) from exc
    else:
        with page_cache(params.external_memory, device) as cache:
            dtrain, dvalid = training_matrices(
                prepared_dir, contract, params.max_bin, params.early_stopping_rows, cache
            )
            evals_result = {}
            started = time.perf_counter()
            booster = xgb.train(
                booster_params(params, device),
                dtrain,
                num_boost_round=params.n_estimators,
                evals=[(dvalid, "valid")],
                early_stopping_rounds=params.early_stopping_rounds,
                evals_result=evals_result,
                verbose_eval=50,
            )
            train_seconds = time.perf_counter() - started
            del dtrain, dvalid  # its pages go with the directory
    best = int(booster.best_iteration)
    booster = booster[: best + 1]
    booster.set_param({"device": "cpu"})

    threshold = threshold_at_fpr(*predict(booster, paths["valid"], contract), params.threshold_fpr)
    model_bytes = export_onnx(booster, len(contract.features), contract.name)
    diff, example = parity_on_split(
        booster, model_bytes, paths["test"], contract, params.onnx_tolerance
    )
    valid_pr_auc = float(evals_result["valid"]["aucpr"][best])

    commit, dirty = tracking.git_commit(root)
    data_hash = tracking.data_hash(root)
    with tempfile.TemporaryDirectory(
        dir=model_dir.parent if model_dir.parent.exists() else None
    ) as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        (staged / MODEL_FILE).write_bytes(model_bytes)
        booster.save_model(staged / NATIVE_FILE)
        sha = file_sha256(staged / MODEL_FILE)
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name(contract.name, commit, dirty)
        ) as run:
            mlflow.log_params(run_params(params, device))
            log_datasets(rows, contract, prepared_dir, data_hash)
            log_curves(evals_result)
            mlflow.set_tags(
                {
                    TAG_DATA_HASH: data_hash,
                    TAG_GIT_COMMIT: commit,
                    TAG_GIT_DIRTY: str(dirty).lower(),
                    TAG_SHA256: sha,
                    TAG_MODEL_NAME: contract.name,
                }
            )
            mlflow.log_metrics(
                {
                    "best_iteration": best,
                    "valid_pr_auc": valid_pr_auc,
                    "threshold": threshold,
                    "onnx_max_abs_diff": diff,
                    "train_seconds": train_seconds,
                    "train_rows": rows["train"],
                }
            )
            info = mlflow.onnx.log_model(
                onnx.load_from_string(model_bytes),
                name="model",
                signature=infer_signature(example, onnx_scores(model_bytes, example)),
                input_example=example,
                save_as_external_data=False,
                # Stated, not inferred: no environment probing (uv, pip) and no warnings.
                conda_env=onnx_environment(),
                onnx_execution_providers=["CPUExecutionProvider"],
            )
            metadata = Metadata(
                name=contract.name,
                features=list(contract.feature_names),
                specs=list(contract.specs),
                threshold=threshold,
                sha256=sha,
                id_column=contract.id,
                data_hash=data_hash,
                device=device,
                engine=params.engine,
                best_iteration=best,
                xgboost_version=xgb.__version__,
            )
            mlflow.set_tag(TAG_MODEL_URI, info.model_uri)
            write_metadata(staged, metadata)
            mlflow.log_artifacts(str(staged), artifact_path=SERVING_ARTIFACT_DIR)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.move(str(staged), model_dir)
    result = TrainResult(
        model_dir=model_dir,
        sha256=sha,
        run_id=run.info.run_id,
        device=device,
        best_iteration=best,
        threshold=threshold,
        onnx_max_abs_diff=diff,
        valid_pr_auc=valid_pr_auc,
    )
    log.info("trained %s", asdict(result))
    return result
