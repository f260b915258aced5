"""Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService`` on grpc.aio.

It runs on the REST server's event loop, in the same process, and goes through the same
``App``: ``request_from_doc`` decodes and validates (typed ``contents`` and
``raw_input_contents`` become the same tensors that JSON and binary REST data become), the
``Batcher`` scores (a gRPC request can share an ONNX Runtime call with REST requests),
``App.complete`` decides, counts and logs. Readiness is the app's; metrics count each RPC under
the REST endpoint's name with ``protocol="grpc"`` and the status's HTTP equivalent. The
response carries ``raw_output_contents`` when the request sent ``raw_input_contents`` (what
tritonclient and kserve's client do) or asked for binary outputs (the binary data extension's
``binary_data_output`` or an output's ``binary_data``), typed ``contents`` otherwise.

Each RPC reads its one message itself, under a reservation of memory (``_Budget``): however many
connections and streams a client opens, the messages held at once stay within a fixed number
of bytes, and the health checks and metadata have a reserve of their own. ``ServerLive``,
``ServerReady`` and ``ServerMetadata`` read none (their request is empty).

The repository RPCs are not implemented (gRPC answers ``UNIMPLEMENTED``). The standard health
service (``grpc.health.v1.Health/Check``) answers SERVING when the app is ready (service ``live``:
whenever the process answers), so Kubernetes' ``grpc`` probes work on the gRPC port alone (the
serverless gRPC component, manifests/components/grpc).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from argosy import __version__
from argosy.serving.batching import Batcher
from argosy.serving.model import LoadedModel, RequestError
from argosy.serving.proto import grpc_predict_v2_pb2 as pb
from argosy.serving.server import EXTENSIONS, App
from argosy.serving.v2 import (
    DECISION_OUTPUT,
    MAX_DIMS,
    PROBABILITY_OUTPUT,
    InferRequest,
    model_metadata,
    request_from_doc,
    tensor_from_bytes,
    too_many_dims,
)

log = logging.getLogger(__name__)

# Typed contents field per V2 datatype (FP16 has none: it travels as raw contents only).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_NUMPY = {
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP32": np.float32,
    "FP64": np.float64,
}
_HTTP = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}
_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND}
# Method: (the REST endpoint it counts as, its request message).
_METHODS = {
    "ServerLive": ("live", pb.ServerLiveRequest),
    "ServerReady": ("ready", pb.ServerReadyRequest),
    "ModelReady": ("model_ready", pb.ModelReadyRequest),
    "ServerMetadata": ("server_metadata", pb.ServerMetadataRequest),
    "ModelMetadata": ("model_metadata", pb.ModelMetadataRequest),
    "ModelInfer": ("infer", pb.ModelInferRequest),
}
_FRAMING = 64 * 1024  # room past the body limit for a message's own fields
INFER_MESSAGE_BYTES = 128 * 1024 * 1024
"""Bytes of infer messages read at once: 31 at the default 4 MiB body limit (at least one).

