"""The model directory: what training writes and serving, evaluation and the monitor read.

A model directory holds ``model.onnx`` (one FP32 input ``[N, F]`` named :data:`INPUT_NAME`;
outputs ``label`` and ``probabilities``, the positive class being ``probabilities[:, 1]``),
``metadata.json`` (:class:`Metadata`: the feature order, one
:class:`argosy.data.encoding.FeatureSpec` per feature, the optional id column, the decision
threshold, the sha256 of ``model.onnx``) and the native booster ``model.ubj``. The specs are the
encoder training used, so every reader encodes values exactly as training did without reading the
data contract.

The directory holds only what the data, the params and the code determine: the MLflow run, the
commit and the time of training are the run's (MLflow tags :data:`TAG_SHA256` and friends), so
the same inputs give the same bytes, and DVC's hash of the directory does not change with a rerun.
In MLflow the directory is the training run's :data:`SERVING_ARTIFACT_DIR` artifact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argosy.data.encoding import FeatureSpec
from argosy.files import write_atomic
from argosy.hashing import file_sha256

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
NATIVE_FILE = "model.ubj"
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
#: onnxmltools names the XGBoost classifier outputs (label, probabilities); the probability tensor
#: is the second output, read by index so that a renamed output does not break a reader.
PROBABILITY_OUTPUT_INDEX = 1

#: The training run's artifact directory holding the model directory (and its signature).
SERVING_ARTIFACT_DIR = "serving"
# Tags on the MLflow training run: how a model directory is found from its sha256, and what it
# was trained on.
TAG_SHA256 = "argosy.sha256"
TAG_DATA_HASH = "argosy.data_hash"
TAG_GIT_COMMIT = "argosy.git_commit"
TAG_GIT_DIRTY = "argosy.git_dirty"
TAG_MODEL_NAME = "argosy.model_name"
TAG_MODEL_URI = "argosy.model_uri"


class ModelDirError(RuntimeError):
    """A model directory is missing a file, has an invalid ``metadata.json`` or was altered."""


@dataclass(frozen=True)
class Metadata:
    """``metadata.json``: the model's interface and what determined it.

    Attributes:
        name: Model name (contract.yaml ``name:``), served under ``/v2/models/{name}``.
        features: Ordered feature names (the columns of the ``[N, F]`` input).
        specs: One ``FeatureSpec`` per feature, in the same order.
        threshold: Decision threshold: the positive class when score >= threshold.
        sha256: sha256 of ``model.onnx``.
        id_column: The data's row id column (the optional V2 id tensor); None without one.
        input_name: Name of the ONNX graph input.
        output_name: Name of the probability output.
        version: MLflow model version, or None for an unregistered model (the pin says which
            version is served).
        data_hash: DVC hash of the data trained on.
        device: Where it trained (cpu or cuda).
        engine: How it trained (local or dask).
        best_iteration: Boosting rounds kept after early stopping.
        xgboost_version: The XGBoost that trained it.
    """

    name: str
    features: list[str]
    specs: list[FeatureSpec]
    threshold: float
    sha256: str
    id_column: str | None = None
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    version: str | None = None
    data_hash: str = ""
    device: str = ""
    engine: str = ""
    best_iteration: int | None = None
    xgboost_version: str = ""

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Metadata:
        """Build from the parsed JSON, failing loudly on a missing or mistyped field.

        A feature without an entry in ``feature_specs`` is numeric and not nullable. Keys this
        version does not know are ignored (an older or newer writer), not refused.

        Raises:
            ModelDirError: A required key is missing, has the wrong type, or the specs do not
                fit the feature list.
        """
        try:
            features = [str(f) for f in doc["features"]]
            by_name: dict[str, FeatureSpec] = {}
            for entry in doc.get("feature_specs") or []:
                spec = FeatureSpec.from_dict(entry)
                if spec.name in by_name:
                    raise ModelDirError(f"feature_specs lists '{spec.name}' twice")
                by_name[spec.name] = spec
            unknown = sorted(set(by_name) - set(features))
            if unknown:
                raise ModelDirError(f"feature_specs name features not in 'features': {unknown}")
            if len(set(features)) != len(features):
                raise ModelDirError("'features' lists a name twice")
            id_column = doc.get("id_column")
            if id_column is not None:
                id_column = str(id_column)
                if id_column in features:
                    raise ModelDirError(f"id_column '{id_column}' is also a feature")
            threshold = float(doc["threshold"])
            if not math.isfinite(threshold):
                raise ModelDirError("threshold must be finite")
            version = doc.get("version")
            best = doc.get("best_iteration")
            return cls(
                name=str(doc["name"]),
                features=features,
                specs=[by_name.get(f, FeatureSpec(name=f)) for f in features],
                threshold=threshold,
                sha256=str(doc["sha256"]).lower(),
                id_column=id_column,
                input_name=str(doc.get("input_name") or INPUT_NAME),
                output_name=str(doc.get("output_name") or OUTPUT_NAME),
                version=None if version is None else str(version),
                data_hash=str(doc.get("data_hash") or ""),
                device=str(doc.get("device") or ""),
                engine=str(doc.get("engine") or ""),
                best_iteration=None if best is None else int(best),
                xgboost_version=str(doc.get("xgboost_version") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelDirError(f"{METADATA_FILE}: invalid or missing field: {exc!r}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The JSON form :meth:`from_dict` reads back."""
        return {
            "name": self.name,
            "version": self.version,
            "features": list(self.features),
            "feature_specs": [spec.to_dict() for spec in self.specs],
            "id_column": self.id_column,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "threshold": self.threshold,
            "sha256": self.sha256,
            "data_hash": self.data_hash,
            "device": self.device,
            "engine": self.engine,
            "best_iteration": self.best_iteration,
            "xgboost_version": self.xgboost_version,
        }


