"""The pipelines' platform side and the generated Argo workflows: strict schemas and checkov.

manifests/platform renders as a whole and as each of its parts (rbac/ alone, each component on
its own); every rendering validates strictly, lands in the right namespaces and is checkov-clean.
The workflow Role grants the dask engine's train task exactly what it needs, the dask operator is a
pinned chart, and the quotas admit every pod the pipelines run.
workflows/generated/ is checkov-clean under both the Argo Workflows and the Kubernetes rules, and
a committed insecure WorkflowTemplate proves the Argo rules are live. zizmor on .github/workflows
is covered by tests/gitops/test_github_files.py, which audits the whole .github directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from argosy import k8s
from argosy.workflows.codegen import train_settings, workflow_settings
from argosy.workflows.dag import load_pipeline
from argosy.workflows.training import training_template

from ..workflows.conftest import load_generated
from ..workflows.embedded import daskjob_pods, embedded_documents
from .test_overlays import REPO, checkov_failures

PLATFORM = REPO / "manifests" / "platform"
COMPONENTS = sorted(p.name for p in (PLATFORM / "components").iterdir() if p.is_dir())
LISTED = [
    Path(c).name
    for c in yaml.safe_load((PLATFORM / "kustomization.yaml").read_text())["components"]
]
OPT_IN = {"dask-operator"}
PIPELINES_NAMESPACE = "argosy-pipelines"
DEVICE_PLUGIN_NAMESPACE = "gpu-operator"
CLUSTER_SCOPED = {"NodePool", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
ARGO = ("argo_workflows", "kubernetes")


def _component_alone(tmp_path: Path, component: str) -> Path:
    """Write a kustomization holding one platform component and nothing else."""
    root = tmp_path / component
    root.mkdir()
    rel = Path(os.path.relpath(PLATFORM / "components" / component, root))
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "components": [str(rel)],
            }
        )
    )
    return root


def _renderings(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    """The platform rendered whole, rbac/ alone and each component alone."""
    out = {
        "platform": k8s.render_kustomize(PLATFORM),
        "rbac": k8s.render_kustomize(PLATFORM / "rbac"),
    }
    for component in COMPONENTS:
        out[component] = k8s.render_kustomize(_component_alone(tmp_path, component))
    return out


def _namespaces(docs: list[dict[str, Any]]) -> dict[tuple[str, str], str | None]:
    return {(d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in docs}


def test_every_platform_rendering_validates_strictly(tmp_path: Path) -> None:
    # Given the platform rendered whole and as each of its parts
    renderings = _renderings(tmp_path)
    # When every document is validated against the strict schemas
    errors = {name: k8s.validate_documents(docs) for name, docs in renderings.items()}
    # Then nothing is reported, no part is empty, and the whole is the union of the parts it
    # lists: every component but the opt-in ones
    assert errors == {name: [] for name in renderings}
    assert all(renderings.values())
    assert sorted(LISTED) == sorted(set(COMPONENTS) - OPT_IN)
    parts = [d for name in ["rbac", *LISTED] for d in renderings[name]]
    assert len(renderings["platform"]) == len(parts)


def test_time_slicing_config_lands_in_the_device_plugin_namespace(tmp_path: Path) -> None:
    # Given the whole platform and the time-slicing component on its own
    whole = _namespaces(k8s.render_kustomize(PLATFORM))
    alone = _namespaces(k8s.render_kustomize(_component_alone(tmp_path, "gpu-time-slicing")))
    config = ("ConfigMap", "argosy-time-slicing")
    # Then the device plugin's ConfigMap is in the plugin's namespace either way
    assert whole[config] == DEVICE_PLUGIN_NAMESPACE
    assert alone == {config: DEVICE_PLUGIN_NAMESPACE}
    # And the cluster-scoped NodePool has no namespace, everything else is the pipelines'
    for (kind, name), namespace in whole.items():
        if (kind, name) == config:
            continue
        expected = None if kind in CLUSTER_SCOPED else PIPELINES_NAMESPACE
        assert namespace == expected, (kind, name)
    # And the platform project may deploy into the device plugin's namespace
    project = yaml.safe_load((REPO / "argocd" / "appproject.argosy-platform.yaml").read_text())
    assert DEVICE_PLUGIN_NAMESPACE in {d["namespace"] for d in project["spec"]["destinations"]}


@pytest.mark.slow
def test_platform_renderings_are_checkov_clean(tmp_path: Path) -> None:
    # Given every platform rendering written out for the scanner
    scan = tmp_path / "scan"
    scan.mkdir()
    for name, docs in _renderings(tmp_path).items():
        (scan / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    # When checkov scans them offline
    passed, failures = checkov_failures(scan)
    # Then it reports no failure, having checked something
    assert failures == []
    assert passed > 0


@pytest.mark.slow
def test_generated_workflows_are_checkov_clean() -> None:
    # Given the committed, generated Argo documents
    generated = REPO / "workflows" / "generated"
    # When checkov scans them with the Argo Workflows and Kubernetes rules
    passed, failures = checkov_failures(generated, ARGO)
    # Then it reports no failure, and the Argo rules ran on both WorkflowTemplates
    assert failures == []
    assert passed >= 4


@pytest.mark.slow
def test_the_dask_training_template_is_checkov_clean(tmp_path: Path) -> None:
    # Given the training template generated for train.engine dask on the GPU
    (tmp_path / "training.yaml").write_text(yaml.safe_dump(_dask_training("cuda")))
    # When checkov scans it as the committed workflows are scanned
    passed, failures = checkov_failures(tmp_path, ARGO)
    # Then the Argo rules pass on it too
    assert failures == []
    assert passed >= 2


@pytest.mark.slow
def test_checkov_argo_rules_are_live() -> None:
    # Given a committed WorkflowTemplate on the default ServiceAccount that may run as root
    fixture_dir = Path(__file__).parent / "fixtures" / "checkov-argo"
    # When checkov scans it the same way as the generated workflows
    _, failures = checkov_failures(fixture_dir, ARGO)
    # Then both Argo rules that guard workflows/generated fire
    ids = {f.split()[0] for f in failures}
    assert {"CKV_ARGO_1", "CKV_ARGO_2"} <= ids


def test_workflows_in_the_pipelines_namespace_may_only_start_the_named_templates(
    tmp_path: Path,
) -> None:
    # Given the admission policy, rendered with the whole platform and alone
    whole = k8s.render_kustomize(PLATFORM)
    alone = k8s.render_kustomize(_component_alone(tmp_path, "workflow-admission"))
    for docs in (whole, alone):
        policy = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
        binding = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding")
        # Then it denies, in the pipelines namespace only, what it does not allow
        assert binding["spec"]["policyName"] == policy["metadata"]["name"]
        assert binding["spec"]["validationActions"] == ["Deny"]
        selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
        assert selector == {"kubernetes.io/metadata.name": PIPELINES_NAMESPACE}
        assert policy["spec"]["failurePolicy"] == "Fail"
        rules = policy["spec"]["matchConstraints"]["resourceRules"]
        assert rules[0]["resources"] == ["workflows"]
        assert set(rules[0]["operations"]) == {"CREATE", "UPDATE"}
        # And the templates it allows are the ones the submitter Role may read
        expressions = " ".join(v["expression"] for v in policy["spec"]["validations"])
        role = next(
            d
            for d in k8s.render_kustomize(PLATFORM / "rbac")
            if d["kind"] == "Role" and d["metadata"]["name"] == "argosy-submitter"
        )
        names = next(r for r in role["rules"] if r["resources"] == ["workflowtemplates"])
        for name in names["resourceNames"]:
            assert f"'{name}'" in expressions
        assert "object.spec.all(key, key in ['workflowTemplateRef', 'arguments'" in expressions
    # And the platform project may create the policy (cluster-scoped)
    project = yaml.safe_load((REPO / "argocd" / "appproject.argosy-platform.yaml").read_text())
    allowed = {(k["group"], k["kind"]) for k in project["spec"]["clusterResourceWhitelist"]}
    assert ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") in allowed
    # And every Workflow a Sensor or the drift monitor submits only references a template
    generated = REPO / "workflows" / "generated"
    cron = yaml.safe_load((generated / "cronworkflow.argosy-drift-monitor.yaml").read_text())
    manifests = [
        yaml.safe_load(t["resource"]["manifest"])
        for t in cron["spec"]["workflowSpec"]["templates"]
        if "resource" in t
    ]
    submitted = [yaml.safe_load(p.read_text()) for p in sorted(generated.glob("sensor.*.yaml"))]
    assert submitted
    for doc in submitted:
        for trigger in doc["spec"]["triggers"]:
            spec = trigger["template"]["argoWorkflow"]["source"]["resource"]["spec"]
            assert set(spec) <= {"workflowTemplateRef", "arguments"}, doc["metadata"]["name"]
    assert manifests
    for workflow in manifests:
        assert set(workflow["spec"]) <= {"workflowTemplateRef", "arguments"}


def _dask_training(device: str = "cuda") -> dict[str, Any]:
    """The training template generated for ``train.engine: dask`` on ``device``."""
    train = train_settings(REPO).model_copy(update={"engine": "dask", "device": device})
    return training_template(
        load_pipeline(REPO / "dvc.yaml"), workflow_settings(REPO), train
    ).to_dict()


def test_dask_operator_is_a_pinned_chart_in_a_restricted_namespace(tmp_path: Path) -> None:
    # Given the dask-operator component rendered on its own
    (app,) = k8s.render_kustomize(_component_alone(tmp_path, "dask-operator"))
    source = app["spec"]["source"]
    values = source["helm"]["valuesObject"]
    sync = app["spec"]["syncPolicy"]
    # Then it is an ArgoCD Application in argocd's namespace, of the platform project, installing
    # the upstream chart at one exact version
    assert (app["kind"], app["metadata"]["namespace"]) == ("Application", "argocd")
    assert app["spec"]["project"] == "argosy-platform"
    assert (source["repoURL"], source["chart"]) == (
        "https://helm.dask.org",
        "dask-kubernetes-operator",
    )
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", source["targetRevision"])
    # And the DaskJob schemas the tests check against are that version's CRDs
    provenance = (k8s.VENDORED_DIR / "PROVENANCE.md").read_text()
    assert f"release {source['targetRevision']}, the pinned chart" in provenance
    # And the operator gets its own namespace, restricted, with a restricted, sized pod
    assert app["spec"]["destination"]["namespace"] == "dask-operator"
    assert "CreateNamespace=true" in sync["syncOptions"]
    labels = sync["managedNamespaceMetadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert values["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert {"cpu", "memory"} <= set(values["resources"]["requests"])
    assert "memory" in values["resources"]["limits"]
    # And its CRDs, too large for client-side apply's annotation, are applied server-side
    assert "ServerSideApply=true" in sync["syncOptions"]
    # And it is opt-in: the platform does not list it until its project allows it
    assert "dask-operator" not in LISTED


def test_the_workflow_role_may_only_create_and_read_daskjobs(params) -> None:
    # Given the rendered RBAC and the train task that creates a DaskJob
    docs = k8s.render_kustomize(PLATFORM / "rbac")
    role = next(
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "argosy-workflow"
    )
    binding = next(
        d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "argosy-workflow"
    )
    spec = _dask_training()["spec"]
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    # Then the Role, in the pipelines namespace only, lets the task's executor create and get
    # DaskJobs and nothing more on any Dask kind
    assert role["metadata"]["namespace"] == PIPELINES_NAMESPACE
    dask = {key: verbs for key, verbs in rules.items() if key[0] == "kubernetes.dask.org"}
    assert dask == {("kubernetes.dask.org", "daskjobs"): {"create", "get"}}
    # And only what Argo needs otherwise: task results, and the Workflow's finalizers for the
    # DaskJob's owner reference (blockOwnerDeletion)
    assert rules == {
        ("argoproj.io", "workflowtaskresults"): {"create", "patch"},
        ("kubernetes.dask.org", "daskjobs"): {"create", "get"},
        ("argoproj.io", "workflows/finalizers"): {"update"},
    }
    assert all("*" not in verbs for verbs in rules.values())
    # And it is bound to the service account the training template runs as
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": params.workflow.service_account,
            "namespace": PIPELINES_NAMESPACE,
        }
    ]
    assert spec["serviceAccountName"] == params.workflow.service_account
    resource = next(t for t in spec["templates"] if "resource" in t)["resource"]
    assert resource["action"] == "create"
    assert resource["setOwnerReference"] is True


_UNITS = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(text: str) -> float:
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def _pipeline_pods() -> list[dict[str, Any]]:
    """Every pod spec the pipelines run: each generated container template, and the DaskJob's."""
    pods = []
    for doc in [*load_generated().values(), _dask_training("cuda")]:
        spec = doc.get("spec", {})
        for template in spec.get("workflowSpec", spec).get("templates", []):
            if "container" in template:
                pods.append({"containers": [template["container"]]})
            for created in embedded_documents(doc):
                if created["kind"] == "DaskJob":
                    pods += daskjob_pods(created).values()
    return pods


