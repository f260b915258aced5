"""V2 gRPC (``inference.GRPCInferenceService``) in the REST server's process: conformance details.

These use Argosy's own generated stubs in the test process; third-party clients run in their
own processes (``test_protocol_clients.py``), since their protobuf modules collide with these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from argosy.serving import grpc_v2
from argosy.serving.grpc_v2 import InferenceServicer, _Abort, _Budget, request_doc
from argosy.serving.model import RequestError
from argosy.serving.predlog import PredictionLogger
from argosy.serving.proto import grpc_predict_v2_pb2 as pb
from argosy.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from argosy.serving.server import Batching

from .conftest import (
    BOOLEAN,
    CATEGORICAL,
    FEATURES,
    ID_COLUMN,
    MODEL_NAME,
    InProcess,
    make_app,
    named_body,
    start_in_process,
    stop_in_process,
    valid_rows,
)


@pytest.fixture
def served(model_dir: Path) -> Iterator[tuple[InProcess, Any]]:
    """An in-process server with gRPC, a prediction log into memory, and a stub for it."""
    tables: list[Any] = []
    predlog = PredictionLogger(
        features=FEATURES,
        model_name=MODEL_NAME,
        model_version="7",
        sink=lambda table, day: tables.append(table),
        flush_interval_s=0.05,
    )
    predlog.start()
    srv = start_in_process(make_app(model_dir, predlog, max_batch=100), grpc=True)
    srv.tables = tables  # type: ignore[attr-defined]
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}")
    yield srv, pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()
    stop_in_process(srv)
    predlog.close(5)


def features_request(x: np.ndarray, raw: bool, **fields: Any) -> Any:
    req = pb.ModelInferRequest(model_name=MODEL_NAME, **fields)
    tensor = req.inputs.add(name="features", datatype="FP32", shape=list(x.shape))
    if raw:
        req.raw_input_contents.append(x.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    return req


def scores(resp: Any) -> np.ndarray:
    if resp.raw_output_contents:
        return np.frombuffer(resp.raw_output_contents[0], dtype="<f4")
    return np.asarray(resp.outputs[0].contents.fp32_contents, dtype=np.float32)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_infer_answers_the_models_scores(served: tuple[InProcess, Any], raw: bool) -> None:
    srv, stub = served
    # Given rows in raw_input_contents or in typed contents
    x = valid_rows(5)
    # When they are inferred over gRPC
    resp = stub.ModelInfer(features_request(x, raw, id="g-1"), timeout=10)
    # Then the scores are the model's bit for bit, in the form the request used
    expected = srv.app.model.predict(x)
    assert bool(resp.raw_output_contents) is raw
    assert scores(resp).tobytes() == expected.astype("<f4").tobytes()
    assert [o.name for o in resp.outputs] == ["probability", "decision"]
    assert [o.datatype for o in resp.outputs] == ["FP32", "INT8"]
    assert list(resp.outputs[0].shape) == [5]
    assert (resp.model_name, resp.model_version, resp.id) == (MODEL_NAME, "7", "g-1")
    decisions = (
        np.frombuffer(resp.raw_output_contents[1], dtype=np.int8)
        if raw
        else np.asarray(resp.outputs[1].contents.int_contents)
    )
    assert decisions.tolist() == (expected >= 0.5).astype(int).tolist()


def test_named_tensors_with_bytes_and_bool_contents(served: tuple[InProcess, Any]) -> None:
    srv, stub = served
    # Given one tensor per feature: raw category strings in bytes_contents, booleans in
    # bool_contents, numbers in fp32_contents, and the row ids
    x = valid_rows(3)
    req = pb.ModelInferRequest(model_name=MODEL_NAME)
    for tensor in named_body(x, ids=["a", "b", "é"])["inputs"]:
        t = req.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=[3])
        if tensor["datatype"] == "BYTES":
            t.contents.bytes_contents.extend(v.encode() for v in tensor["data"])
        elif tensor["datatype"] == "BOOL":
            t.contents.bool_contents.extend(tensor["data"])
        else:
            t.contents.fp32_contents.extend(tensor["data"])
    # When inferred / Then the same scores as the features tensor
    resp = stub.ModelInfer(req, timeout=10)
    assert scores(resp).tobytes() == srv.app.model.predict(x).astype("<f4").tobytes()
    # and the rows, with their ids, reach the prediction log
    deadline = time.monotonic() + 5
    while not srv.tables and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    table = srv.tables[0]  # type: ignore[attr-defined]
    assert table.column("row_id").to_pylist() == ["a", "b", "é"]


def _error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    ("mutate", "code", "needle"),
    [
        (lambda r: setattr(r, "model_name", "other"), grpc.StatusCode.NOT_FOUND, "unknown model"),
        (lambda r: setattr(r, "model_version", "9"), grpc.StatusCode.NOT_FOUND, "unknown version"),
        (
            lambda r: r.inputs[0].shape.__setitem__(1, 29),
            grpc.StatusCode.INVALID_ARGUMENT,
            "shape [1, 29] needs 29 values",
        ),
        (
            lambda r: r.raw_input_contents.append(b"extra"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (
            lambda r: r.inputs[0].contents.fp32_contents.append(1.0),
            grpc.StatusCode.INVALID_ARGUMENT,
            "both contents and raw_input_contents",
        ),
        (
            lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 7),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a whole number of FP32 values",
        ),
        (
            lambda r: setattr(r, "id", "x" * 129),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'id' is longer than 128 bytes",
        ),
        (
            lambda r: r.outputs.add(name="logits"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown output(s) ['logits']",
        ),
        (
            lambda r: [r.outputs.add(name="decision") for _ in range(2)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "output 'decision' is requested twice",
        ),
        (  # quoted in the message, which is cut to fit gRPC's 16 KB status metadata
            lambda r: setattr(r.inputs[0], "name", "n" * 100_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown input(s) ['nnnn",
        ),
        (  # refused before the shape is multiplied out or quoted
            lambda r: r.inputs[0].shape.extend([1] * 100_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'features': shape has 100002 dimensions; inputs here have 1 or 2",
        ),
        (  # the binary data extension's flags are checked as over REST
            lambda r: setattr(r.parameters["binary_data_output"], "string_param", "yes"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "binary_tensor_data: request: parameters.binary_data_output must be true or false",
        ),
        (
            lambda r: setattr(
                r.outputs.add(name="probability").parameters["binary_data"], "int64_param", 1
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "output 'probability': parameters.binary_data must be true or false",
        ),
    ],
    ids=[
        "model",
        "version",
        "shape",
        "raw count",
        "both",
        "raw size",
        "long id",
        "output",
        "output twice",
        "long input name",
        "many dimensions",
        "binary_data_output",
        "binary_data",
    ],
)
def test_bad_requests_get_a_status_naming_the_problem(
    served: tuple[InProcess, Any], mutate: Any, code: grpc.StatusCode, needle: str
) -> None:
    _, stub = served
    # Given a valid raw request made invalid in one way
    req = features_request(valid_rows(1), raw=True)
    mutate(req)
    # When it is sent / Then the status names the problem, as REST's 4xx would
    err = _error(lambda: stub.ModelInfer(req, timeout=10))
    assert err.code() == code
    assert needle in err.details()
    assert len(err.details()) < 1100
    # and the server still scores the next request
    assert len(scores(stub.ModelInfer(features_request(valid_rows(1), raw=True)))) == 1


def test_binary_outputs_asked_for_come_back_as_raw_contents(served: tuple[InProcess, Any]) -> None:
    _, stub = served
    x = valid_rows(3)
    typed = stub.ModelInfer(features_request(x, raw=False))
    # Given typed inputs asking for binary outputs (the extension's request-wide flag)
    req = features_request(x, raw=False)
    req.parameters["binary_data_output"].bool_param = True
    # When it is sent / Then the outputs come back as raw contents, equal to the typed answer
    resp = stub.ModelInfer(req)
    assert not typed.raw_output_contents
    assert len(resp.raw_output_contents) == 2
    np.testing.assert_array_equal(scores(resp), scores(typed))
    # and a false flag, or parameters the server does not know, change nothing
    req = features_request(x, raw=False)
    req.parameters["binary_data_output"].bool_param = False
    req.parameters["priority"].int64_param = 3
    assert not stub.ModelInfer(req).raw_output_contents


def test_typed_contents_are_counted_against_the_shape_before_conversion(
    served: tuple[InProcess, Any],
) -> None:
    _, stub = served
    # Given typed contents of 30 values declared as two rows
    req = features_request(valid_rows(1), raw=False)
    req.inputs[0].shape[0] = 2
    # When it is sent / Then the count is refused, naming both numbers
    err = _error(lambda: stub.ModelInfer(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'features': shape [2, 30] needs 60 values, contents has 30" in err.details()


def test_undecodable_messages_are_invalid_argument_counted_and_not_logged_as_errors(
    served: tuple[InProcess, Any], caplog: pytest.LogCaptureFixture
) -> None:
    srv, stub = served
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}")
    valid = features_request(valid_rows(1), raw=True).SerializeToString()
    try:
        with caplog.at_level(logging.ERROR):
            # Given a valid request followed by a string field whose bytes are not UTF-8, and
            # a metadata request that is not protobuf at all
            for path, raw, kind in [
                ("ModelInfer", valid + b"\x12\x02\xff\xfe", "inference.ModelInferRequest"),
                ("ModelMetadata", b"\xff\xff\xff", "inference.ModelMetadataRequest"),
            ]:
                call = channel.unary_unary(f"/inference.GRPCInferenceService/{path}")
                # When each is sent / Then INVALID_ARGUMENT names the message type
                err = _error(lambda: call(raw, timeout=10))  # noqa: B023  (called at once)
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert err.details() == f"request is not a valid {kind} message"
        # and nothing is logged as an error, both are counted as 400s
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        text = srv.client().request("GET", "/metrics")[2].decode()
        for endpoint in ("infer", "model_metadata"):
            assert f'{{endpoint="{endpoint}",code="400",protocol="grpc"}} 1' in text
        # and the same request, whole, is served
        assert len(scores(stub.ModelInfer(pb.ModelInferRequest.FromString(valid)))) == 1
    finally:
        channel.close()


def test_fp16_needs_raw_contents_and_bad_utf8_is_refused(served: tuple[InProcess, Any]) -> None:
    _, stub = served
    # Given FP16 in typed contents (the protocol has no field for it)
    req = pb.ModelInferRequest(model_name=MODEL_NAME)
    req.inputs.add(name="features", datatype="FP16", shape=[1, 30])
    err = _error(lambda: stub.ModelInfer(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "send FP16 as raw_input_contents" in err.details()
    # and a BYTES category that is not UTF-8
    x = valid_rows(1)
    req = pb.ModelInferRequest(model_name=MODEL_NAME)
    for tensor in named_body(x)["inputs"]:
        t = req.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=[1])
        if tensor["name"] == "f00":
            t.contents.bytes_contents.append(b"\xff")
        elif tensor["datatype"] == "BYTES":
            t.contents.bytes_contents.extend(v.encode() for v in tensor["data"])
        elif tensor["datatype"] == "BOOL":
            t.contents.bool_contents.extend(tensor["data"])
        else:
            t.contents.fp32_contents.extend(tensor["data"])
    err = _error(lambda: stub.ModelInfer(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'f00': a BYTES value is not valid UTF-8" in err.details()


def test_health_metadata_and_metrics(served: tuple[InProcess, Any]) -> None:
    srv, stub = served
    # When health and metadata are asked over gRPC
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME)).ready is True
    server_meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME, version="7"))
    # Then they match REST's: every input by name and datatype, the outputs, the extension
    assert server_meta.name == "argosy"
    assert list(server_meta.extensions) == ["binary_tensor_data"]
    assert list(meta.versions) == ["7"]
    expected = [
        (f, "BYTES" if f in CATEGORICAL else "BOOL" if f in BOOLEAN else "FP32") for f in FEATURES
    ]
    assert [(t.name, t.datatype) for t in meta.inputs] == [*expected, (ID_COLUMN, "BYTES")]
    assert [(t.name, t.datatype) for t in meta.outputs] == [
        ("probability", "FP32"),
        ("decision", "INT8"),
    ]
    err = _error(lambda: stub.ModelReady(pb.ModelReadyRequest(name="other")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # and RPCs are counted under the REST endpoint names with protocol="grpc"
    stub.ModelInfer(features_request(valid_rows(1), raw=True))
    _error(lambda: stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL_NAME)))
    text = srv.client().request("GET", "/metrics")[2].decode()
    assert 'argosy_requests_total{endpoint="infer",code="200",protocol="grpc"} 1' in text
    assert 'argosy_request_errors_total{endpoint="infer",code="400",protocol="grpc"} 1' in text
    assert 'argosy_requests_total{endpoint="model_ready",code="404",protocol="grpc"} 1' in text
    assert 'argosy_request_duration_seconds_count{endpoint="infer",protocol="grpc"} 2' in text


def test_standard_health_check_follows_readiness(served: tuple[InProcess, Any]) -> None:
    srv, _ = served
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}")
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    try:
        # When the model is ready / Then SERVING (HealthCheckResponse.status = 1)
        assert check(b"", timeout=5) == b"\x08\x01"
        # When the server begins to shut down / Then NOT_SERVING (2)
        srv.app.shutting_down = True
        assert check(b"", timeout=5) == b"\x08\x02"
        # while the liveness service ("live") still answers SERVING
        assert check(b"\n\x04live", timeout=5) == b"\x08\x01"
    finally:
        srv.app.shutting_down = False
        channel.close()


def test_not_ready_model_is_unavailable(model_dir: Path) -> None:
    # Given a model whose pinned sha256 does not match model.onnx
    from argosy.serving.metrics import Metrics
    from argosy.serving.model import load_model
    from argosy.serving.server import App, Limits

    model = load_model(model_dir, expected_sha256="0" * 64)
    srv = start_in_process(
        App(model, Metrics(model.name, model.version, model.sha256), Limits()), grpc=True
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        # Then readiness is false and inference UNAVAILABLE with the reason
        assert stub.ServerReady(pb.ServerReadyRequest()).ready is False
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME)).ready is False
        err = _error(lambda: stub.ModelInfer(features_request(valid_rows(1), raw=True)))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "sha256" in err.details()
    finally:
        channel.close()
        stop_in_process(srv)


def test_message_over_the_body_limit_is_refused(model_dir: Path) -> None:
    # Given a server with a 64 KiB body limit
    srv = start_in_process(make_app(model_dir, max_batch=1000, max_body_bytes=64 * 1024), grpc=True)
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    try:
        # When a request of 600 rows (72 KB) is sent / Then RESOURCE_EXHAUSTED
        err = _error(lambda: stub.ModelInfer(features_request(valid_rows(600), raw=True)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "request of 72" in err.details()
        # and one past the room gRPC itself allows (the limit plus 64 KiB) is refused too
        err = _error(lambda: stub.ModelInfer(features_request(valid_rows(2000), raw=True)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # and both are counted: the first as REST's 413s are, the second (which gRPC refuses
        # itself, ending the call before the server sees a message) as a call that ended (499)
        text = srv.client().request("GET", "/metrics")[2].decode()
        assert 'argosy_requests_total{endpoint="infer",code="413",protocol="grpc"} 1' in text
        assert 'argosy_requests_total{endpoint="infer",code="499",protocol="grpc"} 1' in text
        # and a request under the limit is served
        assert len(scores(stub.ModelInfer(features_request(valid_rows(2), raw=True)))) == 2
    finally:
        channel.close()
        stop_in_process(srv)


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: str, value: str) -> bytes:
    """An HPACK literal header field, not indexed (short names and values only)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def _slow_streams(port: int, method: str, n: int) -> socket.socket:
    """A connection holding ``n`` streams of ``method`` whose 100-byte message never finishes."""
    headers = b"".join(
        _literal(k, v)
        for k, v in [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
    )
    slow = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    slow.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, b""))
    for stream in range(1, 2 * n, 2):
        message = b"\x00" + struct.pack(">I", 100) + b"\x0a"
        slow.sendall(_h2_frame(1, 4, stream, headers) + _h2_frame(0, 0, stream, message))
    return slow


