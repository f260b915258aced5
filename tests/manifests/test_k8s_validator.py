"""The strict validator rejects what a cluster would reject, and never passes a kind unchecked."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from argosy import k8s

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx@sha256:" + "a" * 64}]},
        },
    },
}

SERVING_RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "rt"},
    "spec": {
        "supportedModelFormats": [{"name": "onnx", "version": "1"}],
        "containers": [{"name": "kserve-container", "image": "x@sha256:" + "b" * 64}],
    },
}


@pytest.fixture
def schemas() -> Path:
    return k8s.schema_dir()


def test_valid_builtin_and_custom_resources_pass(schemas: Path) -> None:
    # Given a well-formed Deployment and a well-formed KServe ServingRuntime
    docs = [copy.deepcopy(DEPLOYMENT), copy.deepcopy(SERVING_RUNTIME)]
    # When they are validated
    errors = k8s.validate_documents(docs, schemas)
    # Then there is nothing to report
    assert errors == []


def test_unknown_field_in_builtin_kind_fails(schemas: Path) -> None:
    # Given a Deployment whose container carries a misspelt field
    doc = copy.deepcopy(DEPLOYMENT)
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    # When it is validated
    errors = k8s.validate_documents([doc], schemas)
    # Then the error names the document and the unknown field
    assert len(errors) == 1
    assert "Deployment web" in errors[0]
    assert "imagePullPolicyy" in errors[0]


def test_unknown_field_in_custom_resource_fails(schemas: Path) -> None:
    # Given a ServingRuntime with an unknown field inside spec
    doc = copy.deepcopy(SERVING_RUNTIME)
    doc["spec"]["protocolVersion"] = ["v2"]
    # When it is validated
    errors = k8s.validate_documents([doc], schemas)
    # Then it is rejected and the field is named
    assert any("protocolVersion" in e for e in errors)


def test_unknown_top_level_field_in_custom_resource_fails(schemas: Path) -> None:
    # Given a custom resource with a misspelt top-level key (the catalog leaves the root open)
    doc = copy.deepcopy(SERVING_RUNTIME)
    doc["specc"] = doc.pop("spec")
    # When it is validated
    errors = k8s.validate_documents([doc], schemas)
    # Then the stray key is reported
    assert any("'specc'" in e for e in errors)


def test_unknown_metadata_field_in_custom_resource_fails(schemas: Path) -> None:
    # Given a custom resource whose metadata has a field ObjectMeta does not define
    doc = copy.deepcopy(SERVING_RUNTIME)
    doc["metadata"]["annotation"] = {"a": "b"}
    # When it is validated
    errors = k8s.validate_documents([doc], schemas)
    # Then metadata is checked as the strict ObjectMeta
    assert any("metadata/" in e and "'annotation' was unexpected" in e for e in errors)


def test_wrong_type_fails(schemas: Path) -> None:
    # Given a Deployment with a string where an integer belongs
    doc = copy.deepcopy(DEPLOYMENT)
    doc["spec"]["replicas"] = "two"
    # When it is validated
    errors = k8s.validate_documents([doc], schemas)
    # Then the path to the field is part of the message
    assert any("spec/replicas" in e for e in errors)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("example.com/v1", "Widget"),  # a custom group with no schema at all
        ("serving.kserve.io/v1alpha1", "NoSuchKind"),  # a known group, unknown kind
        ("apps/v1", "Gadget"),  # a built-in group, unknown kind
    ],
)
def test_kind_without_schema_fails(schemas: Path, api_version: str, kind: str) -> None:
    # Given a document of a kind for which no schema exists
    doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "w"}, "spec": {}}
    # When it is validated
    errors = k8s.validate_documents([doc], schemas)
    # Then it is an error, never a silent pass
    assert len(errors) == 1
    assert "no schema" in errors[0]
    assert kind in errors[0]


def test_document_without_kind_fails(schemas: Path) -> None:
    # Given a mapping that is not a Kubernetes object
    # When it is validated
    errors = k8s.validate_documents([{"foo": "bar"}], schemas)
    # Then it is rejected
    assert errors == ["document 0 (? ?): apiVersion and kind must be non-empty strings"]


def test_missing_schema_dir_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given ARGOSY_SCHEMA_DIR pointing at a directory that does not exist
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(k8s.SCHEMA_DIR_ENV, str(missing))
    # When the schema directory is resolved (directly or through validate_documents)
    with pytest.raises(k8s.SchemaDirError) as direct:
        k8s.schema_dir()
    with pytest.raises(k8s.SchemaDirError):
        k8s.validate_documents([DEPLOYMENT])
    # Then the message says where it looked and how to get the schemas
    message = str(direct.value)
    assert str(missing) in message
    assert "make schemas" in message
    assert "ARGOSY_SCHEMA_DIR" in message


def test_schema_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given ARGOSY_SCHEMA_DIR pointing at an existing, empty directory
    monkeypatch.setenv(k8s.SCHEMA_DIR_ENV, str(tmp_path))
    # When a custom resource is validated with the default directory
    errors = k8s.validate_documents([SERVING_RUNTIME])
    # Then the override was used: the empty directory has no schema for it
    assert k8s.schema_dir() == tmp_path
    assert len(errors) == 1
    assert str(tmp_path) in errors[0]


def test_render_kustomize_reports_kustomize_errors(tmp_path: Path) -> None:
    # Given a kustomization that references a missing resource
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    # When it is rendered
    with pytest.raises(k8s.KustomizeError) as err:
        k8s.render_kustomize(tmp_path)
    # Then kustomize's own complaint is passed on
    assert "missing.yaml" in str(err.value)


def test_render_kustomize_returns_documents(tmp_path: Path) -> None:
    # Given a kustomization with a name prefix
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(DEPLOYMENT))
    (tmp_path / "kustomization.yaml").write_text("resources: [d.yaml]\nnamePrefix: p-\n")
    # When it is rendered
    docs = k8s.render_kustomize(tmp_path)
    # Then the documents come back parsed, with the transformation applied
    assert [d["metadata"]["name"] for d in docs] == ["p-web"]


def test_main_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given one valid and one invalid YAML file
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(DEPLOYMENT))
    broken = copy.deepcopy(DEPLOYMENT)
    broken["spec"]["bogus"] = 1
    bad.write_text(yaml.safe_dump(broken))
    # When the command line checks them
    ok, failed = k8s.main([str(good)]), k8s.main([str(good), str(bad)])
    # Then only the run with the bad file fails, naming the field
    assert (ok, failed) == (0, 1)
    assert "bogus" in capsys.readouterr().err
