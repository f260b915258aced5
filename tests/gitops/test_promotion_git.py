"""Promotion, verification and rollback against real bare git repositories and real MLflow.

Git: ``git init --bare`` origins in tmp_path, cloned and pushed to for real. MLflow: SQLite in
tmp_path, with runs logged exactly as the train stage logs them. GitHub: a local HTTP server on
127.0.0.1 that checks method, path, headers and body of each request (see conftest.FakeGitHub).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argosy.cli import app
from argosy.gatereport import GateReportError
from argosy.gitops import promote as promotion
from argosy.gitops.github import GitHubSettings
from argosy.pin import parse_pin, read_pin
from argosy.registry import models

from .gitops_fixtures import MODEL, FakeGitHub, Pipeline, Remote, run_git

STAGING = "manifests/overlays/staging/model.yaml"
PRODUCTION = "manifests/overlays/production/model.yaml"


def registered(pipeline: Pipeline, client, **kwargs) -> models.RegisteredVersion:
    model = pipeline.train(**kwargs)
    return models.register(model.gate_json, client)


def settings(api: FakeGitHub) -> GitHubSettings:
    # The fake API is plain http on 127.0.0.1: opted in explicitly, as only a test may.
    return GitHubSettings(
        repository=api.repository, token=api.token, api_url=api.base_url, allow_http=True
    )


def merge(remote: Remote, branch: str) -> None:
    """Emulate merging a pull request: fast-forward main to the branch and delete it."""
    run_git(remote.bare, "update-ref", "refs/heads/main", f"refs/heads/{branch}")
    run_git(remote.bare, "update-ref", "-d", f"refs/heads/{branch}")


def test_staging_promotion_is_one_commit_changing_only_the_pin(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given a registered, gate-passed model and a clone of origin
    version = registered(pipeline, mlflow_client)
    clone = remote.clone("work")
    before = remote.main()
    # When it is promoted to staging
    outcome = promotion.promote(clone, version, "staging", body="")
    # Then origin/main has exactly one new commit, touching only the staging pin
    assert outcome.changed
    assert run_git(remote.bare, "rev-list", "--count", f"{before}..main").strip() == "1"
    assert remote.changed_files(remote.main()) == [STAGING]
    subject = remote.log()[0]
    assert subject == f"Promote {MODEL} v{version.version} to staging"
    message = run_git(remote.bare, "log", "-1", "--format=%B", "main")
    assert "pr_auc=" in message
    assert version.sha256 in message
    # And the pin names the model, its sha256 and its storage in the run's serving/ directory
    text = remote.show("main", STAGING)
    assert f"argosy.io/model-name: {MODEL}" in text
    assert f"argosy.io/model-version: '{version.version}'" in text
    assert version.sha256 in text
    assert f"storageUri: {pipeline.made[0].artifact_uri}/serving" in text
    # And the caller's working tree and branches are untouched
    assert run_git(clone, "status", "--porcelain") == ""
    assert run_git(clone, "worktree", "list").count("\n") == 1


def test_staging_promotion_twice_makes_no_new_commit(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given a model already promoted to staging
    version = registered(pipeline, mlflow_client)
    clone = remote.clone("work")
    promotion.promote(clone, version, "staging", body="")
    head = remote.main()
    # When the same promotion runs again
    again = promotion.promote(clone, version, "staging", body="")
    # Then nothing is committed or pushed
    assert not again.changed
    assert remote.main() == head


def test_rejected_push_is_retried_on_top_of_the_competing_commit(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given another clone that pushes to main right before our first push (a real race)
    version = registered(pipeline, mlflow_client)
    ours, theirs = remote.clone("ours"), remote.clone("theirs")

    def competing_push(attempt: int) -> None:
        if attempt == 1:
            (theirs / "README.md").write_text("changed concurrently\n")
            run_git(theirs, "commit", "--quiet", "-am", "Concurrent change")
            run_git(theirs, "push", "--quiet", "origin", "main")

    # When the promotion runs
    outcome = promotion.promote(ours, version, "staging", body="", before_push=competing_push)
    # Then both commits landed: ours on top of theirs, nothing lost
    assert outcome.changed
    assert remote.log()[:2] == [
        f"Promote {MODEL} v{version.version} to staging",
        "Concurrent change",
    ]
    assert remote.show("main", "README.md") == "changed concurrently\n"
    assert version.sha256 in remote.show("main", STAGING)


def test_two_concurrent_promotions_both_land(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given two versions promoted to staging at the same time from two clones (threads)
    first, second = registered(pipeline, mlflow_client), registered(pipeline, mlflow_client)
    clones = [remote.clone("a"), remote.clone("b")]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(clone: Path, version: models.RegisteredVersion) -> None:
        try:
            # Both commit on the same main, then push at the same moment: one is rejected.
            promotion.promote(
                clone,
                version,
                "staging",
                body="",
                before_push=lambda attempt: barrier.wait(30) if attempt == 1 else None,
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(c, v))
        for c, v in zip(clones, (first, second), strict=True)
    ]
    # When both run
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Then neither failed and both commits are on main (no lost update)
    assert errors == []
    subjects = remote.log()
    for version in (first, second):
        assert f"Promote {MODEL} v{version.version} to staging" in subjects
    final = parse_pin(remote.show("main", STAGING), STAGING)
    assert final.version in {first.version, second.version}


def test_unpromotable_version_is_refused_with_no_branch(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given a model version registered by hand, without a gate decision
    model = pipeline.train()
    mlflow_client.create_registered_model(MODEL)
    mv = mlflow_client.create_model_version(MODEL, source=model.model_uri, run_id=model.run_id)
    version = models.get_version(mlflow_client, MODEL, str(mv.version))
    clone = remote.clone("work")
    before = (remote.main(), remote.branches())
    # When it is promoted to production
    with pytest.raises(promotion.PromotionError, match="gate decision is 'missing'"):
        promotion.promote(clone, version, "production", body="x")
    # Then origin is exactly as before: no branch, no commit
    assert (remote.main(), remote.branches()) == before


def test_rejected_gate_is_not_registered(pipeline: Pipeline, mlflow_client) -> None:
    # Given a gate report that rejected the model
    model = pipeline.train(decision="reject")
    # When registration is attempted
    with pytest.raises(GateReportError, match="the gate rejected this model"):
        models.register(model.gate_json, mlflow_client)
    # Then no model version exists
    assert mlflow_client.search_model_versions(f"name='{MODEL}'") == []


def test_production_opens_one_pull_request_with_the_gate_report(
    remote: Remote, pipeline: Pipeline, mlflow_client, github_api: FakeGitHub
) -> None:
    # Given a registered model and the local GitHub API
    version = registered(pipeline, mlflow_client)
    body = pipeline.made[0].gate_md.read_text()
    clone = remote.clone("work")
    main_before = remote.main()
    # When it is promoted to production twice
    first = promotion.promote(clone, version, "production", body=body, github=settings(github_api))
    second = promotion.promote(clone, version, "production", body=body, github=settings(github_api))
    # Then the branch exists with one commit on main, main itself is untouched
    branch = f"promote/{MODEL}-v{version.version}"
    assert remote.branches() == sorted(["main", branch])
    assert remote.main() == main_before
    assert remote.changed_files(f"refs/heads/{branch}") == [PRODUCTION]
    # And exactly one pull request exists, whose body is the gate report, with labels
    assert list(github_api.pulls) == [1]
    pull = github_api.pulls[1]
    assert (pull["head"], pull["base"], pull["body"]) == (branch, "main", body)
    assert set(github_api.labels[1]) == {"promotion", "env:production", f"model:{MODEL}"}
    assert (
        first.pull_request == second.pull_request == ("https://github.example/acme/argosy/pull/1")
    )
    creates = [r for r in github_api.requests if r.method == "POST" and r.path.endswith("/pulls")]
    assert len(creates) == 1
    assert all(r.headers["authorization"] == "token test-token-123" for r in github_api.requests)
    assert not second.changed or second.commit == first.commit


def test_pull_request_api_error_leaves_no_branch(
    remote: Remote, pipeline: Pipeline, mlflow_client, github_api: FakeGitHub
) -> None:
    # Given an API that refuses to create pull requests
    version = registered(pipeline, mlflow_client)
    github_api.fail[("POST", "/repos/acme/argosy/pulls")] = 422
    clone = remote.clone("work")
    # When production promotion runs
    with pytest.raises(promotion.PromotionError) as err:
        promotion.promote(clone, version, "production", body="b", github=settings(github_api))
    # Then the message explains the API error and the cleanup, and no branch or PR remains
    message = str(err.value)
    assert "GitHub API error 422 while creating the pull request" in message
    assert "injected failure" in message
    assert "was deleted again" in message
    assert remote.branches() == ["main"]
    assert github_api.pulls == {}


def test_bad_token_fails_before_any_branch(
    remote: Remote, pipeline: Pipeline, mlflow_client, github_api: FakeGitHub
) -> None:
    # Given a wrong token
    version = registered(pipeline, mlflow_client)
    wrong = GitHubSettings(
        github_api.repository, "wrong-token", github_api.base_url, allow_http=True
    )
    clone = remote.clone("work")
    # When production promotion runs
    with pytest.raises(promotion.PromotionError, match=r"401.*Bad credentials.*invalid or expired"):
        promotion.promote(clone, version, "production", body="b", github=wrong)
    # Then nothing was pushed
    assert remote.branches() == ["main"]


def test_invalid_overlay_is_not_pushed(remote: Remote, pipeline: Pipeline, mlflow_client) -> None:
    # Given an origin whose staging overlay no longer renders (a broken kustomization)
    seed = remote.clone("breaker")
    kustomization = seed / "manifests/overlays/staging/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - path: missing.yaml\n")
    run_git(seed, "commit", "--quiet", "-am", "Break staging")
    run_git(seed, "push", "--quiet", "origin", "main")
    version = registered(pipeline, mlflow_client)
    head = remote.main()
    # When a promotion to staging runs
    with pytest.raises(promotion.PromotionError, match="does not validate, nothing was pushed"):
        promotion.promote(remote.clone("work"), version, "staging", body="")
    # Then main did not move
    assert remote.main() == head


def test_verify_accepts_promoted_pins_and_rejects_hand_edits(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given a model promoted to staging, checked out
    version = registered(pipeline, mlflow_client)
    clone = remote.clone("work")
    promotion.promote(clone, version, "staging", body="")
    run_git(clone, "pull", "--quiet")
    pin = read_pin(clone / STAGING)
    # Then verify passes it, including the stored model.onnx
    assert models.verify_pin(pin, mlflow_client) == []
    # When the pin is hand-edited to another sha256 (a model nobody validated)
    text = (clone / STAGING).read_text().replace(version.sha256, "f" * 64)
    (clone / STAGING).write_text(text)
    problems = models.verify_pin(read_pin(clone / STAGING), mlflow_client)
    # Then verify fails and says why
    assert any("registry has" in p for p in problems)
    assert any("the stored model.onnx has sha256" in p for p in problems)
    # And through the CLI the check exits non-zero
    result = CliRunner().invoke(
        app, ["promote", "verify", "--repo-dir", str(clone), "--env", "staging"]
    )
    assert result.exit_code == 1
    assert "FAIL staging" in result.output


def test_verify_rejects_a_model_registered_without_the_gate(
    remote: Remote, pipeline: Pipeline, mlflow_client, tmp_path: Path
) -> None:
    # Given an overlay hand-edited to pin a version registered outside argosy (no gate report)
    model = pipeline.train()
    mlflow_client.create_registered_model(MODEL)
    mv = mlflow_client.create_model_version(MODEL, source=model.model_uri, run_id=model.run_id)
    pin = promotion.ModelPin(
        name=MODEL,
        version=str(mv.version),
        sha256=model.sha256,
        run_id=model.run_id,
        storage_uri=f"{model.artifact_uri}/serving",
    )
    # When it is verified
    problems = models.verify_pin(pin, mlflow_client)
    # Then the missing gate is named
    assert any("gate decision is ''" in p for p in problems)
    assert any("no gate report logged" in p for p in problems)


def test_rollback_restores_previous_pin_byte_for_byte(
    remote: Remote, pipeline: Pipeline, mlflow_client, github_api: FakeGitHub
) -> None:
    # Given production promoted to v1 then v2 (pull requests merged)
    v1, v2 = registered(pipeline, mlflow_client), registered(pipeline, mlflow_client)
    clone = remote.clone("work")
    for version in (v1, v2):
        promotion.promote(clone, version, "production", body="b", github=settings(github_api))
        merge(remote, f"promote/{MODEL}-v{version.version}")
    v1_text = run_git(remote.bare, "show", f"main~1:{PRODUCTION}")
    assert f"'{v1.version}'" in v1_text

    def mark(pin) -> None:
        models.mark_rolled_back(mlflow_client, pin.name, pin.version, "test", env="production")

    # When production is rolled back
    outcome = promotion.rollback(
        clone, "production", mark_rolled_back=mark, github=settings(github_api)
    )
    # Then a rollback PR restores v1's model.yaml byte for byte
    branch = f"rollback/{MODEL}-v{v2.version}-to-v{v1.version}"
    assert outcome.branch == branch
    assert remote.show(f"refs/heads/{branch}", PRODUCTION) == v1_text
    pulls = [p for p in github_api.pulls.values() if p["head"] == branch]
    assert len(pulls) == 1
    assert "rollback" in github_api.labels[max(github_api.pulls)]
    # And v2 is marked, so promoting it again is refused and changes nothing
    assert models.get_version(mlflow_client, MODEL, v2.version).rolled_back_in == {"production"}
    branches = remote.branches()
    with pytest.raises(promotion.PromotionError, match="rolled back"):
        promotion.promote(
            clone,
            models.get_version(mlflow_client, MODEL, v2.version),
            "production",
            body="b",
            github=settings(github_api),
        )
    assert remote.branches() == branches
    # And running the rollback again updates the same PR instead of opening another
    promotion.rollback(clone, "production", mark_rolled_back=mark, github=settings(github_api))
    assert len([p for p in github_api.pulls.values() if p["head"] == branch]) == 1
    # And after the merge, verify accepts what production pins
    merge(remote, branch)
    assert remote.show("main", PRODUCTION) == v1_text
    assert models.verify_pin(parse_pin(v1_text, STAGING), mlflow_client) == []


def test_rollback_without_history_is_refused(remote: Remote) -> None:
    # Given production with nothing pinned yet
    clone = remote.clone("work")
    # When a rollback is asked for
    with pytest.raises(promotion.PromotionError, match="nothing is pinned now"):
        promotion.rollback(clone, "production")
    # Then origin is unchanged
    assert remote.branches() == ["main"]


def _rollback(clone: Path, *args: str):
    return CliRunner().invoke(app, ["rollback", "--repo-dir", str(clone), *args])


def test_a_staging_rollback_marks_staging_only(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given v1 then v2 in staging, and v2 in production (its pull request merged)
    v1, v2 = registered(pipeline, mlflow_client), registered(pipeline, mlflow_client)
    clone = remote.clone("work")
    for version in (v1, v2):
        promotion.promote(clone, version, "staging", body="")
    promotion.promote(clone, v2, "production", body="b")
    merge(remote, f"promote/{MODEL}-v{v2.version}")
    # When staging is rolled back through the CLI
    result = _rollback(clone, "--env", "staging", "--reason", "latency regression")
    # Then staging pins v1 again and v2 is marked rolled back in staging only, with the reason
    assert result.exit_code == 0, result.output
    assert f"'{v1.version}'" in remote.show("main", STAGING)
    marked = models.get_version(mlflow_client, MODEL, v2.version)
    assert marked.rolled_back_in == {"staging"}
    tags = mlflow_client.get_model_version(MODEL, v2.version).tags
    assert tags["argosy.rolled_back.staging.reason"] == "rolled back in staging: latency regression"
    # And production's verify still passes on v2, staging's on v1, and the CLI agrees
    run_git(clone, "pull", "--quiet")
    assert models.verify_pin(read_pin(clone / PRODUCTION), mlflow_client, env="production") == []
    assert models.verify_pin(read_pin(clone / STAGING), mlflow_client, env="staging") == []
    verify = CliRunner().invoke(app, ["promote", "verify", "--repo-dir", str(clone)])
    assert verify.exit_code == 0, verify.output
    # And the registry aliases follow git: production -> v2, staging -> v1
    synced = CliRunner().invoke(app, ["registry", "sync", "--repo-dir", str(clone)])
    assert synced.exit_code == 0, synced.output
    assert str(mlflow_client.get_model_version_by_alias(MODEL, "production").version) == v2.version
    assert str(mlflow_client.get_model_version_by_alias(MODEL, "staging").version) == v1.version
    # And v2 may still go to production, but never back to staging
    with pytest.raises(promotion.PromotionError, match="rolled back in staging"):
        promotion.promote(clone, marked, "staging", body="")
    # And a pin of v2 in staging fails verify there, while production's does not
    problems = models.verify_pin(read_pin(clone / PRODUCTION), mlflow_client, env="staging")
    assert any("marked rolled back in staging" in p for p in problems)


def test_rollback_to_a_rolled_back_version_needs_force_and_a_reason(
    remote: Remote, pipeline: Pipeline, mlflow_client
) -> None:
    # Given staging went v1 -> v2, was rolled back to v1 (v2 marked), then moved on to v3
    v1, v2, v3 = (registered(pipeline, mlflow_client) for _ in range(3))
    clone = remote.clone("work")
    for version in (v1, v2):
        promotion.promote(clone, version, "staging", body="")
    assert _rollback(clone, "--env", "staging").exit_code == 0
    promotion.promote(clone, v3, "staging", body="")
    head = remote.main()
    # When staging is rolled back to v2 without --force
    refused = _rollback(clone, "--env", "staging", "--to", v2.version)
    # Then it is refused with a message, and nothing is committed or pushed
    assert refused.exit_code == 1
    assert f"v{v2.version} is marked rolled back in this environment" in refused.output
    assert "--force" in refused.output
    assert remote.main() == head
    assert remote.branches() == ["main"]
    # When --force is given without a reason (or with a blank one)
    for args in (["--force"], ["--force", "--reason", "  "]):
        unreasoned = _rollback(clone, "--env", "staging", "--to", v2.version, *args)
        # Then it is refused as a usage error, and still nothing moved
        assert unreasoned.exit_code == 2
        assert "--reason" in unreasoned.output
    assert remote.main() == head
    assert models.get_version(mlflow_client, MODEL, v2.version).is_rolled_back("staging")
    # When it is forced with a reason
    forced = _rollback(
        clone,
        *("--env", "staging", "--to", v2.version, "--force"),
        *("--reason", "v3 mis-scores refunds; v2's bug is fixed in the runtime"),
    )
    # Then staging pins v2 again, in one commit whose message carries the reason
    assert forced.exit_code == 0, forced.output
    assert f"'{v2.version}'" in remote.show("main", STAGING)
    assert run_git(remote.bare, "rev-list", "--count", f"{head}..main").strip() == "1"
    message = run_git(remote.bare, "log", "-1", "--format=%B", "main")
    assert "restored by force: v3 mis-scores refunds" in message
    # And the reason is recorded on v2, whose staging mark is lifted; v3 is marked instead
    tags = mlflow_client.get_model_version(MODEL, v2.version).tags
    assert tags["argosy.rollback_forced.staging"].startswith("v3 mis-scores refunds")
    assert (
        "it had been rolled back: rolled back in staging" in tags["argosy.rollback_forced.staging"]
    )
    assert models.get_version(mlflow_client, MODEL, v2.version).rolled_back_in == frozenset()
    assert models.get_version(mlflow_client, MODEL, v3.version).rolled_back_in == {"staging"}
    # And verify and registry sync accept what staging now pins
    run_git(clone, "pull", "--quiet")
    verify = CliRunner().invoke(app, ["promote", "verify", "--repo-dir", str(clone)])
    assert verify.exit_code == 0, verify.output
    synced = CliRunner().invoke(app, ["registry", "sync", "--repo-dir", str(clone)])
    assert synced.exit_code == 0, synced.output
    assert str(mlflow_client.get_model_version_by_alias(MODEL, "staging").version) == v2.version
