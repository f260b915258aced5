"""The binary tensor data extension (Inference-Header-Content-Length): requests, responses."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from argosy.serving.server import Batching

from .conftest import (
    CATEGORICAL,
    FEATURES,
    ID_COLUMN,
    Client,
    InProcess,
    infer_body,
    named_body,
    valid_rows,
)

INFER = "/v2/models/example-model/infer"


@pytest.fixture(params=[True, False], ids=["batching", "no-batching"])
def server_batching(request: pytest.FixtureRequest) -> Any:
    """Every test here runs against a server with batching on (production's) and off."""
    return Batching(enabled=request.param)


def _bytes_tensor(values: list[str]) -> bytes:
    """BYTES in binary form: each value as a 4-byte little-endian length and its UTF-8 bytes."""
    return b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in values)


def binary_request(
    header: dict[str, Any], *parts: bytes, length: int | str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body of the JSON header and the binary parts, with the extension's header."""
    head = json.dumps(header).encode()
    value = len(head) if length is None else length
    return head + b"".join(parts), {"Inference-Header-Content-Length": str(value)}


def post(client: Client, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """POST a raw body with extra headers on the client's keep-alive connection."""
    conn = client.conn
    conn.request("POST", INFER, body=body, headers={"content-type": "application/json", **headers})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def split_response(headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON header and each binary output decoded with its datatype."""
    length = int(headers["inference-header-content-length"])
    doc = json.loads(body[:length])
    offset, arrays = length, {}
    for out in doc["outputs"]:
        if "data" in out:
            arrays[out["name"]] = np.asarray(out["data"])
            continue
        size = out["parameters"]["binary_data_size"]
        dtype = {"FP32": "<f4", "INT8": "i1"}[out["datatype"]]
        arrays[out["name"]] = np.frombuffer(body[offset : offset + size], dtype=dtype)
        offset += size
    assert offset == len(body)
    return doc, arrays


def features_header(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    tensor = {
        "name": "features",
        "datatype": "FP32",
        "shape": list(x.shape),
        "parameters": {"binary_data_size": x.nbytes},
    }
    return {"inputs": [tensor], **extra}


def test_binary_input_scores_like_json(server: InProcess, client: Client) -> None:
    # Given rows sent once as JSON and once as binary FP32
    x = valid_rows(4)
    _, json_doc = client.json("POST", INFER, infer_body(x))
    body, headers = binary_request(features_header(x), x.astype("<f4").tobytes())
    # When the binary request is answered without asking for binary outputs
    status, resp_headers, data = post(client, body, headers)
    # Then the response is plain JSON with the same numbers
    assert status == 200, data
    assert resp_headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in resp_headers
    doc = json.loads(data)
    assert doc["outputs"] == json_doc["outputs"]


def test_binary_outputs_on_request(server: InProcess, client: Client) -> None:
    # Given a binary request asking for every output in binary (what tritonclient does by default)
    x = valid_rows(3)
    body, headers = binary_request(
        features_header(x, id="bin-1", parameters={"binary_data_output": True}),
        x.astype("<f4").tobytes(),
    )
    # When it is answered
    status, resp_headers, data = post(client, body, headers)
    # Then the body is a JSON header plus raw FP32 / INT8 data, sized by the header
    assert status == 200, data
    assert resp_headers["content-type"] == "application/octet-stream"
    doc, arrays = split_response(resp_headers, data)
    # And the header names the model and echoes the request id, as a JSON response does
    model = server.app.model
    assert (doc["model_name"], doc["model_version"], doc["id"]) == (
        model.name,
        model.version,
        "bin-1",
    )
    assert [o["parameters"]["binary_data_size"] for o in doc["outputs"]] == [12, 3]
    expected = server.app.model.predict(x)
    assert arrays["probability"].tobytes() == expected.astype("<f4").tobytes()
    assert arrays["decision"].tolist() == (expected >= 0.5).astype(int).tolist()


def test_per_output_binary_flag_overrides_the_request_default(
    server: InProcess, client: Client
) -> None:
    # Given binary outputs by default, but the decision asked for as JSON
    x = valid_rows(2)
    header = features_header(
        x,
        parameters={"binary_data_output": True},
        outputs=[
            {"name": "probability"},
            {"name": "decision", "parameters": {"binary_data": False}},
        ],
    )
    body, headers = binary_request(header, x.astype("<f4").tobytes())
    # When it is answered
    status, resp_headers, data = post(client, body, headers)
    # Then the probability is binary and the decision JSON data
    assert status == 200, data
    doc, arrays = split_response(resp_headers, data)
    assert "data" not in doc["outputs"][0]
    assert doc["outputs"][1]["data"] == arrays["decision"].tolist()
    assert len(arrays["probability"]) == 2


def test_bytes_and_bool_tensors_in_binary_form(server: InProcess, client: Client) -> None:
    # Given named tensors: categories as length-prefixed BYTES (one with a multi-byte
    # character in the row id), booleans as one byte each, numbers as FP32
    x = valid_rows(3)
    json_body = named_body(x, ids=["a", "é-ü", "c"])
    header_inputs, parts = [], []
    for tensor in json_body["inputs"]:
        if tensor["datatype"] == "BYTES":
            raw = _bytes_tensor(tensor["data"])
        elif tensor["datatype"] == "BOOL":
            raw = bytes(int(v) for v in tensor["data"])
        else:
            raw = np.asarray(tensor["data"], dtype="<f4").tobytes()
        header_inputs.append(
            {k: tensor[k] for k in ("name", "datatype", "shape")}
            | {"parameters": {"binary_data_size": len(raw)}}
        )
        parts.append(raw)
    body, headers = binary_request({"inputs": header_inputs}, *parts)
    # When both forms are answered
    _, json_doc = client.json("POST", INFER, json_body)
    status, _, data = post(client, body, headers)
    # Then they agree
    assert status == 200, data
    assert json.loads(data)["outputs"] == json_doc["outputs"]


def _cases() -> list[tuple[str, bytes, dict[str, str], str]]:
    x = valid_rows(1)
    raw = x.astype("<f4").tobytes()
    head = features_header(x)
    cat = {"name": "f00", "datatype": "BYTES", "shape": [1]}
    cases = [
        ("length past the body", *binary_request(head, raw, length=10**6), "not within the body"),
        ("length not a number", *binary_request(head, raw, length="12x"), "non-negative integer"),
        ("negative length", *binary_request(head, raw, length=-1), "non-negative integer"),
        ("length with a sign", *binary_request(head, raw, length="+1"), "non-negative integer"),
        ("length with '_'", *binary_request(head, raw, length="1_0"), "non-negative integer"),
        ("length of 5,000 digits", *binary_request(head, raw, length="9" * 5000), "5000 digits"),
        ("length of 5,000 zeros", *binary_request(head, raw, length="0" * 5000), "not valid JSON"),
        (
            "datatype not a string",
            *binary_request({"inputs": [{**head["inputs"][0], "datatype": ["FP32"]}]}, raw),
            "'datatype' must be a string",
        ),
        ("data short", *binary_request(head, raw[:-4]), "needs 120 bytes"),
        ("bytes left over", *binary_request(head, raw, b"\0\0\0\0"), "belong to no input"),
        (
            "size not an integer",
            *binary_request(
                {"inputs": [{**head["inputs"][0], "parameters": {"binary_data_size": "120"}}]},
                raw,
            ),
            "binary_data_size must be",
        ),
        (
            "both data and binary",
            *binary_request(
                {"inputs": [{**head["inputs"][0], "data": x.reshape(-1).tolist()}]}, raw
            ),
            "both 'data' and binary_data_size",
        ),
        (
            "no header",
            json.dumps(head).encode() + raw,
            {},
            "no Inference-Header-Content-Length",
        ),
        *(
            (
                f"JSON data declaring binary data, key {how}",
                json.dumps(stray).encode().replace(b'"binary_data_size"', key),
                {},
                "declares binary_data_size, but the request has no Inference-Header",
            )
            for stray in [
                {
                    "inputs": [
                        {
                            **head["inputs"][0],
                            "data": x.reshape(-1).tolist(),
                            "parameters": {"binary_data_size": len(raw)},
                        }
                    ]
                }
            ]
            for how, key in [
                ("as written", b'"binary_data_size"'),
                ("spelled with an escape", b'"binary\\u005fdata_size"'),
            ]
        ),
        (
            "FP32 size not a multiple of 4",
            *binary_request(
                {"inputs": [{**head["inputs"][0], "parameters": {"binary_data_size": 121}}]},
                raw + b"\0",
            ),
            "not a whole number of FP32 values",
        ),
        (
            "BYTES length prefix cut",
            *binary_request({"inputs": [{**cat, "parameters": {"binary_data_size": 2}}]}, b"\1\0"),
            "ends inside a length prefix",
        ),
        (
            "BYTES value past the end",
            *binary_request(
                {"inputs": [{**cat, "parameters": {"binary_data_size": 6}}]}, b"\x09\0\0\0ab"
            ),
            "runs past the tensor's data",
        ),
        (
            "BYTES not UTF-8",
            *binary_request(
                {"inputs": [{**cat, "parameters": {"binary_data_size": 6}}]}, b"\2\0\0\0\xff\xfe"
            ),
            "not valid UTF-8",
        ),
        (
            "BOOL byte not 0 or 1",
            *binary_request(
                {
                    "inputs": [
                        {
                            "name": "f08",
                            "datatype": "BOOL",
                            "shape": [1],
                            "parameters": {"binary_data_size": 1},
                        }
                    ]
                },
                b"\2",
            ),
            "BOOL bytes must be 0 or 1",
        ),
        (
            "binary_data_output not a boolean",
            *binary_request(features_header(x, parameters={"binary_data_output": "yes"}), raw),
            "binary_data_output must be true or false",
        ),
        (
            "JSON header not UTF-8",
            b'{"id": "\xff"}' + raw,
            {"Inference-Header-Content-Length": "11"},
            "not valid JSON",
        ),
    ]
    return cases


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [c[1:] for c in _cases()],
    ids=[c[0] for c in _cases()],
)
def test_malformed_binary_request_is_a_400_naming_the_extension(
    server: InProcess, client: Client, body: bytes, headers: dict[str, str], needle: str
) -> None:
    # When a malformed binary request arrives
    status, _, data = post(client, body, headers)
    # Then it is a 400 whose message names the extension (or the JSON problem) and the fault
    assert status == 400, data
    error = json.loads(data)["error"]
    assert needle in error
    if needle != "not valid JSON":
        assert "binary_tensor_data" in error
    # and the server still answers the next request on the same connection
    status, doc = client.json("POST", INFER, infer_body(valid_rows(1)))
    assert status == 200
    assert doc["outputs"][0]["shape"] == [1]


def test_binary_body_over_the_limit_is_refused_before_it_is_read(
    server: InProcess, client: Client
) -> None:
    # Given a binary request larger than the server's body limit (64 KiB here)
    x = np.zeros((600, len(FEATURES)), dtype=np.float32)
    body, headers = binary_request(features_header(x), x.tobytes())
    assert len(body) > 64 * 1024
    # When it is sent / Then the same 413 as for JSON
    status, _, data = post(client, body, headers)
    assert status == 413, data


def test_binary_values_meet_the_feature_contract(server: InProcess, client: Client) -> None:
    # Given a binary request whose categorical code is out of range
    x = valid_rows(1)
    x[0, FEATURES.index("f00")] = len(CATEGORICAL["f00"]) + 3
    body, headers = binary_request(features_header(x), x.astype("<f4").tobytes())
    # When it is answered / Then the contract's own 400
    status, _, data = post(client, body, headers)
    assert status == 400
    assert "feature 'f00' is categorical" in json.loads(data)["error"]


def test_row_ids_in_binary_reach_the_response_unchanged(server: InProcess, client: Client) -> None:
    # Given the features tensor plus the id tensor, both binary, and a client request id
    x = valid_rows(2)
    ids = _bytes_tensor(["r1", "r2"])
    header = features_header(x, id="req-1")
    header["inputs"].append(
        {
            "name": ID_COLUMN,
            "datatype": "BYTES",
            "shape": [2],
            "parameters": {"binary_data_size": len(ids)},
        }
    )
    body, headers = binary_request(header, x.astype("<f4").tobytes(), ids)
    # When it is answered / Then the request id comes back
    status, _, data = post(client, body, headers)
    assert status == 200, data
    assert json.loads(data)["id"] == "req-1"
