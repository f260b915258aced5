"""Champion/challenger gate: may the newly trained model replace the one production pins?

The champion is the model ``manifests/overlays/production/model.yaml`` pins, fetched from the MLflow
registry by that version and checked against the pinned sha256. Both models are scored on the same
test split. The challenger must clear the contract's floors (``metric.floors``), must not fall more
than a margin below the champion on the primary metric (``metric.primary``), overall and on every
slice with enough positive labels to judge, and must fit the latency budget. Anything NaN or
missing fails closed. A reject is a result: the report says why.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from argosy.config import EvaluateParams, GateParams
from argosy.data.contract import Contract, MetricContract
from argosy.evaluation.metrics import (
    LOWER_IS_BETTER,
    METRICS,
    OnnxModel,
    evaluate_model,
    to_json,
)
from argosy.gitops.git import GitError, git
from argosy.gitops.pin import ModelPin, read_pin

TRIGGER_ENV = "ARGOSY_TRIGGER"
"""Why this pipeline ran (a push, the drift monitor and its reasons, new data): the workflow sets
it, and the PR body says it first. Unset: a run by hand."""
MAX_COMMITS = 15
"""Most commits listed in the PR body (the count is always given)."""


class GateError(RuntimeError):
    """The gate could not judge (registry unreachable, champion missing): no decision is written."""


@dataclass
class Check:
    """One rule of the gate and its outcome."""

    name: str
    passed: bool
    detail: str


@dataclass
class Decision:
    """The gate's verdict and every check behind it."""

    checks: list[Check] = field(default_factory=list)

    @property
    def promote(self) -> bool:
        """True only when every check passed (and there was at least one)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> None:
        """Record a check."""
        self.checks.append(Check(name, passed, detail))


def _value(metrics: dict[str, Any] | None, name: str) -> float | None:
    if metrics is None:
        return None
    value = metrics.get(name)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def decide(
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    params: GateParams,
    metric: MetricContract,
) -> Decision:
    """Apply the gate's rules to two metric sets (champion None: no model in production yet).

    Args:
        challenger: Metrics of the new model, with ``slices`` and ``latency_us_per_row``.
        champion: Metrics of the production model on the same test split, or None.
        params: The ``gate`` section of params.yaml.
        metric: The contract's primary metric and floors.
    """
    decision = Decision()
    for name, floor in metric.floors.items():
        value = _value(challenger, name)
        if value is None:
            decision.add(f"floor:{name}", False, f"{name} is missing or NaN (fails closed)")
        else:
            decision.add(
                f"floor:{name}", value >= floor, f"{name} {value:.4f} vs floor {floor:.4f}"
            )
    primary = metric.primary
    if primary not in metric.floors and _value(challenger, primary) is None:
        decision.add(f"defined:{primary}", False, f"{primary} is missing or NaN (fails closed)")

    latency = _value(challenger, "latency_us_per_row")
    budget = params.max_latency_us_per_row
    if latency is None:
        decision.add("latency", False, "latency_us_per_row is missing or NaN (fails closed)")
    else:
        decision.add(
            "latency", latency <= budget, f"{latency:.2f} µs/row vs budget {budget:.2f} µs/row"
        )

    if champion is None:
        decision.add(
            "champion", True, "no champion yet: production pins no model; floors decide alone"
        )
        return decision

    ours, theirs = _value(challenger, primary), _value(champion, primary)
    if ours is None or theirs is None:
        decision.add(
            f"non-regression:{primary}",
            False,
            f"{primary} missing or NaN for the {'challenger' if ours is None else 'champion'} "
            "(fails closed)",
        )
    else:
        decision.add(
            f"non-regression:{primary}",
            ours >= theirs - params.max_regression,
            f"{primary} {ours:.4f} vs champion {theirs:.4f} (margin {params.max_regression})",
        )
    for column, values in (champion.get("slices") or {}).items():
        for value, their_slice in values.items():
            our_slice = ((challenger.get("slices") or {}).get(column) or {}).get(value)
            name = f"slice:{column}={value}"
            positives = min(
                _value(our_slice, "positives") or 0.0, _value(their_slice, "positives") or 0.0
            )
            if positives < params.slice_min_positives:
                continue
            ours_s, theirs_s = _value(our_slice, primary), _value(their_slice, primary)
            if ours_s is None or theirs_s is None:
                decision.add(name, False, f"slice {primary} missing or NaN (fails closed)")
                continue
            decision.add(
                name,
                ours_s >= theirs_s - params.slice_max_regression,
                f"{primary} {ours_s:.4f} vs champion {theirs_s:.4f} "
                f"(margin {params.slice_max_regression})",
            )
    return decision


def fetch_champion(pin: ModelPin, dest: Path) -> tuple[OnnxModel, str]:
    """Download the pinned version's serving files from MLflow and verify them.

    Returns:
        The verified model and the MLflow run that trained it.

    Raises:
        GateError: The registry is unreachable or does not hold the pinned version.
        ModelFileError: The downloaded model's sha256 differs from the pin.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from argosy.tracking import TrackingServerError, connect

    try:
        connect(mlflow.get_tracking_uri())
    except TrackingServerError as exc:
        raise GateError(f"cannot fetch champion {pin.name} v{pin.version}: {exc}") from exc
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version(pin.name, pin.version)
        local = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path="serving", dst_path=str(dest)
        )
    except MlflowException as exc:
        raise GateError(
            f"cannot fetch champion {pin.name} v{pin.version} from the MLflow registry at "
            f"{mlflow.get_tracking_uri()}: {exc.message}"
        ) from exc
    except OSError as exc:
        raise GateError(
            f"cannot reach the MLflow registry at {mlflow.get_tracking_uri()}: {exc}"
        ) from exc
    return OnnxModel(Path(local), expected_sha256=pin.sha256), str(version.run_id)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_facts(run_id: str | None) -> dict[str, Any]:
    """What a training run was trained on: commit, data hash, rows and params (from MLflow).

    Empty when there is no run id or MLflow does not know it: the report then says so.
    """
    if not run_id:
        return {}
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except (MlflowException, OSError):
        return {}
    rows = run.data.metrics.get("train_rows")
    return {
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "git_commit": run.data.tags.get("argosy.git_commit", ""),
        "data_hash": run.data.tags.get("argosy.data_hash", ""),
        "train_rows": None if rows is None else int(rows),
        "params": dict(run.data.params),
    }


