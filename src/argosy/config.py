"""A typed, validated view of ``params.yaml``.

Every section forbids unknown keys and checks types strictly, so a typo or a wrong type fails before
any work starts and the message names the key. Reading the file has no other effect.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from argosy.yamlfile import describe, read_mapping

DEFAULT_PARAMS = Path("params.yaml")

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Positive = Annotated[int, Field(gt=0)]


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SimulateParams(_Section):
    """How the pinned data set was generated."""

    rows: Positive
    seed: Annotated[int, Field(ge=0)]
    start: str
    days: Positive
    scenario: str = "baseline"

    @field_validator("start")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        date.fromisoformat(value)
        return value


class PrepareParams(_Section):
    """The split (time-ordered, or stratified without an event time) and the drift reference."""

    valid_fraction: Fraction
    test_fraction: Fraction
    reference_rows: Positive
    seed: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _room_to_train(self) -> PrepareParams:
        if self.valid_fraction + self.test_fraction >= 0.9:
            raise ValueError("valid_fraction + test_fraction must leave at least 10% to train on")
        return self


class DaskParams(_Section):
    """Where ``engine: dask`` trains: a scheduler's address, or a LocalCluster of this size."""

    scheduler: str = ""
    workers: Annotated[int, Field(ge=1, le=256)] = 2
    threads_per_worker: Annotated[int, Field(ge=1, le=64)] = 1
    memory_limit: str = "auto"


class TrainParams(_Section):
    """XGBoost settings and the export checks."""

    engine: Literal["local", "dask"] = "local"
    dask: DaskParams = DaskParams()
    device: Literal["auto", "cpu", "cuda"]
    seed: Annotated[int, Field(ge=0)]
    n_estimators: Positive
    early_stopping_rounds: Positive
    early_stopping_rows: Annotated[int, Field(ge=1000)] = 2_000_000
    external_memory: bool = True
    max_depth: Annotated[int, Field(ge=1, le=16)]
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)]
    subsample: Annotated[float, Field(gt=0.0, le=1.0)]
    colsample_bytree: Annotated[float, Field(gt=0.0, le=1.0)]
    min_child_weight: Annotated[float, Field(ge=0.0)]
    reg_lambda: Annotated[float, Field(ge=0.0)]
    max_bin: Annotated[int, Field(ge=2, le=1024)]
    threshold_fpr: Fraction
    onnx_tolerance: Annotated[float, Field(gt=0.0)]


class EvaluateParams(_Section):
    """Metrics for an imbalanced problem."""

    fpr: Fraction
    top_k: Positive
    calibration_bins: Annotated[int, Field(ge=2, le=100)]
    latency_rows: Positive
    latency_repeats: Positive


class GateParams(_Section):
    """The champion/challenger margins (the primary metric and floors are in the data contract)."""

    max_regression: Annotated[float, Field(ge=0.0)]
    slice_max_regression: Annotated[float, Field(ge=0.0)]
    slice_min_positives: Positive
    max_latency_us_per_row: Annotated[float, Field(gt=0.0)]


K8sName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
ImageByDigest = Annotated[str, Field(pattern=r"^[a-z0-9.:/_-]+@sha256:[0-9a-f]{64}$")]
Duration = Annotated[str, Field(pattern=r"^[0-9]+(s|m|h)$")]


class SecretKeyParams(_Section):
    """A reference to one key of a Kubernetes Secret (the value never appears in git)."""

    name: K8sName
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$")]


class DvcRemoteParams(_Section):
    """The S3-compatible DVC remote that carries data between tasks, with the run-cache."""

    url: Annotated[str, Field(pattern=r"^s3://[a-z0-9.-]+(/.*)?$")]
    endpoint: str | None = None


class WorkflowSecretsParams(_Section):
    """Secret references the pipeline pods read; every value lives in the cluster only."""

    storage_access_key: SecretKeyParams
    storage_secret_key: SecretKeyParams
    mlflow_tracking_uri: SecretKeyParams
    github_token: SecretKeyParams
    git_username: SecretKeyParams
    git_password: SecretKeyParams
    signing_key: SecretKeyParams | None = None
    """PEM private key `argosy register` signs the served model directory with (None: unsigned)."""
    signing_trust: SecretKeyParams | None = None
    """PEM public key (or CA chain) `argosy promote` verifies a signed model against."""


class TolerationParams(_Section):
    """One Kubernetes toleration."""

    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class GpuParams(_Section):
    """Where GPU stages run; every other stage gets none of this, so it never lands on GPU nodes."""

    stages: list[str]
    node_selector: dict[str, str]
    tolerations: list[TolerationParams]
    resource: Annotated[str, Field(pattern=r"^nvidia\.com/[-.a-z0-9]+$")] = "nvidia.com/gpu"
    count: Positive = 1


class TaskResourcesParams(_Section):
    """Requests (and the memory limit) of every pipeline container."""

    cpu: str
    memory: str


