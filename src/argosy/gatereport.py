"""The gate report: the champion/challenger verdict that registration, promotion and reports read.

The gate stage writes it as ``gate.json`` (:class:`GateReport`, read back with :func:`read`) and
``gate.md``, the production pull request's body (:func:`render_markdown`). ``argosy register``
logs both with the training run under :data:`ARTIFACT_DIR`, refuses a report that did not pass,
and copies :func:`description` onto the model version; ``argosy promote verify`` re-reads the
logged copy; ``argosy summary`` and the demo print :func:`render_headline`.

The report describes one run at one moment (run ids, the trigger, latency measured side by side),
so it is not a reproducible DVC output: the gate stage runs on every ``dvc repro``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from argosy.data.contract import METRIC_NAMES
from argosy.files import write_all

GATE_JSON = "gate.json"
GATE_MD = "gate.md"
#: Where the report is logged on the MLflow training run at registration.
ARTIFACT_DIR = "gate"
PROMOTE, REJECT = "promote", "reject"

#: Quality metrics of every model, in table order (evaluate writes them, the gate compares them):
#: those a contract may gate on, then the calibration.
METRICS = (*METRIC_NAMES, "brier")
LATENCY = "latency_us_per_row"
#: Metrics where a smaller value is the better model (every other one: larger is better).
LOWER_IS_BETTER = frozenset({"brier", LATENCY, "latency_us_single_row"})
TRIGGER_ENV = "ARGOSY_TRIGGER"
"""Why this pipeline ran (a push, the drift monitor and its reasons, new data): the workflow sets
it, and the PR body says it first. Unset: a run by hand."""
REPORTS_URL_ENV = "ARGOSY_REPORTS_URL"
"""Base URL where a run's ``reports/`` directory is published (an artifact store's web address);
the PR body then links each report there. Unset: the reports are named by their repository path."""
MAX_COMMITS = 15
"""Most commits listed in the PR body (the count is always given)."""


class GateReportError(ValueError):
    """A gate report is missing, malformed, or did not pass where a passed one is required."""


@dataclass(frozen=True)
class Check:
    """One rule of the gate and its outcome."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ModelRef:
    """The challenger the report judges.

    Attributes:
        name: Registered model name.
        sha256: sha256 of its ``model.onnx``.
        run_id: The MLflow run that trained it.
        uri: Its MLflow logged-model URI (what a version is registered from).
    """

    name: str
    sha256: str
    run_id: str
    uri: str


