"""The server against the Open Inference Protocol (V2) REST shapes.

Reference: kserve/open-inference-protocol, specification/protocol/inference_rest.md: health
(200 = true, 4xx = false), server metadata {name, version, extensions}, model metadata
{name, versions, platform, inputs, outputs} with tensors {name, datatype, shape}, infer request
{id?, inputs[{name, shape, datatype, data}], outputs?} and response {model_name, model_version?,
id, outputs[{name, shape, datatype, data}]}, errors {"error": string}.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from argosy.serving.server import Batching

from .conftest import (
    BOOLEAN,
    CATEGORICAL,
    FEATURES,
    ID_COLUMN,
    MODEL_VERSION,
    THRESHOLD,
    Client,
    InProcess,
    infer_body,
    make_app,
    read_response,
    recv_some,
    start_in_process,
    stop_in_process,
    valid_rows,
)

INFER = "/v2/models/example-model/infer"


@pytest.fixture(params=[True, False], ids=["batching", "no-batching"])
def server_batching(request: pytest.FixtureRequest) -> Any:
    """Every test here runs against a server with batching on (production's) and off."""
    return Batching(enabled=request.param)


def reference_scores(model_dir: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"features": x})[1][:, 1]


def assert_tensor(t: dict, name: str, datatype: str, shape: list[int]) -> None:
    assert t["name"] == name
    assert t["datatype"] == datatype
    assert t["shape"] == shape
    assert len(t["data"]) == int(np.prod(shape))


def test_health_endpoints_answer_200_true(client: Client) -> None:
    assert client.json("GET", "/v2/health/live") == (200, {"live": True})
    assert client.json("GET", "/v2/health/ready") == (200, {"ready": True})
    # KServe's ModelReadyResponse requires the model's name next to `ready`
    ready = {"name": "example-model", "ready": True}
    assert client.json("GET", "/v2/models/example-model/ready") == (200, ready)
    path = f"/v2/models/example-model/versions/{MODEL_VERSION}/ready"
    assert client.json("GET", path) == (200, ready)


def test_server_metadata_has_name_version_extensions(client: Client) -> None:
    status, doc = client.json("GET", "/v2")
    assert status == 200
    assert doc["name"] == "argosy"
    assert isinstance(doc["version"], str)
    # the binary tensor data extension (what tritonclient and kserve send at their defaults)
    assert doc["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize(
    "path", ["/v2/models/example-model", f"/v2/models/example-model/versions/{MODEL_VERSION}"]
)
def test_model_metadata_describes_tensors(client: Client, path: str) -> None:
    status, doc = client.json("GET", path)
    assert status == 200
    assert doc["name"] == "example-model"
    assert doc["versions"] == [MODEL_VERSION]
    assert doc["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in doc["inputs"]] == [
        *((f, datatype(f), [-1]) for f in FEATURES),
        (ID_COLUMN, "BYTES", [-1]),
    ]
    assert {o["name"] for o in doc["outputs"]} == {"probability", "decision"}
    assert json.loads(doc["parameters"]["features"]) == FEATURES
    assert doc["parameters"]["features_tensor"] == "features"
    assert json.loads(doc["parameters"]["features_tensor_shape"]) == [-1, len(FEATURES)]


def datatype(feature: str) -> str:
    if feature in CATEGORICAL:
        return "BYTES"
    return "BOOL" if feature in BOOLEAN else "FP32"


def test_infer_single_tensor_matches_onnxruntime(client: Client, model_dir: Path) -> None:
    # Given five valid rows sent as one [N, F] tensor with a client id
    x = valid_rows(5)
    # When they are scored
    status, doc = client.json("POST", INFER, infer_body(x, id="req-1"))
    # Then the response carries the V2 shape, the id, and ONNX Runtime's probabilities
    assert status == 200
    assert doc["model_name"] == "example-model"
    assert doc["model_version"] == MODEL_VERSION
    assert doc["id"] == "req-1"
    prob, decision = doc["outputs"]
    assert_tensor(prob, "probability", "FP32", [5])
    assert_tensor(decision, "decision", "INT8", [5])
    expected = reference_scores(model_dir, x)
    np.testing.assert_allclose(prob["data"], expected, rtol=1e-6)
    assert decision["data"] == [int(p >= THRESHOLD) for p in np.float32(expected)]


