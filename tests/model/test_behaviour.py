"""Behavioural tests of a trained model: invariance, directional expectations, minimum function.

The model is trained once for the module on a small simulated period through the real pipeline
functions (prepare, train with MLflow on SQLite, ONNX export) and scored through ONNX Runtime.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from argosy.config import Params
from argosy.data.contract import Contract
from argosy.data.prepare import prepare
from argosy.evaluation.metrics import OnnxModel
from argosy.examples.fraud.simulate import SimulationSpec, simulate_to
from argosy.hashing import file_sha256
from argosy.training.train import train


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, params: Params, contract: Contract
) -> tuple[OnnxModel, pd.DataFrame]:
    root = tmp_path_factory.mktemp("model")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    try:
        simulate_to(SimulationSpec(60_000, 5, date(2026, 1, 1), 45), root / "data")
        prepare(root / "data", root / "prepared", params.prepare, contract)
        train(
            root / "prepared",
            root / "model",
            params.train.model_copy(update={"device": "cpu"}),
            contract,
            root,
        )
    finally:
        mp.undo()
    test = pd.read_parquet(root / "prepared" / "test.parquet")
    return OnnxModel(root / "model"), test


def score(model: OnnxModel, frame: pd.DataFrame) -> np.ndarray:
    return model.predict(model.matrix(frame))


def test_metadata_contract(trained: tuple[OnnxModel, pd.DataFrame], contract: Contract) -> None:
    model, _ = trained
    meta = model.metadata
    assert meta.name == contract.name
    assert meta.id_column == contract.id
    assert [s.name for s in meta.specs] == list(contract.feature_names)
    assert len(meta.features) >= 25
    assert meta.input_name == "features"
    assert 0 < meta.threshold < 1
    assert meta.sha256 == model.sha256
    assert meta.engine == "local"
    assert meta.best_iteration is not None


def test_invariant_to_transaction_and_customer_ids(trained: tuple[OnnxModel, pd.DataFrame]) -> None:
    model, test = trained
    renamed = test.copy()
    renamed["transaction_id"] = "renamed-" + renamed["transaction_id"]
    renamed["customer_id"] = renamed["customer_id"].sample(frac=1, random_state=0).to_numpy()
    np.testing.assert_array_equal(score(model, test), score(model, renamed))


@pytest.mark.parametrize(
    ("column", "value"),
    [("failed_logins_24h", 6), ("cvv_match", 0), ("new_device", 1), ("customer_txn_count_1h", 8)],
)
def test_risk_factor_raises_scores(
    trained: tuple[OnnxModel, pd.DataFrame], column: str, value: int
) -> None:
    # Given legitimate remote transactions / When a known risk factor is switched on
    model, test = trained
    base = test[(test.is_fraud == 0) & (test.channel != "pos")].head(2000)
    risky = base.copy()
    risky[column] = value
    # Then the mean fraud score rises clearly
    assert score(model, risky).mean() > 1.5 * score(model, base).mean()


def test_obvious_fraud_is_flagged(trained: tuple[OnnxModel, pd.DataFrame]) -> None:
    # Given card-testing and account-takeover signatures on otherwise ordinary remote transactions
    model, test = trained
    obvious = test[test.channel == "ecommerce"].head(300).copy()
    obvious["failed_logins_24h"] = 7
    obvious["new_device"] = 1
    obvious["ip_country_mismatch"] = 1
    obvious["cvv_match"] = 0
    obvious["billing_shipping_mismatch"] = 1
    obvious["email_domain_risk"] = 0.9
    # Then nearly all are flagged at the model's threshold
    assert (score(model, obvious) >= model.threshold).mean() >= 0.95


def test_tampered_model_file_is_refused(
    trained: tuple[OnnxModel, pd.DataFrame], tmp_path: Path
) -> None:
    from argosy.modeldir import ModelDirError

    model, _ = trained
    # Given a copy of the model directory with one byte of model.onnx flipped
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "metadata.json").write_text(json.dumps(model.metadata.to_dict()))
    onnx_bytes = bytearray(Path(model.onnx_path).read_bytes())
    onnx_bytes[len(onnx_bytes) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(onnx_bytes))
    # When loaded / Then it is refused, naming both hashes
    with pytest.raises(ModelDirError, match="does not match the pinned"):
        OnnxModel(copy)
    assert file_sha256(copy / "model.onnx") != model.sha256
