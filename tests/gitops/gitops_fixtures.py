"""Fixtures for promotion tests: real bare git repositories, real MLflow, a local GitHub API.

The MLflow runs follow the train-stage contract exactly: experiment and model named after
contract.yaml's ``name:`` (:data:`MODEL`), tags
``argosy.sha256``/``argosy.data_hash``/``argosy.git_commit``, an ONNX model logged with
``mlflow.onnx.log_model(name="model")``, and the deployable directory under ``serving/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from argosy.data.contract import load_contract

REPO = Path(__file__).resolve().parents[2]
#: The model's name: contract.yaml ``name:``, what `argosy promote` defaults to.
MODEL = load_contract(REPO / "contract.yaml").name
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def run_git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


@dataclass
class Remote:
    """A bare "origin" and a helper to make independent clones of it."""

    bare: Path
    root: Path

    def clone(self, name: str) -> Path:
        """A fresh clone of origin with a committer identity."""
        path = self.root / name
        run_git(self.root, "clone", "--quiet", str(self.bare), str(path))
        run_git(path, "config", "user.name", "Test")
        run_git(path, "config", "user.email", "test@example.com")
        return path

    def main(self) -> str:
        """The commit origin's main points at."""
        return run_git(self.bare, "rev-parse", "refs/heads/main").strip()

    def branches(self) -> list[str]:
        """Origin's branch names, sorted."""
        out = run_git(self.bare, "for-each-ref", "--format=%(refname:short)", "refs/heads")
        return sorted(out.split())

    def show(self, ref: str, path: str) -> str:
        """A file's content at ``ref`` on origin."""
        return run_git(self.bare, "show", f"{ref}:{path}")

    def log(self, ref: str = "main") -> list[str]:
        """Commit subjects on ``ref``, newest first."""
        return run_git(self.bare, "log", "--format=%s", ref).splitlines()

    def changed_files(self, commit: str) -> list[str]:
        """Paths a commit changed."""
        out = run_git(self.bare, "diff-tree", "--no-commit-id", "--name-only", "-r", commit)
        return out.split()


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Remote:
    """A bare origin whose main holds this repository's manifests and contract (committed)."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    bare = tmp_path / "origin.git"
    run_git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    run_git(tmp_path, "init", "--quiet", "--initial-branch=main", str(seed))
    shutil.copytree(
        REPO / "manifests", seed / "manifests", ignore=shutil.ignore_patterns("platform")
    )
    shutil.copy(REPO / "contract.yaml", seed / "contract.yaml")
    (seed / "README.md").write_text("seed\n")
    run_git(seed, "add", ".")
    run_git(seed, "commit", "--quiet", "-m", "seed")
    run_git(seed, "remote", "add", "origin", str(bare))
    run_git(seed, "push", "--quiet", "origin", "main")
    return Remote(bare=bare, root=tmp_path)


def tiny_onnx_bytes(seed: int) -> bytes:
    """A valid ONNX graph (y = x + c); ``seed`` makes each model's bytes, hence sha256, differ."""
    from onnx import TensorProto, helper

    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [float(seed)])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[const],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@dataclass
class TrainedModel:
    """What one fake training run produced."""

    run_id: str
    sha256: str
    model_uri: str
    artifact_uri: str
    gate_json: Path
    gate_md: Path
    data_hash: str


