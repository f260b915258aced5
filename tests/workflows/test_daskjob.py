"""`train.engine: dask`: the train task creates a DaskJob, and the DaskJob is one a cluster runs.

Each template is generated the way `make workflows` does, from a copy of the sources whose
params.yaml says ``engine: dask``; the committed YAML (``engine: local``) is the golden test's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from argosy import k8s
from argosy.config import load_params
from argosy.workflows.codegen import render
from argosy.workflows.common import REPO_PATH
from argosy.workflows.dag import PipelineError

from .conftest import REPO, by_kind, copy_sources, templates
from .embedded import (
    JOB_STATUSES,
    daskjob_pods,
    embedded_documents,
    operator_cluster,
    operator_pod_labels,
)

TRAINING = "workflowtemplate.argosy-training.yaml"
PATH = os.environ["PATH"]
DEVICES = ("cuda", "cpu", "auto")


def render_training(root: Path, **train: Any) -> dict[str, Any]:
    """The training template generated from ``root`` with params.yaml ``train:`` updated."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    dask = train.pop("dask", {})
    params["train"].update(train)
    params["train"]["dask"].update(dask)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return yaml.safe_load(render(root)[TRAINING])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The training template with ``engine: dask`` for each device."""
    return {
        device: render_training(
            copy_sources(tmp_path_factory.mktemp(device)), engine="dask", device=device
        )
        for device in DEVICES
    }


@pytest.fixture(scope="module")
def settings():
    return load_params(REPO / "params.yaml")


def the_daskjob(doc: dict[str, Any]) -> dict[str, Any]:
    (job,) = embedded_documents(doc)
    return job


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod["containers"]


def test_with_engine_local_train_is_the_plain_stage_task() -> None:
    # Given the committed template (params.yaml says engine: local)
    assert load_params(REPO / "params.yaml").train.engine == "local"
    train = templates(by_kind("WorkflowTemplate", "argosy-training"))["train"]
    # Then train is a container running the stage, with no resource template anywhere
    assert train["container"]["args"][:3] == ["workflows", "stage", "train"]
    assert "resource" not in train
    assert embedded_documents(by_kind("WorkflowTemplate", "argosy-training")) == []


@pytest.mark.parametrize("device", DEVICES)
def test_train_creates_a_daskjob_and_waits_for_the_operators_verdict(generated, device) -> None:
    # Given the template generated with engine: dask
    doc = generated[device]
    tasks = {t["name"]: t for t in templates(doc)["pipeline"]["dag"]["tasks"]}
    resource = templates(doc)["train"]["resource"]
    # When the train task's template is read
    success_key, success = resource["successCondition"].split(" == ")
    failure_key, failure = resource["failureCondition"].split(" == ")
    # Then it creates one DaskJob, owned by the Workflow, and waits on status.jobStatus for the
    # operator's two final values
    assert resource["action"] == "create"
    assert resource["setOwnerReference"] is True
    assert success_key == failure_key == "status.jobStatus"
    assert (success, failure) == ("Successful", "Failed")
    assert {success, failure} <= set(JOB_STATUSES)
    assert the_daskjob(doc)["kind"] == "DaskJob"
    assert the_daskjob(doc)["apiVersion"] == "kubernetes.dask.org/v1"
    # And the DAG around it is unchanged: evaluate still waits for train
    assert tasks["train"]["depends"] == "prepare"
    assert "train" in tasks["evaluate"]["depends"].split(" && ")
    assert templates(doc)["train"]["activeDeadlineSeconds"] > 0


@pytest.mark.parametrize("device", DEVICES)
def test_the_daskjob_and_its_cluster_validate_strictly(generated, device) -> None:
    # Given the generated template, its DaskJob and the DaskCluster the operator makes of it
    doc = generated[device]
    job = the_daskjob(doc)
    cluster = operator_cluster(job)
    # When all three are validated against the vendored strict schemas
    errors = k8s.validate_documents([doc, job, cluster], k8s.VENDORED_DIR)
    # Then nothing is reported
    assert errors == []


def test_a_daskjob_with_an_unknown_field_fails_validation(generated) -> None:
    # Given the DaskJob with a misspelt field in its worker pod and one at the root of spec
    job = the_daskjob(generated["cuda"])
    job["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"][0]["imagePullPolicyy"] = "x"
    job["spec"]["jobb"] = {}
    # When it is validated
    errors = k8s.validate_documents([job], k8s.VENDORED_DIR)
    # Then both are named
    assert any("imagePullPolicyy" in e for e in errors)
    assert any("jobb" in e for e in errors)


def test_the_job_pod_runs_the_local_tasks_command_on_the_same_inputs(generated) -> None:
    # Given the local train task and the job pod of the DaskJob
    local = templates(by_kind("WorkflowTemplate", "argosy-training"))["train"]["container"]
    pod = daskjob_pods(the_daskjob(generated["cuda"]))["job-runner"]
    (job,) = pod["containers"]
    # Then it runs the same command in the checkout, from the pipeline image, with the same
    # environment (the Secret references of DVC's remote and MLflow)
    assert job["command"] + job["args"] == local["command"] + local["args"]
    assert job["image"] == local["image"] == "{{workflow.parameters.image}}"
    assert job["workingDir"] == local["workingDir"] == REPO_PATH
    assert job["env"] == local["env"]
    # And it is never restarted in place, within the task's deadline
    assert pod["restartPolicy"] == "Never"
    assert (
        pod["activeDeadlineSeconds"]
        == templates(generated["cuda"])["train"]["activeDeadlineSeconds"]
    )


def _checkout_commands(pod: dict[str, Any], origin: Path, revision: str, root: Path) -> list:
    """The pod's init containers as local commands (container paths mapped under ``root``)."""
    commands = []
    for container in pod["initContainers"]:
        argv = [
            a.replace("{{workflow.parameters.repo-url}}", origin.as_uri())
            .replace("{{workflow.parameters.revision}}", revision)
            .replace("/workspace", str(root))
            for a in container["command"] + container["args"]
        ]
        commands.append((argv, container["workingDir"].replace("/workspace", str(root))))
    return commands


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_init_containers_check_out_the_revision(generated, tmp_path: Path) -> None:
    # Given a repository with commits on main and on another branch
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "--quiet", "--initial-branch", "main")
    _git(
        origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", "--allow-empty"
    )
    first = _git(origin, "rev-parse", "HEAD")
    _git(
        origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two", "--allow-empty"
    )
    head = _git(origin, "rev-parse", "HEAD")
    _git(origin, "checkout", "-q", "-b", "dev", first)
    _git(
        origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "dev", "--allow-empty"
    )
    dev = _git(origin, "rev-parse", "HEAD")
    _git(origin, "checkout", "-q", "main")
    pods = daskjob_pods(the_daskjob(generated["cuda"]))
    # When each pod's init containers run for a commit, the default branch and another branch
    for component in ("job-runner", "worker"):
        for revision, expected in ((first, first), ("main", head), ("dev", dev)):
            root = tmp_path / f"{component}-{revision}"
            root.mkdir()
            for argv, cwd in _checkout_commands(pods[component], origin, revision, root):
                subprocess.run(argv, cwd=cwd, check=True, env={"HOME": str(tmp_path), "PATH": PATH})
            # Then the checkout is at that commit, where the main container works
            repo = Path(REPO_PATH.replace("/workspace", str(root)))
            assert _git(repo, "rev-parse", "HEAD") == expected, (component, revision)
            assert pods[component]["containers"][0]["workingDir"] == REPO_PATH


