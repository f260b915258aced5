"""Every overlay renders with real kustomize, validates strictly and keeps its security promises."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from argosy import k8s
from argosy.data.contract import load_contract
from argosy.pin import (
    PATCH_TARGET,
    ModelPin,
    parse_model_name,
    read_pin,
    render_pin,
    render_unpinned,
)

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = {env: REPO / "manifests" / "overlays" / env for env in ("staging", "production")}
COMPONENTS = ["raw-deployment", "gpu"]
ALL_COMPONENTS = [*COMPONENTS, "monitoring-dashboards", "grpc"]
MODEL = load_contract(REPO / "contract.yaml").name
SELECTOR = "serving.kserve.io/inferenceservice"
DIGEST_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
CHECKOV = Path(sys.executable).parent / "checkov"


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _with_components(
    tmp_path: Path,
    env: str,
    components: list[str],
    pin: str | None = None,
    inside: bool = False,
) -> Path:
    """A copy of manifests/ with ``components`` enabled for the ``env`` overlay.

    Args:
        tmp_path: Where the copy goes.
        env: The overlay.
        components: Component directory names.
        pin: A ``model.yaml`` text to write into the overlay's copy.
        inside: List the components in the overlay itself, instead of in a kustomization on
            top of it (both are supported).

    Returns:
        The directory to render.
    """
    root = tmp_path / "-".join([env, *components])
    shutil.copytree(REPO / "manifests", root / "manifests")
    overlay = root / "manifests" / "overlays" / env
    if pin is not None:
        (overlay / "model.yaml").write_text(pin)
    if inside:
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        kustomization["components"] = [f"../../components/{c}" for c in components]
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return overlay
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [f"manifests/overlays/{env}"],
                "components": [f"manifests/components/{c}" for c in components],
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
            "name": f"{isvc['metadata']['name']}-predictor",
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

    # Then the ServingRuntime, its credentials and its signing trust land in earlier sync waves
    isvc = wave(_one(docs, "InferenceService"))
    assert wave(_one(docs, "ServingRuntime")) < isvc
    secrets = _by_kind(docs, "ExternalSecret")
    assert {s["metadata"]["name"] for s in secrets} == {
        "argosy-model-storage",
        "argosy-model-signing",
    }
    assert all(wave(s) < isvc for s in secrets)


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_the_server_verifies_signatures_against_a_trust_from_a_secret(
    rendered: dict[str, list[dict[str, Any]]], env: str
) -> None:
    # Given the rendered overlay
    docs = rendered[env]
    predictor = _one(docs, "InferenceService")["spec"]["predictor"]
    runtime = _one(docs, "ServingRuntime")["spec"]["containers"][0]
    # Then the runtime points the server at a trust file
    env_vars = {e["name"]: e.get("value") for e in runtime["env"]}
    trust = Path(env_vars["ARGOSY_SIGNING_TRUST"])
    # And that file is mounted read-only from the Secret argosy-model-signing, by reference
    mount = next(
        m for m in predictor["model"]["volumeMounts"] if m["mountPath"] == str(trust.parent)
    )
    assert mount["readOnly"] is True
    volume = next(v for v in predictor["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "argosy-model-signing"
    assert [i["path"] for i in volume["secret"]["items"]] == [trust.name]
    # And the Secret comes from the cluster's store: git holds no key material
    external = next(
        d
        for d in docs
        if d["kind"] == "ExternalSecret" and d["metadata"]["name"] == "argosy-model-signing"
    )
    assert external["spec"]["data"][0]["remoteRef"]["key"] == "argosy/model-signing"
    assert "BEGIN" not in json.dumps(docs)


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_model_yaml_is_a_pin_with_its_header(env: str) -> None:
    # Given the committed model.yaml of the overlay
    path = OVERLAYS[env] / "model.yaml"
    text = path.read_text()
    # Then its header says that only `argosy promote` writes it, and it reads as a pin (or none)
    assert f"pinned for the {env} environment" in text
    assert "Written only by `argosy promote`" in text
    pin = read_pin(path)
    assert pin is None or pin.name == MODEL
    # And it names the contract's model, pinned or not (an unpinned one is exactly what
    # render_unpinned writes: a fork that renames its model rewrites it with the contract's name)
    assert parse_model_name(text, str(path)) == MODEL, "model.yaml must name contract.yaml's model"
    if pin is None:
        assert text == render_unpinned(MODEL, env)


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_the_service_is_named_after_the_pinned_model(
    rendered: dict[str, list[dict[str, Any]]], env: str
) -> None:
    # Given the committed overlay rendered (its pin names the contract's model)
    docs = rendered[env]
    # Then the InferenceService and the selectors of its pods carry the contract's name
    assert _one(docs, "InferenceService")["metadata"]["name"] == MODEL
    assert _one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"][SELECTOR] == MODEL
    # And nothing keeps the base's placeholder name
    assert all(d["metadata"]["name"].split("-")[0] != PATCH_TARGET for d in docs)


def test_nothing_but_the_pins_names_the_model() -> None:
    # Given every file of manifests/ and argocd/ except the overlays' pins
    pins = {path.resolve() for path in (REPO / "manifests" / "overlays").glob("*/model.yaml")}
    files = [
        path
        for top in ("manifests", "argocd")
        for path in sorted((REPO / top).rglob("*"))
        if path.is_file() and path.resolve() not in pins
    ]
    # When they are searched for the contract's model name
    naming = [str(path.relative_to(REPO)) for path in files if MODEL in path.read_text()]
    # Then none names it: a fork that renames its model edits contract.yaml and the pins only
    assert files
    assert naming == []


@pytest.mark.parametrize("inside", [False, True], ids=["on-top", "in-overlay"])
@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_another_model_name_renames_everything_that_identified_the_service(
    tmp_path: Path, env: str, inside: bool
) -> None:
    # Given a copy of manifests/ whose overlay pins another model, written by render_pin as
    # `argosy promote` writes it, with every component enabled (on top of it or in it)
    name = "income-classifier" if MODEL != "income-classifier" else "churn-scorer"
    pin = ModelPin(name, "3", "ab" * 32, "0123456789abcdef", "s3://argosy-mlflow/1/r/serving")
    overlay = _with_components(tmp_path, env, ALL_COMPONENTS, render_pin(pin, env), inside)
    # When it is rendered and validated strictly
    docs = k8s.render_kustomize(overlay)
    errors = k8s.validate_documents(docs)
    # Then it is valid, and the InferenceService and everything serving it follow the name
    assert errors == []
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("InferenceService", name),
        ("PodMonitor", name),
        ("PrometheusRule", name),
        ("PrometheusRule", f"{name}-drift"),
        ("NetworkPolicy", f"{name}-ingress"),
        ("NetworkPolicy", f"{name}-egress"),
        ("HorizontalPodAutoscaler", f"{name}-predictor"),
        ("PodDisruptionBudget", f"{name}-predictor"),
        ("ConfigMap", f"{name}-dashboard"),
    } <= names
    isvc = _one(docs, "InferenceService")
    assert isvc["metadata"]["annotations"]["argosy.io/model-name"] == name
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == pin.storage_uri
    # And so do the selectors of its pods, the autoscaler's target, labels and alert labels
    assert _one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"] == {SELECTOR: name}
    assert _one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == {SELECTOR: name}
    selected = [
        p["spec"]["podSelector"]["matchLabels"][SELECTOR]
        for p in _by_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"]
    ]
    assert selected == [name, name]
    target = _one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target["name"] == f"{name}-predictor"
    assert {
        d["metadata"]["labels"]["app.kubernetes.io/name"]
        for d in docs
        if "app.kubernetes.io/name" in d["metadata"].get("labels", {})
    } == {name}
    rules = [
        (group["name"], rule)
        for d in _by_kind(docs, "PrometheusRule")
        for group in d["spec"]["groups"]
        for rule in group["rules"]
    ]
    assert {group for group, _ in rules} == {f"argosy-{name}", f"argosy-{name}-drift"}
    assert {rule["labels"]["model"] for _, rule in rules} == {name}
    # And nothing in the render names the contract's model or keeps the placeholder
    text = yaml.safe_dump_all(docs)
    assert MODEL not in text
    assert "fraud-detector" not in text
    assert all(d["metadata"]["name"].split("-")[0] != PATCH_TARGET for d in docs)
    assert f"{SELECTOR}: {PATCH_TARGET}\n" not in text


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
    appsets = _by_kind(docs, "ApplicationSet")
    appset = next(a for a in appsets if a["metadata"]["name"] == "argosy-serving")
    spec, template = appset["spec"], appset["spec"]["template"]
    # Then templates fail on a missing key, the project is fixed, and git is the whole truth
    assert spec["goTemplate"] is True
    assert all("missingkey=error" in a["spec"]["goTemplateOptions"] for a in appsets)
    assert template["spec"]["project"] == "argosy"
    assert "{{" not in template["spec"]["project"]
    assert "resources-finalizer.argocd.argoproj.io" in template["metadata"]["finalizers"]
    sync = template["spec"]["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True, "allowEmpty": False}
    # (the namespace is the platform project's: the serving project may not create one)
    assert "CreateNamespace=true" not in sync["syncOptions"]
    assert "managedNamespaceMetadata" not in sync
    assert sync["retry"]["backoff"]["factor"] > 1
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
    # Then it deploys from one repository, into named namespaces, no cluster-scoped kind at all
    # (not even Namespace), no wildcard kinds, and its role may only get and sync
    assert len(spec["sourceRepos"]) == 1
    assert "*" not in spec["sourceRepos"]
    assert all(d["namespace"] != "*" for d in spec["destinations"])
    assert spec["clusterResourceWhitelist"] == []
    assert all(r["kind"] != "*" for r in spec["namespaceResourceWhitelist"])
    assert not any(
        r["kind"] in {"Role", "RoleBinding", "Secret"} for r in spec["namespaceResourceWhitelist"]
    )
    actions = {p.split(",")[3].strip() for r in spec["roles"] for p in r["policies"]}
    assert actions == {"get", "sync"}


def test_namespaces_are_created_by_the_platform_project_only() -> None:
    # Given the rendered argocd/ directory
    docs = k8s.render_kustomize(REPO / "argocd")
    projects = {d["metadata"]["name"]: d["spec"] for d in _by_kind(docs, "AppProject")}
    appsets = _by_kind(docs, "ApplicationSet")
    apps = [*_by_kind(docs, "Application"), *(a["spec"]["template"] for a in appsets)]
    # Then only applications of a project that may create namespaces ask ArgoCD to create one
    for app in apps:
        spec = app["spec"]
        creates = "CreateNamespace=true" in spec.get("syncPolicy", {}).get("syncOptions", [])
        whitelist = projects[spec["project"]].get("clusterResourceWhitelist") or []
        assert not creates or {"group": "", "kind": "Namespace"} in whitelist, app["metadata"]
    # And every serving namespace is deployed by the platform project to every serving cluster,
    # with the restricted pod-security labels, never pruned
    appset = next(a for a in appsets if a["metadata"]["name"] == "argosy-namespaces")
    template = appset["spec"]["template"]
    assert template["spec"]["project"] == "argosy-platform"
    assert template["spec"]["syncPolicy"]["automated"]["prune"] is False
    assert "finalizers" not in template["metadata"]
    platform = projects["argosy-platform"]
    for env in ("staging", "production"):
        (namespace,) = _plain_documents(REPO / "argocd" / "namespaces" / env)
        assert namespace["kind"] == "Namespace"
        assert namespace["metadata"]["name"] == f"argosy-{env}"
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert {"name": "*", "namespace": f"argosy-{env}"} in platform["destinations"]
    # And the pipelines namespace is created, restricted too, by the platform Application
    app = next(
        a for a in _by_kind(docs, "Application") if a["metadata"]["name"] == "argosy-platform"
    )
    assert app["spec"]["destination"]["namespace"] == "argosy-pipelines"
    restricted = app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
    assert restricted["pod-security.kubernetes.io/enforce"] == "restricted"


def _plain_documents(directory: Path) -> list[dict[str, Any]]:
    """The documents of a manifest directory without kustomization (as ArgoCD reads one)."""
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


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