def test_infer_named_tensors_equal_single_tensor(client: Client) -> None:
    # Given the same rows sent once as one tensor and once as one tensor per feature (shuffled)
    x = valid_rows(4, seed=3)
    named = [
        {"name": f, "datatype": "FP32", "shape": [4], "data": x[:, j].tolist()}
        for j, f in enumerate(FEATURES)
    ][::-1]
    # When both are scored
    _, single = client.json("POST", INFER, infer_body(x))
    status, by_name = client.json("POST", INFER, {"inputs": named})
    # Then they score identically
    assert status == 200
    assert by_name["outputs"] == single["outputs"]


def test_infer_accepts_nested_data_versions_path_and_fp64(client: Client) -> None:
    x = valid_rows(2, seed=4)
    body = {
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [2, 30], "data": x.tolist()}]
    }
    _, flat = client.json("POST", INFER, infer_body(x))
    status, nested = client.json(
        "POST", f"/v2/models/example-model/versions/{MODEL_VERSION}/infer", body
    )
    assert status == 200
    assert nested["outputs"] == flat["outputs"]


def test_infer_assigns_unique_ids_and_honours_requested_outputs(client: Client) -> None:
    x = valid_rows(1)
    _, a = client.json("POST", INFER, infer_body(x))
    _, b = client.json("POST", INFER, infer_body(x, outputs=[{"name": "decision"}]))
    assert a["id"]
    assert b["id"]
    assert a["id"] != b["id"]
    assert [o["name"] for o in b["outputs"]] == ["decision"]


def test_infer_accepts_the_id_tensor_and_null_for_a_nullable_feature(client: Client) -> None:
    x = valid_rows(2)
    x[0, FEATURES.index("f03")] = np.nan  # f03 is nullable
    body = infer_body(x)
    body["inputs"].append(
        {"name": "row-key", "datatype": "BYTES", "shape": [2], "data": ["t1", "t2"]}
    )
    status, doc = client.json("POST", INFER, body)
    assert status == 200
    assert doc["outputs"][0]["shape"] == [2]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/other-model", 404),
        ("POST", "/v2/models/other-model/infer", 404),
        ("GET", "/v2/models/example-model/versions/999/ready", 404),
        ("GET", "/v2/nothing-here", 404),
        ("GET", INFER, 405),
        ("POST", "/v2/health/live", 405),
    ],
)
def test_errors_use_the_v2_error_object(
    client: Client, method: str, path: str, status: int
) -> None:
    code, headers, data = client.request(method, path, raw=b"{}" if method == "POST" else None)
    assert code == status
    assert headers["content-type"] == "application/json"
    doc = json.loads(data)
    assert set(doc) == {"error"}
    assert isinstance(doc["error"], str)
    assert doc["error"]


def test_unknown_model_error_names_it(client: Client) -> None:
    status, doc = client.json("POST", "/v2/models/other-model/infer", {"inputs": []})
    assert status == 404
    assert "other-model" in doc["error"]


def test_keep_alive_serves_many_requests_on_one_connection(client: Client) -> None:
    body = infer_body(valid_rows(1))
    for _ in range(50):
        status, _, _ = client.request("POST", INFER, body)
        assert status == 200
    # the http.client connection was reused: still the same socket
    assert client.conn.sock is not None


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", INFER, "POST"),
        ("PUT", INFER, "POST"),
        ("POST", "/v2/health/ready", "GET, HEAD"),
        ("DELETE", "/v2/models/example-model", "GET, HEAD"),
        ("POST", "/v2/models/example-model/ready", "GET, HEAD"),
    ],
)
def test_405_lists_the_allowed_methods(client: Client, method: str, path: str, allow: str) -> None:
    # When a known endpoint is called with the wrong method
    code, headers, _ = client.request(method, path, raw=b"{}" if method != "GET" else None)
    # Then the 405 carries Allow with the methods it takes (RFC 9110 15.5.6)
    assert code == 405
    assert headers["allow"] == allow


