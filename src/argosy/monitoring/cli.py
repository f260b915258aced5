"""``argosy monitor`` and ``argosy retrain``: thin Typer wrappers over the monitoring modules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from argosy.config import DEFAULT_PARAMS, ConfigError, load_params

_PARAGRAPHS = (
    "Detect drift in the server's prediction log and decide whether to retrain.",
    "Evaluates the newest complete windows of `monitor.window_minutes` (aligned to multiples of "
    "it) with Evidently's data drift preset against prepare's reference sample, plus the score's "
    "drift (prediction drift) when the model is at --model-dir. A window with fewer than "
    "`monitor.min_rows` rows is INSUFFICIENT_DATA, never NO_DRIFT. With --labels, late labels "
    "joined by transaction id give live PR-AUC, recall and fraud rate; a drop is a reason too.",
    "Decision: retrain (drift held for `consecutive_windows` windows, or label feedback "
    "degraded, and the cooldown since the last trigger passed), cooldown, drift_pending, "
    "no_drift or insufficient_data.",
    "Outputs in --reports (default reports/monitoring), for Argo output parameters and people:",
    "\b\n"
    "  decision.json   {decision, drift_share, reasons, windows, drifted_columns, feedback}\n"
    "  decision        the decision word alone\n"
    "  drift_share     latest window's drift share, plain text (nan without enough data)\n"
    "  metrics.prom    Prometheus text (argosy_monitor_*, argosy_pinned_model_info)\n"
    "  report.html     Evidently report of the latest window (windows/<end>.html: each)\n"
    "  summary.md      decision, windows and drifted columns as tables",
    "Exit status: 0 whatever the decision (read `decision`), 1 when an input is missing or "
    "corrupt, 2 for invalid params.",
)
MONITOR_HELP = "\n\n".join(_PARAGRAPHS)


def _params(path: Path):
    try:
        params = load_params(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if params.monitor is None:
        typer.echo(f"error: {path} has no `monitor:` section", err=True)
        raise typer.Exit(2)
    return params.monitor


def monitor(
    prediction_log: Annotated[
        str | None, typer.Option(help="Prediction log root. Default: monitor.prediction_log.")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Reference sample. Default: monitor.reference.")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            help="Model that scores the reference (prediction drift). Default: monitor.model_dir."
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(help="Late labels: Parquet file or directory with transaction_id, is_fraud."),
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="State file (windows seen, last trigger).")
    ] = None,
    reports: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Run as if at this UTC time (ISO 8601); default now."),
    ] = None,
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = DEFAULT_PARAMS,
) -> None:
    """Run the drift monitor (the full help is ``MONITOR_HELP``)."""
    from argosy.monitoring.decision import StateError
    from argosy.monitoring.drift import DriftError
    from argosy.monitoring.monitor import MonitorError, run_monitor
    from argosy.monitoring.predlog import PredictionLogError

    config = _params(params)
    when = datetime.now(UTC)
    if as_of is not None:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            typer.echo(f"error: --as-of must be ISO 8601, got {as_of!r}", err=True)
            raise typer.Exit(2) from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    out = reports or Path(config.reports)
    try:
        outcome = run_monitor(
            config,
            when,
            prediction_log or config.prediction_log,
            reference or Path(config.reference),
            state or Path(config.state),
            out,
            model_dir or Path(config.model_dir),
            labels,
        )
    except (MonitorError, PredictionLogError, StateError, DriftError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    share = outcome.drift_share
    typer.echo(
        f"decision: {outcome.verdict.decision}"
        + ("" if share is None else f" (drift share {share:.2f})")
    )
    for reason in outcome.verdict.reasons:
        typer.echo(f"  - {reason}")
    typer.echo(f"summary: {out / 'summary.md'}")
    if (out / "report.html").exists():
        typer.echo(f"drift report: {out / 'report.html'}")


def retrain(
    labelled: Annotated[
        Path, typer.Argument(help="A newly labelled period (raw transaction Parquet file).")
    ],
    run_pipeline: Annotated[
        bool, typer.Option("--run/--no-run", help="Run `dvc repro` after re-pinning data/.")
    ] = True,
) -> None:
    """Local retraining trigger: add a labelled period to data/, `dvc add data`, `dvc repro`.

    In the cluster the monitor's CronWorkflow submits `argosy-training` instead. The pipeline's
    gate still compares the retrained challenger with the production champion.
    """
    from argosy.monitoring.trigger import TriggerError
    from argosy.monitoring.trigger import retrain as run_retrain

    try:
        result = run_retrain(Path.cwd(), labelled, run_pipeline)
    except TriggerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"added {result.rows} labelled rows as {result.added}; data.dvc updated"
        + ("; pipeline re-run (see `argosy summary`)" if result.pipeline_ran else "")
    )