def test_health_is_answered_while_slow_streams_hold_every_slot(model_dir: Path) -> None:
    # Given a server allowing 3 connections/RPCs, with a 1 s request timeout
    app = make_app(model_dir, max_connections=3, request_timeout_s=1.0)
    srv = start_in_process(app, grpc=True)
    port = srv.server.grpc_port
    # and a client holding 3 ModelInfer streams whose 100-byte message never finishes arriving
    slow = _slow_streams(port, "/inference.GRPCInferenceService/ModelInfer", 3)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        time.sleep(0.3)
        # When the liveness probes ask
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        live = stub.ServerLive(pb.ServerLiveRequest(), timeout=2)
        health = channel.unary_unary("/grpc.health.v1.Health/Check")(b"\n\x04live", timeout=2)
        # Then they are answered, and inference too
        assert live.live
        assert health == b"\x08\x01"
        assert len(scores(stub.ModelInfer(features_request(valid_rows(1), raw=True)))) == 1
        # and the slow connection is closed once its age (1 s, plus 1 s of grace) is up
        deadline = time.monotonic() + 5
        closed = False
        while not closed and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                closed = slow.recv(65536) == b""
        assert closed, "the slow connection outlived its maximum age"
    finally:
        slow.close()
        channel.close()
        stop_in_process(srv)


