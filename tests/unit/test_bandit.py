"""bandit on the package: no finding of medium or high severity (a reasoned `# nosec` aside)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BANDIT = Path(sys.executable).parent / "bandit"


def test_bandit_finds_nothing_of_medium_or_high_severity() -> None:
    done = subprocess.run(
        [str(BANDIT), "-q", "-r", str(REPO / "src"), "-ll", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(done.stdout)
    found = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in report["results"]
    ]
    assert found == []
    assert done.returncode == 0, done.stderr
