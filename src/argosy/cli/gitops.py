"""Command line of registration, promotion, verification, rollback and registry sync.

Registered on the ``argosy`` app by :mod:`argosy.cli`: ``argosy register``, ``argosy promote``
(``--env staging|production``, ``verify``), ``argosy rollback`` and ``argosy registry sync``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from argosy import proc
from argosy.cli.common import DEFAULT_CONTRACT, contract_or_exit, fail
from argosy.pin import PinError

ROOT_HELP = "Repository checkout to work from (its working tree is never modified)."


def _client(tracking_uri: str | None):
    from argosy.registry.models import RegistryError, client

    try:
        return client(tracking_uri)
    except RegistryError as exc:  # an unreachable tracking server: one line, no traceback
        fail(str(exc))


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
        fail(str(exc), 2)
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
    from argosy.gatereport import GateReportError
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
            fail(str(exc), 2)
    elif signing_certificate is not None or signing_chain:
        fail("--signing-certificate and --signing-chain need --signing-key", 2)
    try:
        version = do_register(gate, _client(tracking_uri), signer)
    except (RegistryError, GateReportError) as exc:
        fail(str(exc))
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
        fail("--env staging|production is required (or use `argosy promote verify`)", 2)
    from argosy.pin import ENVIRONMENTS

    if env not in ENVIRONMENTS:
        fail(f"--env must be {' or '.join(ENVIRONMENTS)}, not {env!r}", 2)
    if model is None:
        model = contract_or_exit(contract or repo_dir / DEFAULT_CONTRACT).name
    from argosy.gitops.github import GitHubError
    from argosy.gitops.promote import PromotionError
    from argosy.loop import promotion
    from argosy.registry.models import RegistryError

    trust = _trust(ctx, signing_trust, sigstore_identity, sigstore_issuer)
    try:
        registered, outcome, has_token = promotion.promote(
            _client(tracking_uri),
            repo_dir,
            env,
            model,
            version,
            reports=reports,
            remote=remote,
            base=base,
            github=promotion.GitHubTarget(github_repo, github_api_url),
            mlflow_ui_url=mlflow_ui_url,
            max_attempts=max_attempts,
            trust=trust,
            require_signature=require_signature,
        )
    except (RegistryError, PromotionError, GitHubError, proc.GitError, ValueError) as exc:
        fail(str(exc))
    _report(outcome, registered.name, has_token)


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
    from argosy.gitops.deployed import tree_at
    from argosy.gitops.promote import PromotionError
    from argosy.loop import promotion
    from argosy.pin import ENVIRONMENTS

    try:
        uri = tracking.explicit_tracking_uri(tracking_uri, repo_dir)
    except tracking.TrackingUriError as exc:
        fail(str(exc), 2)
    trust = _trust(ctx, signing_trust, sigstore_identity, sigstore_issuer)
    mlflow_client = _client(uri)

    def run(base: Path) -> list:
        return promotion.verify(
            mlflow_client,
            repo_dir,
            base,
            env or ENVIRONMENTS,
            check_artifact=check_artifact,
            trust=trust,
            require_signature=require_signature,
        )

    try:
        if base_dir is not None:
            verdicts = run(base_dir)
        else:
            with tree_at(proc.repo_root(repo_dir), base_ref) as base:
                verdicts = run(base)
    except (PromotionError, proc.GitError) as exc:
        fail(str(exc))
    for verdict in verdicts:
        for problem in verdict.problems:
            typer.secho(f"FAIL {verdict.env}: {problem}", fg=typer.colors.RED, err=True)
        pin = verdict.pin
        if verdict.problems:
            continue
        if pin is None:
            typer.echo(f"ok   {verdict.env}: no model pinned")
        else:
            signed = f", signature {pin.signature_sha256[:12]}" if pin.signature_sha256 else ""
            typer.echo(
                f"ok   {verdict.env}: {pin.name} v{pin.version} (sha256 {pin.sha256[:12]}{signed})"
            )
    if any(v.problems for v in verdicts):
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
    from argosy.pin import ENVIRONMENTS

    if env not in ENVIRONMENTS:
        fail(f"--env must be {' or '.join(ENVIRONMENTS)}, not {env!r}", 2)
    if force and not (reason and reason.strip()):
        fail('--force needs --reason "..." (it is recorded on the restored version)', 2)
    if force and to is None:
        fail("--force applies to an explicit --to version only", 2)
    from argosy.gitops.github import GitHubError
    from argosy.gitops.promote import PromotionError
    from argosy.loop import promotion
    from argosy.registry.models import RegistryError

    try:
        outcome, has_token = promotion.rollback(
            _client(tracking_uri),
            repo_dir,
            env,
            to=to,
            reason=reason,
            force=force,
            remote=remote,
            base=base,
            github=promotion.GitHubTarget(github_repo, github_api_url),
        )
    except (PromotionError, RegistryError, GitHubError, proc.GitError) as exc:
        fail(str(exc))
    _report(outcome, "the model", has_token)


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
    from argosy.loop.promotion import sync_registry
    from argosy.registry.models import RegistryError

    name = model or contract_or_exit(contract or repo_dir / DEFAULT_CONTRACT).name
    try:
        result = sync_registry(_client(tracking_uri), repo_dir, ref, name)
    except (RegistryError, PinError, proc.GitError) as exc:
        fail(str(exc))
    for env, version in result.items():
        typer.echo(f"{env}: " + (f"alias -> v{version}" if version else "no model, alias removed"))
