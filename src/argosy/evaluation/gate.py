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
import os
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argosy.config import EvaluateParams, GateParams
from argosy.data.contract import Contract, MetricContract
from argosy.evaluation.metrics import OnnxModel, evaluate_model, measure_latency, to_json
from argosy.gatereport import (
    LATENCY,
    PROMOTE,
    REJECT,
    REPORTS_URL_ENV,
    TRIGGER_ENV,
    Check,
    GateReport,
    ModelRef,
    metric_value,
    write,
)
from argosy.modeldir import TAG_DATA_HASH, TAG_GIT_COMMIT, TAG_MODEL_URI
from argosy.pin import read_pin
from argosy.proc import GitError, git


class GateError(RuntimeError):
    """The gate could not judge (registry unreachable, champion missing): no decision is written."""


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
        value = metric_value(challenger, name)
        if value is None:
            decision.add(f"floor:{name}", False, f"{name} is missing or NaN (fails closed)")
        else:
            decision.add(
                f"floor:{name}", value >= floor, f"{name} {value:.4f} vs floor {floor:.4f}"
            )
    primary = metric.primary
    if primary not in metric.floors and metric_value(challenger, primary) is None:
        decision.add(f"defined:{primary}", False, f"{primary} is missing or NaN (fails closed)")

    latency = metric_value(challenger, LATENCY)
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

    ours, theirs = metric_value(challenger, primary), metric_value(champion, primary)
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
                metric_value(our_slice, "positives") or 0.0,
                metric_value(their_slice, "positives") or 0.0,
            )
            if positives < params.slice_min_positives:
                continue
            ours_s, theirs_s = metric_value(our_slice, primary), metric_value(their_slice, primary)
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
        "git_commit": run.data.tags.get(TAG_GIT_COMMIT, ""),
        "data_hash": run.data.tags.get(TAG_DATA_HASH, ""),
        "model_uri": run.data.tags.get(TAG_MODEL_URI, ""),
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


def without_credentials(uri: str) -> str:
    """``uri`` without a ``user:password@`` part: the report is a PR body anyone may read."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.username and not parts.password:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname or ""))


def run_gate(
    model_dir: Path,
    prepared_dir: Path,
    challenger_metrics: tuple[Path, Path],
    production_pin: Path,
    reports_dir: Path,
    gate_params: GateParams,
    evaluate_params: EvaluateParams,
    contract: Contract,
) -> GateReport:
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
    import mlflow

    from argosy.registry.models import RegistryError, download_version
    from argosy.tracking import training_run

    challenger_model = OnnxModel(model_dir)
    metrics_path, slices_path = challenger_metrics
    for path in challenger_metrics:
        if not path.is_file():
            raise GateError(f"{path}: no challenger metrics (run `argosy evaluate` first)")
    challenger = json.loads(metrics_path.read_text())
    challenger["slices"] = json.loads(slices_path.read_text())
    uri = mlflow.get_tracking_uri()
    run_id = training_run(uri, challenger_model.sha256)
    if run_id is None:
        raise GateError(
            f"no MLflow run at {without_credentials(uri)} records the model in {model_dir} "
            f"(sha256 {challenger_model.sha256[:12]}): run `argosy train` against this tracking "
            "server, or set MLFLOW_TRACKING_URI to the one that trained it"
        )
    test = prepared_dir / "test.parquet"
    pin = read_pin(production_pin)
    champion: dict[str, Any] | None = None
    champion_run = None
    # Latency is measured here, both models on this machine one after the other: a figure from
    # another run or another machine would not compare.
    challenger |= measure_latency(challenger_model, test, evaluate_params)
    if pin is not None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local, champion_run = download_version(pin, Path(tmp))
            except RegistryError as exc:
                raise GateError(f"cannot fetch champion {pin.name} v{pin.version}: {exc}") from exc
            champion_model = OnnxModel(local, expected_sha256=pin.sha256)
            champion, _ = evaluate_model(champion_model, test, evaluate_params, contract)
            champion |= measure_latency(champion_model, test, evaluate_params)
        champion = to_json(champion)
    decision = decide(challenger, champion, gate_params, contract.metric)
    ours = run_facts(run_id)
    report = GateReport(
        decision=PROMOTE if decision.promote else REJECT,
        model=ModelRef(
            name=challenger_model.metadata.name,
            sha256=challenger_model.sha256,
            run_id=run_id,
            uri=ours.get("model_uri", ""),
        ),
        challenger=to_json(challenger),
        champion=champion,
        champion_version=pin.version if pin else None,
        checks=decision.checks,
        floors=dict(contract.metric.floors),
        primary_metric=contract.metric.primary,
        data_hash=challenger_model.metadata.data_hash or "untracked",
        git_commit=ours.get("git_commit") or "unknown",
        trigger=os.environ.get(TRIGGER_ENV, "").strip()[:2000],
        slice_min_positives=gate_params.slice_min_positives,
        changes=lineage(ours, run_facts(champion_run), Path.cwd()),
        tracking_uri=without_credentials(uri),
        reports_url=os.environ.get(REPORTS_URL_ENV, "").strip(),
        reports={
            "data validation (Data Docs)": "reports/validation/data_docs/index.html",
            "metrics / slices": "reports/metrics.json, reports/slices.json",
            "PR and calibration curves (`dvc plots show`)": "reports/plots/",
        },
    )
    write(reports_dir, report)
    return report
