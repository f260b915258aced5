"""Load the served model directory and turn validated feature matrices into predictions.

The directory is the train stage's contract: ``model.onnx`` (one FP32 input ``[N, F]``; outputs
``label`` and ``probabilities``, the probability of the positive class being
``probabilities[:, 1]``) and ``metadata.json`` (feature order, one
:class:`argosy.data.encoding.FeatureSpec` per feature under ``feature_specs``, the optional id
column, the decision threshold, sha256). The specs are the same encoder training used, so the
server checks and encodes values exactly as training did without reading the data contract.
Loading never raises for a model that fails its integrity check: the caller gets a ``LoadedModel``
whose ``ready`` is False and whose ``reason`` says why, so the server can stay up, answer health
probes and tell the operator what is wrong instead of crash-looping.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from argosy import signing
from argosy.data.encoding import FeatureSpec
from argosy.hashing import file_sha256

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
# onnxmltools names the XGBoost classifier outputs (label, probabilities); the probability tensor is
# the second output, which is what we read, so a renamed output does not break serving.
PROBABILITY_OUTPUT_INDEX = 1


class ModelLoadError(Exception):
    """The model directory cannot be served at all (missing or unreadable files)."""


class RequestError(Exception):
    """A request the model cannot answer; carries the HTTP status (4xx) to return.

    Attributes:
        status: HTTP status code for the response.
        message: Human-readable reason, returned as the V2 ``error`` field.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Metadata:
    """The parts of ``metadata.json`` the server uses; unknown keys are ignored by design.

    Attributes:
        name: Model name served under ``/v2/models/{name}``.
        version: MLflow model version, or None for an unregistered model.
        features: Ordered feature names (the columns of the ``[N, F]`` input).
        specs: One ``FeatureSpec`` per feature, in the same order.
        input_name: Name of the ONNX graph input.
        threshold: Decision threshold: the positive class when score >= threshold.
        sha256: sha256 of ``model.onnx`` recorded at training time.
        id_column: The data's row id column: the name of the optional V2 id tensor, whose values
            reach the prediction log's ``row_id``; None when the data has no id.
        mlflow_run_id: Training run, for the model metadata endpoint.
    """

    name: str
    version: str | None
    features: list[str]
    specs: list[FeatureSpec]
    input_name: str
    threshold: float
    sha256: str
    id_column: str | None = None
    mlflow_run_id: str | None = None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Metadata:
        """Build from the parsed JSON, failing loudly on a missing or mistyped field.

        A feature without an entry in ``feature_specs`` is numeric and not nullable; the older
        ``allow_nan`` key is read as ``nullable``.

        Args:
            doc: Parsed ``metadata.json``.

        Returns:
            The validated metadata.

        Raises:
            ModelLoadError: A required key is missing, has the wrong type, or the specs do not
                fit the feature list.
        """
        try:
            features = [str(f) for f in doc["features"]]
            by_name: dict[str, FeatureSpec] = {}
            for entry in doc.get("feature_specs") or []:
                spec = FeatureSpec.from_dict(entry)
                if spec.name in by_name:
                    raise ModelLoadError(f"feature_specs lists '{spec.name}' twice")
                by_name[spec.name] = spec
            unknown = sorted(set(by_name) - set(features))
            if unknown:
                raise ModelLoadError(f"feature_specs name features not in 'features': {unknown}")
            if len(set(features)) != len(features):
                raise ModelLoadError("'features' lists a name twice")
            id_column = doc.get("id_column")
            if id_column is not None:
                id_column = str(id_column)
                if id_column in by_name or id_column in features:
                    raise ModelLoadError(f"id_column '{id_column}' is also a feature")
            threshold = float(doc["threshold"])
            if not math.isfinite(threshold):
                raise ModelLoadError("threshold must be finite")
            version = doc.get("version")
            return cls(
                name=str(doc["name"]),
                version=None if version is None else str(version),
                features=features,
                specs=[by_name.get(f, FeatureSpec(name=f)) for f in features],
                input_name=str(doc.get("input_name") or "features"),
                threshold=threshold,
                sha256=str(doc["sha256"]).lower(),
                id_column=id_column,
                mlflow_run_id=doc.get("mlflow_run_id"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelLoadError(f"{METADATA_FILE}: invalid or missing field: {exc!r}") from exc


@dataclass
class LoadedModel:
    """A model directory after the integrity check, ready or not.

    Attributes:
        metadata: Parsed metadata.
        version: The version served (pinned value, else metadata's), "" when unknown.
        sha256: sha256 actually computed from ``model.onnx``.
        expected_sha256: The pinned value it was compared with.
        ready: True only when the hashes match and the ONNX session was created.
        reason: Why the model is not ready ("" when ready).
    """

    metadata: Metadata
    version: str
    sha256: str
    expected_sha256: str
    ready: bool
    reason: str = ""
    session: Any = field(default=None, repr=False)
    feature_index: dict[str, int] = field(default_factory=dict, repr=False)
    _nan_forbidden: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    # Code features (categorical and boolean): column, number of valid codes, nullable.
    _code_idx: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _code_size: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _code_nan_ok: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _code_rules: list[tuple[float, bool, int]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        specs = self.metadata.specs
        self.feature_index = {name: i for i, name in enumerate(self.metadata.features)}
        self._nan_forbidden = np.array([not s.nullable for s in specs], dtype=bool)
        coded = [i for i, s in enumerate(specs) if s.categorical or s.type == "boolean"]
        sizes = [float(_code_count(specs[i])) for i in coded]
        self._code_idx = np.array(coded, dtype=np.intp)
        self._code_size = np.array(sizes, dtype=np.float32)
        self._code_nan_ok = np.array([specs[i].nullable for i in coded], dtype=bool)
        self._code_rules = [
            (size, specs[i].nullable, i) for size, i in zip(sizes, coded, strict=True)
        ]

    @property
    def name(self) -> str:
        """The model name clients address."""
        return self.metadata.name

    @property
    def features(self) -> list[str]:
        """Ordered feature names."""
        return self.metadata.features

    @property
    def specs(self) -> list[FeatureSpec]:
        """One spec per feature, in feature order."""
        return self.metadata.specs

    def validate(self, x: np.ndarray) -> None:
        """Reject values the model's feature contract forbids.

        Args:
            x: FP32 matrix ``[N, F]`` in metadata feature order.

        Raises:
            RequestError: Infinity anywhere, NaN in a feature that is not nullable, a categorical
                value that is not one of its codes (``[0, len(categories))``, plus the ``other``
                code under ``unseen: other``), or a boolean that is not 0 or 1.
        """
        if x.shape[0] <= 4:
            # Few rows (the online case): plain Python floats beat a dozen tiny numpy calls, and
            # measured here, a numpy reduction right before ONNX Runtime slows the run by ~30 us.
            for row in x.tolist():
                total = sum(row)  # NaN or inf anywhere makes the sum non-finite
                if total - total != 0.0:
                    self._check_finite(np.asarray([row], dtype=np.float32))
                for size, nan_ok, col in self._code_rules:
                    v = row[col]
                    if not (0.0 <= v < size and v.is_integer()) and not (v != v and nan_ok):
                        raise self._code_error(col)
            return
        self._check_finite(x)
        if self._code_idx.size:
            codes = x[:, self._code_idx]
            with np.errstate(invalid="ignore"):
                ok = (codes >= 0) & (codes < self._code_size) & (codes == np.floor(codes))
            ok |= np.isnan(codes) & self._code_nan_ok
            if not ok.all():
                raise self._code_error(int(self._code_idx[int(np.argmax(~ok.all(axis=0)))]))

    def _code_error(self, col: int) -> RequestError:
        spec = self.metadata.specs[col]
        if spec.type == "boolean":
            return RequestError(f"feature '{spec.name}' is boolean: expected 0 or 1")
        size = len(spec.categories or ())
        other = "" if spec.other_code is None else f" or the other code {spec.other_code}"
        return RequestError(
            f"feature '{spec.name}' is categorical: expected an integer code in [0, {size}){other}"
        )

    def _check_finite(self, x: np.ndarray) -> None:
        """Reject infinity anywhere and NaN in features that are not nullable."""
        finite = np.isfinite(x)
        if finite.all():
            return
        inf_cols = np.isinf(x).any(axis=0)
        if inf_cols.any():
            name = self.features[int(np.argmax(inf_cols))]
            raise RequestError(f"feature '{name}' is infinite; infinity is never accepted")
        nan_bad = ~finite.all(axis=0) & self._nan_forbidden
        if nan_bad.any():
            name = self.features[int(np.argmax(nan_bad))]
            raise RequestError(f"feature '{name}' is NaN/null but is not nullable")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Score a validated matrix.

        Args:
            x: FP32 C-contiguous matrix ``[N, F]``.

        Returns:
            The probability of the positive class per row (FP32 ``[N]``).
        """
        outputs = self.session.run(None, {self.metadata.input_name: x})
        return outputs[PROBABILITY_OUTPUT_INDEX][:, 1]


def load_model(
    model_dir: Path,
    *,
    expected_sha256: str | None = None,
    version: str | None = None,
    intra_op_threads: int = 1,
    signature_sha256: str | None = None,
    signing_trust: str | Path | None = None,
) -> LoadedModel:
    """Read metadata, verify the model file's sha256 and open an ONNX Runtime session.

    Args:
        model_dir: Directory holding ``model.onnx`` and ``metadata.json``.
        expected_sha256: The pinned hash (from the overlay); defaults to metadata's ``sha256``.
        version: The pinned model version; defaults to metadata's ``version``.
        intra_op_threads: ONNX Runtime intra-op threads. One is fastest for small tree models
            on a small pod: more threads spin and steal the CPU the event loop needs.
        signature_sha256: The pinned sha256 of the signature bundle ``model.sig``.
        signing_trust: PEM public key or CA chain the bundle must verify against; with either
            this or ``signature_sha256`` set, every file of the directory must match the
            signature (see :func:`argosy.signing.verify_at_load`).

    Returns:
        The loaded model; ``ready`` is False with a ``reason`` when the hash does not match or
        the session cannot be created.

    Raises:
        ModelLoadError: ``metadata.json`` or ``model.onnx`` is missing or unreadable.
    """
    meta_path = model_dir / METADATA_FILE
    onnx_path = model_dir / MODEL_FILE
    try:
        metadata = Metadata.from_dict(json.loads(meta_path.read_text()))
        actual = file_sha256(onnx_path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read model directory {model_dir}: {exc}") from exc
    expected = (expected_sha256 or metadata.sha256).strip().lower()
    served_version = version or metadata.version or ""
    model = LoadedModel(
        metadata=metadata,
        version=served_version,
        sha256=actual,
        expected_sha256=expected,
        ready=False,
    )
    trust = signing.trust_from(signing_trust)
    unsigned = signing.verify_at_load(model_dir, trust, signature_sha256)
    if unsigned:
        model.reason = unsigned
        log.error("model not ready: %s", model.reason)
        return model
    if actual != expected:
        model.reason = (
            f"integrity check failed: sha256 of {onnx_path} is {actual}, pinned value is {expected}"
        )
        log.error("model not ready: %s", model.reason)
        return model
    import onnxruntime as ort  # imported here: the integrity check must not wait for it

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    try:
        model.session = ort.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own unexported exception types
        model.reason = f"ONNX Runtime cannot load {onnx_path}: {exc}"
        log.error("model not ready: %s", model.reason)
        return model
    inputs = model.session.get_inputs()
    n_features = len(metadata.features)
    if [i.name for i in inputs] != [metadata.input_name]:
        model.reason = f"model inputs {[i.name for i in inputs]} != [{metadata.input_name!r}]"
    elif len(model.session.get_outputs()) <= PROBABILITY_OUTPUT_INDEX:
        model.reason = "model has no probability output (expected label, probabilities)"
    elif inputs[0].shape[-1] not in (n_features, None) and not isinstance(inputs[0].shape[-1], str):
        model.reason = f"model expects {inputs[0].shape[-1]} features, metadata lists {n_features}"
    if model.reason:
        log.error("model not ready: %s", model.reason)
        return model
    model.ready = True
    log.info(
        "model %s version %r ready (sha256 %s, %d features)",
        metadata.name,
        served_version,
        actual,
        n_features,
    )
    return model


def _code_count(spec: FeatureSpec) -> int:
    """How many codes a categorical or boolean feature takes (booleans: 0 and 1)."""
    return 2 if spec.type == "boolean" else spec.code_count
