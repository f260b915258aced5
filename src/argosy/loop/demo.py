"""``argosy demo``: the whole loop on one machine, in a temporary directory, with no network.

Baseline data → ``dvc repro`` → ``argosy register`` → ``argosy promote --env staging`` (a commit on
a bare origin) → production pin (its promotion branch merged locally, standing in for the human
approval) → the model server on 127.0.0.1 → a shifted period replayed over HTTP → ``argosy
monitor`` → the newly labelled period added with ``argosy retrain`` → the gate of the challenger
against the production champion → the production pull request body (``reports/gate.md``).

Every step runs the same ``argosy``/``dvc``/``git`` command a person would, in a clone of this
repository's ``main`` (committed state; uncommitted edits are not part of the clone) whose origin
is a bare repository beside it. ``run_demo`` is the pure core (explicit arguments, a result
object); ``demo_command`` is the Typer wrapper.

The data come from the clone's data contract (``contract.yaml``), whatever it describes, through
:mod:`argosy.data.synthetic`: a baseline period, and a later period drawn with ``shift`` (the
features drift, the label rule stays) that is replayed through the server and then, labelled,
fed to ``argosy monitor --labels`` and ``argosy retrain``. The demo's setup commit sets the clone's
``source: files``: ``data/`` is then the demo's own files, pinned by the ``data.dvc`` that ``dvc
add data`` writes, which is exactly what ``files`` means (``argosy ensure-data`` finds them present
and never regenerates or pulls anything). With ``source: simulate`` left in place, ``data.dvc``
would pin data that the contract claims comes from the example's simulator, and ``ensure-data``
on a fresh checkout of the demo's origin would regenerate the simulator's data and refuse it.
Nothing here knows the columns: the requests, the labels file and the monitor's sizes are all
read from the contract.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from argosy import gatereport, proc
from argosy.gatereport import GateReport
from argosy.modeldir import read_metadata

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from argosy.data.contract import Contract
    from argosy.gitops.promote import Outcome

REPO = Path(__file__).resolve().parents[3]
DEMO_REPOSITORY = "argosy-demo/argosy"
"""The GitHub repository the demo's links name (no request is ever sent there)."""
STEPS = 11
Progress = Callable[[int, str], None]


