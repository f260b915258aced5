"""The HTTP/1.1 transport and the V2 routes, on asyncio (uvloop when installed) and httptools.

Why not an ASGI framework: a tree model answers in tens of microseconds, so per-request framework
overhead (scope dicts, middleware, coroutine hops, header objects) would dominate. Here a request is
parsed by httptools' C parser and decoded and validated inside ``data_received``; it is scored
inline, or, with adaptive batching (``Batching``, on by default), together with the requests that
arrived in the same loop iteration in one ONNX Runtime call at the end of it
(``argosy.serving.batching``): no task, no thread hop. A one-row request (``one_row``) is only
parsed there: its batch converts and validates its rows together (``App.assemble``) and decides,
counts and logs them together (``App.scored``). ONNX Runtime runs on the loop's thread with
one intra-op thread; a pod scales out by replicas (KServe's autoscaler), not by threads. The V2
gRPC service (``argosy.serving.grpc_v2``) runs on the same loop through the same ``App``.

Limits (``Limits``): a request's head and body are bounded as they arrive, so no request is
buffered whole before it is refused (414/431 for the head, 413 for the body); a connection
is closed when no request begins within the keep-alive timeout of its last response, or when a
request takes too long to arrive (408); and connections beyond ``max_connections`` get a 503.

Shutdown (SIGTERM or SIGINT): stop accepting connections (and new RPCs) and report not-ready, let
every request already being received finish and be answered (with ``Connection: close``), close
idle keep-alive connections, then flush the prediction log and exit 0; ``grace_s`` bounds the wait.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import json
import logging
import re
import signal
import sys
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools
import numpy as np

from argosy import __version__
from argosy.serving.batching import Batcher
from argosy.serving.metrics import Metrics
from argosy.serving.model import LoadedModel, RequestError
from argosy.serving.predlog import PredictionLogger
from argosy.serving.v2 import (
    BINARY_EXTENSION,
    InferRequest,
    RowRequest,
    encode_infer_response,
    encode_row_responses,
    model_metadata,
    one_row,
    parse_infer_body,
    request_from_doc,
    rows_matrix,
)

log = logging.getLogger(__name__)

JSON = b"application/json"
OCTETS = b"application/octet-stream"  # a JSON header and binary tensor data
TEXT = b"text/plain; version=0.0.4; charset=utf-8"
EXTENSIONS = [BINARY_EXTENSION]
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_SWITCH_INTERVAL_S = 0.001


def _error(status: int, message: str) -> tuple[int, bytes, bytes]:
    return status, json.dumps({"error": message}).encode(), JSON


def _ok(doc: Any) -> tuple[int, bytes, bytes]:
    return 200, json.dumps(doc, separators=(",", ":")).encode(), JSON


def _clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters: an error message never echoes an unbounded path."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# RFC 9110 15.5.6: a 405 lists the methods the target supports.
_ALLOW = {"GET": b"allow: GET, HEAD\r\n", "POST": b"allow: POST\r\n"}


@dataclass
class Limits:
    """Request limits.

    Attributes:
        max_batch: Most rows in one infer request.
        max_body_bytes: Largest request body accepted (checked before it is read when the client
            sends Content-Length, and while streaming otherwise).
        max_head_bytes: Largest request line plus headers (414 when the URL is the most of
            it, else 431); counted as it arrives, so an endless line or header is never held.
        request_timeout_s: Longest a client may take to send one request.
        keepalive_timeout_s: A keep-alive connection with no request begun for this long after
            its last response is closed (bytes between requests, such as CRLFs, do not count).
        max_connections: Most open connections; one more is answered 503 and closed. Each may
            hold one request body (up to ``max_body_bytes``) while it arrives.
    """

    max_batch: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    max_head_bytes: int = 16 * 1024
    request_timeout_s: float = 30.0
    keepalive_timeout_s: float = 60.0
    max_connections: int = 256


@dataclass
class Batching:
    """Adaptive batching settings (``argosy.serving.batching``).

    Attributes:
        enabled: Score concurrent requests together; off scores each request in its own call.
        max_rows: Most rows in one ONNX Runtime call.
        max_wait_us: Longest the first request of a batch waits for others (0: only requests
            that arrived in the same event-loop iteration share a call).
    """

    enabled: bool = True
    max_rows: int = 64
    max_wait_us: int = 0


Response = tuple[int, bytes, bytes, str, bytes]
"""Status, body, content type, the endpoint label for metrics, and extra header lines."""
Reply = Callable[[Response], None]


_ENCODED_SLASH = re.compile(rb"%2[fF]")


def _normal_path(path: bytes) -> bytes:
    """A request target's path as it is routed.

    An absolute-form target (``http://host/path``, which RFC 9112 3.2.2 says a server must
    accept) loses its scheme and authority; percent-encoding is decoded (RFC 3986 2.1: ``%2D``
    is ``-``), as clients that quote a model's name send it, except ``%2F``: an encoded slash
    is not a separator (RFC 3986 2.2), so it stays in its segment and names nothing here.
    """
    if not path.startswith(b"/"):
        scheme, sep, rest = path.partition(b"://")
        if sep and scheme.lower() in (b"http", b"https"):
            slash = rest.find(b"/")
            path = rest[slash:] if slash >= 0 else b"/"
    if b"%" in path:
        parts = _ENCODED_SLASH.split(path)
        path = b"%2F".join(urllib.parse.unquote_to_bytes(part) for part in parts)
    return path


class App:
    """Routes a complete HTTP request to a V2 handler and returns status, body and content type.

    Args:
        model: The loaded model (ready or not).
        metrics: Metric families to update.
        limits: Request limits.
        predlog: Prediction logger, or None to log nothing.
        batching: Adaptive batching settings; None scores every request in its own call.
    """

    def __init__(
        self,
        model: LoadedModel,
        metrics: Metrics,
        limits: Limits,
        predlog: PredictionLogger | None = None,
        batching: Batching | None = None,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.limits = limits
        self.predlog = predlog
        self.batching = batching if batching is not None and batching.enabled else None
        self.batcher: Batcher | None = None  # created on the event loop by start_batching
        self.shutting_down = False
        # Compared in FP32, like the model's output, so a score equal to the threshold decides 1.
        self.threshold = float(np.float32(model.metadata.threshold))
        # Server-assigned request ids: a random per-process prefix and a counter (unique across
        # replicas for log joins, and far cheaper than a uuid per request).
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        if predlog is not None:
            metrics.add_family(
                "argosy_prediction_log_rows_total",
                "counter",
                "Prediction-log rows by outcome (written, dropped when the queue is full, "
                "sampled_out, failed to write).",
                predlog.metric_samples,
            )
            metrics.add_family(
                "argosy_prediction_log_held_rows",
                "gauge",
                "Prediction-log rows in memory (queued or being written).",
                lambda: [((), predlog.held_rows)],
            )
            metrics.add_family(
                "argosy_prediction_log_write_errors_total",
                "counter",
                "Prediction-log writes that failed (the sink raised) or had rows it could not "
                'encode; their rows count as outcome="failed".',
                lambda: [((), predlog.write_errors)],
            )
        name = model.name
        # KServe's ModelReadyResponse needs the name; the body is the same for every probe.
        self._model_ready = _ok({"name": name, "ready": True})[1]
        base = f"/v2/models/{name}"
        # Exact-match fast path for the paths clients actually call.
        self._routes: dict[bytes, tuple[str, str]] = {
            b"/v2/health/live": ("live", "GET"),
            b"/v2/health/ready": ("ready", "GET"),
            b"/v2": ("server_metadata", "GET"),
            b"/v2/": ("server_metadata", "GET"),
            b"/metrics": ("metrics", "GET"),
            f"{base}/infer".encode(): ("infer", "POST"),
            f"{base}/ready".encode(): ("model_ready", "GET"),
            base.encode(): ("model_metadata", "GET"),
        }
        if model.version:
            vbase = f"{base}/versions/{model.version}"
            self._routes[f"{vbase}/infer".encode()] = ("infer", "POST")
            self._routes[f"{vbase}/ready".encode()] = ("model_ready", "GET")
            self._routes[vbase.encode()] = ("model_metadata", "GET")

    @property
    def ready(self) -> bool:
        """Ready to serve: model loaded and verified, and not shutting down."""
        return self.model.ready and not self.shutting_down

    def not_ready_reason(self) -> str:
        """Why the server is not ready ("" when it is)."""
        if self.shutting_down:
            return "server is shutting down"
        return self.model.reason

    def route(self, path: bytes) -> tuple[str, str] | tuple[int, str]:
        """Resolve a path to (endpoint, method), or (status, error) for an unknown path."""
        hit = self._routes.get(path)
        if hit is not None:
            return hit
        normal = _normal_path(path)
        if normal != path:
            hit = self._routes.get(normal)
            if hit is not None:
                return hit
            path = normal
        try:
            parts = path.decode().strip("/").split("/")
        except UnicodeDecodeError:
            return 404, "path is not valid UTF-8"
        if len(parts) >= 3 and parts[0] == "v2" and parts[1] == "models":
            name = parts[2]
            if name != self.model.name:
                return (
                    404,
                    f"unknown model '{_clip(name)}'; this server serves '{self.model.name}'",
                )
            rest = parts[3:]
            if len(rest) >= 2 and rest[0] == "versions":
                if rest[1] != self.model.version:
                    served = self.model.version or "(unversioned)"
                    return 404, f"unknown version '{_clip(rest[1])}' of '{name}'; serving {served}"
                rest = rest[2:]
            if not rest:
                return "model_metadata", "GET"
            if rest == ["ready"]:
                return "model_ready", "GET"
            if rest == ["infer"]:
                return "infer", "POST"
        return 404, f"no such endpoint: {_clip(path.decode(errors='replace'))}"

    def start_batching(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create the batcher on the loop that serves every request (REST and gRPC)."""
        if self.batching is not None and self.model.ready and self.batcher is None:
            self.batcher = Batcher(
                self.predict,
                loop,
                self.batching.max_rows,
                self.batching.max_wait_us,
                self.assemble,
                self.scored,
            )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Score one ONNX Runtime call's matrix (every call, REST or gRPC, batched or not)."""
        self.metrics.call_rows.observe(len(x))
        return self.model.predict(x)

    def handle(
        self,
        method: bytes,
        path: bytes,
        body: bytes,
        header_length: bytes | None = None,
        reply: Reply | None = None,
    ) -> Response | None:
        """Answer one request.

        Args:
            method: HTTP method.
            path: Request target without the query string.
            body: Request body.
            header_length: The ``Inference-Header-Content-Length`` header's value, if sent.
            reply: Receives the response of an infer request that waits for a batch; without
                it (or without batching) the request is scored inline.

        Returns:
            Status, body, content type, the endpoint label for metrics, and extra header lines
            (a 405's ``Allow``, a binary response's header length); None when ``reply`` will get
            the response.
        """
        resolved = self.route(path)
        if isinstance(resolved[0], int):
            status, message = resolved
            return (*_error(status, str(message)), "unknown", b"")
        endpoint, allowed = resolved
        if method.decode() != allowed and not (method == b"HEAD" and allowed == "GET"):
            error = _error(405, f"{endpoint} expects {allowed}, got {method.decode()}")
            return (*error, endpoint, _ALLOW[allowed])
        try:
            if endpoint == "infer":
                return self.infer(body, header_length, reply)
            if endpoint == "live":
                return (*_ok({"live": True}), endpoint, b"")
            if endpoint in ("ready", "model_ready"):
                if self.ready:
                    if endpoint == "model_ready":
                        return 200, self._model_ready, JSON, endpoint, b""
                    return (*_ok({"ready": True}), endpoint, b"")
                # V2: "a 4xx status code indicates false"; the body says why.
                doc: dict[str, Any] = {"name": self.model.name} if endpoint == "model_ready" else {}
                doc.update(ready=False, error=f"not ready: {self.not_ready_reason()}")
                return 400, json.dumps(doc).encode(), JSON, endpoint, b""
            if endpoint == "server_metadata":
                return (
                    *_ok({"name": "argosy", "version": __version__, "extensions": EXTENSIONS}),
                    endpoint,
                    b"",
                )
            if endpoint == "model_metadata":
                return (*_ok(model_metadata(self.model)), endpoint, b"")
            return 200, self.metrics.render(), TEXT, endpoint, b""
        except RequestError as exc:
            return (*_error(exc.status, exc.message), endpoint, b"")
        except Exception as exc:  # a bug must cost one request, not the server
            log.exception("internal error on %s", endpoint)
            return (*_error(500, f"internal error: {type(exc).__name__}"), endpoint, b"")

    def infer(
        self, body: bytes, header_length: bytes | None = None, reply: Reply | None = None
    ) -> Response | None:
        """The V2 infer handler: decode and validate, then score inline or in a batch.

        Raises:
            RequestError: The request is malformed or violates the feature contract (raised
                here, except for a one-row request's values, which its batch checks).
        """
        if not self.model.ready:  # while draining, requests already received are still served
            return (*_error(503, f"model not ready: {self.model.reason}"), "infer", b"")
        hlen = None
        if header_length is not None:
            # Digits only: int() would also take a sign, spaces and underscores ("1_1").
            digits = header_length.isdigit()
            value = header_length.lstrip(b"0") or b"0"  # int() refuses past 4,300 digits
            if digits and len(value) > 20:  # past any body (2**64 bytes)
                raise RequestError(
                    f"{BINARY_EXTENSION}: Inference-Header-Content-Length of "
                    f"{len(header_length)} digits is past the body of {len(body)} bytes"
                )
            hlen = int(value) if digits else -1
            if hlen < 0:
                raise RequestError(
                    f"{BINARY_EXTENSION}: Inference-Header-Content-Length must be a "
                    f"non-negative integer, got {_clip(header_length.decode(errors='replace'))!r}"
                )
        doc = parse_infer_body(body, hlen)
        batcher = self.batcher
        if reply is not None and batcher is not None:
            values = one_row(doc, self.model)
            if values is not None:  # the online case: checked with its batch (assemble)
                row = RowRequest(doc, values)
                batcher.submit(row, functools.partial(self._reply_later, row, reply))
                return None
        req = self.prepare(request_from_doc(doc, self.model, self.limits.max_batch))
        if reply is None or batcher is None:
            return self._rest_answer(req, self.predict(req.x))
        batcher.submit(req.x, functools.partial(self._reply_later, req, reply))
        return None

    def assemble(self, parts: Sequence[Any]) -> np.ndarray:
        """The batcher's ``assemble``: one validated matrix for a batch's parts, in order.

        A part is a validated matrix (a request decoded on its own, REST or gRPC) or a
        ``RowRequest``. The batch's rows are converted in one ``rows_matrix`` call and validated
        in one ``LoadedModel.validate`` call; when that refuses, the batcher asks again part by
        part, and a ``RowRequest`` that those calls refuse alone is decoded as every other
        request is, so it gets the error message it would get unbatched.

        Raises:
            RequestError: Some row is not what the model accepts.
        """
        if len(parts) == 1:
            part = parts[0]
            if type(part) is not RowRequest:
                return part
            try:  # a batch of one (an idle server): the same two calls
                part.x = rows_matrix([part.values])
                self.model.validate(part.x)
            except RequestError:  # decoded as every other request is: its exact error
                part.x = self.prepare(
                    request_from_doc(part.doc, self.model, self.limits.max_batch)
                ).x
            return part.x
        rows = [p for p in parts if type(p) is RowRequest]
        if not rows:
            return np.concatenate(parts)
        x = rows_matrix([r.values for r in rows])
        self.model.validate(x)
        for i, r in enumerate(rows):
            r.x = x[i : i + 1]
        if len(rows) == len(parts):
            return x
        return np.concatenate([p.x if type(p) is RowRequest else p for p in parts])

    def scored(
        self, parts: Sequence[Any], x: np.ndarray, scores: np.ndarray
    ) -> list[Response] | None:
        """The batcher's ``scored``: finish a batch of one-row requests at once.

        Only a batch of ``RowRequest`` s, the online case under load: it is decided, counted and
        logged in one pass (one prediction-log entry) and its responses are encoded together;
        the batcher hands each request its response. In any other batch (None) each request is
        finished in its own reply (``complete``), with the same ids, decisions, counts, log rows
        and bytes.
        """
        for part in parts:
            if type(part) is not RowRequest:
                return None
        decisions = (scores >= self.threshold).astype(np.int8)
        ids = [p.id or f"{self._id_prefix}-{next(self._ids)}" for p in parts]
        if self.predlog is not None:
            self.predlog.submit_rows(ids, x, scores, decisions)
        self.metrics.batch_size.observe_times(1, len(parts))
        self.metrics.scores.observe_many(scores)
        return [
            (200, body, JSON, "infer", b"")
            for body in encode_row_responses(self.model, ids, scores, decisions)
        ]

    def _reply_later(self, req: InferRequest | RowRequest, reply: Reply, result: Any) -> None:
        if type(result) is tuple:  # the response ``scored`` made with the request's batch
            reply(result)
            return
        try:
            response = self._rest_answer(req, result)
        except Exception as exc:  # a bug must cost one request, not the batch
            log.exception("internal error on infer")
            response = (*_error(500, f"internal error: {type(exc).__name__}"), "infer", b"")
        reply(response)

    def prepare(self, req: InferRequest) -> InferRequest:
        """Check a decoded request against the feature contract (REST and gRPC alike)."""
        self.model.validate(req.x)
        return req

    def complete(
        self, req: InferRequest | RowRequest, scores: np.ndarray
    ) -> tuple[str, np.ndarray]:
        """Decide, count and log one scored request; return its id and decisions."""
        n = len(scores)
        metrics = self.metrics
        if n == 1:  # the common online case: Python scalars beat numpy calls on 1-element arrays
            score = float(scores[0])
            decisions = np.array([score >= self.threshold], dtype=np.int8)
            metrics.batch_size.observe(1)
            metrics.scores.observe(score)
        else:
            decisions = (scores >= self.threshold).astype(np.int8)
            metrics.batch_size.observe(n)
            metrics.scores.observe_many(scores)
        request_id = req.id or f"{self._id_prefix}-{next(self._ids)}"
        if self.predlog is not None:
            self.predlog.submit(request_id, req.row_ids, req.x, scores, decisions)
        return request_id, decisions

    def _rest_answer(
        self, req: InferRequest | RowRequest, scores: np.ndarray | BaseException
    ) -> Response:
        if isinstance(scores, RequestError):  # refused with its batch (assemble)
            return (*_error(scores.status, scores.message), "infer", b"")
        if isinstance(scores, BaseException):
            return (*_error(500, f"internal error: {type(scores).__name__}"), "infer", b"")
        request_id, decisions = self.complete(req, scores)
        out, header_length = encode_infer_response(
            self.model, request_id, req.outputs, scores, decisions, req.binary
        )
        if header_length is None:
            return 200, out, JSON, "infer", b""
        return 200, out, OCTETS, "infer", b"inference-header-content-length: %d\r\n" % header_length


