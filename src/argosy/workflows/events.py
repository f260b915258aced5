"""Argo Events: the GitHub push webhook and the new-data notification, each with its Sensor.

Sensors submit Workflows from the templates; they never build their own. The push Sensor fires
only for the default branch and only when a commit touches a pipeline input, so the promotion
commits (which touch ``manifests/overlays/`` alone) can never start training: no CI loop.
"""

from __future__ import annotations

from typing import Any

from argosy.config import SecretKeyParams, WorkflowParams
from argosy.workflows import common
from argosy.workflows.ingest import NAME as INGEST
from argosy.workflows.training import NAME as TRAINING

API = "argoproj.io/v1alpha1"
PIPELINE_INPUTS = ("src/", "params.yaml", "dvc.yaml", "data.dvc")
"""Paths whose change means the model may change (a trailing slash: a directory)."""

GITHUB_SOURCE = "argosy-github"
DATA_SOURCE = "argosy-data"
PUSH_SENSOR = "argosy-train-on-push"
DATA_SENSOR = "argosy-ingest-on-new-data"
DATA_KEYS = {
    "minio": "notification.0.s3.object.key",
    "sqs": "body.Records.0.s3.object.key",
    "kafka": "body.key",
}
"""Where each data source's event carries the object key of the new batch."""


def touches_pipeline_inputs(paths: list[str]) -> bool:
    """The rule the Sensor's Lua filter applies, for tests and for reading."""
    return any(
        path == watched or (watched.endswith("/") and path.startswith(watched))
        for path in paths
        for watched in PIPELINE_INPUTS
    )


def lua_filter() -> str:
    """The Sensor script filter: true when any commit adds, modifies or removes a pipeline input."""
    watched = ", ".join(f'"{p}"' for p in PIPELINE_INPUTS)
    return f"""local watched = {{{watched}}}
local function hit(path)
  for _, w in ipairs(watched) do
    if path == w or (string.sub(w, -1) == "/" and string.sub(path, 1, #w) == w) then
      return true
    end
  end
  return false
end
for _, commit in ipairs(event.body.commits or {{}}) do
  for _, key in ipairs({{"added", "modified", "removed"}}) do
    for _, path in ipairs(commit[key] or {{}}) do
      if hit(path) then return true end
    end
  end
end
return false
"""


def secret_ref(ref: SecretKeyParams) -> dict[str, str]:
    """A SecretKeySelector mapping."""
    return {"name": ref.name, "key": ref.key}


