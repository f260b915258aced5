"""A typed, validated view of ``params.yaml``.

Every section forbids unknown keys and checks types strictly, so a typo or a wrong type fails before
any work starts and the message names the key. Reading the file has no other effect.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class ValidateParams(_Section):
    """Bounds for the data gate that are not in the feature schema."""

    min_rows: Positive
    max_rows: Positive
    label_rate_min: Fraction
    label_rate_max: Fraction
    timestamp_min: str
    timestamp_max: str
    id_column: str = "transaction_id"

    @field_validator("timestamp_min", "timestamp_max")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        date.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> ValidateParams:
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        if self.label_rate_min >= self.label_rate_max:
            raise ValueError("label_rate_min must be below label_rate_max")
        if self.timestamp_min >= self.timestamp_max:
            raise ValueError("timestamp_min must be before timestamp_max")
        return self


class PrepareParams(_Section):
    """The time-ordered split and the drift reference sample."""

    valid_fraction: Fraction
    test_fraction: Fraction
    reference_rows: Positive
    seed: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _room_to_train(self) -> PrepareParams:
        if self.valid_fraction + self.test_fraction >= 0.9:
            raise ValueError("valid_fraction + test_fraction must leave at least 10% to train on")
        return self


class TrainParams(_Section):
    """XGBoost settings and the export checks."""

    model_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    experiment: str
    device: Literal["auto", "cpu", "cuda"]
    seed: Annotated[int, Field(ge=0)]
    n_estimators: Positive
    early_stopping_rounds: Positive
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
    """The champion/challenger decision."""

    primary_metric: Literal["pr_auc", "roc_auc", "recall_at_fpr", "precision_at_k"]
    floors: dict[str, float]
    max_regression: Annotated[float, Field(ge=0.0)]
    slice_max_regression: Annotated[float, Field(ge=0.0)]
    slice_min_positives: Positive
    max_latency_us_per_row: Annotated[float, Field(gt=0.0)]

    @field_validator("floors")
    @classmethod
    def _known_metrics(cls, floors: dict[str, float]) -> dict[str, float]:
        known = {"pr_auc", "roc_auc", "recall_at_fpr", "precision_at_k"}
        for name, value in floors.items():
            if name not in known:
                raise ValueError(f"unknown metric {name!r} in floors; known: {sorted(known)}")
            if not math.isfinite(value):
                raise ValueError(f"floor for {name!r} must be a finite number")
        return floors


class Params(BaseModel):
    """The whole of params.yaml. Sections other stages own (workflow, monitor) are optional."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    simulate: SimulateParams
    validate_: ValidateParams = Field(alias="validate")
    prepare: PrepareParams
    train: TrainParams
    evaluate: EvaluateParams
    gate: GateParams


def _describe(error: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see params.yaml)")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


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
        raise ConfigError(_describe(exc, source)) from None


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``.

    Raises:
        ConfigError: The file is missing, not YAML, or invalid.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, path)
