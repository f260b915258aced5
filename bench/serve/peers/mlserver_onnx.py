"""MLServer custom runtime: the same ONNX model through ONNX Runtime (MLServer ships none)."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri


class OnnxClassifier(MLModel):
    """Scores the ``features`` tensor; returns the positive-class probability."""

    async def load(self) -> bool:
        """Open the ONNX Runtime session (one intra-op thread, as Argosy uses)."""
        uri = await get_model_uri(self._settings)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(uri, opts, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """V2 in, V2 out."""
        inp = payload.inputs[0]
        x = np.asarray(inp.data.root if hasattr(inp.data, "root") else inp.data, np.float32)
        x = x.reshape(inp.shape)
        prob = self.sess.run(None, {"features": x})[1][:, 1]
        out = ResponseOutput(
            name="probability", shape=[len(prob)], datatype="FP32", data=prob.tolist()
        )
        return InferenceResponse(model_name=self.name, outputs=[out])