def _pod_template(service_account: str | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {
        "securityContext": common.plain(common.pod_security_context()),
        "container": {"securityContext": common.plain(common.container_security_context())},
    }
    if service_account:
        template["serviceAccountName"] = service_account
    return template


def _metadata(name: str, settings: WorkflowParams) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": dict(common.LABELS)}


def github_event_source(settings: WorkflowParams) -> dict[str, Any]:
    """EventSource receiving GitHub push webhooks (webhook secret and API token by reference)."""
    github = settings.github
    return {
        "apiVersion": API,
        "kind": "EventSource",
        "metadata": _metadata(GITHUB_SOURCE, settings),
        "spec": {
            "template": _pod_template(),
            "service": {"ports": [{"port": 12000, "targetPort": 12000}]},
            "github": {
                "push": {
                    "repositories": [{"owner": github.owner, "names": [github.repository]}],
                    "webhook": {
                        "endpoint": "/push",
                        "port": "12000",
                        "method": "POST",
                        "url": github.webhook_url,
                    },
                    "events": ["push"],
                    "apiToken": secret_ref(github.api_token),
                    "webhookSecret": secret_ref(github.webhook_secret),
                    "insecure": False,
                    "active": True,
                    "contentType": "json",
                }
            },
        },
    }


def submit_trigger(name: str, dependency: str, template: str, parameters: list[dict]) -> dict:
    """An argoWorkflow trigger that submits a Workflow from ``template``.

    Args:
        name: Trigger name.
        dependency: The Sensor dependency whose event feeds the parameters.
        template: WorkflowTemplate to submit.
        parameters: ``{"name", "dataKey"}`` or ``{"name", "dataTemplate"}`` (from the event), or
            ``{"name", "value"}`` (fixed).
    """
    workflow_params = [{"name": p["name"], "value": p.get("value", "")} for p in parameters]
    trigger_params = [
        {
            "src": {"dependencyName": dependency}
            | {k: p[k] for k in ("dataKey", "dataTemplate") if k in p},
            "dest": f"spec.arguments.parameters.{i}.value",
        }
        for i, p in enumerate(parameters)
        if "dataKey" in p or "dataTemplate" in p
    ]
    return {
        "template": {
            "name": name,
            "argoWorkflow": {
                "operation": "submit",
                "source": {
                    "resource": {
                        "apiVersion": API,
                        "kind": "Workflow",
                        "metadata": {
                            "generateName": f"{template}-",
                            "labels": {**common.LABELS, "argosy.dev/trigger": name},
                        },
                        "spec": {
                            "workflowTemplateRef": {"name": template},
                            "arguments": {"parameters": workflow_params},
                        },
                    }
                },
                "parameters": trigger_params,
            },
        },
        "retryStrategy": {"steps": 3, "duration": "10s", "factor": 2},
    }


PUSH_TRIGGER = (
    "push of {{ .Input.body.after | substr 0 12 }} to {{ .Input.body.ref }} by "
    "{{ .Input.body.pusher.name }}: {{ .Input.body.head_commit.message | substr 0 300 }}"
)
"""The training's ``trigger`` for a push (Argo Events data template, sprig functions)."""


def push_sensor(settings: WorkflowParams, template: str = TRAINING) -> dict[str, Any]:
    """Sensor: a push to the default branch touching a pipeline input submits training there."""
    return {
        "apiVersion": API,
        "kind": "Sensor",
        "metadata": _metadata(PUSH_SENSOR, settings),
        "spec": {
            "template": _pod_template(settings.submitter_service_account),
            "dependencies": [
                {
                    "name": "push",
                    "eventSourceName": GITHUB_SOURCE,
                    "eventName": "push",
                    "filters": {
                        "data": [
                            {
                                "path": "body.ref",
                                "type": "string",
                                "value": [f"refs/heads/{settings.branch}"],
                            },
                            {"path": "body.deleted", "type": "bool", "value": ["false"]},
                        ],
                        "script": lua_filter(),
                    },
                }
            ],
            "triggers": [
                submit_trigger(
                    "train-at-pushed-commit",
                    "push",
                    template,
                    [
                        {"name": "revision", "dataKey": "body.after"},
                        {"name": "branch", "value": settings.branch},
                        {"name": "trigger", "dataTemplate": PUSH_TRIGGER},
                    ],
                )
            ],
        },
    }


def data_event_source(settings: WorkflowParams) -> dict[str, Any]:
    """EventSource for new batches: MinIO bucket notifications, AWS S3 through SQS, or Kafka."""
    data = settings.data_events
    access = secret_ref(settings.secrets.storage_access_key)
    secret = secret_ref(settings.secrets.storage_secret_key)
    if data.source == "minio":
        source = {
            "minio": {
                "landing": {
                    "bucket": {"name": data.bucket},
                    "endpoint": data.endpoint,
                    "events": ["s3:ObjectCreated:Put", "s3:ObjectCreated:CompleteMultipartUpload"],
                    "filter": {"prefix": data.prefix, "suffix": ".parquet"},
                    "accessKey": access,
                    "secretKey": secret,
                }
            }
        }
    elif data.source == "sqs":
        source = {
            "sqs": {
                "landing": {
                    "region": data.region,
                    "queue": data.queue,
                    "waitTimeSeconds": 20,
                    "jsonBody": True,
                    "accessKey": access,
                    "secretKey": secret,
                }
            }
        }
    else:
        source = {
            "kafka": {
                "landing": {"url": data.kafka_url, "topic": data.kafka_topic, "jsonBody": True}
            }
        }
    return {
        "apiVersion": API,
        "kind": "EventSource",
        "metadata": _metadata(DATA_SOURCE, settings),
        "spec": {"template": _pod_template(), **source},
    }


def data_sensor(settings: WorkflowParams, template: str = INGEST) -> dict[str, Any]:
    """Sensor: each new batch submits the ingest WorkflowTemplate with the batch's object key."""
    data = settings.data_events
    return {
        "apiVersion": API,
        "kind": "Sensor",
        "metadata": _metadata(DATA_SENSOR, settings),
        "spec": {
            "template": _pod_template(settings.submitter_service_account),
            "dependencies": [
                {"name": "batch", "eventSourceName": DATA_SOURCE, "eventName": "landing"}
            ],
            "triggers": [
                submit_trigger(
                    "ingest-new-batch",
                    "batch",
                    template,
                    [
                        {"name": "batch-key", "dataKey": DATA_KEYS[data.source]},
                        {"name": "bucket", "value": data.bucket},
                    ],
                )
            ],
        },
    }
