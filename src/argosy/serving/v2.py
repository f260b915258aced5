"""Open Inference Protocol (V2) JSON: request decoding and response encoding.

A request carries either one ``[N, F]`` tensor named ``features`` (columns in ``metadata.json``
order) or one ``[N]`` (or ``[N, 1]``) tensor per feature, named after it. An optional BYTES tensor
``transaction_id`` of shape ``[N]`` is not a model input: it is carried to the prediction log so
late labels can be joined to predictions. ``data`` may be flat (row-major) or nested, and JSON
``null`` stands for a missing value. The response has two outputs: ``probability`` (FP32, the fraud
probability) and ``decision`` (INT8, 1 when probability >= the model's threshold).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from argosy.serving.model import LoadedModel, RequestError

FEATURES_TENSOR = "features"
TRANSACTION_ID_TENSOR = "transaction_id"
PROBABILITY_OUTPUT = "probability"
DECISION_OUTPUT = "decision"
OUTPUT_NAMES = (PROBABILITY_OUTPUT, DECISION_OUTPUT)

_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
_INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_KNOWN_TYPES = _FLOAT_TYPES | _INT_TYPES | {"BOOL", "BYTES"}


@dataclass
class InferRequest:
    """A decoded, validated inference request.

    Attributes:
        id: The client's request id, or None to let the server assign one.
        x: FP32 C-contiguous ``[N, F]`` matrix in metadata feature order.
        transaction_ids: One string per row, or None when the request carried none.
        outputs: Names of the outputs to return.
    """

    id: str | None
    x: np.ndarray
    transaction_ids: list[str] | None
    outputs: tuple[str, ...]


def _shape(tensor: dict[str, Any], name: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise RequestError(f"input '{name}': 'shape' must be a list of non-negative integers")
    return shape


def _numeric(
    tensor: dict[str, Any], name: str, max_rows: int, row_width: int
) -> tuple[np.ndarray, list[int]]:
    """Decode a numeric tensor's data into a flat FP32 array and its declared shape."""
    datatype = tensor.get("datatype")
    if datatype not in _KNOWN_TYPES:
        raise RequestError(f"input '{name}': unknown datatype {datatype!r}")
    if datatype not in _FLOAT_TYPES and datatype not in _INT_TYPES:
        raise RequestError(f"input '{name}': datatype {datatype} is not numeric; send FP32")
    shape = _shape(tensor, name)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(f"input '{name}': 'data' must be a JSON array")
    if shape and shape[0] > max_rows:
        raise RequestError(f"batch of {shape[0]} rows exceeds the limit of {max_rows}")
    expected = math.prod(shape)
    if expected > max_rows * row_width:
        raise RequestError(f"input '{name}': shape {shape} exceeds the request size limit")
    try:
        arr = np.array(data)
    except (ValueError, OverflowError) as exc:  # ragged nesting, huge integers
        raise RequestError(f"input '{name}': 'data' is not a regular numeric array") from exc
    kind = arr.dtype.kind
    if kind == "O" or (kind == "f" and datatype in _INT_TYPES):
        arr = _with_nulls(arr, name, datatype)
    elif kind not in "iuf":
        raise RequestError(f"input '{name}': 'data' holds non-numeric values for {datatype}")
    if arr.size != expected:
        raise RequestError(
            f"input '{name}': shape {shape} needs {expected} values, 'data' has {arr.size}"
        )
    # Values beyond FP32 become inf here and are rejected by validation (serve() silences
    # numpy's overflow warning once for the process instead of paying for errstate per request).
    flat = arr.astype(np.float32, copy=False).reshape(-1)
    return flat, shape


def _with_nulls(arr: np.ndarray, name: str, datatype: str) -> np.ndarray:
    """Slow path: data with JSON nulls (missing values) or mixed types."""
    if arr.dtype.kind == "f":  # float data declared as an integer type
        raise RequestError(f"input '{name}': non-integer values for datatype {datatype}")
    out = np.empty(arr.size, dtype=np.float64)
    for i, value in enumerate(arr.reshape(-1)):
        if value is None:
            out[i] = np.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if datatype in _INT_TYPES and not isinstance(value, int):
                raise RequestError(f"input '{name}': non-integer values for datatype {datatype}")
            try:
                out[i] = value
            except OverflowError as exc:
                raise RequestError(f"input '{name}': value out of range") from exc
        else:
            raise RequestError(f"input '{name}': 'data' holds non-numeric values for {datatype}")
    return out


def _transaction_ids(tensor: dict[str, Any]) -> list[str]:
    if tensor.get("datatype") != "BYTES":
        raise RequestError(f"input '{TRANSACTION_ID_TENSOR}': datatype must be BYTES")
    shape = _shape(tensor, TRANSACTION_ID_TENSOR)
    data = tensor.get("data")
    if not isinstance(data, list) or len(shape) != 1 or shape[0] != len(data):
        raise RequestError(f"input '{TRANSACTION_ID_TENSOR}': expected shape [N] and N strings")
    out = []
    for value in data:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            out.append(str(value))
        else:
            raise RequestError(f"input '{TRANSACTION_ID_TENSOR}': values must be strings")
    return out


