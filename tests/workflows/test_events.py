"""The Sensors' filters and triggers: training only for pipeline inputs on the default branch."""

from __future__ import annotations

from pathlib import Path

import pytest

from argosy.workflows.events import PIPELINE_INPUTS, lua_filter, touches_pipeline_inputs

from .conftest import by_kind


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["src/argosy/training/train.py"], True),
        (["params.yaml"], True),
        (["dvc.yaml", "README.md"], True),
        (["data.dvc"], True),
        (["manifests/overlays/staging/model.yaml"], False),  # a promotion commit
        (["manifests/overlays/production/model.yaml", "README.md"], False),
        (["srcs/x.py", "params.yaml.bak"], False),
        ([], False),
    ],
)
def test_only_pipeline_inputs_trigger_training(paths: list[str], expected: bool) -> None:
    # Given the paths a push touched
    # When the Sensor's rule is applied
    # Then only pipeline inputs start training (never a promotion commit: no CI loop)
    assert touches_pipeline_inputs(paths) is expected


def test_push_sensor_filters_branch_and_paths_and_submits_the_commit(params) -> None:
    # Given the compiled push Sensor
    sensor = by_kind("Sensor", "argosy-train-on-push")
    (dependency,) = sensor["spec"]["dependencies"]
    # When its filters and trigger are read
    filters = dependency["filters"]
    trigger = sensor["spec"]["triggers"][0]["template"]["argoWorkflow"]
    # Then only pushes to the default branch pass, through the same path rule as the Lua filter
    assert {"path": "body.ref", "type": "string", "value": ["refs/heads/main"]} in filters["data"]
    assert filters["script"] == lua_filter()
    assert all(f'"{p}"' in filters["script"] for p in PIPELINE_INPUTS)
    # And the trigger submits argosy-training with the pushed commit as `revision`
    resource = trigger["source"]["resource"]
    assert resource["spec"]["workflowTemplateRef"] == {"name": "argosy-training"}
    assert trigger["operation"] == "submit"
    assert trigger["parameters"][0] == {
        "src": {"dependencyName": "push", "dataKey": "body.after"},
        "dest": "spec.arguments.parameters.0.value",
    }
    assert resource["spec"]["arguments"]["parameters"][0]["name"] == "revision"
    # and says why it runs: the push, its commit and author, for the promotion PR's body
    (why,) = trigger["parameters"][1:]
    assert why["dest"] == "spec.arguments.parameters.2.value"
    assert resource["spec"]["arguments"]["parameters"][2]["name"] == "trigger"
    assert "{{ .Input.body.after" in why["src"]["dataTemplate"]
    assert "{{ .Input.body.head_commit.message" in why["src"]["dataTemplate"]
    assert (
        sensor["spec"]["template"]["serviceAccountName"]
        == params.workflow.submitter_service_account
    )


def test_event_sources_reference_secrets_only(params) -> None:
    # Given the compiled EventSources
    github = by_kind("EventSource", "argosy-github")["spec"]["github"]["push"]
    data = by_kind("EventSource", "argosy-data")["spec"]
    # When their credentials are read
    # Then each is a Secret reference named in params.yaml, never a value
    assert github["webhookSecret"] == params.workflow.github.webhook_secret.model_dump()
    assert github["apiToken"] == params.workflow.github.api_token.model_dump()
    source = data[params.workflow.data_events.source]["landing"]
    assert source["accessKey"] == params.workflow.secrets.storage_access_key.model_dump()


def test_data_sensor_submits_ingest_with_the_object_key() -> None:
    # Given the compiled new-data Sensor
    trigger = by_kind("Sensor", "argosy-ingest-on-new-data")["spec"]["triggers"][0]
    workflow = trigger["template"]["argoWorkflow"]
    # When its trigger is read
    # Then it submits argosy-ingest with the new object's key
    assert workflow["source"]["resource"]["spec"]["workflowTemplateRef"] == {
        "name": "argosy-ingest"
    }
    assert workflow["parameters"][0]["src"]["dataKey"] == "notification.0.s3.object.key"


def test_drift_monitor_schedule_concurrency_metric_and_retrain(params) -> None:
    # Given the compiled CronWorkflow
    cron = by_kind("CronWorkflow", "argosy-drift-monitor")["spec"]
    templates = {t["name"]: t for t in cron["workflowSpec"]["templates"]}
    # When its schedule, metric and retrain step are read
    # Then it runs on the params schedule, never overlapping, exports the drift share
    assert cron["schedules"] == [params.workflow.drift_monitor.schedule]
    assert cron["concurrencyPolicy"] == "Forbid"
    (gauge,) = templates["monitor"]["metrics"]["prometheus"]
    assert gauge["gauge"]["value"] == "{{outputs.parameters.drift-share}}"
    # And submits argosy-training only on a retrain decision, with the submitter's role
    tasks = {t["name"]: t for t in templates["monitor-and-retrain"]["dag"]["tasks"]}
    assert tasks["submit-training"]["when"] == (
        "{{tasks.monitor.outputs.parameters.decision}} == retrain"
    )
    assert templates["submit-training"]["resource"]["action"] == "create"
    assert (
        "workflowTemplateRef:\n    name: argosy-training"
        in (templates["submit-training"]["resource"]["manifest"])
    )
    assert cron["workflowSpec"]["serviceAccountName"] == params.workflow.submitter_service_account


def test_promotion_tasks_can_push_with_the_git_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promotion tasks answer git's credential request from the env the Secret fills."""
    import subprocess

    from argosy.workflows.runner import configure_push_credentials

    # Given a checkout and no credentials in the environment: nothing is configured
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.delenv("GIT_USERNAME", raising=False)
    monkeypatch.delenv("GIT_PASSWORD", raising=False)
    assert configure_push_credentials(tmp_path) is False
    # When the Secret's values are in the environment
    monkeypatch.setenv("GIT_USERNAME", "argosy-bot")
    monkeypatch.setenv("GIT_PASSWORD", "from-the-secret")
    assert configure_push_credentials(tmp_path) is True
    # Then git hands them to a push over HTTPS, and the config holds no secret value
    filled = subprocess.run(
        ["git", "credential", "fill"],
        cwd=tmp_path,
        input="protocol=https\nhost=github.com\n\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "username=argosy-bot" in filled
    assert "password=from-the-secret" in filled
    assert "from-the-secret" not in (tmp_path / ".git" / "config").read_text()
