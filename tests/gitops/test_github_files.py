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


def test_verify_runs_the_base_branchs_code_with_a_read_only_token_in_one_step() -> None:
    # Given the promotion workflow's verify job
    workflow = yaml.safe_load((REPO / ".github/workflows/promotion.yaml").read_text())
    steps = workflow["jobs"]["verify"]["steps"]
    checkouts = [s for s in steps if s.get("uses", "").startswith("actions/checkout@")]
    # Then the base branch and the pull request are checked out into separate paths
    refs = {s["with"]["path"]: s["with"]["ref"] for s in checkouts}
    assert refs == {
        "base": "${{ github.event.pull_request.base.sha }}",
        "pr": "${{ github.event.pull_request.head.sha }}",
    }
    assert all(s["with"]["persist-credentials"] is False for s in checkouts)
    # And only the base's code is installed and run, against the pull request's manifests
    runs = [s.get("run", "") for s in steps]
    assert "uv sync --directory base --no-dev --extra pipeline" in runs
    verify = next(s for s in steps if "promote verify" in s.get("run", ""))
    assert "base/.venv/bin/argosy promote verify --repo-dir pr --base-dir base" in verify["run"]
    assert not any("uv run" in r or "pr/.venv" in r for r in runs)
    # And the registry token is the read-only one, in that step alone (no workflow-level secrets)
    assert verify["env"]["MLFLOW_TRACKING_TOKEN"] == "${{ secrets.MLFLOW_READONLY_TOKEN }}"
    other = [s for s in steps if s is not verify]
    assert not any("secrets." in json.dumps(s) for s in other)
    assert "secrets." not in json.dumps(workflow.get("env", {}))
    # And a configured signing key makes a signature mandatory
    assert "--require-signature" in verify["run"]


def test_images_build_from_base_digests_and_hashed_requirements() -> None:
    # Given the image workflow and the Dockerfile it builds
    workflow = yaml.safe_load((REPO / ".github/workflows/images.yaml").read_text())
    dockerfile = (REPO / "Dockerfile").read_text()
    runs = "\n".join(s.get("run", "") for s in workflow["jobs"]["build"]["steps"])
    # Then every build argument the Dockerfile takes for a base image is passed, as a digest
    args = {
        line.split("=")[0].removeprefix("ARG ")
        for line in dockerfile.splitlines()
        if line.startswith("ARG ")
    }
    assert args == {"PYTHON_IMAGE", "UV_IMAGE"}
    for arg in args:
        assert f'--build-arg {arg}="$' in runs, arg
    assert "docker buildx imagetools inspect" in runs
    assert "sha256:" + "?" * 64 in runs  # anything but a full digest stops the build
    # And the workflow's base tags are the Dockerfile's defaults
    env = workflow["env"]
    assert f"ARG PYTHON_IMAGE={env['PYTHON_BASE']}" in dockerfile
    assert f"ARG UV_IMAGE={env['UV_BASE']}" in dockerfile
    # And requirements are exported with their hashes and installed only if they match
    exports = [line for line in dockerfile.splitlines() if line.startswith("RUN uv export")]
    assert len(exports) == 2
    assert not any("--no-hashes" in line for line in exports)
    assert dockerfile.count("--require-hashes -r requirements.txt") == 2
