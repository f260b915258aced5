"""Pieces every generated template shares: Pod Security "restricted", retries, secrets, volumes."""

from __future__ import annotations

from hera.workflows import Env, RetryStrategy, SecretEnv
from hera.workflows.models import (
    Backoff,
    Capabilities,
    EmptyDirVolumeSource,
    PodGC,
    PodSecurityContext,
    SeccompProfile,
    SecurityContext,
    TTLStrategy,
    Volume,
    VolumeMount,
)

from argosy.config import RetryParams, SecretKeyParams, WorkflowParams
from argosy.workflows.runner import OUTPUTS_DIR, SCRATCH

__all__ = ["OUTPUTS_DIR", "SCRATCH"]

UID = 1000
"""The unprivileged user of the Dockerfile's stages."""


LABELS = {"app.kubernetes.io/part-of": "argosy"}


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