@dataclass
class GateReport:
    """``gate.json``.

    Attributes:
        decision: ``promote`` or ``reject``.
        model: The challenger.
        challenger: Its metrics on the test split, ``slices`` included.
        champion: The production model's metrics on the same split (None: no champion).
        champion_version: The production model's version (None: no champion).
        checks: Every rule and its outcome.
        floors: The contract's metric floors.
        primary_metric: The contract's primary metric.
        data_hash: DVC hash of the data trained and evaluated on.
        git_commit: Commit the challenger was trained at.
        trigger: Why the pipeline ran ("" for a run by hand).
        slice_min_positives: Slices with fewer positive labels are reported, not gated.
        changes: What changed since the champion's training (data, params, commits).
        tracking_uri: The MLflow tracking URI, without credentials.
        reports: Other reports of the run, label to path(s), comma-separated.
        reports_url: Where ``reports`` are published (:data:`REPORTS_URL_ENV`); "" for none.
        reasons: Why: the failed checks' details, or every check's when all passed (derived
            from ``checks`` when not given).
    """

    decision: str
    model: ModelRef
    challenger: dict[str, Any]
    champion: dict[str, Any] | None = None
    champion_version: str | None = None
    checks: list[Check] = field(default_factory=list)
    floors: dict[str, float] = field(default_factory=dict)
    primary_metric: str = "pr_auc"
    data_hash: str = ""
    git_commit: str = ""
    trigger: str = ""
    slice_min_positives: int | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    tracking_uri: str = ""
    reports: dict[str, str] = field(default_factory=dict)
    reports_url: str = ""
    reasons: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.reasons:
            failed = [c.detail for c in self.checks if not c.passed]
            self.reasons = failed or [c.detail for c in self.checks]

    @property
    def promoted(self) -> bool:
        """Whether the gate passed the challenger."""
        return self.decision == PROMOTE

    def require_promote(self, source: str) -> None:
        """Refuse a report that did not pass.

        Raises:
            GateReportError: The gate rejected the model.
        """
        if not self.promoted:
            reasons = "; ".join(self.reasons) or "no reason given"
            raise GateReportError(
                f"{source}: the gate rejected this model ({reasons}); refusing to continue"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (strict: NaN and infinity written as null)."""
        return _strict(asdict(self))

    @classmethod
    def from_dict(cls, doc: Any, source: str) -> GateReport:
        """Read a parsed ``gate.json``.

        Raises:
            GateReportError: It is not a gate report (no decision, no model, a model field
                missing, checks that are not a list of checks).
        """
        model = doc.get("model") if isinstance(doc, dict) else None
        if not isinstance(model, dict) or doc.get("decision") not in (PROMOTE, REJECT):
            raise GateReportError(f"{source}: not a gate report (needs decision and model)")
        missing = [k for k in ("name", "uri", "sha256", "run_id") if not model.get(k)]
        if missing:
            raise GateReportError(f"{source}: model is missing {', '.join(missing)}")
        try:
            checks = [
                Check(str(c["name"]), bool(c["passed"]), str(c["detail"]))
                for c in doc.get("checks") or []
            ]
            challenger = dict(doc.get("challenger") or {})
            champion = doc.get("champion")
            minimum = doc.get("slice_min_positives")
            return cls(
                decision=doc["decision"],
                model=ModelRef(*(str(model[k]) for k in ("name", "sha256", "run_id", "uri"))),
                challenger=challenger,
                champion=None if champion is None else dict(champion),
                champion_version=None
                if doc.get("champion_version") is None
                else str(doc["champion_version"]),
                checks=checks,
                floors={str(k): float(v) for k, v in (doc.get("floors") or {}).items()},
                primary_metric=str(doc.get("primary_metric") or "pr_auc"),
                data_hash=str(doc.get("data_hash") or ""),
                git_commit=str(doc.get("git_commit") or ""),
                trigger=str(doc.get("trigger") or ""),
                slice_min_positives=None if minimum is None else int(minimum),
                changes=dict(doc.get("changes") or {}),
                tracking_uri=str(doc.get("tracking_uri") or ""),
                reports={str(k): str(v) for k, v in (doc.get("reports") or {}).items()},
                reports_url=str(doc.get("reports_url") or ""),
                reasons=[str(r) for r in doc.get("reasons") or []],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GateReportError(f"{source}: not a gate report ({exc!r})") from None


def parse(text: str, source: str) -> GateReport:
    """A gate report from the text of a ``gate.json``.

    Raises:
        GateReportError: Not JSON, or not a gate report.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GateReportError(f"{source}: not valid JSON: {exc}") from None
    return GateReport.from_dict(doc, source)


def read(path: Path) -> GateReport:
    """Read ``gate.json`` (``reports/gate.json`` in the pipeline).

    Raises:
        GateReportError: The file is missing or not a usable gate report.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GateReportError(
            f"{path}: no gate report. Run the pipeline (`dvc repro` or `make run`) first; "
            "only a model that passed the gate can be registered or promoted."
        ) from None
    return parse(text, str(path))


def write(reports_dir: Path, report: GateReport) -> None:
    """Write ``gate.md`` and then ``gate.json`` into ``reports_dir``.

    Both are staged before either replaces the old one, and ``gate.json`` (what registration
    reads) goes last: a failure leaves the old report in force.
    """
    write_all(
        {
            reports_dir / GATE_MD: render_markdown(report),
            reports_dir / GATE_JSON: json.dumps(report.to_dict(), indent=2) + "\n",
        }
    )


def _strict(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metric_value(metrics: dict[str, Any] | None, name: str) -> float | None:
    """A metric's value when it is a finite number; None when missing, NaN or not a number."""
    if metrics is None:
        return None
    value = metrics.get(name)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


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


def _render(report: dict[str, Any], full: bool = True) -> str:
    """The gate report as a pull-request body a reviewer decides from (``full``: all sections).

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
    for metric in (*METRICS, LATENCY):
        ours, theirs = metric_value(challenger, metric), metric_value(champion, metric)
        delta = "" if ours is None or theirs is None else f"{ours - theirs:+.4f}"
        floor = floors.get(metric)
        lines.append(
            f"| {metric} | {_direction(metric)} | {_fmt(theirs)} | {_fmt(ours)} | {delta} | "
            f"{'' if floor is None else f'{floor:.4f}'} |"
        )
    if not full:
        return "\n".join(lines) + "\n"
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
            positives = int(metric_value(ours, "positives") or 0)
            name = f"slice:{column}={value}"
            if name in gated:
                mark = "gated"
            elif champion is None:
                mark = "no champion to compare"
            else:
                small += 1
                mark = f"too small (< {minimum} positives)" if minimum else "too small"
            rows.append(
                f"| {column}={value} | {positives} | {_fmt(metric_value(theirs, primary))} | "
                f"{_fmt(metric_value(ours, primary))} | {mark} |"
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
    base = str(report.get("reports_url") or "").rstrip("/")
    for label, paths in (report.get("reports") or {}).items():
        named = [p.strip() for p in str(paths).split(",") if p.strip()]
        shown = [f"[{p}]({base}/{p.removeprefix('reports/')})" if base else f"`{p}`" for p in named]
        lines.append(f"- {label}: {', '.join(shown)}")
    return lines


def _description(gate: dict[str, Any]) -> str:
    """The version's description in MLflow: the gate's verdict, why it ran, and its numbers.

    Markdown (MLflow renders it): the decision against which champion, the trigger, the primary
    metric against the champion's and its floor, the checks, and the data and commit.
    """
    primary = gate.get("primary_metric", "pr_auc")
    ours = (gate.get("challenger") or {}).get(primary)
    theirs = (gate.get("champion") or {}).get(primary)
    floor = (gate.get("floors") or {}).get(primary)
    checks = gate.get("checks") or []
    failed = [c for c in checks if not c.get("passed")]
    champion = gate.get("champion_version")
    lines = [
        f"**Gate: {gate.get('decision', '?')}** against "
        + (f"champion version {champion}" if champion else "no champion (first model)"),
        "",
        f"- why it ran: {gate.get('trigger') or 'a pipeline run by hand'}",
        f"- {primary}: {_num(ours)}"
        + (f" (champion {_num(theirs)})" if theirs is not None else "")
        + (f", floor {_num(floor)}" if floor is not None else ""),
        f"- checks: {len(checks) - len(failed)} of {len(checks)} passed"
        + "".join(f"; failed: {c.get('detail', c.get('name'))}" for c in failed),
        f"- data `{gate.get('data_hash', '')}`, commit `{str(gate.get('git_commit', ''))[:12]}`",
    ]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def render_markdown(report: GateReport) -> str:
    """``gate.md``: the pull-request body a reviewer decides from in 30 seconds.

    In order: the verdict and why the pipeline ran; the reasons behind the verdict; what changed
    since the champion's training (data, params, commits); the metric table with each metric's
    direction; the slices, each marked gated or too small to gate; every check; links.
    """
    return _render(report.to_dict())


def render_headline(report: GateReport) -> str:
    """The verdict, its reasons, what changed and the metric table (``argosy summary``)."""
    return _render(report.to_dict(), full=False)


def description(report: GateReport) -> str:
    """The model version's description in MLflow (Markdown): verdict, trigger, numbers."""
    return _description(report.to_dict())
