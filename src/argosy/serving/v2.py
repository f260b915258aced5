r"""Open Inference Protocol (V2) JSON: request decoding and response encoding.

A request carries either one tensor per feature, named after it (shape ``[N]`` or ``[N, 1]``), or
one FP32 ``[N, F]`` tensor named ``features`` (columns in ``metadata.json`` order, categorical and
boolean features as their codes). Per feature, the datatype says what the values are:

* a numeric or integer feature: any FP/INT datatype;
* a categorical feature: ``BYTES``, the raw category strings (what a client has), encoded here
  with the model's ``FeatureSpec`` exactly as training encoded them; or FP/INT, the codes;
* a boolean feature: ``BOOL`` (``true``/``false``), or FP/INT 0/1.

JSON ``null`` stands for a missing value in every datatype. An optional ``BYTES`` tensor named
after the model's id column (``metadata.json`` ``id_column``), of shape ``[N]``, is not a model
input: it is carried to the prediction log's ``row_id`` so late labels can be joined to
predictions. ``data`` may be flat (row-major) or nested. The response has two outputs:
``probability`` (FP32, the probability of the positive class) and ``decision`` (INT8, 1 when
probability >= the model's threshold). ``GET /v2/models/{name}`` lists every input this accepts.

Every string is decoded strictly (invalid UTF-8, or a lone UTF-16 surrogate such as ``"\ud800"``,
is a 400), and the request ``id`` and each id-tensor value are at most ``MAX_ID_BYTES``: both end up
in the prediction log, which must be able to write whatever a 200 answered.

Binary tensor data extension (``BINARY_EXTENSION``, Triton's and KServe's; what tritonclient and
kserve's clients send at their defaults): the body is a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw data of each input whose
``parameters.binary_data_size`` is set, in input order: little-endian values, row-major; BOOL one
byte per value; BYTES each value as a 4-byte little-endian length and its UTF-8 bytes. Outputs go
back the same way when ``parameters.binary_data_output`` (request) or ``parameters.binary_data``
(per requested output) is true. The decoded tensors then meet exactly the checks JSON data meets,
and gRPC's typed ``contents`` and ``raw_input_contents`` (``argosy.serving.grpc_v2``) come through
``request_from_doc`` the same way.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from argosy.data.encoding import EncodingError, FeatureSpec
from argosy.serving.model import LoadedModel, RequestError

FEATURES_TENSOR = "features"
PROBABILITY_OUTPUT = "probability"
DECISION_OUTPUT = "decision"
OUTPUT_NAMES = (PROBABILITY_OUTPUT, DECISION_OUTPUT)
_ALL_JSON = (False,) * len(OUTPUT_NAMES)

_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
_INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_KNOWN_TYPES = _FLOAT_TYPES | _INT_TYPES | {"BOOL", "BYTES"}
MAX_ID_BYTES = 128
"""Longest request ``id`` and id-tensor value, in UTF-8 bytes (each is logged with its rows)."""
BINARY_EXTENSION = "binary_tensor_data"
"""The extension's name, as server metadata lists it and error messages name it."""
# Little-endian numpy dtypes of the fixed-size V2 datatypes (raw and binary tensor data).
_RAW_DTYPES = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
}
# The values a JSON number may take for each datatype with a narrower range than FP32 (binary,
# raw and typed gRPC data hold the declared type already).
_RANGES: dict[str, tuple[int | float, int | float]] = {
    t: (int(np.iinfo(_RAW_DTYPES[t]).min), int(np.iinfo(_RAW_DTYPES[t]).max)) for t in _INT_TYPES
}
_RANGES["FP16"] = (-float(np.finfo(np.float16).max), float(np.finfo(np.float16).max))


def _too_long(value: str) -> bool:
    """Whether ``value`` is over ``MAX_ID_BYTES`` in UTF-8 (``isascii`` is O(1), no encode)."""
    return len(value) > MAX_ID_BYTES or (not value.isascii() and len(value.encode()) > MAX_ID_BYTES)


def _refuse_lone_surrogates(doc: Any) -> None:
    r"""Raise when a key or string in ``doc`` holds a lone UTF-16 surrogate.

    The stdlib decodes a ``\udXXX`` escape without its pair into a surrogate code point, which
    no UTF-8 encoder (the response's, Arrow's) accepts later; orjson refuses these itself.
    """
    try:
        json.dumps(doc, ensure_ascii=False, check_circular=False).encode()
    except RecursionError:
        raise RequestError("request body is nested too deeply") from None
    except UnicodeEncodeError:
        raise RequestError(
            "request body is not valid JSON text: a string holds a lone UTF-16 surrogate escape "
            "(strings must be valid Unicode)"
        ) from None


