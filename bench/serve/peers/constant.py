"""Argosy's HTTP stack answering a constant body: the transport's ceiling for the same request."""

import sys
from pathlib import Path

from argosy.serving.metrics import Metrics
from argosy.serving.model import load_model
from argosy.serving.server import App, Limits, ModelServer, Response, run

BODY = (
    b'{"model_name":"bench-model","model_version":"1","id":"x","outputs":[{"name":'
    b'"probability","datatype":"FP32","shape":[1],"data":[0.5]}]}'
)


class ConstantApp(App):
    """Routes nothing: every request gets the same 200 JSON body."""

    def handle(self, method: bytes, path: bytes, body: bytes, *_: object) -> Response:
        """Answer without parsing, validating or predicting."""
        return 200, BODY, b"application/json", "infer", b""


if __name__ == "__main__":
    model_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    model = load_model(model_dir)
    app = ConstantApp(model, Metrics(model.name, model.version, model.sha256), Limits())
    run(ModelServer(app, "127.0.0.1", port), None, 1.0)