class DemoError(RuntimeError):
    """A step of the demo failed; the message names the command and its last output lines."""


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and places of one demo run.

    Attributes:
        workdir: Everything is written under it (origin, clone, MLflow, logs, reports).
        source: The git repository whose ``main`` is cloned.
        baseline_rows: Rows of the baseline period (the first training set).
        baseline_days: Length of the baseline period.
        drift_rows: Rows of the shifted period replayed through the server.
        drift_days: Length of the shifted period (it starts where the baseline ends).
        shift: How far that period drifts (``argosy.data.synthetic.synthesize``'s ``shift``:
            0 none, 1 the categorical mixes turned around).
        seed: Seed of the baseline; the shifted period uses ``seed + 1``.
        start: First day of the baseline; None: ``argosy.data.synthetic.DEFAULT_START``, or the
            contract's ``time_range.min`` when both periods do not fit after it.
        batch_rows: Rows per V2 infer request.
        params_overrides: ``{section: {key: value}}`` written into the clone's params.yaml
            before the first run (smaller models in tests).
        timeout_s: Longest any one command may take.
    """

    workdir: Path
    source: Path = REPO
    baseline_rows: int = 100_000
    baseline_days: int = 60
    drift_rows: int = 40_000
    drift_days: int = 14
    shift: float = 0.5
    seed: int = 20260101
    start: date | None = None
    batch_rows: int = 500
    params_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timeout_s: float = 600.0


@dataclass
class DemoResult:
    """What the demo did, for the summary and the tests.

    Attributes:
        workdir: The demo's directory.
        origin: The bare origin repository.
        clone: The working clone.
        staging_commit: Origin commit that pinned the first model in staging.
        production_branch: The first model's promotion branch (merged locally).
        served_rows: Rows replayed through the server and answered.
        logged_rows: Rows the server wrote to the prediction log.
        monitor: The monitor's ``decision.json``.
        retrained: Whether the labelled period was added and the pipeline re-ran.
        champion_sha256: sha256 of the production model the challenger was gated against.
        challenger_sha256: sha256 of the retrained model.
        gate: The retrained model's gate report.
        production_branch_v2: The challenger's promotion branch ("" when the gate rejected it).
        production_body: The pull request body that branch carries.
        reports: Named links to the reports a person reads.
        summary: The summary Markdown file.
        elapsed_s: Wall time of the whole run.
    """

    workdir: Path
    origin: Path
    clone: Path
    staging_commit: str = ""
    production_branch: str = ""
    served_rows: int = 0
    logged_rows: int = 0
    monitor: dict[str, Any] = field(default_factory=dict)
    retrained: bool = False
    champion_sha256: str = ""
    challenger_sha256: str = ""
    gate: GateReport | None = None
    production_branch_v2: str = ""
    production_body: str = ""
    reports: dict[str, Path] = field(default_factory=dict)
    summary: Path | None = None
    elapsed_s: float = 0.0


# ---------------------------------------------------------------- helpers


def demo_env(workdir: Path) -> dict[str, str]:
    """The environment of every command: this interpreter's bin first, MLflow in ``workdir``.

    GitHub tokens are removed so promotion to production stops after pushing its branch.
    """
    from argosy.gitops.github import TOKEN_ENV

    env = {k: v for k, v in os.environ.items() if k not in TOKEN_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    env["GITHUB_REPOSITORY"] = DEMO_REPOSITORY
    env["DVC_NO_ANALYTICS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env[key] = "Argosy demo"
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env[key] = "demo@argosy.invalid"
    return env


def sh(
    cwd: Path,
    env: Mapping[str, str],
    *command: str,
    timeout: float = 600.0,
    tick: Callable[[str, float], None] | None = None,
) -> str:
    """Run one command with the demo's environment; return its stdout.

    Raises:
        DemoError: Non-zero exit or timeout, with the command's last output lines.
    """
    try:
        return proc.run(command, cwd, env=env, timeout=timeout, tick=tick)
    except proc.CommandError as exc:
        raise DemoError(str(exc)) from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _override_params(path: Path, overrides: Mapping[str, Mapping[str, Any]]) -> None:
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        params.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _commit_and_push(clone: Path, env: Mapping[str, str], message: str, *paths: str) -> None:
    sh(clone, env, "git", "add", "--", *paths)
    if sh(clone, env, "git", "status", "--porcelain", "--", *paths).strip():
        sh(clone, env, "git", "commit", "--quiet", "-m", message, "--", *paths)
    sh(clone, env, "git", "push", "--quiet", "origin", "main")


def _gate(clone: Path) -> GateReport:
    try:
        return gatereport.read(clone / "reports" / gatereport.GATE_JSON)
    except gatereport.GateReportError as exc:
        raise DemoError(str(exc)) from None


def _registry(env: Mapping[str, str]) -> MlflowClient:
    from argosy.registry.models import RegistryError, client

    try:
        return client(env["MLFLOW_TRACKING_URI"])
    except RegistryError as exc:
        raise DemoError(str(exc)) from None


def _register(clone: Path, mlflow_client: MlflowClient) -> None:
    """``argosy register``: the gate-passed model as a version, alias candidate."""
    from argosy.registry.models import RegistryError, register

    try:
        register(clone / "reports" / gatereport.GATE_JSON, mlflow_client)
    except (RegistryError, gatereport.GateReportError) as exc:
        raise DemoError(f"argosy register: {exc}") from None


def _promote(clone: Path, mlflow_client: MlflowClient, model: str, env: str) -> Outcome:
    """``argosy promote --env ENV`` of the candidate; production opens no pull request."""
    from argosy.gitops.github import GitHubError
    from argosy.gitops.promote import PromotionError
    from argosy.loop import promotion
    from argosy.registry.models import RegistryError

    try:
        _, outcome, _ = promotion.promote(
            mlflow_client,
            clone,
            env,
            model,
            reports=clone / "reports",
            github=promotion.GitHubTarget(DEMO_REPOSITORY),
            pull_request=False,
        )
    except (RegistryError, PromotionError, GitHubError, proc.GitError) as exc:
        raise DemoError(f"argosy promote --env {env}: {exc}") from None
    return outcome


def _sync(clone: Path, mlflow_client: MlflowClient, model: str) -> None:
    """``argosy registry sync``: the registry's aliases follow what git pins."""
    from argosy.loop.promotion import sync_registry
    from argosy.pin import PinError
    from argosy.registry.models import RegistryError

    try:
        sync_registry(mlflow_client, clone, "HEAD", model)
    except (RegistryError, PinError, proc.GitError) as exc:
        raise DemoError(f"argosy registry sync: {exc}") from None


