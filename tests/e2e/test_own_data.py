"""A fork on its own data: the whole loop for a second contract, in a clone of this repository.

The second contract (tests/fixtures/contracts/census.yaml) differs from the shipped example in each
way a fork's data may: no event time (a stratified split), another id and label (a hyphenated id,
a text label with about 25% positives), hyphenated feature names, text categoricals with nulls, an
`unseen: other` categorical and a boolean. Its data is synthetic, drawn from the contract.

In a real clone with a bare origin on disk: the contract and the data replace the example's
(`dvc add data`), `argosy ensure-data` + `dvc repro` (what `make run` runs), `argosy register`
(MLflow on SQLite), `argosy promote --env staging` (a commit pushed to the origin), `argosy serve`
answering V2 requests that carry raw strings, nulls and unseen categories, and `argosy monitor
--labels` on a replay drawn like the training data. Only the contract, data.dvc, dvc.lock and the
pins change in git.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from argosy.data.contract import Contract, load_contract
from argosy.data.synthetic import synthesize, write
from argosy.evaluation.metrics import OnnxModel
from argosy.gitops.promote import name_unpinned
from argosy.pin import parse_model_name

from ..conftest import REPO, venv_env

pytestmark = pytest.mark.slow

CENSUS = REPO / "tests/fixtures/contracts/census.yaml"
IDENTITY = {
    "GIT_AUTHOR_NAME": "fork",
    "GIT_AUTHOR_EMAIL": "fork@example.com",
    "GIT_COMMITTER_NAME": "fork",
    "GIT_COMMITTER_EMAIL": "fork@example.com",
}


def sh(cwd: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clone that swapped in the census contract and data, reproduced, registered and staged."""
    tmp = tmp_path_factory.mktemp("fork")
    root, origin = tmp / "clone", tmp / "origin.git"
    env = venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", **IDENTITY)
    env.pop("GITHUB_TOKEN", None)
    sh(tmp, env, "git", "clone", "-q", "--bare", str(REPO), str(origin))
    sh(tmp, env, "git", "clone", "-q", str(origin), str(root))
    # Given the fork's own contract and data in place of the example's
    shutil.copy(CENSUS, root / "contract.yaml")
    contract = load_contract(root / "contract.yaml")
    name_unpinned(root, contract.name)  # what `argosy init` does to the overlays that pin nothing
    shutil.rmtree(root / "data", ignore_errors=True)
    write(
        synthesize(contract, rows=8000, seed=1, unseen_rate=0.02), root / "data" / "census.parquet"
    )
    sh(root, env, "dvc", "add", "-q", "data")
    sh(root, env, "git", "commit", "-qam", "Our own data and contract")
    sh(root, env, "git", "push", "-q", "origin", "HEAD:main")
    # When the pipeline runs (what `make run` runs), then register and promote to staging
    outputs = {}
    for step in (
        ("argosy", "ensure-data"),
        ("dvc", "repro"),
        ("argosy", "summary"),
        ("argosy", "register"),
        ("argosy", "promote", "--env", "staging"),
    ):
        outputs[step[1] if step[0] == "argosy" else step[0]] = sh(root, env, *step).stdout
    return {"root": root, "origin": origin, "env": env, "contract": contract, "out": outputs}


def test_the_pipeline_runs_on_the_forks_data(fork: dict[str, Any]) -> None:
    root, contract = fork["root"], fork["contract"]
    # Then validation passed, the split kept the positive rate (no event time: stratified)
    assert json.loads((root / "reports/validation/result.json").read_text())["success"] is True
    rates = [
        contract.labels(pd.read_parquet(root / f"artifacts/prepared/{s}.parquet")).mean()
        for s in ("train", "valid", "test")
    ]
    assert max(rates) - min(rates) < 0.01
    assert 0.15 < rates[0] < 0.35
    # And the gate judged on the contract's slices and metric, and promoted
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["decision"] == "promote", gate["reasons"]
    assert set(gate["challenger"]["slices"]) == {"sex", "race"}
    assert gate["model"]["name"] == "income-classifier"
    assert "Decision: PROMOTE" in fork["out"]["summary"]
    # And the model reads the contract's features, under its name
    meta = json.loads((root / "models/metadata.json").read_text())
    assert meta["features"] == list(contract.feature_names)
    assert meta["id_column"] == "record-id"