def write_metadata(model_dir: Path, metadata: Metadata) -> Path:
    """Write ``metadata.json`` into ``model_dir``; returns its path."""
    path = model_dir / METADATA_FILE
    write_atomic(path, json.dumps(metadata.to_dict(), indent=2) + "\n")
    return path


def read_metadata(model_dir: Path) -> Metadata:
    """Read ``model_dir/metadata.json``.

    Raises:
        ModelDirError: The file is missing, is not JSON or is not valid metadata.
    """
    path = model_dir / METADATA_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{path}: missing from the model directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelDirError(f"{path}: not a JSON object")
    return Metadata.from_dict(doc)


def check_onnx(model_dir: Path, expected_sha256: str) -> str:
    """The sha256 of ``model_dir/model.onnx``, refusing a file that is not the expected one.

    Raises:
        ModelDirError: The file is missing or its sha256 differs from ``expected_sha256``.
    """
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ModelDirError(f"{path}: missing from the model directory")
    actual = file_sha256(path)
    if actual != expected_sha256.strip().lower():
        raise ModelDirError(
            f"{path}: sha256 {actual} does not match the pinned {expected_sha256}; "
            "refusing a model that is not the one recorded"
        )
    return actual


def open_session(model: Path | bytes, intra_op_threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU for a ``model.onnx`` path or its bytes.

    Args:
        model: The file, or the serialized model.
        intra_op_threads: Threads per operator; None lets ONNX Runtime choose (batch scoring).
            One is fastest for small tree models on a small pod serving requests.

    Raises:
        ModelDirError: ONNX Runtime cannot load the model.
    """
    import onnxruntime as ort  # imported here: integrity checks must not wait for it

    options = ort.SessionOptions()
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own unexported exception types
        where = model if isinstance(model, Path) else "the exported model"
        raise ModelDirError(f"ONNX Runtime cannot load {where}: {exc}") from exc


def positive_scores(session: Any, matrix: Any, input_name: str = INPUT_NAME) -> Any:
    """The positive-class probability of every row of an encoded FP32 matrix ``[N, F]``."""
    return session.run(None, {input_name: matrix})[PROBABILITY_OUTPUT_INDEX][:, 1]
