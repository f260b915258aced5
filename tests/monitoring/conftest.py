"""Fixtures for the monitoring tests: the example's contract, a reference sample, log writers.

The reference is built here as prepare builds it (a seeded sample of the training period, its
features encoded with ``contract.to_matrix`` and its label made 0/1 with ``contract.labels``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from argosy.data.contract import Contract, load_contract
from argosy.examples.fraud.simulate import SimulationSpec, simulate
from argosy.monitoring.columns import ROW_ID_COLUMN
from argosy.predlog import prediction_log_schema
from argosy.serving.predlog import ParquetSink

REPO = Path(__file__).resolve().parents[2]


@cache
def fraud_contract() -> Contract:
    """The shipped example's contract (the repository's contract.yaml)."""
    return load_contract(REPO / "contract.yaml")


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The shipped example's contract."""
    return fraud_contract()


def reference_frame(train: pd.DataFrame, contract: Contract, rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``train``'s features as the server logs them, and the label as 0/1."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(train), size=min(rows, len(train)), replace=False))
    sample = train.iloc[index]
    reference = pd.DataFrame(contract.to_matrix(sample), columns=list(contract.feature_names))
    reference[contract.label.column] = contract.labels(sample)
    return reference


@pytest.fixture(scope="session")
def reference(contract: Contract) -> pd.DataFrame:
    """A 40k-row reference sample from a 120k-row baseline training period."""
    train = simulate(SimulationSpec(rows=120_000, seed=1234, start=date(2026, 1, 1), days=60))
    return reference_frame(train, contract, 40_000, 7)


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    """20k baseline rows of the example (read-only: copy before mutating)."""
    return simulate(SimulationSpec(rows=20_000, seed=11, start=date(2026, 1, 1), days=30))


def encoded(
    frame: pd.DataFrame, contract: Contract | None = None, score: np.ndarray | None = None
) -> pd.DataFrame:
    """Model features as the server logs them, the row id, the raw id and label, a score.

    Args:
        frame: Raw rows.
        contract: Their contract (default: the example's).
        score: The logged score; by default a plausible stand-in for the example without a trained
            model (risky merchants and remote channels score high).
    """
    contract = contract or fraud_contract()
    out = pd.DataFrame(contract.to_matrix(frame), columns=list(contract.feature_names))
    if contract.id is not None:
        out[ROW_ID_COLUMN] = frame[contract.id].astype(str).to_numpy()
        out[contract.id] = frame[contract.id].to_numpy()
    out[contract.label.column] = frame[contract.label.column].to_numpy()
    if score is None:
        score = (frame["merchant_risk_score"] + 0.2 * (frame["channel"] != "pos")).clip(0, 1)
    out["score"] = np.asarray(score, dtype=np.float32)
    out["decision"] = (out["score"] >= 0.3).astype(np.int8)
    return out


def write_log(
    root: Path,
    rows: pd.DataFrame,
    start: datetime,
    span: timedelta,
    contract: Contract | None = None,
) -> None:
    """Write ``rows`` as the server would, timestamps spread evenly over ``[start, start+span)``."""
    contract = contract or fraud_contract()
    features = list(contract.feature_names)
    n = len(rows)
    stamps = pd.to_datetime(start) + pd.to_timedelta(np.arange(n) * (span / max(n, 1)))
    ids = rows[ROW_ID_COLUMN].to_numpy() if ROW_ID_COLUMN in rows else [None] * n
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": stamps.as_unit("us"),
            "model_name": contract.name,
            "model_version": "1",
            ROW_ID_COLUMN: ids,
            **{f: rows[f].to_numpy(np.float32) for f in features},
            "score": rows["score"].to_numpy(np.float32),
            "decision": rows["decision"].to_numpy(np.int8),
        }
    )
    sink = ParquetSink(str(root))
    for day, part in frame.groupby(frame["timestamp"].dt.strftime("%Y-%m-%d")):
        table = pa.Table.from_pandas(part, schema=prediction_log_schema(features))
        sink(table, day)
