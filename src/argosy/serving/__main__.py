"""``python -m argosy.serving``: the Open Inference Protocol (V2) model server.

The entry point is argparse, not Typer, to keep cold start low; ``argosy serve`` calls ``main``.
Every option can also come from an environment variable (named in ``--help``) so the KServe
overlay's ``model.yaml`` can pin the model's sha256 and version through the predictor's env.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

log = logging.getLogger("argosy.serving")

# The pipeline's output (`make run` writes models/). In KServe the runtime passes /mnt/models,
# where the storage initializer puts the model, and the image sets ARGOSY_MODEL_DIR to it.
DEFAULT_MODEL_DIR = "models"
# The longest batch wait accepted: the batcher spins the event loop while it waits (libuv's
# timers are too coarse), so a long wait would burn the loop's CPU on every batch.
MAX_WAIT_US = 10_000


def _env(name: str, default: Any) -> Any:
    return os.environ.get(name, default)


def _grpc_port(value: str) -> int | None:
    """A port number, or None for ``off``."""
    if value.strip().lower() == "off":
        return None
    try:
        int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a port number or 'off', got {value!r}"
        ) from None
    return _port(value)


def _whole(
    least: int, most: int | None = None, *, noun: str = "a whole number", unit: str = ""
) -> Callable[[str], int]:
    """An argparse type: a whole number from ``least`` (to ``most``), named ``noun`` in errors."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {value!r}") from None
        if most is None and number < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {number}")
        if most is not None and not least <= number <= most:
            raise argparse.ArgumentTypeError(f"must be {least} to {most}{unit}, got {number}")
        return number

    return parse


_port = _whole(0, 65535, noun="a port number")
"""A TCP port number, 0 (a free one) to 65535."""
# The batch wait spins the event loop, hence the cap.
_wait_us = _whole(
    0, MAX_WAIT_US, noun="microseconds", unit=" microseconds (the wait spins the event loop)"
)


