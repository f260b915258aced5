"""Promotion and rollback through git: pin a registered model in an overlay and publish it.

Staging is committed straight to the base branch; production goes through a pull request on
``promote/<model>-v<N>`` whose body is the gate report. Every change is validated (rendered with
kustomize and checked strictly) before it is pushed, and a failure at any step leaves no branch,
commit or pull request behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argosy import k8s
from argosy.files import write_atomic
from argosy.gatereport import METRICS
from argosy.gitops import git as gitops_git
from argosy.gitops.git import FileChange, PushResult
from argosy.gitops.github import GitHubError, GitHubSettings, PullRequests
from argosy.pin import (
    ENVIRONMENTS,
    SHA256_RE,
    ModelPin,
    PinError,
    overlay_dir,
    parse_model_name,
    parse_pin,
    pin_path,
    render_pin,
    render_unpinned,
)
from argosy.proc import GitError
from argosy.registry.models import RegisteredVersion

LINK_PREFIX = "link.argocd.argoproj.io/"
PR_LABELS = ("promotion", "env:production")


class PromotionError(RuntimeError):
    """A promotion or rollback was refused or failed; nothing was left half-done."""


@dataclass(frozen=True)
class Links:
    """Where the ArgoCD UI links from the InferenceService point to.

    Attributes:
        mlflow_ui: Base URL of the MLflow UI (None: no model link).
        repository_url: ``https://github.com/OWNER/NAME`` (None: no pull-request link).
    """

    mlflow_ui: str | None = None
    repository_url: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a promotion or rollback did.

    Attributes:
        env: Environment.
        version: Version now pinned by the change.
        changed: False when git already pinned it (nothing pushed, nothing opened).
        commit: The commit carrying the change.
        branch: The topic branch (production).
        pull_request: URL of the pull request opened or updated (production, with a token).
        body: The pull-request body (printed when there is no token).
    """

    env: str
    version: str
    changed: bool
    commit: str | None = None
    branch: str | None = None
    pull_request: str | None = None
    body: str | None = None


def name_unpinned(repo: Path, name: str) -> list[str]:
    """Give the overlays that pin no model yet the contract's model name; return their paths.

    An overlay that pins a model keeps it: only ``argosy promote`` replaces a pin.
    """
    renamed = []
    for env in ENVIRONMENTS:
        path = repo / pin_path(env)
        if not path.exists():
            continue
        text = path.read_text()
        try:
            pinned = parse_pin(text, str(path)) is not None
            current = parse_model_name(text, str(path))
        except PinError:
            continue  # `argosy promote verify` reports a pin it cannot read
        if not pinned and current != name:
            write_atomic(path, render_unpinned(name, env))
            renamed.append(pin_path(env))
    return renamed


def validate_overlay(tree: Path, env: str) -> list[str]:
    """Render the overlay in ``tree`` with kustomize and validate every document strictly."""
    try:
        docs = k8s.render_kustomize(tree / overlay_dir(env))
    except k8s.KustomizeError as exc:
        return [str(exc)]
    return k8s.validate_documents(docs)


def check_promotable(version: RegisteredVersion, env: str) -> None:
    """Refuse a version the gate did not pass, rolled back in ``env``, or without provenance."""
    label = f"{version.name} v{version.version}"
    if version.gate_decision != "promote":
        raise PromotionError(
            f"{label}: gate decision is {version.gate_decision or 'missing'!r}; only a model the "
            "gate passed (registered with `argosy register`) can be promoted"
        )
    if version.is_rolled_back(env):
        raise PromotionError(
            f"{label} was rolled back in {env}; it is never promoted there again "
            f"(`argosy rollback --env {env} --to {version.version} --force --reason ...` "
            "restores it deliberately)"
        )
    if not SHA256_RE.match(version.sha256) or not version.storage_uri:
        raise PromotionError(f"{label}: no sha256/storage URI recorded; re-register it")


def pin_for(version: RegisteredVersion) -> ModelPin:
    """The pin of a registered version."""
    try:
        return ModelPin(
            name=version.name,
            version=version.version,
            sha256=version.sha256,
            run_id=version.run_id,
            storage_uri=version.storage_uri,
            signature_sha256=version.signature_sha256,
        )
    except PinError as exc:
        raise PromotionError(f"{version.name} v{version.version}: {exc}") from exc


