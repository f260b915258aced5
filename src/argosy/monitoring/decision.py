"""The retraining decision: pure functions over window outcomes and the monitor's state.

Rules, in order:

1. A window with fewer than ``min_rows`` logged rows (contract.yaml ``monitoring.min_rows``) is
   ``insufficient_data``: too little to tell, which is never the same as "no drift".
2. Drift must hold: the last ``consecutive_windows`` windows must all be over the drift-share
   threshold. A window of insufficient data breaks the run (nobody saw drift hold through it).
3. Degraded label feedback is a reason on its own.
4. With a reason, the decision is ``retrain`` unless the last trigger was less than the cooldown
   ago (``cooldown``): retraining takes a while to reach production, and triggering again on the
   same drift would queue duplicate runs.
5. Without one: ``insufficient_data`` when the latest window had too little data,
   ``drift_pending`` when drift is seen but has not held long enough yet, else ``no_drift``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from argosy.files import write_atomic

WindowStatus = Literal["drift", "no_drift", "insufficient_data"]
Decision = Literal["retrain", "cooldown", "drift_pending", "no_drift", "insufficient_data"]
DECISIONS: tuple[str, ...] = (
    "retrain",
    "cooldown",
    "drift_pending",
    "no_drift",
    "insufficient_data",
)
HISTORY_LIMIT = 200


class StateError(RuntimeError):
    """The state file exists but cannot be read."""


@dataclass(frozen=True)
class WindowOutcome:
    """One evaluated window.

    Attributes:
        start: Window start (UTC, ISO 8601).
        end: Window end, exclusive.
        rows: Logged rows in the window.
        status: ``drift``, ``no_drift`` or ``insufficient_data``.
        drift_share: Share of drifted features, or None when not computed.
    """

    start: str
    end: str
    rows: int
    status: WindowStatus
    drift_share: float | None = None


def window_status(rows: int, drift_share: float | None, min_rows: int, threshold: float) -> str:
    """Classify a window: too few rows first, then the drift share against the threshold.

    A window drifts when at least ``threshold`` of the features drifted: Evidently's rule for
    dataset drift, so the report's headline and this status always agree.
    """
    if rows < min_rows or drift_share is None:
        return "insufficient_data"
    return "drift" if drift_share >= threshold else "no_drift"


@dataclass
class MonitorState:
    """What the monitor remembers between runs.

    Attributes:
        windows: Evaluated windows, oldest first (at most ``HISTORY_LIMIT``).
        last_trigger: When the monitor last decided to retrain (UTC, ISO 8601).
    """

    windows: list[WindowOutcome] = field(default_factory=list)
    last_trigger: str | None = None

    def record(self, outcome: WindowOutcome) -> None:
        """Add a window, replacing an earlier evaluation of the same window."""
        self.windows = [w for w in self.windows if w.end != outcome.end]
        self.windows.append(outcome)
        self.windows.sort(key=lambda w: w.end)
        del self.windows[:-HISTORY_LIMIT]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"windows": [asdict(w) for w in self.windows], "last_trigger": self.last_trigger}


def load_state(path: Path) -> MonitorState:
    """Read the state file; a missing file is a fresh start.

    Raises:
        StateError: The file exists but is not a state document.
    """
    if not path.exists():
        return MonitorState()
    try:
        doc = json.loads(path.read_text())
        return MonitorState(
            windows=[WindowOutcome(**w) for w in doc["windows"]],
            last_trigger=doc.get("last_trigger"),
        )
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise StateError(
            f"{path}: not a monitor state file ({exc}); move it aside to start afresh"
        ) from None


def save_state(state: MonitorState, path: Path) -> None:
    """Write the state atomically (a crash never leaves half a file)."""
    write_atomic(path, json.dumps(state.to_dict(), indent=2) + "\n")


@dataclass(frozen=True)
class Verdict:
    """The decision and why."""

    decision: Decision
    reasons: tuple[str, ...]
    drift_streak: int


def drift_streak(windows: list[WindowOutcome]) -> int:
    """How many of the latest windows in a row were over the drift threshold."""
    streak = 0
    for window in reversed(windows):
        if window.status != "drift":
            break
        streak += 1
    return streak


def decide(
    windows: list[WindowOutcome],
    feedback_reasons: list[str] | tuple[str, ...],
    last_trigger: datetime | None,
    now: datetime,
    consecutive_windows: int,
    cooldown: timedelta,
    min_rows: int | None = None,
) -> Verdict:
    """Apply the rules in the module docstring.

    Args:
        windows: Evaluated windows, oldest first.
        feedback_reasons: Reasons from label feedback (empty when quality is fine or unknown).
        last_trigger: When retraining was last triggered.
        now: The time of this decision.
        consecutive_windows: Windows in a row that must be over the threshold.
        cooldown: Minimum time between two triggers.
        min_rows: The window size below which there is too little data (contract.yaml
            ``monitoring.min_rows``), quoted in the ``insufficient_data`` reason.
    """
    streak = drift_streak(windows)
    reasons: list[str] = []
    if streak >= consecutive_windows:
        share = windows[-1].drift_share or 0.0
        reasons.append(
            f"drift held for {streak} consecutive windows (latest drift share {share:.2f})"
        )
    reasons += list(feedback_reasons)
    if reasons:
        if last_trigger is not None and now - last_trigger < cooldown:
            wait = last_trigger + cooldown - now
            hours = wait.total_seconds() / 3600
            note = f"cooldown: last trigger {last_trigger.isoformat()}, {hours:.1f} h left"
            return Verdict("cooldown", (*reasons, note), streak)
        return Verdict("retrain", tuple(reasons), streak)
    if not windows or windows[-1].status == "insufficient_data":
        rows = windows[-1].rows if windows else 0
        reason = f"latest window has {rows} logged rows"
        if min_rows is not None:
            reason += f", fewer than the {min_rows} of contract.yaml monitoring.min_rows"
        return Verdict("insufficient_data", (reason,), streak)
    if streak:
        return Verdict(
            "drift_pending",
            (f"drift in {streak} of the {consecutive_windows} consecutive windows required",),
            streak,
        )
    return Verdict("no_drift", (), streak)