@dataclass
class InferRequest:
    """A decoded, validated inference request.

    Attributes:
        id: The client's request id, or None to let the server assign one.
        x: FP32 C-contiguous ``[N, F]`` matrix in metadata feature order.
        row_ids: One id string per row (the id tensor's values), or None when the request
            carried none.
        outputs: Names of the outputs to return.
        binary: Per output in ``outputs``, whether it goes back as binary tensor data.
    """

    id: str | None
    x: np.ndarray
    row_ids: list[str] | None
    outputs: tuple[str, ...]
    binary: tuple[bool, ...] = ()


class RowRequest:
    """A ``one_row`` request waiting for its batch, which converts and validates it.

    It answers like an ``InferRequest`` (no row ids, every output as JSON); ``x`` is its row
    of the batch's matrix once assembled.
    """

    __slots__ = ("doc", "id", "values", "x")
    row_ids = None
    outputs = OUTPUT_NAMES
    binary = _ALL_JSON

    def __init__(self, doc: dict[str, Any], values: list[Any]) -> None:
        self.doc = doc
        self.id: str | None = doc.get("id")
        self.values = values
        self.x: np.ndarray | None = None

    def __len__(self) -> int:
        return 1


MAX_DIMS = 2
"""Most dimensions of an input: ``[N, F]`` for ``features``, ``[N]`` or ``[N, 1]`` for the rest."""


def _shape(tensor: dict[str, Any], name: str) -> list[int]:
    shape = tensor.get("shape")
    if type(shape) is list and len(shape) > MAX_DIMS:  # before a long list is walked or quoted
        raise RequestError(too_many_dims(name, len(shape)))
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise RequestError(f"input '{name}': 'shape' must be a list of non-negative integers")
    return shape


def _datatype_error(name: str, datatype: Any) -> RequestError:
    """The refusal of a ``datatype`` that is none of V2's, or not a string at all."""
    if type(datatype) is not str:
        return RequestError(f"input '{name}': 'datatype' must be a string such as \"FP32\"")
    return RequestError(f"input '{name}': unknown datatype {datatype[:40]!r}")


def too_many_dims(name: str, n: int) -> str:
    """The message for an input of ``n`` dimensions, past ``MAX_DIMS``."""
    return f"input '{name}': shape has {n} dimensions; inputs here have 1 or 2 ([N] or [N, F])"


def _numeric(
    tensor: dict[str, Any], name: str, max_rows: int, row_width: int
) -> tuple[np.ndarray, list[int]]:
    """Decode a numeric tensor's data into a flat FP32 array and its declared shape."""
    datatype = tensor.get("datatype")
    if type(datatype) is not str or datatype not in _KNOWN_TYPES:
        raise _datatype_error(name, datatype)
    if datatype not in _FLOAT_TYPES and datatype not in _INT_TYPES:
        raise RequestError(f"input '{name}': datatype {datatype} is not numeric; send FP32")
    shape = _shape(tensor, name)
    data = tensor.get("data")
    if not isinstance(data, list | np.ndarray):
        raise RequestError(f"input '{name}': 'data' must be a JSON array")
    if shape and shape[0] > max_rows:
        raise RequestError(f"batch of {shape[0]} rows exceeds the limit of {max_rows}")
    expected = math.prod(shape)
    if expected > max_rows * row_width:
        raise RequestError(f"input '{name}': shape {shape} exceeds the request size limit")
    if isinstance(data, np.ndarray):  # binary or gRPC data, already of the declared datatype
        arr = data
    else:
        try:
            arr = np.array(data)
        except (ValueError, OverflowError) as exc:  # ragged nesting, huge integers
            raise RequestError(f"input '{name}': 'data' is not a regular numeric array") from exc
        if arr.dtype.kind == "f" and datatype in _INT_TYPES:
            # Integers past INT64 next to others make numpy pick float64: value by value, so
            # that only a real fraction is refused as one.
            arr = np.array(data, dtype=object)
    kind = arr.dtype.kind
    if kind == "O":  # value by value, each checked against the datatype's range
        arr = _with_nulls(arr, name, datatype)
    elif kind not in "iufb":  # JSON true/false are 1 and 0, alone as among numbers
        raise RequestError(f"input '{name}': 'data' holds non-numeric values for {datatype}")
    if arr.size != expected:
        raise RequestError(
            f"input '{name}': shape {shape} needs {expected} values, 'data' has {arr.size}"
        )
    if datatype in _RANGES and kind != "O" and arr.size and not isinstance(data, np.ndarray):
        lo, hi = _RANGES[datatype]
        known = arr[~np.isnan(arr)] if arr.dtype.kind == "f" else arr
        # Python scalars: an exact comparison of any integer with any float.
        if known.size and (known.min().item() < lo or known.max().item() > hi):
            raise RequestError(f"input '{name}': a value is out of range for {datatype}")
    # Values beyond FP32 become inf here and are rejected by validation (serve() silences
    # numpy's overflow warning once for the process instead of paying for errstate per request).
    flat = arr.astype(np.float32, copy=False).reshape(-1)
    return flat, shape


