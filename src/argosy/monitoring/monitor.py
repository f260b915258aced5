"""One run of the drift monitor: evaluate the newest complete windows, decide, write the outputs.

Outputs under the reports directory (the Argo CronWorkflow reads ``decision``, ``drift_share``
and ``trigger`` as output parameters; Prometheus reads ``metrics.prom`` through a textfile
collector or a push):

* ``decision.json``: ``{decision, drift_share, reasons, windows, feedback, ...}``
* ``decision``: the decision word alone (``retrain``, ``cooldown``, ``drift_pending``,
  ``no_drift`` or ``insufficient_data``)
* ``drift_share``: the latest window's drift share as plain text (``nan`` when not computed)
* ``trigger``: one plain line, "drift monitor: <reasons>", handed to the training it submits
* ``metrics.prom``: the same as Prometheus text exposition
* ``report.html``: Evidently's drift report of the latest window with enough data
  (``windows/<end>.html`` for each evaluated window, ``windows/<end>.json`` for the raw snapshot)
* ``summary.md``: what a person reads first
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from argosy.config import MonitorParams
from argosy.data.contract import Contract
from argosy.files import write_all, write_atomic
from argosy.monitoring.columns import SCORE_COLUMN
from argosy.monitoring.decision import (
    DECISIONS,
    MonitorState,
    Verdict,
    WindowOutcome,
    decide,
    load_state,
    save_state,
    window_status,
)
from argosy.monitoring.drift import DriftError, DriftResult, DriftSettings, evidently_drift
from argosy.monitoring.feedback import Feedback, FeedbackError, evaluate_feedback, require_id
from argosy.monitoring.predlog import read_labels, read_window

log = logging.getLogger(__name__)


class MonitorError(RuntimeError):
    """The monitor cannot run (no reference sample, unreadable inputs)."""


class MonitorConfigError(MonitorError):
    """params.yaml ``monitor:`` does not fit the data contract (the message names the key)."""


def settings_from(params: MonitorParams, contract: Contract) -> DriftSettings:
    """The drift tests that params.yaml ``monitor:`` configures, on the contract's features.

    Raises:
        MonitorConfigError: ``monitor.per_column_method`` names a column that is neither a
            feature of the contract nor ``score``, or ``monitor.max_rows`` is below
            contract.yaml ``monitoring.min_rows``.
    """
    known = {*contract.feature_names, SCORE_COLUMN}
    unknown = sorted(set(params.per_column_method) - known)
    if unknown:
        raise MonitorConfigError(
            f"params.yaml monitor.per_column_method names {unknown}, which are neither features "
            f"of the data contract (contract.yaml features) nor {SCORE_COLUMN!r}"
        )
    if params.max_rows < contract.monitoring.min_rows:
        raise MonitorConfigError(
            f"params.yaml monitor.max_rows ({params.max_rows}) is below contract.yaml "
            f"monitoring.min_rows ({contract.monitoring.min_rows}): a window would be sampled "
            "below the size it needs"
        )
    try:
        return DriftSettings.for_features(
            contract.specs,
            num_method=params.num_method,
            cat_method=params.cat_method,
            per_column_method=dict(params.per_column_method),
            num_threshold=params.num_threshold,
            cat_threshold=params.cat_threshold,
            prediction_threshold=params.prediction_threshold,
            drift_share=params.drift_share,
            max_rows=params.max_rows,
            seed=params.sample_seed,
        )
    except DriftError as exc:  # pragma: no cover - the checks above come first
        raise MonitorConfigError(f"params.yaml monitor: {exc}") from None


def window_ends(as_of: datetime, window: timedelta, after: datetime | None, count: int) -> list:
    """Ends of the complete windows to evaluate, oldest first.

    Windows are aligned to multiples of ``window`` since the Unix epoch, so every run (and every
    replica of the CronWorkflow) cuts the same windows. At most ``count`` are returned (older ones
    cannot change the decision), and none that ends at or before ``after`` (already evaluated).
    """
    step = window.total_seconds()
    last = math.floor(as_of.timestamp() / step) * step
    ends = [datetime.fromtimestamp(last - i * step, UTC) for i in range(count)]
    return sorted(e for e in ends if after is None or e > after)


def _score(reference: pd.DataFrame, model_dir: Path, features: list[str]) -> np.ndarray | None:
    """The model's positive-label probability for every reference row, or None without a model."""
    from argosy.modeldir import (
        MODEL_FILE,
        ModelDirError,
        open_session,
        positive_scores,
        read_metadata,
    )

    onnx = model_dir / MODEL_FILE
    if not onnx.exists():
        return None
    try:
        metadata = read_metadata(model_dir)
        if metadata.features != features:
            raise MonitorError(
                f"{model_dir}: the model's features (metadata.json) are not the data contract's "
                "(contract.yaml features, in order): was it trained with another contract?"
            )
        session = open_session(onnx)
    except ModelDirError as exc:
        raise MonitorError(f"{model_dir}: not a usable model directory ({exc})") from None
    matrix = np.ascontiguousarray(reference[features].to_numpy(np.float32))
    return np.asarray(positive_scores(session, matrix, metadata.input_name))


