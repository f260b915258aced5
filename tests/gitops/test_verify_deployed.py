"""`argosy promote verify` checks what the overlay would deploy, not what model.yaml says.

Git: real bare origins in tmp_path; the checkout under review is a clone whose working tree is
hand-edited as a pull request would be, and the base branch is origin/main (or a second checkout,
as CI passes it). MLflow: SQLite in tmp_path, never inside the checkout. Kubernetes cannot be
reached here: the overlays are rendered with the real `kubectl kustomize`, which is what ArgoCD
applies.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argosy.cli import app
from argosy.gitops import promote as promotion
from argosy.pin import render_pin
from argosy.registry import models

from .gitops_fixtures import MODEL, Pipeline, Remote, run_git

STAGING = "manifests/overlays/staging"
PRODUCTION = "manifests/overlays/production"


def verify(clone: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["promote", "verify", "--repo-dir", str(clone), *args])
    return result.exit_code, result.output


def promoted_clone(remote: Remote, pipeline: Pipeline, mlflow_client) -> tuple[Path, object]:
    """A clone whose staging overlay pins a registered, gate-passed model (as main does)."""
    version = models.register(pipeline.train().gate_json, mlflow_client)
    clone = remote.clone("pr")
    promotion.promote(clone, version, "staging", body="")
    run_git(clone, "pull", "--quiet")
    return clone, version


def edit(path: Path, change: Callable[[str], str]) -> None:
    text = path.read_text()
    new = change(text)
    assert new != text, f"the edit of {path} changed nothing"
    path.write_text(new)


def test_a_promoted_pin_passes_and_names_what_it_deploys(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given main pins a promoted model in staging, and nothing is pinned in production
    clone, version = promoted_clone(remote, pipeline, mlflow_client)
    # When the checkout is verified against origin/main
    code, out = verify(clone)
    # Then both overlays pass
    assert code == 0, out
    assert f"ok   staging: {MODEL} v{version.version}" in out
    assert "ok   production: no model pinned" in out


def test_an_empty_version_with_an_attackers_storage_fails(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given a production model.yaml with an empty version but an attacker's storage and sha256
    clone = remote.clone("pr")
    before = remote.main()
    evil = promotion.ModelPin(MODEL, "1", "e" * 64, "run", "s3://attacker/model")
    text = render_pin(evil, "production").replace(
        "argosy.io/model-version: '1'", "argosy.io/model-version: ''"
    )
    (clone / PRODUCTION / "model.yaml").write_text(text)
    # When it is verified
    code, out = verify(clone, "--env", "production")
    # Then it fails (no "no model pinned"), naming the storage URI that would be deployed
    assert code == 1
    assert "ok   production" not in out
    assert "argosy.io/model-version is empty" in out
    assert "s3://attacker/model" in out
    assert "spec.predictor.model.storageUri" in out
    # And nothing was pushed
    assert remote.main() == before


def test_a_duplicated_key_fails_naming_it(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given a promoted pin whose storageUri is repeated: the attacker's first (kustomize keeps it)
    clone, _ = promoted_clone(remote, pipeline, mlflow_client)
    edit(
        clone / STAGING / "model.yaml",
        lambda t: re.sub(
            r"^(\s+)storageUri: (.*)$",
            r"\1storageUri: s3://attacker/model\n\1storageUri: \2",
            t,
            flags=re.M,
        ),
    )
    # When it is verified
    code, out = verify(clone, "--env", "staging")
    # Then it fails, naming the file, the key and its line
    assert code == 1
    assert "manifests/overlays/staging/model.yaml" in out
    assert "found duplicate key 'storageUri'" in out
    assert "kustomize keeps the first value" in out


EXTRA_PATCH = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: model
spec:
  predictor:
    model:
      storageUri: s3://attacker/model
"""