def _with_nulls(arr: np.ndarray, name: str, datatype: str) -> np.ndarray:
    """Slow path: data with JSON nulls (missing values), mixed types or integers past INT64."""
    out = np.empty(arr.size, dtype=np.float64)
    lo, hi = _RANGES.get(datatype, (-math.inf, math.inf))
    for i, value in enumerate(arr.reshape(-1)):
        if value is None:
            out[i] = np.nan
        elif isinstance(value, int | float):  # a bool too: JSON true/false are 1 and 0
            if datatype in _INT_TYPES and not isinstance(value, int):
                # orjson reads an integer past 64 bits as a float; one below INT64's minimum
                # rounds to -2**63, which it reads from no integer in range as a float.
                past = value.is_integer() and (value < lo or value > hi or value == -(2.0**63))
                problem = (
                    "a value is out of range for" if past else "non-integer values for datatype"
                )
                raise RequestError(f"input '{name}': {problem} {datatype}")
            if value < lo or value > hi:  # exact, before an integer is rounded (NaN passes)
                raise RequestError(f"input '{name}': a value is out of range for {datatype}")
            try:
                out[i] = value
            except OverflowError as exc:
                raise RequestError(f"input '{name}': value out of range") from exc
        else:
            raise RequestError(f"input '{name}': 'data' holds non-numeric values for {datatype}")
    return out


def _column_values(tensor: dict[str, Any], name: str, max_rows: int) -> list[Any]:
    """The values of a ``[N]`` or ``[N, 1]`` non-numeric tensor, flat, as JSON gave them."""
    shape = _shape(tensor, name)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise RequestError(f"input '{name}': shape must be [N] or [N, 1], got {shape}")
    if shape[0] > max_rows:
        raise RequestError(f"batch of {shape[0]} rows exceeds the limit of {max_rows}")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(f"input '{name}': 'data' must be a JSON array")
    if len(shape) == 2 and any(isinstance(v, list) for v in data):  # nested [[v], [v], ...]
        if not all(isinstance(v, list) and len(v) == 1 for v in data):
            raise RequestError(f"input '{name}': nested 'data' must be [[value], ...]")
        data = [v[0] for v in data]
    if len(data) != shape[0]:
        raise RequestError(
            f"input '{name}': shape {shape} needs {shape[0]} values, 'data' has {len(data)}"
        )
    return data


def _categories(
    tensor: dict[str, Any], spec: FeatureSpec, max_rows: int
) -> tuple[np.ndarray, list[int]]:
    """Encode a BYTES tensor of raw category strings (null: missing) with the feature's spec."""
    name = spec.name
    values = _column_values(tensor, name, max_rows)
    if not all(v is None or isinstance(v, str) for v in values):
        raise RequestError(f"input '{name}': BYTES values must be strings or null")
    try:
        codes = spec.encode_values(values)
    except EncodingError as exc:
        raise RequestError(f"input '{name}': {exc}") from None
    return codes, [len(values)]


def _booleans(tensor: dict[str, Any], name: str, max_rows: int) -> tuple[np.ndarray, list[int]]:
    """Decode a BOOL tensor (``true``/``false``, null: missing) into 1.0/0.0/NaN."""
    values = _column_values(tensor, name, max_rows)
    out = np.empty(len(values), dtype=np.float32)
    for i, value in enumerate(values):
        if value is None:
            out[i] = np.nan
        elif isinstance(value, bool):
            out[i] = float(value)
        else:
            raise RequestError(f"input '{name}': BOOL values must be true, false or null")
    return out, [len(values)]


