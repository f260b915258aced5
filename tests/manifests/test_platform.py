"""The pipelines' platform side and the generated Argo workflows: strict schemas and checkov.

manifests/platform renders as a whole and as each of its parts (rbac/ alone, each component on
its own); every rendering validates strictly, lands in the right namespaces and is checkov-clean.
workflows/generated/ is checkov-clean under both the Argo Workflows and the Kubernetes rules, and
a committed insecure WorkflowTemplate proves the Argo rules are live. zizmor on .github/workflows
is covered by tests/gitops/test_github_files.py, which audits the whole .github directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from argosy import k8s

from .test_overlays import REPO, checkov_failures

PLATFORM = REPO / "manifests" / "platform"
COMPONENTS = sorted(p.name for p in (PLATFORM / "components").iterdir() if p.is_dir())
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
    # Then nothing is reported, no part is empty, and the whole is the union of the parts
    assert errors == {name: [] for name in renderings}
    assert all(renderings.values())
    parts = [d for name, docs in renderings.items() if name != "platform" for d in docs]
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