Each message being read may take the largest size allowed, so this bounds what gRPC requests
hold (a 256-stream flood of 4 MB messages raised the peak RSS by 490 to 580 MB, with the
messages' decoded copies). The other side of the bound: 31 streams that never finish their
message hold gRPC inference for the request timeout (REST's equivalent is --max-connections
connections); a smaller ``--max-body-bytes`` lets more be read at once."""
SMALL_RPC_BYTES = 64 * 1024 * 1024
"""Bytes of the small RPCs' messages read at once (health checks, model readiness and metadata):
15 at the default body limit, apart from infer's, so infer traffic never holds them up."""
SMALL_MESSAGE_BYTES = 64 * 1024
"""Largest request of a small RPC (a service name, a model's name and version)."""
SMALL_READ_S = 1.0
"""Longest a small RPC waits for room for its message, and then for the message to arrive."""
_UNREAD = ("ServerLive", "ServerReady", "ServerMetadata")
"""Methods whose request has no fields: answered without reading it, so never held up."""
# grpc.health.v1.HealthCheckResponse{status: SERVING (1) | NOT_SERVING (2)}, encoded by hand:
# one enum field, so the server needs no health-checking package.
_SERVING, _NOT_SERVING = b"\x08\x01", b"\x08\x02"
_LIVE = b"\n\x04live"  # HealthCheckRequest{service: "live"}


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


class _Abort(Exception):
    """Refuse an RPC with ``code``; ``http`` is the status it counts as (overload: 503)."""

    def __init__(self, code: grpc.StatusCode, message: str, http: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http = _HTTP.get(code, 500) if http is None else http


def _contents(tensor: Any, name: str, datatype: str) -> np.ndarray | list[Any]:
    """A tensor's typed ``contents`` as the data ``request_from_doc`` reads.

    The count of values is checked against the shape before any is converted.
    """
    field = _CONTENTS.get(datatype)
    if field is None:
        raise RequestError(
            f"input '{name}': datatype {datatype!r} cannot travel in typed contents"
            + ("; send FP16 as raw_input_contents" if datatype == "FP16" else "")
        )
    values = getattr(tensor.contents, field)
    shape = tensor.shape
    if all(d >= 0 for d in shape) and math.prod(shape) != len(values):
        raise RequestError(
            f"input '{name}': shape {list(shape)} needs {math.prod(shape)} values, "
            f"contents has {len(values)}"
        )
    if datatype == "BYTES":
        try:
            return [bytes(v).decode() for v in values]
        except UnicodeDecodeError:
            raise RequestError(f"input '{name}': a BYTES value is not valid UTF-8") from None
    if datatype == "BOOL":
        return list(values)
    try:
        return np.array(values, dtype=_NUMPY[datatype])
    except OverflowError:  # int_contents holding a value beyond INT8/INT16
        raise RequestError(f"input '{name}': a value is out of range for {datatype}") from None


def request_doc(request: Any, model: LoadedModel) -> dict[str, Any]:
    """A ``ModelInferRequest`` as the V2 request document that REST decodes into.

    The inputs are counted and their names checked before any is converted: a message of
    many tiny (or same-named) inputs must not cost the event loop a conversion of each. The
    request's and outputs' ``parameters`` travel as REST's do, so they are checked alike (a
    binary data flag that is not a boolean is refused; a true one asks for raw contents).

    Raises:
        RequestError: More inputs than ``model`` takes, a name twice, ``raw_input_contents``
            does not match the inputs, or a tensor's data cannot be decoded.
    """
    n_inputs = len(request.inputs)
    most = len(model.features) + 1  # one tensor per feature, and the id
    if n_inputs > most:
        raise RequestError(
            f"request has {n_inputs} inputs; model '{model.name}' takes at most {most} "
            f"(one per feature and the id)"
        )
    names: set[str] = set()
    for tensor in request.inputs:
        if tensor.name in names:
            raise RequestError(f"input '{tensor.name[:200]}' appears twice")
        names.add(tensor.name)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise RequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        name, datatype = tensor.name, tensor.datatype
        if len(tensor.shape) > MAX_DIMS:  # before the shape is multiplied out or quoted
            raise RequestError(too_many_dims(name, len(tensor.shape)))
        if raw:
            if tensor.HasField("contents"):
                raise RequestError(f"input '{name}': both contents and raw_input_contents")
            data = tensor_from_bytes(raw[i], datatype, name)
        else:
            data = _contents(tensor, name, datatype)
        inputs.append(
            {"name": name, "datatype": datatype, "shape": list(tensor.shape), "data": data}
        )
    doc: dict[str, Any] = {"inputs": inputs}
    if request.id:
        doc["id"] = request.id
    if request.parameters:
        doc["parameters"] = _parameters(request.parameters)
    if request.outputs:
        doc["outputs"] = [
            {"name": o.name, "parameters": _parameters(o.parameters)} if o.parameters
            else {"name": o.name}
            for o in request.outputs
        ]  # fmt: skip
    return doc


class _Budget:
    """Bytes of request messages held at once, so many streams cannot add up past memory.

    gRPC's core reads a unary RPC's whole message before its handler runs, whatever the number
    of streams; the handlers here are request-streaming instead, and read the one message only
    once they hold a reservation of the largest message allowed. What the message does not use
    is given back as soon as it has been read, the rest when the RPC ends. A stream waiting for
    a reservation holds no more than its flow-control window. Waiters are served in order (a
    large reservation is never passed over for small ones), at most ``most_waiting`` at once.

    Args:
        total: Bytes that messages may hold at once.
        most_waiting: Most RPCs waiting for a reservation; one more is refused.
    """

    def __init__(self, total: int, most_waiting: int) -> None:
        self.free = total
        self.most_waiting = most_waiting
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def take(self, n: int, timeout_s: float) -> None:
        """Reserve ``n`` bytes, waiting at most ``timeout_s``.

        Raises:
            _Abort: RESOURCE_EXHAUSTED when too many RPCs wait already or the wait times out.
        """
        if not self._waiting and self.free >= n:
            self.free -= n
            return
        if len(self._waiting) >= self.most_waiting:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many RPCs waiting to send their message (limit {self.most_waiting})",
                503,
            )
        entry = (n, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await entry[1]
        except BaseException as exc:
            if entry[1].done() and not entry[1].cancelled():  # granted as it was cancelled
                self.give(n)
            with contextlib.suppress(ValueError):
                self._waiting.remove(entry)
            if isinstance(exc, TimeoutError):
                raise _Abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"no room for the request message within {timeout_s:g} s "
                    "(the server is reading as many as it holds at once)",
                    503,
                ) from None
            raise

    def give(self, n: int) -> None:
        """Give back ``n`` reserved bytes and grant the waiters they make room for, in order."""
        self.free += n
        while self._waiting:
            need, future = self._waiting[0]
            if future.done():  # its RPC was cancelled while it waited
                self._waiting.popleft()
                continue
            if need > self.free:
                break
            self._waiting.popleft()
            self.free -= need
            future.set_result(None)


def _decoder(message_type: Any) -> Callable[[bytes], Any]:
    """Parse a request message; an undecodable one is the client's error."""

    def decode(raw: bytes) -> Any:
        try:
            return message_type.FromString(raw)
        except DecodeError:
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request is not a valid {message_type.DESCRIPTOR.full_name} message",
            ) from None

    return decode