class DaskClusterParams(_Section):
    """The scheduler and worker pods of the ``DaskJob`` that trains when ``train.engine: dask``.

    How many workers, and their threads and memory limit, are ``train.dask``'s: they shape the
    model, so they are the train stage's params; only the pods' sizes are cluster settings.
    """

    scheduler: TaskResourcesParams = TaskResourcesParams(cpu="1", memory="2Gi")
    worker: TaskResourcesParams = TaskResourcesParams(cpu="2", memory="8Gi")


class RetryParams(_Section):
    """Retries of transient errors (never of failures of the training code itself)."""

    limit: Annotated[int, Field(ge=0, le=10)]
    backoff: Duration
    factor: Annotated[int, Field(ge=1, le=10)]
    max_backoff: Duration


class DriftMonitorScheduleParams(_Section):
    """When the drift-monitor CronWorkflow runs (its window is ``monitor.window_minutes``)."""

    schedule: Annotated[str, Field(pattern=r"^\S+( \S+){4}$")]
    timezone: str
    starting_deadline_seconds: Positive
    prediction_log: str  # the servers' log root; the contract's model name is appended


class GithubEventsParams(_Section):
    """The GitHub push webhook that starts training."""

    owner: str
    repository: str
    webhook_url: Annotated[str, Field(pattern=r"^https://")]
    webhook_secret: SecretKeyParams
    api_token: SecretKeyParams


class DataEventsParams(_Section):
    """Where new data batches land: a MinIO/S3 bucket notification, SQS, or a Kafka topic."""

    source: Literal["minio", "sqs", "kafka"]
    bucket: str
    prefix: str = ""
    endpoint: str = ""
    region: str = "us-east-1"
    queue: str = ""
    kafka_url: str = ""
    kafka_topic: str = ""

    @model_validator(mode="after")
    def _complete(self) -> DataEventsParams:
        needed = {"minio": ("endpoint",), "sqs": ("queue",), "kafka": ("kafka_url", "kafka_topic")}
        missing = [name for name in needed[self.source] if not getattr(self, name)]
        if missing:
            raise ValueError(f"source {self.source!r} needs {', '.join(missing)}")
        return self


class WorkflowParams(_Section):
    """Cluster settings of the Argo workflows generated from dvc.yaml (not read by any stage)."""

    namespace: K8sName
    service_account: K8sName
    submitter_service_account: K8sName
    image: ImageByDigest
    repository_url: Annotated[str, Field(pattern=r"^https://")]
    branch: str
    dvc_remote: DvcRemoteParams
    secrets: WorkflowSecretsParams
    resources: TaskResourcesParams
    gpu: GpuParams
    dask: DaskClusterParams = DaskClusterParams()
    retry: RetryParams
    active_deadline_seconds: Positive
    task_deadline_seconds: Positive
    ttl_after_success_seconds: Positive
    ttl_after_failure_seconds: Positive
    drift_monitor: DriftMonitorScheduleParams
    github: GithubEventsParams
    data_events: DataEventsParams


class FeedbackParams(_Section):
    """Late labels joined to logged predictions (counts and floors are in the data contract)."""

    lookback_days: Positive
    label_rate_ratio_max: Annotated[float, Field(gt=1.0)]


DriftMethod = Literal["wasserstein", "jensenshannon"]


class MonitorParams(_Section):
    """Drift monitoring on the prediction log and the retraining decision."""

    prediction_log: str
    reference: str
    model_dir: str
    reports: str
    state: str
    window_minutes: Annotated[float, Field(gt=0.0)]
    max_rows: Positive
    sample_seed: Annotated[int, Field(ge=0)]
    num_method: DriftMethod
    cat_method: DriftMethod
    per_column_method: dict[str, DriftMethod]
    num_threshold: Annotated[float, Field(gt=0.0)]
    cat_threshold: Annotated[float, Field(gt=0.0)]
    prediction_threshold: Annotated[float, Field(gt=0.0)]
    drift_share: Fraction
    consecutive_windows: Positive
    cooldown_hours: Annotated[float, Field(ge=0.0)]
    feedback: FeedbackParams


class Params(BaseModel):
    """The whole of params.yaml. Sections other stages own (workflow, monitor) are optional."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    simulate: SimulateParams | None = None  # the example's simulator only
    prepare: PrepareParams
    train: TrainParams
    evaluate: EvaluateParams
    gate: GateParams
    monitor: MonitorParams | None = None
    workflow: WorkflowParams | None = None


def parse_params(raw: object, source: Path = DEFAULT_PARAMS) -> Params:
    """Validate an already-loaded params mapping.

    Args:
        raw: The YAML document.
        source: Where it came from, for messages.

    Raises:
        ConfigError: Naming each unknown, missing or mistyped key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of stage sections")
    try:
        return Params.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise ConfigError(describe(exc, f"{source}: invalid parameters", Params)) from None


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``.

    Raises:
        ConfigError: The file is missing, not YAML, or invalid.
    """
    return parse_params(read_mapping(path, ConfigError, "run from the repository root"), path)
