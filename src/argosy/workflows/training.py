"""The ``argosy-training`` WorkflowTemplate: a task per dvc.yaml stage, then the promotion tasks.

Tasks and dependencies come from :func:`argosy.workflows.dag.parse_pipeline`, so a stage added to
dvc.yaml becomes a task here with no other edit. Each stage task checks out the repository at
``revision`` and runs ``argosy workflows stage NAME``: DVC pulls what the stage needs (and the
run-cache, so an unchanged stage is restored instead of rerun), reproduces it, and pushes its
outputs and the run-cache back to the S3 remote for the next task. With ``train.engine: dask`` the
``train`` task instead creates a ``DaskJob`` whose job pod runs that same command
(:mod:`argosy.workflows.daskjob`).
"""

from __future__ import annotations

from hera.workflows import DAG, Container, Env, Parameter, Resource, Task, WorkflowTemplate
from hera.workflows.models import Mutex, Synchronization, ValueFrom

from argosy.config import TrainParams, WorkflowParams
from argosy.gatereport import TRIGGER_ENV
from argosy.signing import SIGNING_KEY_ENV, SIGNING_TRUST_ENV
from argosy.workflows import common
from argosy.workflows.common import param, remote_args, task_container
from argosy.workflows.dag import PipelineError, Stage
from argosy.workflows.daskjob import dask_train_template

NAME = "argosy-training"
ENTRYPOINT = "pipeline"
EXIT_HANDLER = "report-status"
TRAIN_STAGE = "train"
GATE_STAGE = "gate"
GATE_REPORT = "reports/gate.json"
PROMOTE_WHEN = f"{{{{tasks.{GATE_STAGE}.outputs.parameters.decision}}}} == promote"
STATUS_CONTEXT = "argosy/training"
REGISTER = "register"
PROMOTE_STAGING = "promote-staging"
OPEN_PRODUCTION_PR = "open-production-pr"


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


def _check(stages: list[Stage], settings: WorkflowParams, train: TrainParams) -> None:
    names = [s.name for s in stages]
    if GATE_STAGE not in names:
        raise PipelineError(f"dvc.yaml needs a `{GATE_STAGE}` stage writing {GATE_REPORT}")
    unknown = sorted(set(settings.gpu.stages) - set(names))
    if unknown:
        raise PipelineError(f"workflow.gpu.stages names unknown stages: {unknown}")
    if train.engine == "dask":
        if TRAIN_STAGE not in names:
            raise PipelineError(f"train.engine dask needs a `{TRAIN_STAGE}` stage in dvc.yaml")
        if train.dask.scheduler:
            raise PipelineError(
                "train.dask.scheduler must be empty for the cluster workflow: the train task "
                "creates its own DaskJob, whose scheduler the job pod is given"
            )


def training_template(
    stages: list[Stage], settings: WorkflowParams, train: TrainParams
) -> WorkflowTemplate:
    """Build the training WorkflowTemplate from the DVC stages and params.yaml.

    Args:
        stages: dvc.yaml's stages in dependency order (:func:`argosy.workflows.dag.load_pipeline`).
        settings: params.yaml ``workflow:``.
        train: params.yaml ``train:``; its ``engine`` decides what the ``train`` task runs.

    Returns:
        The WorkflowTemplate ``argosy-training``.

    Raises:
        PipelineError: dvc.yaml has no ``gate`` stage (or, with ``engine: dask``, no ``train``
            stage), a ``workflow.gpu.stages`` entry names a stage dvc.yaml does not have, or
            ``engine: dask`` names a scheduler of its own.
    """
    _check(stages, settings, train)
    model_env = [common.secret_env("MLFLOW_TRACKING_URI", settings.secrets.mlflow_tracking_uri)]
    stage_env = common.storage_env(settings) + model_env
    promote_env = [
        *stage_env,
        common.secret_env("GITHUB_TOKEN", settings.secrets.github_token),
        # The git artifact's Secret again, so `argosy promote` can push the pin (see runner).
        common.secret_env("GIT_USERNAME", settings.secrets.git_username),
        common.secret_env("GIT_PASSWORD", settings.secrets.git_password),
        Env(name="GITHUB_REPOSITORY", value=param("repository")),
        Env(name="GITHUB_API_URL", value=param("github-api-url")),
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
        entrypoint=ENTRYPOINT,
        on_exit=EXIT_HANDLER,
        service_account_name=settings.service_account,
        arguments=_arguments(settings),
        security_context=common.pod_security_context(),
        volumes=common.scratch_volumes(),
        active_deadline_seconds=settings.active_deadline_seconds,
        ttl_strategy=common.ttl_strategy(settings),
        pod_gc=common.pod_gc(),
        synchronization=Synchronization(mutexes=[Mutex(name=f"{NAME}-{param('branch')}")]),
        workflow_metadata=None,
    ) as template:
        stage_templates: dict[str, Container | Resource] = {}
        for stage in stages:
            args = ["workflows", "stage", stage.name, *remote_args()]
            annotations = {"argosy.dev/dvc-cmd": " ".join(stage.cmd)}
            if stage.name == TRAIN_STAGE and train.engine == "dask":
                stage_templates[stage.name] = dask_train_template(
                    stage, settings, train, args, stage_env, annotations
                )
                continue
            outputs = None
            env = stage_env
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
                env = [*stage_env, Env(name=TRIGGER_ENV, value=param("trigger"))]
            stage_templates[stage.name] = task_container(
                stage.name,
                settings,
                args,
                env=env,
                gpu=stage.name in settings.gpu.stages,
                outputs=outputs,
                annotations=annotations,
            )

        def after_gate(name: str, command: list[str], extra: list) -> Container:
            # `workflows after gate` judges again (the gate's report is a record of its run, not
            # a cached output): with the same trigger, its report says the same why.
            trigger = Env(name=TRIGGER_ENV, value=param("trigger"))
            return task_container(
                name,
                settings,
                ["workflows", "after", GATE_STAGE, *remote_args(), "--", *command],
                env=[*promote_env, *extra, trigger],
            )

        promotion = [
            after_gate(REGISTER, ["argosy", "register", "--gate", GATE_REPORT], sign_env),
            after_gate(PROMOTE_STAGING, ["argosy", "promote", "--env", "staging"], trust_env),
            after_gate(OPEN_PRODUCTION_PR, ["argosy", "promote", "--env", "production"], trust_env),
        ]
        # Registered on the template by the context manager; referenced by on_exit.
        task_container(
            EXIT_HANDLER,
            settings,
            [
                "workflows",
                "report-status",
                "--repository",
                param("repository"),
                "--revision",
                param("revision"),
                "--status",
                "{{workflow.status}}",
                "--context",
                STATUS_CONTEXT,
                "--api-url",
                param("github-api-url"),
            ],
            env=[common.secret_env("GITHUB_TOKEN", settings.secrets.github_token)],
            with_source=False,
        )

        with DAG(name=ENTRYPOINT):
            for stage in stages:
                Task(
                    name=stage.name,
                    template=stage_templates[stage.name],
                    depends=" && ".join(stage.upstream) or None,
                )
            previous = GATE_STAGE
            for container in promotion:
                Task(name=container.name, template=container, depends=previous, when=PROMOTE_WHEN)
                previous = container.name
    return template