def _number(
    low: float, high: float | None = None, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` (excluded when ``above``) to ``high``."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        too_low = number <= low if above else number < low
        if not math.isfinite(number) or too_low or (high is not None and number > high):
            bound = f"above {low:g}" if above else f"at least {low:g}"
            if high is not None:
                bound = f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return number

    return parse


def _log_level(value: str) -> str:
    """A logging level name, any case (``logging``'s names: WARN and FATAL too)."""
    level = value.strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise argparse.ArgumentTypeError(
            f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {value!r}"
        )
    return level


_ON, _OFF = ("on", "true", "1", "yes"), ("off", "false", "0", "no")


def _switch(value: str) -> bool:
    """On or off: on/off, true/false, 1/0, yes/no (any case)."""
    word = value.strip().lower()
    if word not in _ON + _OFF:
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return word in _ON


class _Parser(argparse.ArgumentParser):
    """Says, with a bad value, that it may have come from the environment."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):
            message += " (given on the command line or by its environment variable; see --help)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every default can be overridden by its environment variable)."""
    parser = _Parser(
        prog="python -m argosy.serving",
        description=(
            "Serve model.onnx + metadata.json over the Open Inference Protocol (V2), REST and gRPC "
            "(inference.GRPCInferenceService, --grpc-port) in one process. REST: "
            "GET /v2, /v2/health/{live,ready}, /v2/models/NAME[/versions/V][/ready], "
            "POST /v2/models/NAME[/versions/V]/infer, GET /metrics (Prometheus). The server "
            "stays not-ready unless sha256(model.onnx) equals the pinned value. SIGTERM drains "
            "in-flight requests and flushes the prediction log."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--model-dir",
        type=Path,
        default=Path(_env("ARGOSY_MODEL_DIR", DEFAULT_MODEL_DIR)),
        help="directory with model.onnx and metadata.json [env ARGOSY_MODEL_DIR]",
    )
    add(
        "--host",
        default=_env("ARGOSY_HOST", "127.0.0.1"),
        help="address to bind; the container image sets 0.0.0.0 [env ARGOSY_HOST]",
    )
    add(
        "--port",
        type=_port,
        default=_env("ARGOSY_PORT", "8080"),
        help="port of the REST service; 0 picks a free one [env ARGOSY_PORT]",
    )
    add(
        "--grpc-port",
        type=_grpc_port,
        default=_env("ARGOSY_GRPC_PORT", "8081"),
        help="port of the V2 gRPC service (inference.GRPCInferenceService) in the same process; "
        "'off' serves REST only [env ARGOSY_GRPC_PORT]",
    )
    add(
        "--batching",
        action=argparse.BooleanOptionalAction,
        default=_env("ARGOSY_BATCHING", "on"),  # text: checked by settings()
        help="score requests that arrive together in one ONNX Runtime call; --no-batching "
        "scores each request alone [env ARGOSY_BATCHING=on|off]",
    )
    add(
        "--batch-max-rows",
        type=_whole(1),
        default=_env("ARGOSY_BATCH_MAX_ROWS", "64"),
        help="most rows in one batched ONNX Runtime call [env ARGOSY_BATCH_MAX_ROWS]",
    )
    add(
        "--batch-max-wait-us",
        type=_wait_us,
        default=_env("ARGOSY_BATCH_MAX_WAIT_US", "0"),
        help=f"longest the first request of a batch waits for more, in microseconds (at most "
        f"{MAX_WAIT_US}); 0 batches only requests that arrived in the same event-loop iteration "
        "[env ARGOSY_BATCH_MAX_WAIT_US]",
    )
    add(
        "--model-sha256",
        default=_env("ARGOSY_MODEL_SHA256", None),
        help="pinned sha256 of model.onnx; default: metadata.json's sha256 "
        "[env ARGOSY_MODEL_SHA256]",
    )
    add(
        "--model-version",
        default=_env("ARGOSY_MODEL_VERSION", None),
        help="pinned model version; default: metadata.json's version [env ARGOSY_MODEL_VERSION]",
    )
    add(
        "--signature-sha256",
        default=_env("ARGOSY_MODEL_SIGNATURE_SHA256", None),
        help="pinned sha256 of the model directory's signature bundle model.sig "
        "[env ARGOSY_MODEL_SIGNATURE_SHA256]",
    )
    add(
        "--signing-trust",
        default=_env("ARGOSY_SIGNING_TRUST", None),
        help="PEM public key or CA certificate chain that model.sig must verify against; when "
        "set, or a bundle is pinned, the server stays not ready unless every file of the model "
        "directory matches the signature [env ARGOSY_SIGNING_TRUST]",
    )
    add(
        "--max-batch",
        type=_whole(1),
        default=_env("ARGOSY_MAX_BATCH", "1000"),
        help="most rows in one infer request [env ARGOSY_MAX_BATCH]",
    )
    add(
        "--max-body-bytes",
        type=_whole(1),
        default=_env("ARGOSY_MAX_BODY_BYTES", str(4 * 1024 * 1024)),
        help="largest request body [env ARGOSY_MAX_BODY_BYTES]",
    )
    add(
        "--max-connections",
        type=_whole(1),
        default=_env("ARGOSY_MAX_CONNECTIONS", "256"),
        help="most open connections; one more is answered 503 and closed. Each may hold one "
        "request body while it arrives, so this times --max-body-bytes bounds that memory "
        "[env ARGOSY_MAX_CONNECTIONS]",
    )
    add(
        "--prediction-log",
        default=_env("ARGOSY_PREDICTION_LOG", None),
        help="directory or fsspec URI for the Parquet prediction log; unset: no log "
        "[env ARGOSY_PREDICTION_LOG]",
    )
    add(
        "--log-sample-rate",
        type=_number(0.0, 1.0),
        default=_env("ARGOSY_LOG_SAMPLE_RATE", "1.0"),
        help="fraction of rows written to the prediction log [env ARGOSY_LOG_SAMPLE_RATE]",
    )
    add(
        "--log-capacity-rows",
        type=_whole(1),
        default=_env("ARGOSY_LOG_CAPACITY_ROWS", "100000"),
        help="rows the log may hold in memory; beyond it rows are dropped and counted "
        "[env ARGOSY_LOG_CAPACITY_ROWS]",
    )
    add(
        "--log-batch-rows",
        type=_whole(1),
        default=_env("ARGOSY_LOG_BATCH_ROWS", "10000"),
        help="most rows per Parquet file [env ARGOSY_LOG_BATCH_ROWS]",
    )
    add(
        "--log-flush-seconds",
        type=_number(0.0, above=True),
        default=_env("ARGOSY_LOG_FLUSH_SECONDS", "10"),
        help="longest a logged row waits before it is written [env ARGOSY_LOG_FLUSH_SECONDS]",
    )
    add(
        "--grace-seconds",
        type=_number(0.0),
        default=_env("ARGOSY_GRACE_SECONDS", "20"),
        help="on SIGTERM, longest wait for in-flight requests, then again for the log flush "
        "[env ARGOSY_GRACE_SECONDS]",
    )
    add(
        "--intra-op-threads",
        type=_whole(0),
        default=_env("ARGOSY_INTRA_OP_THREADS", "1"),
        help="ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose "
        "[env ARGOSY_INTRA_OP_THREADS]",
    )
    add(
        "--log-level",
        type=_log_level,
        default=_env("ARGOSY_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL [env ARGOSY_LOG_LEVEL]",
    )
    return parser


def settings(options: dict[str, Any]) -> dict[str, Any]:
    """Every option of ``build_parser`` by its ``dest``: ``options``, then the defaults.

    Each value is checked as the command line checks it (a given one as its text), and a
    default (the environment's value, or the built-in one) only when the option is not given,
    so that a bad environment value does not fail an option the caller gave.

    Raises:
        TypeError: An option ``build_parser`` does not have.
        ValueError: A value out of range: ``argument --name: why``.
    """
    actions = {a.dest: a for a in build_parser()._actions if a.dest != "help"}
    unknown = set(options) - set(actions)
    if unknown:
        raise TypeError(f"unknown serve() options: {sorted(unknown)}")
    out = {}
    for dest, action in actions.items():
        value = options.get(dest, action.default)
        check = _switch if dest == "batching" else action.type
        if check is not None and check is not Path and not (value is None and dest == "grpc_port"):
            if not isinstance(value, str):  # given as its type: checked as its text
                value = str(value).lower() if isinstance(value, bool) else str(value)
            try:
                value = check(value)
            except argparse.ArgumentTypeError as exc:
                raise ValueError(f"argument {'/'.join(action.option_strings)}: {exc}") from None
        out[dest] = value
    return out


def serve(model_dir: Path, host: str = "127.0.0.1", port: int = 8080, **options: Any) -> int:
    """Load the model and serve it until SIGTERM/SIGINT.

    Args:
        model_dir: Directory holding ``model.onnx`` and ``metadata.json``.
        host: Address to bind.
        port: Port to bind.
        **options: The other ``--`` options of ``build_parser`` by their ``dest`` name
            (``model_sha256``, ``model_version``, ``signature_sha256``, ``signing_trust``,
            ``max_batch``, ``max_body_bytes``,
            ``max_connections``, ``prediction_log``, ``log_sample_rate``, ``log_capacity_rows``,
            ``log_batch_rows``, ``log_flush_seconds``, ``grace_seconds``, ``intra_op_threads``,
            ``grpc_port``, ``batching``, ``batch_max_rows``, ``batch_max_wait_us``).

    Returns:
        Process exit status: 0 after a clean shutdown, 1 when the model directory is unreadable.

    Raises:
        TypeError: An option ``build_parser`` does not have.
        ValueError: A value the command line would refuse (the message names the option).
    """
    return _run(settings({**options, "model_dir": model_dir, "host": host, "port": port}))


def _run(opts: dict[str, Any]) -> int:
    """``serve`` with its settings checked (``settings``)."""
    import numpy as np

    from argosy.modeldir import ModelDirError
    from argosy.serving.metrics import Metrics
    from argosy.serving.model import load_model
    from argosy.serving.predlog import PredictionLogger
    from argosy.serving.server import App, Batching, Limits, ModelServer, run

    # Out-of-range request values become inf/NaN and are rejected with a 400 by validation;
    # the warning numpy would print for each such cast adds nothing.
    np.seterr(over="ignore", invalid="ignore")
    try:
        model = load_model(
            Path(opts["model_dir"]),
            expected_sha256=opts["model_sha256"],
            version=opts["model_version"],
            intra_op_threads=opts["intra_op_threads"],
            signature_sha256=opts["signature_sha256"],
            signing_trust=opts["signing_trust"],
        )
    except ModelDirError as exc:
        log.error("%s", exc)
        return 1
    metrics = Metrics(model.name, model.version, model.sha256)
    predlog = None
    if opts["prediction_log"]:
        predlog = PredictionLogger(
            features=model.features,
            model_name=model.name,
            model_version=model.version,
            root=str(opts["prediction_log"]),
            sample_rate=opts["log_sample_rate"],
            capacity_rows=opts["log_capacity_rows"],
            batch_rows=opts["log_batch_rows"],
            flush_interval_s=opts["log_flush_seconds"],
        )
        predlog.start()
    limits = Limits(
        max_batch=opts["max_batch"],
        max_body_bytes=opts["max_body_bytes"],
        max_connections=opts["max_connections"],
    )
    batching = Batching(
        enabled=opts["batching"],
        max_rows=opts["batch_max_rows"],
        max_wait_us=opts["batch_max_wait_us"],
    )
    app = App(model, metrics, limits, predlog, batching)
    server = ModelServer(
        app, opts["host"], opts["port"], grace_s=opts["grace_seconds"], grpc_port=opts["grpc_port"]
    )
    try:
        run(server, predlog, flush_timeout_s=opts["grace_seconds"])
    except OSError as exc:  # a port already in use: say which, no traceback
        log.error("cannot listen: %s", exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and serve.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.

    Returns:
        Process exit status.
    """
    parser = build_parser()
    try:  # what argparse leaves unconverted (the environment's --batching) is checked here
        opts = settings(vars(parser.parse_args(argv)))
    except ValueError as exc:
        parser.error(str(exc))
    level = opts["log_level"]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Under `argosy serve` the CLI has configured logging already: the level given here wins.
    logging.getLogger().setLevel(level)
    logging.getLogger("argosy").setLevel(level)
    return _run(opts)


if __name__ == "__main__":
    sys.exit(main())
