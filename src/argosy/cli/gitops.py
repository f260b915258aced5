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
SigningTrust = Annotated[
    Path | None,
    typer.Option(
        "--signing-trust",
        envvar="ARGOSY_SIGNING_TRUST",
        help="PEM public key (key mode) or CA certificate chain (certificate mode) that a "
        "model's signature bundle must verify against (or its text in "
        "$ARGOSY_SIGNING_TRUST_PEM).",
    ),
]
SigstoreIdentity = Annotated[
    str | None,
    typer.Option(help="Verify keyless Sigstore bundles: the signer identity expected."),
]
SigstoreIssuer = Annotated[
    str | None,
    typer.Option(help="Verify keyless Sigstore bundles: the identity's OIDC issuer."),
]
RequireSignature = Annotated[
    bool,
    typer.Option(
        "--require-signature/--allow-unsigned",
        help="Refuse a model without a signature bundle (the promotion check requires one).",
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


def _pem(ctx: typer.Context, path: Path | None, variable: str) -> Path | None:
    """``path``, else ``$variable``'s PEM text in a private file kept until the command ends."""
    from argosy import signing

    return ctx.with_resource(signing.pem_from_env(path, variable))


def _trust(ctx: typer.Context, path: Path | None, identity: str | None, issuer: str | None):
    from argosy import signing

    path = _pem(ctx, path, signing.SIGNING_TRUST_ENV)
    if path is None and identity is None and issuer is None:
        return None
    try:
        trust = signing.Trust(path=path, sigstore_identity=identity, sigstore_issuer=issuer)
        _ = trust.mode  # an unreadable or non-PEM file fails here, before any work
    except signing.SignatureError as exc:
        _fail(str(exc), 2)
    return trust


def register(
    ctx: typer.Context,
    gate: Annotated[
        Path, typer.Option(help="The gate report written by the pipeline's gate stage.")
    ] = Path("reports/gate.json"),
    tracking_uri: TrackingUri = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            envvar="ARGOSY_SIGNING_KEY",
            help="PEM elliptic-curve private key that signs the served directory (mounted from "
            "a Secret, or its text in $ARGOSY_SIGNING_KEY_PEM; an encrypted key's password is "
            "read from $ARGOSY_SIGNING_KEY_PASSWORD).",
        ),
    ] = None,
    signing_certificate: Annotated[
        Path | None,
        typer.Option(help="Certificate mode: the PEM signing certificate of --signing-key."),
    ] = None,
    signing_chain: Annotated[
        list[Path] | None,
        typer.Option(help="Certificate mode: intermediate certificates (repeatable)."),
    ] = None,
    sigstore: Annotated[
        bool,
        typer.Option(help="Sign keylessly with Sigstore (ambient OIDC credentials; network)."),
    ] = False,
) -> None:
    """Register the model that passed the gate in MLflow, with alias `candidate`.

    Tags the version with its sha256, the gate decision, the data hash and the git commit, and
    logs the gate report with the run. With a signing key (or --sigstore), the run's serving/
    directory, every file KServe serves, is signed in the OpenSSF model signing format and the
    bundle stored as serving/model.sig; the pin then carries its sha256. Refuses a missing gate
    report or one that rejected the model. Registering the same run again returns the existing
    version (and keeps its signature).
    """
    from argosy import signing
    from argosy.registry.models import RegistryError
    from argosy.registry.models import register as do_register

    signer = None
    signing_key = _pem(ctx, signing_key, signing.SIGNING_KEY_ENV)
    if signing_key is not None or sigstore:
        try:
            signer = signing.Signer(
                private_key=signing_key,
                certificate=signing_certificate,
                chain=tuple(signing_chain or ()),
                sigstore=sigstore,
            )
        except signing.SignatureError as exc:
            _fail(str(exc), 2)
    elif signing_certificate is not None or signing_chain:
        _fail("--signing-certificate and --signing-chain need --signing-key", 2)
    try:
        version = do_register(gate, _client(tracking_uri), signer)
    except RegistryError as exc:
        _fail(str(exc))
        return
    signed = f", signature {version.signature_sha256[:12]}" if version.signature_sha256 else ""
    typer.echo(
        f"registered {version.name} v{version.version} (sha256 {version.sha256[:12]}{signed}, "
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
    signing_trust: SigningTrust = None,
    sigstore_identity: SigstoreIdentity = None,
    sigstore_issuer: SigstoreIssuer = None,
    require_signature: RequireSignature = False,
) -> None:
    """Pin a gate-passed model version in an environment's overlay and publish the change.

    The directory the storage serves is downloaded first: model.onnx must have the registered
    sha256 and a signed model's bundle must verify over every file (a signed model needs
    --signing-trust). The overlay's model.yaml is then rewritten, rendered with kubectl
    kustomize and validated strictly before anything is pushed. Staging: one commit on main,
    pushed with fetch-and-retry when main moves. Production: branch promote/<model>-v<N> and a
    pull request (body: the gate report) opened or updated through the GitHub API when
    GITHUB_TOKEN is set; without a token it stops after the branch and prints the body. Running
    it again for the same version makes no new commit and no second pull request.
    """
    if ctx.invoked_subcommand is not None:
        return
    if env is None:
        _fail("--env staging|production is required (or use `argosy promote verify`)", 2)
    from argosy.gitops.promote import ENVIRONMENTS

    if env not in ENVIRONMENTS:
        _fail(f"--env must be {' or '.join(ENVIRONMENTS)}, not {env!r}", 2)
    if model is None:
        model = contract_or_exit(contract or repo_dir / DEFAULT_CONTRACT).name
    from argosy.gitops import git as gitops_git
    from argosy.gitops.promote import Links, PromotionError
    from argosy.gitops.promote import promote as do_promote
    from argosy.registry.models import RegistryError, check_served, get_version

    trust = _trust(ctx, signing_trust, sigstore_identity, sigstore_issuer)
    mlflow_client = _client(tracking_uri)

    def served(registered) -> list[str]:
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
            check_served=served,
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
    ctx: typer.Context,
    env: Annotated[
        list[str] | None,
        typer.Option(help="Environment(s) to check; default: staging and production."),
    ] = None,
    repo_dir: Annotated[
        Path,
        typer.Option(
            "--repo-dir",
            help="The checkout under review: its overlays are rendered, its code never runs.",
        ),
    ] = Path("."),
    base_dir: Annotated[
        Path | None,
        typer.Option(
            help="A checkout of the base branch: the serving stack a pin may deploy with "
            "(CI checks it out next to the pull request's)."
        ),
    ] = None,
    base_ref: Annotated[
        str,
        typer.Option(help="Without --base-dir: the base branch's revision in --repo-dir."),
    ] = "origin/main",
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="MLflow tracking/registry URI. Default: $MLFLOW_TRACKING_URI; required, and "
            "never a file inside --repo-dir.",
        ),
    ] = None,
    check_artifact: Annotated[
        bool,
        typer.Option(
            help="Also download the served directory: model.onnx's sha256 and the signature."
        ),
    ] = True,
    signing_trust: SigningTrust = None,
    sigstore_identity: SigstoreIdentity = None,
    sigstore_issuer: SigstoreIssuer = None,
    require_signature: RequireSignature = False,
) -> None:
    """Verify what each overlay would deploy (a required check on pull requests to main).

    Renders the overlay with kubectl kustomize and checks the rendered InferenceService, not
    model.yaml: every serving resource must render exactly as the base branch's overlay does with
    the registry's pin of that version (so an extra patch, args, env, runtime, image or
    component fails, named), no manifest may repeat a YAML key, and an empty version may not
    come with a storage URI. The pinned version must exist in MLflow with the same run, storage
    URI, sha256 and signature bundle, its gate must have passed, it must not be marked rolled back
    in that environment, and the stored directory must match (model.onnx's sha256; the signature
    over every file, verified against --signing-trust).
    """
    from argosy import tracking
    from argosy.gitops import git as gitops_git
    from argosy.gitops.deployed import check_overlay, tree_at
    from argosy.gitops.promote import ENVIRONMENTS, PromotionError
    from argosy.registry.models import get_version, verify_pin

    try:
        uri = tracking.explicit_tracking_uri(tracking_uri, repo_dir)
    except tracking.TrackingUriError as exc:
        _fail(str(exc), 2)
    trust = _trust(ctx, signing_trust, sigstore_identity, sigstore_issuer)
    mlflow_client = _client(uri)

    def lookup(name: str, version: str):
        return get_version(mlflow_client, name, version)

    def check(pin, name: str) -> list[str]:
        return verify_pin(
            pin,
            mlflow_client,
            check_artifact=check_artifact,
            env=name,
            trust=trust,
            require_signature=require_signature,
        )

    def run(base: Path) -> int:
        failures = 0
        for name in env or list(ENVIRONMENTS):
            verdict = check_overlay(repo_dir, base, name, lookup, check)
            for problem in verdict.problems:
                typer.secho(f"FAIL {name}: {problem}", fg=typer.colors.RED, err=True)
            failures += bool(verdict.problems)
            if verdict.problems:
                continue
            if verdict.pin is None:
                typer.echo(f"ok   {name}: no model pinned")
            else:
                pin = verdict.pin
                signed = f", signature {pin.signature_sha256[:12]}" if pin.signature_sha256 else ""
                typer.echo(
                    f"ok   {name}: {pin.name} v{pin.version} (sha256 {pin.sha256[:12]}{signed})"
                )
        return failures

    try:
        if base_dir is not None:
            failures = run(base_dir)
        else:
            with tree_at(gitops_git.repo_root(repo_dir), base_ref) as base:
                failures = run(base)
    except (PromotionError, gitops_git.GitError) as exc:
        _fail(str(exc))
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
    from argosy.gitops.promote import ENVIRONMENTS

    if env not in ENVIRONMENTS:
        _fail(f"--env must be {' or '.join(ENVIRONMENTS)}, not {env!r}", 2)
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
