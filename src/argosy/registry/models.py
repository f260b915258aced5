"""Model versions in the MLflow registry: registration of gate-passed models, checks, aliases.

The registry follows git, never the reverse: versions are registered here with their provenance
(sha256, gate decision, data hash, git commit) and the gate report itself, but which version is
``staging`` or ``production`` is decided by the overlays and copied here by :func:`sync_aliases`.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argosy import gatereport, signing
from argosy.gatereport import GateReport
from argosy.hashing import file_sha256
from argosy.modeldir import (
    MODEL_FILE,
    SERVING_ARTIFACT_DIR,
    TAG_DATA_HASH,
    TAG_GIT_COMMIT,
    TAG_SHA256,
)

if TYPE_CHECKING:  # pragma: no cover - typing only; mlflow is imported lazily (heavy)
    from mlflow import MlflowClient

    from argosy.pin import ModelPin

TAG_GATE = "argosy.gate_decision"
TAG_STORAGE_URI = "argosy.storage_uri"
TAG_SIGNATURE = "argosy.signature_sha256"
"""sha256 of the signature bundle ``serving/model.sig`` that ``argosy register`` wrote."""
TAG_ROLLED_BACK = "argosy.rolled_back"
"""Prefix of the per-environment mark, ``argosy.rolled_back.<env>``; the bare tag (written before
marks were per environment) still counts as rolled back in every environment."""
TAG_ROLLBACK_FORCED = "argosy.rollback_forced"
"""``argosy.rollback_forced.<env>``: why a version marked rolled back there was restored anyway."""
METRIC_TAG_PREFIX = "argosy.metric."
CANDIDATE = "candidate"
ENV_ALIASES = ("staging", "production")


class RegistryError(RuntimeError):
    """A registry operation was refused or failed; the message says why and what to do."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version with the provenance Argosy records on it."""

    name: str
    version: str
    run_id: str
    sha256: str
    data_hash: str
    git_commit: str
    gate_decision: str
    storage_uri: str
    signature_sha256: str = ""
    rolled_back_in: frozenset[str] = frozenset()
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def rolled_back(self) -> bool:
        """Whether the version is marked rolled back in any environment."""
        return bool(self.rolled_back_in)

    def is_rolled_back(self, env: str | None = None) -> bool:
        """Whether the version is marked rolled back in ``env`` (None: in any environment)."""
        return self.rolled_back if env is None else env in self.rolled_back_in


def client(tracking_uri: str | None = None) -> MlflowClient:
    """An MLflow client for ``tracking_uri`` (default: Argosy's, see :mod:`argosy.tracking`)."""
    from mlflow import MlflowClient

    from argosy import tracking

    try:
        uri = tracking.connect(tracking_uri or tracking.tracking_uri())
    except tracking.TrackingServerError as exc:
        raise RegistryError(str(exc)) from exc
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _true(value: str | None) -> bool:
    return (value or "").lower() == "true"


def _rolled_back_in(tags: dict[str, str]) -> frozenset[str]:
    if _true(tags.get(TAG_ROLLED_BACK)):
        return frozenset(ENV_ALIASES)  # a mark from before marks were per environment
    return frozenset(env for env in ENV_ALIASES if _true(tags.get(f"{TAG_ROLLED_BACK}.{env}")))


def _version(mlflow_version: Any, storage_default: str = "") -> RegisteredVersion:
    tags = dict(mlflow_version.tags or {})
    metrics = {
        k.removeprefix(METRIC_TAG_PREFIX): float(v)
        for k, v in tags.items()
        if k.startswith(METRIC_TAG_PREFIX)
    }
    return RegisteredVersion(
        name=mlflow_version.name,
        version=str(mlflow_version.version),
        run_id=mlflow_version.run_id or "",
        sha256=tags.get(TAG_SHA256, ""),
        data_hash=tags.get(TAG_DATA_HASH, ""),
        git_commit=tags.get(TAG_GIT_COMMIT, ""),
        gate_decision=tags.get(TAG_GATE, ""),
        storage_uri=tags.get(TAG_STORAGE_URI, storage_default),
        signature_sha256=tags.get(TAG_SIGNATURE, ""),
        rolled_back_in=_rolled_back_in(tags),
        metrics=metrics,
    )


