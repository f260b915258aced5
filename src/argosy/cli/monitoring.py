"""``argosy monitor`` and ``argosy retrain``: thin Typer wrappers over the monitoring modules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from argosy.cli.common import (
    DEFAULT_CONTRACT,
    DEFAULT_PARAMS,
    ContractOption,
    ParamsOption,
    contract_or_exit,
    fail,
    params_or_exit,
)

_PARAGRAPHS = (
    "Detect drift in the server's prediction log and decide whether to retrain.",
    "Evaluates the newest complete windows of `monitor.window_minutes` (aligned to multiples of "
    "it) with Evidently's data drift preset against prepare's reference sample, plus the score's "
    "drift (prediction drift) when the model is at --model-dir. The features and how each is "
    "compared come from the data contract (contract.yaml `features:`: categorical and boolean "
    "features by value frequencies, numeric and integer ones by distribution; missing values are "
    "left out on both sides); the drift share is the share of those features that drifted. A "
    "window with fewer than contract.yaml `monitoring.min_rows` rows is INSUFFICIENT_DATA, never "
    "NO_DRIFT. With --labels, late labels joined on the contract's `id` column give live PR-AUC, "
    "recall and positive-label rate (`label.positive`); a drop below `monitoring.pr_auc_min` or "
    "`monitoring.recall_min` is a reason too.",
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
    "corrupt, 2 for invalid params or contract, or params that do not fit the contract.",
)
MONITOR_HELP = "\n\n".join(_PARAGRAPHS)


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
        typer.Option(
            help="Late labels: Parquet file or directory with the contract's `id` and "
            "`label.column` columns (needs `id` in contract.yaml)."
        ),
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="State file (windows seen, last trigger).")
    ] = None,
    reports: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Run as if at this UTC time (ISO 8601); default now."),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Run the drift monitor (the full help is ``MONITOR_HELP``)."""
    from argosy.monitoring.decision import StateError
    from argosy.monitoring.drift import DriftError
    from argosy.monitoring.feedback import FeedbackError, require_id
    from argosy.monitoring.monitor import MonitorConfigError, MonitorError, run_monitor
    from argosy.monitoring.predlog import PredictionLogError

    config = params_or_exit(params).monitor
    if config is None:
        fail(f"{params} has no `monitor:` section", code=2)
    data_contract = contract_or_exit(contract)
    if labels is not None:
        try:
            require_id(data_contract, str(contract))
        except FeedbackError as exc:
            fail(str(exc), code=2)
    when = datetime.now(UTC)
    if as_of is not None:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            fail(f"--as-of must be ISO 8601, got {as_of!r}", code=2)
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    out = reports or Path(config.reports)
    try:
        outcome = run_monitor(
            config,
            data_contract,
            when,
            prediction_log or config.prediction_log,
            reference or Path(config.reference),
            state or Path(config.state),
            out,
            model_dir or Path(config.model_dir),
            labels,
        )
    except MonitorConfigError as exc:
        fail(str(exc), code=2)
    except (MonitorError, PredictionLogError, StateError, DriftError) as exc:
        fail(str(exc))
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
        Path,
        typer.Argument(
            help="A newly labelled period: a Parquet file of raw data with every column the "
            "contract names (contract.yaml id, time, other_columns, features, label.column)."
        ),
    ],
    run_pipeline: Annotated[
        bool, typer.Option("--run/--no-run", help="Run `dvc repro` after re-pinning data/.")
    ] = True,
    contract: ContractOption = DEFAULT_CONTRACT,
) -> None:
    """Local retraining trigger: add a labelled period to data/, `dvc add data`, `dvc repro`.

    In the cluster the monitor's CronWorkflow submits `argosy-training` instead. The pipeline's
    gate still compares the retrained challenger with the production champion.
    """
    from argosy.loop.retrain import TriggerError
    from argosy.loop.retrain import retrain as run_retrain

    data_contract = contract_or_exit(contract)
    try:
        result = run_retrain(Path.cwd(), labelled, data_contract, run_pipeline)
    except TriggerError as exc:
        fail(str(exc))
    typer.echo(
        f"added {result.rows} labelled rows as {result.added}; data.dvc updated"
        + ("; pipeline re-run (see `argosy summary`)" if result.pipeline_ran else "")
    )
