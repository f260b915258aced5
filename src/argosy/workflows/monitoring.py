"""The ``argosy-drift-monitor`` CronWorkflow: `argosy monitor`, then training when it says retrain.

The monitor reads the reference sample that the ``prepare`` stage wrote (restored from the DVC
remote) and the servers' prediction log (``<workflow.drift_monitor.prediction_log>/<model name>``,
the name being contract.yaml's); its decision and drift share become output parameters, the drift
share also an Argo custom Prometheus metric. On ``retrain`` a resource template creates
a Workflow from ``argosy-training`` at the head of the branch, with the submitter's narrow role.
"""

from __future__ import annotations

import yaml
from hera.workflows import DAG, CronWorkflow, Parameter, Resource, Task
from hera.workflows.models import Gauge, Metrics, Prometheus, ValueFrom

from argosy.config import WorkflowParams
from argosy.workflows import common
from argosy.workflows.common import param, remote_args, task_container
from argosy.workflows.training import NAME as TRAINING
from argosy.workflows.training import TRAIN_STAGE

NAME = "argosy-drift-monitor"
ENTRYPOINT = "monitor-and-retrain"
MONITOR = "monitor"
SUBMIT = "submit-training"
REPORTS = f"{common.SCRATCH}/monitoring"


def training_submission(branch_param: str = param("revision")) -> str:
    """The Workflow the retrain step creates: ``argosy-training`` at the branch head."""
    return yaml.safe_dump(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "generateName": f"{TRAINING}-drift-",
                "labels": {**common.LABELS, "argosy.dev/trigger": "drift"},
            },
            "spec": {
                "workflowTemplateRef": {"name": TRAINING},
                "arguments": {
                    "parameters": [
                        {"name": "revision", "value": branch_param},
                        {"name": "branch", "value": branch_param},
                        # The monitor's `trigger` file: a plain line (see monitor.trigger_text).
                        {"name": "trigger", "value": "{{inputs.parameters.trigger}}"},
                    ]
                },
            },
        },
        sort_keys=False,
    )


def drift_monitor(settings: WorkflowParams, model_name: str) -> CronWorkflow:
    """Build the drift-monitor CronWorkflow.

    Args:
        settings: params.yaml ``workflow:``.
        model_name: The monitored model (contract.yaml ``name:``): its prediction log is
            ``<workflow.drift_monitor.prediction_log>/<model_name>``.
    """
    schedule = settings.drift_monitor
    prediction_log = f"{schedule.prediction_log.rstrip('/')}/{model_name}"
    with CronWorkflow(
        name=NAME,
        namespace=settings.namespace,
        labels=common.LABELS,
        schedules=[schedule.schedule],
        timezone=schedule.timezone,
        concurrency_policy="Forbid",
        starting_deadline_seconds=schedule.starting_deadline_seconds,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        entrypoint=ENTRYPOINT,
        service_account_name=settings.submitter_service_account,
        security_context=common.pod_security_context(),
        volumes=common.scratch_volumes(),
        active_deadline_seconds=settings.task_deadline_seconds,
        arguments=[
            Parameter(name="revision", value=settings.branch, description="Branch to monitor."),
            Parameter(name="repo-url", value=settings.repository_url),
            Parameter(name="image", value=settings.image),
            Parameter(name="dvc-remote", value=settings.dvc_remote.url),
            Parameter(name="dvc-endpoint", value=settings.dvc_remote.endpoint or ""),
            Parameter(name="prediction-log", value=prediction_log),
        ],
    ) as cron:
        monitor = task_container(
            MONITOR,
            settings,
            [
                "workflows",
                "after",
                TRAIN_STAGE,
                *remote_args(),
                "--",
                "argosy",
                "monitor",
                "--prediction-log",
                param("prediction-log"),
                "--reports",
                REPORTS,
                "--state",
                f"{REPORTS}/state.json",
            ],
            env=common.storage_env(settings),
            outputs=[
                Parameter(
                    name="decision", value_from=ValueFrom(path=f"{REPORTS}/decision", default="")
                ),
                Parameter(
                    name="drift-share",
                    value_from=ValueFrom(path=f"{REPORTS}/drift_share", default="nan"),
                ),
                Parameter(
                    name="trigger",
                    value_from=ValueFrom(path=f"{REPORTS}/trigger", default="drift monitor"),
                ),
            ],
        )
        monitor.metrics = Metrics(
            prometheus=[
                Prometheus(
                    name="argosy_drift_share",
                    help="Share of drifted features in the latest complete window",
                    labels=None,
                    gauge=Gauge(value="{{outputs.parameters.drift-share}}", realtime=False),
                )
            ]
        )
        retrain = Resource(
            name=SUBMIT,
            action="create",
            manifest=training_submission(),
            inputs=[Parameter(name="trigger", description="Why: the monitor's reasons.")],
            set_owner_reference=False,
            retry_strategy=common.retry_transient(settings.retry),
        )
        with DAG(name=ENTRYPOINT):
            check = Task(name=MONITOR, template=monitor)
            submit = Task(
                name=SUBMIT,
                template=retrain,
                arguments={"trigger": f"{{{{tasks.{MONITOR}.outputs.parameters.trigger}}}}"},
                when=f"{{{{tasks.{MONITOR}.outputs.parameters.decision}}}} == retrain",
            )
            check >> submit
    return cron