def register(
    gate_path: Path, mlflow_client: MlflowClient, signer: signing.Signer | None = None
) -> RegisteredVersion:
    """Register the model a passed gate report names, with provenance tags and alias ``candidate``.

    Registering the same run twice returns the existing version (no duplicate). The gate report
    (``gate.json`` and ``gate.md`` when present) is logged to the run under ``gate/`` so that
    ``argosy promote verify`` can later re-check it from the registry alone. With a ``signer``,
    the run's ``serving/`` directory (every file KServe serves) is downloaded, checked against the
    gate's sha256, signed, and the bundle logged as ``serving/model.sig``; its sha256 is tagged.
    A version signed before keeps its bundle (a pin may already name it).

    Args:
        gate_path: ``reports/gate.json``.
        mlflow_client: Client of the tracking server and registry.
        signer: How to sign the served directory (None: unsigned).

    Returns:
        The registered version.

    Raises:
        GateReportError: The gate report is missing, malformed or rejected the model.
        RegistryError: The run does not match the gate report, lacks the serving artifacts, or
            signing failed (nothing is registered then).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    gate = gatereport.read(gate_path)
    gate.require_promote(str(gate_path))
    name, run_id, sha = gate.model.name, gate.model.run_id, gate.model.sha256
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException as exc:
        raise RegistryError(f"run {run_id} named by {gate_path} is not in MLflow: {exc}") from exc
    run_tags = run.data.tags
    if run_tags.get(TAG_SHA256) != sha:
        raise RegistryError(
            f"run {run_id} logged sha256 {run_tags.get(TAG_SHA256)!r}, the gate saw {sha!r}; "
            "the gate report does not describe this run's model"
        )
    data_hash = gate.data_hash or run_tags.get(TAG_DATA_HASH, "")
    if run_tags.get(TAG_DATA_HASH, data_hash) != data_hash:
        raise RegistryError(
            f"run {run_id} trained on data {run_tags.get(TAG_DATA_HASH)!r}, "
            f"the gate evaluated data {data_hash!r}"
        )
    served = {a.path for a in mlflow_client.list_artifacts(run_id, SERVING_ARTIFACT_DIR)}
    if f"{SERVING_ARTIFACT_DIR}/{MODEL_FILE}" not in served:
        raise RegistryError(f"run {run_id} has no {SERVING_ARTIFACT_DIR}/{MODEL_FILE} artifact")
    storage_uri = f"{run.info.artifact_uri.rstrip('/')}/{SERVING_ARTIFACT_DIR}"
    existing = [
        v
        for v in mlflow_client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
        if (v.tags or {}).get(TAG_SHA256) == sha
    ]
    signed = [(v.tags or {}).get(TAG_SIGNATURE, "") for v in existing]
    signature = next((s for s in signed if s), "")
    if signer is not None and not signature:
        signature = _sign_served(mlflow_client, run_id, sha, signer)

    for path in (gate_path, gate_path.with_suffix(".md")):
        if path.exists():
            mlflow_client.log_artifact(run_id, str(path), gatereport.ARTIFACT_DIR)

    tags = {
        TAG_SHA256: sha,
        TAG_GATE: gate.decision,
        TAG_DATA_HASH: data_hash,
        TAG_GIT_COMMIT: gate.git_commit or run_tags.get(TAG_GIT_COMMIT, ""),
        TAG_STORAGE_URI: storage_uri,
        **({TAG_SIGNATURE: signature} if signature else {}),
        **{
            METRIC_TAG_PREFIX + k: str(v)
            for k, v in gate.challenger.items()
            if isinstance(v, int | float)
        },
    }
    if existing:
        version = max(existing, key=lambda v: int(v.version))
    else:
        try:
            mlflow_client.get_registered_model(name)
        except MlflowException:
            mlflow_client.create_registered_model(name)
        from mlflow.store.artifact.utils.models import _parse_model_id_if_present

        # MLflow 3 logged models ("models:/m-...") must be registered with their model id, and
        # MLflow resolves that URI through the process-wide tracking URI, not the client's: point
        # it at this client's server while it does (a caller may hold clients of several).
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(mlflow_client.tracking_uri)
        try:
            version = mlflow_client.create_model_version(
                name,
                source=gate.model.uri,
                run_id=run_id,
                tags=tags,
                model_id=_parse_model_id_if_present(gate.model.uri),
            )
        finally:
            mlflow.set_tracking_uri(previous)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version.version), key, value)
    mlflow_client.update_model_version(
        name, str(version.version), description=gatereport.description(gate)
    )
    mlflow_client.set_registered_model_alias(name, CANDIDATE, str(version.version))
    return get_version(mlflow_client, name, str(version.version))


def _sign_served(mlflow_client: MlflowClient, run_id: str, sha: str, signer: signing.Signer) -> str:
    """Sign the run's served directory as stored; log the bundle with it; return its sha256."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        served = download_served(mlflow_client, run_id, Path(tmp))
        actual = file_sha256(served / MODEL_FILE)
        if actual != sha:
            raise RegistryError(
                f"run {run_id}: the stored serving/model.onnx has sha256 {actual}, the gate saw "
                f"{sha}; refusing to sign it"
            )
        (served / signing.SIGNATURE_FILE).unlink(missing_ok=True)  # an unregistered old bundle
        try:
            digest = signing.sign(served, signer)
        except signing.SignatureError as exc:
            raise RegistryError(f"{exc}; nothing was registered") from exc
        try:
            mlflow_client.log_artifact(
                run_id, str(served / signing.SIGNATURE_FILE), SERVING_ARTIFACT_DIR
            )
        except (MlflowException, OSError) as exc:
            raise RegistryError(f"cannot store the signature with run {run_id}: {exc}") from exc
    return digest


