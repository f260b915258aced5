"""Command line of registration, promotion, verification, rollback and registry sync.

Registered on the ``argosy`` app by :mod:`argosy.cli`: ``argosy register``, ``argosy promote``
(``--env staging|production``, ``verify``), ``argosy rollback`` and ``argosy registry sync``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from argosy.clikit import DEFAULT_CONTRACT, contract_or_exit
from argosy.clikit import fail as _fail
from argosy.gitops.pin import PinError, read_pin

ROOT_HELP = "Repository checkout to work from (its working tree is never modified)."


def _client(tracking_uri: str | None):
    from argosy.registry.models import RegistryError, client

    try:
        return client(tracking_uri)
    except RegistryError as exc:  # an unreachable tracking server: one line, no traceback
        _fail(str(exc))


TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking/registry URI. Default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///mlflow.db in the current directory.",
    ),
]
RepoDir = Annotated[Path, typer.Option("--repo-dir", help=ROOT_HELP)]
Contract = Annotated[
    Path | None,
    typer.Option(
        "--contract",
        help="The data contract, whose `name:` is the model's. Default: --repo-dir/contract.yaml.",
    ),
]
Remote = Annotated[str, typer.Option(help="Git remote to fetch from and push to.")]
Base = Annotated[str, typer.Option(help="Branch ArgoCD deploys from.")]
GitHubRepo = Annotated[
    str | None,
    typer.Option(
        "--github-repo",
        help="OWNER/NAME on GitHub. Default: $GITHUB_REPOSITORY, else parsed from the remote URL.",
    ),
]
GitHubApi = Annotated[
    str | None,
    typer.Option(
        "--github-api-url",
        help="GitHub REST API base URL (Enterprise: https://HOST/api/v3). "
        "Default: $GITHUB_API_URL, else https://api.github.com.",
    ),
]


def _github(repo: Path, remote: str, repository: str | None, api_url: str | None):
    from argosy.gitops import git as gitops_git
    from argosy.gitops.github import GitHubError, repository_from_remote, settings_from_env

    if repository is None and not os.environ.get("GITHUB_REPOSITORY"):
        url = gitops_git.git(repo, "remote", "get-url", remote, check=False)
        repository = repository_from_remote(url)
    try:
        return settings_from_env(repository, api_url), repository
    except GitHubError as exc:
        _fail(str(exc))
        raise  # pragma: no cover - _fail raises


def register(
    gate: Annotated[
        Path, typer.Option(help="The gate report written by the pipeline's gate stage.")
    ] = Path("reports/gate.json"),
    tracking_uri: TrackingUri = None,
) -> None:
    """Register the model that passed the gate in MLflow, with alias `candidate`.

    Tags the version with its sha256, the gate decision, the data hash and the git commit, and
    logs the gate report with the run. Refuses a missing gate report or one that rejected the
    model. Registering the same run again returns the existing version.
    """
    from argosy.registry.models import RegistryError
    from argosy.registry.models import register as do_register

    try:
        version = do_register(gate, _client(tracking_uri))
    except RegistryError as exc:
        _fail(str(exc))
        return
    typer.echo(
        f"registered {version.name} v{version.version} (sha256 {version.sha256[:12]}, "
        f"run {version.run_id}); alias candidate -> v{version.version}"
    )


promote_app = typer.Typer(
    help="Pin a registered model in an overlay: `--env staging` commits to main, "
    "`--env production` opens a pull request. `verify` re-checks the pins of a pull request.",
    no_args_is_help=False,
)


def _gate_body(reports: Path, version, mlflow_client) -> str:
    """The gate report of ``version``.

    ``reports/gate.md`` when it is about this run, else the copy logged with the model.
    """
    import json
    import tempfile

    local_json, local_md = reports / "gate.json", reports / "gate.md"
    if local_json.exists() and local_md.exists():
        try:
            run_id = json.loads(local_json.read_text())["model"]["run_id"]
        except (ValueError, KeyError, TypeError):
            run_id = None
        if run_id == version.run_id:
            return local_md.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_client.download_artifacts(version.run_id, "gate/gate.md", tmp)
            return Path(path).read_text()
        except Exception:
            return (
                f"Gate report not found for {version.name} v{version.version} "
                f"(run {version.run_id}).\n"
            )


@promote_app.callback(invoke_without_command=True)
def promote(
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option(help="staging (commit to main) or production (pull request)."),
    ] = None,
    version: Annotated[
        str,
        typer.Option(help="Model version number or alias to promote."),
    ] = "candidate",
    model: Annotated[
        str | None,
        typer.Option(help="Registered model name. Default: the contract's `name:`."),
    ] = None,
    contract: Contract = None,
    reports: Annotated[
        Path, typer.Option(help="Directory with gate.json/gate.md (the PR body).")
    ] = Path("reports"),
    repo_dir: RepoDir = Path("."),
    remote: Remote = "origin",
    base: Base = "main",
    tracking_uri: TrackingUri = None,
    github_repo: GitHubRepo = None,
    github_api_url: GitHubApi = None,
    mlflow_ui_url: Annotated[
        str | None,
        typer.Option(
            help="MLflow UI base URL for the ArgoCD link. Default: $ARGOSY_MLFLOW_UI_URL, else "
            "the tracking URI when it is http(s)."
        ),
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, max=20, help="Pushes to try while main keeps moving.")
    ] = 5,
) -> None:
    """Pin a gate-passed model version in an environment's overlay and publish the change.

    The overlay's model.yaml is rewritten, rendered with kubectl kustomize and validated strictly
    before anything is pushed. Staging: one commit on main, pushed with fetch-and-retry when
    main moves. Production: branch promote/<model>-v<N> and a pull request (body: the gate
    report) opened or updated through the GitHub API when GITHUB_TOKEN is set; without a token
    it stops after the branch and prints the body. Running it again for the same version makes
    no new commit and no second pull request.
    """
    if ctx.invoked_subcommand is not None:
        return
    if env is None:
        _fail("--env staging|production is required (or use `argosy promote verify`)", 2)
    if model is None:
        model = contract_or_exit(contract or repo_dir / DEFAULT_CONTRACT).name
    from argosy.gitops import git as gitops_git
    from argosy.gitops.promote import Links, PromotionError
    from argosy.gitops.promote import promote as do_promote
    from argosy.registry.models import RegistryError, get_version

    mlflow_client = _client(tracking_uri)
    try:
        repo = gitops_git.repo_root(repo_dir)
        registered = get_version(mlflow_client, model, version)
        github, repository = (
            _github(repo, remote, github_repo, github_api_url)
            if env == "production"
            else (None, github_repo or os.environ.get("GITHUB_REPOSITORY"))
        )
        if repository is None:
            url = gitops_git.git(repo, "remote", "get-url", remote, check=False)
            from argosy.gitops.github import repository_from_remote

            repository = repository_from_remote(url)
        ui = mlflow_ui_url or os.environ.get("ARGOSY_MLFLOW_UI_URL")
        if ui is None and mlflow_client.tracking_uri.startswith(("http://", "https://")):
            ui = mlflow_client.tracking_uri
        links = Links(
            mlflow_ui=ui,
            repository_url=f"https://github.com/{repository}" if repository else None,
        )
        body = _gate_body(reports, registered, mlflow_client) if env == "production" else ""
        outcome = do_promote(
            repo,
            registered,
            env,
            body=body,
            links=links,
            remote=remote,
            base=base,
            github=github,
            max_attempts=max_attempts,
        )
    except (RegistryError, PromotionError, gitops_git.GitError, ValueError) as exc:
        _fail(str(exc))
        return
    _report(outcome, registered.name, github is not None)


def _report(outcome, name: str, has_token: bool) -> None:
    if not outcome.changed:
        typer.echo(f"{outcome.env} already pins {name} v{outcome.version}: nothing to do")
        return
    if outcome.env == "staging":
        typer.echo(f"pinned {name} v{outcome.version} in staging: commit {outcome.commit}")
        return
    typer.echo(f"pushed branch {outcome.branch} ({outcome.commit})")
    if outcome.pull_request:
        typer.echo(f"pull request: {outcome.pull_request}")
    elif not has_token:
        typer.echo("GITHUB_TOKEN is not set: no pull request opened. Its body would be:\n")
        typer.echo(outcome.body or "")


@promote_app.command("verify")
def verify(
    env: Annotated[
        list[str] | None,
        typer.Option(help="Environment(s) to check; default: staging and production."),
    ] = None,
    repo_dir: RepoDir = Path("."),
    tracking_uri: TrackingUri = None,
    check_artifact: Annotated[
        bool,
        typer.Option(help="Also download model.onnx from the run and compare its sha256."),
    ] = True,
) -> None:
    """Re-verify the overlays' pins against the registry (a required check on promotion PRs).

    For each pinned model: the version exists in MLflow, its run and storage URI match, its
    sha256 matches the registry, the run and (by default) the stored model.onnx, its gate passed,
    it is not marked rolled back in that environment, and the data hash the gate saw is the one it
    was trained on.
    A hand-edited model.yaml pointing at an unvalidated model fails.
    """
    from argosy.gitops.promote import ENVIRONMENTS, model_yaml
    from argosy.registry.models import verify_pin

    mlflow_client = _client(tracking_uri)
    failures = 0
    for name in env or list(ENVIRONMENTS):
        path = repo_dir / model_yaml(name)
        try:
            pin = read_pin(path)
        except PinError as exc:
            typer.secho(f"FAIL {name}: {exc}", fg=typer.colors.RED, err=True)
            failures += 1
            continue
        if pin is None:
            typer.echo(f"ok   {name}: no model pinned")
            continue
        problems = verify_pin(pin, mlflow_client, check_artifact=check_artifact, env=name)
        for problem in problems:
            typer.secho(f"FAIL {name}: {problem}", fg=typer.colors.RED, err=True)
        failures += bool(problems)
        if not problems:
            typer.echo(f"ok   {name}: {pin.name} v{pin.version} (sha256 {pin.sha256[:12]})")
    if failures:
        raise typer.Exit(1)


def rollback(
    env: Annotated[str, typer.Option(help="Environment to roll back (production: a PR).")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Version to restore (must have been pinned here before). "
            "Default: the previous pinned version that is not marked rolled back.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Restore the --to version even though it is marked rolled back in this "
            "environment (needs --reason).",
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="Why: recorded on the version left behind (and, with --force, on the version "
            "restored, as tag argosy.rollback_forced.<env>).",
        ),
    ] = None,
    repo_dir: RepoDir = Path("."),
    remote: Remote = "origin",
    base: Base = "main",
    tracking_uri: TrackingUri = None,
    github_repo: GitHubRepo = None,
    github_api_url: GitHubApi = None,
) -> None:
    """Roll an environment back to an earlier model, through git.

    Restores the earlier model.yaml byte for byte from its git history and publishes it like a
    promotion (production: a pull request on rollback/<model>-v<from>-to-v<to>). The version
    rolled back from is tagged argosy.rolled_back.<env> in MLflow, so automation never promotes
    it to that environment again (other environments keep deploying it). A version marked rolled
    back here is restored only with --to N --force --reason "...". `argocd app rollback` is
    refused under auto-sync: the revert lives in git instead.
    """
    if force and not (reason and reason.strip()):
        _fail('--force needs --reason "..." (it is recorded on the restored version)', 2)
    if force and to is None:
        _fail("--force applies to an explicit --to version only", 2)
    from argosy.gitops import git as gitops_git
    from argosy.gitops.promote import PromotionError
    from argosy.gitops.promote import rollback as do_rollback
    from argosy.registry.models import (
        RegistryError,
        force_restore,
        get_version,
        mark_rolled_back,
    )

    mlflow_client = _client(tracking_uri)

    def rolled_back(pin) -> bool:
        try:
            return get_version(mlflow_client, pin.name, pin.version).is_rolled_back(env)
        except RegistryError:
            return False

    def mark(pin) -> None:
        why = f"rolled back in {env}" + (f": {reason.strip()}" if reason and reason.strip() else "")
        mark_rolled_back(mlflow_client, pin.name, pin.version, why, env=env)

    def restore(pin, why: str) -> None:
        force_restore(mlflow_client, pin.name, pin.version, why, env=env)

    try:
        repo = gitops_git.repo_root(repo_dir)
        github, _ = (
            _github(repo, remote, github_repo, github_api_url)
            if env == "production"
            else (None, None)
        )
        outcome = do_rollback(
            repo,
            env,
            to_version=to,
            is_rolled_back=rolled_back,
            mark_rolled_back=mark,
            force_reason=reason.strip() if force and reason else None,
            force_restore=restore,
            remote=remote,
            base=base,
            github=github,
        )
    except (PromotionError, RegistryError, gitops_git.GitError) as exc:
        _fail(str(exc))
        return
    _report(outcome, "the model", github is not None)


registry_app = typer.Typer(help="MLflow registry chores that follow git.", no_args_is_help=True)


@registry_app.command("sync")
def sync(
    repo_dir: RepoDir = Path("."),
    ref: Annotated[str, typer.Option(help="Git revision whose overlays are the truth.")] = "HEAD",
    model: Annotated[
        str | None,
        typer.Option(
            help="Registered model whose alias an overlay that pins nothing removes. "
            "Default: the contract's `name:`."
        ),
    ] = None,
    contract: Contract = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Point the MLflow aliases `staging` and `production` at what the overlays pin at REF.

    Git is the source of truth: every pin is checked against the registry first and no alias
    moves unless all of them are valid. An overlay that pins no model removes its alias (from the
    contract's model, or --model).
    """
    import tempfile

    from argosy.gitops import git as gitops_git
    from argosy.gitops.promote import ENVIRONMENTS, model_yaml
    from argosy.registry.models import RegistryError, sync_aliases

    name = model or contract_or_exit(contract or repo_dir / DEFAULT_CONTRACT).name
    pins = {}
    try:
        repo = gitops_git.repo_root(repo_dir)
        for env in ENVIRONMENTS:
            text = gitops_git.show(repo, ref, model_yaml(env))
            if text is None:
                _fail(f"{model_yaml(env)} does not exist at {ref}")
            with tempfile.TemporaryDirectory() as tmp:
                file = Path(tmp) / "model.yaml"
                file.write_text(text or "")
                pins[env] = read_pin(file)
        result = sync_aliases(pins, _client(tracking_uri), name=name)
    except (RegistryError, PinError, gitops_git.GitError) as exc:
        _fail(str(exc))
        return
    for env, version in result.items():
        typer.echo(f"{env}: " + (f"alias -> v{version}" if version else "no model, alias removed"))