@dataclass
class Pipeline:
    """Produces MLflow runs and gate reports exactly as the pipeline's train and gate stages do."""

    root: Path
    tracking_uri: str
    count: int = 0
    made: list[TrainedModel] = field(default_factory=list)

    def train(
        self, decision: str = "promote", data_hash: str = "d" * 32, name: str = MODEL
    ) -> TrainedModel:
        """Log a run like the train stage and write a gate report with ``decision``.

        ``name`` is the model's (contract.yaml ``name:``; a fork's contract names another).
        """
        import mlflow
        import onnx

        self.count += 1
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.set_experiment(name)
        raw = tiny_onnx_bytes(self.count)
        sha = hashlib.sha256(raw).hexdigest()
        work = self.root / f"train{self.count}"
        (work / "serving").mkdir(parents=True)
        (work / "serving" / "model.onnx").write_bytes(raw)
        metadata = {
            "name": name,
            "features": ["x"],
            "threshold": 0.5,
            "sha256": sha,
            "data_hash": data_hash,
        }
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            (work / "serving" / "metadata.json").write_text(json.dumps(metadata))
            mlflow.set_tags(
                {"argosy.sha256": sha, "argosy.data_hash": data_hash, "argosy.git_commit": "c" * 40}
            )
            info = mlflow.onnx.log_model(onnx.load_from_string(raw), name="model")
            mlflow.log_artifacts(str(work / "serving"), "serving")
        metrics = {"pr_auc": 0.8 + self.count / 100, "roc_auc": 0.95, "recall_at_fpr": 0.7}
        metrics |= {"precision_at_k": 0.9, "brier": 0.01}
        gate = {
            "decision": decision,
            "challenger": metrics,
            "champion": None,
            "reasons": ["no champion yet" if decision == "promote" else "pr_auc below floor"],
            "model": {"name": name, "uri": info.model_uri, "sha256": sha},
            "data_hash": data_hash,
            "git_commit": "c" * 40,
            "champion_version": None,
        }
        gate["model"]["run_id"] = run.info.run_id
        reports = self.root / f"reports{self.count}"
        reports.mkdir()
        (reports / "gate.json").write_text(json.dumps(gate, indent=2))
        (reports / "gate.md").write_text(
            f"## Gate: {decision}\n\n| metric | challenger |\n|---|---|\n"
            + "".join(f"| {k} | {v:.4f} |\n" for k, v in metrics.items())
        )
        model = TrainedModel(
            run_id=run.info.run_id,
            sha256=sha,
            model_uri=info.model_uri,
            artifact_uri=run.info.artifact_uri,
            gate_json=reports / "gate.json",
            gate_md=reports / "gate.md",
            data_hash=data_hash,
        )
        self.made.append(model)
        return model


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """MLflow on SQLite in tmp_path (artifacts beside it), reached through MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default artifact root ./mlruns lands in tmp_path
    return Pipeline(root=tmp_path / "pipeline", tracking_uri=uri)


@pytest.fixture
def mlflow_client(pipeline: Pipeline):
    from argosy.registry.models import client

    return client(pipeline.tracking_uri)


# --- a local stand-in for the GitHub REST API -------------------------------------------------


@dataclass
class Recorded:
    """One request the fake API received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitHub:
    """GitHub's REST endpoints that promotion uses, on 127.0.0.1, with strict request checks.

    Every request must carry ``Authorization: token <TOKEN>`` and JSON bodies must parse; the
    server answers like GitHub (objects with ``url``/``html_url``/``number``). ``fail`` maps
    ``(METHOD, path prefix)`` to an HTTP status the server returns instead.
    """

    token: str
    repository: str = "acme/argosy"
    requests: list[Recorded] = field(default_factory=list)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    labels: dict[int, list[str]] = field(default_factory=dict)
    fail: dict[tuple[str, str], int] = field(default_factory=dict)
    base_url: str = ""
    auth_failures: int = 0

    def _repo_json(self) -> dict[str, Any]:
        owner, name = self.repository.split("/")
        return {
            "id": 1,
            "name": name,
            "full_name": self.repository,
            "owner": {"login": owner, "id": 2, "type": "Organization"},
            "url": f"{self.base_url}/repos/{self.repository}",
            "html_url": f"https://github.example/{self.repository}",
            "default_branch": "main",
        }

    def _pull_json(self, number: int) -> dict[str, Any]:
        pull = self.pulls[number]
        return {
            "id": 100 + number,
            "number": number,
            "state": pull["state"],
            "title": pull["title"],
            "body": pull["body"],
            "url": f"{self.base_url}/repos/{self.repository}/pulls/{number}",
            "html_url": f"https://github.example/{self.repository}/pull/{number}",
            "issue_url": f"{self.base_url}/repos/{self.repository}/issues/{number}",
            "head": {"ref": pull["head"], "label": f"acme:{pull['head']}"},
            "base": {"ref": pull["base"], "label": f"acme:{pull['base']}"},
        }

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any):
        """Answer one request like GitHub; record it first."""
        self.requests.append(Recorded(method, path, headers, body))
        if headers.get("authorization") != f"token {self.token}":
            self.auth_failures += 1
            return 401, {"message": "Bad credentials"}
        for (m, prefix), status in self.fail.items():
            if m == method and path.startswith(prefix):
                return status, {
                    "message": "Validation Failed",
                    "errors": [{"message": "injected failure"}],
                }
        repo = f"/repos/{self.repository}"
        route = path.split("?")[0]
        query = dict(p.split("=", 1) for p in path.split("?")[1].split("&")) if "?" in path else {}
        if method == "GET" and route == repo:
            return 200, self._repo_json()
        if method == "GET" and route == f"{repo}/pulls":
            head = query.get("head", "").replace("%3A", ":").replace("%2F", "/")
            found = [
                self._pull_json(n)
                for n, p in sorted(self.pulls.items())
                if p["state"] == query.get("state", "open")
                and f"acme:{p['head']}" == head
                and p["base"] == query.get("base", p["base"])
            ]
            return 200, found
        if method == "POST" and route == f"{repo}/pulls":
            for key in ("title", "body", "head", "base"):
                if not isinstance(body.get(key), str):
                    return 422, {"message": f"missing {key}"}
            if any(p["head"] == body["head"] and p["state"] == "open" for p in self.pulls.values()):
                return 422, {"message": "A pull request already exists"}
            number = len(self.pulls) + 1
            self.pulls[number] = {**body, "state": "open"}
            return 201, self._pull_json(number)
        if method == "PATCH" and route.startswith(f"{repo}/pulls/"):
            number = int(route.rsplit("/", 1)[1])
            self.pulls[number].update(
                {k: v for k, v in body.items() if k in ("title", "body", "state")}
            )
            return 200, self._pull_json(number)
        if method == "POST" and route.startswith(f"{repo}/issues/") and route.endswith("/labels"):
            number = int(route.split("/")[-2])
            names = body["labels"] if isinstance(body, dict) else body
            self.labels.setdefault(number, [])
            self.labels[number] += [n for n in names if n not in self.labels[number]]
            return 200, [
                {"name": n, "url": f"{self.base_url}/labels/{n}"} for n in self.labels[number]
            ]
        return 404, {"message": "Not Found"}


@pytest.fixture
def github_api() -> Iterator[FakeGitHub]:
    """Start the fake API on a free port of 127.0.0.1; stop it afterwards."""
    fake = FakeGitHub(token="test-token-123")

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.handle(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