def test_workers_restore_the_upstream_outputs_then_join_the_scheduler(generated, settings) -> None:
    # Given the worker group of the DaskJob
    worker = the_daskjob(generated["cpu"])["spec"]["cluster"]["spec"]["worker"]
    (container,) = worker["spec"]["containers"]
    argv = container["command"] + container["args"]
    dask = settings.train.dask
    # Then there are train.dask.workers of them, each restoring prepare's outputs in its own
    # checkout (what train reads) before `dask worker` starts there with train.dask's shape
    assert worker["replicas"] == dask.workers
    split = argv.index("--")
    assert argv[:4] == ["argosy", "workflows", "after", "prepare"]
    assert "{{workflow.parameters.dvc-remote}}" in argv[:split]
    assert argv[split + 1 : split + 3] == ["dask", "worker"]
    tail = argv[split + 1 :]
    assert tail[tail.index("--name") + 1] == "$(DASK_WORKER_NAME)"
    assert tail[tail.index("--nthreads") + 1] == str(dask.threads_per_worker)
    assert tail[tail.index("--memory-limit") + 1] == dask.memory_limit
    assert container["workingDir"] == REPO_PATH
    assert {e["name"] for e in container["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_gpu_workers_only_with_device_cuda(generated, settings) -> None:
    gpu = settings.workflow.gpu
    for device, doc in generated.items():
        # Given each device's DaskJob
        pods = daskjob_pods(the_daskjob(doc))
        for component, pod in pods.items():
            limits = [c["resources"]["limits"] for c in pod["containers"]]
            on_gpu = component == "worker" and device == "cuda"
            if on_gpu:
                # Then with cuda the workers are on the GPU pool, each with its GPU limit
                assert pod["nodeSelector"] == gpu.node_selector
                assert pod["tolerations"] == [
                    t.model_dump(exclude_none=True) for t in gpu.tolerations
                ]
                assert all(limit[gpu.resource] == str(gpu.count) for limit in limits)
            else:
                # And the scheduler and the job pod never, nor any pod with cpu or auto
                assert "nodeSelector" not in pod, (device, component)
                assert "tolerations" not in pod, (device, component)
                assert not [k for limit in limits for k in limit if k.startswith("nvidia.com/")]
            # And init containers never hold a GPU
            for init in pod.get("initContainers", []):
                assert not [k for k in init["resources"]["limits"] if k.startswith("nvidia.com/")]


@pytest.mark.parametrize("device", DEVICES)
def test_every_daskjob_pod_is_restricted_sized_and_secret_free(generated, device) -> None:
    # Given every pod of the DaskJob
    for component, pod in daskjob_pods(the_daskjob(generated[device])).items():
        # Then the pod runs as non-root with the runtime's seccomp profile and no API token
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] != "default"
        for container in all_containers(pod):
            # And each container is locked down as the stage tasks are, read-only root included
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["runAsNonRoot"] is True
            # And has requests, a memory limit and the pipeline image
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(requests)
            assert limits["memory"] == requests["memory"]
            assert container["image"] == "{{workflow.parameters.image}}"
            # And reads credentials from Secrets only
            for env in container.get("env", []):
                if "valueFrom" in env:
                    assert set(env["valueFrom"]) == {"secretKeyRef"}
                else:
                    assert not any(w in env["name"] for w in ("TOKEN", "SECRET", "PASSWORD"))
            # And writes only to its emptyDir volumes
            volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            assert {m["name"] for m in container["volumeMounts"]} <= volumes, component


def test_the_scheduler_service_selects_the_scheduler_pod_only(generated) -> None:
    # Given the DaskJob and the labels the operator gives its pods
    job = the_daskjob(generated["cuda"])
    service = job["spec"]["cluster"]["spec"]["scheduler"]["service"]
    selector = service["selector"].items()
    labels = {c: operator_pod_labels(job, c) for c in ("scheduler", "worker", "job-runner")}
    # Then the generated name needs no knowing: the selector matches the scheduler pod and no
    # other, by the Workflow's name (which two trainings never share)
    assert job["metadata"]["generateName"]
    assert "name" not in job["metadata"]
    assert selector <= labels["scheduler"].items()
    assert not selector <= labels["worker"].items()
    assert not selector <= labels["job-runner"].items()
    assert service["selector"]["argosy.dev/workflow"] == "{{workflow.name}}"
    # And it exposes the port the operator gives DASK_SCHEDULER_ADDRESS (8786), named as the
    # scheduler container's port
    ports = {p["name"]: p for p in service["ports"]}
    (scheduler,) = daskjob_pods(job)["scheduler"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in scheduler["ports"]}
    assert ports["tcp-comm"]["port"] == 8786 == container_ports[ports["tcp-comm"]["targetPort"]]
    assert scheduler["readinessProbe"]["httpGet"]["path"] == "/health"
    # And the scheduler's Service name, <generated name>-scheduler, stays a DNS label
    assert len(f"{job['metadata']['generateName']}xxxxx-scheduler") <= 63


def test_the_dask_engine_refuses_a_scheduler_of_its_own(source_copy) -> None:
    # Given params that point train at an existing scheduler
    # When the workflows are generated
    # Then generation stops, naming the key, since the DaskJob's scheduler would go unused
    with pytest.raises(PipelineError, match=r"train\.dask\.scheduler"):
        render_training(source_copy, engine="dask", dask={"scheduler": "tcp://dask:8786"})


def test_pod_sizes_come_from_params(generated, settings) -> None:
    # Given the DaskJob's pods and params.yaml workflow.resources and workflow.dask
    pods = daskjob_pods(the_daskjob(generated["cuda"]))
    sizes = {
        "job-runner": settings.workflow.resources,
        "scheduler": settings.workflow.dask.scheduler,
        "worker": settings.workflow.dask.worker,
    }
    # Then each pod's containers request the size its section names, memory limited to it
    for component, pod in pods.items():
        size = sizes[component]
        for container in all_containers(pod):
            assert container["resources"]["requests"] == {"cpu": size.cpu, "memory": size.memory}
            assert container["resources"]["limits"]["memory"] == size.memory