def decode_infer_request(body: bytes, model: LoadedModel, max_batch: int) -> InferRequest:
    """Parse and validate a V2 infer request body.

    Args:
        body: Raw JSON body.
        model: The model whose feature contract the request must meet.
        max_batch: Largest number of rows accepted in one request.

    Returns:
        The decoded request.

    Raises:
        RequestError: Anything about the body that the model cannot answer, with a message
            naming the problem.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        # Slow path: the stdlib also reads NaN/Infinity tokens (Python clients write them for
        # missing values) and integers beyond 64 bits; anything else is reported from here.
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError("request body must be a JSON object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("request needs a non-empty 'inputs' list")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError("'id' must be a string")

    features = model.features
    n_features = len(features)
    by_name: dict[str, dict[str, Any]] = {}
    for tensor in inputs:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise RequestError("each input must be an object with a string 'name'")
        name = tensor["name"]
        if name in by_name:
            raise RequestError(f"input '{name}' appears twice")
        by_name[name] = tensor

    txn_tensor = by_name.pop(TRANSACTION_ID_TENSOR, None)
    if FEATURES_TENSOR in by_name and FEATURES_TENSOR not in model.feature_index:
        tensor = by_name.pop(FEATURES_TENSOR)
        if by_name:
            raise RequestError(
                f"send either one '{FEATURES_TENSOR}' tensor or one tensor per feature, "
                f"not both (unexpected: {sorted(by_name)[:5]})"
            )
        flat, shape = _numeric(tensor, FEATURES_TENSOR, max_batch, n_features)
        if len(shape) != 2 or shape[1] != n_features:
            raise RequestError(
                f"input '{FEATURES_TENSOR}': shape must be [N, {n_features}], got {shape}"
            )
        n = shape[0]
        x = flat.reshape(n, n_features)
    else:
        unknown = [name for name in by_name if name not in model.feature_index]
        if unknown:
            raise RequestError(
                f"unknown input(s) {sorted(unknown)[:5]}; expected '{FEATURES_TENSOR}' "
                f"or the model's feature names"
            )
        missing = [f for f in features if f not in by_name]
        if missing:
            raise RequestError(f"missing feature input(s): {missing[:10]}")
        x = None
        n = -1
        for j, name in enumerate(features):
            flat, shape = _numeric(by_name[name], name, max_batch, 1)
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise RequestError(f"input '{name}': shape must be [N] or [N, 1], got {shape}")
            if x is None:
                n = shape[0]
                x = np.empty((n, n_features), dtype=np.float32)
            elif shape[0] != n:
                raise RequestError(f"input '{name}': has {shape[0]} rows, '{features[0]}' has {n}")
            x[:, j] = flat
    if n == 0:
        raise RequestError("empty batch: at least one row is required")
    if n > max_batch:
        raise RequestError(f"batch of {n} rows exceeds the limit of {max_batch}")
    assert x is not None  # noqa: S101  (n >= 1 guarantees it; narrows the type)

    txn_ids = None
    if txn_tensor is not None:
        txn_ids = _transaction_ids(txn_tensor)
        if len(txn_ids) != n:
            raise RequestError(
                f"input '{TRANSACTION_ID_TENSOR}': has {len(txn_ids)} values for {n} rows"
            )

    outputs = OUTPUT_NAMES
    requested = doc.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
        ):
            raise RequestError("'outputs' must be a list of objects with a string 'name'")
        names = tuple(o["name"] for o in requested)
        unknown_out = [o for o in names if o not in OUTPUT_NAMES]
        if unknown_out:
            raise RequestError(f"unknown output(s) {unknown_out[:5]}; available: {OUTPUT_NAMES}")
        outputs = names or OUTPUT_NAMES
    return InferRequest(request_id, np.ascontiguousarray(x), txn_ids, outputs)


def encode_infer_response(
    model: LoadedModel,
    request_id: str,
    outputs: tuple[str, ...],
    scores: np.ndarray,
    decisions: np.ndarray,
) -> bytes:
    """Serialise the V2 infer response.

    Args:
        model: The model that answered.
        request_id: Id echoed to the client (the client's, or the one the server assigned).
        outputs: Output names to include.
        scores: FP32 fraud probabilities ``[N]``.
        decisions: INT8 decisions ``[N]``.

    Returns:
        The JSON body.
    """
    n = len(scores)
    tensors = []
    for name in outputs:
        if name == PROBABILITY_OUTPUT:
            tensors.append(
                {"name": name, "datatype": "FP32", "shape": [n], "data": scores.tolist()}
            )
        else:
            tensors.append(
                {"name": name, "datatype": "INT8", "shape": [n], "data": decisions.tolist()}
            )
    doc = {
        "model_name": model.name,
        "model_version": model.version,
        "id": request_id,
        "outputs": tensors,
    }
    return orjson.dumps(doc)


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """The V2 model metadata document, plus Argosy's feature list under ``parameters``."""
    n = len(model.features)
    return {
        "name": model.name,
        "versions": [model.version] if model.version else [],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": FEATURES_TENSOR, "datatype": "FP32", "shape": [-1, n]}],
        "outputs": [
            {"name": PROBABILITY_OUTPUT, "datatype": "FP32", "shape": [-1]},
            {"name": DECISION_OUTPUT, "datatype": "INT8", "shape": [-1]},
        ],
        "parameters": {
            "features": model.features,
            "threshold": model.metadata.threshold,
            "sha256": model.sha256,
            "mlflow_run_id": model.metadata.mlflow_run_id,
        },
    }