def load_reference(path: Path, contract: Contract, model_dir: Path | None = None) -> pd.DataFrame:
    """The reference sample, plus its scores when the model is there to compute them.

    The sample is prepare's: the contract's features encoded as the server logs them (float32,
    missing as NaN) and the label as 0/1.

    Raises:
        MonitorError: No reference sample, or one without the contract's features, or a model
            trained on other features.
    """
    if not path.exists():
        raise MonitorError(f"{path}: no reference sample (run the pipeline's prepare stage)")
    reference = pd.read_parquet(path)
    features = list(contract.feature_names)
    missing = [f for f in features if f not in reference.columns]
    if missing:
        raise MonitorError(
            f"{path}: lacks features {missing[:6]} of the data contract (contract.yaml features); "
            "re-run the pipeline's prepare stage"
        )
    scores = _score(reference, model_dir, features) if model_dir is not None else None
    if scores is not None:
        reference[SCORE_COLUMN] = scores
    return reference


@dataclass(frozen=True)
class MonitorOutcome:
    """Everything one run decided and measured."""

    verdict: Verdict
    evaluated: list[tuple[WindowOutcome, DriftResult | None]]
    state: MonitorState
    feedback: Feedback | None
    as_of: datetime

    @property
    def latest_drift(self) -> DriftResult | None:
        """The drift of the newest evaluated window with enough data."""
        results = [r for _, r in self.evaluated if r is not None]
        return results[-1] if results else None

    @property
    def drift_share(self) -> float | None:
        """The newest evaluated window's drift share (None without enough data)."""
        latest = self.state.windows[-1] if self.state.windows else None
        return None if latest is None else latest.drift_share

    def to_dict(self) -> dict[str, Any]:
        """decision.json."""
        drift = self.latest_drift
        return {
            "decision": self.verdict.decision,
            "drift_share": self.drift_share,
            "reasons": list(self.verdict.reasons),
            "drift_streak": self.verdict.drift_streak,
            "as_of": self.as_of.isoformat(),
            "last_trigger": self.state.last_trigger,
            "windows": [w.__dict__ for w in self.state.windows[-10:]],
            "drifted_columns": drift.drifted_columns if drift else [],
            "prediction_drift": None
            if drift is None or drift.prediction is None
            else drift.prediction.distance,
            "feedback": None if self.feedback is None else self.feedback.to_dict(),
        }