def download_served(mlflow_client: MlflowClient, run_id: str, dest: Path) -> Path:
    """Download the run's served directory (``serving/``, what KServe fetches) into ``dest``.

    Raises:
        RegistryError: The run has no such directory or it cannot be read.
    """
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow_client.download_artifacts(run_id, SERVING_ARTIFACT_DIR, str(dest)))
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot read {SERVING_ARTIFACT_DIR}/ of run {run_id}: {exc}") from exc
    if not (local / MODEL_FILE).is_file():
        raise RegistryError(f"run {run_id} has no {SERVING_ARTIFACT_DIR}/{MODEL_FILE} artifact")
    return local


def check_served(
    mlflow_client: MlflowClient,
    run_id: str,
    label: str,
    sha256: str,
    signature_sha256: str,
    trust: signing.Trust | None,
) -> list[str]:
    """Download what the storage serves and check it: model.onnx's sha256 and the signature.

    Args:
        mlflow_client: Client of the tracking server.
        run_id: The run whose ``serving/`` directory is the storage URI.
        label: ``<model> v<N>``, for messages.
        sha256: The pinned sha256 of ``model.onnx``.
        signature_sha256: The pinned sha256 of the bundle ("" when unsigned).
        trust: What the bundle must verify against (None: none configured).

    Returns:
        Problems found; empty when the stored directory is the pinned, signed one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            served = download_served(mlflow_client, run_id, Path(tmp))
        except RegistryError as exc:
            return [f"{label}: {exc}"]
        problems = []
        actual = file_sha256(served / MODEL_FILE)
        if actual != sha256:
            problems.append(f"{label}: the stored model.onnx has sha256 {actual}")
        if signature_sha256 and trust is None:
            problems.append(
                f"{label}: its signature cannot be checked: no signing trust given "
                "(--signing-trust / ARGOSY_SIGNING_TRUST: the public key or CA chain)"
            )
        elif signature_sha256 and trust is not None:
            try:
                signing.verify(served, trust, signature_sha256)
            except signing.SignatureError as exc:
                problems.append(f"{label}: {exc}")
    return problems


def get_version(mlflow_client: MlflowClient, name: str, version_or_alias: str) -> RegisteredVersion:
    """Look a version up by number or alias.

    Raises:
        RegistryError: No such version or alias.
    """
    from mlflow.exceptions import MlflowException

    try:
        if version_or_alias.isdigit():
            found = mlflow_client.get_model_version(name, version_or_alias)
        else:
            found = mlflow_client.get_model_version_by_alias(name, version_or_alias)
    except MlflowException as exc:
        raise RegistryError(
            f"{name} {version_or_alias!r} is not in the MLflow registry "
            f"({exc.error_code}); register it with `argosy register` first"
        ) from exc
    return _version(found)


def read_gate_artifact(mlflow_client: MlflowClient, run_id: str) -> GateReport | None:
    """The gate report logged on a run at registration, or None when there is none.

    Raises:
        GateReportError: The logged file is not a gate report.
    """
    from mlflow.exceptions import MlflowException

    where = f"{gatereport.ARTIFACT_DIR}/{gatereport.GATE_JSON}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow_client.download_artifacts(run_id, where, tmp)
        except (MlflowException, OSError):
            return None
        return gatereport.parse(Path(local).read_text(), f"run {run_id} {where}")


def download_version(pin: ModelPin, dest: Path) -> tuple[Path, str]:
    """Download the served directory of the version ``pin`` names into ``dest``.

    The caller checks the files against the pin (see :class:`argosy.modeldir`); this only finds
    and fetches them.

    Returns:
        The local directory and the MLflow run that trained the version.

    Raises:
        RegistryError: The registry is unreachable or does not hold the pinned version.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        version = mlflow_client.get_model_version(pin.name, pin.version)
    except MlflowException as exc:
        raise RegistryError(
            f"the MLflow registry at {mlflow_client.tracking_uri} has no {pin.name} "
            f"v{pin.version}: {exc.message}"
        ) from exc
    except OSError as exc:
        raise RegistryError(
            f"cannot reach the MLflow registry at {mlflow_client.tracking_uri}: {exc}"
        ) from exc
    return download_served(mlflow_client, version.run_id, dest), str(version.run_id)


