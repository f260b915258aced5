"""The ``argosy-training`` WorkflowTemplate: a task per dvc.yaml stage, then the promotion tasks.

Tasks and dependencies come from :func:`argosy.workflows.dag.parse_pipeline`, so a stage added to
dvc.yaml becomes a task here with no other edit. Each stage task checks out the repository at
``revision`` and runs ``argosy workflows stage NAME``: DVC pulls what the stage needs (and the
run-cache, so an unchanged stage is restored instead of rerun), reproduces it, and pushes its
outputs and the run-cache back to the S3 remote for the next task.
"""

from __future__ import annotations

from hera.workflows import (
    DAG,
    Container,
    Env,
    GitArtifact,
    Parameter,
    Task,
    WorkflowTemplate,
)
from hera.workflows.models import (
    Mutex,
    ResourceRequirements,
    SecretKeySelector,
    Synchronization,
    Toleration,
    ValueFrom,
)

from argosy.config import WorkflowParams
from argosy.evaluation.gate import TRIGGER_ENV
from argosy.signing import SIGNING_KEY_ENV, SIGNING_TRUST_ENV
from argosy.workflows import common
from argosy.workflows.dag import PipelineError, Stage

NAME = "argosy-training"
REPO_PATH = "/workspace/repo"
GATE_STAGE = "gate"
GATE_REPORT = "reports/gate.json"
PROMOTE_WHEN = f"{{{{tasks.{GATE_STAGE}.outputs.parameters.decision}}}} == promote"
STATUS_CONTEXT = "argosy/training"


