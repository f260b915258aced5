"""The ``train`` task of ``train.engine: dask``: a ``DaskJob`` of the dask-kubernetes operator.

An Argo resource template creates the DaskJob (``kubernetes.dask.org/v1``) and waits until the
operator reports ``status.jobStatus`` ``Successful`` or ``Failed``; the operator creates the
scheduler and the workers, starts the job pod with ``DASK_SCHEDULER_ADDRESS`` set, and deletes the
cluster when the job pod ends. The DaskJob carries the Workflow as its owner, so it goes with the
Workflow's TTL.

Inputs travel as they do for every other task. The job pod clones the repository at
``revision`` (init containers, the git Secret read through a credential helper, as the promotion
tasks push) and runs the very command of the local task, ``argosy workflows stage train``: DVC
restores the prepared splits from the remote, ``argosy train`` trains on the DaskJob's cluster,
and DVC pushes the model and the run-cache for ``evaluate``. Each worker clones the same commit to
the same path and restores the outputs of the stages ``train`` depends on before it starts, so the
partitions the job pod's graph names are on the worker's own disk.

Workers land on the GPU node pool (``workflow.gpu``) when ``train.device`` is ``cuda``, on CPU
nodes otherwise; the scheduler and the job pod never ask for a GPU. Every pod is Pod Security
"restricted" with a read-only root filesystem and no API token.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import yaml
from hera.workflows import Resource
from hera.workflows.models import ResourceRequirements

from argosy.config import TrainParams, WorkflowParams
from argosy.proc import CREDENTIAL_HELPER
from argosy.workflows import common
from argosy.workflows.common import REPO_PATH, param, remote_args
from argosy.workflows.dag import Stage

API_VERSION = "kubernetes.dask.org/v1"
GENERATE_NAME = "argosy-train-"
"""Short, so the operator's ``<name>-scheduler`` Service stays a valid DNS label."""
WORKFLOW_LABEL = "argosy.dev/workflow"
"""Carries the Workflow's name to every pod of the DaskJob (the operator copies its labels)."""
SUCCESS = "status.jobStatus == Successful"
FAILURE = "status.jobStatus == Failed"
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKSPACE = str(PurePosixPath(REPO_PATH).parent)


def _container(
    name: str,
    command: list[str],
    env: list,
    resources: ResourceRequirements,
    *,
    working_dir: str = REPO_PATH,
    source: bool = True,
) -> dict[str, Any]:
    mounts = common.plain(common.scratch_mounts())
    if source:
        mounts.append({"name": "workspace", "mountPath": WORKSPACE})
    return {
        "name": name,
        "image": param("image"),
        "command": command[:1],
        "args": command[1:],
        "workingDir": working_dir,
        "env": common.plain(common.base_env() + env),
        "resources": common.plain(resources),
        "securityContext": common.plain(common.container_security_context()),
        "volumeMounts": mounts,
    }


def _checkout(settings: WorkflowParams, resources: ResourceRequirements) -> list[dict[str, Any]]:
    """Init containers leaving the repository at ``revision`` in :data:`REPO_PATH`.

    What Argo's git artifact does for the other tasks: a full clone, then ``revision`` checked out
    (a commit, or a branch, which git's checkout finds among the cloned remote branches).
    """
    secrets = settings.secrets
    credentials = [
        common.secret_env("GIT_USERNAME", secrets.git_username),
        common.secret_env("GIT_PASSWORD", secrets.git_password),
    ]
    clone = ["git", "-c", f"credential.helper={CREDENTIAL_HELPER}", "clone", "--quiet"]
    return [
        _container(
            "clone",
            [*clone, param("repo-url"), REPO_PATH],
            credentials,
            resources,
            working_dir=WORKSPACE,
        ),
        _container(
            "checkout",
            ["git", "-C", REPO_PATH, "checkout", "--quiet", param("revision")],
            [],
            resources,
        ),
    ]


