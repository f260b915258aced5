"""Registration and alias sync against real MLflow: SQLite in tmp_path and a real `mlflow server`.

The server test starts `mlflow server` on a free port of 127.0.0.1, waits for /health (bounded),
and stops it at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argosy.cli import app
from argosy.gatereport import GateReportError
from argosy.pin import ModelPin
from argosy.registry import models

from ..gitops.gitops_fixtures import MODEL, Pipeline


def pin_of(version: models.RegisteredVersion) -> ModelPin:
    return ModelPin(
        name=version.name,
        version=version.version,
        sha256=version.sha256,
        run_id=version.run_id,
        storage_uri=version.storage_uri,
    )


def test_register_tags_the_version_and_sets_candidate(pipeline: Pipeline, mlflow_client) -> None:
    # Given a run and a passed gate report, as the pipeline writes them
    model = pipeline.train()
    # When it is registered
    version = models.register(model.gate_json, mlflow_client)
    # Then the version carries the provenance tags and the candidate alias
    mv = mlflow_client.get_model_version(MODEL, version.version)
    assert mv.tags[models.TAG_SHA256] == model.sha256
    assert mv.tags[models.TAG_GATE] == "promote"
    assert mv.tags[models.TAG_DATA_HASH] == model.data_hash
    assert mv.tags[models.TAG_GIT_COMMIT] == "c" * 40
    assert mv.tags[models.TAG_STORAGE_URI] == f"{model.artifact_uri}/serving"
    assert version.metrics["pr_auc"] == pytest.approx(0.81)
    alias = mlflow_client.get_model_version_by_alias(MODEL, "candidate")
    assert str(alias.version) == version.version
    # And the gate report travels with the run
    assert models.read_gate_artifact(mlflow_client, model.run_id).promoted


def test_register_twice_reuses_the_version(pipeline: Pipeline, mlflow_client) -> None:
    # Given a registered model
    model = pipeline.train()
    first = models.register(model.gate_json, mlflow_client)
    # When the same gate report is registered again
    second = models.register(model.gate_json, mlflow_client)
    # Then no second version appears
    assert first.version == second.version
    assert len(mlflow_client.search_model_versions(f"name='{MODEL}'")) == 1


def test_register_refuses_a_missing_gate_report(tmp_path: Path, mlflow_client) -> None:
    # Given no gate report
    missing = tmp_path / "reports" / "gate.json"
    # When registration is attempted through the CLI
    result = CliRunner().invoke(app, ["register", "--gate", str(missing)])
    # Then it fails with a message that says what to do, and registers nothing
    assert result.exit_code == 1
    assert "no gate report" in result.output
    assert "dvc repro" in result.output
    assert mlflow_client.search_model_versions(f"name='{MODEL}'") == []


def test_register_refuses_a_gate_report_that_names_no_model(
    pipeline: Pipeline, mlflow_client
) -> None:
    # Given a gate report whose model has no name (the name is never guessed)
    model = pipeline.train()
    gate = json.loads(model.gate_json.read_text())
    del gate["model"]["name"]
    model.gate_json.write_text(json.dumps(gate))
    # When it is registered, Then it is refused and nothing is registered
    with pytest.raises(GateReportError, match="model is missing name"):
        models.register(model.gate_json, mlflow_client)
    assert mlflow_client.search_registered_models() == []


def test_register_refuses_a_gate_about_another_model(pipeline: Pipeline, mlflow_client) -> None:
    # Given a gate report whose sha256 is not the one the run logged
    model = pipeline.train()
    gate = json.loads(model.gate_json.read_text())
    gate["model"]["sha256"] = "e" * 64
    model.gate_json.write_text(json.dumps(gate))
    # When it is registered
    with pytest.raises(models.RegistryError, match="does not describe this run's model"):
        models.register(model.gate_json, mlflow_client)
    # Then nothing is registered
    assert mlflow_client.search_model_versions(f"name='{MODEL}'") == []


def test_sync_sets_aliases_from_pins_and_refuses_bad_pins(
    pipeline: Pipeline, mlflow_client
) -> None:
    # Given two registered versions, staging pinning v2 and production v1
    v1 = models.register(pipeline.train().gate_json, mlflow_client)
    v2 = models.register(pipeline.train().gate_json, mlflow_client)
    # When aliases are synced from the pins
    result = models.sync_aliases(
        {"staging": pin_of(v2), "production": pin_of(v1)}, mlflow_client, name=MODEL
    )
    # Then the aliases follow git
    assert result == {"staging": v2.version, "production": v1.version}
    get = mlflow_client.get_model_version_by_alias
    assert str(get(MODEL, "production").version) == v1.version
    # When a pin names an unknown version, nothing moves
    bad = ModelPin(MODEL, "99", v1.sha256, v1.run_id, v1.storage_uri)
    with pytest.raises(models.RegistryError, match="not in the MLflow registry"):
        models.sync_aliases({"staging": pin_of(v1), "production": bad}, mlflow_client, name=MODEL)
    assert str(get(MODEL, "staging").version) == v2.version
    # When staging pins nothing, its alias is removed
    models.sync_aliases({"staging": None, "production": pin_of(v1)}, mlflow_client, name=MODEL)
    with pytest.raises(Exception, match="alias"):
        get(MODEL, "staging")


def test_rolled_back_marks_are_per_environment(pipeline: Pipeline, mlflow_client) -> None:
    # Given v1 and v2, v2 rolled back in staging only
    v1 = models.register(pipeline.train().gate_json, mlflow_client)
    v2 = models.register(pipeline.train().gate_json, mlflow_client)
    models.mark_rolled_back(mlflow_client, MODEL, v2.version, "bad in staging", env="staging")
    marked = models.get_version(mlflow_client, MODEL, v2.version)
    # Then it is rolled back in staging, not in production
    assert marked.rolled_back_in == {"staging"}
    assert marked.is_rolled_back("staging")
    assert not marked.is_rolled_back("production")
    # And verify fails it for staging only (and, asked for no environment, anywhere)
    assert models.verify_pin(pin_of(v2), mlflow_client, False, env="production") == []
    staging = models.verify_pin(pin_of(v2), mlflow_client, False, env="staging")
    assert staging == [
        f"{MODEL} v{v2.version}: marked rolled back in staging; it must not be deployed there "
        "again (`argosy rollback --to N --force --reason ...` restores it deliberately)"
    ]
    assert models.verify_pin(pin_of(v2), mlflow_client, False)
    # And sync moves production's alias to it, but refuses it for staging, moving nothing
    models.sync_aliases(
        {"staging": pin_of(v1), "production": pin_of(v2)}, mlflow_client, name=MODEL
    )
    get = mlflow_client.get_model_version_by_alias
    with pytest.raises(models.RegistryError, match="marked rolled back in staging; no alias"):
        models.sync_aliases(
            {"staging": pin_of(v2), "production": pin_of(v1)}, mlflow_client, name=MODEL
        )
    assert str(get(MODEL, "staging").version) == v1.version
    assert str(get(MODEL, "production").version) == v2.version
    # When it is restored in staging by force, with a reason
    models.force_restore(mlflow_client, MODEL, v2.version, "fixed upstream", env="staging")
    # Then the mark is lifted and the reason is on the version
    assert models.get_version(mlflow_client, MODEL, v2.version).rolled_back_in == frozenset()
    tags = mlflow_client.get_model_version(MODEL, v2.version).tags
    assert tags["argosy.rollback_forced.staging"] == (
        "fixed upstream (it had been rolled back: bad in staging)"
    )
    # And a blank reason is refused
    with pytest.raises(models.RegistryError, match="needs a reason"):
        models.force_restore(mlflow_client, MODEL, v2.version, " ", env="staging")


def test_a_mark_from_before_environments_counts_everywhere(
    pipeline: Pipeline, mlflow_client
) -> None:
    # Given a version carrying the old, environment-less mark
    v1 = models.register(pipeline.train().gate_json, mlflow_client)
    mlflow_client.set_model_version_tag(MODEL, v1.version, models.TAG_ROLLED_BACK, "true")
    # Then it is rolled back in every environment
    assert models.get_version(mlflow_client, MODEL, v1.version).rolled_back_in == {
        "staging",
        "production",
    }
    # When it is restored by force in production
    models.force_restore(mlflow_client, MODEL, v1.version, "needed", env="production")
    # Then only production's mark is lifted
    assert models.get_version(mlflow_client, MODEL, v1.version).rolled_back_in == {"staging"}


@pytest.mark.slow
def test_register_verify_and_sync_against_a_real_server(
    tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run logged to a real tracking server over HTTP
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    pipeline = Pipeline(root=tmp_path / "pipeline", tracking_uri=mlflow_server)
    model = pipeline.train()
    client = models.client(mlflow_server)
    # When it is registered, its pin verified (artifact downloaded) and aliases synced
    version = models.register(model.gate_json, client)
    problems = models.verify_pin(pin_of(version), client)
    models.sync_aliases({"staging": pin_of(version), "production": None}, client, name=MODEL)
    # Then the server holds the version, the pin checks out, and staging points at it
    assert version.storage_uri.endswith("/serving")
    assert problems == []
    assert str(client.get_model_version_by_alias(MODEL, "staging").version) == "1"
