"""The pipeline's tracking against a real `mlflow server` on 127.0.0.1, and against none at all.

Training logs its run, model and serving files over HTTP; the gate then fetches the champion that
the production overlay pins from the server's registry and verifies its sha256.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import mlflow
import pytest

from argosy.config import Params
from argosy.data.contract import Contract
from argosy.data.prepare import prepare
from argosy.evaluation.gate import GateError, run_gate
from argosy.evaluation.metrics import run_evaluate
from argosy.examples.fraud.simulate import SimulationSpec, simulate_to
from argosy.modeldir import ModelDirError
from argosy.pin import ModelPin, render_pin
from argosy.registry import models
from argosy.training.train import TrainingError, train

from ..conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture
def prepared(tmp_path: Path, params: Params, contract: Contract) -> Path:
    simulate_to(SimulationSpec(20_000, 21, date(2026, 1, 1), 30), tmp_path / "data")
    prepare(tmp_path / "data", tmp_path / "prepared", params.prepare, contract)
    return tmp_path / "prepared"


def test_train_and_gate_against_a_real_server(
    tmp_path: Path,
    prepared: Path,
    params: Params,
    contract: Contract,
    mlflow_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a tracking server and a trained model logged to it over HTTP
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    result = train(prepared, tmp_path / "model", params.train, contract, tmp_path)
    mlflow.set_tracking_uri(mlflow_server)
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["argosy.sha256"] == result.sha256
    assert run.data.tags["argosy.data_hash"].endswith(".dir")
    served = mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="serving", dst_path=str(tmp_path / "dl")
    )
    assert json.loads((Path(served) / "metadata.json").read_text())["sha256"] == result.sha256

    # And that model gated (no champion yet), registered and pinned as the production champion
    reports = tmp_path / "reports"
    run_evaluate(tmp_path / "model", prepared, reports, params.evaluate, contract)
    production = tmp_path / "production-model.yaml"
    shutil.copy(REPO / "manifests/overlays/production/model.yaml", production)

    def gate() -> dict:
        return run_gate(
            tmp_path / "model",
            prepared,
            (reports / "metrics.json", reports / "slices.json"),
            production,
            reports,
            params.gate,
            params.evaluate,
            contract,
        )

    first = gate()
    assert first.promoted
    assert first.champion is None
    version = models.register(reports / "gate.json", models.client(mlflow_server))
    # (its description in the registry is the gate's summary)
    described = mlflow.MlflowClient(mlflow_server).get_model_version(contract.name, version.version)
    assert described.description.startswith("**Gate: promote** against no champion")
    assert f"pr_auc: {first.challenger['pr_auc']:.4f}" in described.description
    pin = ModelPin(
        contract.name, version.version, result.sha256, result.run_id, version.storage_uri
    )
    production.write_text(render_pin(pin, "production"))

    # When the same model is gated against itself as champion, for a drift trigger
    monkeypatch.setenv("ARGOSY_TRIGGER", "drift monitor: drift held for 2 consecutive windows")
    report = gate()
    body = (reports / "gate.md").read_text()

    # Then the PR body says why, what changed since the champion's run, and links both runs
    assert "**Why this ran:** drift monitor: drift held for 2" in body
    assert report.changes["champion"]["run_id"] == result.run_id
    assert "Training params: unchanged." in body
    assert f"({mlflow_server}/#/experiments/" in body

    # Then the champion was fetched from the server and scored: equal metrics, no regression
    assert report.champion_version == "1"
    assert report.champion["pr_auc"] == pytest.approx(report.challenger["pr_auc"])
    assert any(c.name == "non-regression:pr_auc" and c.passed for c in report.checks)

    # And a pin whose sha256 is not the registered file's is refused, writing no report
    (reports / "gate.json").unlink()
    tampered = ModelPin(pin.name, pin.version, "0" * 64, pin.run_id, pin.storage_uri)
    production.write_text(render_pin(tampered, "production"))
    with pytest.raises(ModelDirError, match="does not match the pinned 0000"):
        gate()
    assert not (reports / "gate.json").exists()

    # And a pin to a version the registry does not hold is a clear error, not a decision
    missing = ModelPin(pin.name, "99", pin.sha256, pin.run_id, pin.storage_uri)
    production.write_text(render_pin(missing, "production"))
    with pytest.raises(GateError, match=f"cannot fetch champion {contract.name} v99"):
        gate()
    assert not (reports / "gate.json").exists()


def test_unreachable_tracking_server_fails_before_training(
    tmp_path: Path,
    prepared: Path,
    params: Params,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a tracking URI where nothing listens (port 9 on loopback), with retries off
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    # When training starts / Then it stops with a clear message and writes no model
    with pytest.raises(
        TrainingError, match=r"cannot reach the MLflow tracking server at http://127\.0\.0\.1:9"
    ):
        train(prepared, tmp_path / "model", params.train, contract, tmp_path)
    assert not (tmp_path / "model").exists()