def _feature_column(
    tensor: dict[str, Any], spec: FeatureSpec, max_rows: int
) -> tuple[np.ndarray, list[int]]:
    """One feature's tensor as FP32 model input: codes for categories and booleans."""
    name = spec.name
    datatype = tensor.get("datatype")
    if datatype == "BYTES":
        if not spec.categorical:
            raise RequestError(
                f"input '{name}': datatype BYTES is for categorical features; "
                f"'{name}' is {spec.type}: send {_datatype(spec)}"
            )
        return _categories(tensor, spec, max_rows)
    if datatype == "BOOL":
        if spec.type != "boolean":
            raise RequestError(
                f"input '{name}': datatype BOOL is for boolean features; "
                f"'{name}' is {spec.type}: send {_datatype(spec)}"
            )
        return _booleans(tensor, name, max_rows)
    flat, shape = _numeric(tensor, name, max_rows, 1)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise RequestError(f"input '{name}': shape must be [N] or [N, 1], got {shape}")
    return flat, shape


def _row_ids(tensor: dict[str, Any], name: str, n: int) -> list[str]:
    """The id tensor's ``n`` values as strings (counted before any is read)."""
    if tensor.get("datatype") != "BYTES":
        raise RequestError(f"input '{name}': datatype must be BYTES")
    shape = _shape(tensor, name)
    data = tensor.get("data")
    if not isinstance(data, list) or len(shape) != 1 or shape[0] != len(data):
        raise RequestError(f"input '{name}': expected shape [N] and N strings")
    if len(data) != n:
        raise RequestError(f"input '{name}': has {len(data)} values for {n} rows")
    out = []
    for value in data:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif not isinstance(value, str):
            raise RequestError(f"input '{name}': values must be strings")
        if _too_long(value):
            raise RequestError(f"input '{name}': an id is longer than {MAX_ID_BYTES} bytes")
        out.append(value)
    return out


def _refuse_unknown(by_name: dict[str, Any], model: LoadedModel) -> None:
    unknown = [name for name in by_name if name not in model.feature_index]
    if unknown:
        id_name = model.metadata.id_column
        ids = f" and the optional id '{id_name}'" if id_name is not None else ""
        raise RequestError(
            f"unknown input(s) {sorted(unknown)[:5]}; expected '{FEATURES_TENSOR}' "
            f"or the model's feature names{ids} (GET /v2/models/{model.name} lists them)"
        )


def _parse_json(body: bytes | memoryview) -> Any:
    """The JSON document in ``body``, decoded strictly (a 400 naming the problem otherwise)."""
    try:
        return orjson.loads(body)  # strict: invalid UTF-8 and lone surrogates are errors
    except orjson.JSONDecodeError:
        # Slow path: the stdlib also reads NaN/Infinity tokens (Python clients write them for
        # missing values) and integers beyond 64 bits; anything else is reported from here.
        # The body is decoded strictly first: json.loads(bytes) would let encoded surrogates in.
        try:
            text = bytes(body).decode()
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise RequestError(f"request body is not valid JSON: {exc}") from None
        if "\\u" in text:  # only an escape can spell a lone surrogate in valid UTF-8
            _refuse_lone_surrogates(doc)
        return doc


def tensor_from_bytes(raw: bytes | memoryview, datatype: Any, name: str) -> np.ndarray | list[Any]:
    """Decode one tensor's raw bytes (binary tensor data, or gRPC ``raw_input_contents``).

    Args:
        raw: The tensor's bytes.
        datatype: Its declared V2 datatype.
        name: Its name, for error messages.

    Returns:
        A read-only array of the datatype for numeric data; a list of bools for BOOL and of
        strings for BYTES (what JSON data gives, so the same checks apply).

    Raises:
        RequestError: The bytes do not hold whole values of the datatype, a BOOL byte is not 0
            or 1, or a BYTES value is truncated or not valid UTF-8.
    """
    dtype = _RAW_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is not None:
        if len(raw) % dtype.itemsize:
            raise RequestError(
                f"input '{name}': {len(raw)} bytes are not a whole number of {datatype} values "
                f"({dtype.itemsize} bytes each)"
            )
        return np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        values = bytes(raw)
        if values.strip(b"\x00\x01"):
            raise RequestError(f"input '{name}': BOOL bytes must be 0 or 1")
        return [b == 1 for b in values]
    if datatype == "BYTES":
        out = []
        view = memoryview(raw)
        offset, end = 0, len(view)
        while offset < end:
            if offset + 4 > end:
                raise RequestError(f"input '{name}': BYTES data ends inside a length prefix")
            size = int.from_bytes(view[offset : offset + 4], "little")
            offset += 4
            if offset + size > end:
                raise RequestError(
                    f"input '{name}': a BYTES value of {size} bytes runs past the tensor's data"
                )
            try:
                out.append(str(view[offset : offset + size], "utf-8"))
            except UnicodeDecodeError:
                raise RequestError(f"input '{name}': a BYTES value is not valid UTF-8") from None
            offset += size
        return out
    raise _datatype_error(name, datatype)


