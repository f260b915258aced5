"""Where MLflow lives, and the provenance (data hash, git commit) every run records.

Nothing here touches MLflow or the environment at import: callers ask for the URI when they need it,
and pass it through :func:`connect` before the first request so that an unreachable server fails in
seconds with one clear message instead of minutes of urllib3 retries.
"""

from __future__ import annotations

import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import MutableMapping
from pathlib import Path

import yaml

from argosy import proc

DEFAULT_DB = "mlflow.db"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""MLflow 3's experiment type for classic model training (its UI's "Machine learning")."""
DEFAULT_ARTIFACTS = "mlartifacts"
PROBE_TIMEOUT_S = 5.0
"""How long :func:`connect` waits for the tracking server to answer at all."""
HTTP_DEFAULTS = {
    # MLflow's own defaults (7 retries with backoff 2, 120 s timeout) wait about 4 minutes on a
    # dead server; a command should say so in seconds. Set either variable to keep your own.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class TrackingServerError(ConnectionError):
    """The MLflow tracking server does not answer; the message names the URI and what to check."""


class TrackingUriError(ValueError):
    """No usable explicit tracking URI: the message says what to set."""


def explicit_tracking_uri(uri: str | None, checkout: Path) -> str:
    """The tracking URI a check must be given explicitly: never a file inside ``checkout``.

    ``argosy promote verify`` judges the checkout it reads, so a registry that the checkout
    itself carries (a committed ``mlflow.db``, a ``file:`` store in it) would vouch for anything.
    Unlike :func:`tracking_uri`, there is no fallback: an empty ``MLFLOW_TRACKING_URI`` (a secret
    that is not set, as for a pull request from a fork) fails.

    Args:
        uri: ``--tracking-uri``; None reads ``MLFLOW_TRACKING_URI``.
        checkout: The checkout under review.

    Returns:
        The URI.

    Raises:
        TrackingUriError: No URI, or one naming a file inside ``checkout``.
    """
    chosen = (uri if uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")).strip()
    if not chosen:
        raise TrackingUriError(
            "no tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI (in CI, the "
            "MLFLOW_TRACKING_URI secret; it is empty for pull requests from forks). This check "
            f"never falls back to {DEFAULT_DB} in the checkout."
        )
    parts = urllib.parse.urlsplit(chosen)
    if parts.scheme in ("", "file", "sqlite"):
        local = parts.path if parts.scheme else chosen
        if parts.scheme == "sqlite":
            local = chosen.removeprefix("sqlite:///")
            local = local if local.startswith("/") else str(Path.cwd() / local)
        path = Path(urllib.parse.unquote(local)).resolve()
        if path.is_relative_to(checkout.resolve()):
            raise TrackingUriError(
                f"the tracking URI {chosen} is a file inside the checkout under review "
                f"({checkout}); point it at the team's tracking server"
            )
    return chosen


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else an SQLite store in the repository root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{((root or Path.cwd()) / DEFAULT_DB).resolve()}"


def connect(
    uri: str,
    timeout_s: float = PROBE_TIMEOUT_S,
    environ: MutableMapping[str, str] | None = None,
) -> str:
    """Make sure the tracking server at ``uri`` answers before any MLflow call is made.

    For ``http(s)://`` URIs, MLflow's request retries and timeout are lowered (see
    :data:`HTTP_DEFAULTS`) unless the variables are already set, and ``GET <uri>/health`` must get
    an HTTP answer within ``timeout_s``: any status, even 401 or 404, proves a server is there, and
    so does a TLS error (MLflow may trust a CA bundle that urllib does not). Other URIs (SQLite,
    file stores, Databricks) are returned as they are.

    Args:
        uri: The tracking URI, e.g. from :func:`tracking_uri`.
        timeout_s: Seconds to wait for the connection and the answer.
        environ: Environment to read and update (default: ``os.environ``, which MLflow reads).

    Returns:
        ``uri``, unchanged.

    Raises:
        TrackingServerError: Nothing answered at ``uri`` within ``timeout_s``.
    """
    if not uri.startswith(("http://", "https://")):
        return uri
    env = os.environ if environ is None else environ
    for name, value in HTTP_DEFAULTS.items():
        env.setdefault(name, value)
    parts = urllib.parse.urlsplit(uri)
    # Credentials never go into the probe or the message.
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    try:
        with urllib.request.urlopen(shown.rstrip("/") + "/health", timeout=timeout_s):  # noqa: S310 - http(s) only, checked above  # nosec B310
            pass
    except urllib.error.HTTPError:
        pass  # an HTTP status, whatever it is, means a server answered
    except urllib.error.URLError as exc:
        if not isinstance(exc.reason, ssl.SSLError):
            raise _unreachable(shown, exc.reason, timeout_s) from exc
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URIs
        raise _unreachable(shown, exc, timeout_s) from exc
    return uri


def _unreachable(uri: str, reason: object, timeout_s: float) -> TrackingServerError:
    if isinstance(reason, TimeoutError):
        reason = f"no answer within {timeout_s:g} s"
    return TrackingServerError(
        f"cannot reach the MLflow tracking server at {uri} ({reason}). Check that the server is "
        "running and reachable from here, and that MLFLOW_TRACKING_URI (or --tracking-uri) "
        "points at it; unset MLFLOW_TRACKING_URI to use the local SQLite store instead."
    )


def artifact_location(root: Path | None = None) -> str | None:
    """Local artifact root for the embedded store; None lets a tracking server choose."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return ((root or Path.cwd()) / DEFAULT_ARTIFACTS).resolve().as_uri()


def ensure_experiment(name: str, root: Path | None = None) -> str:
    """Return the id of experiment ``name``, creating it (with a local artifact root) if needed.

    The experiment is marked a model-training one (``mlflow.experimentKind``), so MLflow's UI
    opens it on runs and models rather than on the GenAI traces view; a kind someone set by hand
    is kept.
    """
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(
            name,
            artifact_location=artifact_location(root),
            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
        )
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def data_hash(root: Path | None = None) -> str:
    """The DVC hash that ``data.dvc`` pins for ``data/`` ("untracked" without a pointer file)."""
    pointer = (root or Path.cwd()) / "data.dvc"
    if not pointer.exists():
        return "untracked"
    outs = (yaml.safe_load(pointer.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "untracked"))


def git_commit(root: Path | None = None) -> tuple[str, bool]:
    """The HEAD commit and whether the tree differs from it ("unknown", False outside git)."""
    cwd = root or Path.cwd()
    try:
        head = proc.git(cwd, "rev-parse", "HEAD").strip()
        dirty = proc.git(cwd, "status", "--porcelain", "--untracked-files=no").strip()
    except proc.CommandError:
        return "unknown", False
    return head, bool(dirty)


def training_run(uri: str, sha256: str) -> str | None:
    """The MLflow run that trained the model whose ``model.onnx`` has ``sha256``, or None.

    When equal inputs trained the same bytes twice, the newest run.
    The model directory holds no run id (its bytes depend only on data, params and code), so a
    model is found by its hash, which training tags on its run.
    """
    from mlflow import MlflowClient

    from argosy.modeldir import TAG_SHA256

    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return None
    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(
        ids,
        filter_string=f"tags.`{TAG_SHA256}` = '{sha256}'",
        order_by=["start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