def test_unknown_path_is_not_echoed_whole(client: Client) -> None:
    # Given an unknown path of 8,000 characters (under the head limit)
    long_name = "x" * 8000
    for path in (
        f"/v2/{long_name}",
        f"/v2/models/{long_name}",
        f"/v2/models/example-model/versions/{long_name}",
    ):
        # When it is requested
        status, doc = client.json("GET", path)
        # Then the 404 names a cut-down path
        assert status == 404
        assert len(doc["error"]) < 400, len(doc["error"])
        assert "characters)" in doc["error"]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1/v2/models/example-model/ready",  # absolute-form (RFC 9112 3.2.2)
        "HTTP://any.host:8080/v2/models/example-model/ready?x=1",
        "/v2/models/example%2Dmodel/ready",  # percent-encoded, as quoting clients send names
        "/v2/models/%65xample-model/versions/%37/ready",
    ],
)
def test_absolute_and_percent_encoded_targets_reach_their_endpoint(
    client: Client, target: str
) -> None:
    # When a target in either form is requested / Then it is the endpoint it names
    status, doc = client.json("GET", target)
    assert (status, doc) == (200, {"name": "example-model", "ready": True})


def test_percent_encoding_cannot_smuggle_bytes_into_a_name(client: Client) -> None:
    # When an encoded name is not UTF-8, or names another model once decoded
    for target, needle in [
        ("/v2/models/%FF/ready", "not valid UTF-8"),
        ("/v2/models/other%2Dmodel/ready", "unknown model 'other-model'"),
        ("http://host", "no such endpoint: /"),
        # an encoded slash is not a separator (RFC 3986 2.2): it stays in its segment
        ("/v2/health%2Flive", "no such endpoint: /v2/health%2Flive"),
        ("/v2/models/example-model%2fready", "unknown model 'example-model%2Fready'"),
    ]:
        status, doc = client.json("GET", target)
        # Then it is a 404 naming the decoded path
        assert status == 404, target
        assert needle in doc["error"], (target, doc)
    # and an infer POST through an absolute-form target is scored
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                        "data": valid_rows(1).reshape(-1).tolist()}]}  # fmt: skip
    status, _, data = client.request("POST", "http://x/v2/models/example-model/infer", body)
    assert status == 200, data


def test_json_booleans_in_a_numeric_tensor_are_one_and_zero(client: Client) -> None:
    def scores(data: list[Any]) -> list[float]:
        body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                            "data": data}]}  # fmt: skip
        status, doc = client.json("POST", INFER, body)
        assert status == 200, doc
        return doc["outputs"][0]["data"]

    # Given rows of booleans alone, and of booleans among numbers
    pattern = [i % 3 == 0 for i in range(30)]
    mixed = valid_rows(1).reshape(-1).tolist()
    for name in ("f08", "f12"):  # the boolean features
        mixed[FEATURES.index(name)] = True
    # When each is scored / Then it scores as its 1s and 0s do
    assert scores(pattern) == scores([float(v) for v in pattern])
    assert scores(mixed) == scores([float(v) for v in mixed])


