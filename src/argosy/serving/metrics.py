"""Prometheus metrics, rendered in the text exposition format without a client library.

The server is single-threaded (one event loop), so plain counters suffice on the request path;
the prediction-log writer thread only reports through the logger's own counters, read at scrape
time. Keeping this in-house saves an import and a lock per observation.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence

import numpy as np

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))

Sample = tuple[tuple[tuple[str, str], ...], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """A cumulative histogram with fixed upper bounds.

    Args:
        bounds: Sorted bucket upper bounds; ``+Inf`` is implicit.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._bounds_arr = np.asarray(self.bounds, dtype=np.float64)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def observe_times(self, value: float, times: int) -> None:
        """Record ``value`` ``times`` times."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.total += value * times
        self.count += times

    def observe_many(self, values: np.ndarray) -> None:
        """Record a vector of values with one numpy pass."""
        idx = np.searchsorted(self._bounds_arr, values, side="left")
        for i, c in enumerate(np.bincount(idx, minlength=len(self.counts)).tolist()):
            if c:
                self.counts[i] += c
        self.total += float(values.sum(dtype=np.float64))
        self.count += int(values.size)

    def render(self, name: str, labels: Sequence[tuple[str, str]] = ()) -> list[str]:
        """Render the ``_bucket``/``_sum``/``_count`` sample lines."""
        lines = []
        cumulative = 0
        for bound, c in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += c
            le = _labels((*labels, ("le", _fmt(bound))))
            lines.append(f"{name}_bucket{le} {cumulative}")
        lab = _labels(labels)
        lines.append(f"{name}_sum{lab} {_fmt(self.total)}")
        lines.append(f"{name}_count{lab} {self.count}")
        return lines


class Metrics:
    """The server's metric families.

    Args:
        model_name: Served model name (label of the info gauge).
        model_version: Served version (label of the info gauge).
        model_sha256: sha256 actually loaded (label of the info gauge).
    """

    def __init__(self, model_name: str, model_version: str, model_sha256: str) -> None:
        self.model_labels = (
            ("name", model_name),
            ("version", model_version),
            ("sha256", model_sha256),
        )
        self.requests: dict[tuple[str, int, str], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.call_rows = Histogram(BATCH_BUCKETS)
        self.scores = Histogram(SCORE_BUCKETS)
        self.inflight = 0
        self.ready = False
        self.families: list[tuple[str, str, str, Callable[[], Iterable[Sample]]]] = []

    def observe_request(
        self, endpoint: str, code: int, seconds: float, protocol: str = "rest"
    ) -> None:
        """Count one answered request and its latency.

        Args:
            endpoint: The V2 endpoint (the same names for REST and gRPC).
            code: HTTP status; a gRPC status is counted as its HTTP equivalent.
            seconds: From the full request to the response handed to the transport, waiting
                for a batch included.
            protocol: ``rest`` or ``grpc``.
        """
        key = (endpoint, code, protocol)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get((endpoint, protocol))
        if hist is None:
            hist = self.latency[(endpoint, protocol)] = Histogram(LATENCY_BUCKETS)
        hist.observe(seconds)

    def add_family(
        self, name: str, kind: str, help_text: str, read: Callable[[], Iterable[Sample]]
    ) -> None:
        """Register a metric family whose samples are read at scrape time.

        Args:
            name: Metric name.
            kind: ``counter`` or ``gauge``.
            help_text: The HELP line.
            read: Returns ``(labels, value)`` pairs, e.g. from the prediction log's counters.
        """
        self.families.append((name, kind, help_text, read))

    def render(self) -> bytes:
        """The full exposition text."""
        out = [
            "# HELP argosy_requests_total Requests answered, by endpoint, status code (gRPC "
            "statuses as their HTTP equivalent) and protocol.",
            "# TYPE argosy_requests_total counter",
        ]
        requests = sorted(self.requests.items())
        for (endpoint, code, protocol), n in requests:
            lab = _labels((("endpoint", endpoint), ("code", str(code)), ("protocol", protocol)))
            out.append(f"argosy_requests_total{lab} {n}")
        out += [
            "# HELP argosy_request_errors_total Requests answered with a 4xx or 5xx status.",
            "# TYPE argosy_request_errors_total counter",
        ]
        for (endpoint, code, protocol), n in requests:
            if code >= 400:
                lab = _labels((("endpoint", endpoint), ("code", str(code)), ("protocol", protocol)))
                out.append(f"argosy_request_errors_total{lab} {n}")
        out += [
            "# HELP argosy_request_duration_seconds Time from full request to response written "
            "(a wait for a batch included).",
            "# TYPE argosy_request_duration_seconds histogram",
        ]
        for (endpoint, protocol), hist in sorted(self.latency.items()):
            labels = (("endpoint", endpoint), ("protocol", protocol))
            out += hist.render("argosy_request_duration_seconds", labels)
        out += [
            "# HELP argosy_batch_size Rows per inference request.",
            "# TYPE argosy_batch_size histogram",
            *self.batch_size.render("argosy_batch_size"),
            "# HELP argosy_inference_call_rows Rows per ONNX Runtime call (requests batched).",
            "# TYPE argosy_inference_call_rows histogram",
            *self.call_rows.render("argosy_inference_call_rows"),
            "# HELP argosy_prediction_score Probability of the positive class of each scored row.",
            "# TYPE argosy_prediction_score histogram",
            *self.scores.render("argosy_prediction_score"),
            "# HELP argosy_model_info The model being served (value is always 1).",
            "# TYPE argosy_model_info gauge",
            f"argosy_model_info{_labels(self.model_labels)} 1",
            "# HELP argosy_model_ready 1 when the model passed its integrity check and is served.",
            "# TYPE argosy_model_ready gauge",
            f"argosy_model_ready {int(self.ready)}",
            "# HELP argosy_inflight_requests Requests received and not yet answered.",
            "# TYPE argosy_inflight_requests gauge",
            f"argosy_inflight_requests {self.inflight}",
        ]
        for name, kind, help_text, read in self.families:
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            out += [f"{name}{_labels(labels)} {_fmt(value)}" for labels, value in read()]
        return ("\n".join(out) + "\n").encode()
