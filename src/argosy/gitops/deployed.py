"""What an overlay would deploy, checked against the base branch and the registry.

``argosy promote verify`` does not trust ``model.yaml``: it renders the overlay with ``kubectl
kustomize`` as ArgoCD would, reads the pin from the rendered InferenceService, and compares every
serving resource (:data:`SERVING_KINDS`) with a reference: the *base branch's* manifests with only
``model.yaml`` replaced by the pin ``argosy promote`` would write for that registered version (or
by the unpinned file when no version is pinned). Anything else that differs (an extra patch, an
``args:`` entry, another runtime, image or env, a component the base branch does not list, a
storage URI next to an empty version) fails, and the message names the field. Every YAML file
under ``manifests/`` must also be free of duplicate keys, which kustomize and PyYAML resolve
differently. Changing what serves the model is therefore never part of a promotion: it lands in a
pull request of its own that fails this check by design and is merged by a code owner
(docs/security.md).
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from argosy import k8s, proc
from argosy.gitops.promote import Links, PromotionError, annotations_for, pin_for
from argosy.pin import (
    MODEL_NAME,
    MODEL_VERSION,
    ModelPin,
    PinError,
    load_yaml,
    overlay_dir,
    pin_of,
    pin_path,
    render_pin,
    render_unpinned,
)
from argosy.registry.models import RegisteredVersion, RegistryError

#: Kinds that decide what runs in the predictor pod; each must render exactly as the reference.
SERVING_KINDS = frozenset(
    {"InferenceService", "ServingRuntime", "ClusterServingRuntime", "ServiceAccount"}
)
#: Annotations that only link to the UIs (their targets depend on where promote ran).
LINK_PREFIX = "link.argocd.argoproj.io/"
MAX_DIFFS = 12
SHORT = 100


@dataclass
class Verdict:
    """What one overlay would deploy and what is wrong with it.

    Attributes:
        env: The environment.
        pin: The pin the rendered InferenceService carries (None: no model pinned).
        problems: Empty when the overlay deploys exactly the reference.
    """

    env: str
    pin: ModelPin | None = None
    problems: list[str] = field(default_factory=list)


def duplicate_keys(root: Path) -> list[str]:
    """Every YAML file under ``root/manifests`` that repeats a key, with the key and line."""
    problems = []
    for path in sorted((root / "manifests").rglob("*")):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            load_yaml(path.read_text())
        except yaml.YAMLError as exc:
            problems.append(f"{path.relative_to(root)}: {' '.join(str(exc).split())}")
        except UnicodeDecodeError as exc:
            problems.append(f"{path.relative_to(root)}: not UTF-8 text: {exc}")
    return problems


def _kustomization(root: Path, env: str) -> dict[str, Any]:
    path = root / overlay_dir(env) / "kustomization.yaml"
    try:
        docs = load_yaml(path.read_text())
    except FileNotFoundError as exc:
        raise PromotionError(f"{path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise PromotionError(f"{path}: {' '.join(str(exc).split())}") from exc
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise PromotionError(f"{path}: expected one Kustomization document")
    return docs[0]


def kustomization_changes(pr_root: Path, base_root: Path, env: str) -> list[str]:
    """How the overlay's kustomization.yaml differs from the base branch's, entry by entry."""
    pr, base = _kustomization(pr_root, env), _kustomization(base_root, env)
    where = f"{overlay_dir(env)}/kustomization.yaml"
    problems = []
    for key in sorted(set(pr) | set(base)):
        ours, theirs = pr.get(key), base.get(key)
        if ours == theirs:
            continue
        if isinstance(ours, list) and theirs is None:
            theirs = []
        elif isinstance(theirs, list) and ours is None:
            ours = []
        if isinstance(ours, list) and isinstance(theirs, list):
            added = [_short(e) for e in ours if e not in theirs]
            removed = [_short(e) for e in theirs if e not in ours]
            parts = ([f"adds {', '.join(added)}"] if added else []) + (
                [f"removes {', '.join(removed)}"] if removed else []
            )
            change = "; ".join(parts) or "reorders its entries"
        else:
            change = f"is {_short(ours)}, the base branch has {_short(theirs)}"
        problems.append(
            f"{where}: {key} {change}. Only what the base branch's overlay lists may deploy with a "
            "pin; a change to the serving stack lands in its own reviewed pull request"
        )
    return problems


def _strip_links(doc: dict[str, Any]) -> dict[str, Any]:
    annotations = (doc.get("metadata") or {}).get("annotations")
    if not isinstance(annotations, dict):
        return doc
    kept = {k: v for k, v in annotations.items() if not str(k).startswith(LINK_PREFIX)}
    return {**doc, "metadata": {**doc["metadata"], "annotations": kept}}


def _serving(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc.get("kind") in SERVING_KINDS:
            meta = doc.get("metadata") or {}
            key = f"{doc['kind']}/{meta.get('namespace', '')}/{meta.get('name', '')}".replace(
                "//", "/"
            )
            found[key] = _strip_links(doc)
    return found


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHORT else text[: SHORT - 3] + "..."


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    """A list of named objects (env, containers, volumes) keyed by name, else None."""
    if not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    named = {i["name"]: i for i in items}
    return named if len(named) == len(items) else None


def diff(rendered: Any, expected: Any, path: str = "") -> list[str]:
    """The fields where ``rendered`` differs from ``expected``, as dotted paths with both values."""
    if isinstance(rendered, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(rendered) | set(expected), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in expected:
                out.append(f"{sub}: rendered {_short(rendered[key])}, the reference has none")
            elif key not in rendered:
                out.append(f"{sub}: missing, the reference has {_short(expected[key])}")
            else:
                out += diff(rendered[key], expected[key], sub)
        return out
    if isinstance(rendered, list) and isinstance(expected, list):
        ours, theirs = _by_name(rendered), _by_name(expected)
        if ours is not None and theirs is not None:
            return diff(ours, theirs, path)
        if len(rendered) == len(expected):
            out = []
            for i, (a, b) in enumerate(zip(rendered, expected, strict=True)):
                out += diff(a, b, f"{path}[{i}]")
            return out
    if rendered != expected:
        return [f"{path}: rendered {_short(rendered)}, the reference has {_short(expected)}"]
    return []


def serving_differences(rendered: list[dict], reference: list[dict]) -> list[str]:
    """How the rendered serving resources differ from the reference's, per resource and field."""
    ours, theirs = _serving(rendered), _serving(reference)
    out = [
        f"{key}: rendered, the reference has no such resource"
        for key in ours.keys() - theirs.keys()
    ]
    out += [f"{key}: missing, the reference renders it" for key in theirs.keys() - ours.keys()]
    for key in ours.keys() & theirs.keys():
        out += [f"{key} {line}" for line in diff(ours[key], theirs[key])]
    out.sort()
    if len(out) > MAX_DIFFS:
        out = [*out[:MAX_DIFFS], f"... and {len(out) - MAX_DIFFS} more differences"]
    return out