def _parameters(params: Any) -> dict[str, Any]:
    """A protobuf ``parameters`` map as the JSON object REST would carry (None: no value set)."""
    doc = {}
    for key, param in params.items():
        kind = param.WhichOneof("parameter_choice")
        doc[key] = None if kind is None else getattr(param, kind)
    return doc


@dataclass(frozen=True)
class _Reads:
    """How an RPC reads its message: the budget, what it reserves, how long it may take.

    Attributes:
        budget: Where the reservation comes from.
        reserve: Bytes reserved before the read: the largest message gRPC lets in.
        largest: The largest message taken (the rest are refused once read).
        wait_s: Longest wait for the reservation.
        read_s: Longest the message may take to arrive once the read begins.
    """

    budget: _Budget
    reserve: int
    largest: int
    wait_s: float
    read_s: float


class InferenceServicer:
    """The V2 gRPC service over an ``App``.

    Each method takes a decoded request and returns its response, raising ``_Abort`` or
    ``RequestError`` to refuse it; ``handlers`` wraps them for the server (reading, decoding,
    counting and statuses).

    A message is read under a reservation of the largest message gRPC lets in (it holds the
    whole message as it arrives, whatever the method). Infer messages come from
    ``INFER_MESSAGE_BYTES`` and must arrive within the request timeout (REST's body timeout).
    The small RPCs that need their request (health checks, model readiness and metadata) have
    ``SMALL_RPC_BYTES`` of their own, so infer traffic never holds them up, take at most
    ``SMALL_MESSAGE_BYTES``, and have a second to wait and a second to read (their message
    arrives with their headers; a probe that takes longer has failed anyway). The methods in
    ``_UNREAD`` never read their empty request, so nothing holds them up.

    Args:
        app: The app REST serves (model, limits, batcher, metrics, prediction log).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.waiting = 0  # infer RPCs waiting for their batch
        limits = app.limits
        self.message_limit = limits.max_body_bytes + _FRAMING
        most = limits.max_connections
        self._infer = _Reads(
            _Budget(max(INFER_MESSAGE_BYTES, self.message_limit), most),
            self.message_limit,
            limits.max_body_bytes,
            limits.request_timeout_s,
            limits.request_timeout_s,
        )
        self._small = _Reads(
            _Budget(max(SMALL_RPC_BYTES, self.message_limit), most),
            self.message_limit,
            min(SMALL_MESSAGE_BYTES, limits.max_body_bytes),
            SMALL_READ_S,
            SMALL_READ_S,
        )

    def handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        """The services, for the server: V2 inference and the standard health check.

        ``inference.GRPCInferenceService``'s repository RPCs are not among them (UNIMPLEMENTED).
        """
        methods = {}
        for method, (endpoint, request_type) in _METHODS.items():
            reads: _Reads | None = self._infer if method == "ModelInfer" else self._small
            if method in _UNREAD:
                reads = None
            methods[method] = self._method(
                endpoint, _decoder(request_type), getattr(self, method), reads
            )
        health = self._method(
            "health", bytes, self.health_check, self._small, response_serializer=None
        )
        return (
            grpc.method_handlers_generic_handler("inference.GRPCInferenceService", methods),
            grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": health}),
        )

    def _method(
        self,
        endpoint: str,
        decode: Callable[[bytes], Any],
        answer: Callable[[Any], Any],
        reads: _Reads | None,
        response_serializer: Callable[[Any], bytes] | None = _serialize,
    ) -> grpc.RpcMethodHandler:
        rpc = functools.partial(self._rpc, endpoint, decode, answer, reads)
        return grpc.stream_unary_rpc_method_handler(
            rpc, request_deserializer=None, response_serializer=response_serializer
        )

    async def _rpc(
        self,
        endpoint: str,
        decode: Callable[[bytes], Any],
        answer: Callable[[Any], Any],
        reads: _Reads | None,
        request_iterator: Any,
        context: Any,
    ) -> Any:
        """Answer one RPC and count it like a REST request; a refusal aborts with its status.

        The abort raises through this frame and grpc keeps the exception with the call (a
        reference cycle that only the garbage collector frees): the message and what was
        decoded from it live in ``_answer``'s frame, gone before the abort.
        """
        t0 = time.perf_counter()
        metrics = self.app.metrics
        metrics.inflight += 1
        try:
            code, http, message, result = await self._answer(
                endpoint, decode, answer, reads, context
            )
        except asyncio.CancelledError:  # the client left, or its deadline passed
            metrics.observe_request(endpoint, 499, time.perf_counter() - t0, "grpc")
            raise
        finally:
            metrics.inflight -= 1
        metrics.observe_request(endpoint, http, time.perf_counter() - t0, "grpc")
        if code is not grpc.StatusCode.OK and not context.done():
            try:
                await context.abort(code, message)
            except grpc.aio.AbortError:
                raise
            except Exception:  # gRPC's ExecuteBatchError, which is not public API
                # The call ended after the check (the client left, or its deadline passed):
                # there is no one to send the status to; ended as a cancelled call, quietly.
                raise asyncio.CancelledError from None
        return result

    async def _read(self, reads: _Reads, context: Any) -> bytes:
        """The RPC's one message, read within ``reads.read_s``.

        Raises:
            _Abort: The client left, the message did not arrive in time, or it is too large
                (gRPC's core refuses one past ``message_limit`` itself and sends that status).
        """
        try:
            async with asyncio.timeout(reads.read_s):
                raw = await context.read()
        except TimeoutError:
            raise _Abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request message did not arrive within {reads.read_s:g} s",
            ) from None
        if raw is grpc.aio.EOF:
            # The call ended first: the client left, or gRPC refused a message past
            # ``message_limit`` (and sent RESOURCE_EXHAUSTED itself); the two look the same
            # here, and both count as 499s. A client that half-closes without a message gets
            # this status.
            raise _Abort(
                grpc.StatusCode.CANCELLED,
                "the call ended before its request message arrived (the client left, or the "
                f"message was over gRPC's limit of {self.message_limit} bytes)",
                499,
            )
        if len(raw) > reads.largest:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request of {len(raw)} bytes exceeds the limit of {reads.largest}",
            )
        return raw

    async def _answer(
        self,
        endpoint: str,
        decode: Callable[[bytes], Any],
        answer: Callable[[Any], Any],
        reads: _Reads | None,
        context: Any,
    ) -> tuple[grpc.StatusCode, int, str, Any]:
        """Read and decode the request and answer it: status, its HTTP count, message, response.

        The message is read under a reservation from ``reads.budget``, which is given back as
        soon as the message's size is known (all but its size) and when the RPC ends. Without
        ``reads`` the request is not read (its method's request has no fields).
        """
        budget = None if reads is None else reads.budget
        held = 0
        try:
            if reads is None or budget is None:
                return grpc.StatusCode.OK, 200, "", answer(None)
            await budget.take(reads.reserve, reads.wait_s)
            held = reads.reserve
            raw = await self._read(reads, context)
            budget.give(held - len(raw))
            held = len(raw)
            request = decode(raw)
            del raw  # the decoded request holds its own copy
            result = answer(request)
            del request
            if asyncio.iscoroutine(result):
                result = await result
            return grpc.StatusCode.OK, 200, "", result
        except _Abort as exc:
            return exc.code, exc.http, exc.message, None
        except RequestError as exc:
            code = _STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
            return code, exc.status, exc.message, None
        except Exception as exc:  # a bug must cost one request, not the server
            log.exception("internal error on gRPC %s", endpoint)
            return grpc.StatusCode.INTERNAL, 500, f"internal error: {type(exc).__name__}", None
        finally:
            if budget is not None:
                budget.give(held)

    def health_check(self, request: bytes) -> bytes:
        """The standard ``grpc.health.v1.Health/Check``, for Kubernetes' gRPC probes.

        Service ``live`` is SERVING while the process answers (the liveness probe); any other
        (``""``, the server) is SERVING exactly when the app is ready.
        """
        return _SERVING if request == _LIVE or self.app.ready else _NOT_SERVING

    def _check_model(self, name: str, version: str) -> None:
        model = self.app.model
        if name != model.name:
            raise _Abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown model '{name[:200]}'; this server serves '{model.name}'",
            )
        if version and version != model.version:
            served = model.version or "(unversioned)"
            raise _Abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown version '{version[:200]}' of '{name}'; serving {served}",
            )

    def ServerLive(self, request: Any) -> Any:
        """Always live while the process answers."""
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any) -> Any:
        """Ready: the model passed its integrity check and the server is not shutting down."""
        return pb.ServerReadyResponse(ready=self.app.ready)

    def ModelReady(self, request: Any) -> Any:
        """The served model's readiness (NOT_FOUND for another model or version)."""
        self._check_model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.app.ready)

    def ServerMetadata(self, request: Any) -> Any:
        """Name, version and the protocol extensions served."""
        return pb.ServerMetadataResponse(name="argosy", version=__version__, extensions=EXTENSIONS)

    def ModelMetadata(self, request: Any) -> Any:
        """Every input by name, datatype and shape; the outputs (as REST's metadata lists them)."""
        self._check_model(request.name, request.version)
        doc = model_metadata(self.app.model)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=doc["name"],
            versions=doc["versions"],
            platform=doc["platform"],
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in doc["inputs"]],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                     for t in doc["outputs"]],
        )  # fmt: skip

    async def ModelInfer(self, request: Any) -> Any:
        """Decode, validate, score (batched with concurrent requests) and answer."""
        app = self.app
        self._check_model(request.model_name, request.model_version)
        if not app.model.ready:
            raise _Abort(grpc.StatusCode.UNAVAILABLE, f"model not ready: {app.model.reason}")
        req = app.prepare(
            request_from_doc(request_doc(request, app.model), app.model, app.limits.max_batch)
        )
        batcher = app.batcher
        if batcher is None:
            scores = app.predict(req.x)
        else:
            scores = await self._batched(batcher, req.x)
        request_id, decisions = app.complete(req, scores)
        raw = bool(request.raw_input_contents) or any(req.binary)
        return self._response(req, request_id, scores, decisions, raw=raw)

    async def _batched(self, batcher: Batcher, x: np.ndarray) -> np.ndarray:
        """Score ``x`` in the next batch; at most ``max_connections`` RPCs wait at once."""
        limit = self.app.limits.max_connections
        if self.waiting >= limit:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many infer RPCs waiting for a batch (limit {limit})",
                503,
            )
        future: asyncio.Future[np.ndarray | BaseException] = (
            asyncio.get_running_loop().create_future()
        )

        def done(result: np.ndarray | BaseException) -> None:
            if not future.done():  # cancelled: the RPC's deadline passed or its client left
                future.set_result(result)

        self.waiting += 1
        try:
            batcher.submit(x, done)
            result = await future
        finally:
            self.waiting -= 1
        if isinstance(result, BaseException):  # the batcher logged it; this request's own
            raise _Abort(grpc.StatusCode.INTERNAL, f"internal error: {type(result).__name__}")
        return result

    def _response(
        self,
        req: InferRequest,
        request_id: str,
        scores: np.ndarray,
        decisions: np.ndarray,
        raw: bool,
    ) -> Any:
        model = self.app.model
        n = len(scores)
        out = pb.ModelInferResponse(
            model_name=model.name, model_version=model.version, id=request_id
        )
        for name in req.outputs:
            if name == PROBABILITY_OUTPUT:
                values, datatype, field = scores.astype("<f4", copy=False), "FP32", "fp32_contents"
            else:
                assert name == DECISION_OUTPUT  # noqa: S101  (request_from_doc checked the names)
                values, datatype, field = decisions, "INT8", "int_contents"
            tensor = out.outputs.add(name=name, datatype=datatype, shape=[n])
            if raw:
                out.raw_output_contents.append(values.tobytes())
            else:
                getattr(tensor.contents, field).extend(values.tolist())
        return out


