"""The ``argosy-ingest`` WorkflowTemplate: validate a landed batch, version it, commit ``data.dvc``.

The Sensor of the data EventSource submits it with the new object's key. The task checks out the
default branch, downloads the batch as an S3 input artifact and runs ``argosy ingest --push``;
the resulting commit touches ``data.dvc``, so the push Sensor then trains on it.
"""

from __future__ import annotations

from hera.workflows import DAG, Env, Parameter, S3Artifact, Task, WorkflowTemplate
from hera.workflows.models import Mutex, SecretKeySelector, Synchronization

from argosy.config import WorkflowParams
from argosy.workflows import common
from argosy.workflows.training import task_container

NAME = "argosy-ingest"
BATCH_PATH = "/workspace/batch/batch.parquet"


def _p(name: str) -> str:
    return "{{workflow.parameters." + name + "}}"


def ingest_template(settings: WorkflowParams) -> WorkflowTemplate:
    """Build the ingest WorkflowTemplate from params.yaml ``workflow:``."""
    secrets = settings.secrets
    data = settings.data_events
    endpoint = data.endpoint or (settings.dvc_remote.endpoint or "").split("://")[-1]
    with WorkflowTemplate(
        name=NAME,
        namespace=settings.namespace,
        labels=common.LABELS,
        entrypoint="ingest-batch",
        service_account_name=settings.service_account,
        security_context=common.pod_security_context(),
        volumes=common.scratch_volumes(),
        active_deadline_seconds=settings.task_deadline_seconds,
        ttl_strategy=common.ttl_strategy(settings),
        pod_gc=common.pod_gc(),
        # One ingestion at a time: each commits on top of the last one.
        synchronization=Synchronization(mutexes=[Mutex(name="argosy-ingest")]),
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
            "ingest",
            settings,
            [
                "ingest",
                "--batch",
                BATCH_PATH,
                "--reports",
                f"{common.SCRATCH}/ingest",
                "--push",
                "--branch",
                _p("revision"),
                "--dvc-remote",
                _p("dvc-remote"),
                "--dvc-endpoint",
                _p("dvc-endpoint"),
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
                bucket=_p("bucket"),
                key=_p("batch-key"),
                access_key_secret=SecretKeySelector(
                    name=secrets.storage_access_key.name, key=secrets.storage_access_key.key
                ),
                secret_key_secret=SecretKeySelector(
                    name=secrets.storage_secret_key.name, key=secrets.storage_secret_key.key
                ),
            ),
        ]
        with DAG(name="ingest-batch"):
            Task(name="ingest", template=ingest)
    return template