def test_unversioned_model_omits_model_version(tmp_path: Path, model_dir: Path) -> None:
    # Given the model directory with no version in its metadata
    from .conftest import make_app, start_in_process, stop_in_process

    unversioned = tmp_path / "model"
    unversioned.mkdir()
    (unversioned / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    metadata = json.loads((model_dir / "metadata.json").read_text())
    del metadata["version"]
    (unversioned / "metadata.json").write_text(json.dumps(metadata))
    srv = start_in_process(make_app(unversioned))
    client = srv.client()
    try:
        # When it answers an inference
        status, doc = client.json("POST", INFER, infer_body(valid_rows(2)))
        # Then the response has no model_version key at all (never "")
        assert status == 200
        assert "model_version" not in doc
        assert doc["model_name"] == "example-model"
        # And its metadata lists no versions, its ready answer still names it
        assert client.json("GET", "/v2/models/example-model")[1]["versions"] == []
        assert client.json("GET", "/v2/models/example-model/ready") == (
            200,
            {"name": "example-model", "ready": True},
        )
    finally:
        client.close()
        stop_in_process(srv)


def test_not_ready_model_answers_its_name_and_why(tmp_path: Path, model_dir: Path) -> None:
    # Given a model whose pinned sha256 does not match model.onnx
    from argosy.serving.metrics import Metrics
    from argosy.serving.model import load_model
    from argosy.serving.server import App, Limits

    from .conftest import start_in_process, stop_in_process

    model = load_model(model_dir, expected_sha256="0" * 64)
    app = App(model, Metrics(model.name, model.version, model.sha256), Limits())
    srv = start_in_process(app)
    client = srv.client()
    try:
        # When its readiness is asked
        status, doc = client.json("GET", "/v2/models/example-model/ready")
        # Then it is a 4xx naming the model, ready false, with the reason
        assert status == 400
        assert doc["name"] == "example-model"
        assert doc["ready"] is False
        assert "sha256" in doc["error"]
    finally:
        client.close()
        stop_in_process(srv)


@pytest.mark.parametrize("version", ["7", ""], ids=["versioned", "unversioned"])
@pytest.mark.parametrize("outputs", [("probability", "decision"), ("decision",), ("probability",)])
@pytest.mark.parametrize("n", [1, 5])
def test_json_response_is_the_protocol_document_byte_for_byte(
    version: str, outputs: tuple[str, ...], n: int
) -> None:
    """The JSON response, assembled from pre-encoded pieces, is exactly orjson's document."""
    import types

    import orjson

    from argosy.serving.v2 import encode_infer_response

    # A "%" in the name: the one-row response is a %-format (its own path in the encoder).
    model: Any = types.SimpleNamespace(name='m "x" é %d%%', version=version)
    scores = np.linspace(0.0, 1.0, n, dtype=np.float32) / 3 if n > 1 else np.float32([1 / 3])
    decisions = (scores >= 0.2).astype(np.int8)
    request_id = 'id "quoted" \\ ü'
    body, header_length = encode_infer_response(model, request_id, outputs, scores, decisions)
    values = {"probability": ("FP32", scores), "decision": ("INT8", decisions)}
    head = (
        {"model_name": model.name, "model_version": version}
        if version
        else {"model_name": model.name}
    )
    expected = {
        **head,
        "id": request_id,
        "outputs": [
            {"name": o, "datatype": values[o][0], "shape": [n], "data": values[o][1].tolist()}
            for o in outputs
        ],
    }
    assert header_length is None
    assert body == orjson.dumps(expected)
    assert np.array_equal(
        np.array(json.loads(body)["outputs"][0]["data"], dtype=values[outputs[0]][1].dtype),
        values[outputs[0]][1],
    )


def _no_more_bytes(sock: socket.socket, buffer: bytearray) -> bool:
    """Nothing is left to read: no byte came past the responses read, within 0.3 s."""
    if buffer:
        return False
    sock.settimeout(0.3)
    try:
        return not sock.recv(65536)  # b"": the server closed the connection
    except TimeoutError:
        return True


_OFFERS = {
    "h2c": b"connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n"
    b"http2-settings: AAMAAABkAAQAAP__\r\n",
    "websocket": b"connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n",
}


@pytest.mark.parametrize("offer", sorted(_OFFERS))
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_upgrade_offer_is_ignored_and_its_request_answered_once(
    server: InProcess, client: Client, offer: str, framing: str
) -> None:
    # Given an infer request offering a protocol upgrade, as `curl --http2` sends over plain
    # HTTP (RFC 9110 7.8: a server may ignore it), with its body and a request pipelined after
    body = json.dumps(infer_body(valid_rows(2))).encode()
    if framing == "chunked":
        framed = b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        framed = b"content-length: %d\r\n\r\n%s" % (len(body), body)
    request = b"POST %s HTTP/1.1\r\nhost: x\r\n%s%s" % (INFER.encode(), _OFFERS[offer], framed)
    then = b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\n" + _OFFERS[offer] + b"\r\n"
    expected = client.json("POST", INFER, infer_body(valid_rows(2)))[1]["outputs"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request + then)
        # When the responses are read
        buffer = bytearray()
        first = read_response(sock, buffer)
        second = read_response(sock, buffer)
        # Then the infer request is answered with its body's scores, once, and so is the next
        assert first[0] == 200, first
        assert first[1]["outputs"] == expected
        assert second == (200, {"ready": True})
        assert _no_more_bytes(sock, buffer)
    # and no refusal was counted for either
    metrics = client.request("GET", "/metrics")[2].decode()
    assert 'endpoint="http"' not in metrics


def test_an_upgrade_offer_with_connection_close_is_answered_then_closed(
    server: InProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nconnection: close, upgrade\r\nupgrade: h2c\r\n\r\n"
            b"GET /v2/health/live HTTP/1.1\r\n\r\n"
        )
        buffer = bytearray()
        assert read_response(sock, buffer) == (200, {"live": True})
        sock.settimeout(2)
        assert not buffer
        assert sock.recv(65536) == b""  # closed: the pipelined request is not answered


def test_connect_is_refused_once_and_the_tunnel_bytes_are_not_read(server: InProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n\x16\x03\x01"
        )
        buffer = bytearray()
        status, doc = read_response(sock, buffer)
        assert status == 404
        assert "example.com:443" in doc["error"]
        sock.settimeout(2)
        assert not buffer
        assert sock.recv(65536) == b""


def test_an_http_1_0_client_gets_no_100_continue(server: InProcess) -> None:
    # Given an HTTP/1.0 request that expects 100-continue (RFC 9110 10.1.1: ignored for 1.0)
    body = json.dumps(infer_body(valid_rows(1))).encode()
    head = b"POST %s HTTP/1.0\r\nexpect: 100-continue\r\ncontent-length: %d\r\n\r\n" % (
        INFER.encode(),
        len(body),
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        # When it waits before sending its body / Then no interim response comes
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            recv_some(sock)
        # and once the body is sent, the request is answered
        sock.settimeout(10)
        sock.sendall(body)
        status, doc = read_response(sock)
    assert status == 200
    assert doc["outputs"][0]["shape"] == [1]


def _scored_rows(client: Client) -> int:
    text = client.request("GET", "/metrics")[2].decode()
    return int(text.split("argosy_prediction_score_count ")[1].split()[0])


@pytest.mark.parametrize(
    "closing",
    [
        b"GET /v2/health/live HTTP/1.1\r\nconnection: close, upgrade\r\nupgrade: h2c\r\n\r\n",
        b"GET /v2/health/live HTTP/1.0\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n",
    ],
    ids=["close-offer", "http-1.0-offer", "connect"],
)
def test_nothing_after_a_last_request_is_read_while_a_reply_ahead_is_pending(
    model_dir: Path, closing: bytes
) -> None:
    # Given a server whose batches wait 300 ms, and on one connection an infer request (so its
    # reply is pending), a request that ends the connection (an upgrade offer with Connection:
    # close or from HTTP/1.0, or a CONNECT) and more infer requests in the same segment, then
    # more in a segment of their own while the first reply still waits
    srv = start_in_process(make_app(model_dir, batching=Batching(max_wait_us=300_000)))
    client = srv.client()
    infer = json.dumps(infer_body(valid_rows(1))).encode()
    post = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (
        INFER.encode(),
        len(infer),
        infer,
    )
    try:
        before = _scored_rows(client)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(post + closing + post * 3)
            time.sleep(0.1)
            sock.sendall(post * 3)
            # When the replies are read / Then the first two come, in order, and the
            # connection closes
            buffer = bytearray()
            assert read_response(sock, buffer)[0] == 200
            second = read_response(sock, buffer)[0]
            assert second == (404 if closing.startswith(b"CONNECT") else 200)
            sock.settimeout(5)
            assert not buffer
            assert sock.recv(65536) == b""
        # and only the first infer request was scored: the ones after were never read
        assert _scored_rows(client) == before + 1
    finally:
        stop_in_process(srv)