_SOURCE_LINE = re.compile(r"^source:[ \t]*\S+[ \t]*(#.*)?$", re.MULTILINE)


def use_own_files(contract_text: str) -> str:
    """The contract's text with ``source: files`` (comments and layout kept).

    Raises:
        DemoError: The text has no top-level ``source:`` line to rewrite.
    """
    if not _SOURCE_LINE.search(contract_text):
        raise DemoError("contract.yaml has no top-level `source:` line")
    return _SOURCE_LINE.sub("source: files", contract_text, count=1)


def window_start(contract: Contract, requested: date | None, days: int) -> date:
    """The baseline's first day: both periods (``days`` in all) fit inside ``time_range``.

    ``requested`` when given, else ``argosy.data.synthetic.DEFAULT_START`` when it fits, else the
    contract's ``time_range.min``.

    Raises:
        DemoError: ``requested`` does not fit.
    """
    from argosy.data.synthetic import DEFAULT_START

    if contract.time_range is None:
        return requested or DEFAULT_START
    first = date.fromisoformat(contract.time_range.min)
    last = date.fromisoformat(contract.time_range.max)

    def fits(day: date) -> bool:
        return first <= day and day + timedelta(days=days) <= last

    if requested is not None:
        if not fits(requested):
            raise DemoError(
                f"{requested} + {days} days is outside contract.yaml time_range {first} .. {last}"
            )
        return requested
    return DEFAULT_START if fits(DEFAULT_START) else first