def commits_between(root: Path, old: str, new: str) -> list[str] | None:
    """``<short sha> <subject>`` of each commit in ``old..new``, newest first; None if unknown.

    None when either commit is missing from this checkout (a shallow clone, a commit from
    another repository) or git is not there: the report says it cannot list them.
    """
    if not old or not new or "unknown" in (old, new):
        return None
    try:
        out = git(root, "log", "--format=%h %s", f"{old}..{new}")
    except (GitError, OSError):
        return None
    return [line for line in out.splitlines() if line.strip()]


def lineage(challenger: dict[str, Any], champion: dict[str, Any], root: Path) -> dict[str, Any]:
    """What changed from the champion's training to the challenger's: data, params, commits."""
    changed = {
        k: [champion.get("params", {}).get(k), v]
        for k, v in sorted(challenger.get("params", {}).items())
        if champion.get("params") and champion["params"].get(k) != v
    }
    return {
        "challenger": challenger,
        "champion": champion,
        "params_changed": changed,
        "commits": commits_between(
            root, champion.get("git_commit", ""), challenger.get("git_commit", "")
        ),
    }


def _mlflow_link(run: dict[str, Any], tracking: str) -> str:
    """A link to the run in MLflow's UI for a tracking server; how to open it for a local store."""
    if not run.get("run_id"):
        return "not recorded"
    path = f"#/experiments/{run.get('experiment_id', '0')}/runs/{run['run_id']}"
    if tracking.startswith(("http://", "https://")):
        return f"[run `{run['run_id'][:12]}`]({tracking.rstrip('/')}/{path})"
    return (
        f"run `{run['run_id']}` in the local store (`mlflow ui --backend-store-uri {tracking}`, "
        f"then open `{path}`)"
    )


