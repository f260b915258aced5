"""Time each stage of Argosy's request path in-process (no HTTP), to see where a request goes.

Run: `.venv/bin/python bench/serve/profile_request.py [MODEL_DIR] [ROWS]` (default: models/, 1).
Each figure is the best of 5 loops of 2,000 calls; "in sequence" runs the stages back to back on
fresh input, as a request does, which is slower than the sum of warm loops (caches). The batched
lines run the server's adaptive batching as the event loop would: 16 requests handled, then the
batch scored in one ONNX Runtime call and each request answered; the figure is per request.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from argosy.serving.metrics import Metrics
from argosy.serving.model import load_model
from argosy.serving.server import App, Batching, Limits
from argosy.serving.v2 import decode_infer_request, encode_infer_response


def best_us(fn: Callable[[], object], n: int = 2000) -> float:
    """Best mean time per call over 5 loops, in microseconds."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


class _Loop:
    """Just enough of an event loop for the batcher: ``call_soon`` callbacks run on ``run``."""

    def __init__(self) -> None:
        self.callbacks: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        self.callbacks.append((fn, args))

    def run(self) -> None:
        while self.callbacks:
            callbacks, self.callbacks = self.callbacks, []
            for fn, args in callbacks:
                fn(*args)


def batched(app: App, path: bytes, body: bytes, size: int) -> Callable[[], object]:
    """One call handles ``size`` requests and runs their batch; returns the call."""
    loop = _Loop()
    app.start_batching(loop)  # type: ignore[arg-type]
    answered: list[object] = []

    def run() -> None:
        for _ in range(size):
            app.handle(b"POST", path, body, None, answered.append)
        loop.run()
        answered.clear()

    return run


def main() -> None:
    """Print per-stage timings."""
    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("models")
    n_rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    model = load_model(model_dir)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(n_rows, len(model.features))).astype(np.float32)
    for j, spec in enumerate(model.metadata.specs):
        if spec.categories is not None:
            x[:, j] = rng.integers(0, len(spec.categories), size=n_rows)
        elif spec.type == "boolean":
            x[:, j] = rng.integers(0, 2, size=n_rows)
    tensor = {"name": "features", "datatype": "FP32", "shape": list(x.shape)}
    body = orjson.dumps({"inputs": [{**tensor, "data": x.reshape(-1).tolist()}]})
    app = App(model, Metrics(model.name, model.version, model.sha256), Limits())
    path = f"/v2/models/{model.name}/infer".encode()
    batching = App(
        model, Metrics(model.name, model.version, model.sha256), Limits(), batching=Batching()
    )
    x16 = np.repeat(x, 16, axis=0)
    req = decode_infer_request(body, model, 1000)
    scores = model.predict(req.x)
    decisions = (scores >= 0.5).astype(np.int8)
    outputs = ("probability", "decision")

    def in_sequence() -> None:
        r = decode_infer_request(body, model, 1000)
        model.validate(r.x)
        model.predict(r.x)

    stages = {
        "orjson.loads": lambda: orjson.loads(body),
        "decode (V2 JSON -> FP32 matrix)": lambda: decode_infer_request(body, model, 1000),
        "validate (NaN/inf/categories)": lambda: model.validate(req.x),
        "ONNX Runtime (same input, warm)": lambda: model.predict(req.x),
        "encode response": lambda: encode_infer_response(model, "id", outputs, scores, decisions),
        "decode+validate+predict in sequence": in_sequence,
        "App.handle (everything but HTTP)": lambda: app.handle(b"POST", path, body),
        "ONNX Runtime, 16 requests' rows in one call": lambda: model.predict(x16),
    }  # fmt: skip
    print(f"model {model_dir} ({len(model.features)} features), {n_rows} row(s) per request")
    for name, fn in stages.items():
        print(f"  {name:48s} {best_us(fn):8.1f} us")
    per_request = best_us(batched(batching, path, body, 16), 200) / 16
    print(f"  {'App.handle, batches of 16 (per request)':48s} {per_request:8.1f} us")


if __name__ == "__main__":
    main()