def branch_name(version: RegisteredVersion) -> str:
    """The production promotion branch: ``promote/<model>-v<N>``."""
    return f"promote/{version.name}-v{version.version}"


def annotations_for(version: RegisteredVersion, env: str, links: Links) -> dict[str, str]:
    """Provenance and ArgoCD UI link annotations written next to the pin."""
    annotations = {
        "argosy.io/data-hash": version.data_hash,
        "argosy.io/git-commit": version.git_commit,
    }
    if links.mlflow_ui:
        annotations[LINK_PREFIX + "mlflow-model-version"] = (
            f"{links.mlflow_ui.rstrip('/')}/#/models/{version.name}/versions/{version.version}"
        )
    if links.repository_url:
        repo = links.repository_url.rstrip("/")
        if env == "production":
            query = f"is%3Apr+head%3A{branch_name(version).replace('/', '%2F')}"
            annotations[LINK_PREFIX + "promotion-pull-request"] = f"{repo}/pulls?q={query}"
        else:
            annotations[LINK_PREFIX + "promotion-history"] = f"{repo}/commits/main/{pin_path(env)}"
    return annotations


def commit_message(version: RegisteredVersion, env: str) -> str:
    """``Promote <model> v<N> to <env>`` with key metrics and provenance in the body."""
    metrics = " ".join(f"{k}={version.metrics[k]:.4f}" for k in METRICS if k in version.metrics)
    return (
        f"Promote {version.name} v{version.version} to {env}\n\n"
        f"{metrics or 'metrics: not recorded'}\n"
        f"sha256: {version.sha256}\nrun: {version.run_id}\n"
        f"data: {version.data_hash}\ngit commit: {version.git_commit}\n"
    )


def _publish(
    repo: Path,
    env: str,
    change: FileChange,
    *,
    topic: str,
    title: str,
    body: str,
    labels: list[str],
    remote: str,
    base: str,
    github: GitHubSettings | None,
    max_attempts: int,
    before_push: Callable[[int], None] | None = None,
) -> tuple[PushResult, str | None]:
    """Commit to ``base`` (staging) or push ``topic`` and open/update its pull request."""

    def validate(tree: Path) -> list[str]:
        return validate_overlay(tree, env)

    try:
        if env == "staging":
            result = gitops_git.commit_to_branch(
                repo,
                change,
                remote=remote,
                branch=base,
                validate=validate,
                max_attempts=max_attempts,
                before_push=before_push,
            )
            return result, None
        pulls = PullRequests(github) if github else None
        if pulls is not None:
            pulls.check_access()  # a bad token fails here, before any branch exists
        result = gitops_git.push_topic_branch(
            repo, change, topic=topic, remote=remote, base=base, validate=validate
        )
    except (GitError, GitHubError) as exc:
        raise PromotionError(str(exc)) from exc
    if result.commit is None or pulls is None:
        return result, None
    try:
        pull = pulls.open_or_update(head=topic, base=base, title=title, body=body, labels=labels)
    except GitHubError as exc:
        if result.created:
            try:
                gitops_git.delete_branch(repo, topic, remote)
            except GitError as undo:
                raise PromotionError(
                    f"{exc}; and deleting the branch {topic} failed too ({undo}): delete it by hand"
                ) from exc
            raise PromotionError(f"{exc}; the branch {topic} was deleted again") from exc
        raise PromotionError(f"{exc}; the branch {topic} was left as it was before") from exc
    return result, pull.url


