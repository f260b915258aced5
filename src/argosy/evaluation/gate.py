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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from argosy.config import EvaluateParams, GateParams
from argosy.data.contract import Contract, MetricContract
from argosy.evaluation.metrics import METRICS, OnnxModel, evaluate_model, to_json
from argosy.gitops.pin import ModelPin, read_pin


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


def fetch_champion(pin: ModelPin, dest: Path) -> OnnxModel:
    """Download the pinned version's serving files from MLflow and verify them.

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
    return OnnxModel(Path(local), expected_sha256=pin.sha256)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render_markdown(report: dict[str, Any]) -> str:
    """The gate report as a pull-request body: verdict, metric table, slices, checks."""
    promote = report["decision"] == "promote"
    challenger, champion = report["challenger"], report["champion"]
    model = report["model"]
    version = report.get("champion_version")
    lines = [
        f"## Model gate: {'✅ promote' if promote else '❌ reject'} `{model['name']}`",
        "",
        f"- challenger run `{model['run_id']}`, sha256 `{model['sha256'][:16]}…`",
        f"- champion: {f'version {version}' if version else 'none pinned in production yet'}",
        f"- data `{report['data_hash']}` at commit `{report['git_commit'][:12]}`",
        "",
        "| metric | champion | challenger | Δ | floor |",
        "|---|---:|---:|---:|---:|",
    ]
    floors = report.get("floors", {})
    for metric in (*METRICS, "latency_us_per_row"):
        ours, theirs = _value(challenger, metric), _value(champion, metric)
        delta = "" if ours is None or theirs is None else f"{ours - theirs:+.4f}"
        floor = floors.get(metric)
        lines.append(
            f"| {metric} | {_fmt(theirs)} | {_fmt(ours)} | {delta} | "
            f"{'' if floor is None else f'{floor:.4f}'} |"
        )
    primary = report.get("primary_metric", "pr_auc")
    lines += ["", f"### Slices ({primary})", "", "| slice | positives | champion | challenger |"]
    lines.append("|---|---:|---:|---:|")
    for column, values in (challenger.get("slices") or {}).items():
        for value, ours in values.items():
            theirs = ((champion or {}).get("slices") or {}).get(column, {}).get(value)
            positives = int(_value(ours, "positives") or 0)
            lines.append(
                f"| {column}={value} | {positives} | {_fmt(_value(theirs, primary))} | "
                f"{_fmt(_value(ours, primary))} |"
            )
    lines += ["", "### Checks", ""]
    lines += [
        f"- {'✅' if c['passed'] else '❌'} `{c['name']}`: {c['detail']}" for c in report["checks"]
    ]
    return "\n".join(lines) + "\n"


def run_gate(
    model_dir: Path,
    prepared_dir: Path,
    challenger_metrics_path: Path,
    production_pin: Path,
    reports_dir: Path,
    gate_params: GateParams,
    evaluate_params: EvaluateParams,
    contract: Contract,
) -> dict[str, Any]:
    """The gate stage: judge, then write ``gate.json`` and ``gate.md`` (both or neither).

    Raises:
        GateError: The champion could not be fetched, so no fair decision is possible.
    """
    challenger_model = OnnxModel(model_dir)
    challenger = json.loads(challenger_metrics_path.read_text())
    pin = read_pin(production_pin)
    champion: dict[str, Any] | None = None
    if pin is not None:
        test = pd.read_parquet(prepared_dir / "test.parquet")
        with tempfile.TemporaryDirectory() as tmp:
            champion_model = fetch_champion(pin, Path(tmp))
            champion, _ = evaluate_model(champion_model, test, evaluate_params, contract)
        champion = to_json(champion)
    decision = decide(challenger, champion, gate_params, contract.metric)
    meta = challenger_model.metadata
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