def monitor_contract(
    raw: Mapping[str, Any], logged_rows: int, labelled_rows: int
) -> dict[str, Any]:
    """The contract the demo's monitor reads: window sizes scaled down to one replayed period.

    ``monitoring.min_rows`` (and ``min_labelled_rows``) are sized for production traffic; the
    demo replays one period, so each is capped at half of what that period holds.
    """
    out = copy.deepcopy(dict(raw))
    sizes = out["monitoring"]
    sizes["min_rows"] = min(int(sizes["min_rows"]), max(1, logged_rows // 2))
    sizes["min_labelled_rows"] = min(int(sizes["min_labelled_rows"]), max(1, labelled_rows // 2))
    return out


# ---------------------------------------------------------------- serving and replay


def wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    """Poll ``/v2/health/ready`` until 200.

    Raises:
        DemoError: The server exited or stayed not-ready for ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the model server exited with status {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the model server was not ready within {timeout_s:.0f} s")


def request_columns(frame: pd.DataFrame, contract: Contract) -> list[tuple[str, str, list[Any]]]:
    """Each V2 input tensor of ``frame``'s rows as (name, datatype, values), as a client sends it.

    One tensor per feature, named after it: a categorical one as ``BYTES`` (the raw strings), a
    boolean one as ``BOOL``, a numeric or integer one as ``FP32``; ``None`` (JSON null) where a
    value is missing. Then the contract's id column as ``BYTES`` when it declares one.
    """
    import numpy as np

    columns: list[tuple[str, str, list[Any]]] = []
    for spec in contract.specs:
        column = frame[spec.name]
        if spec.categorical:
            missing = column.isna().tolist()
            values = [None if m else str(v) for v, m in zip(column.tolist(), missing, strict=True)]
            columns.append((spec.name, "BYTES", values))
            continue
        if spec.type == "boolean":
            codes = spec.encode_values(column.to_numpy(dtype=object)).tolist()
            columns.append((spec.name, "BOOL", [None if c != c else c == 1.0 for c in codes]))
            continue
        numbers = column.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        columns.append((spec.name, "FP32", [None if v != v else v for v in numbers]))
    if contract.id:
        columns.append((contract.id, "BYTES", frame[contract.id].astype(str).tolist()))
    return columns


def replay(port: int, model: str, frame: pd.DataFrame, contract: Contract, batch_rows: int) -> int:
    """Send ``frame``'s rows as V2 infer requests of ``batch_rows`` rows, in order.

    Returns:
        Rows answered.

    Raises:
        DemoError: A request was not answered with 200.
    """
    columns = request_columns(frame, contract)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    answered = 0
    try:
        for start in range(0, len(frame), batch_rows):
            end = min(start + batch_rows, len(frame))
            body = {
                "inputs": [
                    {
                        "name": name,
                        "datatype": datatype,
                        "shape": [end - start],
                        "data": values[start:end],
                    }
                    for name, datatype, values in columns
                ]
            }
            conn.request(
                "POST",
                f"/v2/models/{model}/infer",
                body=json.dumps(body),
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise DemoError(f"infer answered {response.status}: {payload[:300]!r}")
            answered += end - start
    finally:
        conn.close()
    return answered


def stop(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM (the server drains and flushes its prediction log), then SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _logged_rows(root: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in root.rglob("*.parquet"))


# ---------------------------------------------------------------- the loop


def _say(progress: Progress | None, step: int, message: str) -> None:
    if progress is not None:
        progress(step, message)


def run_demo(config: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Run the loop end to end under ``config.workdir`` and write ``summary.md`` there.

    Args:
        config: Sizes and places.
        progress: Called with (step number, message) before each step, and with step 0
            while a long command of the step still runs.

    Returns:
        What happened, with links to the reports.

    Raises:
        DemoError: A step failed (the message says which and why).
    """
    demo = _Demo(config, progress)
    demo.clone_repository()  # 1
    demo.train_baseline()  # 2
    demo.promote_first_model()  # 3, 4
    period, replay_end = demo.serve_and_replay()  # 5, 6
    labelled = demo.monitor(period, replay_end)  # 7
    demo.retrain(labelled)  # 8
    demo.gate_and_propose()  # 9, 10
    return demo.summarize()  # 11


class _Demo:
    """One demo run: its places, environment and what each step found."""

    def __init__(self, config: DemoConfig, progress: Progress | None) -> None:
        self.config = config
        self.progress = progress
        self.began = time.monotonic()
        self.work = config.workdir.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.origin, self.clone = self.work / "origin.git", self.work / "repo"
        if self.origin.exists() or self.clone.exists():
            raise DemoError(f"{self.work} already holds a demo run: pick an empty directory")
        self.env = demo_env(self.work)
        self.result = DemoResult(workdir=self.work, origin=self.origin, clone=self.clone)
        self.monitoring = self.work / "reports" / "monitoring"
        self.first_reports = self.work / "reports" / "first-model"

    def say(self, step: int, message: str) -> None:
        _say(self.progress, step, message)

    def run(
        self, *command: str, cwd: Path | None = None, extra: Mapping[str, str] | None = None
    ) -> str:
        """One command in the clone (or ``cwd``), with the demo's environment; its stdout."""

        def still_running(text: str, seconds: float) -> None:
            if self.progress is not None:
                self.progress(0, f"  ... `{text[:60]}` still running ({seconds:.0f} s)")

        env = {**self.env, **(extra or {})}
        return sh(
            cwd or self.clone, env, *command, timeout=self.config.timeout_s, tick=still_running
        )

    def clone_repository(self) -> None:
        """1. A bare origin cloned from the source's main, a working clone, the contract."""
        from argosy.data.contract import ContractError, load_contract

        config, clone = self.config, self.clone
        self.say(1, f"clone {config.source} (main) to a bare origin and a working copy")
        self.run(
            "git",
            "clone",
            "--quiet",
            "--bare",
            "--single-branch",
            "--branch",
            "main",
            str(config.source),
            str(self.origin),
            cwd=self.work,
        )
        self.run("git", "clone", "--quiet", str(self.origin), str(clone), cwd=self.work)
        # The throwaway clone commits as the demo, whatever identity (if any) this machine has.
        self.run("git", "config", "user.name", "Argosy demo")
        self.run("git", "config", "user.email", "demo@argosy.invalid")
        self.contract_path = clone / "contract.yaml"
        try:
            self.contract_path.write_text(use_own_files(self.contract_path.read_text()))
            self.contract = load_contract(self.contract_path)
        except (OSError, ContractError) as exc:
            raise DemoError(f"the clone's data contract: {exc}") from None
        if config.baseline_rows < self.contract.rows.min:
            raise DemoError(
                f"contract.yaml rows.min is {self.contract.rows.min}: the baseline needs at least "
                f"that many rows, not {config.baseline_rows}"
            )
        setup = ["contract.yaml"]
        if config.params_overrides:
            _override_params(clone / "params.yaml", config.params_overrides)
            setup.append("params.yaml")
        _commit_and_push(
            clone, self.env, "Demo: synthetic data from contract.yaml (source: files)", *setup
        )
        self.start = window_start(
            self.contract, config.start, config.baseline_days + config.drift_days
        )

    def train_baseline(self) -> None:
        """2. The baseline period, pinned with DVC, and the pipeline; its model must pass."""
        from argosy.data import synthetic

        config, clone = self.config, self.clone
        self.say(
            2,
            f"synthesize {config.baseline_rows:,} baseline rows from contract.yaml; "
            "dvc add data; dvc repro",
        )
        try:
            baseline = synthetic.synthesize(
                self.contract,
                config.baseline_rows,
                seed=config.seed,
                start=self.start,
                days=config.baseline_days,
            )
        except synthetic.SyntheticError as exc:
            raise DemoError(f"synthetic baseline: {exc}") from None
        shutil.rmtree(clone / "data", ignore_errors=True)
        synthetic.write(baseline, clone / "data" / f"baseline-{self.start:%Y%m%d}.parquet")
        self.run("dvc", "add", "--quiet", "data")
        self.run("dvc", "repro", "--quiet")
        _commit_and_push(
            clone, self.env, "Demo: baseline data and pipeline lock", "data.dvc", "dvc.lock"
        )
        first = _gate(clone)
        if not first.promoted:
            raise DemoError(f"the first model failed its gate: {'; '.join(first.reasons)}")
        shutil.copytree(clone / "reports", self.first_reports)

    def promote_first_model(self) -> None:
        """3-4. Register, pin in staging, promote to production and merge its branch."""
        clone, name = self.clone, self.contract.name
        self.say(3, "argosy register; argosy promote --env staging (commit on origin/main)")
        self.mlflow_client = _registry(self.env)
        _register(clone, self.mlflow_client)
        staging = _promote(clone, self.mlflow_client, name, "staging")
        self.result.staging_commit = staging.commit or ""

        # the production branch, merged here as a reviewer's approval would merge it
        self.say(4, "argosy promote --env production; merge its branch (the human approval)")
        branch = _promote(clone, self.mlflow_client, name, "production").branch
        if not branch:
            raise DemoError("`argosy promote --env production` pushed no branch")
        self.result.production_branch = branch
        self.run("git", "fetch", "--quiet", "origin")
        self.run("git", "merge", "--quiet", "--ff-only", "origin/main")
        self.run(
            "git",
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            f"Merge {branch}: approved in the demo (stands in for the pull request review)",
            f"origin/{branch}",
        )
        self.run("git", "push", "--quiet", "origin", "main")
        # The registry's aliases follow what git pins (as the platform's sync job does).
        _sync(clone, self.mlflow_client, name)
        self.result.champion_sha256 = read_metadata(clone / "models").sha256

    def serve_and_replay(self) -> tuple[pd.DataFrame, datetime]:
        """5-6. Serve the production model with a prediction log; replay a shifted period.

        Returns:
            The replayed period (with its labels) and when the replay ended.
        """
        from argosy.config import load_params
        from argosy.data import synthetic

        config, work = self.config, self.work
        window = load_params(self.clone / "params.yaml").monitor.window_minutes
        self.window_s = timedelta(minutes=window).total_seconds()
        self.say(5, "start the model server on 127.0.0.1 with a prediction log")
        self.predlog = work / "predictions"
        self.served_model = work / "served-model"
        shutil.copytree(self.clone / "models", self.served_model)
        port = free_port()
        (work / "logs").mkdir(exist_ok=True)
        server_log = (work / "logs" / "server.log").open("w")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "argosy.serving",
                "--model-dir",
                str(self.served_model),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--grpc-port",
                "off",
                "--prediction-log",
                str(self.predlog),
                "--log-flush-seconds",
                "1",
                "--log-capacity-rows",
                str(max(100_000, 2 * config.drift_rows)),
                "--log-level",
                "WARNING",
            ],
            cwd=work,
            env=self.env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(port, server)
            # 6. a shifted period through the server
            self.drift_start = self.start + timedelta(days=config.baseline_days)
            self.say(
                6,
                f"replay {config.drift_rows:,} rows shifted by {config.shift:g} over HTTP "
                f"(V2 infer, one tensor per feature, {config.batch_rows} rows a request)",
            )
            try:
                period = synthetic.synthesize(
                    self.contract,
                    config.drift_rows,
                    seed=config.seed + 1,
                    start=self.drift_start,
                    days=config.drift_days,
                    shift=config.shift,
                )
            except synthetic.SyntheticError as exc:
                raise DemoError(f"synthetic shifted period: {exc}") from None
            name = read_metadata(self.served_model).name
            began_at, step = time.time(), self.window_s
            served = replay(port, name, period, self.contract, config.batch_rows)
            if math.floor(began_at / step) != math.floor(time.time() / step):
                # The replay crossed a window boundary: once more, wholly inside the new window.
                served += replay(port, name, period, self.contract, config.batch_rows)
            self.result.served_rows = served
            replay_end = datetime.now(UTC)
        finally:
            stop(server)
            server_log.close()
        self.result.logged_rows = _logged_rows(self.predlog) if self.predlog.exists() else 0
        return period, replay_end

    def monitor(self, period: pd.DataFrame, replay_end: datetime) -> Path:
        """7. The monitor over the replayed window, with the period's late labels.

        Returns:
            The period written as a labelled Parquet file, for the retraining step.
        """
        from argosy.data import synthetic

        work, contract, monitoring = self.work, self.contract, self.monitoring
        self.say(7, "argosy monitor: drift of the replayed window (Evidently) and its late labels")
        step = self.window_s
        as_of = datetime.fromtimestamp(math.ceil(replay_end.timestamp() / step) * step, UTC)
        # One replayed window stands for the consecutive windows drift must hold in production.
        base = yaml.safe_load((self.clone / "params.yaml").read_text())
        base["monitor"]["consecutive_windows"] = 1
        monitor_params = work / "monitor-params.yaml"
        monitor_params.write_text(yaml.safe_dump(base, sort_keys=False))
        monitor_terms = work / "monitor-contract.yaml"
        monitor_terms.write_text(
            yaml.safe_dump(
                monitor_contract(
                    yaml.safe_load(self.contract_path.read_text()),
                    self.result.logged_rows,
                    len(period),
                ),
                sort_keys=False,
            )
        )
        incoming = work / "incoming"
        labelled = synthetic.write(period, incoming / f"shifted-{self.drift_start:%Y%m%d}.parquet")
        labels: list[str] = []
        if contract.id:
            labels_file = incoming / "labels.parquet"
            period[[contract.id, contract.label.column]].to_parquet(labels_file)
            labels = ["--labels", str(labels_file)]
        self.run(
            "argosy",
            "monitor",
            "--prediction-log",
            str(self.predlog),
            "--reference",
            str(self.clone / "artifacts" / "prepared" / "reference.parquet"),
            "--model-dir",
            str(self.served_model),
            *labels,
            "--state",
            str(monitoring / "state.json"),
            "--reports",
            str(monitoring),
            "--as-of",
            as_of.isoformat(),
            "--params",
            str(monitor_params),
            "--contract",
            str(monitor_terms),
        )
        self.result.monitor = json.loads((monitoring / "decision.json").read_text())
        if self.result.monitor["decision"] != "retrain":
            raise DemoError(
                f"the monitor decided {self.result.monitor['decision']!r}, not 'retrain'"
            )
        return labelled

    def retrain(self, labelled: Path) -> None:
        """8. The newly labelled period into data/, re-pinned, and the pipeline again."""
        self.say(8, f"argosy retrain {labelled.name} (append to data/, dvc add, dvc repro)")
        # Why the pipeline runs, as the drift monitor hands it to the training workflow.
        trigger = (self.monitoring / "trigger").read_text().strip()
        self.run("argosy", "retrain", str(labelled), extra={gatereport.TRIGGER_ENV: trigger})
        _commit_and_push(
            self.clone, self.env, "Demo: add the newly labelled period", "data.dvc", "dvc.lock"
        )
        self.result.retrained = True
        self.result.challenger_sha256 = read_metadata(self.clone / "models").sha256

    def gate_and_propose(self) -> None:
        """9-10. The challenger's gate against the champion; its production branch if passed."""
        result, name = self.result, self.contract.name
        result.gate = _gate(self.clone)
        self.say(9, f"gate vs the production champion: {result.gate.decision}")
        self.say(10, "argosy register; argosy promote --env production (pull request body)")
        if result.gate.promoted:
            _register(self.clone, self.mlflow_client)
            outcome = _promote(self.clone, self.mlflow_client, name, "production")
            result.production_branch_v2 = outcome.branch or ""
            result.production_body = outcome.body or ""
            _sync(self.clone, self.mlflow_client, name)

    def summarize(self) -> DemoResult:
        """11. The report links and summary.md."""
        clone, monitoring, result = self.clone, self.monitoring, self.result
        self.say(11, "write the summary")
        result.reports = {
            "data validation (Data Docs)": _first(
                clone / "reports/validation/data_docs", "index.html"
            ),
            "drift report (Evidently)": monitoring / "report.html",
            "monitor summary": monitoring / "summary.md",
            "first model's gate": self.first_reports / "gate.md",
            "production pull request body (gate)": clone / "reports" / "gate.md",
            "gate result": clone / "reports" / "gate.json",
            "server log": self.work / "logs" / "server.log",
        }
        result.elapsed_s = time.monotonic() - self.began
        result.summary = self.work / "summary.md"
        result.summary.write_text(render_summary(result))
        return result


def _first(root: Path, name: str) -> Path:
    found = sorted(root.rglob(name), key=lambda p: len(p.parts))
    return found[0] if found else root


def render_summary(result: DemoResult) -> str:
    """The summary Markdown: milestones, the monitor's finding, the gate, and report links."""
    monitor = result.monitor
    share = monitor.get("drift_share")
    gate = result.gate
    champion = (gate.champion if gate else None) or {}
    challenger = gate.challenger if gate else {}
    lines = [
        "# Argosy demo",
        "",
        f"Directory: `{result.workdir}` ({result.elapsed_s:.0f} s)",
        "",
        "| step | result |",
        "|---|---|",
        f"| staging pin | commit `{result.staging_commit[:12]}` on origin/main |",
        f"| production pin | `{result.production_branch}` merged locally (stands in for the "
        "pull request approval) |",
        f"| replay | {result.served_rows:,} rows answered, {result.logged_rows:,} logged |",
        f"| monitor | {monitor.get('decision')}"
        + ("" if share is None else f", drift share {share:.2f}")
        + f"; drifted: {', '.join(monitor.get('drifted_columns', [])[:6]) or 'none'} |",
        f"| retrain | {'labelled period added, pipeline re-run' if result.retrained else 'no'} |",
        f"| gate | {gate.decision if gate else 'not run'}: challenger "
        f"`{result.challenger_sha256[:12]}` vs champion `{result.champion_sha256[:12]}` |",
    ]
    primary = gate.primary_metric if gate else None
    for metric in dict.fromkeys([primary, *gatereport.METRICS]):
        ours, was = challenger.get(metric), champion.get(metric)
        if isinstance(ours, int | float):
            lines.append(
                f"| {metric} | {ours:.4f}"
                + (f" (champion {was:.4f})" if isinstance(was, int | float) else "")
                + " |"
            )
    lines += ["", "## Reports", ""]
    lines += [f"- {name}: {path.as_uri()}" for name, path in result.reports.items()]
    if result.production_branch_v2:
        lines += [
            "",
            f"## `argosy promote --env production`: branch `{result.production_branch_v2}`",
            "",
            "The pull request it would open (no GITHUB_TOKEN in the demo) has this body:",
            "",
            result.production_body.strip(),
        ]
    return "\n".join(lines) + "\n"