def _attach_binary(doc: Any, data: memoryview) -> None:
    """Give each input whose ``parameters.binary_data_size`` is set its slice of ``data``."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    offset = 0
    for tensor in inputs if isinstance(inputs, list) else ():
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        name = tensor.get("name")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RequestError(
                f"{BINARY_EXTENSION}: input '{name}': parameters.binary_data_size must be a "
                "non-negative integer"
            )
        if "data" in tensor:
            raise RequestError(
                f"{BINARY_EXTENSION}: input '{name}' has both 'data' and binary_data_size"
            )
        if offset + size > len(data):
            raise RequestError(
                f"{BINARY_EXTENSION}: input '{name}' needs {size} bytes of binary data; "
                f"{len(data) - offset} remain after the JSON header"
            )
        try:
            tensor["data"] = tensor_from_bytes(
                data[offset : offset + size], tensor.get("datatype"), name
            )
        except RequestError as exc:
            raise RequestError(f"{BINARY_EXTENSION}: {exc.message}") from None
        offset += size
    if offset != len(data):
        raise RequestError(
            f"{BINARY_EXTENSION}: {len(data) - offset} bytes after the JSON header belong to no "
            "input (each binary input declares parameters.binary_data_size)"
        )


def _refuse_stray_binary(doc: Any) -> None:
    """A JSON-only body whose inputs claim binary data: name the missing header."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    for tensor in inputs if isinstance(inputs, list) else ():
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        if isinstance(params, dict) and "binary_data_size" in params:
            raise RequestError(
                f"{BINARY_EXTENSION}: input '{tensor.get('name')}' declares binary_data_size, but "
                "the request has no Inference-Header-Content-Length header"
            )


def parse_infer_body(body: bytes, header_length: int | None = None) -> Any:
    """The V2 infer request document in ``body`` (JSON, or JSON plus binary tensor data).

    Args:
        body: Raw body.
        header_length: The ``Inference-Header-Content-Length`` header: the body's first that
            many bytes are the JSON header and the rest binary tensor data; None for plain JSON.

    Returns:
        The decoded document, each binary input's data attached as its ``data``; not yet checked
        against any model (``request_from_doc`` does that).

    Raises:
        RequestError: The body is not valid JSON, or its binary data does not match its header.
    """
    if header_length is None:
        try:
            doc = _parse_json(body)
        except RequestError as exc:
            if b"binary_data_size" not in body:
                raise
            raise RequestError(
                f"{BINARY_EXTENSION}: the body is JSON followed by binary data, but the request "
                f"has no Inference-Header-Content-Length header ({exc.message})"
            ) from None
        _refuse_stray_binary(doc)  # a walk of the inputs: cheaper than searching the body
        return doc
    if not 0 <= header_length <= len(body):
        raise RequestError(
            f"{BINARY_EXTENSION}: Inference-Header-Content-Length {header_length} is not "
            f"within the body of {len(body)} bytes"
        )
    view = memoryview(body)
    doc = _parse_json(view[:header_length])
    _attach_binary(doc, view[header_length:])
    return doc


def decode_infer_request(
    body: bytes,
    model: LoadedModel,
    max_batch: int,
    header_length: int | None = None,
) -> InferRequest:
    """Parse and validate a V2 infer request body: ``parse_infer_body``, then ``request_from_doc``.

    Args:
        body: Raw body.
        model: The model whose feature contract the request must meet.
        max_batch: Largest number of rows accepted in one request.
        header_length: The ``Inference-Header-Content-Length`` header's value, None for JSON.

    Returns:
        The decoded request.

    Raises:
        RequestError: Anything about the body that the model cannot answer, with a message
            naming the problem.
    """
    return request_from_doc(parse_infer_body(body, header_length), model, max_batch)