def test_each_change_touching_the_predictor_fails_naming_what_differs(
    remote: Remote, pipeline: Pipeline, mlflow_client, subtests
) -> None:
    # Given a promoted pin, checked out; each case edits the checkout as a pull request would
    clone, _ = promoted_clone(remote, pipeline, mlflow_client)
    model_yaml = clone / STAGING / "model.yaml"

    def extra_patch() -> None:
        (clone / STAGING / "inferenceservice.zz.yaml").write_text(EXTRA_PATCH)
        edit(
            clone / STAGING / "kustomization.yaml",
            lambda t: t.replace(
                "  - path: model.yaml\n",
                "  - path: model.yaml\n  - path: inferenceservice.zz.yaml\n",
            ),
        )

    def extra_args() -> None:
        edit(
            model_yaml,
            lambda t: t.replace(
                "      storageUri:",
                "      args: ['--model-sha256=" + "e" * 64 + "']\n      storageUri:",
            ),
        )

    def runtime() -> None:
        edit(
            model_yaml,
            lambda t: t.replace(
                "      storageUri:", "      runtime: attacker-runtime\n      storageUri:"
            ),
        )

    def extra_env() -> None:
        edit(
            model_yaml,
            lambda t: t.replace(
                "      env:\n",
                "      env:\n      - name: ARGOSY_MODEL_DIR\n        value: /attacker\n",
            ),
        )

    def image() -> None:
        edit(
            clone / "manifests/base/kustomization.yaml",
            lambda t: re.sub(r"digest: sha256:[0-9a-f]{64}", "digest: sha256:" + "e" * 64, t),
        )

    def base_args() -> None:
        edit(
            clone / "manifests/base/servingruntime.yaml",
            lambda t: t.replace(
                '"--port", "8080"]', '"--port", "8080", "--model-sha256", "' + "e" * 64 + '"]'
            ),
        )

    def component() -> None:
        comp = clone / "manifests/components/grpc-test"
        comp.mkdir(parents=True)
        (comp / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n"
            "  - path: servingruntime.port.yaml\n"
        )
        (comp / "servingruntime.port.yaml").write_text(
            "apiVersion: serving.kserve.io/v1alpha1\nkind: ServingRuntime\nmetadata:\n"
            "  name: argosy-onnx\nspec:\n  containers:\n    - name: kserve-container\n"
            "      ports:\n        - name: h2c\n          containerPort: 9000\n"
            "          protocol: TCP\n"
        )
        edit(
            clone / STAGING / "kustomization.yaml",
            lambda t: t.replace(
                "transformers:\n", "components:\n  - ../../components/grpc-test\n\ntransformers:\n"
            ),
        )

    cases = {
        "an extra patch after model.yaml": (extra_patch, ["patches adds", "storageUri"]),
        "args with another sha256": (extra_args, ["spec.predictor.model.args"]),
        "another runtime": (runtime, ["spec.predictor.model.runtime", "attacker-runtime"]),
        "an extra env variable": (extra_env, ["spec.predictor.model.env.ARGOSY_MODEL_DIR"]),
        "another serving image": (
            image,
            ["ServingRuntime/", "spec.containers.kserve-container.image"],
        ),
        "args in the base's runtime": (base_args, ["spec.containers.kserve-container.args"]),
        "a component the base does not list": (
            component,
            ["components adds '../../components/grpc-test'", "ports"],
        ),
    }
    before = remote.main()
    for name, (change, needles) in cases.items():
        with subtests.test(msg=name):
            run_git(clone, "checkout", "--quiet", "--", ".")
            run_git(clone, "clean", "--quiet", "-fd")
            change()
            # When the edited checkout is verified
            code, out = verify(clone, "--env", "staging", "--no-check-artifact")
            # Then it fails, naming what differs from the base branch's overlay
            assert code == 1, out
            assert "FAIL staging" in out
            for needle in needles:
                assert needle in out, (needle, out)
    # And nothing was pushed by any of it
    assert remote.main() == before


def test_ci_shape_base_checkout_next_to_the_pull_request(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given the base branch and the pull request checked out side by side (as promotion.yaml does)
    clone, _ = promoted_clone(remote, pipeline, mlflow_client)
    base = remote.clone("base")
    # When the pull request adds an env variable through model.yaml
    edit(
        clone / STAGING / "model.yaml",
        lambda t: t.replace("      env:\n", "      env:\n      - name: EXTRA\n        value: x\n"),
    )
    code, out = verify(clone, "--base-dir", str(base), "--env", "staging")
    # Then it fails against the base checkout
    assert code == 1
    assert "spec.predictor.model.env.EXTRA" in out
    # And the untouched pull request passes against it
    run_git(clone, "checkout", "--quiet", "--", ".")
    code, out = verify(clone, "--base-dir", str(base), "--env", "staging")
    assert code == 0, out


def test_verify_needs_an_explicit_tracking_uri_outside_the_checkout(
    remote: Remote, pipeline: Pipeline, mlflow_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a checkout that carries its own mlflow.db, and an empty MLFLOW_TRACKING_URI (the
    # secret of a pull request from a fork)
    clone, _ = promoted_clone(remote, pipeline, mlflow_client)
    shutil.copy(Path(pipeline.tracking_uri.removeprefix("sqlite:///")), clone / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.chdir(clone)
    # When verify runs with no URI
    code, out = verify(clone)
    # Then it refuses (exit 2), never falling back to the checkout's mlflow.db
    assert code == 2
    assert "no tracking URI" in out
    assert "never falls back to mlflow.db" in out
    # And a URI that names the checkout's file is refused too
    code, out = verify(clone, "--tracking-uri", f"sqlite:///{clone / 'mlflow.db'}")
    assert code == 2
    assert "inside the checkout under review" in out
    code, out = verify(clone, "--tracking-uri", "sqlite:///mlflow.db")
    assert code == 2
    assert "inside the checkout under review" in out


def test_a_missing_base_ref_fails_with_a_message(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given a checkout and a base revision that does not exist
    clone = remote.clone("pr")
    # When verify is asked to compare with it, Then it says so in one line
    code, out = verify(clone, "--base-ref", "origin/nonexistent")
    assert code == 1
    assert "cannot read the base branch's manifests at 'origin/nonexistent'" in out
    assert "Traceback" not in out