def run_monitor(
    params: MonitorParams,
    contract: Contract,
    as_of: datetime,
    log_root: str,
    reference_path: Path,
    state_path: Path,
    reports: Path,
    model_dir: Path | None = None,
    labels_path: str | None = None,
) -> MonitorOutcome:
    """Evaluate new windows, join labels, decide, save the state and write every output.

    Args:
        params: params.yaml ``monitor:``.
        contract: The data contract: features and their kinds, id and label columns,
            ``monitoring:`` sizes and floors.
        as_of: The time of the run (UTC); windows ending after it are not complete yet.
        log_root: The prediction log's root (directory or fsspec URI).
        reference_path: prepare's reference sample.
        state_path: The state file (windows seen, last trigger).
        reports: Output directory.
        model_dir: Model used to score the reference for prediction drift (optional).
        labels_path: Late labels (Parquet file or directory), optional.

    Raises:
        MonitorError: Missing reference; MonitorConfigError: params that do not fit the contract,
            or labels without a contract id. PredictionLogError: unreadable log or labels.
        StateError: Unreadable state file.
    """
    settings = settings_from(params, contract)
    if labels_path is not None:
        try:
            require_id(contract)
        except FeedbackError as exc:
            raise MonitorConfigError(str(exc)) from None
    min_rows = contract.monitoring.min_rows
    features = contract.feature_names
    state = load_state(state_path)
    reference = load_reference(reference_path, contract, model_dir)
    window = timedelta(minutes=params.window_minutes)
    seen = datetime.fromisoformat(state.windows[-1].end) if state.windows else None
    evaluated: list[tuple[WindowOutcome, DriftResult | None]] = []
    for end in window_ends(as_of, window, seen, params.consecutive_windows):
        start = end - window
        frame = read_window(log_root, start, end, features)
        result = None
        if len(frame) >= min_rows:
            stem = end.strftime("%Y%m%dT%H%M%SZ")
            result = evidently_drift(
                reference,
                frame,
                settings,
                html=reports / "windows" / f"{stem}.html",
                raw_json=reports / "windows" / f"{stem}.json",
            )
        share = None if result is None else result.drift_share
        outcome = WindowOutcome(
            start=start.isoformat(),
            end=end.isoformat(),
            rows=len(frame),
            status=window_status(len(frame), share, min_rows, params.drift_share),
            drift_share=share,
        )
        log.info("window %s..%s: %d rows, %s", start, end, len(frame), outcome.status)
        state.record(outcome)
        evaluated.append((outcome, result))

    feedback = None
    if labels_path is not None:
        lookback = as_of - timedelta(days=params.feedback.lookback_days)
        predictions = read_window(log_root, lookback, as_of, features)
        label = contract.label.column
        if label not in reference.columns:
            raise MonitorError(
                f"{reference_path}: no label column {label!r} (contract.yaml label.column), so "
                "no training-period positive-label rate; re-run the pipeline's prepare stage"
            )
        reference_rate = float(reference[label].astype(np.float64).mean())
        try:
            feedback = evaluate_feedback(
                predictions,
                read_labels(labels_path, contract),
                reference_rate,
                params.feedback,
                contract,
            )
        except FeedbackError as exc:
            raise MonitorError(f"{labels_path}: {exc}") from None

    last = datetime.fromisoformat(state.last_trigger) if state.last_trigger else None
    verdict = decide(
        state.windows,
        feedback.reasons if feedback else (),
        last,
        as_of,
        params.consecutive_windows,
        timedelta(hours=params.cooldown_hours),
        min_rows=min_rows,
    )
    if verdict.decision == "retrain":
        state.last_trigger = as_of.isoformat()
    save_state(state, state_path)
    outcome = MonitorOutcome(verdict, evaluated, state, feedback, as_of)
    write_outputs(outcome, reports)
    return outcome


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.6g}"