def _isvc(docs: list[dict[str, Any]], where: str) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == "InferenceService"]
    if len(found) != 1:
        raise PromotionError(f"{where} renders {len(found)} InferenceServices, expected one")
    return found[0]


def _render(root: Path, env: str, what: str) -> list[dict[str, Any]]:
    try:
        return k8s.render_kustomize(root / overlay_dir(env))
    except k8s.KustomizeError as exc:
        raise PromotionError(f"{what}: {exc}") from exc


def reference_text(
    env: str, pin: ModelPin | None, name: str, lookup: Callable[[str, str], RegisteredVersion]
) -> str:
    """The ``model.yaml`` that ``argosy promote`` writes for the pinned version (or none)."""
    if pin is None:
        return render_unpinned(name, env)
    version = lookup(pin.name, pin.version)
    return render_pin(pin_for(version), env, annotations_for(version, env, Links()))


def check_overlay(
    pr_root: Path,
    base_root: Path,
    env: str,
    lookup: Callable[[str, str], RegisteredVersion],
    verify_pin: Callable[[ModelPin, str], list[str]],
) -> Verdict:
    """Check what ``env``'s overlay in ``pr_root`` would deploy.

    Args:
        pr_root: The checkout under review (never executed; its manifests are only rendered).
        base_root: A checkout of the base branch: the serving stack a pin may deploy with.
        env: The environment.
        lookup: Registered version by model name and version (raises ``RegistryError``).
        verify_pin: Registry, gate, storage and signature checks of the rendered pin, by env.

    Returns:
        The rendered pin and every problem found.
    """
    verdict = Verdict(env)
    where = overlay_dir(env)
    verdict.problems = duplicate_keys(pr_root)
    if verdict.problems:
        return verdict  # what kustomize deploys is not what any YAML reader checks
    try:
        verdict.problems += kustomization_changes(pr_root, base_root, env)
        rendered = _render(pr_root, env, where)
        isvc = _isvc(rendered, where)
        annotations = (isvc.get("metadata") or {}).get("annotations") or {}
        verdict.pin = pin_of(isvc, f"{where} (rendered)")
        name = str(annotations.get(MODEL_NAME) or "")
        if verdict.pin is None:
            model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
            if model.get("storageUri"):
                verdict.problems.append(
                    f"{where}: {MODEL_VERSION} is empty (no model pinned) but the rendered "
                    f"InferenceService serves storageUri {model['storageUri']!r}"
                )
        with tempfile.TemporaryDirectory(prefix="argosy-reference-") as tmp:
            reference = Path(tmp)
            shutil.copytree(base_root / "manifests", reference / "manifests", symlinks=True)
            (reference / pin_path(env)).write_text(reference_text(env, verdict.pin, name, lookup))
            expected = _render(reference, env, f"the base branch's {where}")
        verdict.problems += serving_differences(rendered, expected)
    except (PromotionError, PinError, RegistryError, OSError) as exc:
        verdict.problems.append(str(exc))
        return verdict
    if verdict.pin is not None:
        verdict.problems += verify_pin(verdict.pin, env)
    return verdict


@contextmanager
def tree_at(repo: Path, ref: str) -> Iterator[Path]:
    """The repository's ``manifests/`` at ``ref``, extracted into a temporary directory.

    ``git archive`` reads the commit; the repository's state (index, worktrees) is untouched.

    Raises:
        PromotionError: ``ref`` does not resolve or has no ``manifests/``.
    """
    try:
        commit = proc.git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
        archive = proc.git_bytes(repo, "archive", "--format=tar", commit, "manifests")
    except proc.GitError as exc:
        raise PromotionError(f"cannot read the base branch's manifests at {ref!r}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="argosy-base-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)