def _p(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def _arguments(settings: WorkflowParams) -> list[Parameter]:
    return [
        Parameter(
            name="revision", description="Git commit to train from; every task checks it out."
        ),
        Parameter(
            name="branch",
            value=settings.branch,
            description="Branch the revision belongs to: one training per branch runs at a time.",
        ),
        Parameter(
            name="trigger",
            value="submitted by hand",
            description="Why this training runs (a push, the drift monitor's reasons): the "
            "promotion PR's body says it first.",
        ),
        Parameter(name="repo-url", value=settings.repository_url, description="Git repository."),
        Parameter(
            name="repository",
            value=f"{settings.github.owner}/{settings.github.repository}",
            description="OWNER/NAME on GitHub, for the commit status and the promotion PR.",
        ),
        Parameter(name="image", value=settings.image, description="The pipeline image, by digest."),
        Parameter(name="dvc-remote", value=settings.dvc_remote.url, description="DVC remote URL."),
        Parameter(
            name="dvc-endpoint",
            value=settings.dvc_remote.endpoint or "",
            description="S3 endpoint of the DVC remote (empty: AWS).",
        ),
        Parameter(
            name="github-api-url",
            value="https://api.github.com",
            description="GitHub REST API base URL (Enterprise: https://HOST/api/v3).",
        ),
    ]


def _source(settings: WorkflowParams) -> GitArtifact:
    secrets = settings.secrets
    return GitArtifact(
        name="source",
        path=REPO_PATH,
        repo=_p("repo-url"),
        revision=_p("revision"),
        username_secret=SecretKeySelector(
            name=secrets.git_username.name, key=secrets.git_username.key
        ),
        password_secret=SecretKeySelector(
            name=secrets.git_password.name, key=secrets.git_password.key
        ),
    )


def _remote_args() -> list[str]:
    return ["--dvc-remote", _p("dvc-remote"), "--dvc-endpoint", _p("dvc-endpoint")]


def _resources(settings: WorkflowParams, gpu: bool) -> ResourceRequirements:
    requests = {"cpu": settings.resources.cpu, "memory": settings.resources.memory}
    limits = {"memory": settings.resources.memory}
    if gpu:
        limits[settings.gpu.resource] = str(settings.gpu.count)
    return ResourceRequirements(requests=requests, limits=limits)


def _tolerations(settings: WorkflowParams) -> list[Toleration]:
    return [Toleration(**t.model_dump(exclude_none=True)) for t in settings.gpu.tolerations]


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
    gpu_settings = settings.gpu
    return Container(
        name=name,
        image=_p("image"),
        command=["argosy"],
        args=args,
        working_dir=REPO_PATH if with_source else common.SCRATCH,
        inputs=[_source(settings)] if with_source else None,
        outputs=outputs,
        env=common.base_env() + (env or []),
        resources=_resources(settings, gpu),
        security_context=common.container_security_context(),
        volume_mounts=common.scratch_mounts(),
        retry_strategy=common.retry_transient(settings.retry),
        active_deadline_seconds=settings.task_deadline_seconds,
        node_selector=dict(gpu_settings.node_selector) if gpu else None,
        tolerations=[
            Toleration(**t.model_dump(exclude_none=True)) for t in gpu_settings.tolerations
        ]
        if gpu
        else None,
        annotations=annotations,
    )


def training_template(stages: list[Stage], settings: WorkflowParams) -> WorkflowTemplate:
    """Build the training WorkflowTemplate from the DVC stages and the ``workflow:`` settings.

    Args:
        stages: dvc.yaml's stages in dependency order (:func:`argosy.workflows.dag.load_pipeline`).
        settings: params.yaml ``workflow:``.

    Returns:
        The WorkflowTemplate ``argosy-training``.

    Raises:
        PipelineError: dvc.yaml has no ``gate`` stage, or a ``workflow.gpu.stages`` entry names a
            stage dvc.yaml does not have.
    """
    names = [s.name for s in stages]
    if GATE_STAGE not in names:
        raise PipelineError(f"dvc.yaml needs a `{GATE_STAGE}` stage writing {GATE_REPORT}")
    unknown = sorted(set(settings.gpu.stages) - set(names))
    if unknown:
        raise PipelineError(f"workflow.gpu.stages names unknown stages: {unknown}")

    model_env = [common.secret_env("MLFLOW_TRACKING_URI", settings.secrets.mlflow_tracking_uri)]
    stage_env = common.storage_env(settings) + model_env
    promote_env = [
        *stage_env,
        common.secret_env("GITHUB_TOKEN", settings.secrets.github_token),
        # The git artifact's Secret again, so `argosy promote` can push the pin (see runner).
        common.secret_env("GIT_USERNAME", settings.secrets.git_username),
        common.secret_env("GIT_PASSWORD", settings.secrets.git_password),
        Env(name="GITHUB_REPOSITORY", value=_p("repository")),
        Env(name="GITHUB_API_URL", value=_p("github-api-url")),
    ]
    # The signing key only where `argosy register` signs; the trust where promote verifies.
    secrets = settings.secrets
    sign_env = (
        [common.secret_env(SIGNING_KEY_ENV, secrets.signing_key)] if secrets.signing_key else []
    )
    trust_env = (
        [common.secret_env(SIGNING_TRUST_ENV, secrets.signing_trust)]
        if secrets.signing_trust
        else []
    )

    with WorkflowTemplate(
        name=NAME,
        namespace=settings.namespace,
        labels=common.LABELS,
        annotations={
            "workflows.argoproj.io/description": "The DVC pipeline of dvc.yaml, task by task, "
            "then registration and promotion when the gate says promote.",
        },
        entrypoint="pipeline",
        on_exit="report-status",
        service_account_name=settings.service_account,
        arguments=_arguments(settings),
        security_context=common.pod_security_context(),
        volumes=common.scratch_volumes(),
        active_deadline_seconds=settings.active_deadline_seconds,
        ttl_strategy=common.ttl_strategy(settings),
        pod_gc=common.pod_gc(),
        synchronization=Synchronization(mutexes=[Mutex(name="argosy-training-" + _p("branch"))]),
        workflow_metadata=None,
    ) as template:
        stage_templates = {}
        for stage in stages:
            args = ["workflows", "stage", stage.name, *_remote_args()]
            outputs = None
            if stage.name == GATE_STAGE:
                args += [
                    "--export",
                    f"decision={GATE_REPORT}:decision",
                    "--outputs",
                    common.OUTPUTS_DIR,
                ]
                outputs = [
                    Parameter(
                        name="decision",
                        value_from=ValueFrom(
                            path=f"{common.OUTPUTS_DIR}/decision", default="reject"
                        ),
                    )
                ]
            env = stage_env
            if stage.name == GATE_STAGE:
                env = [*stage_env, Env(name=TRIGGER_ENV, value=_p("trigger"))]
            stage_templates[stage.name] = task_container(
                stage.name,
                settings,
                args,
                env=env,
                gpu=stage.name in settings.gpu.stages,
                outputs=outputs,
                annotations={"argosy.dev/dvc-cmd": " ".join(stage.cmd)},
            )

        def after_gate(name: str, command: list[str], extra: list) -> Container:
            return task_container(
                name,
                settings,
                ["workflows", "after", GATE_STAGE, *_remote_args(), "--", *command],
                env=promote_env + extra,
            )

        register = after_gate("register", ["argosy", "register", "--gate", GATE_REPORT], sign_env)
        staging = after_gate(
            "promote-staging", ["argosy", "promote", "--env", "staging"], trust_env
        )
        production = after_gate(
            "open-production-pr", ["argosy", "promote", "--env", "production"], trust_env
        )
        status = task_container(
            "report-status",
            settings,
            [
                "workflows",
                "report-status",
                "--repository",
                _p("repository"),
                "--revision",
                _p("revision"),
                "--status",
                "{{workflow.status}}",
                "--context",
                STATUS_CONTEXT,
                "--api-url",
                _p("github-api-url"),
            ],
            env=[common.secret_env("GITHUB_TOKEN", settings.secrets.github_token)],
            with_source=False,
        )

        with DAG(name="pipeline"):
            for stage in stages:
                Task(
                    name=stage.name,
                    template=stage_templates[stage.name],
                    depends=" && ".join(stage.upstream) or None,
                )
            previous = GATE_STAGE
            for name, container in (
                ("register", register),
                ("promote-staging", staging),
                ("open-production-pr", production),
            ):
                Task(name=name, template=container, depends=previous, when=PROMOTE_WHEN)
                previous = name
        del status  # registered on the template by the context manager; referenced by on_exit
    return template
