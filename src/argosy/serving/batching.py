"""Adaptive batching: requests that arrive together are scored in one ONNX Runtime call.

One ONNX Runtime call costs tens of microseconds however few rows it scores, and a few
microseconds a row beyond that; under concurrent load the server pays mostly the former. A
request reaches the batcher decoded and validated, or (with ``assemble``, below) as a part that is
checked with its batch and alone again when the batch refuses: either way one client's bad input
is answered on its own and cannot fail another's.

When the first request of a batch arrives the batcher schedules a flush with ``call_soon``: the
event loop runs it after every read already waiting has been handled, so all requests that
arrived in the same loop iteration, on any connection, REST or gRPC, share one call. With
``max_wait_us`` above zero a flush that finds fewer than ``max_rows`` rows yields to the loop
again (reading more requests) until the first request has waited that long: libuv's timers have
millisecond resolution, so the wait is a bounded spin of loop iterations, never a timer. A batch
is scored as soon as it holds ``max_rows`` rows; a request with more rows than that is scored on
its own. Each request gets its own slice of the scores, equal bit for bit to scoring it alone
(tree ensembles score each row independently, and ONNX Runtime runs on one intra-op thread), or
what a ``scored`` function made of the batch's scores for it (``App.scored``: its response).
When a call of several requests raises, each is scored again alone, so only a request whose
own call fails gets an error.

A part need not be a matrix yet: with an ``assemble`` function the batcher hands it the batch's
parts and scores the one matrix it returns, so per-request work (converting the online case's
JSON values, validating them) runs once per batch (``App.assemble``). When assembly refuses the
batch, each part is assembled alone: a part refused alone gets that error (a ``RequestError``,
the 400 it would get unbatched), and the rest are scored together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from argosy.serving.model import RequestError

log = logging.getLogger(__name__)

Done = Callable[[Any], None]
"""Receives a request's scores (or what ``scored`` made of them), or the exception that
assembling or scoring it raised."""
Assemble = Callable[[Sequence[Any]], np.ndarray]
"""Turns a batch's parts (``len`` of each: its rows) into one FP32 matrix, in order, or raises."""
Scored = Callable[[Sequence[Any], np.ndarray, np.ndarray], Sequence[Any] | None]
"""Sees each call of several parts once it has scored: the parts, their matrix, its scores.
Returns what each part's ``done`` gets in place of its scores, or None for the scores."""


def concatenate(parts: Sequence[np.ndarray]) -> np.ndarray:
    """The default ``Assemble``: parts are validated matrices, stacked in order."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class Batcher:
    """Collects requests' parts (matrices, or what ``assemble`` takes); scores them together.

    Args:
        predict: Scores an FP32 ``[N, F]`` matrix (``LoadedModel.predict``).
        loop: The event loop every request is submitted on.
        max_rows: Most rows in one call.
        max_wait_us: Longest the first request of a batch waits for others, in microseconds.
        assemble: Turns parts into the matrix to score (default: parts are matrices).
        scored: Called after each call that scored several parts, before their ``done``
            callbacks (the batch's own work: ``App.scored``), and may give them what it made of
            the scores instead; None for nothing.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        loop: asyncio.AbstractEventLoop,
        max_rows: int = 64,
        max_wait_us: int = 0,
        assemble: Assemble = concatenate,
        scored: Scored | None = None,
    ) -> None:
        if max_rows < 1 or max_wait_us < 0:
            raise ValueError("max_rows must be positive and max_wait_us non-negative")
        self.predict = predict
        self.assemble = assemble
        self.scored = scored
        self.loop = loop
        self.max_rows = max_rows
        self.max_wait_s = max_wait_us / 1e6
        self._pending: list[tuple[Any, Done]] = []
        self._rows = 0
        self._first = 0.0
        self._batch = 0  # which batch a scheduled tick belongs to (a full batch flushes early)
        self._scheduled = False
        self.calls = 0  # ONNX Runtime calls made

    def submit(self, x: Any, done: Done) -> None:
        """Queue one request's part (a validated matrix by default; ``len``: its rows).

        ``done`` gets the request's scores later on the loop, or what refused it.
        """
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
        try:
            x = self.assemble([part for part, _ in pending])
        except Exception as exc:
            if len(pending) == 1:
                self._refused(pending[0][1], exc)
                return
            # Some part is refused: each is assembled alone, and the others go on together.
            good = []
            for part, done in pending:
                try:
                    good.append((part, done, self.assemble([part])))
                except Exception as alone:
                    self._refused(done, alone)
            if not good:
                return
            pending = [(part, done) for part, done, _ in good]
            try:  # the rest as one batch again, so that ``scored`` finishes them together
                x = self.assemble([part for part, _ in pending])
            except Exception as together:  # they assemble only alone: their matrices go on
                if not isinstance(together, RequestError):
                    log.exception("assembling a batch again failed", exc_info=together)
                pending = [(alone, done) for _, done, alone in good]
                x = concatenate([alone for alone, _ in pending])
        self._run(x, pending)

    def _run(self, x: np.ndarray, pending: list[tuple[Any, Done]]) -> None:
        """Score the assembled ``x`` of ``pending``; give each part its slice (or ``scored``'s)."""
        if len(pending) == 1:
            self._answer(pending[0][1], self._score(x, 1))
            return
        result = self._score(x, len(pending))
        if isinstance(result, BaseException):
            # One request's rows may be what broke the call: score each alone, so only the
            # request that fails again gets an error (its own).
            for part, done in pending:
                try:
                    alone = self.assemble([part])
                except Exception as exc:
                    self._refused(done, exc)
                    continue
                self._answer(done, self._score(alone, 1))
            return
        if self.scored is not None:
            try:
                finished = self.scored([part for part, _ in pending], x, result)
            except Exception as exc:  # a bug: its requests fail, none is finished twice
                log.exception("finishing a batch of %d request(s) failed", len(pending))
                for _, done in pending:
                    self._answer(done, exc)
                return
            if finished is not None:
                for (_, done), answer in zip(pending, finished, strict=True):
                    self._answer(done, answer)
                return
        offset = 0
        for part, done in pending:
            n = len(part)
            self._answer(done, result[offset : offset + n])
            offset += n

    def _refused(self, done: Done, exc: Exception) -> None:
        """Answer a part that assembly refused (a ``RequestError`` is the client's; else a bug)."""
        if not isinstance(exc, RequestError):
            log.exception("assembling a request for its batch failed", exc_info=exc)
        self._answer(done, exc)

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