def render_metrics(outcome: MonitorOutcome, pins: dict[str, str] | None = None) -> str:
    """The Prometheus text exposition of a run (names match the dashboard and alert rules).

    Args:
        outcome: The run.
        pins: Model version pinned in git per environment, exported as ``argosy_pinned_model_info``
            so an alert can compare it with the version each environment serves.
    """
    drift = outcome.latest_drift
    latest = outcome.state.windows[-1] if outcome.state.windows else None
    fb = outcome.feedback
    lines = [
        "# HELP argosy_monitor_drift_share Share of model features drifted in the latest window.",
        "# TYPE argosy_monitor_drift_share gauge",
        f"argosy_monitor_drift_share {_fmt(outcome.drift_share)}",
        "# HELP argosy_monitor_window_rows Logged rows in the latest evaluated window.",
        "# TYPE argosy_monitor_window_rows gauge",
        f"argosy_monitor_window_rows {latest.rows if latest else 0}",
        "# HELP argosy_monitor_prediction_drift Distance of the score distribution to the "
        "reference's.",
        "# TYPE argosy_monitor_prediction_drift gauge",
        "argosy_monitor_prediction_drift "
        f"{_fmt(drift.prediction.distance if drift and drift.prediction else None)}",
        "# HELP argosy_monitor_drift_streak Consecutive windows over the drift threshold.",
        "# TYPE argosy_monitor_drift_streak gauge",
        f"argosy_monitor_drift_streak {outcome.verdict.drift_streak}",
        "# HELP argosy_monitor_decision The latest decision (1 for the one taken).",
        "# TYPE argosy_monitor_decision gauge",
        *(
            f'argosy_monitor_decision{{decision="{d}"}} {int(d == outcome.verdict.decision)}'
            for d in DECISIONS
        ),
        "# HELP argosy_monitor_live_pr_auc PR-AUC of logged scores against late labels.",
        "# TYPE argosy_monitor_live_pr_auc gauge",
        f"argosy_monitor_live_pr_auc {_fmt(fb.pr_auc if fb else None)}",
        "# HELP argosy_monitor_live_recall Recall of logged decisions against late labels.",
        "# TYPE argosy_monitor_live_recall gauge",
        f"argosy_monitor_live_recall {_fmt(fb.recall if fb else None)}",
        "# HELP argosy_monitor_last_run_timestamp_seconds When the monitor last ran.",
        "# TYPE argosy_monitor_last_run_timestamp_seconds gauge",
        f"argosy_monitor_last_run_timestamp_seconds {outcome.as_of.timestamp():.0f}",
    ]
    if pins:
        lines += [
            "# HELP argosy_pinned_model_info Model version each environment's overlay pins in git.",
            "# TYPE argosy_pinned_model_info gauge",
            *(
                f'argosy_pinned_model_info{{environment="{env}",version="{version}"}} 1'
                for env, version in sorted(pins.items())
            ),
        ]
    return "\n".join(lines) + "\n"


def git_pins(overlays: Path) -> dict[str, str]:
    """Model version pinned by each overlay's model.yaml (environments without a pin omitted)."""
    from argosy.pin import PinError, read_pin

    pins: dict[str, str] = {}
    for model_yaml in sorted(overlays.glob("*/model.yaml")):
        try:
            pin = read_pin(model_yaml)
        except PinError:
            continue
        if pin is not None:
            pins[model_yaml.parent.name] = str(pin.version)
    return pins


def render_summary(outcome: MonitorOutcome) -> str:
    """summary.md: the decision first, then windows, drifted columns and label feedback."""
    v = outcome.verdict
    lines = [f"## Drift monitor: **{v.decision.upper()}**", ""]
    lines += [f"- {r}" for r in v.reasons] or ["- nothing calls for retraining"]
    lines += ["", "| window end (UTC) | rows | drift share | status |", "|---|---:|---:|---|"]
    for w in outcome.state.windows[-6:]:
        share = "-" if w.drift_share is None else f"{w.drift_share:.2f}"
        lines.append(f"| {w.end} | {w.rows} | {share} | {w.status} |")
    drift = outcome.latest_drift
    if drift is not None:
        lines += ["", "| drifted column | test | distance | threshold |", "|---|---|---:|---:|"]
        by_name = {c.column: c for c in drift.features}
        for name in drift.drifted_columns:
            c = by_name[name]
            lines.append(f"| {name} | {c.method} | {c.distance:.3f} | {c.threshold} |")
        if drift.prediction is not None:
            p = drift.prediction
            flag = " (drifted)" if p.drifted else ""
            lines += ["", f"Prediction drift (score, {p.method}): {p.distance:.3f}{flag}"]
    fb = outcome.feedback
    if fb is not None:
        lines += [
            "",
            f"Label feedback: {fb.status}, {fb.labelled} labelled, {fb.positives} positive",
        ]
        if fb.pr_auc is not None:
            lines.append(f"live PR-AUC {fb.pr_auc:.3f}, recall {fb.recall:.3f}")
    return "\n".join(lines) + "\n"


