"""Every overlay renders with real kustomize, validates strictly and keeps its security promises."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from argosy import k8s
from argosy.gitops.pin import read_pin

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = {env: REPO / "manifests" / "overlays" / env for env in ("staging", "production")}
COMPONENTS = ["raw-deployment", "gpu"]
DIGEST_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
CHECKOV = Path(sys.executable).parent / "checkov"


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _with_components(tmp_path: Path, env: str, components: list[str]) -> Path:
    """Write a kustomization that adds components to an overlay (kustomize needs relative paths)."""
    root = tmp_path / "-".join([env, *components])
    root.mkdir()
    rel = Path(os.path.relpath(REPO / "manifests", root))
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(rel / "overlays" / env)],
                "components": [str(rel / "components" / c) for c in components],
            }
        )
    )
    return root


def predictor_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Approximate the predictor Pod that KServe builds from the runtime and the predictor.

    KServe merges the InferenceService's ``predictor.model`` container into the ServingRuntime's
    container and copies the pod-level predictor fields. Scanners only understand Pods, so the
    security scan runs on this merge as well as on the rendered custom resources.
    """
    runtime, isvc = _one(docs, "ServingRuntime"), _one(docs, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    container = copy.deepcopy(runtime["spec"]["containers"][0])
    model = predictor["model"]
    for key in ("resources", "volumeMounts"):
        if key in model:
            container[key] = model[key]
    container["env"] = container.get("env", []) + model.get("env", [])
    pod_fields = ("serviceAccountName", "automountServiceAccountToken", "securityContext")
    spec = {k: predictor[k] for k in (*pod_fields, "volumes") if k in predictor}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "fraud-detector-predictor",
            "namespace": isvc["metadata"]["namespace"],
            "labels": {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]},
        },
        "spec": {**spec, "containers": [container]},
    }


