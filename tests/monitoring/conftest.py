"""Fixtures for the monitoring tests: a reference sample and prediction-log writers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from argosy.config import PrepareParams
from argosy.data import schema
from argosy.data.prepare import reference_sample
from argosy.data.simulate import SimulationSpec, simulate
from argosy.serving.predlog import ParquetSink, prediction_log_schema


@pytest.fixture(scope="session")
def reference() -> pd.DataFrame:
    """A 40k-row reference sample from a 120k-row baseline training period."""
    train = simulate(SimulationSpec(rows=120_000, seed=1234, start=date(2026, 1, 1), days=60))
    params = PrepareParams(valid_fraction=0.15, test_fraction=0.15, reference_rows=40_000, seed=7)
    return reference_sample(train, params)


def encoded(frame: pd.DataFrame) -> pd.DataFrame:
    """Model features as the server logs them, plus id, label and a stand-in score."""
    out = pd.DataFrame(schema.to_matrix(frame), columns=list(schema.FEATURES))
    out[schema.ID_COLUMN] = frame[schema.ID_COLUMN].to_numpy()
    out[schema.LABEL_COLUMN] = frame[schema.LABEL_COLUMN].to_numpy()
    # A plausible score without a trained model: risky merchants and remote channels score high.
    score = (frame["merchant_risk_score"] + 0.2 * (frame["channel"] != "pos")).clip(0, 1)
    out["score"] = score.to_numpy(np.float32)
    out["decision"] = (out["score"] >= 0.3).astype(np.int8)
    return out


def write_log(root: Path, rows: pd.DataFrame, start: datetime, span: timedelta) -> None:
    """Write ``rows`` as the server would, timestamps spread evenly over ``[start, start+span)``."""
    n = len(rows)
    stamps = pd.to_datetime(start) + pd.to_timedelta(np.arange(n) * (span / max(n, 1)))
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": stamps.as_unit("us"),
            "model_name": "fraud-detector",
            "model_version": "1",
            "transaction_id": rows[schema.ID_COLUMN].to_numpy(),
            **{f: rows[f].to_numpy(np.float32) for f in schema.FEATURES},
            "score": rows["score"].to_numpy(np.float32),
            "decision": rows["decision"].to_numpy(np.int8),
        }
    )
    sink = ParquetSink(str(root))
    for day, part in frame.groupby(frame["timestamp"].dt.strftime("%Y-%m-%d")):
        table = pa.Table.from_pandas(part, schema=prediction_log_schema(schema.FEATURES))
        sink(table, day)