def test_register_and_promote_use_the_contracts_name(fork: dict[str, Any]) -> None:
    root, env = fork["root"], fork["env"]
    assert "registered income-classifier v1" in fork["out"]["register"]
    assert "pinned income-classifier v1 in staging" in fork["out"]["promote"]
    # Then origin's main pins it in staging
    sh(root, env, "git", "fetch", "-q", "origin")
    pin = sh(root, env, "git", "show", "origin/main:manifests/overlays/staging/model.yaml").stdout
    assert "argosy.io/model-name: income-classifier" in pin
    assert 'argosy.io/model-version: "1"' in pin or "argosy.io/model-version: '1'" in pin
    # And git sees only what a fork changes: the contract, data.dvc, dvc.lock and the pins
    changed = {
        line[3:]
        for line in sh(root, env, "git", "status", "--porcelain").stdout.splitlines()
        if line.strip()
    }
    changed |= set(
        sh(root, env, "git", "diff", "--name-only", "origin/main~2", "HEAD").stdout.split()
    )
    allowed = {"contract.yaml", "data.dvc", "dvc.lock"}
    assert {p for p in changed if not p.endswith("/model.yaml")} <= allowed, changed


def _request(frame: pd.DataFrame, contract: Contract, with_ids: bool = True) -> dict[str, Any]:
    inputs = []
    for spec in contract.specs:
        column = frame[spec.name]
        data = [None if pd.isna(v) else v for v in column.tolist()]
        if spec.type == "categorical":
            datatype = "BYTES"
        elif spec.type == "boolean":
            datatype, data = "BOOL", [None if v is None else bool(v) for v in data]
        else:
            datatype, data = "FP32", [None if v is None else float(v) for v in data]
        inputs.append(
            {"name": spec.name, "datatype": datatype, "shape": [len(frame)], "data": data}
        )
    if with_ids and contract.id:
        ids = frame[contract.id].astype(str).tolist()
        inputs.append({"name": contract.id, "datatype": "BYTES", "shape": [len(ids)], "data": ids})
    return {"inputs": inputs}


