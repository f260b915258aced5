"""The retraining decision as pure functions: thresholds, consecutive windows, cooldown, state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from argosy.monitoring.decision import (
    MonitorState,
    StateError,
    WindowOutcome,
    decide,
    load_state,
    save_state,
    window_status,
)

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
COOLDOWN = timedelta(hours=72)


def windows(*statuses: str) -> list[WindowOutcome]:
    """Consecutive one-hour windows ending at NOW with the given statuses."""
    out = []
    for i, status in enumerate(statuses):
        end = NOW - timedelta(hours=len(statuses) - 1 - i)
        share = {"drift": 0.3, "no_drift": 0.0}.get(status)
        rows = 10 if status == "insufficient_data" else 50_000
        out.append(
            WindowOutcome(
                (end - timedelta(hours=1)).isoformat(), end.isoformat(), rows, status, share
            )
        )
    return out


def test_too_few_rows_is_insufficient_data_even_when_the_share_is_zero() -> None:
    # Given a window with fewer rows than the minimum and a computed share of zero
    # When it is classified
    status = window_status(rows=999, drift_share=0.0, min_rows=1000, threshold=0.1)
    # Then it is insufficient data, not "no drift"
    assert status == "insufficient_data"
    assert window_status(1000, 0.0, 1000, 0.1) == "no_drift"
    assert window_status(1000, 0.11, 1000, 0.1) == "drift"
    assert window_status(1000, 0.1, 1000, 0.1) == "drift"  # at the threshold, as Evidently
    assert window_status(1000, 0.09, 1000, 0.1) == "no_drift"


@pytest.mark.parametrize(
    ("statuses", "expected", "streak"),
    [
        (("no_drift", "drift", "drift"), "retrain", 2),
        (("drift", "drift", "drift"), "retrain", 3),
        (("no_drift", "no_drift", "drift"), "drift_pending", 1),
        (("drift", "no_drift", "drift"), "drift_pending", 1),
        (("drift", "insufficient_data", "drift"), "drift_pending", 1),
        (("drift", "drift", "insufficient_data"), "insufficient_data", 0),
        (("drift", "drift", "no_drift"), "no_drift", 0),
        ((), "insufficient_data", 0),
    ],
)
def test_drift_must_hold_for_consecutive_windows(
    statuses: tuple[str, ...], expected: str, streak: int
) -> None:
    # Given a history of window outcomes and a rule of two consecutive windows
    history = windows(*statuses)
    # When the monitor decides with no label feedback and no earlier trigger
    verdict = decide(history, (), None, NOW, consecutive_windows=2, cooldown=COOLDOWN)
    # Then only an unbroken run of drift windows triggers retraining
    assert verdict.decision == expected
    assert verdict.drift_streak == streak


def test_cooldown_holds_back_a_second_trigger_then_lets_it_through() -> None:
    # Given sustained drift and a trigger 10 hours ago
    history = windows("drift", "drift")
    last = NOW - timedelta(hours=10)
    # When the monitor decides inside, and then after, the 72-hour cooldown
    inside = decide(history, (), last, NOW, 2, COOLDOWN)
    after = decide(history, (), last, last + COOLDOWN, 2, COOLDOWN)
    # Then the first is held back with the time left, the second retrains
    assert inside.decision == "cooldown"
    assert any("62.0 h left" in r for r in inside.reasons)
    assert after.decision == "retrain"


def test_degraded_label_feedback_alone_triggers_retraining() -> None:
    # Given no feature drift but live recall below its floor
    history = windows("no_drift", "no_drift")
    # When the monitor decides
    verdict = decide(history, ["live recall 0.2 below 0.5"], None, NOW, 2, COOLDOWN)
    # Then it retrains and says why
    assert verdict.decision == "retrain"
    assert verdict.reasons == ("live recall 0.2 below 0.5",)


def test_feedback_reason_with_insufficient_window_still_retrains() -> None:
    # Given a quiet latest window but degraded labels from the lookback
    # When the monitor decides
    verdict = decide(
        windows("insufficient_data"), ["positive-label rate 2x"], None, NOW, 2, COOLDOWN
    )
    # Then the label evidence is enough
    assert verdict.decision == "retrain"


def test_state_round_trips_and_replaces_a_re_evaluated_window(tmp_path: Path) -> None:
    # Given a state with two windows, one of them evaluated again with a new result
    state = MonitorState()
    first, second = windows("no_drift", "drift")
    state.record(first)
    state.record(second)
    state.record(WindowOutcome(second.start, second.end, 60_000, "no_drift", 0.0))
    state.last_trigger = NOW.isoformat()
    # When it is saved and loaded
    save_state(state, tmp_path / "state.json")
    loaded = load_state(tmp_path / "state.json")
    # Then the re-evaluation replaced the earlier result and nothing else changed
    assert [w.status for w in loaded.windows] == ["no_drift", "no_drift"]
    assert loaded.windows[-1].rows == 60_000
    assert loaded.last_trigger == NOW.isoformat()


def test_missing_state_is_a_fresh_start_and_a_corrupt_one_an_error(tmp_path: Path) -> None:
    # Given no state file, and then a state file that is not JSON
    assert load_state(tmp_path / "absent.json").windows == []
    bad = tmp_path / "state.json"
    bad.write_text("{not json")
    # When it is loaded
    # Then the error names the file and how to recover
    with pytest.raises(StateError, match=r"state\.json: not a monitor state file.*move it aside"):
        load_state(bad)


def test_insufficient_data_names_the_contract_key_and_both_numbers() -> None:
    # Given a latest window of 10 rows and a minimum of 2000 from the contract
    # When the monitor decides
    verdict = decide(windows("insufficient_data"), (), None, NOW, 2, COOLDOWN, min_rows=2000)
    # Then the reason says how many rows there were, how many are needed, and where that is set
    assert verdict.decision == "insufficient_data"
    assert verdict.reasons == (
        "latest window has 10 logged rows, fewer than the 2000 of contract.yaml "
        "monitoring.min_rows",
    )
