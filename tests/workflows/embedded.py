"""What a generated workflow makes the cluster create besides itself, so tests can validate it.

Resource templates and Sensor triggers carry whole documents (a Workflow, a DaskJob), and the
dask-kubernetes operator turns each DaskJob into a DaskCluster and pods labelled as below; these
mirror ``dask_kubernetes/operator/controller/controller.py`` (``build_cluster_spec``,
``build_scheduler_deployment_spec``, ``build_worker_deployment_spec``, ``build_job_pod_spec``) of
the pinned operator release.
"""

from __future__ import annotations

from typing import Any

import yaml

JOB_STATUSES = ("JobCreated", "ClusterCreated", "Running", "Successful", "Failed")
"""Every ``status.jobStatus`` the operator writes on a DaskJob, in the order it writes them."""
GENERATED_NAME = "argosy-train-x7k2q"
"""What the API server might make of the DaskJob's generateName."""


def embedded_documents(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents of ``doc``'s resource templates and Sensor triggers, as they are created."""
    spec = doc.get("spec", {})
    templates = spec.get("workflowSpec", spec).get("templates", [])
    found = [yaml.safe_load(t["resource"]["manifest"]) for t in templates if "resource" in t]
    for trigger in spec.get("triggers", []) if doc["kind"] == "Sensor" else []:
        found.append(trigger["template"]["argoWorkflow"]["source"]["resource"])
    return found


def operator_cluster(daskjob: dict[str, Any], name: str = GENERATED_NAME) -> dict[str, Any]:
    """The DaskCluster the operator creates for ``daskjob`` once it is named ``name``."""
    meta = daskjob["metadata"]
    cluster = daskjob["spec"]["cluster"]
    labels = {**meta.get("labels", {}), **cluster.get("metadata", {}).get("labels", {})}
    return {
        "apiVersion": daskjob["apiVersion"],
        "kind": "DaskCluster",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels | {"dask.org/cluster-name": name},
        },
        "spec": {"worker": cluster["spec"]["worker"], "scheduler": cluster["spec"]["scheduler"]},
    }


def operator_pod_labels(
    daskjob: dict[str, Any], component: str, name: str = GENERATED_NAME
) -> dict[str, str]:
    """The labels of the ``scheduler``, ``worker`` or ``job-runner`` pod of ``daskjob``."""
    labels = dict(operator_cluster(daskjob, name)["metadata"]["labels"])
    if component == "worker":
        labels["dask.org/workergroup-name"] = f"{name}-default"
    return labels | {"dask.org/cluster-name": name, "dask.org/component": component}


def daskjob_pods(daskjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod specs of ``daskjob`` by component: ``job-runner``, ``scheduler``, ``worker``."""
    cluster = daskjob["spec"]["cluster"]["spec"]
    return {
        "job-runner": daskjob["spec"]["job"]["spec"],
        "scheduler": cluster["scheduler"]["spec"],
        "worker": cluster["worker"]["spec"],
    }
