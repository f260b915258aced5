"""Adaptive batching: requests that arrive together share one ONNX Runtime call, each its answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from argosy.serving.batching import Batcher
from argosy.serving.server import Batching

from .conftest import (
    FEATURES,
    InProcess,
    infer_body,
    make_app,
    raw_request,
    read_response,
    recv_some,
    start_in_process,
    stop_in_process,
    valid_rows,
)

INFER = "/v2/models/example-model/infer"


class Recorder:
    """A predict function that records the matrices it scored (row sums as scores)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Record the call; fail when asked to."""
        self.calls.append(len(x))
        if self.fail:
            raise RuntimeError("scoring failed")
        return x.sum(axis=1)


def run_batcher(
    parts: list[np.ndarray], predict: Recorder, spread: bool = False, **settings: Any
) -> list[Any]:
    """Submit ``parts`` on a fresh loop (all in one callback, or one per loop iteration)."""
    loop = asyncio.new_event_loop()
    results: list[Any] = [None] * len(parts)
    batcher = Batcher(predict, loop, **settings)

    def submit(i: int) -> None:
        batcher.submit(parts[i], lambda r: results.__setitem__(i, r))
        if spread and i + 1 < len(parts):
            loop.call_soon(submit, i + 1)

    def all_at_once() -> None:
        for i in range(len(parts)):
            batcher.submit(parts[i], lambda r, i=i: results.__setitem__(i, r))

    if spread:
        loop.call_soon(submit, 0)
    else:
        loop.call_soon(all_at_once)
    loop.run_until_complete(asyncio.sleep(0.05))
    loop.close()
    return results


def test_requests_submitted_together_share_one_call() -> None:
    # Given three requests of 1, 2 and 3 rows submitted in one loop iteration
    parts = [np.full((n, 2), n, dtype=np.float32) for n in (1, 2, 3)]
    predict = Recorder()
    # When the loop runs
    results = run_batcher(parts, predict)
    # Then one call scored all six rows and each request got its own rows' scores
    assert predict.calls == [6]
    assert [r.tolist() for r in results] == [[2.0], [4.0, 4.0], [6.0, 6.0, 6.0]]


def test_max_rows_splits_batches_and_a_large_request_goes_alone() -> None:
    parts = [np.ones((n, 1), dtype=np.float32) for n in (3, 3, 9, 1)]
    predict = Recorder()
    run_batcher(parts, predict, max_rows=4)
    # 3 (+3 would exceed 4), 3, then 9 alone (more than max_rows), then 1
    assert predict.calls == [3, 3, 9, 1]


def test_max_wait_gathers_requests_of_later_loop_iterations() -> None:
    parts = [np.ones((1, 1), dtype=np.float32) for _ in range(4)]
    # Without a wait, each loop iteration's request is scored on its own
    alone = Recorder()
    run_batcher(parts, alone, spread=True, max_wait_us=0)
    assert alone.calls == [1, 1, 1, 1]
    # With a wait, requests that arrive within it share the call
    waited = Recorder()
    run_batcher(parts, waited, spread=True, max_wait_us=20_000)
    assert waited.calls == [4]


def test_a_failing_call_fails_its_requests_with_the_error() -> None:
    parts = [np.ones((1, 1), dtype=np.float32) for _ in range(2)]
    predict = Recorder(fail=True)
    results = run_batcher(parts, predict)
    assert all(isinstance(r, RuntimeError) for r in results)
    # each request failed in a call of its own: no exception object is shared
    assert predict.calls == [2, 1, 1]
    assert results[0] is not results[1]


class FailsOnNegative(Recorder):
    """Fails a call whose matrix holds a negative value (one request's poisoned rows)."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Record the call; fail when a row is poisoned."""
        self.calls.append(len(x))
        if (x < 0).any():
            raise RuntimeError("scoring failed")
        return x.sum(axis=1)


def test_a_failing_call_is_retried_request_by_request() -> None:
    # Given three requests in one batch, the second of which breaks any call it is part of
    parts = [np.full((n, 2), v, dtype=np.float32) for n, v in ((1, 1), (2, -1), (3, 3))]
    predict = FailsOnNegative()
    # When the batch is scored
    results = run_batcher(parts, predict)
    # Then after the batched call failed each was scored alone: only the poisoned one fails
    assert predict.calls == [6, 1, 2, 3]
    assert results[0].tolist() == [2.0]
    assert isinstance(results[1], RuntimeError)
    assert results[2].tolist() == [6.0, 6.0, 6.0]


def test_a_failing_request_costs_only_its_own_answer_over_http(model_dir: Path) -> None:
    # Given a server whose model fails on a row whose f03 is -50, and three clients, the second
    # of which sends such a row, all arriving while the loop is busy (one batch)
    app = make_app(model_dir, batching=Batching(max_rows=64))
    real = app.model.predict

    def predict(x: np.ndarray) -> np.ndarray:
        if (x[:, FEATURES.index("f03")] == -50).any():
            raise RuntimeError("ONNX Runtime failed")
        return real(x)

    app.model.predict = predict
    srv = start_in_process(app)
    rows = [valid_rows(2, seed=s) for s in (1, 2, 3)]
    rows[1][0, FEATURES.index("f03")] = -50
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in rows]
    try:
        time.sleep(0.1)
        calls = app.batcher.calls
        _block_loop(srv, 0.3)
        for sock, x in zip(socks, rows, strict=True):
            sock.sendall(raw_request(json.dumps(infer_body(x)).encode()))
        answers = [read_response(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
        stop_in_process(srv)
    # Then the poisoned request gets a 500, the others their scores
    assert answers[1] == (500, {"error": "internal error: RuntimeError"})
    for i in (0, 2):
        assert answers[i][0] == 200, answers[i]
        got = np.asarray(answers[i][1]["outputs"][0]["data"], dtype=np.float32)
        assert got.tobytes() == real(rows[i]).tobytes()
    assert app.batcher.calls - calls == 4  # the batch, then each request alone


def test_settings_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="max_rows"):
        Batcher(Recorder(), asyncio.new_event_loop(), max_rows=0)
    # and the command line caps the wait, which spins the event loop
    from argosy.serving.__main__ import build_parser

    assert build_parser().parse_args(["--batch-max-wait-us", "10000"]).batch_max_wait_us == 10_000
    for value in ("10001", "-1", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--batch-max-wait-us", value])
    err = capsys.readouterr().err
    assert "--batch-max-wait-us: must be 0 to 10000 microseconds" in err
    assert "expected microseconds, got 'soon'" in err


def _block_loop(srv: InProcess, seconds: float) -> threading.Event:
    """Keep the server's loop busy for ``seconds`` so requests sent meanwhile arrive together."""
    started = threading.Event()

    def block() -> None:
        started.set()
        time.sleep(seconds)

    assert srv.server.loop is not None
    srv.server.loop.call_soon_threadsafe(block)
    assert started.wait(5)
    return started


@pytest.fixture
def batched(model_dir: Path) -> Any:
    srv = start_in_process(make_app(model_dir, batching=Batching(max_rows=64), max_batch=100))
    yield srv
    stop_in_process(srv)


def test_concurrent_requests_with_bad_ones_among_them_each_get_their_own_answer(
    batched: InProcess,
) -> None:
    srv = batched
    # Given 12 clients, two of which send a bad request (an out-of-range category code, and
    # a body that is not JSON), all arriving while the loop is busy
    rows = [valid_rows(1 + i % 3, seed=100 + i) for i in range(12)]
    bodies = [json.dumps(infer_body(x)).encode() for x in rows]
    bad_code = rows[4].copy()
    bad_code[0, FEATURES.index("f00")] = 99
    bodies[4] = json.dumps(infer_body(bad_code)).encode()
    bodies[7] = b"{not json"
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in bodies]
    try:
        time.sleep(0.1)  # every connection accepted before the loop is blocked
        calls_before = srv.app.batcher.calls
        _block_loop(srv, 0.3)
        for sock, body in zip(socks, bodies, strict=True):
            sock.sendall(raw_request(body))
        answers = [read_response(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    # Then the bad requests get their own 400s
    assert answers[4][0] == 400
    assert "feature 'f00' is categorical" in answers[4][1]["error"]
    assert answers[7][0] == 400
    assert "not valid JSON" in answers[7][1]["error"]
    # and every other request its own scores, equal bit for bit to scoring it alone
    model = srv.app.model
    for i, (status, doc) in enumerate(answers):
        if i in (4, 7):
            continue
        assert status == 200, doc
        alone = model.predict(rows[i])
        got = np.asarray(doc["outputs"][0]["data"], dtype=np.float32)
        assert got.tobytes() == alone.tobytes(), i
    # and the ten good requests shared fewer ONNX Runtime calls than there were requests
    calls = srv.app.batcher.calls - calls_before
    assert 1 <= calls < 10


def test_latency_histogram_includes_the_wait_for_a_batch(model_dir: Path) -> None:
    # Given a server whose batches wait up to 150 ms for more requests
    app = make_app(model_dir, batching=Batching(max_rows=64, max_wait_us=150_000))
    srv = start_in_process(app)
    client = srv.client()
    try:
        # When one request is answered
        status, _ = client.json("POST", INFER, infer_body(valid_rows(1)))
        assert status == 200
        text = client.request("GET", "/metrics")[2].decode()
    finally:
        client.close()
        stop_in_process(srv)
    # Then its recorded latency includes the wait: nothing at or under 100 ms
    bucket = 'argosy_request_duration_seconds_bucket{endpoint="infer",protocol="rest",le="0.1"}'
    assert f"{bucket} 0" in text
    assert "argosy_inference_call_rows_count 1" in text


def test_batching_is_on_by_default_and_off_with_one_flag(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from argosy.serving.__main__ import build_parser, settings

    def batching(*argv: str) -> bool:
        return bool(settings(vars(build_parser().parse_args(list(argv))))["batching"])

    assert batching() is True
    assert batching("--no-batching") is False
    monkeypatch.setenv("ARGOSY_BATCHING", "off")
    assert batching() is False
    assert batching("--batching") is True
    # and a server with batching disabled has no batcher: each request is scored inline
    srv = start_in_process(make_app(model_dir, batching=Batching(enabled=False)))
    try:
        assert srv.app.batcher is None
        status, _ = srv.client().json("POST", INFER, infer_body(valid_rows(1)))
        assert status == 200
    finally:
        stop_in_process(srv)


def test_pipelined_requests_are_answered_in_order(batched: InProcess) -> None:
    # Given three requests pipelined on one connection in one write: an infer (which waits for
    # its batch), a liveness probe (answered at once) and another infer
    srv = batched
    x1, x2 = valid_rows(1, seed=5), valid_rows(2, seed=6)
    live = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n"
    payload = b"".join(
        (raw_request(json.dumps(infer_body(x1)).encode()), live,
         raw_request(json.dumps(infer_body(x2)).encode()))
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(payload)
        # When the responses are read / Then they come back in request order
        buffer = bytearray()
        first, second, third = (read_response(sock, buffer) for _ in range(3))
    assert first[1]["outputs"][0]["shape"] == [1]
    assert second[1] == {"live": True}
    assert third[1]["outputs"][0]["shape"] == [2]


_GARBAGE = b"GARBAGE GARBAGE\r\n\r\n"
_HUGE = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999\r\n\r\n" % INFER.encode()


@pytest.mark.parametrize("enabled", [True, False], ids=["batching", "no-batching"])
@pytest.mark.parametrize(
    ("refused", "status"), [(_GARBAGE, 400), (_HUGE, 413)], ids=["bad-method", "too-large"]
)
def test_a_refused_pipelined_request_is_answered_after_the_one_before_it(
    model_dir: Path, enabled: bool, refused: bytes, status: int
) -> None:
    # Given an infer request (which may wait for its batch) and a request refused as it is
    # parsed, pipelined in one write
    srv = start_in_process(make_app(model_dir, batching=Batching(enabled=enabled)))
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(raw_request(json.dumps(infer_body(valid_rows(1))).encode()) + refused)
            # When the responses are read / Then the infer's 200 comes first, then the refusal
            buffer = bytearray()
            first = read_response(sock, buffer)
            second = read_response(sock, buffer)
            # and then the connection is closed
            assert not buffer
            assert sock.recv(65536) == b""
        assert first[0] == 200, first
        assert first[1]["outputs"][0]["shape"] == [1]
        assert second[0] == status
        # and each is counted once, nothing left in flight
        text = srv.app.metrics.render().decode()
        assert 'argosy_requests_total{endpoint="infer",code="200",protocol="rest"} 1' in text
        assert srv.app.metrics.inflight == 0
    finally:
        stop_in_process(srv)


def test_100_continue_waits_for_the_replies_ahead_of_it(batched: InProcess) -> None:
    # Given an infer request and, pipelined behind it, the head of one that expects 100-continue
    body = json.dumps(infer_body(valid_rows(2))).encode()
    second = (
        b"POST %s HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: %d\r\n\r\n"
        % (INFER.encode(), len(body))
    )
    with socket.create_connection(("127.0.0.1", batched.port), timeout=10) as sock:
        sock.sendall(raw_request(json.dumps(infer_body(valid_rows(1))).encode()) + second)
        # When the responses are read / Then the first request's 200 comes before 100 Continue
        buffer = bytearray()
        first = read_response(sock, buffer)
        assert first[0] == 200
        while b"\r\n\r\n" not in buffer:
            buffer += recv_some(sock)
        assert bytes(buffer).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del buffer[: len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        # and the second request, its body sent on, is answered
        sock.sendall(body)
        status, doc = read_response(sock, buffer)
    assert status == 200
    assert doc["outputs"][0]["shape"] == [2]


def test_a_request_timed_out_behind_a_waiting_one_is_answered_after_it(model_dir: Path) -> None:
    # Given a server whose batches wait 2.2 s, with a 1 s request timeout (the 408 sweep runs
    # every second, so it fires while the first request still waits)
    app = make_app(model_dir, batching=Batching(max_wait_us=2_200_000), request_timeout_s=1.0)
    srv = start_in_process(app)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            # When an infer request is followed by a head that never finishes
            partial = b"POST %s HTTP/1.1\r\nhost: x\r\n" % INFER.encode()
            sock.sendall(raw_request(json.dumps(infer_body(valid_rows(1))).encode()) + partial)
            # Then the infer's 200 comes first, then the 408, then the connection closes
            buffer = bytearray()
            first, second = read_response(sock, buffer), read_response(sock, buffer)
            assert sock.recv(65536) == b""
    finally:
        stop_in_process(srv)
    assert first[0] == 200, first
    assert second == (408, {"error": "request not received in time"})


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (
            b"POST %s HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: 99999999\r\n\r\n" % INFER.encode(),
            413,
        ),
        (
            b"POST /v2/models/nope/infer HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: 10\r\n\r\n",
            404,
        ),
        (
            b"GET %s HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 10\r\n\r\n"
            % INFER.encode(),
            405,
        ),
        (
            b"POST %s HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\nx-pad: %s\r\n"
            b"content-length: 10\r\n\r\n" % (INFER.encode(), b"a" * 17000),
            431,
        ),
    ],
    ids=["too-large", "unknown-model", "wrong-method", "head-too-large"],
)
def test_a_request_that_will_be_refused_gets_no_100_continue(
    batched: InProcess, head: bytes, status: int
) -> None:
    # Given the head of a request that expects 100-continue but that the server will refuse
    with socket.create_connection(("127.0.0.1", batched.port), timeout=10) as sock:
        sock.sendall(head)
        # When the server has had time to answer the head
        buffer = bytearray()
        if status in (404, 405):  # answered once the body is read, which nothing invites
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                buffer += recv_some(sock)
            sock.settimeout(10)
            sock.sendall(b"0123456789")
        # Then the first response is the refusal, with no 100 Continue before it
        got, doc = read_response(sock, buffer)
    assert got == status, doc
    assert "error" in doc


def test_requests_behind_a_refused_one_in_the_same_chunk_leave_nothing_in_flight(
    batched: InProcess,
) -> None:
    # Given a request whose head is over the limit, and five more pipelined behind it
    pad = b"x-pad: " + b"a" * 9000 + b"\r\n"
    live = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", batched.port), timeout=10) as sock:
        sock.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n" + pad + pad + b"\r\n" + live * 5
        )
        # When the server answers / Then the refusal is the only answer and the connection closes
        status, doc = read_response(sock)
        assert status == 431, doc
        assert sock.recv(65536) == b""
    # and no request is left counted in flight
    deadline = time.monotonic() + 5
    while batched.app.metrics.inflight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batched.app.metrics.inflight == 0


def test_a_chunked_body_s_trailer_is_bounded_and_never_taken_as_a_header(
    batched: InProcess,
) -> None:
    # Given a chunked infer request whose trailer claims a binary header length
    body = json.dumps(infer_body(valid_rows(1))).encode()
    head = b"POST %s HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" % INFER.encode()
    chunked = head + b"%x\r\n%s\r\n0\r\n" % (len(body), body)
    with socket.create_connection(("127.0.0.1", batched.port), timeout=10) as sock:
        sock.sendall(chunked + b"inference-header-content-length: 5\r\n\r\n")
        # When it is answered / Then the trailer changed nothing: the JSON body is scored
        status, doc = read_response(sock)
    assert status == 200, doc
    assert doc["outputs"][0]["shape"] == [1]
    # Given trailer fields past the head limit
    with socket.create_connection(("127.0.0.1", batched.port), timeout=10) as sock:
        fields = b"".join(b"x-t%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
        sock.sendall(chunked + fields + b"\r\n")
        # Then the request is refused as a head over the limit would be, and not scored
        status, doc = read_response(sock)
    assert status == 431, doc
    # Given one trailer field whose value never ends, sent 4 KiB at a time
    with socket.create_connection(("127.0.0.1", batched.port), timeout=10) as sock:
        sock.sendall(chunked + b"x-t: ")
        sent = 0
        with contextlib.suppress(ConnectionError):  # the server closes once it has answered
            while sent < 4 * 1024 * 1024 and not select.select([sock], [], [], 0.02)[0]:
                sock.sendall(b"v" * 4096)
                sent += 4096
        # Then it is refused as it arrives, not buffered until the field ends
        status, doc = read_response(sock)
    assert status == 431, doc
    assert sent < 256 * 1024, sent
