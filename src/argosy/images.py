"""Record pushed image digests where the deployments read them: ``make pin-images``.

The serving image is pinned in ``manifests/base/kustomization.yaml`` (its ``images:`` entry), the
pipeline image in ``params.yaml`` ``workflow.image``, from which ``make workflows`` writes every
WorkflowTemplate. Both are edited in place, line by line, so comments and layout survive.
"""

from __future__ import annotations

import re
from pathlib import Path

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
SERVE_IMAGE = "ghcr.io/argosy-mlops/argosy-serve"
KUSTOMIZATION = Path("manifests/base/kustomization.yaml")
PARAMS = Path("params.yaml")


class PinError(ValueError):
    """A digest is malformed or the place that holds it was not found exactly once."""


def _check(digest: str) -> str:
    if not DIGEST.match(digest):
        raise PinError(f"not an image digest (sha256:<64 hex>): {digest!r}")
    return digest


def pin_serve(text: str, digest: str, image: str = SERVE_IMAGE) -> str:
    """Set the ``digest:`` of ``image``'s entry under ``images:`` of a kustomization.

    Raises:
        PinError: The digest is malformed or the entry is not there exactly once.
    """
    pattern = re.compile(
        rf"(^\s*-\s*name:\s*{re.escape(image)}\s*\n\s*digest:\s*)sha256:[0-9a-f]{{64}}", re.M
    )
    new, count = pattern.subn(lambda m: m.group(1) + _check(digest), text)
    if count != 1:
        raise PinError(f"expected one images: entry for {image} with a digest, found {count}")
    return new


def pin_pipeline(text: str, digest: str) -> str:
    """Set the digest of ``workflow.image`` in params.yaml text.

    Raises:
        PinError: The digest is malformed or ``image:`` under ``workflow:`` is not found once.
    """
    pattern = re.compile(r"(^  image:\s*[^\s@]+@)sha256:[0-9a-f]{64}", re.M)
    section = re.search(r"^workflow:\n(?:(?:[ #].*)?\n)*", text, re.M)
    if section is None:
        raise PinError("params.yaml has no `workflow:` section")
    body, count = pattern.subn(lambda m: m.group(1) + _check(digest), section.group(0))
    if count != 1:
        raise PinError(f"expected one `image: NAME@sha256:...` under workflow:, found {count}")
    return text[: section.start()] + body + text[section.end() :]


def pin_images(root: Path, serve: str | None, pipeline: str | None) -> list[Path]:
    """Write the given digests into the repository at ``root``; return the files changed.

    Raises:
        PinError: See :func:`pin_serve` and :func:`pin_pipeline`; nothing is written then.
    """
    edits: list[tuple[Path, str]] = []
    if serve is not None:
        path = root / KUSTOMIZATION
        edits.append((path, pin_serve(path.read_text(), serve)))
    if pipeline is not None:
        path = root / PARAMS
        edits.append((path, pin_pipeline(path.read_text(), pipeline)))
    changed = []
    for path, text in edits:
        if path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed
