"""Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService`` on grpc.aio.

It runs on the REST server's event loop, in the same process, and goes through the same
``App``: ``request_from_doc`` decodes and validates (typed ``contents`` and
``raw_input_contents`` become the same tensors that JSON and binary REST data become), the
``Batcher`` scores (a gRPC request can share an ONNX Runtime call with REST requests),
``App.complete`` decides, counts and logs. Readiness is the app's; metrics count each RPC under
the REST endpoint's name with ``protocol="grpc"`` and the status's HTTP equivalent. The
response carries ``raw_output_contents`` when the request sent ``raw_input_contents`` (what
tritonclient and kserve's client do), typed ``contents`` otherwise.

The repository RPCs are not implemented (gRPC answers ``UNIMPLEMENTED``). The standard health
service (``grpc.health.v1.Health/Check``) answers SERVING when the app is ready (service ``live``:
whenever the process answers), so Kubernetes' ``grpc`` probes work on the gRPC port alone (the
serverless gRPC component, manifests/components/grpc).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
import numpy as np

from argosy import __version__
from argosy.serving.batching import Batcher
from argosy.serving.model import LoadedModel, RequestError
from argosy.serving.proto import grpc_predict_v2_pb2 as pb
from argosy.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from argosy.serving.server import EXTENSIONS, App
from argosy.serving.v2 import (
    DECISION_OUTPUT,
    PROBABILITY_OUTPUT,
    InferRequest,
    model_metadata,
    request_from_doc,
    tensor_from_bytes,
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
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}
_STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND}
_HEALTH = "/grpc.health.v1.Health/Check"
# grpc.health.v1.HealthCheckResponse{status: SERVING (1) | NOT_SERVING (2)}, encoded by hand:
# one enum field, so the server needs no health-checking package.
_SERVING, _NOT_SERVING = b"\x08\x01", b"\x08\x02"
_LIVE = b"\n\x04live"  # HealthCheckRequest{service: "live"}


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _contents(tensor: Any, name: str, datatype: str) -> np.ndarray | list[Any]:
    """A tensor's typed ``contents`` as the data ``request_from_doc`` reads."""
    field = _CONTENTS.get(datatype)
    if field is None:
        raise RequestError(
            f"input '{name}': datatype {datatype!r} cannot travel in typed contents"
            + ("; send FP16 as raw_input_contents" if datatype == "FP16" else "")
        )
    values = getattr(tensor.contents, field)
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
    many tiny (or same-named) inputs must not cost the event loop a conversion of each.

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
    if request.outputs:
        doc["outputs"] = [{"name": o.name} for o in request.outputs]
    return doc


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The V2 gRPC service over an ``App``.

    Args:
        app: The app REST serves (model, limits, batcher, metrics, prediction log).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.waiting = 0  # infer RPCs waiting for their batch

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

    async def _call(self, endpoint: str, context: Any, answer: Any) -> Any:
        """Run ``answer()``; map errors to gRPC statuses; count the RPC like a REST request."""
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        message = ""
        result = None
        metrics = self.app.metrics
        metrics.inflight += 1
        try:
            result = answer()
            if asyncio.iscoroutine(result):
                result = await result
        except _Abort as exc:
            code, message = exc.code, exc.message
        except RequestError as exc:
            code, message = _STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message
        except Exception as exc:  # a bug must cost one request, not the server
            log.exception("internal error on gRPC %s", endpoint)
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
        finally:
            metrics.inflight -= 1
        metrics.observe_request(endpoint, _HTTP.get(code, 500), time.perf_counter() - t0, "grpc")
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message)
        return result

    async def ServerLive(self, request: Any, context: Any) -> Any:
        """Always live while the process answers."""
        return await self._call("live", context, lambda: pb.ServerLiveResponse(live=True))

    async def ServerReady(self, request: Any, context: Any) -> Any:
        """Ready: the model passed its integrity check and the server is not shutting down."""
        return await self._call(
            "ready", context, lambda: pb.ServerReadyResponse(ready=self.app.ready)
        )

    async def ModelReady(self, request: Any, context: Any) -> Any:
        """The served model's readiness (NOT_FOUND for another model or version)."""

        def answer() -> Any:
            self._check_model(request.name, request.version)
            return pb.ModelReadyResponse(ready=self.app.ready)

        return await self._call("model_ready", context, answer)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        """Name, version and the protocol extensions served."""
        return await self._call(
            "server_metadata",
            context,
            lambda: pb.ServerMetadataResponse(
                name="argosy", version=__version__, extensions=EXTENSIONS
            ),
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        """Every input by name, datatype and shape; the outputs (as REST's metadata lists them)."""

        def answer() -> Any:
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

        return await self._call("model_metadata", context, answer)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """Decode, validate, score (batched with concurrent requests) and answer."""
        return await self._call("infer", context, lambda: self._infer(request))

    async def _infer(self, request: Any) -> Any:
        app = self.app
        self._check_model(request.model_name, request.model_version)
        if not app.model.ready:
            raise _Abort(grpc.StatusCode.UNAVAILABLE, f"model not ready: {app.model.reason}")
        if request.ByteSize() > app.limits.max_body_bytes:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request of {request.ByteSize()} bytes exceeds the limit of "
                f"{app.limits.max_body_bytes}",
            )
        req = app.prepare(
            request_from_doc(request_doc(request, app.model), app.model, app.limits.max_batch)
        )
        batcher = app.batcher
        if batcher is None:
            scores = app.predict(req.x)
        else:
            scores = await self._batched(batcher, req.x)
        request_id, decisions = app.complete(req, scores)
        return self._response(
            req, request_id, scores, decisions, raw=bool(request.raw_input_contents)
        )

    async def _batched(self, batcher: Batcher, x: np.ndarray) -> np.ndarray:
        """Score ``x`` in the next batch; at most ``max_connections`` RPCs wait at once."""
        limit = self.app.limits.max_connections
        if self.waiting >= limit:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many infer RPCs waiting for a batch (limit {limit})",
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


def _health(app: App) -> grpc.GenericRpcHandler:
    """The standard ``grpc.health.v1.Health/Check``, for Kubernetes' gRPC probes.

    Service ``live`` is SERVING while the process answers (the liveness probe); any other
    (``""``, the server) is SERVING exactly when the app is ready.
    """

    async def check(request: bytes, context: Any) -> bytes:
        return _SERVING if request == _LIVE or app.ready else _NOT_SERVING

    handler = grpc.unary_unary_rpc_method_handler(
        check, request_deserializer=None, response_serializer=None
    )
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})


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
        # streams per connection, the idle timeout; no port sharing. No maximum_concurrent_rpcs:
        # grpc counts an RPC from its headers on, so streams whose message never arrives would
        # hold every slot and starve the health checks; the infer path bounds its own waiters
        # instead (``InferenceServicer._batched``). A connection lives at most the request
        # timeout, plus as long again for the RPCs on it to finish: then it is closed, and a
        # slow sender's streams with it (clients reconnect on the GOAWAY transparently).
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limits.max_body_bytes + 64 * 1024),
                ("grpc.max_concurrent_streams", limits.max_connections),
                ("grpc.max_allowed_incoming_connections", limits.max_connections),
                ("grpc.max_connection_idle_ms", int(limits.keepalive_timeout_s * 1000)),
                ("grpc.max_connection_age_ms", request_ms),
                ("grpc.max_connection_age_grace_ms", request_ms),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.app), server)
        server.add_generic_rpc_handlers((_health(self.app),))
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