class Server:
    """`argosy serve` on a free port, with a prediction log."""

    def __init__(self, root: Path, env: dict, log_dir: Path, out: Path) -> None:
        self.log_file = out.open("wb")
        self.proc = subprocess.Popen(
            [
                *("argosy", "serve", "--model-dir", "models", "--port", "0", "--grpc-port", "off"),
                *("--prediction-log", str(log_dir), "--log-flush-seconds", "0.2"),
            ],
            cwd=root,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "listening on http://127.0.0.1:" not in out.read_text():
            assert self.proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        self.port = int(out.read_text().split("listening on http://127.0.0.1:")[1].split()[0])

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        """POST a JSON body; return the status and the parsed answer."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    def stop(self) -> None:
        """SIGTERM: drain, flush the prediction log, exit."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log_file.close()


@pytest.fixture(scope="module")
def served(fork: dict[str, Any]) -> dict[str, Any]:
    """The staged model served, a sample with nulls and unseen categories scored, then a replay."""
    root, env, contract = fork["root"], fork["env"], fork["contract"]
    log_dir = root.parent / "predictions"
    server = Server(root, env, log_dir, root.parent / "server.log")
    path = f"/v2/models/{contract.name}/infer"
    try:
        sample = synthesize(contract, rows=300, seed=7, unseen_rate=0.3)
        status, answer = server.post(path, _request(sample, contract))
        bad = sample.head(1).copy()
        bad["education"] = "Preschool"
        bad_status, bad_answer = server.post(path, _request(bad, contract))
        # Held-back rows drawn like the training data, replayed in batches, with their ids
        replay = synthesize(contract, rows=3000, seed=11)
        for start in range(0, len(replay), 250):
            code, _ = server.post(path, _request(replay.iloc[start : start + 250], contract))
            assert code == 200
    finally:
        server.stop()
    return {
        "sample": sample,
        "answer": (status, answer),
        "bad": (bad_status, bad_answer),
        "replay": replay,
        "log_dir": log_dir,
    }


def test_served_scores_equal_offline_scores_with_nulls_and_unseen_values(
    fork: dict[str, Any], served: dict[str, Any]
) -> None:
    contract = fork["contract"]
    status, answer = served["answer"]
    assert status == 200, answer
    sample = served["sample"]
    # Given rows with missing values and categories the contract never declared
    unseen = ~sample["native-country"].isin(contract.features["native-country"].values or [])
    assert (unseen & sample["native-country"].notna()).any()
    assert sample["workclass"].isna().any()
    # Then the server's probability is the offline model's, within 1e-6
    offline = OnnxModel(fork["root"] / "models")
    expected = offline.predict(offline.matrix(sample))
    served_scores = np.asarray(
        next(o["data"] for o in answer["outputs"] if o["name"] == "probability"), dtype=np.float64
    )
    np.testing.assert_allclose(served_scores, expected, atol=1e-6, rtol=0)


def test_an_unseen_value_of_a_rejecting_categorical_is_a_clear_400(served: dict[str, Any]) -> None:
    status, answer = served["bad"]
    assert status == 400
    assert "education" in answer["error"]
    assert "Preschool" in answer["error"]


def test_monitor_with_labels_sees_no_drift_on_rows_drawn_like_training(
    fork: dict[str, Any], served: dict[str, Any], tmp_path: Path
) -> None:
    root, env, contract = fork["root"], fork["env"], fork["contract"]
    replay = served["replay"]
    labels = tmp_path / "labels.parquet"
    replay[[contract.id, contract.label.column]].to_parquet(labels)
    # When the monitor runs just after the window that holds the replay closes
    logged = pd.read_parquet(served["log_dir"])
    last = pd.Timestamp(logged["timestamp"].max()).to_pydatetime().astimezone(UTC)
    window_end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    reports = tmp_path / "monitoring"
    sh(
        root,
        env,
        *("argosy", "monitor", "--prediction-log", str(served["log_dir"])),
        *("--labels", str(labels), "--reports", str(reports), "--state", str(tmp_path / "s.json")),
        *("--as-of", (window_end + timedelta(minutes=1)).isoformat()),
    )
    decision = json.loads((reports / "decision.json").read_text())
    # Then every logged row joined its label by the contract's id, and nothing drifted
    assert decision["feedback"]["labelled"] == len(replay)
    assert decision["feedback"]["status"] == "ok", decision["feedback"]
    assert decision["decision"] == "no_drift", decision
    assert decision["drift_share"] == 0.0


def test_a_contract_drafted_by_init_is_one_make_run_accepts(tmp_path: Path) -> None:
    # Given a clone and a file with every column type, nulls and no event time
    env = venv_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", **IDENTITY)
    root = tmp_path / "clone"
    sh(tmp_path, env, "git", "clone", "-q", str(REPO), str(root))
    census = load_contract(CENSUS)
    shutil.rmtree(root / "data", ignore_errors=True)
    write(synthesize(census, rows=6000, seed=3), root / "data" / "income.parquet")
    # When README's steps run: argosy init, dvc add data, then what `make run` runs
    drafted = sh(
        root,
        env,
        *("argosy", "init", "--data", "data/income.parquet", "--label", "income"),
        *("--id", "record-id", "--name", "income-draft", "--force"),
    )
    assert "wrote contract.yaml" in drafted.stdout
    # And the overlays that pin no model yet serve the drafted name
    for overlay in ("staging", "production"):
        pin = root / f"manifests/overlays/{overlay}/model.yaml"
        assert parse_model_name(pin.read_text(), str(pin)) == "income-draft"
    sh(root, env, "dvc", "add", "-q", "data")
    sh(root, env, "argosy", "ensure-data")
    sh(root, env, "dvc", "repro")
    # Then the draft describes the data (types and nulls as declared) and the pipeline ran
    draft = load_contract(root / "contract.yaml")
    assert draft.source == "files"
    assert draft.name == "income-draft"
    assert draft.time is None
    assert {n: draft.features[n].type for n in census.features} == {
        n: f.type for n, f in census.features.items()
    }
    assert draft.features["workclass"].nullable
    assert json.loads((root / "reports/validation/result.json").read_text())["success"] is True
    assert json.loads((root / "reports/gate.json").read_text())["decision"] == "promote"
