"""Golden and strict-schema tests of the compiled workflows in workflows/generated/."""

from __future__ import annotations

import copy

import pytest
import yaml

from argosy import k8s
from argosy.workflows.codegen import render
from argosy.workflows.dag import PipelineError, parse_pipeline

from .conftest import GENERATED, REPO, by_kind, load_generated, templates


def test_committed_yaml_equals_what_the_modules_generate() -> None:
    """The golden test: only `make workflows` may change workflows/generated/."""
    # Given the committed generated directory
    committed = {p.name: p.read_text() for p in GENERATED.glob("*.yaml")}
    # When the Hera modules are compiled again
    fresh = render(REPO)
    # Then every file is identical and none is missing or extra
    assert sorted(fresh) == sorted(committed)
    for name, text in fresh.items():
        assert text == committed[name], f"{name} is stale: run `make workflows`"


def test_every_generated_document_validates_strictly() -> None:
    # Given every generated document (custom resources and built-in kinds alike)
    docs = list(load_generated().values())
    assert docs
    # When each is validated against the offline strict schemas
    errors = k8s.validate_documents(docs)
    # Then there is no error at all
    assert errors == []


def test_an_unknown_field_or_a_kind_without_schema_fails() -> None:
    # Given the training template with one unknown field, and one with an unknown kind
    doc = by_kind("WorkflowTemplate", "argosy-training")
    typo = copy.deepcopy(doc)
    typo["spec"]["templates"][0]["container"]["imagePullPolicyy"] = "Always"
    unknown = copy.deepcopy(doc)
    unknown["kind"] = "WorkflowTemplat"
    # When they are validated
    typo_errors = k8s.validate_documents([typo])
    unknown_errors = k8s.validate_documents([unknown])
    # Then both fail, naming the problem
    assert any("imagePullPolicyy" in e for e in typo_errors)
    assert any("no schema" in e for e in unknown_errors)


def test_kustomization_lists_every_generated_document() -> None:
    # Given the generated kustomization that ArgoCD applies
    kustomization = yaml.safe_load((GENERATED / "kustomization.yaml").read_text())
    # When compared with the directory
    # Then it names exactly the generated documents
    assert sorted(kustomization["resources"]) == sorted(load_generated())


def test_one_task_per_dvc_stage_with_dvc_dependencies() -> None:
    # Given dvc.yaml and the compiled training template
    stages = parse_pipeline(yaml.safe_load((REPO / "dvc.yaml").read_text()))
    doc = by_kind("WorkflowTemplate", "argosy-training")
    tasks = {t["name"]: t for t in templates(doc)["pipeline"]["dag"]["tasks"]}
    # When each stage is looked up among the tasks
    # Then each has a task whose dependencies are the stage's upstream stages in DVC's DAG
    for stage in stages:
        depends = tasks[stage.name].get("depends", "")
        assert set(filter(None, depends.split(" && "))) == set(stage.upstream)
        annotation = templates(doc)[stage.name]["metadata"]["annotations"]["argosy.dev/dvc-cmd"]
        assert annotation == " ".join(stage.cmd)
    assert tasks["prepare"]["depends"] == "validate"