class _Slot:
    """A request received on a connection and not yet answered (responses go out in order)."""

    __slots__ = ("head", "keep_alive", "response", "t0")

    def __init__(self, t0: float, keep_alive: bool, head: bool) -> None:
        self.t0 = t0
        self.keep_alive = keep_alive
        self.head = head
        self.response: Response | None = None


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: httptools parser callbacks answer each request.

    Most requests are answered inline; an infer request may wait for its batch. Responses are
    written in request order (HTTP/1.1 pipelining): each received request takes a ``_Slot``, and
    slots are written from the oldest as soon as it has its response.

    The request head (line and headers) is bounded as it arrives: httptools hands a header over
    only once it is complete, so ``data_received`` counts the bytes of chunks that end inside an
    unfinished head, and ``on_headers_complete`` checks the exact size of a finished one.
    """

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.app = server.app
        self.limits = server.app.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.body_len = 0
        self.busy = False  # a request is being received
        self.slots: deque[_Slot] = deque()  # received, not yet answered, oldest first
        self.header_length: bytes | None = None  # Inference-Header-Content-Length
        self.closing = False
        self.started = 0.0
        self.last_active = time.monotonic()  # when the last response went out: idle since
        self.in_head = False  # between a request's first byte and the end of its headers
        self.began = False  # a request began during the current data_received
        self.head_streamed = 0  # bytes of chunks that ended inside this request's head
        self.head_fields = 0  # bytes of the header names and values httptools handed over
        self.chunk_body = 0  # body bytes in this chunk since the last end of headers
        self.chunk_open = False  # a chunk's size line was read and neither its data nor its end
        self.chunk_progress = False  # data or the end of a chunk came in this chunk of bytes
        self.trailer_streamed = 0  # bytes of whole chunks that went into a chunked trailer
        self.expect_continue = False  # a 100 Continue is owed once the replies ahead are out
        self.framing = b""  # the request's Content-Length and Transfer-Encoding header lines
        # A request that offered a protocol upgrade, whose body is still to be read: its method
        # and keep-alive (``_feed``).
        self.upgrade_offer: tuple[bytes, bool] | None = None

    # asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        connections = self.server.connections
        if len(connections) >= self.limits.max_connections:
            self.reject(503, f"too many open connections (limit {self.limits.max_connections})")
            return
        connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.app.metrics.inflight -= int(self.busy) + len(self.slots)
        self.busy = False
        self.slots.clear()  # a batch answering them later writes nothing
        self.closing = True

    @property
    def active(self) -> bool:
        """A request is being received or waits for its response."""
        return self.busy or bool(self.slots)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        # The idle timer is not touched here: bytes that begin no request (a CRLF every few
        # seconds) must not keep a connection open; on_message_begin marks the connection busy.
        self.began = False
        self.chunk_body = 0
        in_chunk = self.chunk_open
        self.chunk_progress = False
        try:
            self._feed(data)
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed HTTP request: {exc}")
        if self.closing:
            return
        if self.in_head:
            self._count_head(data)
        elif in_chunk and self.chunk_open and not self.chunk_progress:
            # A size line was read before these bytes and none of them was data or ended the
            # chunk: they are the last chunk's trailer, which httptools holds until each field
            # ends (the bytes of the chunk the trailer began in are not counted: less than one
            # chunk short).
            self.trailer_streamed += len(data)
            if self.trailer_streamed > self.limits.max_head_bytes:
                self._refuse_head(len(self.url) + self.head_fields + self.trailer_streamed)

    def _feed(self, data: bytes) -> None:
        """Parse ``data``; an offer to upgrade the protocol is ignored (RFC 9110 7.8).

        httptools ends a request that offers an upgrade (``Connection: upgrade`` with
        ``Upgrade: h2c``, as ``curl --http2`` sends) after its head, as if it had no body, and
        stops where the new protocol would begin. The request is not answered then
        (``on_message_complete``): a fresh parser reads on from there, behind a head that
        gives only the request's framing, so its body and the requests after it are read as
        HTTP/1.1 and the request is answered once, with its body. CONNECT is answered (404)
        and the connection closed: what follows it is a tunnel's bytes.
        """
        while True:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as exc:
                if self.closing or self.upgrade_offer is None:
                    return
                framing = self.framing or b"content-length: 0\r\n"
                data = b"POST / HTTP/1.1\r\n%s\r\n%s" % (framing, data[exc.args[0] :])
                self.parser = httptools.HttpRequestParser(self)

    def _count_head(self, data: bytes) -> None:
        """Add this chunk's share of an unfinished head; refuse the request past the limit.

        A head that began in an earlier chunk owns all of this one. One that began here starts
        after the previous request: after its blank line and the body bytes that followed it (an
        estimate that can only fall short, by less than one chunk, for a chunked body).
        """
        if self.began:
            end = data.rfind(b"\r\n\r\n")
            start = 0 if end < 0 else end + 4
            self.head_streamed += max(0, len(data) - start - self.chunk_body)
        else:
            self.head_streamed += len(data)
        if self.head_streamed > self.limits.max_head_bytes:
            self._refuse_head(self.head_streamed)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # httptools callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.closing:  # the parser goes on through a refused chunk: its requests are not read
            return
        if self.upgrade_offer is not None:  # the framing head ``_feed`` put before its body
            self.in_head = True
            self.head_fields = 0
            return
        self.framing = b""
        self.url = b""
        self.body = []
        self.body_len = 0
        self.header_length = None
        self.busy = True
        self.started = time.monotonic()
        self.in_head = self.began = True
        self.head_streamed = self.head_fields = self.trailer_streamed = 0
        self.chunk_open = False
        self.app.metrics.inflight += 1

    def on_url(self, url: bytes) -> None:
        if self.upgrade_offer is not None:  # ``_feed``'s framing head: the request has its URL
            return
        self.url += url
        if len(self.url) > self.limits.max_head_bytes and not self.closing:
            self.reject(
                414, f"request target exceeds the limit of {self.limits.max_head_bytes} bytes"
            )

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.chunk_body = 0
        head = len(self.url) + self.head_fields
        if head > self.limits.max_head_bytes:
            self._refuse_head(head)
        # Invited only once the whole head is read and the request is one this server would
        # take: a 413, 431, 404 or 405 is answered without asking for the body first.
        if self.expect_continue and not self.closing:
            path = self.url.split(b"?", 1)[0]
            if self.app.route(path) == ("infer", "POST") and self.parser.get_method() == b"POST":
                if not self.slots:
                    self._continue()
            else:
                self.expect_continue = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_fields += len(name) + len(value) + 4  # ": " and CRLF
        if not self.in_head:  # a chunked body's trailer: bounded like the head, never applied
            if len(self.url) + self.head_fields > self.limits.max_head_bytes:
                self._refuse_head(len(self.url) + self.head_fields)
            return
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self.framing += b"%s: %s\r\n" % (lower, value)  # each, as sent: parsed alike
        if lower == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = 0
            if length > self.limits.max_body_bytes:
                self.reject(
                    413,
                    f"request body of {length} bytes exceeds the limit of "
                    f"{self.limits.max_body_bytes}",
                )
        elif lower == b"inference-header-content-length":
            self.header_length = value
        elif lower == b"expect" and value.lower() == b"100-continue" and not self.closing:
            # Sent from on_headers_complete; an interim response must not overtake a reply
            # still owed to an earlier request: with one pending, ``_fill`` sends it once the
            # replies ahead have gone out. An HTTP/1.0 client gets no 1xx (RFC 9110 10.1.1).
            self.expect_continue = self.parser.get_http_version() != "1.0"

    def _continue(self) -> None:
        self.expect_continue = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_chunk_header(self) -> None:
        self.chunk_open = True

    def on_chunk_complete(self) -> None:
        self.chunk_open = False
        self.chunk_progress = True

    def on_body(self, body: bytes) -> None:
        self.chunk_open = False
        self.chunk_progress = True
        if self.closing:
            return
        self.chunk_body += len(body)
        self.body_len += len(body)
        if self.body_len > self.limits.max_body_bytes:
            self.reject(
                413, f"request body exceeds the limit of {self.limits.max_body_bytes} bytes"
            )
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        t0 = time.perf_counter()
        offer = self.upgrade_offer
        if offer is not None:  # read on past ``_feed``'s framing head: the offer's own request
            self.upgrade_offer = None
            method, keep_alive = offer
            # Not kept alive (``Connection: close``, HTTP/1.0): nothing after it is read, as
            # httptools refuses bytes after any other such request (its head said neither).
            self.closing = not keep_alive
        else:
            method = self.parser.get_method()
            keep_alive = self.parser.should_keep_alive()
            if self.parser.should_upgrade():
                if method != b"CONNECT":  # answered once its body is read (``_feed``)
                    self.upgrade_offer = (method, keep_alive)
                    return
                keep_alive = False
                self.closing = True  # what follows CONNECT is a tunnel's bytes: never parsed
        keep_alive = keep_alive and not self.app.shutting_down
        path = self.url.split(b"?", 1)[0]
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.busy = False
        self.expect_continue = False  # the body arrived without it
        slot = _Slot(t0, keep_alive, method == b"HEAD")
        self.slots.append(slot)
        response = self.app.handle(
            method, path, body, self.header_length, functools.partial(self._fill, slot)
        )
        if response is not None:
            self._fill(slot, response)

    def _fill(self, slot: _Slot, response: Response) -> None:
        """Give ``slot`` its response; write every answered slot at the head of the queue."""
        slot.response = response
        slots = self.slots
        metrics = self.app.metrics
        while slots and slots[0].response is not None:
            done = slots.popleft()
            status, payload, ctype, endpoint, headers = done.response  # type: ignore[misc]
            metrics.inflight -= 1
            self.respond(status, payload, ctype, done.keep_alive, done.head, headers)
            metrics.observe_request(endpoint, status, time.perf_counter() - done.t0)
        if (
            self.expect_continue
            and not slots
            and self.busy
            and not self.in_head
            and not self.closing
        ):
            self._continue()

    # helpers ----------------------------------------------------------------------------------
    def respond(
        self,
        status: int,
        payload: bytes,
        ctype: bytes,
        keep_alive: bool,
        head: bool = False,
        headers: bytes = b"",
    ) -> None:
        """Write one response; close the connection after it unless it is kept alive.

        ``headers`` are extra header lines, each ending in CRLF.
        """
        self.last_active = time.monotonic()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        reason = _REASONS.get(status, b"")
        conn = b"" if keep_alive else b"connection: close\r\n"
        if headers:
            conn = headers + conn
        transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, reason, ctype, len(payload), conn, b"" if head else payload)
        )
        if not keep_alive:
            self.closing = True
            transport.close()

    def _refuse_head(self, size: int) -> None:
        """Refuse a request head over the limit: 414 when the target is most of it, else 431."""
        limit = self.limits.max_head_bytes
        if 2 * len(self.url) > size:
            self.reject(414, f"request target exceeds the limit of {limit} bytes")
        else:
            self.reject(431, f"request line and headers exceed the limit of {limit} bytes")

    def reject(self, status: int, message: str) -> None:
        """Answer an error and close: used when the request cannot be read to its end.

        While earlier requests on the connection still wait for their batch, the error takes
        the next slot (closing the connection once written) and nothing more is parsed, so
        their replies go out first, in request order.
        """
        if self.closing:
            return
        busy, self.busy = self.busy, False
        _, payload, ctype = _error(status, message)
        if self.slots:
            if not busy:  # a slot counts as one request in flight until it is written
                self.app.metrics.inflight += 1
            self.closing = True
            slot = _Slot(time.perf_counter(), keep_alive=False, head=False)
            self.slots.append(slot)
            self._fill(slot, (status, payload, ctype, "http", b""))
            return
        if busy:  # the request being received is answered here
            self.app.metrics.inflight -= 1
        self.respond(status, payload, ctype, keep_alive=False)
        self.app.metrics.observe_request("http", status, 0.0)

    def close_if_idle(self) -> bool:
        """Close the connection unless a request is being received or answered; True if closed."""
        if self.busy or self.slots:
            return False
        self.closing = True
        if self.transport is not None:
            self.transport.close()
        return True


class ModelServer:
    """Owns the listening socket, the connections and the shutdown sequence.

    Args:
        app: The request handler.
        host: Address to bind.
        port: Port to bind (0 picks a free one; see ``port`` after ``start``).
        grace_s: Longest to wait for in-flight requests at shutdown.
        grpc_port: Port of the V2 gRPC service on the same loop (0 picks a free one; see
            ``grpc_port`` after ``start``); None serves REST only.
    """

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        grace_s: float = 20.0,
        grpc_port: int | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.grace_s = grace_s
        self.grpc_port = grpc_port
        self._grpc: Any = None  # argosy.serving.grpc_v2.GrpcServer, imported only when used
        self.connections: set[_Conn] = set()
        self._server: asyncio.base_events.Server | None = None
        self._stop: asyncio.Event | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = await self.loop.create_server(
            lambda: _Conn(self), self.host, self.port, reuse_address=True, backlog=2048
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.app.start_batching(self.loop)
        if self.grpc_port is not None:
            from argosy.serving.grpc_v2 import GrpcServer  # grpc loads only when it is served

            self._grpc = GrpcServer(self.app, self.host, self.grpc_port)
            await self._grpc.start()
            self.grpc_port = self._grpc.port
        self._sweeper = self.loop.create_task(self._sweep())
        self.app.metrics.ready = self.app.ready

    def request_stop(self) -> None:
        """Begin shutdown; safe to call from a signal handler or another thread."""
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    async def run_until_stopped(self) -> None:
        """Serve until ``request_stop``; then drain in-flight requests and close."""
        assert self._stop is not None  # noqa: S101  (start() must run first)
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop listening, answer in-flight requests, close every connection."""
        app = self.app
        app.shutting_down = True
        app.metrics.ready = False
        busy = sum(c.active for c in self.connections)
        log.info(
            "shutting down: %d connection(s), %d request(s) in flight", len(self.connections), busy
        )
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + self.grace_s
        if self._grpc is not None:  # refuses new RPCs at once, answers those in flight
            grpc_stopped = asyncio.get_running_loop().create_task(self._grpc.stop(self.grace_s))
        while True:
            for conn in list(self.connections):
                conn.close_if_idle()
            if not any(c.active for c in self.connections) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort() if conn.active else conn.transport.close()
        if self._grpc is not None:
            await grpc_stopped
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.sleep(0)  # let transports run connection_lost

    async def _sweep(self) -> None:
        """Close connections that stall mid-request or sit idle too long (slowloris guard)."""
        limits = self.app.limits
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.busy and now - conn.started > limits.request_timeout_s:
                    conn.reject(408, "request not received in time")
                elif not conn.active and now - conn.last_active > limits.keepalive_timeout_s:
                    conn.close_if_idle()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a uvloop event loop when installed (it is in ``argosy[serve]``), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover  (uvloop is a dependency of the serve extra)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(server: ModelServer, predlog: PredictionLogger | None, flush_timeout_s: float) -> None:
    """Run ``server`` on a fresh event loop until SIGTERM/SIGINT, then flush the log.

    Args:
        server: The server to run.
        predlog: The prediction logger to flush after the last request, if any.
        flush_timeout_s: Longest to wait for the final prediction-log write.
    """
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(server.start())
        # Everything loaded so far (modules, the model, the app) lives as long as the process:
        # moved out of the collector's generations, a full collection no longer walks it
        # (about 8 ms for the ~45,000 objects at start, a periodic stall of the event loop).
        gc.collect()
        gc.freeze()
        # The prediction-log writer thread runs Python while it builds a batch; the loop's
        # thread waits for the GIL up to the switch interval each time it wants it back
        # (5 ms by default; at 1 ms the loop's wake-up p99 measured about half).
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_stop)
        if server.grpc_port is not None:
            log.info("listening on grpc://%s:%d (V2 gRPC)", server.host, server.grpc_port)
        log.info(
            "listening on http://%s:%d (model %s, %s)",
            server.host,
            server.port,
            server.app.model.name,
            "ready" if server.app.ready else f"NOT READY: {server.app.model.reason}",
        )
        loop.run_until_complete(server.run_until_stopped())
    finally:
        if predlog is not None:
            flushed = predlog.close(flush_timeout_s)
            log.info(
                "prediction log %s: %d rows written, %d dropped, %d failed",
                "flushed" if flushed else "NOT fully flushed (timeout)",
                predlog.written_rows,
                predlog.dropped_rows,
                predlog.failed_rows,
            )
        loop.close()
