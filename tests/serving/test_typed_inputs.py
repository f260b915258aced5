"""Inputs by type: raw category strings and booleans are encoded exactly as training encoded them.

The server encodes BYTES category strings with the model's own ``FeatureSpec`` (the one encoder
training used, read from ``metadata.json``), so a client sending raw values gets bit for bit the
score of the equivalent codes; the id tensor is named after the model's id column; and the model
metadata lists every input a client may send.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow.dataset as ds
import pytest

from argosy.data.encoding import FeatureSpec, encode_rows
from argosy.modeldir import Metadata, ModelDirError
from argosy.serving.model import RequestError, load_model
from argosy.serving.predlog import PredictionLogger
from argosy.serving.v2 import decode_infer_request

from .conftest import (
    BOOLEAN,
    CATEGORICAL,
    FEATURES,
    HYPHENATED,
    ID_COLUMN,
    MODEL_NAME,
    NULLABLE,
    Client,
    feature_specs,
    id_tensor,
    infer_body,
    make_app,
    named_body,
    raw_value,
    start_in_process,
    stop_in_process,
    valid_rows,
)

INFER = f"/v2/models/{MODEL_NAME}/infer"


def probabilities(client: Client, body: dict[str, Any]) -> list[float]:
    status, doc = client.json("POST", INFER, body)
    assert status == 200, doc
    return doc["outputs"][0]["data"]


def set_feature(body: dict[str, Any], name: str, data: list[Any], datatype: str) -> None:
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor["data"] = data
            tensor["datatype"] = datatype
            return
    raise KeyError(name)


def test_bytes_categories_score_exactly_as_their_codes_and_as_the_encoder(
    client: Client, model_dir: Path
) -> None:
    # Given rows covering every category (and f02's other code, sent as an unseen string)
    x = valid_rows(12, seed=5)
    x[:, FEATURES.index("f02")] = np.arange(12) % 6  # 5 is the `other` code
    x[3, FEATURES.index("f01")] = np.nan  # f01 is nullable
    raw = named_body(x, raw=True)
    # When they are sent once as raw strings/booleans and once as FP32 codes
    from_raw = probabilities(client, raw)
    from_codes = probabilities(client, named_body(x, raw=False))
    # Then the scores are identical, bit for bit
    assert from_raw == from_codes
    # And equal to the shared encoder followed by the ONNX model, run directly
    specs = [FeatureSpec.from_dict(d) for d in feature_specs()]
    columns = [[raw_value(f, v) for v in x[:, j]] for j, f in enumerate(FEATURES)]
    encoded = encode_rows(specs, columns)
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {"features": encoded})[1][:, 1]
    np.testing.assert_allclose(from_raw, expected, rtol=0, atol=1e-6)


def test_null_in_a_nullable_category_is_the_nan_code(client: Client) -> None:
    # Given a row whose nullable categorical f01 is missing
    x = valid_rows(2, seed=6)
    x[:, FEATURES.index("f01")] = np.nan
    raw = named_body(x, raw=True)
    assert [t["data"] for t in raw["inputs"] if t["name"] == "f01"] == [[None, None]]
    # When it is sent as a BYTES null and as a NaN code in the [N, F] tensor
    # Then both score the same
    assert probabilities(client, raw) == probabilities(client, infer_body(x))


def test_null_in_a_category_that_is_not_nullable_is_refused(client: Client) -> None:
    body = named_body(valid_rows(1), raw=True)
    set_feature(body, "f00", [None], "BYTES")
    status, doc = client.json("POST", INFER, body)
    assert status == 400
    assert "'f00'" in doc["error"]
    assert "not nullable" in doc["error"]


def test_unseen_category_under_reject_is_a_400_naming_feature_and_value(client: Client) -> None:
    # Given f00 (unseen: reject) holding a value outside its categories
    body = named_body(valid_rows(1), raw=True)
    set_feature(body, "f00", ["teleport"], "BYTES")
    # When it is scored
    status, doc = client.json("POST", INFER, body)
    # Then the answer is a 400 naming the feature and the value
    assert status == 400
    assert "'f00'" in doc["error"]
    assert "teleport" in doc["error"]


def test_unseen_category_under_other_scores_as_the_other_code(client: Client) -> None:
    # Given f02 (unseen: other, five categories) holding a value outside them
    x = valid_rows(1, seed=8)
    raw = named_body(x, raw=True)
    set_feature(raw, "f02", ["not-a-letter"], "BYTES")
    # When it is scored, and the same row with f02's other code (5) is scored
    x[0, FEATURES.index("f02")] = 5
    # Then both score the same
    assert probabilities(client, raw) == probabilities(client, infer_body(x))


def test_bool_tensors_score_as_0_and_1(client: Client) -> None:
    x = valid_rows(4, seed=9)
    x[:, FEATURES.index("f08")] = [0, 1, 0, 1]
    x[:, FEATURES.index("f12")] = [1, np.nan, 0, 1]  # f12 is a nullable boolean
    body = named_body(x, raw=False)
    set_feature(body, "f08", [False, True, False, True], "BOOL")
    set_feature(body, "f12", [True, None, False, True], "BOOL")
    assert probabilities(client, body) == probabilities(client, infer_body(x))


@pytest.mark.parametrize(
    ("feature", "datatype", "data", "needle"),
    [
        ("f08", "FP32", [2.0], "'f08' is boolean"),
        ("f08", "BOOL", ["yes"], "true, false or null"),
        ("f08", "BYTES", ["true"], "BYTES is for categorical"),
        ("f10", "BYTES", ["1.0"], "BYTES is for categorical"),
        ("f00", "BOOL", [True], "BOOL is for boolean"),
        ("f00", "BYTES", [3], "strings or null"),
        ("f02", "FP32", [6.0], "[0, 5) or the other code 5"),
        ("f00", "FP32", [4.0], "'f00' is categorical"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(
    client: Client, feature: str, datatype: str, data: list[Any], needle: str
) -> None:
    body = named_body(valid_rows(1), raw=True)
    set_feature(body, feature, data, datatype)
    status, doc = client.json("POST", INFER, body)
    assert status == 400
    assert needle in doc["error"], doc["error"]


def test_nested_bytes_data_for_an_n_by_1_shape(client: Client) -> None:
    x = valid_rows(2, seed=10)
    body = named_body(x, raw=True)
    for tensor in body["inputs"]:
        if tensor["name"] == "f00":
            tensor["shape"] = [2, 1]
            tensor["data"] = [[v] for v in tensor["data"]]
    assert probabilities(client, body) == probabilities(client, infer_body(x))


def test_id_tensor_named_after_the_id_column_reaches_row_id(
    model_dir: Path, tmp_path: Path
) -> None:
    # Given a server logging predictions
    log = PredictionLogger(
        features=FEATURES,
        model_name=MODEL_NAME,
        model_version="7",
        root=str(tmp_path / "log"),
        flush_interval_s=0.05,
    )
    log.start()
    srv = start_in_process(make_app(model_dir, predlog=log))
    client = srv.client()
    try:
        # When a request carries the id tensor named after the id column ("row-key")
        body = named_body(valid_rows(3), raw=True, ids=["k-1", "k-2", "k-3"])
        status, _ = client.json("POST", INFER, body)
        assert status == 200
    finally:
        client.close()
        stop_in_process(srv)
    assert log.close(10)
    # Then the ids are the log's row_id column, beside the hyphenated feature's column
    table = ds.dataset(tmp_path / "log", format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("row_id").to_pylist()) == ["k-1", "k-2", "k-3"]
    assert HYPHENATED in table.column_names


def test_metadata_lists_every_input_by_name_and_datatype(client: Client) -> None:
    # When the model metadata is read
    status, doc = client.json("GET", f"/v2/models/{MODEL_NAME}")
    assert status == 200
    inputs = doc["inputs"]
    # Then it lists one input per feature, in model order, then the optional id tensor
    assert [t["name"] for t in inputs] == [*FEATURES, ID_COLUMN]
    by_name = {t["name"]: t for t in inputs}
    for name in FEATURES:
        tensor = by_name[name]
        expected = "BYTES" if name in CATEGORICAL else "BOOL" if name in BOOLEAN else "FP32"
        assert tensor["datatype"] == expected, name
        assert tensor["shape"] == [-1]
        assert tensor["parameters"]["nullable"] is (name in NULLABLE)
    # And categories travel as a JSON string with their unseen policy and other code
    f02 = by_name["f02"]["parameters"]
    assert json.loads(f02["categories"]) == CATEGORICAL["f02"]
    assert f02["unseen"] == "other"
    assert f02["other_code"] == 5
    assert by_name["f00"]["parameters"]["unseen"] == "reject"
    assert "other_code" not in by_name["f00"]["parameters"]
    # And the id tensor says it is optional and not a model input
    assert by_name[ID_COLUMN]["datatype"] == "BYTES"
    assert by_name[ID_COLUMN]["parameters"]["optional"] is True
    # And every parameter value is an OIP scalar (typed clients must not choke)
    for tensor in [*inputs, doc]:
        for value in tensor.get("parameters", {}).values():
            assert isinstance(value, str | int | float | bool), (tensor.get("name"), value)


def test_without_an_id_column_no_id_tensor_is_accepted(model_dir: Path, tmp_path: Path) -> None:
    # Given a model whose data has no id column
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["id_column"] = None
    (copy / "metadata.json").write_text(json.dumps(meta))
    model = load_model(copy)
    body = infer_body(valid_rows(1))
    body["inputs"].append(id_tensor(["k-1"]))
    # When a request carries an id tensor anyway / Then it is an unknown input
    with pytest.raises(RequestError, match="unknown input"):
        decode_infer_request(json.dumps(body).encode(), model, 10)
    # And the metadata lists the features only
    from argosy.serving.v2 import model_metadata

    assert [t["name"] for t in model_metadata(model)["inputs"]] == FEATURES


def test_metadata_reads_the_older_allow_nan_key() -> None:
    doc = {
        "name": "m",
        "features": ["a", "b"],
        "feature_specs": [
            {"name": "a", "allow_nan": True},
            {"name": "b", "allow_nan": False, "categories": ["x", "y"]},
        ],
        "threshold": 0.5,
        "sha256": "00",
    }
    meta = Metadata.from_dict(doc)
    assert [s.nullable for s in meta.specs] == [True, False]
    assert meta.specs[1].categorical
    assert meta.id_column is None


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"id_column": "a"}, "also a feature"),
        ({"feature_specs": [{"name": "a", "type": "text"}]}, "unknown type"),
        ({"feature_specs": [{"name": "zz"}]}, "not in 'features'"),
    ],
)
def test_inconsistent_metadata_fails_to_load(change: dict[str, Any], needle: str) -> None:
    doc = {"name": "m", "features": ["a"], "threshold": 0.5, "sha256": "00", **change}
    with pytest.raises(ModelDirError, match=needle):
        Metadata.from_dict(doc)


def _with_value(datatype: str, value: Any, others: Any = 1) -> bytes:
    """A per-feature request whose numeric feature f10 carries ``value`` among integers."""
    body = named_body(valid_rows(2))
    for tensor in body["inputs"]:
        if tensor["name"] == "f10":
            tensor.update(datatype=datatype, data=[value, others])
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("datatype", "value", "accepted"),
    [
        *[
            (t, v, ok)
            for t, info in [(t, np.iinfo(t.lower())) for t in ("INT8", "INT16", "INT32", "INT64")]
            + [(t, np.iinfo(t.lower())) for t in ("UINT8", "UINT16", "UINT32", "UINT64")]
            for v, ok in [
                (int(info.min), True),
                (int(info.max), True),
                (int(info.min) - 1, False),
                (int(info.max) + 1, False),
            ]
        ],
        ("FP16", 65504.0, True),
        ("FP16", 1e5, False),
        ("FP16", -1e5, False),
    ],
)
def test_json_numbers_must_fit_their_declared_datatype(
    model_dir: Path, datatype: str, value: Any, accepted: bool
) -> None:
    # Given a JSON value at or just past the range of its tensor's declared datatype (binary
    # and gRPC data cannot hold such a value: REST must refuse what gRPC cannot send)
    model = load_model(model_dir)
    body = _with_value(datatype, value)
    # When it is decoded / Then a value in range is taken as it is, one past it is a 400
    if accepted:
        req = decode_infer_request(body, model, 10)
        assert req.x[0, FEATURES.index("f10")] == np.float32(value)
    else:
        with pytest.raises(RequestError, match=f"a value is out of range for {datatype}"):
            decode_infer_request(body, model, 10)
    # and the same holds next to a null (the value-by-value path)
    if datatype in {"INT8", "UINT64", "FP16"}:
        with_null = _with_value(datatype, value, None)
        if accepted:
            assert decode_infer_request(with_null, model, 10).x[0, FEATURES.index("f10")] == (
                np.float32(value)
            )
        else:
            with pytest.raises(RequestError, match="out of range"):
                decode_infer_request(with_null, model, 10)


def test_a_fraction_in_an_integer_tensor_is_refused_as_one(model_dir: Path) -> None:
    model = load_model(model_dir)
    for data in ([1.5, 1], [2**64 - 1, 0.5]):
        body = _with_value("UINT64", data[0], data[1])
        with pytest.raises(RequestError, match="non-integer values for datatype UINT64"):
            decode_infer_request(body, model, 10)


@pytest.mark.parametrize("datatype", [["FP32"], {"FP32": 1}, 32, None, True])
@pytest.mark.parametrize("form", ["features", "per-feature"])
def test_a_datatype_that_is_not_a_string_is_refused_as_such(
    model_dir: Path, datatype: Any, form: str
) -> None:
    # Given a request whose datatype is a JSON array, object, number, null or boolean
    body = named_body(valid_rows(1)) if form == "per-feature" else infer_body(valid_rows(1))
    body["inputs"][-1]["datatype"] = datatype
    # When it is decoded / Then it is a 400 saying what a datatype is (a list or an object
    # used to be looked up in a set: a TypeError, a 500)
    with pytest.raises(RequestError, match="'datatype' must be a string"):
        decode_infer_request(json.dumps(body).encode(), load_model(model_dir), 10)