def verify_pin(
    pin: ModelPin,
    mlflow_client: MlflowClient,
    check_artifact: bool = True,
    *,
    env: str | None = None,
    trust: signing.Trust | None = None,
    require_signature: bool = False,
) -> list[str]:
    """Re-check a pin against the registry and the gate report logged with the model.

    Args:
        pin: What an overlay pins.
        mlflow_client: Client of the registry.
        check_artifact: Also download the served directory from the pinned storage: hash
            ``model.onnx`` and verify the signature over every file.
        env: The environment whose overlay holds the pin: a version marked rolled back there
            fails (a mark of another environment does not). None: a mark anywhere fails.
        trust: What a signature must verify against; a signed pin without one fails.
        require_signature: Fail an unsigned pin.

    Returns:
        Problems found; empty when the registry and the gate back the pin.
    """
    from mlflow.exceptions import MlflowException

    label = f"{pin.name} v{pin.version}"
    try:
        version = get_version(mlflow_client, pin.name, pin.version)
    except RegistryError as exc:
        return [str(exc)]
    problems = []
    if version.run_id != pin.run_id:
        problems.append(f"{label}: pinned run {pin.run_id}, registry has run {version.run_id}")
    if version.sha256 != pin.sha256:
        problems.append(f"{label}: pinned sha256 {pin.sha256}, registry has {version.sha256!r}")
    if version.signature_sha256 != pin.signature_sha256:
        problems.append(
            f"{label}: pinned signature bundle {pin.signature_sha256 or '(none)'}, registry has "
            f"{version.signature_sha256 or '(none)'}"
        )
    if require_signature and not pin.signature_sha256:
        problems.append(
            f"{label}: unsigned; this check requires a signed model (`argosy register "
            "--signing-key ...`)"
        )
    if version.gate_decision != "promote":
        problems.append(f"{label}: gate decision is {version.gate_decision!r}, not 'promote'")
    if version.is_rolled_back(env):
        where = f"in {env}" if env else f"in {', '.join(sorted(version.rolled_back_in))}"
        problems.append(
            f"{label}: marked rolled back {where}; it must not be deployed there again "
            "(`argosy rollback --to N --force --reason ...` restores it deliberately)"
        )
    if version.storage_uri != pin.storage_uri:
        problems.append(
            f"{label}: pinned storage {pin.storage_uri}, registry has {version.storage_uri!r}"
        )
    try:
        run = mlflow_client.get_run(version.run_id)
    except MlflowException as exc:
        return [*problems, f"{label}: run {version.run_id} is not in MLflow ({exc.error_code})"]
    if run.data.tags.get(TAG_SHA256) != pin.sha256:
        problems.append(f"{label}: the run logged sha256 {run.data.tags.get(TAG_SHA256)!r}")
    try:
        gate = read_gate_artifact(mlflow_client, version.run_id)
    except gatereport.GateReportError as exc:
        problems.append(f"{label}: {exc}")
    else:
        problems += _gate_problems(gate, pin, version, run.data.tags, label)
    if check_artifact:
        problems += check_served(
            mlflow_client, version.run_id, label, pin.sha256, pin.signature_sha256, trust
        )
    return problems