def checkov_failures(
    directory: Path, frameworks: tuple[str, ...] = ("kubernetes",)
) -> tuple[int, list[str]]:
    """Run checkov offline on a directory.

    Args:
        directory: What to scan.
        frameworks: checkov frameworks to run (``argo_workflows`` for Argo templates).

    Returns:
        The number of passed checks and ``CHECK_ID resource file`` for each failed one.
    """
    result = subprocess.run(
        [
            *(str(CHECKOV), "--framework", ",".join(frameworks), "--skip-download", "--quiet"),
            *("-o", "json", "-d", str(directory)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failures, passed = [], 0
    for report in reports:
        if "results" not in report:  # checkov prints a bare summary when it found nothing to scan
            continue
        passed += report["summary"]["passed"]
        for check in report["results"]["failed_checks"]:
            failures.append(f"{check['check_id']} {check['resource']} {check['file_path']}")
    return passed, failures


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {env: k8s.render_kustomize(path) for env, path in OVERLAYS.items()}


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_overlay_renders_and_validates_strictly(
    rendered: dict[str, list[dict[str, Any]]], env: str
) -> None:
    # Given the overlay rendered with kubectl kustomize
    docs = rendered[env]
    # When every document is validated against the strict schemas
    errors = k8s.validate_documents(docs)
    # Then nothing is reported, and the serving stack is all there, in the env's namespace
    assert errors == []
    kinds = sorted(d["kind"] for d in docs)
    for kind in ("InferenceService", "ServingRuntime", "NetworkPolicy", "PodMonitor"):
        assert kind in kinds
    assert {d["metadata"].get("namespace") for d in docs} == {f"argosy-{env}"}


@pytest.mark.parametrize("env", sorted(OVERLAYS))
@pytest.mark.parametrize("components", [["raw-deployment"], ["gpu"], COMPONENTS])
def test_components_render_and_validate(tmp_path: Path, env: str, components: list[str]) -> None:
    # Given an overlay combined with opt-in components
    root = _with_components(tmp_path, env, components)
    # When it is rendered and validated
    docs = k8s.render_kustomize(root)
    errors = k8s.validate_documents(docs)
    # Then it is valid and each component did its job
    assert errors == []
    predictor = _one(docs, "InferenceService")["spec"]["predictor"]
    annotations = _one(docs, "InferenceService")["metadata"]["annotations"]
    if "raw-deployment" in components:
        assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
        # The HPA alone owns the replica count: no competing bounds on the InferenceService.
        assert "minReplicas" not in predictor
        assert "maxReplicas" not in predictor
        assert _one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
        assert _one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    if "gpu" in components:
        assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_environment_scaling(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # Given both rendered overlays
    staging = _one(rendered["staging"], "InferenceService")["spec"]["predictor"]
    production = _one(rendered["production"], "InferenceService")["spec"]["predictor"]
    # Then staging scales to zero and production keeps two replicas behind a canary split
    assert staging["minReplicas"] == 0
    assert "canaryTrafficPercent" not in staging
    assert production["minReplicas"] >= 2
    assert 0 < production["canaryTrafficPercent"] <= 100


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_security_posture(rendered: dict[str, list[dict[str, Any]]], env: str) -> None:
    # Given the rendered overlay and the predictor pod KServe would build from it
    docs = rendered[env]
    pod = predictor_pod(docs)
    container = pod["spec"]["containers"][0]
    # Then images are pinned by digest and the pod meets Pod Security "restricted"
    assert DIGEST_IMAGE.match(container["image"]), container["image"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert _one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["runAsNonRoot"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    assert ctx["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"]
    # And no secret values travel in git: no Secret objects, no literal credentials in env
    assert not _by_kind(docs, "Secret")
    assert all("valueFrom" in e or "KEY" not in e["name"] for e in container["env"])
    # And the namespace denies all traffic by default
    deny = [
        p
        for p in _by_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
    ]
    assert deny
    assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]


def test_runtime_syncs_before_inference_service(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    # Given the rendered production overlay
    docs = rendered["production"]

    def wave(doc: dict[str, Any]) -> int:
        annotations = doc["metadata"].get("annotations", {})
        return int(annotations.get("argocd.argoproj.io/sync-wave", "0"))

    # Then the ServingRuntime and its credentials land in earlier sync waves
    isvc = wave(_one(docs, "InferenceService"))
    assert wave(_one(docs, "ServingRuntime")) < isvc
    assert wave(_one(docs, "ExternalSecret")) < isvc


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_model_yaml_is_a_pin_with_its_header(env: str) -> None:
    # Given the committed model.yaml of the overlay
    path = OVERLAYS[env] / "model.yaml"
    text = path.read_text()
    # Then its header says that only `argosy promote` writes it, and it reads as a pin (or none)
    assert f"pinned for the {env} environment" in text
    assert "Written only by `argosy promote`" in text
    pin = read_pin(path)
    assert pin is None or pin.name == "fraud-detector"


def test_argocd_renders_and_validates_strictly() -> None:
    # Given the argocd/ directory rendered with kustomize
    docs = k8s.render_kustomize(REPO / "argocd")
    # When it is validated
    errors = k8s.validate_documents(docs)
    # Then it is valid and holds the projects, the ApplicationSet and the applications
    assert errors == []
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("ApplicationSet", "argosy-serving") in names
    assert {("Application", n) for n in ("argosy-root", "argosy-pipelines", "argosy-platform")} <= (
        names
    )


def test_applicationset_follows_the_safe_pattern() -> None:
    # Given the serving ApplicationSet
    docs = k8s.render_kustomize(REPO / "argocd")
    appset = _one(docs, "ApplicationSet")
    spec, template = appset["spec"], appset["spec"]["template"]
    # Then templates fail on a missing key, the project is fixed, and git is the whole truth
    assert spec["goTemplate"] is True
    assert "missingkey=error" in spec["goTemplateOptions"]
    assert template["spec"]["project"] == "argosy"
    assert "{{" not in template["spec"]["project"]
    assert "resources-finalizer.argocd.argoproj.io" in template["metadata"]["finalizers"]
    sync = template["spec"]["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True, "allowEmpty": False}
    assert "CreateNamespace=true" in sync["syncOptions"]
    assert sync["retry"]["backoff"]["factor"] > 1
    restricted = sync["managedNamespaceMetadata"]["labels"]
    assert restricted["pod-security.kubernetes.io/enforce"] == "restricted"
    assert template["spec"]["source"]["path"] == "manifests/overlays/{{ .env }}"
    matrix = spec["generators"][0]["matrix"]["generators"]
    assert [e["env"] for e in matrix[0]["list"]["elements"]] == ["staging", "production"]
    assert matrix[1]["clusters"]["selector"]["matchLabels"]["argosy.io/environment"] == "{{ .env }}"
    # And every sync result is posted back to GitHub as a commit status
    assert any("subscribe.on-sync-failed.github" in a for a in template["metadata"]["annotations"])


def test_workload_project_is_least_privilege() -> None:
    # Given the AppProject of the workloads
    docs = k8s.render_kustomize(REPO / "argocd")
    project = next(d for d in _by_kind(docs, "AppProject") if d["metadata"]["name"] == "argosy")
    spec = project["spec"]
    # Then it deploys from one repository, into named namespaces, no cluster-scoped kinds but
    # namespaces, no wildcard kinds, and its role may only get and sync
    assert len(spec["sourceRepos"]) == 1
    assert "*" not in spec["sourceRepos"]
    assert all(d["namespace"] != "*" for d in spec["destinations"])
    assert spec["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]
    assert all(r["kind"] != "*" for r in spec["namespaceResourceWhitelist"])
    assert not any(
        r["kind"] in {"Role", "RoleBinding", "Secret"} for r in spec["namespaceResourceWhitelist"]
    )
    actions = {p.split(",")[3].strip() for r in spec["roles"] for p in r["policies"]}
    assert actions == {"get", "sync"}


@pytest.mark.slow
def test_rendered_overlays_are_checkov_clean(
    tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    # Given every rendered overlay (with and without components) plus its effective predictor pod
    variants = dict(rendered)
    variants["production-raw-gpu"] = k8s.render_kustomize(
        _with_components(tmp_path, "production", COMPONENTS)
    )
    scan = tmp_path / "scan"
    scan.mkdir()
    for name, docs in variants.items():
        (scan / f"{name}.yaml").write_text(yaml.safe_dump_all([*docs, predictor_pod(docs)]))
    # When checkov scans them offline
    passed, failures = checkov_failures(scan)
    # Then it reports no failure (and did check the pods: dozens of pod rules passed)
    assert failures == []
    assert passed > 50


@pytest.mark.slow
def test_checkov_rules_are_live() -> None:
    # Given a committed, deliberately insecure fixture (privileged, host network, image by tag)
    fixture_dir = Path(__file__).parent / "fixtures" / "checkov"
    # When checkov scans it the same way
    _, failures = checkov_failures(fixture_dir)
    # Then the rules that guard the overlays fire
    ids = {f.split()[0] for f in failures}
    assert {"CKV_K8S_16", "CKV_K8S_19", "CKV_K8S_43", "CKV_K8S_20"} <= ids
