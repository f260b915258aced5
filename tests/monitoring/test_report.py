"""The Evidently report and the monitor agree: same columns, same threshold, same side of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from argosy.monitoring.decision import window_status
from argosy.monitoring.drift import DriftSettings, evidently_drift

FEATURES = tuple(f"f{i}" for i in range(5))


def frames(shifted: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference and a window of 3,000 rows where the first ``shifted`` features moved."""
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({f: rng.normal(size=3000) for f in FEATURES})
    cur = pd.DataFrame(
        {f: rng.normal(size=3000) + (1.0 if i < shifted else 0.0) for i, f in enumerate(FEATURES)}
    )
    ref["score"] = rng.uniform(size=3000)
    cur["score"] = rng.uniform(size=3000) ** 3  # the score drifts too, but is not a feature
    return ref, cur


def headline(snapshot: Path) -> tuple[float, float]:
    """(count, share) of Evidently's drifted-columns metric in its saved snapshot."""
    for metric in json.loads(snapshot.read_text())["metrics"]:
        if metric["config"]["type"].endswith(":DriftedColumnsCount"):
            return metric["value"]["count"], metric["value"]["share"]
    raise AssertionError("no DriftedColumnsCount in the snapshot")


@pytest.mark.parametrize(("shifted", "expected"), [(0, "no_drift"), (1, "drift"), (2, "drift")])
def test_evidently_headline_counts_the_features_against_argosys_share(
    tmp_path: Path, shifted: int, expected: str
) -> None:
    # Given a drift share of 0.2, far below Evidently's default of 0.5, and a drifting score
    settings = DriftSettings(features=FEATURES, drift_share=0.2)
    ref, cur = frames(shifted)
    # When the report is made
    result = evidently_drift(
        ref, cur, settings, html=tmp_path / "r.html", raw_json=tmp_path / "r.json"
    )
    page = (tmp_path / "r.html").read_text()
    count, share = headline(tmp_path / "r.json")
    # Then Evidently counts the 5 features only (the score apart), as the monitor does
    assert (count, share) == (shifted, pytest.approx(result.drift_share))
    assert f"out of {len(FEATURES)})" in page
    assert result.prediction is not None
    assert result.prediction.drifted
    # and its headline is on the same side of the threshold as the window's status
    status = window_status(3000, result.drift_share, 1000, settings.drift_share)
    assert status == expected
    verdict = "detected" if expected == "drift" else "NOT detected"
    assert f"Dataset Drift is {verdict}. Dataset drift detection threshold is 0.2" in page


def test_a_share_exactly_at_the_threshold_is_drift_in_both() -> None:
    # Evidently's rule is share >= threshold; the window status follows it
    assert window_status(3000, 0.2, 1000, 0.2) == "drift"
    assert window_status(3000, 0.19, 1000, 0.2) == "no_drift"


def test_the_trigger_line_is_plain_and_bounded() -> None:
    from types import SimpleNamespace

    from argosy.monitoring.monitor import TRIGGER_MAX, trigger_text

    # Given reasons with quotes, braces, a newline and a template-looking text
    verdict = SimpleNamespace(
        reasons=["the period's rate is 1.5x", 'say "{{workflow.parameters.x}}"\nnext', "x" * 900]
    )
    text = trigger_text(SimpleNamespace(verdict=verdict))
    # Then it is one line of plain characters, starts with who asks, and is bounded
    assert text.startswith("drift monitor: the periods rate is 1.5x; say workflow.parameters.x")
    assert not set(text) & set("'\"{}\\\n")
    assert len(text) == TRIGGER_MAX