def _gate_problems(
    gate: GateReport | None,
    pin: ModelPin,
    version: RegisteredVersion,
    run_tags: dict[str, str],
    label: str,
) -> list[str]:
    """What the gate report logged with a version says against promoting ``pin``."""
    if gate is None:
        return [f"{label}: no gate report logged with the model (not registered by argosy)"]
    problems = []
    if not gate.promoted:
        problems.append(f"{label}: its gate report says {gate.decision!r}")
    if gate.model.sha256 != pin.sha256:
        problems.append(f"{label}: its gate report evaluated a different model")
    seen = gate.data_hash
    if seen != version.data_hash or seen != run_tags.get(TAG_DATA_HASH, seen):
        problems.append(
            f"{label}: gate saw data {seen!r}, registry has {version.data_hash!r}, "
            f"run has {run_tags.get(TAG_DATA_HASH)!r}"
        )
    return problems


def sync_aliases(
    pins: dict[str, ModelPin | None], mlflow_client: MlflowClient, *, name: str
) -> dict[str, str | None]:
    """Point each environment's alias at the version its overlay pins (git is the truth).

    Every pin is checked to exist (with the pinned sha256) and not to be marked rolled back in its
    environment before any alias moves, so a bad pin changes nothing. An environment that pins no
    model loses its alias.

    Args:
        pins: Environment -> its overlay's pin (None: no model pinned).
        mlflow_client: Client of the registry.
        name: Registered model whose alias an environment without a pin loses (the contract's
            name); a pin names its own model.

    Returns:
        Environment -> version now aliased (None where the alias was removed).

    Raises:
        RegistryError: A pinned version is missing, does not match its pin, or is marked rolled
            back in the environment that pins it.
    """
    from mlflow.exceptions import MlflowException

    for env, pin in pins.items():
        if pin is None:
            continue
        version = get_version(mlflow_client, pin.name, pin.version)
        if version.sha256 != pin.sha256:
            raise RegistryError(
                f"{env} pins {pin.name} v{pin.version} with sha256 {pin.sha256}, "
                f"registry has {version.sha256!r}; no alias changed"
            )
        if version.signature_sha256 != pin.signature_sha256:
            raise RegistryError(
                f"{env} pins {pin.name} v{pin.version} with signature bundle "
                f"{pin.signature_sha256 or '(none)'}, registry has "
                f"{version.signature_sha256 or '(none)'}; no alias changed"
            )
        if version.is_rolled_back(env):
            raise RegistryError(
                f"{env} pins {pin.name} v{pin.version}, which is marked rolled back in {env}; "
                "no alias changed (restore it deliberately with `argosy rollback --to "
                f"{pin.version} --force --reason ...`, or roll {env} forward)"
            )
    result: dict[str, str | None] = {}
    for env, pin in pins.items():
        if pin is None:
            # No alias (or no registered model yet) means there is nothing to remove.
            with contextlib.suppress(MlflowException):
                mlflow_client.delete_registered_model_alias(name, env)
            result[env] = None
        else:
            mlflow_client.set_registered_model_alias(pin.name, env, pin.version)
            result[env] = pin.version
    return result


