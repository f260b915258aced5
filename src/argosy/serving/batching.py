"""Adaptive batching: requests that arrive together are scored in one ONNX Runtime call.

One ONNX Runtime call costs tens of microseconds however few rows it scores, and a few
microseconds a row beyond that; under concurrent load the server pays mostly the former. Requests
reach the batcher already decoded and validated (a malformed request is answered on its own and
never joins a batch), so one client's bad input cannot fail another's.

When the first request of a batch arrives the batcher schedules a flush with ``call_soon``: the
event loop runs it after every read already waiting has been handled, so all requests that
arrived in the same loop iteration, on any connection, REST or gRPC, share one call. With
``max_wait_us`` above zero a flush that finds fewer than ``max_rows`` rows yields to the loop
again (reading more requests) until the first request has waited that long: libuv's timers have
millisecond resolution, so the wait is a bounded spin of loop iterations, never a timer. A batch
is scored as soon as it holds ``max_rows`` rows; a request with more rows than that is scored on
its own. Each request gets its own slice of the scores, equal bit for bit to scoring it alone
(tree ensembles score each row independently, and ONNX Runtime runs on one intra-op thread).
When a call of several requests raises, each is scored again alone, so only a request whose
own call fails gets an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

Done = Callable[[np.ndarray | BaseException], None]
"""Receives a request's scores, or the exception that scoring it raised."""


class Batcher:
    """Collects validated feature matrices and scores them together.

    Args:
        predict: Scores an FP32 ``[N, F]`` matrix (``LoadedModel.predict``).
        loop: The event loop every request is submitted on.
        max_rows: Most rows in one call.
        max_wait_us: Longest the first request of a batch waits for others, in microseconds.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        loop: asyncio.AbstractEventLoop,
        max_rows: int = 64,
        max_wait_us: int = 0,
    ) -> None:
        if max_rows < 1 or max_wait_us < 0:
            raise ValueError("max_rows must be positive and max_wait_us non-negative")
        self.predict = predict
        self.loop = loop
        self.max_rows = max_rows
        self.max_wait_s = max_wait_us / 1e6
        self._pending: list[tuple[np.ndarray, Done]] = []
        self._rows = 0
        self._first = 0.0
        self._batch = 0  # which batch a scheduled tick belongs to (a full batch flushes early)
        self._scheduled = False
        self.calls = 0  # ONNX Runtime calls made

    def submit(self, x: np.ndarray, done: Done) -> None:
        """Queue one request's validated matrix; ``done`` gets its scores later on the loop."""
        n = len(x)
        if self._pending and self._rows + n > self.max_rows:
            self._flush()
        self._pending.append((x, done))
        self._rows += n
        if self._rows >= self.max_rows:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            self._first = time.perf_counter()
            self.loop.call_soon(self._tick, self._batch)

    def _tick(self, batch: int) -> None:
        if batch != self._batch:  # that batch was flushed full; a newer one has its own tick
            return
        if self.max_wait_s and time.perf_counter() - self._first < self.max_wait_s:
            self.loop.call_soon(self._tick, batch)
            return
        self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._rows = self._pending, [], 0
        self._batch += 1
        self._scheduled = False
        if len(pending) == 1:
            self._answer(pending[0][1], self._score(pending[0][0], 1))
            return
        result = self._score(np.concatenate([p[0] for p in pending]), len(pending))
        if isinstance(result, BaseException):
            # One request's rows may be what broke the call: score each alone, so only the
            # request that fails again gets an error (its own).
            for part, done in pending:
                self._answer(done, self._score(part, 1))
            return
        offset = 0
        for part, done in pending:
            n = len(part)
            self._answer(done, result[offset : offset + n])
            offset += n

    def _score(self, x: np.ndarray, requests: int) -> np.ndarray | BaseException:
        self.calls += 1
        try:
            return self.predict(x)
        except Exception as exc:  # a scoring failure fails its request(s), not the server
            log.exception("scoring a batch of %d request(s) failed", requests)
            return exc

    @staticmethod
    def _answer(done: Done, result: np.ndarray | BaseException) -> None:
        try:
            done(result)
        except Exception:  # one request's reply failing must not lose the others'
            log.exception("answering a batched request failed")
