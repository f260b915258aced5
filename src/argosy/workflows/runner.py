"""What each Argo task runs inside its pod: one DVC stage against the shared remote.

``run_stage`` is the body of every stage task; ``run_after`` restores a stage's outputs and then
runs a command (the promotion tasks). Both configure the remote in ``.dvc/config.local`` of the
checkout, so the committed DVC config is never touched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from argosy import proc

log = logging.getLogger(__name__)

REMOTE_NAME = "argosy"
SCRATCH = "/tmp"  # noqa: S108 - an emptyDir of the task's own pod, not a shared host directory  # nosec B108
OUTPUTS_DIR = f"{SCRATCH}/outputs"
"""Where tasks write the files Argo reads as output parameters."""


class TaskError(RuntimeError):
    """A DVC command or an export failed; the message says which and why."""


@dataclass(frozen=True)
class Export:
    """An output parameter read from a JSON report: ``NAME=FILE:KEY``."""

    name: str
    file: str
    key: str

    @classmethod
    def parse(cls, text: str) -> Export:
        """Parse ``NAME=FILE:KEY``.

        Raises:
            ValueError: The text is not of that form.
        """
        name, sep, rest = text.partition("=")
        file, sep2, key = rest.rpartition(":")
        if not (sep and sep2 and name and file and key):
            raise ValueError(f"expected NAME=FILE:KEY, got {text!r}")
        return cls(name, file, key)


def _dvc(repo: Path, *args: str) -> None:
    log.info("dvc %s", " ".join(args))
    code = proc.run_attached(["dvc", *args], repo)
    if code != 0:
        raise TaskError(f"`dvc {' '.join(args)}` failed with exit code {code}")


def configure_remote(repo: Path, url: str, endpoint: str = "") -> None:
    """Make ``url`` the default DVC remote of this checkout only (``.dvc/config.local``)."""
    _dvc(repo, "remote", "add", "--local", "--force", "--default", REMOTE_NAME, url)
    if endpoint:
        _dvc(repo, "remote", "modify", "--local", REMOTE_NAME, "endpointurl", endpoint)


def write_exports(repo: Path, exports: Sequence[Export], outputs: Path) -> dict[str, str]:
    """Write each export's value to ``outputs/NAME`` for Argo to read as an output parameter.

    Booleans are written as ``true``/``false`` so that ``when`` expressions compare plain words.

    Raises:
        TaskError: A report is missing, not JSON, or lacks the key.
    """
    values: dict[str, str] = {}
    if exports:
        outputs.mkdir(parents=True, exist_ok=True)
    for export in exports:
        path = repo / export.file
        try:
            value = json.loads(path.read_text())[export.key]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TaskError(f"cannot export {export.name}: {path}[{export.key!r}]: {exc}") from exc
        text = json.dumps(value) if not isinstance(value, str) else value
        (outputs / export.name).write_text(text)
        values[export.name] = text
    return values


def run_stage(
    repo: Path,
    stage: str,
    remote: str,
    endpoint: str = "",
    exports: Sequence[Export] = (),
    outputs: Path = Path(OUTPUTS_DIR),
) -> dict[str, str]:
    """Reproduce one stage against the shared remote and publish its outputs.

    ``dvc repro --pull`` fetches the run-cache first, so upstream stages (already run by earlier
    tasks) and an unchanged ``stage`` itself are restored from the remote instead of rerun; then the
    outputs and the run-cache are pushed for the next task and the next workflow.

    Returns:
        The exported output parameters.

    Raises:
        TaskError: DVC failed or an export could not be read.
    """
    configure_remote(repo, remote, endpoint)
    _dvc(repo, "repro", "--pull", stage)
    _dvc(repo, "push", "--run-cache", "--with-deps", stage)
    return write_exports(repo, exports, outputs)


def configure_push_credentials(repo: Path) -> bool:
    """Let ``git push`` in ``repo`` authenticate with $GIT_USERNAME/$GIT_PASSWORD when both are set.

    Argo's git artifact uses its Secret only to clone; the promotion tasks push the pinned overlay
    back, so they get the same Secret as environment variables.

    Returns:
        Whether a helper was configured.
    """
    if not (os.environ.get("GIT_USERNAME") and os.environ.get("GIT_PASSWORD")):
        return False
    proc.git(repo, "config", "--local", "credential.helper", proc.CREDENTIAL_HELPER)
    return True


def run_after(repo: Path, stage: str, remote: str, endpoint: str, command: Sequence[str]) -> int:
    """Restore ``stage``'s outputs from the remote (nothing reruns), then run ``command``.

    Returns:
        The command's exit code.

    Raises:
        TaskError: The outputs could not be restored.
    """
    if not command:
        raise TaskError("no command given after `--`")
    configure_remote(repo, remote, endpoint)
    _dvc(repo, "repro", "--pull", stage)
    configure_push_credentials(repo)
    log.info("running %s", " ".join(command))
    return proc.run_attached(command, repo)
