"""The overlay pin (argosy.pin): what `argosy promote` writes into model.yaml and reads back."""

from __future__ import annotations

import pytest
import yaml

from argosy.pin import (
    MODEL_NAME,
    PATCH_TARGET,
    ModelPin,
    PinError,
    parse_model_name,
    parse_pin,
    render_pin,
    render_unpinned,
)

PIN = ModelPin("income-classifier", "7", "ab" * 32, "0123456789abcdef", "s3://store/1/r/serving")


def test_a_rendered_pin_patches_the_base_and_names_the_model() -> None:
    # Given a pin rendered as `argosy promote` writes it
    text = render_pin(PIN, "staging")
    doc = yaml.safe_load(text)
    # Then it patches the base's InferenceService and carries the model's name as annotation
    assert doc["metadata"]["name"] == PATCH_TARGET
    assert doc["metadata"]["annotations"][MODEL_NAME] == PIN.name
    # And it reads back as the same pin and the same name
    assert parse_pin(text, "model.yaml") == PIN
    assert parse_model_name(text, "model.yaml") == PIN.name


def test_an_unpinned_overlay_still_names_its_model() -> None:
    # Given the model.yaml of an overlay that pins nothing yet
    text = render_unpinned("income-classifier", "production")
    # Then it reads as no pin, but names the model the overlay serves
    assert parse_pin(text, "model.yaml") is None
    assert parse_model_name(text, "model.yaml") == "income-classifier"
    assert "pinned for the production environment" in text


def test_a_pin_of_another_inference_service_is_refused() -> None:
    # Given a pin that names the served model as the patched resource (the pre-placeholder form)
    doc = yaml.safe_load(render_pin(PIN, "staging"))
    doc["metadata"]["name"] = PIN.name
    text = yaml.safe_dump(doc)
    # When it is read, Then it is refused with the name it must patch
    with pytest.raises(PinError, match=f"metadata.name must be '{PATCH_TARGET}'"):
        parse_pin(text, "model.yaml")


def test_a_pin_without_a_model_name_is_refused() -> None:
    # Given an unpinned model.yaml whose model-name annotation was removed
    doc = yaml.safe_load(render_unpinned("income-classifier", "staging"))
    del doc["metadata"]["annotations"][MODEL_NAME]
    # When its model's name is read, Then it is refused
    with pytest.raises(PinError, match="cannot name its model"):
        parse_model_name(yaml.safe_dump(doc), "model.yaml")


def test_a_pin_repeating_a_key_is_refused_naming_it() -> None:
    # Given a pin whose storageUri appears twice (kustomize deploys the first, PyYAML the last)
    text = render_pin(PIN, "staging").replace(
        "      storageUri: s3://", "      storageUri: s3://attacker/m\n      storageUri: s3://"
    )
    # When it is read, Then it is refused, naming the key and the first line it was on
    with pytest.raises(PinError, match="found duplicate key 'storageUri' \\(first at line"):
        parse_pin(text, "model.yaml")


def test_a_pin_with_a_second_document_or_a_mismatched_env_is_refused() -> None:
    # Given a pin followed by a second patch in the same file
    text = render_pin(PIN, "staging") + "---\n" + render_pin(PIN, "staging")
    # Then it is refused
    with pytest.raises(PinError, match="expected one InferenceService patch, found 2"):
        parse_pin(text, "model.yaml")
    # And a signed pin whose env names another bundle than its annotation is refused
    signed = ModelPin(**{**PIN.__dict__, "signature_sha256": "cd" * 32})
    text = render_pin(signed, "staging").replace("value: " + "cd" * 32, "value: " + "ef" * 32)
    with pytest.raises(PinError, match="ARGOSY_MODEL_SIGNATURE_SHA256 differ"):
        parse_pin(text, "model.yaml")
    # And a signed pin reads back with its bundle
    assert parse_pin(render_pin(signed, "staging"), "model.yaml") == signed


def test_every_environment_has_one_pin_path_and_others_are_refused() -> None:
    from argosy.pin import ENVIRONMENTS, overlay_dir, pin_path

    assert [pin_path(env) for env in ENVIRONMENTS] == [
        "manifests/overlays/staging/model.yaml",
        "manifests/overlays/production/model.yaml",
    ]
    assert overlay_dir("production") == "manifests/overlays/production"
    with pytest.raises(
        PinError, match="unknown environment 'prod'; expected staging or production"
    ):
        pin_path("prod")


def test_pins_at_a_revision_come_from_git_not_the_working_tree(tmp_path) -> None:
    import subprocess

    from argosy.pin import pin_path, pins_at

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    # Given a repository whose first commit pins v7 in staging and nothing in production
    git("init", "-q", "-b", "main")
    for env, text in (
        ("staging", render_pin(PIN, "staging")),
        ("production", render_unpinned(PIN.name, "production")),
    ):
        path = tmp_path / pin_path(env)
        path.parent.mkdir(parents=True)
        path.write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "pins")
    # When the working tree is changed after that commit
    (tmp_path / pin_path("staging")).write_text(render_unpinned(PIN.name, "staging"))
    # Then the pins at HEAD are the committed ones
    assert pins_at(tmp_path, "HEAD") == {"staging": PIN, "production": None}
    # And a revision without an overlay's pin names the missing file
    (tmp_path / pin_path("production")).unlink()
    git("rm", "-q", "--cached", pin_path("production"))
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "drop")
    with pytest.raises(PinError, match=r"production/model\.yaml does not exist at HEAD"):
        pins_at(tmp_path, "HEAD")