def _pod(
    settings: WorkflowParams,
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    volumes = common.plain(common.scratch_volumes())
    if init:
        volumes.append({"name": "workspace", "emptyDir": {}})
    pod = {
        "serviceAccountName": settings.service_account,
        "automountServiceAccountToken": False,
        "securityContext": common.plain(common.pod_security_context()),
        "initContainers": init,
        "containers": containers,
        "volumes": volumes,
        **extra,
    }
    return {key: value for key, value in pod.items() if value is not None}


def _restore(stages: tuple[str, ...], command: list[str]) -> list[str]:
    """``command``, run once each stage's outputs are restored from the remote (nothing reruns)."""
    for stage in reversed(stages):
        command = ["argosy", "workflows", "after", stage, *remote_args(), "--", *command]
    return command


def _scheduler(settings: WorkflowParams) -> dict[str, Any]:
    size = settings.dask.scheduler
    container = _container(
        "scheduler",
        ["dask", "scheduler", "--port", str(SCHEDULER_PORT)],
        [],
        common.resources(size),
        working_dir=common.SCRATCH,
        source=False,
    )
    health = {"path": "/health", "port": "http-dashboard"}
    container |= {
        "ports": [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": dict(health), "initialDelaySeconds": 5, "periodSeconds": 10},
        "livenessProbe": {"httpGet": dict(health), "initialDelaySeconds": 15, "periodSeconds": 20},
    }
    return {
        "spec": _pod(settings, [container]),
        "service": {
            "type": "ClusterIP",
            # The DaskJob's name is generated, so the Service finds its scheduler by the
            # Workflow's label, which the operator copies onto the scheduler pod.
            "selector": {"dask.org/component": "scheduler", WORKFLOW_LABEL: "{{workflow.name}}"},
            "ports": [
                {
                    "name": "tcp-comm",
                    "protocol": "TCP",
                    "port": SCHEDULER_PORT,
                    "targetPort": "tcp-comm",
                },
                {
                    "name": "http-dashboard",
                    "protocol": "TCP",
                    "port": DASHBOARD_PORT,
                    "targetPort": "http-dashboard",
                },
            ],
        },
    }


def _worker(stage: Stage, settings: WorkflowParams, train: TrainParams) -> dict[str, Any]:
    size = settings.dask.worker
    gpu = train.device == "cuda"
    worker = [
        *("dask", "worker", "--name", "$(DASK_WORKER_NAME)", "--no-dashboard"),
        *("--nthreads", str(train.dask.threads_per_worker)),
        *("--memory-limit", train.dask.memory_limit),
    ]
    container = _container(
        "worker",
        _restore(stage.upstream, worker),
        common.storage_env(settings),
        common.resources(size, settings.gpu if gpu else None),
    )
    placement = {}
    if gpu:
        placement = {
            "nodeSelector": dict(settings.gpu.node_selector),
            "tolerations": common.plain(common.gpu_tolerations(settings.gpu)),
        }
    init = _checkout(settings, common.resources(size))
    return {
        "replicas": train.dask.workers,
        "spec": _pod(settings, [container], init, **placement),
    }


def daskjob(
    stage: Stage, settings: WorkflowParams, train: TrainParams, args: list[str], env: list
) -> dict[str, Any]:
    """The DaskJob that runs ``argosy ARGS`` (the stage task's command) on its own cluster.

    Args:
        stage: The ``train`` stage of dvc.yaml (its upstream stages are restored on each worker).
        settings: params.yaml ``workflow:`` (image, Secrets, sizes, GPU pool, deadline).
        train: params.yaml ``train:`` (``dask.workers`` and their threads and memory limit;
            ``device: cuda`` puts the workers on the GPU pool).
        args: The arguments of ``argosy`` in the job pod.
        env: Environment of the job pod beyond the base one (Secret references).
    """
    size = settings.resources
    job = _container("job", ["argosy", *args], env, common.resources(size))
    job_pod = _pod(
        settings,
        [job],
        _checkout(settings, common.resources(size)),
        # Never restarted in place: a failed training fails the DaskJob, and the task, once.
        restartPolicy="Never",
        activeDeadlineSeconds=settings.task_deadline_seconds,
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "DaskJob",
        "metadata": {
            "generateName": GENERATE_NAME,
            "namespace": settings.namespace,
            "labels": {**common.LABELS, WORKFLOW_LABEL: "{{workflow.name}}"},
        },
        "spec": {
            "job": {"spec": job_pod},
            "cluster": {
                "spec": {
                    "scheduler": _scheduler(settings),
                    "worker": _worker(stage, settings, train),
                }
            },
        },
    }


def dask_train_template(
    stage: Stage,
    settings: WorkflowParams,
    train: TrainParams,
    args: list[str],
    env: list,
    annotations: dict[str, str],
) -> Resource:
    """The resource template that creates :func:`daskjob` and waits for its outcome.

    Not retried: after a lost wait pod, a retry would start a second cluster beside the first.
    The first runs on and pushes the model and the run-cache, so resubmitting the workflow
    restores the model instead of training it again.
    """
    return Resource(
        name=stage.name,
        action="create",
        manifest=yaml.safe_dump(daskjob(stage, settings, train, args, env), sort_keys=False),
        success_condition=SUCCESS,
        failure_condition=FAILURE,
        set_owner_reference=True,
        active_deadline_seconds=settings.task_deadline_seconds,
        annotations=annotations,
    )
