"""The .github files: zizmor finds nothing (its audits are live); CODEOWNERS guards production."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ZIZMOR = Path(sys.executable).parent / "zizmor"


def zizmor_findings(target: Path) -> list[str]:
    """Run zizmor offline and return the audit id of each finding."""
    result = subprocess.run(
        [str(ZIZMOR), "--offline", "--format", "json", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    return [finding["ident"] for finding in json.loads(result.stdout)]


def test_github_directory_is_zizmor_clean() -> None:
    # Given the committed workflows
    # When zizmor audits .github/ offline
    findings = zizmor_findings(REPO / ".github")
    # Then it reports nothing
    assert findings == []


def test_zizmor_audits_are_live() -> None:
    # Given a committed, deliberately insecure workflow
    fixture = Path(__file__).parent / "fixtures" / "zizmor" / "insecure-workflow.yaml"
    # When zizmor audits it the same way
    findings = set(zizmor_findings(fixture))
    # Then the audits that guard .github/ fire
    assert {"unpinned-uses", "template-injection", "dangerous-triggers", "artipacked"} <= findings


def test_promotion_workflow_runs_verify_on_prs_and_sync_after_merge() -> None:
    # Given the promotion workflow
    workflow = yaml.safe_load((REPO / ".github/workflows/promotion.yaml").read_text())
    jobs = workflow["jobs"]
    # Then PRs run `argosy promote verify`, pushes to main run `argosy registry sync`
    verify_steps = " ".join(s.get("run", "") for s in jobs["verify"]["steps"])
    sync_steps = " ".join(s.get("run", "") for s in jobs["sync"]["steps"])
    assert "argosy promote verify" in verify_steps
    assert "argosy registry sync" in sync_steps
    assert jobs["verify"]["if"] == "github.event_name == 'pull_request'"
    assert jobs["sync"]["if"] == "github.event_name == 'push'"
    # And nothing gets more than read access, and every action is pinned by a full SHA
    assert workflow["permissions"] == {}
    assert all(job["permissions"] == {"contents": "read"} for job in jobs.values())
    uses = [s["uses"] for job in jobs.values() for s in job["steps"] if "uses" in s]
    assert uses
    assert all(len(u.split("@")[1]) == 40 for u in uses)


def test_codeowners_requires_review_of_production() -> None:
    # Given CODEOWNERS
    rules = [
        line.split()
        for line in (REPO / ".github/CODEOWNERS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Then the production overlay has an owner team
    owners = {rule[0]: rule[1:] for rule in rules}
    assert owners["/manifests/overlays/production/"]
    assert all(o.startswith("@") for o in owners["/manifests/overlays/production/"])
    # And what runs in the cluster with its rights (workflows, platform RBAC) has owners too
    for path in ("/workflows/", "/manifests/platform/", "/argocd/", "/.github/"):
        assert owners.get(path), path
        assert all(o.startswith("@") for o in owners[path])