def test_a_stage_added_to_dvc_yaml_becomes_a_task(source_copy) -> None:
    # Given a copy of the sources with an extra stage that reads the model and the test metrics
    dvc = yaml.safe_load((source_copy / "dvc.yaml").read_text())
    dvc["stages"]["explain"] = {
        "cmd": "argosy explain --model models",
        "deps": ["models", "reports/metrics.json"],
        "outs": ["reports/explain.json"],
    }
    (source_copy / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    # When the workflows are generated from it
    doc = yaml.safe_load(render(source_copy)["workflowtemplate.argosy-training.yaml"])
    # Then a task `explain` runs the stage after train and evaluate, and still validates
    tasks = {t["name"]: t for t in templates(doc)["pipeline"]["dag"]["tasks"]}
    assert set(tasks["explain"]["depends"].split(" && ")) == {"train", "evaluate"}
    assert templates(doc)["explain"]["container"]["args"][:3] == ["workflows", "stage", "explain"]
    assert k8s.validate_documents([doc]) == []


def test_only_gpu_stages_get_gpu_placement_and_limits(params) -> None:
    # Given the compiled template and params.yaml workflow.gpu
    gpu = params.workflow.gpu
    tmpl = templates(by_kind("WorkflowTemplate", "argosy-training"))
    # When the placement of each container template is read
    for name, template in tmpl.items():
        if "container" not in template:
            continue
        limits = template["container"]["resources"]["limits"]
        if name in gpu.stages:
            # Then GPU stages carry the node selector, every toleration and the GPU limit
            assert template["nodeSelector"] == gpu.node_selector
            assert template["tolerations"] == [
                t.model_dump(exclude_none=True) for t in gpu.tolerations
            ]
            assert limits[gpu.resource] == str(gpu.count)
        else:
            # And every other template has no toleration, node selector or GPU at all
            assert "tolerations" not in template
            assert "nodeSelector" not in template
            assert not [key for key in limits if key.startswith("nvidia.com/")]
    assert "train" in gpu.stages


def test_promotion_tasks_run_only_when_the_gate_promotes() -> None:
    # Given the compiled template
    doc = by_kind("WorkflowTemplate", "argosy-training")
    tasks = {t["name"]: t for t in templates(doc)["pipeline"]["dag"]["tasks"]}
    gate = templates(doc)["gate"]
    # When the promotion tasks are read
    chain = ["register", "promote-staging", "open-production-pr"]
    # Then each is conditioned on the gate's decision (Argo runs dependents of a skipped task)
    for name in chain:
        assert tasks[name]["when"] == "{{tasks.gate.outputs.parameters.decision}} == promote"
    assert [tasks[n]["depends"] for n in chain] == ["gate", "register", "promote-staging"]
    # And the decision is an output parameter read from a file, defaulting to reject
    (decision,) = gate["outputs"]["parameters"]
    assert decision["valueFrom"] == {"path": "/tmp/outputs/decision", "default": "reject"}
    assert "decision=reports/gate.json:decision" in gate["container"]["args"]
    args = {n: templates(doc)[n]["container"]["args"] for n in chain}
    assert args["register"][-4:] == ["argosy", "register", "--gate", "reports/gate.json"]
    assert args["promote-staging"][-3:] == ["promote", "--env", "staging"]
    assert args["open-production-pr"][-3:] == ["promote", "--env", "production"]


def test_the_gate_hears_why_training_runs_and_the_monitor_says_it() -> None:
    # Given the compiled training template and drift monitor
    training = by_kind("WorkflowTemplate", "argosy-training")
    monitor = by_kind("CronWorkflow", "argosy-drift-monitor")
    # When the trigger's path is followed
    params = {p["name"]: p for p in training["spec"]["arguments"]["parameters"]}
    gate_env = {e["name"]: e.get("value") for e in templates(training)["gate"]["container"]["env"]}
    tasks = {t["name"]: t for t in templates(monitor)["monitor-and-retrain"]["dag"]["tasks"]}
    submit = templates(monitor)["submit-training"]
    outputs = {p["name"]: p for p in templates(monitor)["monitor"]["outputs"]["parameters"]}
    submitted = yaml.safe_load(submit["resource"]["manifest"])
    # Then the training has a `trigger` parameter that only the gate (the PR body) reads
    assert params["trigger"]["value"] == "submitted by hand"
    assert gate_env["ARGOSY_TRIGGER"] == "{{workflow.parameters.trigger}}"
    assert "ARGOSY_TRIGGER" not in {
        e["name"] for e in templates(training)["train"]["container"]["env"]
    }
    # And the monitor's trigger file goes through the submit step into that parameter
    assert outputs["trigger"]["valueFrom"]["path"] == "/tmp/monitoring/trigger"
    assert tasks["submit-training"]["arguments"]["parameters"] == [
        {"name": "trigger", "value": "{{tasks.monitor.outputs.parameters.trigger}}"}
    ]
    assert {"name": "trigger", "value": "{{inputs.parameters.trigger}}"} in submitted["spec"][
        "arguments"
    ]["parameters"]


def test_reliability_settings() -> None:
    # Given the compiled template
    doc = by_kind("WorkflowTemplate", "argosy-training")
    spec = doc["spec"]
    # When its reliability settings are read
    # Then every container retries transient errors only, with exponential backoff and a deadline
    for template in spec["templates"]:
        if "container" in template:
            retry = template["retryStrategy"]
            assert retry["retryPolicy"] == "OnTransientError"
            assert int(retry["backoff"]["factor"]) >= 2
            assert template["activeDeadlineSeconds"] > 0
    # And the workflow has a deadline, TTL, pod GC, a per-branch mutex and an exit handler
    assert spec["activeDeadlineSeconds"] > 0
    assert set(spec["ttlStrategy"]) == {"secondsAfterSuccess", "secondsAfterFailure"}
    assert spec["podGC"]["strategy"] == "OnPodSuccess"
    assert spec["synchronization"]["mutexes"] == [
        {"name": "argosy-training-{{workflow.parameters.branch}}"}
    ]
    assert spec["onExit"] == "report-status"
    exit_args = templates(doc)["report-status"]["container"]["args"]
    assert exit_args[exit_args.index("--status") + 1] == "{{workflow.status}}"


POD_KINDS = {"WorkflowTemplate", "CronWorkflow"}


@pytest.mark.parametrize(
    "name", sorted(n for n, d in load_generated().items() if d["kind"] in POD_KINDS)
)
def test_pod_security_restricted_and_secrets_by_reference(name: str) -> None:
    # Given a generated document with pod templates (Sensors/EventSources: see test_events)
    doc = load_generated()[name]
    spec = doc["spec"].get("workflowSpec", doc["spec"])
    # When the pod and container security settings are read
    pod = spec["securityContext"]
    # Then the pod runs as non-root with the runtime's seccomp profile
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["serviceAccountName"] != "default"
    for template in spec["templates"]:
        container = template.get("container")
        if container is None:
            continue
        # And every container drops all capabilities and never escalates
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["runAsNonRoot"] is True
        # And every variable is a literal non-secret setting or a Secret reference
        for env in container.get("env", []):
            if "valueFrom" in env:
                assert set(env["valueFrom"]) == {"secretKeyRef"}
            else:
                assert not any(w in env["name"] for w in ("TOKEN", "SECRET", "PASSWORD", "KEY"))


def test_images_are_pinned_by_digest(params) -> None:
    # Given every generated document
    text = "\n".join(p.read_text() for p in GENERATED.glob("*.yaml"))
    # When the image references are collected
    docs = load_generated().values()
    images = [
        t["container"]["image"]
        for d in docs
        if d["kind"] in POD_KINDS
        for t in d["spec"].get("workflowSpec", d["spec"])["templates"]
        if "container" in t
    ]
    # Then containers use the image parameter, whose default is params.yaml's digest reference
    assert images
    assert set(images) == {"{{workflow.parameters.image}}"}
    assert params.workflow.image in text
    assert "@sha256:" in params.workflow.image
    assert ":latest" not in text


def test_dag_rejects_cycles_and_shared_outputs() -> None:
    # Given two broken pipelines
    cycle = {
        "stages": {
            "a": {"cmd": "x", "deps": ["b.out"], "outs": ["a.out"]},
            "b": {"cmd": "y", "deps": ["a.out"], "outs": ["b.out"]},
        }
    }
    shared = {
        "stages": {"a": {"cmd": "x", "outs": ["dir"]}, "b": {"cmd": "y", "outs": ["dir/file"]}}
    }
    # When they are parsed
    # Then each is refused with the reason
    with pytest.raises(PipelineError, match="cycle"):
        parse_pipeline(cycle)
    with pytest.raises(PipelineError, match="both write"):
        parse_pipeline(shared)
