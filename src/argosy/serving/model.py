"""Load the served model directory and turn validated feature matrices into predictions.

The directory is the train stage's contract, :mod:`argosy.modeldir`: the server checks and encodes
values with the feature specs training used, without reading the data contract.
Loading never raises for a model that fails its integrity check: the caller gets a ``LoadedModel``
whose ``ready`` is False and whose ``reason`` says why, so the server can stay up, answer health
probes and tell the operator what is wrong instead of crash-looping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from argosy import signing
from argosy.data.encoding import FeatureSpec
from argosy.hashing import file_sha256
from argosy.modeldir import (
    MODEL_FILE,
    PROBABILITY_OUTPUT_INDEX,
    Metadata,
    ModelDirError,
    open_session,
    positive_scores,
    read_metadata,
)

log = logging.getLogger(__name__)


MAX_MESSAGE_CHARS = 1000
"""The longest error message returned: one quoting a client's input (a 100 KB input name) must
stay a readable answer, and fit gRPC's 16 KB limit on a status's metadata."""


class RequestError(Exception):
    """A request the model cannot answer; carries the HTTP status (4xx) to return.

    Attributes:
        status: HTTP status code for the response.
        message: Human-readable reason, returned as the V2 ``error`` field (or the gRPC status's
            details), cut to ``MAX_MESSAGE_CHARS``.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[:MAX_MESSAGE_CHARS]}... ({len(message)} characters)"
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class LoadedModel:
    """A model directory after the integrity check, ready or not.

    Attributes:
        metadata: Parsed metadata.
        version: The version served (pinned value, else metadata's), "" when unknown.
        sha256: sha256 actually computed from ``model.onnx``.
        expected_sha256: The pinned value it was compared with.
        ready: True only when the hashes match and the ONNX session was created.
        reason: Why the model is not ready ("" when ready).
    """

    metadata: Metadata
    version: str
    sha256: str
    expected_sha256: str
    ready: bool
    reason: str = ""
    session: Any = field(default=None, repr=False)
    feature_index: dict[str, int] = field(default_factory=dict, repr=False)
    _nan_forbidden: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    # Code features (categorical and boolean): column, number of valid codes, nullable.
    _code_idx: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _code_size: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _code_nan_ok: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _code_rules: list[tuple[float, bool, int]] = field(default_factory=list, repr=False)
    _code_top: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _codes_quick: bool = field(default=False, repr=False)  # every code feature has a code

    def __post_init__(self) -> None:
        specs = self.metadata.specs
        self.feature_index = {name: i for i, name in enumerate(self.metadata.features)}
        self._nan_forbidden = np.array([not s.nullable for s in specs], dtype=bool)
        coded = [i for i, s in enumerate(specs) if s.categorical or s.type == "boolean"]
        sizes = [float(_code_count(specs[i])) for i in coded]
        self._code_idx = np.array(coded, dtype=np.intp)
        self._code_size = np.array(sizes, dtype=np.float32)
        self._code_top = self._code_size - 1  # the largest valid code of each
        # A feature with no valid code (no categories, unseen rejected) has a top of -1, which
        # clipping cannot express: then only the per-check path below is used.
        self._codes_quick = bool((self._code_size >= 1).all())
        self._code_nan_ok = np.array([specs[i].nullable for i in coded], dtype=bool)
        self._code_rules = [
            (size, specs[i].nullable, i) for size, i in zip(sizes, coded, strict=True)
        ]

    @property
    def name(self) -> str:
        """The model name clients address."""
        return self.metadata.name

    @property
    def features(self) -> list[str]:
        """Ordered feature names."""
        return self.metadata.features

    @property
    def specs(self) -> list[FeatureSpec]:
        """One spec per feature, in feature order."""
        return self.metadata.specs

    def validate(self, x: np.ndarray) -> None:
        """Reject values the model's feature contract forbids.

        Args:
            x: FP32 matrix ``[N, F]`` in metadata feature order.

        Raises:
            RequestError: Infinity anywhere, NaN in a feature that is not nullable, a categorical
                value that is not one of its codes (``[0, len(categories))``, plus the ``other``
                code under ``unseen: other``), or a boolean that is not 0 or 1.
        """
        if x.shape[0] <= 4:
            # Few rows (the online case): plain Python floats beat a dozen tiny numpy calls, and
            # measured here, a numpy reduction right before ONNX Runtime slows the run by ~30 us.
            for row in x.tolist():
                total = sum(row)  # NaN or inf anywhere makes the sum non-finite
                if total - total != 0.0:
                    self._check_finite(np.asarray([row], dtype=np.float32))
                for size, nan_ok, col in self._code_rules:
                    v = row[col]
                    if not (0.0 <= v < size and v.is_integer()) and not (v != v and nan_ok):
                        raise self._code_error(col)
            return
        # Many rows (a batch): accept in a few C calls when every value is finite and every
        # code an integer in range; otherwise the checks below find and name the problem.
        total = float(np.add.reduce(x, axis=None, dtype=np.float64))  # NaN or inf: not finite
        if total - total == 0.0 and (
            not self._code_idx.size
            or (
                self._codes_quick
                and np.logical_and.reduce(
                    self._codes_in_range(x.take(self._code_idx, axis=1)), None
                )
            )
        ):
            return
        self._check_finite(x)
        if self._code_idx.size:
            codes = x[:, self._code_idx]
            with np.errstate(invalid="ignore"):
                ok = (codes >= 0) & (codes < self._code_size) & (codes == np.floor(codes))
            ok |= np.isnan(codes) & self._code_nan_ok
            if not ok.all():
                raise self._code_error(int(self._code_idx[int(np.argmax(~ok.all(axis=0)))]))

    def _codes_in_range(self, codes: np.ndarray) -> np.ndarray:
        """Whether each finite code is an integer in ``[0, size)``.

        Rounding a value, then clipping it to the range, leaves exactly those values unchanged.
        """
        rounded = np.rint(codes)
        return np.equal(np.minimum(np.maximum(rounded, 0.0, out=rounded), self._code_top), codes)

    def _code_error(self, col: int) -> RequestError:
        spec = self.metadata.specs[col]
        if spec.type == "boolean":
            return RequestError(f"feature '{spec.name}' is boolean: expected 0 or 1")
        size = len(spec.categories or ())
        other = "" if spec.other_code is None else f" or the other code {spec.other_code}"
        return RequestError(
            f"feature '{spec.name}' is categorical: expected an integer code in [0, {size}){other}"
        )

    def _check_finite(self, x: np.ndarray) -> None:
        """Reject infinity anywhere and NaN in features that are not nullable."""
        finite = np.isfinite(x)
        if finite.all():
            return
        inf_cols = np.isinf(x).any(axis=0)
        if inf_cols.any():
            name = self.features[int(np.argmax(inf_cols))]
            raise RequestError(f"feature '{name}' is infinite; infinity is never accepted")
        nan_bad = ~finite.all(axis=0) & self._nan_forbidden
        if nan_bad.any():
            name = self.features[int(np.argmax(nan_bad))]
            raise RequestError(f"feature '{name}' is NaN/null but is not nullable")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Score a validated matrix.

        Args:
            x: FP32 C-contiguous matrix ``[N, F]``.

        Returns:
            The probability of the positive class per row (FP32 ``[N]``).
        """
        return positive_scores(self.session, x, self.metadata.input_name)


def load_model(
    model_dir: Path,
    *,
    expected_sha256: str | None = None,
    version: str | None = None,
    intra_op_threads: int = 1,
    signature_sha256: str | None = None,
    signing_trust: str | Path | None = None,
) -> LoadedModel:
    """Read metadata, verify the model file's sha256 and open an ONNX Runtime session.

    Args:
        model_dir: Directory holding ``model.onnx`` and ``metadata.json``.
        expected_sha256: The pinned hash (from the overlay); defaults to metadata's ``sha256``.
        version: The pinned model version; defaults to metadata's ``version``.
        intra_op_threads: ONNX Runtime intra-op threads. One is fastest for small tree models
            on a small pod: more threads spin and steal the CPU the event loop needs.
        signature_sha256: The pinned sha256 of the signature bundle ``model.sig``.
        signing_trust: PEM public key or CA chain the bundle must verify against; with either
            this or ``signature_sha256`` set, every file of the directory must match the
            signature (see :func:`argosy.signing.verify_at_load`).

    Returns:
        The loaded model; ``ready`` is False with a ``reason`` when the hash does not match or
        the session cannot be created.

    Raises:
        ModelDirError: ``metadata.json`` or ``model.onnx`` is missing or unreadable.
    """
    onnx_path = model_dir / MODEL_FILE
    metadata = read_metadata(model_dir)
    try:
        actual = file_sha256(onnx_path)
    except OSError as exc:
        raise ModelDirError(f"cannot read {onnx_path}: {exc}") from exc
    expected = (expected_sha256 or metadata.sha256).strip().lower()
    served_version = version or metadata.version or ""
    model = LoadedModel(
        metadata=metadata,
        version=served_version,
        sha256=actual,
        expected_sha256=expected,
        ready=False,
    )
    trust = signing.trust_from(signing_trust)
    unsigned = signing.verify_at_load(model_dir, trust, signature_sha256)
    if unsigned:
        model.reason = unsigned
        log.error("model not ready: %s", model.reason)
        return model
    if actual != expected:
        model.reason = (
            f"integrity check failed: sha256 of {onnx_path} is {actual}, pinned value is {expected}"
        )
        log.error("model not ready: %s", model.reason)
        return model
    try:
        model.session = open_session(onnx_path, intra_op_threads)
    except ModelDirError as exc:
        model.reason = str(exc)
        log.error("model not ready: %s", model.reason)
        return model
    inputs = model.session.get_inputs()
    n_features = len(metadata.features)
    if [i.name for i in inputs] != [metadata.input_name]:
        model.reason = f"model inputs {[i.name for i in inputs]} != [{metadata.input_name!r}]"
    elif len(model.session.get_outputs()) <= PROBABILITY_OUTPUT_INDEX:
        model.reason = "model has no probability output (expected label, probabilities)"
    elif inputs[0].shape[-1] not in (n_features, None) and not isinstance(inputs[0].shape[-1], str):
        model.reason = f"model expects {inputs[0].shape[-1]} features, metadata lists {n_features}"
    if model.reason:
        log.error("model not ready: %s", model.reason)
        return model
    model.ready = True
    log.info(
        "model %s version %r ready (sha256 %s, %d features)",
        metadata.name,
        served_version,
        actual,
        n_features,
    )
    return model


def _code_count(spec: FeatureSpec) -> int:
    """How many codes a categorical or boolean feature takes (booleans: 0 and 1)."""
    return 2 if spec.type == "boolean" else spec.code_count
