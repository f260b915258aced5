"""The gate report (argosy.gatereport): one reader for registration, promotion and summaries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from argosy import gatereport
from argosy.gatereport import Check, GateReport, GateReportError, ModelRef

REPORT = GateReport(
    decision="reject",
    model=ModelRef("income-classifier", "ab" * 32, "run1", "models:/m-1"),
    challenger={"pr_auc": 0.61, "brier": math.nan, "latency_us_per_row": 3.0, "slices": {}},
    champion={"pr_auc": 0.70, "brier": 0.02, "latency_us_per_row": 3.5, "slices": {}},
    champion_version="3",
    checks=[
        Check("floor:pr_auc", True, "pr_auc 0.6100 vs floor 0.3000"),
        Check("non-regression:pr_auc", False, "pr_auc 0.6100 vs champion 0.7000"),
    ],
    floors={"pr_auc": 0.3},
    data_hash="d.dir",
    git_commit="c" * 40,
)


def test_a_written_report_reads_back_with_its_reasons_and_strict_json(tmp_path: Path) -> None:
    # Given a report written by the gate stage
    gatereport.write(tmp_path, REPORT)
    # Then gate.json is strict JSON (NaN as null) and gate.md is its PR body
    doc = json.loads((tmp_path / "gate.json").read_text())
    assert doc["challenger"]["brier"] is None
    assert doc["reasons"] == ["pr_auc 0.6100 vs champion 0.7000"]
    assert "❌ reject" in (tmp_path / "gate.md").read_text()
    # And every consumer reads the same typed report back
    report = gatereport.read(tmp_path / "gate.json")
    assert report.model == REPORT.model
    assert report.checks == REPORT.checks
    assert not report.promoted
    with pytest.raises(GateReportError, match=r"the gate rejected this model \(pr_auc 0\.6100"):
        report.require_promote("gate.json")


def test_the_headline_is_the_verdict_and_metrics_without_slices_or_checks() -> None:
    headline = gatereport.render_headline(REPORT)
    assert headline.startswith("## Model gate: ❌ reject `income-classifier`")
    assert "| pr_auc | ↑ higher | 0.7000 | 0.6100 | -0.0900 | 0.3000 |" in headline
    assert "### Slices" not in headline
    assert "### Checks" not in headline
    assert "### Checks" in gatereport.render_markdown(REPORT)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{", "not valid JSON"),
        ('{"decision": "maybe", "model": {}}', "not a gate report"),
        ('{"decision": "promote"}', "not a gate report"),
        ('{"decision": "promote", "model": {"name": "m", "sha256": "s", "uri": "u"}}', "run_id"),
        (
            '{"decision": "promote", "model": {"name": "m", "sha256": "s", "uri": "u", '
            '"run_id": "r"}, "checks": [{"name": "x"}]}',
            "not a gate report",
        ),
    ],
)
def test_malformed_reports_are_refused_with_the_reason(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "gate.json"
    path.write_text(text)
    with pytest.raises(GateReportError, match=needle):
        gatereport.read(path)


def test_a_missing_report_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(GateReportError, match=r"no gate report\. Run the pipeline"):
        gatereport.read(tmp_path / "gate.json")


def test_a_failed_write_leaves_the_earlier_report_in_force(tmp_path: Path, monkeypatch) -> None:
    # Given an earlier report
    gatereport.write(tmp_path, REPORT)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # When writing the second file fails (a full disk, say)
    import os

    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    passed = GateReport(**{**REPORT.__dict__, "decision": "promote", "reasons": []})
    with pytest.raises(OSError, match="No space"):
        gatereport.write(tmp_path, passed)
    monkeypatch.undo()
    # Then gate.json, written last, is still the earlier report, and no temporary file is left
    assert gatereport.read(tmp_path / "gate.json").decision == "reject"
    assert (tmp_path / "gate.json").read_bytes() == before["gate.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


BASE = {**REPORT.__dict__, "reasons": []}


def test_reports_are_links_where_they_are_published_and_paths_otherwise() -> None:
    reports = {"metrics / slices": "reports/metrics.json, reports/slices.json"}
    # Given a report of a run whose reports/ are published (ARGOSY_REPORTS_URL)
    published = GateReport(**{**BASE, "reports": reports, "reports_url": "https://r.example/run7/"})
    body = gatereport.render_markdown(published)
    # Then each report is a link there
    assert (
        "- metrics / slices: [reports/metrics.json](https://r.example/run7/metrics.json), "
        "[reports/slices.json](https://r.example/run7/slices.json)"
    ) in body
    # And without a published location, the repository paths
    local = gatereport.render_markdown(GateReport(**{**BASE, "reports": reports}))
    assert "- metrics / slices: `reports/metrics.json`, `reports/slices.json`" in local
