"""``python -m argosy.serving``: the Open Inference Protocol (V2) model server.

The entry point is argparse, not Typer, to keep cold start low; ``argosy serve`` calls ``main``.
Every option can also come from an environment variable (named in ``--help``) so the KServe
overlay's ``model.yaml`` can pin the model's sha256 and version through the predictor's env.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("argosy.serving")

DEFAULT_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the model


def _env(name: str, default: Any) -> Any:
    return os.environ.get(name, default)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every default can be overridden by its environment variable)."""
    parser = argparse.ArgumentParser(
        prog="python -m argosy.serving",
        description=(
            "Serve model.onnx + metadata.json over the Open Inference Protocol (V2) REST API: "
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
    add("--port", type=int, default=int(_env("ARGOSY_PORT", 8080)), help="[env ARGOSY_PORT]")
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
        "--max-batch",
        type=int,
        default=int(_env("ARGOSY_MAX_BATCH", 1000)),
        help="most rows in one infer request [env ARGOSY_MAX_BATCH]",
    )
    add(
        "--max-body-bytes",
        type=int,
        default=int(_env("ARGOSY_MAX_BODY_BYTES", 4 * 1024 * 1024)),
        help="largest request body [env ARGOSY_MAX_BODY_BYTES]",
    )
    add(
        "--max-connections",
        type=int,
        default=int(_env("ARGOSY_MAX_CONNECTIONS", 256)),
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
        type=float,
        default=float(_env("ARGOSY_LOG_SAMPLE_RATE", 1.0)),
        help="fraction of rows written to the prediction log [env ARGOSY_LOG_SAMPLE_RATE]",
    )
    add(
        "--log-capacity-rows",
        type=int,
        default=int(_env("ARGOSY_LOG_CAPACITY_ROWS", 100_000)),
        help="rows the log may hold in memory; beyond it rows are dropped and counted "
        "[env ARGOSY_LOG_CAPACITY_ROWS]",
    )
    add(
        "--log-batch-rows",
        type=int,
        default=int(_env("ARGOSY_LOG_BATCH_ROWS", 10_000)),
        help="most rows per Parquet file [env ARGOSY_LOG_BATCH_ROWS]",
    )
    add(
        "--log-flush-seconds",
        type=float,
        default=float(_env("ARGOSY_LOG_FLUSH_SECONDS", 10.0)),
        help="longest a logged row waits before it is written [env ARGOSY_LOG_FLUSH_SECONDS]",
    )
    add(
        "--grace-seconds",
        type=float,
        default=float(_env("ARGOSY_GRACE_SECONDS", 20.0)),
        help="on SIGTERM, longest wait for in-flight requests, then again for the log flush "
        "[env ARGOSY_GRACE_SECONDS]",
    )
    add(
        "--intra-op-threads",
        type=int,
        default=int(_env("ARGOSY_INTRA_OP_THREADS", 1)),
        help="ONNX Runtime intra-op threads [env ARGOSY_INTRA_OP_THREADS]",
    )
    add("--log-level", default=_env("ARGOSY_LOG_LEVEL", "INFO"), help="[env ARGOSY_LOG_LEVEL]")
    return parser


def serve(model_dir: Path, host: str = "127.0.0.1", port: int = 8080, **options: Any) -> int:
    """Load the model and serve it until SIGTERM/SIGINT.

    Args:
        model_dir: Directory holding ``model.onnx`` and ``metadata.json``.
        host: Address to bind.
        port: Port to bind.
        **options: The other ``--`` options of ``build_parser`` by their ``dest`` name
            (``model_sha256``, ``model_version``, ``max_batch``, ``max_body_bytes``,
            ``max_connections``, ``prediction_log``, ``log_sample_rate``, ``log_capacity_rows``,
            ``log_batch_rows``, ``log_flush_seconds``, ``grace_seconds``, ``intra_op_threads``).

    Returns:
        Process exit status: 0 after a clean shutdown, 1 when the model directory is unreadable.
    """
    defaults = vars(build_parser().parse_args([]))
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown serve() options: {sorted(unknown)}")
    opts = {**defaults, **options}

    import numpy as np

    from argosy.serving.metrics import Metrics
    from argosy.serving.model import ModelLoadError, load_model
    from argosy.serving.predlog import PredictionLogger
    from argosy.serving.server import App, Limits, ModelServer, run

    # Out-of-range request values become inf/NaN and are rejected with a 400 by validation;
    # the warning numpy would print for each such cast adds nothing.
    np.seterr(over="ignore", invalid="ignore")
    try:
        model = load_model(
            Path(model_dir),
            expected_sha256=opts["model_sha256"],
            version=opts["model_version"],
            intra_op_threads=opts["intra_op_threads"],
        )
    except ModelLoadError as exc:
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
    app = App(model, metrics, limits, predlog)
    server = ModelServer(app, host, port, grace_s=opts["grace_seconds"])
    run(server, predlog, flush_timeout_s=opts["grace_seconds"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and serve.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.

    Returns:
        Process exit status.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    opts = vars(args)
    opts.pop("log_level")
    return serve(opts.pop("model_dir"), opts.pop("host"), opts.pop("port"), **opts)


if __name__ == "__main__":
    sys.exit(main())
