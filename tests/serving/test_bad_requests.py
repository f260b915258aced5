"""Every class of bad request gets a 4xx with a JSON error naming the problem.

The server keeps serving on the same connection afterwards.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import numpy as np
import pytest

from .conftest import FEATURES, Client, InProcess, infer_body, valid_rows

INFER = "/v2/models/example-model/infer"


def one_row(**changes: float | None) -> dict[str, Any]:
    x = valid_rows(1)
    body = infer_body(x)
    for name, value in changes.items():
        body["inputs"][0]["data"][FEATURES.index(name)] = value
    return body


def features(shape: list[int], data: Any, datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [{"name": "features", "datatype": datatype, "shape": shape, "data": data}]}


ROW = valid_rows(1).reshape(-1).tolist()
CASES: list[tuple[str, bytes | dict[str, Any], int, str]] = [
    ("malformed json", b'{"inputs": [', 400, "not valid JSON"),
    ("not utf-8", b"\xff\xfe{}", 400, "not valid JSON"),
    ("json array", b"[1, 2]", 400, "JSON object"),
    ("no inputs", {"id": "x"}, 400, "'inputs'"),
    ("empty inputs", {"inputs": []}, 400, "'inputs'"),
    ("input not object", {"inputs": [3]}, 400, "string 'name'"),
    ("id not string", {"id": 3, **features([1, 30], ROW)}, 400, "'id'"),
    ("wrong width", features([1, 29], ROW[:29]), 400, "shape must be [N, 30]"),
    ("data/shape mismatch", features([2, 30], ROW), 400, "needs 60 values"),
    ("1-d features", features([30], ROW), 400, "shape must be [N, 30]"),
    ("negative dim", features([-1, 30], ROW), 400, "non-negative integers"),
    ("shape not list", features("1x30", ROW), 400, "non-negative integers"),  # type: ignore[arg-type]
    ("many dimensions", features([1] * 10_000 + [30], ROW), 400, "shape has 10001 dimensions"),
    ("bytes dtype", features([1, 30], [str(v) for v in ROW], "BYTES"), 400, "not numeric"),
    ("unknown dtype", features([1, 30], ROW, "FLOAT"), 400, "unknown datatype"),
    ("strings as FP32", features([1, 30], ["a"] * 30), 400, "non-numeric"),
    ("ragged nested", features([2, 30], [ROW, ROW[:3]]), 400, "regular numeric array"),
    ("floats as INT32", features([1, 30], [0.5] * 30, "INT32"), 400, "non-integer"),
    ("data not list", features([1, 30], {"a": 1}), 400, "JSON array"),
    ("empty batch", features([0, 30], []), 400, "empty batch"),
    ("batch over limit", features([101, 30], ROW * 101), 400, "exceeds the limit of 100"),
    (
        "unknown feature name",
        {"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1], "data": [1]}]},
        400,
        "unknown input",
    ),
    (
        "missing features",
        {"inputs": [{"name": "f10", "datatype": "FP32", "shape": [1], "data": [1]}]},
        400,
        "missing feature",
    ),
    (
        "both forms",
        {
            "inputs": [
                *features([1, 30], ROW)["inputs"],
                {"name": "f10", "datatype": "FP32", "shape": [1], "data": [1]},
            ]
        },
        400,
        "not both",
    ),
    ("duplicate input", {"inputs": features([1, 30], ROW)["inputs"] * 2}, 400, "appears twice"),
    ("NaN where forbidden", one_row(f10=None), 400, "'f10'"),
    ("NaN literal where forbidden", b"", 400, "'f11'"),  # body built below
    ("infinity", b"", 400, "infinite"),  # body built below
    ("category out of range", one_row(f00=4.0), 400, "'f00' is categorical"),
    ("negative category", one_row(f02=-1.0), 400, "'f02' is categorical"),
    ("fractional category", one_row(f00=1.5), 400, "'f00' is categorical"),
    ("NaN category forbidden", one_row(f00=None), 400, "'f00'"),
    (
        "id wrong length",
        {
            "inputs": [
                *features([1, 30], ROW)["inputs"],
                {"name": "row-key", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
            ]
        },
        400,
        "1 rows",
    ),
    (
        "id wrong dtype",
        {
            "inputs": [
                *features([1, 30], ROW)["inputs"],
                {"name": "row-key", "datatype": "FP32", "shape": [1], "data": [1.0]},
            ]
        },
        400,
        "BYTES",
    ),
    (
        "id tensor under another name",
        {
            "inputs": [
                *features([1, 30], ROW)["inputs"],
                {"name": "txn_id", "datatype": "BYTES", "shape": [1], "data": ["a"]},
            ]
        },
        400,
        "unknown input",
    ),
    (
        "output twice",
        {**features([1, 30], ROW), "outputs": [{"name": "probability"}] * 2_000},
        400,
        "output 'probability' is requested twice",
    ),
    (
        "unknown output",
        {**features([1, 30], ROW), "outputs": [{"name": "label"}]},
        400,
        "unknown output",
    ),
]


def _raw(name: str, body: bytes | dict[str, Any]) -> bytes:
    if name == "NaN literal where forbidden":
        return json.dumps(one_row(f11=float("nan"))).encode()  # Python writes the NaN token
    if name == "infinity":
        return json.dumps(one_row(f03=float("inf"))).encode()
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.mark.parametrize(("name", "body", "status", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_answers_4xx_naming_the_problem(
    client: Client, name: str, body: bytes | dict[str, Any], status: int, needle: str
) -> None:
    # When a bad body is posted
    code, headers, data = client.request("POST", INFER, raw=_raw(name, body))
    # Then the answer is the expected 4xx with a JSON error that names the problem
    assert code == status, data
    assert headers["content-type"] == "application/json"
    error = json.loads(data)["error"]
    assert needle in error, error
    # And the same connection still serves a good request
    code, _, _ = client.request("POST", INFER, infer_body(valid_rows(1)))
    assert code == 200


def test_nan_is_accepted_where_the_feature_allows_it(client: Client) -> None:
    code, _, data = client.request("POST", INFER, one_row(f04=None, f01=None))
    assert code == 200, data


def test_oversize_body_with_content_length_is_refused_before_it_is_read(
    server: InProcess,
) -> None:
    # Given a client announcing a body over the 64 KiB limit and sending only the headers
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/models/example-model/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        )
        # Then it gets a 413 at once and the connection is closed
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b"exceeds the limit" in reply
        assert sock.recv(65536) == b""


def test_oversize_chunked_body_is_refused(server: InProcess) -> None:
    chunk = b"x" * 40_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/models/example-model/infer HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(3):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close while we still send
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 413 ")


def test_malformed_http_gets_400_and_server_survives(server: InProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\x00\x01 / HTTP/9\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    c = server.client()
    assert c.request("GET", "/v2/health/live")[0] == 200


def test_errors_are_counted_by_endpoint_and_code(client: Client) -> None:
    client.request("POST", INFER, raw=b"{")
    client.request("GET", "/v2/models/nope")
    text = client.request("GET", "/metrics")[2].decode()
    assert 'argosy_request_errors_total{endpoint="infer",code="400",protocol="rest"} 1' in text
    assert 'argosy_request_errors_total{endpoint="unknown",code="404",protocol="rest"} 1' in text


def test_batch_at_the_limit_is_served(client: Client) -> None:
    x = valid_rows(100)
    code, _, data = client.request("POST", INFER, infer_body(x))
    assert code == 200
    assert json.loads(data)["outputs"][0]["shape"] == [100]
    assert np.isfinite(json.loads(data)["outputs"][0]["data"]).all()
