"""The ``argosy-ingest`` WorkflowTemplate: validate a landed batch, version it, commit ``data.dvc``.

The Sensor of the data EventSource submits it with the new object's key. The task checks out the
default branch, downloads the batch as an S3 input artifact and runs ``argosy ingest --push``;
the resulting commit touches ``data.dvc``, so the push Sensor then trains on it.
"""

from __future__ import annotations

from hera.workflows import DAG, Env, Parameter, S3Artifact, Task, WorkflowTemplate
from hera.workflows.models import Mutex, Synchronization

from argosy.config import WorkflowParams
from argosy.workflows import common
from argosy.workflows.common import param, remote_args, task_container

NAME = "argosy-ingest"
ENTRYPOINT = "ingest-batch"
INGEST = "ingest"
BATCH_PATH = "/workspace/batch/batch.parquet"


def ingest_template(settings: WorkflowParams) -> WorkflowTemplate:
    """Build the ingest WorkflowTemplate from params.yaml ``workflow:``."""
    secrets = settings.secrets
    data = settings.data_events
    endpoint = data.endpoint or (settings.dvc_remote.endpoint or "").split("://")[-1]
    with WorkflowTemplate(
        name=NAME,
        namespace=settings.namespace,
        labels=common.LABELS,
        entrypoint=ENTRYPOINT,
        service_account_name=settings.service_account,
        security_context=common.pod_security_context(),
        volumes=common.scratch_volumes(),
        active_deadline_seconds=settings.task_deadline_seconds,
        ttl_strategy=common.ttl_strategy(settings),
        pod_gc=common.pod_gc(),
        # One ingestion at a time: each commits on top of the last one.
        synchronization=Synchronization(mutexes=[Mutex(name=NAME)]),
        arguments=[
            Parameter(name="batch-key", description="Object key of the new batch."),
            Parameter(name="bucket", value=data.bucket, description="Landing bucket."),
            Parameter(name="revision", value=settings.branch, description="Branch to commit on."),
            Parameter(name="repo-url", value=settings.repository_url),
            Parameter(name="image", value=settings.image),
            Parameter(name="dvc-remote", value=settings.dvc_remote.url),
            Parameter(name="dvc-endpoint", value=settings.dvc_remote.endpoint or ""),
        ],
    ) as template:
        ingest = task_container(
            INGEST,
            settings,
            [
                "ingest",
                "--batch",
                BATCH_PATH,
                "--reports",
                f"{common.SCRATCH}/ingest",
                "--push",
                "--branch",
                param("revision"),
                *remote_args(),
            ],
            env=[
                *common.storage_env(settings),
                common.secret_env("GIT_USERNAME", secrets.git_username),
                common.secret_env("GIT_PASSWORD", secrets.git_password),
                Env(name="GIT_AUTHOR_NAME", value="argosy-ingest"),
                Env(name="GIT_AUTHOR_EMAIL", value="argosy-ingest@users.noreply.github.com"),
                Env(name="GIT_COMMITTER_NAME", value="argosy-ingest"),
                Env(name="GIT_COMMITTER_EMAIL", value="argosy-ingest@users.noreply.github.com"),
            ],
        )
        ingest.inputs = [
            *ingest.inputs,
            S3Artifact(
                name="batch",
                path=BATCH_PATH,
                endpoint=endpoint or None,
                bucket=param("bucket"),
                key=param("batch-key"),
                access_key_secret=common.secret_selector(secrets.storage_access_key),
                secret_key_secret=common.secret_selector(secrets.storage_secret_key),
            ),
        ]
        with DAG(name=ENTRYPOINT):
            Task(name=INGEST, template=ingest)
    return template
