"""One-row requests are converted and validated with their batch: each answer is the unbatched one.

The online case (one row in one ``features`` tensor) is recognised by ``one_row`` and its values
go through ``rows_matrix`` and one ``validate`` call per batch (``App.assemble``). Every body
below is answered twice by the real ``App``: all of them in one batch on an event loop, and each
alone with batching off. Status, content type and body bytes must be equal, and so must the rows
the prediction log writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argosy.serving.batching import Batcher
from argosy.serving.model import RequestError
from argosy.serving.predlog import PredictionLogger
from argosy.serving.server import App, Batching
from argosy.serving.v2 import encode_row_responses, one_row

from .conftest import FEATURES, infer_body, make_app, valid_rows

# Values beyond FP32 become inf on the way in, unbatched and batched alike (and are refused).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
INFER = b"/v2/models/example-model/infer"
F00, F03, F06, F08 = (FEATURES.index(f) for f in ("f00", "f03", "f06", "f08"))


def _row(seed: int) -> list[Any]:
    return infer_body(valid_rows(1, seed=seed))["inputs"][0]["data"]


def _body(data: list[Any], **changes: Any) -> bytes:
    tensor = {"name": "features", "datatype": "FP32", "shape": [1, len(FEATURES)], "data": data}
    doc: dict[str, Any] = {"inputs": [tensor]}
    for key, value in changes.items():
        if key.startswith("t_"):
            tensor[key[2:]] = value
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def _with(seed: int, col: int, value: Any) -> list[Any]:
    data = _row(seed)
    data[col] = value
    return data


def bodies() -> dict[str, bytes]:
    """Valid and invalid one-row bodies, and near misses that must take the general path."""
    cases = {
        "plain": _body(_row(1)),
        "plain with id": _body(_row(2), id="client-7"),
        "FP64 datatype": _body(_row(3), t_datatype="FP64"),
        "a JSON true in a boolean feature": _body(_with(4, F08, True)),
        "an integer code": _body(_with(5, F00, 2)),
        "code out of range": _body(_with(6, F00, 99.0)),
        "code not an integer": _body(_with(7, F00, 1.5)),
        "beyond FP32": _body(_with(8, F06, 1e39)),
        "an integer beyond 64 bits": _body(_with(9, F06, 2**70)),
        "a negative integer beyond 64 bits": _body(_with(10, F06, -(2**70))),
        "an integer beyond float64": _body(_with(11, F06, 10**400)),
        "plain again": _body(_row(12)),
        "a string value": _body(_with(13, F06, "1.5")),
        "a null in a nullable feature": _body(_with(14, F03, None)),
        "a null in a feature that is not nullable": _body(_with(15, F06, None)),
        "integers only": _body([int(v) for v in _row(16)]),
        "booleans only": _body([True] * len(FEATURES)),
        "nested data": _body([_row(17)]),
        "a boolean in the shape": _body(_row(18), t_shape=[True, len(FEATURES)]),
        "an integer datatype": _body(_row(19), t_datatype="INT32"),
        "too few values": _body(_row(20)[:-1]),
        "request parameters": _body(_row(21), parameters={}),
        "tensor parameters": _body(_row(22), t_parameters={}),
        "outputs asked for": _body(_row(23), outputs=[{"name": "probability"}]),
        "id too long": _body(_row(24), id="x" * 129),
        "id not a string": _body(_row(25), id=5),
        "another name": _body(_row(26), t_name="Features"),
        "not an object": b"[1, 2]",
        "plain, last": _body(_row(27)),
        # Not JSON, but what Python clients write: the stdlib reads these tokens (the slow path).
        "NaN token in a nullable feature": _body(_with(30, F03, 7.25)).replace(b"7.25", b"NaN"),
        "Infinity token": _body(_with(31, F06, 7.25)).replace(b"7.25", b"Infinity"),
        # The stdlib keeps an integer beyond 64 bits (orjson reads it as a float): the row is an
        # object array alone, where a JSON true is 1 as everywhere; stacked it must be the same.
        "a true beside an integer beyond 64 bits, read by the stdlib": _body(
            [*_with(32, F03, 7.25)[:-1], True]
        )
        .replace(b"7.25", b"NaN")
        .replace(json.dumps(_row(32)[F06]).encode(), str(2**70).encode()),
    }
    return cases


def _app(model_dir: Path, batching: Batching | None, tables: list[pa.Table]) -> App:
    log = PredictionLogger(
        sink=lambda table, day: tables.append(table),
        features=FEATURES,
        model_name="example-model",
        model_version="7",
        flush_interval_s=0.01,
    )
    log.start()
    app = make_app(model_dir, predlog=log, batching=batching, max_batch=100)
    app._id_prefix = "same"  # server-assigned ids then match across the two apps
    return app


def _logged(app: App, tables: list[pa.Table]) -> str:
    """Every logged row but its timestamp, as JSON text (so that NaN compares equal to NaN)."""
    assert app.predlog is not None
    assert app.predlog.close(10)
    return json.dumps(pa.concat_tables(tables).drop_columns(["timestamp"]).to_pylist())


def _samples(app: App, family: str) -> dict[str, float]:
    lines = app.metrics.render().decode().splitlines()
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in lines if line.startswith(family))
    }


def test_every_one_row_answer_in_a_batch_is_the_unbatched_answer(model_dir: Path) -> None:
    cases = bodies()
    # Given batches of the cases: each alone (an idle server), each between two valid rows (so
    # that the batch as a whole is accepted unless the case is refused), then all of them
    plain = [_body(_row(40)), _body(_row(41))]
    batches = [
        *([body] for body in cases.values()),
        *([plain[0], body, plain[1]] for body in cases.values()),
        list(cases.values()),
    ]
    batched_tables: list[pa.Table] = []
    app = _app(model_dir, Batching(max_rows=64), batched_tables)
    loop = asyncio.new_event_loop()
    app.start_batching(loop)
    assert app.batcher is not None
    answers: list[Any] = []

    def send(batch: list[bytes]) -> None:
        for body in batch:
            answers.append(None)
            i = len(answers) - 1
            inline = app.handle(
                b"POST", INFER, body, None, functools.partial(answers.__setitem__, i)
            )
            if inline is not None:
                answers[i] = inline

    for batch in batches:
        calls = app.batcher.calls  # before the batch of every case, at the end
        loop.call_soon(send, batch)
        loop.run_until_complete(asyncio.sleep(0.005))
    loop.close()
    calls = app.batcher.calls - calls
    # answered in one batch each, and each alone with batching off
    alone_tables: list[pa.Table] = []
    alone = _app(model_dir, None, alone_tables)
    expected = [alone.handle(b"POST", INFER, body) for batch in batches for body in batch]
    # Then every request got exactly its unbatched status, content type and bytes
    names = [*cases, *(n for name in cases for n in ("plain", name, "plain")), *cases]
    assert len(answers) == len(expected) == len(names)
    for name, got, want in zip(names, answers, expected, strict=True):
        assert got[:3] == want[:3], name
    # and the prediction log holds the same rows, ids included
    assert _logged(app, batched_tables) == _logged(alone, alone_tables)
    # and the same rows-per-request and score histograms (the sums up to rounding: a batch's
    # scores are added in one pass)
    for family in ("argosy_batch_size", "argosy_prediction_score"):
        got, want = (_samples(a, family) for a in (app, alone))
        assert {k: v for k, v in got.items() if not k.endswith("_sum")} == {
            k: v for k, v in want.items() if not k.endswith("_sum")
        }
        assert got[f"{family}_sum"] == pytest.approx(want[f"{family}_sum"], rel=1e-12)
    answers = answers[-len(cases) :]  # the batch of every case
    # and the cases did what they are named for (the comparison alone would pass if both broke)
    status = {name: answer[0] for name, answer in zip(cases, answers, strict=True)}
    accepted = {
        "plain", "plain with id", "FP64 datatype", "a JSON true in a boolean feature",
        "an integer code", "an integer beyond 64 bits", "a negative integer beyond 64 bits",
        "plain again", "a null in a nullable feature", "integers only", "nested data",
        "request parameters", "tensor parameters", "outputs asked for", "plain, last",
        "NaN token in a nullable feature", "booleans only",
        "a true beside an integer beyond 64 bits, read by the stdlib",
    }  # fmt: skip
    assert {name for name, code in status.items() if code == 200} == accepted
    errors = {
        name: json.loads(answer[1])["error"]
        for name, answer in zip(cases, answers, strict=True)
        if name not in accepted
    }
    assert "feature 'f00' is categorical" in errors["code out of range"]
    assert "feature 'f00' is categorical" in errors["code not an integer"]
    assert "feature 'f06' is infinite" in errors["beyond FP32"]
    assert "feature 'f06' is infinite" in errors["Infinity token"]
    assert "value out of range" in errors["an integer beyond float64"]
    assert "is NaN/null but is not nullable" in errors["a null in a feature that is not nullable"]
    assert "longer than 128 bytes" in errors["id too long"]
    # and in the batch of every case the accepted requests still shared calls: the refused ones
    # made it assemble part by part, and the rest went in one call
    assert calls == 1


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [1] * 30}]},
         "integers only"),
        ({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                      "data": [True] * 29 + [0.5]}]}, None),
        ({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                      "data": [0.5] * 29 + [float("nan")]}]}, None),
        ({"inputs": [{"name": "features", "datatype": "FP16", "shape": [2, 30],
                      "data": [0.5] * 60}]}, "two rows"),
        ({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                      "data": [0.5] * 30}], "id": None}, None),
        ({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                      "data": [0.5] * 30}], "ID": "x"}, "an unknown key"),
        ({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                      "data": [0.5] * 29 + [math.inf]}]}, None),
    ],
)  # fmt: skip
def test_one_row_recognises_only_what_it_can_stack(
    model_dir: Path, doc: dict[str, Any], why: str | None
) -> None:
    model = make_app(model_dir).model
    values = one_row(doc, model)
    if why is None:
        assert values is doc["inputs"][0]["data"]
    else:
        assert values is None, why


def test_a_part_refused_with_its_batch_gets_its_own_error_and_the_rest_share_a_call() -> None:
    # Given a batcher whose assembly refuses any part holding a negative value
    calls: list[int] = []

    def predict(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x.sum(axis=1)

    def assemble(parts: list[np.ndarray]) -> np.ndarray:
        if any((p < 0).any() for p in parts):
            raise RequestError("a negative value")
        return np.concatenate(parts)

    def broken(parts: list[np.ndarray]) -> np.ndarray:
        raise KeyError("a bug")

    finished: list[list[Any]] = []

    def scored(parts: list[Any], x: np.ndarray, scores: np.ndarray) -> None:
        finished.append(list(parts))

    for how, expected in ((assemble, RequestError), (broken, KeyError)):
        loop = asyncio.new_event_loop()
        batcher = Batcher(predict, loop, assemble=how, scored=scored)
        parts = [np.full((1, 2), v, dtype=np.float32) for v in (1, -1, 2, 3)]
        results: list[Any] = [None] * len(parts)

        def submit(
            batcher: Batcher = batcher,
            parts: list[np.ndarray] = parts,
            results: list[Any] = results,
        ) -> None:
            for i, part in enumerate(parts):
                batcher.submit(part, functools.partial(results.__setitem__, i))

        calls.clear()
        finished.clear()
        loop.call_soon(submit)
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        if expected is RequestError:
            # Then the refused part gets the error, the others their scores from one call
            assert isinstance(results[1], RequestError)
            assert results[1].message == "a negative value"
            assert [r.tolist() for i, r in enumerate(results) if i != 1] == [[2.0], [4.0], [6.0]]
            assert calls == [3]
            # and the batch's own finishing step got those requests' parts, as one batch
            assert len(finished) == 1
            assert [id(p) for p in finished[0]] == [id(parts[i]) for i in (0, 2, 3)]
        else:
            # and an assembly bug fails each request (a 500 upstream), scoring nothing
            assert all(isinstance(r, KeyError) for r in results)
            assert calls == []
            assert finished == []


def test_a_batch_whose_finishing_fails_fails_its_requests_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a batcher whose batch-level finishing step raises
    def scored(parts: Any, x: np.ndarray, scores: np.ndarray) -> None:
        raise RuntimeError("finishing failed")

    loop = asyncio.new_event_loop()
    batcher = Batcher(lambda x: x.sum(axis=1), loop, scored=scored)
    results: list[Any] = [None] * 3

    def submit() -> None:
        for i in range(3):
            batcher.submit(
                np.full((1, 2), i, np.float32), functools.partial(results.__setitem__, i)
            )

    loop.call_soon(submit)
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    # Then each part gets the error (a 500 upstream), none finished twice, and the bug is logged
    assert all(isinstance(r, RuntimeError) for r in results)
    assert "finishing a batch of 3 request(s) failed" in caplog.text


special = st.sampled_from(
    [0.0, -0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.5, -1.0, 1e-45, 3.4e38, -3.4e38, math.nan, math.inf]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.tuples(st.integers(0, 29), special), max_size=6),
    n=st.integers(5, 12),
)
def test_a_batch_is_valid_exactly_when_each_of_its_rows_is(
    model_dir: Path, values: list[tuple[int, float]], n: int
) -> None:
    """``validate`` on many rows (a few whole-matrix calls) agrees with it row by row."""
    model = _model(model_dir)
    x = valid_rows(n, seed=n)
    for k, (col, value) in enumerate(values):
        x[k % n, col] = value
    alone = []
    for row in x:
        try:
            model.validate(row[None, :])
            alone.append(None)
        except RequestError as exc:
            alone.append(exc.message)
    errors = [e for e in alone if e is not None]
    try:
        model.validate(x)
        batch = None
    except RequestError as exc:
        batch = exc.message
    assert (batch is None) == (not errors)
    if batch is not None:  # the batch names one of its rows' problems
        assert batch in errors


@functools.cache
def _model(model_dir: Path) -> Any:
    return make_app(model_dir).model


def test_a_model_whose_id_column_is_named_features_takes_the_general_path(model_dir: Path) -> None:
    model = _model(model_dir)
    doc = json.loads(_body(_row(1)))
    assert one_row(doc, model) is not None
    renamed = dataclasses.replace(
        model, metadata=dataclasses.replace(model.metadata, id_column="features")
    )
    assert one_row(doc, renamed) is None  # request_from_doc reads it as the id tensor


def test_many_rows_with_a_code_of_a_categorical_feature_with_no_categories_are_refused(
    model_dir: Path,
) -> None:
    model = _model(model_dir)
    specs = [
        dataclasses.replace(spec, categories=()) if spec.name == "f00" else spec
        for spec in model.metadata.specs
    ]
    empty = dataclasses.replace(model, metadata=dataclasses.replace(model.metadata, specs=specs))
    x = valid_rows(6, seed=2)
    x[:, F00] = -1.0
    with pytest.raises(RequestError, match="feature 'f00' is categorical"):
        empty.validate(x)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(st.text(max_size=12), min_size=1, max_size=8),
    data=st.data(),
)
def test_responses_encoded_together_are_each_the_documents_bytes(
    model_dir: Path, ids: list[str], data: st.DataObject
) -> None:
    model = _model(model_dir)
    n = len(ids)
    floats = st.floats(0.0, 1.0, width=32) | st.sampled_from([0.0, 1.0, 1e-05, 0.5])
    scores = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)), dtype=np.float32)
    decisions = (scores >= 0.5).astype(np.int8)
    together = encode_row_responses(model, ids, scores, decisions)
    head = {"model_name": model.name, **({"model_version": model.version} if model.version else {})}
    for i in range(n):
        # Then each body is orjson's encoding of the V2 response document (an independent oracle)
        doc = {**head, "id": ids[i], "outputs": [
            {"name": "probability", "datatype": "FP32", "shape": [1], "data": [float(scores[i])]},
            {"name": "decision", "datatype": "INT8", "shape": [1], "data": [int(decisions[i])]},
        ]}  # fmt: skip
        assert together[i] == orjson.dumps(doc)
