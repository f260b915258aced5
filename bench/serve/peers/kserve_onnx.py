"""KServe's Python ModelServer with a custom ONNX Runtime model class."""

import argparse
import uuid

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferRequest, InferResponse, Model, ModelServer
from kserve.protocol.infer_type import InferOutput


class OnnxClassifier(Model):
    """Scores the ``features`` tensor; returns the positive-class probability."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        """Open the ONNX Runtime session (one intra-op thread, as Argosy uses)."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        """V2 in, V2 out."""
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        prob = self.sess.run(None, {"features": x})[1][:, 1]
        out = InferOutput(name="probability", shape=list(prob.shape), datatype="FP32")
        out.set_data_from_numpy(prob)
        return InferResponse(
            model_name=self.name, infer_outputs=[out], response_id=payload.id or str(uuid.uuid4())
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer().start([OnnxClassifier(args.model_name, args.model_path)])