def test_slow_probes_are_dropped_within_seconds_and_never_hold_server_live(
    model_dir: Path,
) -> None:
    # Given a server (its request timeout the default 30 s)
    srv = start_in_process(make_app(model_dir), grpc=True)
    port = srv.server.grpc_port
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    # and 50 health checks whose message never finishes arriving (more than are read at once)
    slow = _slow_streams(port, "/grpc.health.v1.Health/Check", 50)
    try:
        time.sleep(0.2)
        # When ServerLive and ServerReady ask meanwhile / Then they are answered at once
        # (they read no request)
        t0 = time.monotonic()
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=2).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready
        assert time.monotonic() - t0 < 0.5
        # and every slow check is refused within seconds: its message did not arrive within
        # a second of its read (408), or it found no room to be read within a second (503)
        deadline = time.monotonic() + 6
        refused = 0
        while refused < 50:
            assert time.monotonic() < deadline, f"{50 - refused} slow checks still held"
            time.sleep(0.1)
            text = srv.client().request("GET", "/metrics")[2].decode()
            refused = sum(
                int(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith(
                    ('argosy_requests_total{endpoint="health",code="408"',
                     'argosy_requests_total{endpoint="health",code="503"')
                )
            )  # fmt: skip
        assert refused == 50
        # and then the checks are answered
        assert check(b"", timeout=2) == b"\x08\x01"
        # and a check past the small RPCs' 64 KiB is refused
        err = _error(lambda: check(b"\n\x04live" + b"x" * 70_000))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "exceeds the limit of 65536" in err.details()
    finally:
        slow.close()
        channel.close()
        stop_in_process(srv)


def test_a_client_leaving_or_timing_out_is_counted_and_frees_its_room(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server that reads one infer message at once, and a stream holding that room
    app = make_app(model_dir, max_body_bytes=64 * 1024)
    monkeypatch.setattr(grpc_v2, "INFER_MESSAGE_BYTES", (64 + 64) * 1024)
    srv = start_in_process(app, grpc=True)
    port = srv.server.grpc_port
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    slow = _slow_streams(port, "/inference.GRPCInferenceService/ModelInfer", 1)
    try:
        time.sleep(0.2)
        # When a request's deadline passes while it waits for room
        err = _error(lambda: stub.ModelInfer(features_request(valid_rows(1), True), timeout=0.3))
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # and the slow stream's client cancels it (RST_STREAM, CANCEL)
        slow.sendall(_h2_frame(3, 0, 1, struct.pack(">I", 8)))
        # Then both are counted as requests the client left (499)
        line = 'argosy_requests_total{endpoint="infer",code="499",protocol="grpc"} 2'
        deadline = time.monotonic() + 3
        while line not in srv.client().request("GET", "/metrics")[2].decode():
            assert time.monotonic() < deadline, "the requests the clients left were not counted"
            time.sleep(0.05)
        # and the room came back: the next request is served at once
        assert len(scores(stub.ModelInfer(features_request(valid_rows(1), True), timeout=2))) == 1
    finally:
        slow.close()
        channel.close()
        stop_in_process(srv)


def test_slow_infer_streams_hold_only_infer_and_only_for_the_request_timeout(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server that reads two infer messages at once, with a 2 s request timeout
    app = make_app(model_dir, request_timeout_s=2.0, max_body_bytes=64 * 1024)
    monkeypatch.setattr(grpc_v2, "INFER_MESSAGE_BYTES", 2 * (64 + 64) * 1024)
    srv = start_in_process(app, grpc=True)
    port = srv.server.grpc_port
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    # and two infer streams whose message never finishes arriving
    slow = _slow_streams(port, "/inference.GRPCInferenceService/ModelInfer", 2)
    started = time.monotonic()
    try:
        time.sleep(0.4)
        # When the probes ask / Then they are answered at once
        t0 = time.monotonic()
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=2).live
        assert stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME), timeout=2).inputs
        assert time.monotonic() - t0 < 0.5
        # and an infer request (0.4 s in) waits for room, and is served once the slow ones
        # are dropped at their request timeout (2 s in), within its own 2 s wait
        assert len(scores(stub.ModelInfer(features_request(valid_rows(1), raw=True)))) == 1
        assert 1.9 < time.monotonic() - started < 4
        # and the slow ones were refused as request timeouts
        line = 'argosy_requests_total{endpoint="infer",code="408",protocol="grpc"} 2'
        deadline = time.monotonic() + 3
        while line not in srv.client().request("GET", "/metrics")[2].decode():
            assert time.monotonic() < deadline, "the slow infer streams were never dropped"
            time.sleep(0.05)
        # and then inference is served at once
        assert len(scores(stub.ModelInfer(features_request(valid_rows(1), raw=True)))) == 1
    finally:
        slow.close()
        channel.close()
        stop_in_process(srv)