def without_credentials(uri: str) -> str:
    """``uri`` without a ``user:password@`` part: the report is a PR body anyone may read."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.username and not parts.password:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname or ""))


def _direction(metric: str) -> str:
    return "↓ lower" if metric in LOWER_IS_BETTER else "↑ higher"


def _changes_section(report: dict[str, Any]) -> list[str]:
    changes = report.get("changes") or {}
    ours, theirs = changes.get("challenger") or {}, changes.get("champion") or {}
    version = report.get("champion_version")
    if not version:
        return [
            "### What changed",
            "",
            "No champion in production yet: this model would be the first. Trained on data "
            f"`{ours.get('data_hash') or report.get('data_hash')}` "
            f"({ours.get('train_rows', 'n/a')} training rows) at commit "
            f"`{(ours.get('git_commit') or report.get('git_commit', ''))[:12]}`.",
            "",
        ]

    def cell(facts: dict[str, Any], key: str, width: int | None = None) -> str:
        value = facts.get(key)
        if value in (None, ""):
            return "n/a"
        text = str(value)
        return f"`{text[:width]}`" if width else text

    lines = [
        f"### What changed since the champion (version {version})",
        "",
        "| | champion | challenger |",
        "|---|---|---|",
        f"| data (`data.dvc`) | {cell(theirs, 'data_hash')} | {cell(ours, 'data_hash')} |",
        f"| training rows | {cell(theirs, 'train_rows')} | {cell(ours, 'train_rows')} |",
        f"| trained at commit | {cell(theirs, 'git_commit', 12)} | "
        f"{cell(ours, 'git_commit', 12)} |",
        "",
    ]
    params = changes.get("params_changed") or {}
    if params:
        lines.append(
            "Training params changed: "
            + ", ".join(f"`{k}` {old} → {new}" for k, (old, new) in params.items())
            + "."
        )
    elif theirs.get("params"):
        lines.append("Training params: unchanged.")
    else:
        lines.append("Training params: the champion's run is not in MLflow, cannot compare.")
    commits = changes.get("commits")
    if commits is None:
        lines.append("Commits since the champion's training: not in this checkout, cannot list.")
    else:
        lines.append(f"Commits since the champion's training: {len(commits)}.")
        lines += [f"- `{c.split(' ', 1)[0]}` {c.partition(' ')[2]}" for c in commits[:MAX_COMMITS]]
        if len(commits) > MAX_COMMITS:
            lines.append(f"- … and {len(commits) - MAX_COMMITS} more")
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """The gate report as a pull-request body a reviewer decides from.

    In order: the verdict and why the pipeline ran; the reasons behind the verdict; what changed
    since the champion's training (data, params, commits); the metric table with each metric's
    direction; the slices, each marked gated or too small to gate; every check; links.
    """
    promote = report["decision"] == "promote"
    challenger, champion = report["challenger"], report["champion"]
    model = report["model"]
    failed = [c for c in report["checks"] if not c["passed"]]
    lines = [
        f"## Model gate: {'✅ promote' if promote else '❌ reject'} `{model['name']}`",
        "",
        f"**Why this ran:** {report.get('trigger') or 'a pipeline run by hand (no trigger given)'}",
        "",
        "**Decision:** "
        + (
            f"every one of {len(report['checks'])} checks passed."
            if promote
            else f"{len(failed)} of {len(report['checks'])} checks failed:"
        ),
        "",
    ]
    lines += [f"- ❌ {c['detail']}" for c in failed]
    if failed:
        lines.append("")
    lines += _changes_section(report)
    lines += [
        "### Metrics (test split, both models scored on it)",
        "",
        "| metric | better | champion | challenger | Δ | floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    floors = report.get("floors", {})
    for metric in (*METRICS, "latency_us_per_row"):
        ours, theirs = _value(challenger, metric), _value(champion, metric)
        delta = "" if ours is None or theirs is None else f"{ours - theirs:+.4f}"
        floor = floors.get(metric)
        lines.append(
            f"| {metric} | {_direction(metric)} | {_fmt(theirs)} | {_fmt(ours)} | {delta} | "
            f"{'' if floor is None else f'{floor:.4f}'} |"
        )
    lines += _slices_section(report)
    lines += ["", "### Checks", ""]
    lines += [
        f"- {'✅' if c['passed'] else '❌'} `{c['name']}`: {c['detail']}" for c in report["checks"]
    ]
    lines += _links_section(report)
    return "\n".join(lines) + "\n"


def _slices_section(report: dict[str, Any]) -> list[str]:
    challenger, champion = report["challenger"], report["champion"]
    primary = report.get("primary_metric", "pr_auc")
    minimum = report.get("slice_min_positives")
    gated = {c["name"] for c in report["checks"] if c["name"].startswith("slice:")}
    rows, small = [], 0
    for column, values in (challenger.get("slices") or {}).items():
        for value, ours in values.items():
            theirs = ((champion or {}).get("slices") or {}).get(column, {}).get(value)
            positives = int(_value(ours, "positives") or 0)
            name = f"slice:{column}={value}"
            if name in gated:
                mark = "gated"
            elif champion is None:
                mark = "no champion to compare"
            else:
                small += 1
                mark = f"too small (< {minimum} positives)" if minimum else "too small"
            rows.append(
                f"| {column}={value} | {positives} | {_fmt(_value(theirs, primary))} | "
                f"{_fmt(_value(ours, primary))} | {mark} |"
            )
    if not rows:
        return ["", "### Slices", "", "The contract declares no `slices:`."]
    head = f"### Slices ({primary}): {len(gated)} gated, {small} too small to gate"
    return [
        "",
        head,
        "",
        "| slice | positives | champion | challenger | gate |",
        "|---|---:|---:|---:|---|",
        *rows,
    ]


def _links_section(report: dict[str, Any]) -> list[str]:
    changes = report.get("changes") or {}
    tracking = report.get("tracking_uri", "")
    lines = ["", "### Links", ""]
    lines.append(f"- MLflow, challenger: {_mlflow_link(changes.get('challenger') or {}, tracking)}")
    if report.get("champion_version"):
        lines.append(
            f"- MLflow, champion (version {report['champion_version']}): "
            f"{_mlflow_link(changes.get('champion') or {}, tracking)}"
        )
    for label, path in (report.get("reports") or {}).items():
        lines.append(f"- {label}: `{path}`")
    return lines


def run_gate(
    model_dir: Path,
    prepared_dir: Path,
    challenger_metrics: tuple[Path, Path],
    production_pin: Path,
    reports_dir: Path,
    gate_params: GateParams,
    evaluate_params: EvaluateParams,
    contract: Contract,
) -> dict[str, Any]:
    """The gate stage: judge, then write ``gate.json`` and ``gate.md`` (both or neither).

    Args:
        model_dir: The challenger's model directory.
        prepared_dir: Holds the test split both models are scored on.
        challenger_metrics: evaluate's ``metrics.json`` and ``slices.json`` for the challenger.
        production_pin: The production overlay's ``model.yaml``.
        reports_dir: Receives ``gate.json`` and ``gate.md``.
        gate_params: params.yaml ``gate:``.
        evaluate_params: params.yaml ``evaluate:`` (to score the champion alike).
        contract: The data contract (primary metric, floors, slices).

    Raises:
        GateError: The challenger's metrics are missing, or the champion could not be
            fetched, so no fair decision is possible.
    """
    challenger_model = OnnxModel(model_dir)
    metrics_path, slices_path = challenger_metrics
    for path in challenger_metrics:
        if not path.is_file():
            raise GateError(f"{path}: no challenger metrics (run `argosy evaluate` first)")
    challenger = json.loads(metrics_path.read_text())
    challenger["slices"] = json.loads(slices_path.read_text())
    pin = read_pin(production_pin)
    champion: dict[str, Any] | None = None
    champion_run = None
    if pin is not None:
        test = pd.read_parquet(prepared_dir / "test.parquet")
        with tempfile.TemporaryDirectory() as tmp:
            champion_model, champion_run = fetch_champion(pin, Path(tmp))
            champion, _ = evaluate_model(champion_model, test, evaluate_params, contract)
        champion = to_json(champion)
    decision = decide(challenger, champion, gate_params, contract.metric)
    meta = challenger_model.metadata
    import mlflow

    ours = run_facts(meta.get("mlflow_run_id")) or {
        "data_hash": meta.get("data_hash", ""),
        "git_commit": meta.get("git_commit", ""),
    }
    report = {
        "decision": "promote" if decision.promote else "reject",
        "challenger": challenger,
        "champion": champion,
        "champion_version": pin.version if pin else None,
        "reasons": [c.detail for c in decision.checks if not c.passed]
        or [c.detail for c in decision.checks],
        "checks": [c.__dict__ for c in decision.checks],
        "floors": dict(contract.metric.floors),
        "primary_metric": contract.metric.primary,
        "model": {
            "name": meta["name"],
            "uri": meta.get("mlflow_model_uri"),
            "sha256": challenger_model.sha256,
            "run_id": meta["mlflow_run_id"],
        },
        "data_hash": meta.get("data_hash", "untracked"),
        "git_commit": meta.get("git_commit", "unknown"),
        "trigger": os.environ.get(TRIGGER_ENV, "").strip()[:2000],
        "slice_min_positives": gate_params.slice_min_positives,
        "changes": lineage(ours, run_facts(champion_run), Path.cwd()),
        "tracking_uri": without_credentials(mlflow.get_tracking_uri()),
        "reports": {
            "data validation (Data Docs)": "reports/validation/data_docs/index.html",
            "metrics / slices": "reports/metrics.json, reports/slices.json",
            "PR and calibration curves (`dvc plots show`)": "reports/plots/",
        },
    }
    reports_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(report)
    staged_json = reports_dir / ".gate.json.tmp"
    staged_md = reports_dir / ".gate.md.tmp"
    staged_json.write_text(json.dumps(to_json(report), indent=2) + "\n")
    staged_md.write_text(markdown)
    staged_md.replace(reports_dir / "gate.md")
    staged_json.replace(reports_dir / "gate.json")
    return report