def one_row(doc: Any, model: LoadedModel) -> list[Any] | None:
    """The values of a request that is one row in one ``features`` tensor, else None.

    The online case, recognised in a few checks so that its values can be converted and
    validated together with the other requests of its batch (``rows_matrix``): exactly an
    ``inputs`` list (and optionally a string ``id`` within ``MAX_ID_BYTES``) holding one tensor
    of exactly ``name`` ``features``, ``datatype`` FP32 or FP64, ``shape`` ``[1, F]`` and a
    flat ``data`` of F numbers at least one of which is a float. Any other document (None) goes
    through ``request_from_doc``. For a document this accepts, ``request_from_doc`` gives the
    same FP32 values (``tests/serving/test_batched_rows.py`` compares the two paths).

    Why at least one float: ``request_from_doc`` converts a tensor's data with ``np.array``,
    whose result type depends on the values (integers only give int64, booleans only bool);
    a row holding a float is float64 alone and in any stack of such rows, so its FP32 values
    are the same either way.
    """
    if type(doc) is not dict or not (len(doc) == 1 or (len(doc) == 2 and "id" in doc)):
        return None
    inputs = doc.get("inputs")
    if type(inputs) is not list or len(inputs) != 1:
        return None
    tensor = inputs[0]
    if type(tensor) is not dict or len(tensor) != 4 or tensor.get("name") != FEATURES_TENSOR:
        return None
    shape, data = tensor.get("shape"), tensor.get("data")
    width = len(model.feature_index)
    datatype = tensor.get("datatype")
    if (
        (datatype != "FP32" and datatype != "FP64")
        or type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or type(shape[1]) is not int
        or shape[0] != 1
        or shape[1] != width
        or type(data) is not list
        or len(data) != width
        or FEATURES_TENSOR in model.feature_index
        or model.metadata.id_column == FEATURES_TENSOR
    ):
        return None
    request_id = doc.get("id")
    if request_id is not None and (type(request_id) is not str or _too_long(request_id)):
        return None
    try:
        # Numbers only (a string, null, list or object raises), and at least one float.
        if type(sum(data)) is not float:
            return None
    except (TypeError, OverflowError):
        return None
    return data


def rows_matrix(rows: list[list[Any]]) -> np.ndarray:
    """Stack ``one_row`` values into one FP32 C-contiguous matrix, a row per request.

    Each row is what ``request_from_doc`` gives its request alone (before validation).

    Raises:
        RequestError: Some value is not a float64 (an integer beyond 64 bits makes the stack an
            object array, which ``request_from_doc`` treats value by value): each request must
            then be decoded alone.
    """
    stacked = np.array(rows)
    if stacked.dtype != np.float64:
        raise RequestError("a row needs request_from_doc's conversion")
    return stacked.astype(np.float32)


