"""Open Inference Protocol (V2) model server on ONNX Runtime, with metrics and a prediction log.

Run it with ``python -m argosy.serving --model-dir DIR`` (or ``argosy serve``). Only light
dependencies (``argosy[serve]``): numpy, onnxruntime, httptools, uvloop, and pyarrow + fsspec for
the prediction log. Importing this package imports nothing heavy; the drift monitor imports the log
contract from ``argosy.predlog`` (``prediction_log_columns``, ``prediction_log_schema``).
"""
