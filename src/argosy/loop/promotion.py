"""Promotion, verification and rollback: the registry and git together, for the CLI and the demo.

:mod:`argosy.gitops.promote` changes git; :mod:`argosy.registry.models` reads and marks MLflow
versions; this module joins them: which version, which links, which pull-request body, which
checks run before anything is pushed. The ``argosy`` commands only parse options and print.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from argosy import gatereport, proc
from argosy.pin import ENVIRONMENTS, ModelPin

if TYPE_CHECKING:  # pragma: no cover - typing only; mlflow is imported lazily (heavy)
    from mlflow import MlflowClient

    from argosy import signing
    from argosy.gitops.deployed import Verdict
    from argosy.gitops.github import GitHubSettings
    from argosy.gitops.promote import Outcome
    from argosy.registry.models import RegisteredVersion


@dataclass(frozen=True)
class GitHubTarget:
    """Where pull requests go.

    Attributes:
        repository: OWNER/NAME (None: not known, no pull-request links).
        api_url: GitHub REST API base URL (None: $GITHUB_API_URL, else api.github.com).
    """

    repository: str | None = None
    api_url: str | None = None


def github_settings(repo: Path, remote: str, target: GitHubTarget) -> GitHubSettings | None:
    """The GitHub API settings from the environment (None without a token).

    Raises:
        GitHubError: The repository cannot be named or the token's settings are invalid.
    """
    from argosy.gitops.github import repository_from_remote, settings_from_env

    repository = target.repository
    if repository is None and not os.environ.get("GITHUB_REPOSITORY"):
        repository = repository_from_remote(
            proc.git(repo, "remote", "get-url", remote, check=False)
        )
    return settings_from_env(repository, target.api_url)


def _repository(repo: Path, remote: str, target: GitHubTarget) -> str | None:
    from argosy.gitops.github import repository_from_remote

    repository = target.repository or os.environ.get("GITHUB_REPOSITORY")
    if repository is None:
        repository = repository_from_remote(
            proc.git(repo, "remote", "get-url", remote, check=False)
        )
    return repository


def gate_body(
    reports: Path,
    version: RegisteredVersion,
    mlflow_client: MlflowClient,
    mlflow_ui: str | None = None,
) -> str:
    """The gate report of ``version``, the production pull request's body.

    ``reports/gate.md`` when ``reports/gate.json`` is about this run, else the copy logged with
    the model at registration; with an MLflow UI, a link to the version (registered after the
    gate wrote its report) closes it.
    """
    body = _gate_markdown(reports, version, mlflow_client)
    if not mlflow_ui:
        return body
    link = f"{mlflow_ui.rstrip('/')}/#/models/{version.name}/versions/{version.version}"
    return f"{body.rstrip()}\n- MLflow, this version ({version.version}): {link}\n"


def _gate_markdown(reports: Path, version: RegisteredVersion, mlflow_client: MlflowClient) -> str:
    local_md = reports / gatereport.GATE_MD
    with contextlib.suppress(gatereport.GateReportError):
        local = gatereport.read(reports / gatereport.GATE_JSON)
        if local.model.run_id == version.run_id and local_md.is_file():
            return local_md.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_client.download_artifacts(
                version.run_id, f"{gatereport.ARTIFACT_DIR}/{gatereport.GATE_MD}", tmp
            )
            return Path(path).read_text()
        except Exception:  # any failure means: no logged report to show
            return (
                f"Gate report not found for {version.name} v{version.version} "
                f"(run {version.run_id}).\n"
            )


def promote(
    mlflow_client: MlflowClient,
    repo_dir: Path,
    env: str,
    model: str,
    version: str = "candidate",
    *,
    reports: Path = Path("reports"),
    remote: str = "origin",
    base: str = "main",
    github: GitHubTarget = GitHubTarget(),
    mlflow_ui_url: str | None = None,
    max_attempts: int = 5,
    trust: signing.Trust | None = None,
    require_signature: bool = False,
    pull_request: bool = True,
) -> tuple[RegisteredVersion, Outcome, bool]:
    """Pin a gate-passed version in ``env``'s overlay and publish it (see ``argosy promote``).

    With ``pull_request`` False, production stops after pushing its branch whatever token the
    environment holds (the outcome carries the body a pull request would have).

    Returns:
        The version, what was done, and whether a GitHub token let it open a pull request.

    Raises:
        RegistryError, PromotionError, GitError, GitHubError: Refused or failed; nothing pushed.
    """
    from argosy.gitops.promote import Links
    from argosy.gitops.promote import promote as publish
    from argosy.registry.models import check_served, get_version

    def served(registered: RegisteredVersion) -> list[str]:
        label = f"{registered.name} v{registered.version}"
        problems = check_served(
            mlflow_client,
            registered.run_id,
            label,
            registered.sha256,
            registered.signature_sha256,
            trust,
        )
        if require_signature and not registered.signature_sha256:
            problems.append(f"{label}: unsigned, and --require-signature is set")
        return problems

    repo = proc.repo_root(repo_dir)
    registered = get_version(mlflow_client, model, version)
    wants_pr = env == "production" and pull_request
    settings = github_settings(repo, remote, github) if wants_pr else None
    repository = _repository(repo, remote, github)
    ui = mlflow_ui_url or os.environ.get("ARGOSY_MLFLOW_UI_URL")
    if ui is None and mlflow_client.tracking_uri.startswith(("http://", "https://")):
        ui = mlflow_client.tracking_uri
    links = Links(
        mlflow_ui=ui,
        repository_url=f"https://github.com/{repository}" if repository else None,
    )
    body = gate_body(reports, registered, mlflow_client, ui) if env == "production" else ""
    outcome = publish(
        repo,
        registered,
        env,
        body=body,
        links=links,
        remote=remote,
        base=base,
        github=settings,
        max_attempts=max_attempts,
        check_served=served,
    )
    return registered, outcome, settings is not None


def verify(
    mlflow_client: MlflowClient,
    repo_dir: Path,
    base_root: Path,
    envs: Sequence[str] = ENVIRONMENTS,
    *,
    check_artifact: bool = True,
    trust: signing.Trust | None = None,
    require_signature: bool = False,
) -> list[Verdict]:
    """What each overlay of ``repo_dir`` would deploy, checked against ``base_root`` and MLflow.

    Raises:
        PromotionError, GitError: An overlay cannot be rendered or read at all.
    """
    from argosy.gitops.deployed import check_overlay
    from argosy.registry.models import get_version, verify_pin

    def lookup(name: str, version: str) -> RegisteredVersion:
        return get_version(mlflow_client, name, version)

    def check(pin: ModelPin, env: str) -> list[str]:
        return verify_pin(
            pin,
            mlflow_client,
            check_artifact=check_artifact,
            env=env,
            trust=trust,
            require_signature=require_signature,
        )

    return [check_overlay(repo_dir, base_root, env, lookup, check) for env in envs]


def rollback(
    mlflow_client: MlflowClient,
    repo_dir: Path,
    env: str,
    *,
    to: str | None = None,
    reason: str | None = None,
    force: bool = False,
    remote: str = "origin",
    base: str = "main",
    github: GitHubTarget = GitHubTarget(),
) -> tuple[Outcome, bool]:
    """Restore an earlier pin of ``env`` from git and mark the version left (``argosy rollback``).

    Returns:
        What was done, and whether a GitHub token let it open a pull request.

    Raises:
        PromotionError, RegistryError, GitError, GitHubError: Refused or failed; nothing pushed.
    """
    from argosy.gitops.promote import rollback as restore_pin
    from argosy.registry.models import (
        RegistryError,
        force_restore,
        get_version,
        mark_rolled_back,
    )

    why = (reason or "").strip()

    def rolled_back(pin: ModelPin) -> bool:
        try:
            return get_version(mlflow_client, pin.name, pin.version).is_rolled_back(env)
        except RegistryError:
            return False

    def mark(pin: ModelPin) -> None:
        text = f"rolled back in {env}" + (f": {why}" if why else "")
        mark_rolled_back(mlflow_client, pin.name, pin.version, text, env=env)

    def restore(pin: ModelPin, text: str) -> None:
        force_restore(mlflow_client, pin.name, pin.version, text, env=env)

    repo = proc.repo_root(repo_dir)
    settings = github_settings(repo, remote, github) if env == "production" else None
    outcome = restore_pin(
        repo,
        env,
        to_version=to,
        is_rolled_back=rolled_back,
        mark_rolled_back=mark,
        force_reason=why if force and why else None,
        force_restore=restore,
        remote=remote,
        base=base,
        github=settings,
    )
    return outcome, settings is not None


def sync_registry(
    mlflow_client: MlflowClient, repo_dir: Path, ref: str, model: str
) -> dict[str, str | None]:
    """Point the registry's environment aliases at what git pins at ``ref`` (git is the truth).

    Raises:
        PinError, GitError, RegistryError: A pin cannot be read or does not match the registry.
    """
    from argosy.pin import pins_at
    from argosy.registry.models import sync_aliases

    return sync_aliases(pins_at(proc.repo_root(repo_dir), ref), mlflow_client, name=model)