def request_from_doc(doc: Any, model: LoadedModel, max_batch: int) -> InferRequest:
    """Validate a decoded V2 infer request (the JSON document, binary data attached).

    Args:
        doc: The request document; a tensor's ``data`` is a JSON array, or an array or list
            decoded by ``tensor_from_bytes``.
        model: The model whose feature contract the request must meet.
        max_batch: Largest number of rows accepted in one request.

    Returns:
        The decoded request.

    Raises:
        RequestError: Anything the model cannot answer, with a message naming the problem.
    """
    if not isinstance(doc, dict):
        raise RequestError("request body must be a JSON object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("request needs a non-empty 'inputs' list")
    request_id = doc.get("id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise RequestError("'id' must be a string")
        if _too_long(request_id):
            raise RequestError(f"'id' is longer than {MAX_ID_BYTES} bytes")

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

    id_name = model.metadata.id_column
    id_tensor = by_name.pop(id_name, None) if id_name is not None else None
    if FEATURES_TENSOR in by_name and FEATURES_TENSOR not in model.feature_index:
        tensor = by_name.pop(FEATURES_TENSOR)
        if by_name:
            _refuse_unknown(by_name, model)
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
        _refuse_unknown(by_name, model)
        missing = [f for f in features if f not in by_name]
        if missing:
            raise RequestError(f"missing feature input(s): {missing[:10]}")
        x = None
        n = -1
        for j, spec in enumerate(model.specs):
            name = spec.name
            flat, shape = _feature_column(by_name[name], spec, max_batch)
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

    row_ids = None
    if id_tensor is not None:
        assert id_name is not None  # noqa: S101  (an id tensor is only taken under its name)
        row_ids = _row_ids(id_tensor, id_name, n)

    if "outputs" in doc or "parameters" in doc:
        outputs, binary = _requested_outputs(doc)
    else:
        outputs, binary = OUTPUT_NAMES, _ALL_JSON
    return InferRequest(request_id, np.ascontiguousarray(x), row_ids, outputs, binary)


def _flag(params: Any, key: str, where: str) -> bool | None:
    """A boolean parameter of the binary extension, None when absent."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise RequestError(f"{where}: 'parameters' must be an object")
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise RequestError(f"{BINARY_EXTENSION}: {where}: parameters.{key} must be true or false")
    return value


def _requested_outputs(doc: dict[str, Any]) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """The outputs to return and, per output, whether it goes back as binary data."""
    default = bool(_flag(doc.get("parameters"), "binary_data_output", "request"))
    requested = doc.get("outputs")
    if not requested:
        if requested is not None and not isinstance(requested, list):
            raise RequestError("'outputs' must be a list of objects with a string 'name'")
        return OUTPUT_NAMES, (default,) * len(OUTPUT_NAMES)
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise RequestError("'outputs' must be a list of objects with a string 'name'")
    names = tuple(o["name"] for o in requested)
    unknown_out = [o for o in names if o not in OUTPUT_NAMES]
    if unknown_out:
        raise RequestError(f"unknown output(s) {unknown_out[:5]}; available: {OUTPUT_NAMES}")
    seen: set[str] = set()
    for name in names:  # each output once: a repeated one would multiply the response
        if name in seen:
            raise RequestError(f"output '{name}' is requested twice; ask for each output once")
        seen.add(name)
    binary = []
    for o in requested:
        flag = _flag(o.get("parameters"), "binary_data", f"output '{o['name']}'")
        binary.append(default if flag is None else flag)
    return names, tuple(binary)


def encode_infer_response(
    model: LoadedModel,
    request_id: str,
    outputs: tuple[str, ...],
    scores: np.ndarray,
    decisions: np.ndarray,
    binary: tuple[bool, ...] = (),
) -> tuple[bytes, int | None]:
    """Serialise the V2 infer response.

    Args:
        model: The model that answered.
        request_id: Id echoed to the client (the client's, or the one the server assigned).
        outputs: Output names to include.
        scores: FP32 probabilities of the positive class ``[N]``.
        decisions: INT8 decisions ``[N]``.
        binary: Per output, whether it goes as binary tensor data (default: none does).

    Returns:
        The body, and the length of its JSON header when binary data follows it (the
        ``Inference-Header-Content-Length`` to send), else None.
    """
    n = len(scores)
    if n == 1 and outputs == OUTPUT_NAMES and not any(binary):  # the online case
        return encode_row_responses(model, [request_id], scores, decisions)[0], None
    if not any(binary):  # plain JSON, the common case: built from pieces encoded once
        pieces = [
            _JSON_TENSOR_HEAD[name]
            + b"%d]," % n
            + b'"data":'
            + orjson.dumps((scores if name == PROBABILITY_OUTPUT else decisions).tolist())
            + b"}"
            for name in outputs
        ]
        head = _response_head(model.name, model.version)
        return b'%s%s,"outputs":[%s]}' % (head, orjson.dumps(request_id), b",".join(pieces)), None
    tensors = []
    raw = []
    for i, name in enumerate(outputs):
        values, datatype = (scores, "FP32") if name == PROBABILITY_OUTPUT else (decisions, "INT8")
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [n]}
        if i < len(binary) and binary[i]:
            data = values.astype(_RAW_DTYPES[datatype], copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            tensor["data"] = values.tolist()
        tensors.append(tensor)
    doc = {**_response_doc(model.name, model.version), "id": request_id, "outputs": tensors}
    header = orjson.dumps(doc)
    if not raw:  # binary flags only past the outputs asked for
        return header, None
    return b"".join((header, *raw)), len(header)


def encode_row_responses(
    model: LoadedModel, request_ids: list[str], scores: np.ndarray, decisions: np.ndarray
) -> list[bytes]:
    """``encode_infer_response`` for one-row requests answered together, a body each.

    The requests ask for every output as JSON (``RowRequest``); row ``i`` of ``scores`` and
    ``decisions`` is request ``i``'s, and its body is the same bytes as encoding it alone.
    """
    row = _row_response(model.name, model.version)
    dumps = orjson.dumps
    return [
        row % (dumps(request_id), dumps(score), decision)
        for request_id, score, decision in zip(
            request_ids, scores.tolist(), decisions.tolist(), strict=True
        )
    ]


def _response_doc(name: str, version: str) -> dict[str, str]:
    """The response's leading members (V2: an unversioned model omits ``model_version``)."""
    return {"model_name": name, "model_version": version} if version else {"model_name": name}


@functools.lru_cache(maxsize=16)
def _response_head(name: str, version: str) -> bytes:
    """``_response_doc`` as JSON up to the ``id`` value: ``{"model_name":...,"id":``."""
    return orjson.dumps(_response_doc(name, version))[:-1] + b',"id":'


@functools.lru_cache(maxsize=16)
def _row_response(name: str, version: str) -> bytes:
    """The response to one row with both outputs as JSON, as a ``%`` format of id, score, decision.

    The same bytes as the general path: orjson writes a float the same alone as in a list.
    """
    head = _response_head(name, version).replace(b"%", b"%%")
    probability, decision = (_JSON_TENSOR_HEAD[n] for n in OUTPUT_NAMES)
    return (
        head
        + b'%s,"outputs":['
        + probability
        + b'1],"data":[%s]},'
        + decision
        + b'1],"data":[%d]}]}'
    )


# Each output tensor's JSON up to its shape's length: what orjson writes for its leading members.
_JSON_TENSOR_HEAD = {
    name: orjson.dumps({"name": name, "datatype": datatype, "shape": [0]})[:-3]
    for name, datatype in ((PROBABILITY_OUTPUT, "FP32"), (DECISION_OUTPUT, "INT8"))
}


def _datatype(spec: FeatureSpec) -> str:
    """The V2 datatype a client sends a feature's raw values in."""
    if spec.categorical:
        return "BYTES"
    return "BOOL" if spec.type == "boolean" else "FP32"


def _input_parameters(spec: FeatureSpec) -> dict[str, str | int | float | bool]:
    """A feature tensor's OIP ``parameters``: scalars only (lists as JSON strings)."""
    params: dict[str, str | int | float | bool] = {"type": spec.type, "nullable": spec.nullable}
    if spec.categorical:
        params["content_type"] = "str"  # MLServer's name for BYTES holding UTF-8 strings
        params["categories"] = json.dumps(list(spec.categories or ()))
        params["unseen"] = spec.unseen
        if spec.other_code is not None:
            params["other_code"] = spec.other_code
        params["also_accepts"] = "FP32/INT codes: the category's index in categories"
    elif spec.type == "boolean":
        params["also_accepts"] = "FP32/INT 0 or 1"
    if spec.minimum is not None:
        params["minimum"] = spec.minimum
    if spec.maximum is not None:
        params["maximum"] = spec.maximum
    return params


def model_metadata(model: LoadedModel) -> dict[str, Any]:
    """The V2 model metadata document.

    ``inputs`` lists one tensor per feature, in model order, with the datatype a client sends the
    raw values in and OIP-style scalar ``parameters`` (type, nullable, categories as a JSON
    string, unseen policy), then the optional id tensor when the model has an id column. The
    alternative single ``[N, F]`` FP32 ``features`` tensor of codes is described under the
    model's ``parameters``.
    """
    n = len(model.features)
    inputs: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "datatype": _datatype(spec),
            "shape": [-1],
            "parameters": _input_parameters(spec),
        }
        for spec in model.specs
    ]
    id_column = model.metadata.id_column
    if id_column is not None:
        inputs.append(
            {
                "name": id_column,
                "datatype": "BYTES",
                "shape": [-1],
                "parameters": {
                    "optional": True,
                    "model_input": False,
                    "content_type": "str",
                    "description": "row id, carried to the prediction log's row_id column",
                },
            }
        )
    parameters: dict[str, str | int | float | bool] = {
        "features": json.dumps(model.features),
        "features_tensor": FEATURES_TENSOR,
        "features_tensor_datatype": "FP32",
        "features_tensor_shape": json.dumps([-1, n]),
        "features_tensor_description": (
            f"alternative to the per-feature inputs: one [N, {n}] FP32 tensor named "
            f"'{FEATURES_TENSOR}', columns in 'features' order, categories and booleans as codes"
        ),
        "threshold": model.metadata.threshold,
        "sha256": model.sha256,
    }
    if id_column is not None:
        parameters["id_column"] = id_column
    return {
        "name": model.name,
        "versions": [model.version] if model.version else [],
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": [
            {"name": PROBABILITY_OUTPUT, "datatype": "FP32", "shape": [-1]},
            {"name": DECISION_OUTPUT, "datatype": "INT8", "shape": [-1]},
        ],
        "parameters": parameters,
    }
