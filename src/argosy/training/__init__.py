"""XGBoost training, ONNX export with a parity check, and MLflow tracking."""