def promote(
    repo: Path,
    version: RegisteredVersion,
    env: str,
    *,
    body: str,
    links: Links | None = None,
    remote: str = "origin",
    base: str = "main",
    github: GitHubSettings | None = None,
    max_attempts: int = 5,
    before_push: Callable[[int], None] | None = None,
    check_served: Callable[[RegisteredVersion], list[str]] | None = None,
) -> Outcome:
    """Pin ``version`` in ``env``'s overlay and publish the change.

    Args:
        repo: A checkout of the repository (its working tree is left untouched).
        version: The registered version to deploy.
        env: ``staging`` (commit to ``base``) or ``production`` (pull request).
        body: Pull-request body: the gate report (``reports/gate.md``).
        links: Targets of the ArgoCD UI links.
        remote: Git remote.
        base: The branch ArgoCD deploys from.
        github: API settings; None stops after pushing the branch (local runs).
        max_attempts: Pushes tried when the remote keeps moving (staging).
        before_push: Test hook, see :func:`argosy.gitops.git.commit_to_branch`.
        check_served: Checks what the storage serves (sha256, signature over every file), see
            :func:`argosy.registry.models.check_served`; any problem refuses the promotion
            before anything is committed.

    Raises:
        PromotionError: The version may not be promoted, or publishing failed (cleanly).
    """
    path = pin_path(env)
    check_promotable(version, env)
    pin = pin_for(version)
    problems = check_served(version) if check_served is not None else []
    if problems:
        raise PromotionError("; ".join(problems) + "; nothing was committed, pushed or opened")
    text = render_pin(pin, env, annotations_for(version, env, links or Links()))
    change = FileChange(
        path=path, text=text, message=commit_message(version, env), equivalent=_same_pin
    )
    topic = branch_name(version)
    title = f"Promote {version.name} v{version.version} to {env}"
    labels = [*PR_LABELS, f"model:{version.name}"]
    result, url = _publish(
        repo,
        env,
        change,
        topic=topic,
        title=title,
        body=body,
        labels=labels,
        remote=remote,
        base=base,
        github=github,
        max_attempts=max_attempts,
        before_push=before_push,
    )
    return Outcome(
        env=env,
        version=version.version,
        changed=result.commit is not None,
        commit=result.commit,
        branch=topic if env == "production" and result.commit else None,
        pull_request=url,
        body=body if env == "production" else None,
    )


@dataclass(frozen=True)
class RollbackPlan:
    """The pin to leave and the earlier ``model.yaml`` to restore, byte for byte."""

    current: ModelPin
    target: ModelPin
    text: str
    commit: str
    forced: bool = False


def plan_rollback(
    history: list[tuple[str, str]],
    to_version: str | None,
    is_rolled_back: Callable[[ModelPin], bool],
    path: str,
    *,
    force: bool = False,
) -> RollbackPlan:
    """Choose the ``model.yaml`` to restore from its git history (newest first).

    Args:
        history: ``(commit, text)`` of each commit that changed the file, newest first.
        to_version: Restore the latest pin of this version; default: the latest earlier pin of a
            different, not rolled-back version.
        is_rolled_back: Whether a pinned version is marked rolled back in this environment.
        path: The file, for messages.
        force: Restore ``to_version`` even when it is marked rolled back.

    Raises:
        PromotionError: Nothing is pinned now, there is no suitable earlier pin, or
            ``to_version`` is marked rolled back and ``force`` is not set.
    """
    pins = []
    for commit, text in history:
        try:
            pins.append((commit, text, parse_pin(text, path)))
        except PinError:
            continue  # an unreadable historical file is simply not a rollback target
    if not pins or pins[0][2] is None:
        raise PromotionError(f"{path}: nothing is pinned now; there is nothing to roll back")
    current = pins[0][2]
    for commit, text, pin in pins[1:]:
        if pin is None or pin.version == current.version:
            continue
        if to_version is not None:
            if pin.version != to_version:
                continue
            if not is_rolled_back(pin):
                return RollbackPlan(current, pin, text, commit)
            if force:
                return RollbackPlan(current, pin, text, commit, forced=True)
            raise PromotionError(
                f"{path}: {pin.name} v{pin.version} is marked rolled back in this environment; "
                "refusing to restore it (nothing committed or pushed). Pass --force with "
                '--reason "..." to restore it anyway; the reason is recorded on the version.'
            )
        elif not is_rolled_back(pin):
            return RollbackPlan(current, pin, text, commit)
    wanted = f"v{to_version}" if to_version else "an earlier model"
    raise PromotionError(
        f"{path}: {wanted} was never pinned here before {current.name} v{current.version}; "
        "rollback only restores a model this environment has deployed"
    )


def _same_pin(old: str, new: str) -> bool:
    """Whether two model.yaml texts pin the same model (links and comments aside)."""
    try:
        return parse_pin(old, "model.yaml") == parse_pin(new, "model.yaml")
    except PinError:
        return False


