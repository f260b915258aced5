"""The compiled training template, run task by task by the local harness, equals `dvc repro`.

Real git, DVC (a directory remote standing in for S3), Great Expectations, XGBoost/ONNX and MLflow
on SQLite. The exit handler's GitHub commit status goes to a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from argosy.pin import parse_pin

from ..conftest import REPO, venv_env
from ..signing.keys import make_key
from .conftest import by_kind
from .harness import LocalDagRun

pytestmark = pytest.mark.slow

GIT = ["git", "-c", "user.name=Argosy Test", "-c", "user.email=test@example.com"]
TOKEN = "test-token"


def sh(cwd: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, env=env or venv_env(), timeout=600
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def digests(root: Path) -> dict[str, str]:
    """sha256 of the deterministic outputs: prepared splits, native model, ONNX model.

    metadata.json carries the MLflow run id and differs by design.
    """
    files = [
        *sorted((root / "artifacts/prepared").rglob("*.parquet")),
        root / "models/model.ubj",
        root / "models/model.onnx",
    ]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


class StatusServer(BaseHTTPRequestHandler):
    """Records GitHub commit-status requests and answers like GitHub."""

    received: list[dict] = []  # noqa: RUF012 - the tests read what the handler recorded

    def do_POST(self) -> None:
        """Record the status and answer 201 like GitHub."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(
            {"path": self.path, "auth": self.headers["Authorization"], "body": body}
        )
        payload = json.dumps({"state": body["state"]}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


ROWS = 6000
"""Transactions in the test repository: enough for the data gate's bounds and a real model."""

SMALL = {
    "train": {"n_estimators": 40, "early_stopping_rounds": 10},
    "evaluate": {"latency_rows": 200, "latency_repeats": 3},
}
"""Overrides that keep every stage real but small (the hashes compare runs, not model quality)."""


def edit_params(root: Path, overrides: dict[str, dict]) -> None:
    """Merge ``{section: {key: value}}`` into the temporary repository's params.yaml."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_floors(root: Path, pr_auc: float) -> None:
    """Make the gate's only floor ``pr_auc`` (latency is not what this test is about)."""
    contract = yaml.safe_load((root / "contract.yaml").read_text())
    contract["metric"]["floors"] = {"pr_auc": pr_auc}
    (root / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    edit_params(root, {"gate": {"max_latency_us_per_row": 1.0e6}})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """The world of a DAG run.

    A source repo (small data, few boosting rounds, a gate that must reject), its bare remote, a
    DVC remote directory, one reference `dvc repro` shared by every test and the local status
    server.
    """
    base = tmp_path_factory.mktemp("dagrun")
    work, remote, dvc_remote = base / "work", base / "remote.git", base / "dvc-remote"
    work.mkdir()
    for name in ("dvc.yaml", ".dvcignore", "contract.yaml"):
        shutil.copy(REPO / name, work / name)
    shutil.copy(REPO / "params.yaml", work / "params.yaml")
    edit_params(work, SMALL)
    set_floors(work, 0.999)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    # The overlays (not only the production pin): promote-staging renders and validates them.
    shutil.copytree(REPO / "manifests", work / "manifests")
    sh(work, "git", "init", "-q", "-b", "main")
    sh(work, "dvc", "init", "-q")
    sh(work, "argosy", "simulate", "--rows", str(ROWS), "--days", "30")
    sh(work, "dvc", "add", "-q", "data")
    sh(work, "git", "add", "-A")
    sh(work, *GIT, "commit", "-qm", "pipeline with a gate that rejects")
    sh(work, "dvc", "remote", "add", "--local", "-d", "test", str(dvc_remote))
    sh(work, "dvc", "push", "-q")
    sh(base, "git", "clone", "-q", "--bare", str(work), str(remote))

    reference = base / "reference"
    sh(base, "git", "clone", "-q", str(remote), str(reference))
    env = venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{base / 'reference.db'}")
    sh(reference, "dvc", "remote", "add", "--local", "-d", "test", str(dvc_remote), env=env)
    sh(reference, "dvc", "pull", "-q", "data.dvc", env=env)
    sh(reference, "dvc", "repro", env=env)

    StatusServer.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatusServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {
        "base": base,
        "work": work,
        "remote": remote,
        "dvc_remote": dvc_remote,
        "reference": reference,
        "api": f"http://127.0.0.1:{server.server_address[1]}",
    }
    server.shutdown()


def run_template(world: dict, revision: str, name: str):
    template = by_kind("WorkflowTemplate", "argosy-training")
    workdir = world["base"] / name
    workdir.mkdir()
    (workdir / "keys").mkdir()
    key = make_key(workdir / "keys")  # throwaway: the signing Secrets' values
    harness = LocalDagRun(
        template,
        workdir,
        arguments={
            "revision": revision,
            "repo-url": str(world["remote"]),
            "repository": "argosy-mlops/argosy",
            "dvc-remote": str(world["dvc_remote"]),
            "dvc-endpoint": "",
            "github-api-url": world["api"],
        },
        secrets={
            ("argosy-storage", "AWS_ACCESS_KEY_ID"): "unused-locally",
            ("argosy-storage", "AWS_SECRET_ACCESS_KEY"): "unused-locally",
            ("argosy-mlflow", "MLFLOW_TRACKING_URI"): f"sqlite:///{world['base'] / 'dag.db'}",
            ("argosy-github", "token"): TOKEN,
            ("argosy-git", "username"): "argosy-bot",
            ("argosy-git", "password"): "unused-for-a-local-remote",
            ("argosy-model-signing-key", "signing.key"): key.private.read_text(),
            ("argosy-model-signing", "trust.pem"): key.public.read_text(),
        },
        path=venv_env()["PATH"],
    )
    return harness.run(), workdir


@pytest.fixture(scope="module")
def rejected(world: dict):
    """The template run at the commit whose gate rejects."""
    revision = sh(world["work"], "git", "rev-parse", "HEAD").strip()
    result, workdir = run_template(world, revision, "run-reject")
    return revision, result, workdir


def test_tasks_reproduce_the_same_outputs_as_dvc_repro(world: dict, rejected) -> None:
    # Given the template run by the harness at a revision, and `dvc repro` of the same revision
    _, result, workdir = rejected
    logs = "\n".join(f"--- {n} ({r.seconds:.0f}s)\n{r.log}" for n, r in result.tasks.items())
    # When the stage tasks have run in dependency order
    assert result.order[:5] == ["validate", "prepare", "train", "evaluate", "gate"], logs
    assert all(result.tasks[s].phase == "Succeeded" for s in result.order[:5]), logs
    # Then the last task's checkout (restored from the DVC remote) has the same outputs' hashes
    gate_checkout = next(workdir.glob("*-gate")) / "artifacts" / "source"
    assert digests(gate_checkout) == digests(world["reference"])
    assert len(digests(gate_checkout)) >= 5


def test_a_rejected_gate_skips_every_promotion_task(rejected) -> None:
    # Given the run whose gate floors cannot be met
    revision, result, _ = rejected
    # When the gate's decision output is read
    assert result.tasks["gate"].outputs == {"decision": "reject"}
    # Then register and both promotions were skipped, and the workflow still succeeded
    for name in ("register", "promote-staging", "open-production-pr"):
        assert result.tasks[name].phase == "Skipped"
    assert result.status == "Succeeded"
    # And the exit handler reported success on the commit through the GitHub API
    assert result.exit_handler.phase == "Succeeded", result.exit_handler.log
    posted = [r for r in StatusServer.received if revision in r["path"]]
    assert posted == [
        {
            "path": f"/repos/argosy-mlops/argosy/statuses/{revision}",
            "auth": f"Bearer {TOKEN}",
            "body": {
                "state": "success",
                "context": "argosy/training",
                "description": "Argo workflow succeeded",
            },
        }
    ]


def test_a_promoting_gate_runs_the_promotion_tasks_and_reuses_the_run_cache(
    world: dict, rejected
) -> None:
    # Given a new commit that only relaxes the gate's floors, pushed after the rejected run
    work = world["work"]
    set_floors(work, 0.01)
    sh(work, *GIT, "commit", "-qam", "relax the gate")
    sh(work, "git", "push", "-q", str(world["remote"]), "main")
    revision = sh(work, "git", "rev-parse", "HEAD").strip()
    # When the template runs at that commit against the same DVC remote
    result, _ = run_template(world, revision, "run-promote")
    logs = "\n".join(f"--- {n} ({r.seconds:.0f}s)\n{r.log}" for n, r in result.tasks.items())
    # Then the unchanged stages are restored from the run-cache instead of rerun
    for stage in ("validate", "prepare", "train", "evaluate"):
        assert f"Stage '{stage}' is cached - skipping run" in result.tasks[stage].log, logs
    # And the gate promotes, so the promotion tasks are no longer skipped
    assert result.tasks["gate"].outputs == {"decision": "promote"}, logs
    assert result.tasks["register"].phase == "Succeeded", logs
    assert result.tasks["promote-staging"].phase == "Succeeded", logs
    pinned = sh(world["work"], "git", "show", f"{revision}:manifests/overlays/staging/model.yaml")
    assert parse_pin(pinned, "staging") is None  # the revision itself pins nothing yet
    sh(world["work"], "git", "fetch", "-q", str(world["remote"]), "main")
    staged = sh(world["work"], "git", "show", "FETCH_HEAD:manifests/overlays/staging/model.yaml")
    # And the staging pin was pushed to the remote by the task (with the git Secret's env)
    pin = parse_pin(staged, "staging")
    assert pin is not None, staged
    assert pin.version == "1", staged
    assert pin.signature_sha256, staged  # signed by the register task, verified by promote