def mark_rolled_back(
    mlflow_client: MlflowClient, name: str, version: str, reason: str, *, env: str
) -> None:
    """Tag a version rolled back in ``env`` so promotion there refuses it.

    Other environments are unaffected: a staging rollback does not fail production's verify.
    ``candidate`` is dropped if it points here, so automation does not pick it up again.
    """
    from mlflow.exceptions import MlflowException

    _check_env(env)
    mlflow_client.set_model_version_tag(name, version, f"{TAG_ROLLED_BACK}.{env}", "true")
    mlflow_client.set_model_version_tag(name, version, f"{TAG_ROLLED_BACK}.{env}.reason", reason)
    try:
        current = mlflow_client.get_model_version_by_alias(name, CANDIDATE)
    except MlflowException:
        return
    if str(current.version) == version:
        mlflow_client.delete_registered_model_alias(name, CANDIDATE)


def force_restore(
    mlflow_client: MlflowClient, name: str, version: str, reason: str, *, env: str
) -> None:
    """Lift ``env``'s rolled-back mark of a version restored on purpose; record why.

    The reason is kept as tag ``argosy.rollback_forced.<env>`` (with the mark's own reason, if
    any). A mark from before marks were per environment is split first, so the other
    environments keep theirs.

    Raises:
        RegistryError: The reason is empty.
    """
    _check_env(env)
    if not reason.strip():
        raise RegistryError("a forced restore needs a reason; it is recorded on the version")
    tags = dict(mlflow_client.get_model_version(name, version).tags or {})
    if _true(tags.get(TAG_ROLLED_BACK)):
        for other in ENV_ALIASES:
            mlflow_client.set_model_version_tag(name, version, f"{TAG_ROLLED_BACK}.{other}", "true")
        mlflow_client.delete_model_version_tag(name, version, TAG_ROLLED_BACK)
    was = tags.get(f"{TAG_ROLLED_BACK}.{env}.reason") or tags.get(f"{TAG_ROLLED_BACK}_reason")
    record = f"{reason.strip()} (it had been rolled back: {was})" if was else reason.strip()
    mlflow_client.set_model_version_tag(name, version, f"{TAG_ROLLBACK_FORCED}.{env}", record)
    mlflow_client.set_model_version_tag(name, version, f"{TAG_ROLLED_BACK}.{env}", "false")
    if f"{TAG_ROLLED_BACK}.{env}.reason" in tags:
        mlflow_client.delete_model_version_tag(name, version, f"{TAG_ROLLED_BACK}.{env}.reason")


def _check_env(env: str) -> None:
    if env not in ENV_ALIASES:
        raise RegistryError(f"unknown environment {env!r}; expected one of {ENV_ALIASES}")