def test_the_limit_range_admits_every_pipeline_container_and_a_dask_training_fits_the_quota(
    tmp_path: Path,
) -> None:
    # Given the quotas component and every pod the pipelines run
    docs = k8s.render_kustomize(_component_alone(tmp_path, "quotas"))
    (limit_range,) = [d["spec"]["limits"][0] for d in docs if d["kind"] == "LimitRange"]
    (quota,) = [d["spec"]["hard"] for d in docs if d["kind"] == "ResourceQuota"]
    pods = _pipeline_pods()
    assert pods
    for pod in pods:
        for container in pod.get("initContainers", []) + pod["containers"]:
            # When the LimitRange's defaults are applied as the API server applies them
            limits = {**limit_range["default"], **container["resources"].get("limits", {})}
            requests = {**limit_range["defaultRequest"], **container["resources"]["requests"]}
            # Then no request exceeds its limit, which would make the pod invalid
            for name, request in requests.items():
                if name in limits:
                    assert _quantity(request) <= _quantity(limits[name]), (
                        container.get("name"),
                        name,
                    )
    # And one dask training (job pod, scheduler, every worker) fits in the namespace quota
    job = next(d for d in embedded_documents(_dask_training("cuda")) if d["kind"] == "DaskJob")
    workers = job["spec"]["cluster"]["spec"]["worker"]["replicas"]
    count = {"job-runner": 1, "scheduler": 1, "worker": workers}
    for resource in ("cpu", "memory", "nvidia.com/gpu"):
        total = sum(
            count[component] * _pod_request(pod, resource)
            for component, pod in daskjob_pods(job).items()
        )
        assert total <= _quantity(quota[f"requests.{resource}"]), resource


def _pod_request(pod: dict[str, Any], resource: str) -> float:
    """What a pod requests of ``resource``: its containers' sum, or its largest init container."""

    def request(container: dict[str, Any]) -> float:
        resources = container["resources"]
        # An extended resource (a GPU) set only as a limit is requested at that limit.
        value = resources["requests"].get(resource) or resources["limits"].get(resource, "0")
        return _quantity(value)

    inits = [request(c) for c in pod.get("initContainers", [])]
    return max([sum(request(c) for c in pod["containers"]), *inits])