def test_an_error_inside_infer_is_internal_and_counted(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a server without batching whose scoring raises (a TimeoutError, which is also
    # what a read past its deadline raises)
    app = make_app(model_dir, batching=None)

    def broken(x: np.ndarray) -> np.ndarray:
        raise TimeoutError("scoring stalled")

    app.predict = broken  # type: ignore[method-assign]
    srv = start_in_process(app, grpc=True)
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}")
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        # When a request is sent / Then it is INTERNAL, logged once, counted as a 500
        with caplog.at_level(logging.ERROR):
            err = _error(lambda: stub.ModelInfer(features_request(valid_rows(1), raw=True)))
        assert err.code() == grpc.StatusCode.INTERNAL
        assert err.details() == "internal error: TimeoutError"
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == ["internal error on gRPC infer"]
        text = srv.client().request("GET", "/metrics")[2].decode()
        assert 'argosy_requests_total{endpoint="infer",code="500",protocol="grpc"} 1' in text
    finally:
        channel.close()
        stop_in_process(srv)


def test_the_message_budget_serves_waiters_in_order_and_bounds_them() -> None:
    async def scenario() -> None:
        # Given a budget of 10 bytes, 6 of them taken, at most 2 waiters
        budget = _Budget(10, most_waiting=2)
        await budget.take(6, 1)
        granted: list[str] = []

        async def wait(n: int, tag: str) -> None:
            await budget.take(n, 5)
            granted.append(tag)

        # When 8 bytes are asked, then 1 (which would fit, but must not pass the 8)
        big = asyncio.create_task(wait(8, "big"))
        await asyncio.sleep(0)
        small = asyncio.create_task(wait(1, "small"))
        await asyncio.sleep(0.01)
        # Then neither is granted yet, and a third waiter is refused at once
        assert granted == []
        with pytest.raises(_Abort, match=r"waiting to send their message \(limit 2\)"):
            await budget.take(1, 5)
        # and when the 6 come back, both are granted in order
        budget.give(6)
        await asyncio.gather(big, small)
        assert granted == ["big", "small"]
        assert budget.free == 1
        # A wait that times out is refused and leaves no waiter behind
        with pytest.raises(_Abort, match=r"no room for the request message within 0\.01 s"):
            await budget.take(5, 0.01)
        # and a cancelled waiter takes nothing
        task = asyncio.create_task(budget.take(5, 5))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        budget.give(9)
        assert (budget.free, list(budget._waiting)) == (10, [])

    asyncio.run(scenario())


def test_too_many_or_repeated_inputs_are_refused_before_any_is_converted(
    served: tuple[InProcess, Any],
) -> None:
    srv, stub = served
    model = srv.app.model
    # Given requests whose first input could not be converted (FP16 in typed contents), with
    # more inputs than the model's features plus the id, or with a name twice
    too_many = pb.ModelInferRequest(model_name=MODEL_NAME)
    for i in range(len(FEATURES) + 2):
        too_many.inputs.add(name=f"in{i}", datatype="FP16", shape=[1])
    repeated = pb.ModelInferRequest(model_name=MODEL_NAME)
    for _ in range(2):
        repeated.inputs.add(name="a", datatype="FP16", shape=[1])
    # When they are decoded / Then the count or the name is refused, not the conversion
    with pytest.raises(RequestError, match=r"32 inputs; .* at most 31"):
        request_doc(too_many, model)
    with pytest.raises(RequestError, match="input 'a' appears twice"):
        request_doc(repeated, model)
    # and over gRPC the status says so
    err = _error(lambda: stub.ModelInfer(repeated, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "appears twice" in err.details()
    # and 100,000 inputs named the same are refused at once
    flood = pb.ModelInferRequest(model_name=MODEL_NAME)
    for _ in range(100_000):
        flood.inputs.add(name="a", datatype="FP32")
    t0 = time.perf_counter()
    with pytest.raises(RequestError, match="100000 inputs"):
        request_doc(flood, model)
    assert time.perf_counter() - t0 < 0.1


def test_grpc_without_batching_counts_its_call_rows(served: tuple[InProcess, Any]) -> None:
    srv, stub = served
    # Given a server without batching (the served fixture's)
    assert srv.app.batcher is None
    # When one 3-row request is inferred over gRPC
    stub.ModelInfer(features_request(valid_rows(3), raw=True), timeout=10)
    # Then its ONNX Runtime call is observed like REST's
    text = srv.app.metrics.render().decode()
    assert "argosy_inference_call_rows_count 1" in text
    assert "argosy_inference_call_rows_sum 3" in text


def test_an_rpc_cancelled_while_waiting_for_its_batch_logs_no_error(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a server whose batches wait 300 ms
    srv = start_in_process(make_app(model_dir, batching=Batching(max_wait_us=300_000)), grpc=True)
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}")
    try:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        # When an RPC's deadline passes while it waits for its batch
        with caplog.at_level(logging.ERROR):
            err = _error(
                lambda: stub.ModelInfer(features_request(valid_rows(1), True), timeout=0.05)
            )
            time.sleep(0.5)  # the batch is scored and answers the cancelled RPC
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Then nothing is logged as an error, and the next request is answered
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert len(scores(stub.ModelInfer(features_request(valid_rows(1), True), timeout=5))) == 1
    finally:
        channel.close()
        stop_in_process(srv)


def test_infer_rpcs_waiting_for_a_batch_are_bounded(model_dir: Path) -> None:
    # Given a servicer whose infer path already has its limit of RPCs waiting for a batch
    app = make_app(model_dir, batching=Batching(), max_connections=2)
    servicer = InferenceServicer(app)
    servicer.waiting = 2
    # When one more infer RPC wants to wait / Then it is refused
    with pytest.raises(_Abort, match=r"waiting for a batch \(limit 2\)") as info:
        asyncio.run(servicer._batched(None, valid_rows(1)))  # type: ignore[arg-type]
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.http == 503  # overload, counted as REST's connection cap is


def test_grpc_connections_over_the_cap_are_refused_and_the_rest_keep_serving(
    model_dir: Path,
) -> None:
    # Given a server that takes at most 2 connections (REST's cap, applied to gRPC too)
    srv = start_in_process(make_app(model_dir, max_connections=2), grpc=True)
    own = [("grpc.use_local_subchannel_pool", 1)]  # a connection each, not one shared
    target = f"127.0.0.1:{srv.server.grpc_port}"
    channels = [grpc.insecure_channel(target, options=own) for _ in range(3)]
    try:
        stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in channels]
        # When two connections are open and serving
        for stub in stubs[:2]:
            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        # Then a third gets no service
        err = _error(lambda: stubs[2].ServerLive(pb.ServerLiveRequest(), timeout=3))
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        # and the two already open still score requests
        for stub in stubs[:2]:
            assert len(scores(stub.ModelInfer(features_request(valid_rows(1), raw=True)))) == 1
    finally:
        for channel in channels:
            channel.close()
        stop_in_process(srv)


def test_calls_past_the_stream_cap_queue_on_the_client_and_all_succeed(model_dir: Path) -> None:
    # Given a server whose connections take 8 streams at a time (the cap is --max-connections)
    srv = start_in_process(make_app(model_dir, max_connections=8), grpc=True)
    n = 300
    rows = valid_rows(n)

    async def burst() -> list[Any]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            await stub.ServerLive(pb.ServerLiveRequest(), timeout=10)  # settings exchanged
            # When one connection sends 300 calls at once
            calls = [
                stub.ModelInfer(features_request(rows[i : i + 1], raw=True, id=f"c{i}"), timeout=30)
                for i in range(n)
            ]
            return await asyncio.gather(*calls, return_exceptions=True)

    try:
        answers = asyncio.run(burst())
        # Then every call is answered with its own row's score: the client queued the calls
        # past the cap (streams refused by the server would fail as UNAVAILABLE)
        errors = [a for a in answers if isinstance(a, BaseException)]
        assert not errors, errors[:3]
        assert [a.id for a in answers] == [f"c{i}" for i in range(n)]
        expected = scores(_in_one_call(srv, rows))
        assert np.array_equal(np.concatenate([scores(a) for a in answers]), expected)
        text = srv.client().request("GET", "/metrics")[2].decode()
        assert (
            f'argosy_requests_total{{endpoint="infer",code="200",protocol="grpc"}} {n + 1}' in text
        )
    finally:
        stop_in_process(srv)


def _in_one_call(srv: InProcess, rows: np.ndarray) -> Any:
    """The rows scored in one ModelInfer call (the reference for per-row calls)."""
    with grpc.insecure_channel(f"127.0.0.1:{srv.server.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelInfer(features_request(rows, raw=True), timeout=10)


def test_a_call_that_ends_just_before_its_abort_ends_quietly_as_cancelled(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a refused call whose client leaves between the check and the abort: gRPC's abort
    # then raises its (non-public) ExecuteBatchError, which it logs as an ERROR when it escapes
    servicer = InferenceServicer(make_app(model_dir))

    class EndedContext:
        def done(self) -> bool:
            return False

        async def abort(self, code: grpc.StatusCode, message: str) -> None:
            raise RuntimeError('Failed "execute_batch": (<grpc._cython.cygrpc.SendStatus...>)')

    def refuse(_: Any) -> Any:
        raise RequestError("bad request")

    # When the call is answered / Then it ends as a cancelled call (which gRPC logs at DEBUG)
    # after being counted once as what it was, and nothing is logged as an error
    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.CancelledError):
        asyncio.run(servicer._rpc("model_ready", bytes, refuse, None, None, EndedContext()))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    text = servicer.app.metrics.render().decode()
    assert 'argosy_requests_total{endpoint="model_ready",code="400",protocol="grpc"} 1' in text