def rollback(
    repo: Path,
    env: str,
    *,
    to_version: str | None = None,
    is_rolled_back: Callable[[ModelPin], bool] = lambda pin: False,
    mark_rolled_back: Callable[[ModelPin], None] | None = None,
    force_reason: str | None = None,
    force_restore: Callable[[ModelPin, str], None] | None = None,
    remote: str = "origin",
    base: str = "main",
    github: GitHubSettings | None = None,
) -> Outcome:
    """Restore the previous pin of ``env`` from git history and publish it like a promotion.

    Production gets a pull request on ``rollback/<model>-v<from>-to-v<to>``; staging a commit.
    After the change is published, ``mark_rolled_back`` marks the version left behind (in this
    environment) so that automation never promotes it there again.

    Args:
        repo: A checkout of the repository (its working tree is left untouched).
        env: The environment to roll back.
        to_version: The version to restore; default: the previous one not marked rolled back.
        is_rolled_back: Whether a pin is marked rolled back in ``env``.
        mark_rolled_back: Marks the version left behind, after publishing.
        force_reason: Restore ``to_version`` even though it is marked rolled back in ``env``;
            why (required for that, recorded by ``force_restore``).
        force_restore: Lifts the target's mark in ``env`` and records the reason, after
            publishing, when the target was marked.
        remote: Git remote.
        base: The branch ArgoCD deploys from.
        github: API settings (production); None stops after pushing the branch.

    Raises:
        PromotionError: No earlier pin to restore, the target is marked rolled back and no
            reason to force it was given, or publishing failed (cleanly).
    """
    path = pin_path(env)
    if force_reason is not None and not force_reason.strip():
        raise PromotionError("--force needs a --reason; it is recorded on the restored version")
    if force_reason is not None and to_version is None:
        raise PromotionError("--force applies to an explicit --to version only")
    if gitops_git.fetch(repo, remote, base) is None:
        raise PromotionError(f"{remote} has no branch {base!r}")
    history = gitops_git.file_history(repo, f"refs/remotes/{remote}/{base}", path)
    plan = plan_rollback(history, to_version, is_rolled_back, path, force=force_reason is not None)
    current, target = plan.current, plan.target
    topic = f"rollback/{current.name}-v{current.version}-to-v{target.version}"
    message = (
        f"Roll back {current.name} in {env} from v{current.version} to v{target.version}\n\n"
        f"Restores {path} as of {plan.commit[:12]}.\n"
        f"v{current.version} (sha256 {current.sha256}) is marked rolled back in {env}.\n"
        + (
            f"v{target.version} was marked rolled back in {env}; restored by force: "
            f"{force_reason}\n"
            if plan.forced
            else ""
        )
    )
    body = (
        f"## Rollback of `{current.name}` in {env}\n\n"
        f"| | version | sha256 | run |\n|---|---|---|---|\n"
        f"| from | v{current.version} | `{current.sha256[:12]}` | `{current.run_id}` |\n"
        f"| to | v{target.version} | `{target.sha256[:12]}` | `{target.run_id}` |\n\n"
        f"`{path}` is restored byte for byte from commit {plan.commit}. "
        f"v{current.version} is marked `argosy.rolled_back.{env}` in the registry, so it is "
        f"never promoted to {env} again. (ArgoCD auto-sync refuses `argocd app rollback`; the "
        "revert lives in git.)\n"
        + (
            f"\n**Forced:** v{target.version} was marked rolled back in {env} and is restored "
            f"anyway. Reason: {force_reason}\n"
            if plan.forced
            else ""
        )
    )
    change = FileChange(path=path, text=plan.text, message=message)
    result, url = _publish(
        repo,
        env,
        change,
        topic=topic,
        title=f"Roll back {current.name} in {env} to v{target.version}",
        body=body,
        labels=["rollback", f"env:{env}", f"model:{current.name}"],
        remote=remote,
        base=base,
        github=github,
        max_attempts=5,
    )
    if plan.forced and force_restore is not None and force_reason is not None:
        force_restore(target, force_reason)
    if mark_rolled_back is not None:
        mark_rolled_back(current)
    return Outcome(
        env=env,
        version=target.version,
        changed=result.commit is not None,
        commit=result.commit,
        branch=topic if env == "production" and result.commit else None,
        pull_request=url,
        body=body,
    )