def with_decision_banner(page: str, outcome: MonitorOutcome) -> str:
    """Evidently's HTML with Argosy's decision and its reasons at the top of the page.

    Evidently's own headline covers the drift tests of one window; the decision also weighs
    consecutive windows, the cooldown and label feedback, so the page opens with it.
    """
    v = outcome.verdict
    color = "#b3261e" if v.decision == "retrain" else "#1b5e20"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in v.reasons) or (
        "<li>nothing calls for retraining</li>"
    )
    share = "not computed" if outcome.drift_share is None else f"{outcome.drift_share:.2f}"
    banner = (
        f'<div id="argosy-decision" style="font-family:sans-serif;padding:16px 24px;'
        f'border-left:8px solid {color};background:#fafafa;margin:0 0 8px 0">'
        f'<h1 style="margin:0 0 8px 0;color:{color}">Drift monitor: '
        f"{html.escape(v.decision.upper())}</h1>"
        f'<p style="margin:0 0 4px 0">Latest window\'s drift share {share}; the report below '
        "is Evidently's, on the same features and threshold.</p>"
        f'<ul style="margin:4px 0 0 0">{reasons}</ul></div>'
    )
    head, body_tag, rest = page.partition("<body>")
    return f"{head}{body_tag}{banner}{rest}" if body_tag else banner + page


_TRIGGER_SAFE = re.compile(r"[^A-Za-z0-9 .,;:()%<>=+\-_/@#*]")
TRIGGER_MAX = 500


def trigger_text(outcome: MonitorOutcome) -> str:
    """One line saying why the monitor asks for retraining, for the training run's PR body.

    It travels as an Argo parameter into a Workflow manifest, so it is kept to a plain
    character set (no quotes, braces or backslashes: nothing a template or YAML would read)
    and bounded.
    """
    reasons = "; ".join(outcome.verdict.reasons) or "no reason recorded"
    text = _TRIGGER_SAFE.sub("", f"drift monitor: {reasons}".replace("\n", " "))
    return text[:TRIGGER_MAX]


def write_outputs(outcome: MonitorOutcome, reports: Path, overlays: Path | None = None) -> None:
    """Write every output listed in the module docstring (each atomically)."""
    reports.mkdir(parents=True, exist_ok=True)
    overlays = overlays or Path("manifests/overlays")
    pins = git_pins(overlays) if overlays.is_dir() else {}
    files = {
        "decision.json": json.dumps(outcome.to_dict(), indent=2) + "\n",
        "decision": outcome.verdict.decision + "\n",
        "drift_share": _fmt(outcome.drift_share) + "\n",
        "trigger": trigger_text(outcome) + "\n",
        "metrics.prom": render_metrics(outcome, pins),
        "summary.md": render_summary(outcome),
    }
    write_all({reports / name: text for name, text in files.items()})
    latest = [w for w, r in outcome.evaluated if r is not None]
    if latest:
        stem = datetime.fromisoformat(latest[-1].end).strftime("%Y%m%dT%H%M%SZ")
        page = (reports / "windows" / f"{stem}.html").read_text(encoding="utf-8")
        write_atomic(reports / "report.html", with_decision_banner(page, outcome))