class GrpcServer:
    """The gRPC listener next to the REST one (started and stopped by ``ModelServer``).

    Args:
        app: The app REST serves.
        host: Address to bind.
        port: Port to bind (0 picks a free one; see ``port`` after ``start``).
    """

    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Bind and serve (on the running event loop).

        Raises:
            OSError: The port cannot be bound.
        """
        limits = self.app.limits
        request_ms = int(limits.request_timeout_s * 1000)
        # The REST limits, in gRPC's terms: message size (the body cap, plus room for framing),
        # streams per connection, the idle timeout; no port sharing. Streams are counted as
        # HTTP/2 counts them (no "overload protection", which counts a stream until its call
        # object is freed, after the client has seen it end): the client sees the same count
        # and queues calls past the limit, where otherwise it would open streams that the
        # server refuses (UNAVAILABLE) under ordinary concurrency. No maximum_concurrent_rpcs:
        # grpc counts an RPC from its headers on, so streams whose message never arrives would
        # hold every slot and starve the health checks; the servicer bounds the messages it
        # reads (``_Budget``) and the infer RPCs waiting for a batch instead. No BDP probing:
        # with it, grpc widens each stream's flow-control window until a stream not yet read
        # holds its whole message (256 streams of 4 MB took 2.5 GB); without it, a waiting
        # stream holds its 64 KiB window (a 3.6 MB message took the same 19-20 ms either way
        # on 127.0.0.1). A connection lives at most the request timeout, plus as long again
        # for the RPCs on it to finish: then it is closed, and a slow sender's streams with it
        # (clients reconnect on the GOAWAY transparently).
        servicer = InferenceServicer(self.app)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", servicer.message_limit),
                ("grpc.max_concurrent_streams", limits.max_connections),
                ("grpc.http.overload_protection", 0),
                ("grpc.max_allowed_incoming_connections", limits.max_connections),
                ("grpc.max_connection_idle_ms", int(limits.keepalive_timeout_s * 1000)),
                ("grpc.max_connection_age_ms", request_ms),
                ("grpc.max_connection_age_grace_ms", request_ms),
                ("grpc.so_reuseport", 0),
                ("grpc.http2.bdp_probe", 0),
            ],
        )
        server.add_generic_rpc_handlers(servicer.handlers())
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            port = server.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise OSError(f"cannot bind gRPC on {host}:{self.port}: {exc}") from None
        self.port = port
        await server.start()
        self._server = server

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs; let those in flight finish within ``grace_s``."""
        if self._server is not None:
            await self._server.stop(grace_s)
