"""argosy.proc: every external tool runs bounded, and fails with one readable error."""

from __future__ import annotations

import sys

import pytest

from argosy import proc


def test_output_and_a_failures_last_lines_with_its_exit_code(tmp_path) -> None:
    assert proc.run([sys.executable, "-c", "print('hi')"]) == "hi\n"
    script = "import sys\nfor i in range(50): print('line', i, file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(proc.CommandError) as caught:
        proc.run([sys.executable, "-c", script], tmp_path)
    message = str(caught.value)
    assert f"failed (3) in {tmp_path}:" in message
    assert "line 49" in message
    assert "line 29" not in message  # only the last lines are quoted


def test_a_missing_tool_and_a_hung_one_are_errors_not_tracebacks(tmp_path) -> None:
    with pytest.raises(proc.CommandError, match="no-such-tool-here is not installed"):
        proc.run(["no-such-tool-here"])
    with pytest.raises(proc.GitError, match="did not finish in 1 s"):
        proc.run(
            [sys.executable, "-c", "import time; time.sleep(30)"], timeout=1, error=proc.GitError
        )


def test_a_long_command_reports_that_it_still_runs(monkeypatch) -> None:
    monkeypatch.setattr(proc, "HEARTBEAT_S", 0.2)
    ticks: list[float] = []
    proc.run(
        [sys.executable, "-c", "import time; time.sleep(1.1)"], tick=lambda _, s: ticks.append(s)
    )
    assert len(ticks) >= 3
    assert ticks == sorted(ticks)


def test_git_errors_carry_gits_own_explanation(tmp_path) -> None:
    with pytest.raises(proc.GitError, match="not a git repository"):
        proc.git(tmp_path, "rev-parse", "HEAD")
    assert proc.git_show(tmp_path, "HEAD", "x") is None
