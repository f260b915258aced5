"""Pieces every generated template shares: the hardened task container and its parts.

Pod Security "restricted", retries, Secret references, volumes, the checkout of ``revision`` and
references to workflow parameters: one definition each, for every module of this package.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import Container, Env, GitArtifact, Parameter, RetryStrategy, SecretEnv
from hera.workflows.models import (
    Backoff,
    Capabilities,
    EmptyDirVolumeSource,
    PodGC,
    PodSecurityContext,
    ResourceRequirements,
    SeccompProfile,
    SecretKeySelector,
    SecurityContext,
    Toleration,
    TTLStrategy,
    Volume,
    VolumeMount,
)

from argosy.config import (
    GpuParams,
    RetryParams,
    SecretKeyParams,
    TaskResourcesParams,
    WorkflowParams,
)
from argosy.workflows.runner import OUTPUTS_DIR, SCRATCH

__all__ = ["OUTPUTS_DIR", "SCRATCH"]

UID = 1000
"""The unprivileged user of the Dockerfile's stages."""

REPO_PATH = "/workspace/repo"
"""Where a task's checkout of the ``revision`` parameter lies."""

LABELS = {"app.kubernetes.io/part-of": "argosy"}


def param(name: str) -> str:
    """A reference to the workflow parameter ``name``, which Argo substitutes at run time."""
    return f"{{{{workflow.parameters.{name}}}}}"


def plain(model: Any) -> Any:
    """A Hera model, or a list of them, as the plain mapping Kubernetes reads.

    For the documents built as mappings (Argo Events, the DaskJob) from the same pieces.
    """
    if isinstance(model, list):
        return [plain(m) for m in model]
    if isinstance(model, Env | SecretEnv):
        model = model.build()
    return model.model_dump(by_alias=True, exclude_none=True)


def pod_security_context() -> PodSecurityContext:
    """Pod-level settings of the Pod Security Standard "restricted" profile."""
    return PodSecurityContext(
        run_as_non_root=True,
        run_as_user=UID,
        run_as_group=UID,
        fs_group=UID,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> SecurityContext:
    """Container-level settings of "restricted", plus a read-only root filesystem."""
    return SecurityContext(
        allow_privilege_escalation=False,
        capabilities=Capabilities(drop=["ALL"]),
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=UID,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


def scratch_volumes() -> list[Volume]:
    """Writable scratch space, since the root filesystem is read-only."""
    return [Volume(name="tmp", empty_dir=EmptyDirVolumeSource())]


def scratch_mounts() -> list[VolumeMount]:
    """Where :func:`scratch_volumes` are mounted in every container."""
    return [VolumeMount(name="tmp", mount_path=SCRATCH)]


def ttl_strategy(settings: WorkflowParams) -> TTLStrategy:
    """How long finished workflows stay, from params.yaml ``workflow:``."""
    return TTLStrategy(
        seconds_after_success=settings.ttl_after_success_seconds,
        seconds_after_failure=settings.ttl_after_failure_seconds,
    )


def pod_gc() -> PodGC:
    """Delete a task's pod once it succeeded; failed pods stay for their logs."""
    return PodGC(strategy="OnPodSuccess")


def retry_transient(retry: RetryParams) -> RetryStrategy:
    """Retry transient errors (evictions, API errors) with exponential backoff.

    ``OnTransientError`` never retries a non-zero exit of the code itself: a failing training run
    fails once, loudly, instead of burning GPU hours on ``retryPolicy: Always``.
    """
    return RetryStrategy(
        limit=retry.limit,
        retry_policy="OnTransientError",
        backoff=Backoff(
            duration=retry.backoff, factor=retry.factor, max_duration=retry.max_backoff
        ),
    )


def secret_env(name: str, ref: SecretKeyParams) -> SecretEnv:
    """An environment variable read from a Secret (the value never appears in the template)."""
    return SecretEnv(name=name, secret_name=ref.name, secret_key=ref.key)


def base_env() -> list[Env]:
    """Environment every Argosy container gets."""
    return [
        Env(name="HOME", value=SCRATCH),
        Env(name="DVC_NO_ANALYTICS", value="1"),
        Env(name="PYTHONDONTWRITEBYTECODE", value="1"),
    ]


def storage_env(settings: WorkflowParams) -> list[SecretEnv]:
    """S3 credentials of the DVC remote (and of the landing bucket)."""
    return [
        secret_env("AWS_ACCESS_KEY_ID", settings.secrets.storage_access_key),
        secret_env("AWS_SECRET_ACCESS_KEY", settings.secrets.storage_secret_key),
    ]


def secret_selector(ref: SecretKeyParams) -> SecretKeySelector:
    """A SecretKeySelector (artifact credentials) for a Secret reference of params.yaml."""
    return SecretKeySelector(name=ref.name, key=ref.key)


def source_artifact(settings: WorkflowParams) -> GitArtifact:
    """The repository at ``revision``, checked out at :data:`REPO_PATH` with the git Secret."""
    return GitArtifact(
        name="source",
        path=REPO_PATH,
        repo=param("repo-url"),
        revision=param("revision"),
        username_secret=secret_selector(settings.secrets.git_username),
        password_secret=secret_selector(settings.secrets.git_password),
    )


def remote_args() -> list[str]:
    """The DVC remote options of ``argosy workflows stage|after``, from workflow parameters."""
    return ["--dvc-remote", param("dvc-remote"), "--dvc-endpoint", param("dvc-endpoint")]


def resources(size: TaskResourcesParams, gpu: GpuParams | None = None) -> ResourceRequirements:
    """``size`` as requests (its memory also as the limit), plus the GPU limit of ``gpu``."""
    requests = {"cpu": size.cpu, "memory": size.memory}
    limits = {"memory": size.memory}
    if gpu is not None:
        limits[gpu.resource] = str(gpu.count)
    return ResourceRequirements(requests=requests, limits=limits)


def gpu_tolerations(gpu: GpuParams) -> list[Toleration]:
    """The tolerations that let a pod onto the GPU node pool (``workflow.gpu.tolerations``)."""
    return [Toleration(**t.model_dump(exclude_none=True)) for t in gpu.tolerations]


def task_container(
    name: str,
    settings: WorkflowParams,
    args: list[str],
    *,
    env: list | None = None,
    gpu: bool = False,
    with_source: bool = True,
    outputs: list[Parameter] | None = None,
    annotations: dict[str, str] | None = None,
) -> Container:
    """A container template running ``argosy ARGS`` from the pipeline image, hardened.

    Pod Security "restricted", transient-error retries, a deadline, Secret-only credentials, and
    (``gpu=True`` only) the GPU node selector, tolerations and limit of ``workflow.gpu``.
    """
    return Container(
        name=name,
        image=param("image"),
        command=["argosy"],
        args=args,
        working_dir=REPO_PATH if with_source else SCRATCH,
        inputs=[source_artifact(settings)] if with_source else None,
        outputs=outputs,
        env=base_env() + (env or []),
        resources=resources(settings.resources, settings.gpu if gpu else None),
        security_context=container_security_context(),
        volume_mounts=scratch_mounts(),
        retry_strategy=retry_transient(settings.retry),
        active_deadline_seconds=settings.task_deadline_seconds,
        node_selector=dict(settings.gpu.node_selector) if gpu else None,
        tolerations=gpu_tolerations(settings.gpu) if gpu else None,
        annotations=annotations,
    )
