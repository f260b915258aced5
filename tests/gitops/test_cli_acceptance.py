"""Issue acceptance through the `argosy` CLI, in a temporary clone with a bare origin.

Real git (bare origin on disk), real MLflow (SQLite in tmp_path) and, for the pull request, a
local HTTP server on 127.0.0.1 that checks method, path, headers and body (conftest.FakeGitHub).
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from argosy import k8s
from argosy.cli import app
from argosy.gitops.github import GitHubError, GitHubSettings
from argosy.pin import read_pin

from .gitops_fixtures import MODEL, FakeGitHub, Pipeline, Remote, run_git

STAGING = "manifests/overlays/staging/model.yaml"


def test_register_then_promote_staging_then_production(
    remote: Remote,
    pipeline: Pipeline,
    github_api: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a clone, and the pipeline's run with a passed gate report in reports/
    clone = remote.clone("work")
    model = pipeline.train()
    reports = model.gate_json.parent
    runner = CliRunner()
    before = remote.main()
    # When the model is registered and promoted to staging
    registered = runner.invoke(app, ["register", "--gate", str(model.gate_json)])
    staged = runner.invoke(app, ["promote", "--env", "staging", "--repo-dir", str(clone)])
    # Then origin/main has one commit that changes only the staging model.yaml
    assert registered.exit_code == 0, registered.output
    assert "alias candidate -> v1" in registered.output
    assert staged.exit_code == 0, staged.output
    assert run_git(remote.bare, "rev-list", "--count", f"{before}..main").strip() == "1"
    assert remote.changed_files("main") == [STAGING]
    # When production is promoted without a token
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    local = runner.invoke(
        app,
        ["promote", "--env", "production", "--repo-dir", str(clone), "--reports", str(reports)],
    )
    # Then the branch is pushed and the PR body (the gate report) is printed
    assert local.exit_code == 0, local.output
    assert remote.branches() == ["main", f"promote/{MODEL}-v1"]
    assert model.gate_md.read_text().strip() in local.output
    # When it runs again with a token against the local GitHub API
    monkeypatch.setenv("GITHUB_TOKEN", github_api.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", github_api.repository)
    monkeypatch.setenv("GITHUB_API_URL", github_api.base_url)
    monkeypatch.setenv("ARGOSY_GITHUB_ALLOW_HTTP", "1")  # the local API is plain http
    opened = runner.invoke(
        app,
        ["promote", "--env", "production", "--repo-dir", str(clone), "--reports", str(reports)],
    )
    # Then exactly one pull request exists and its body is the gate report
    assert opened.exit_code == 0, opened.output
    assert list(github_api.pulls) == [1]
    assert github_api.pulls[1]["body"] == model.gate_md.read_text()
    assert github_api.pulls[1]["head"] == f"promote/{MODEL}-v1"
    # And staging again changes nothing
    again = runner.invoke(app, ["promote", "--env", "staging", "--repo-dir", str(clone)])
    assert "nothing to do" in again.output
    assert run_git(remote.bare, "rev-list", "--count", f"{before}..main").strip() == "1"


def test_promote_refuses_a_rejected_model_through_the_cli(
    remote: Remote, pipeline: Pipeline
) -> None:
    # Given a gate report that rejected the model
    model = pipeline.train(decision="reject")
    clone = remote.clone("work")
    runner = CliRunner()
    # When it is registered and promoted
    registered = runner.invoke(app, ["register", "--gate", str(model.gate_json)])
    promoted = runner.invoke(app, ["promote", "--env", "production", "--repo-dir", str(clone)])
    # Then both refuse with a clear message and origin keeps only main
    assert registered.exit_code == 1
    assert "the gate rejected this model (pr_auc below floor)" in registered.output
    assert promoted.exit_code == 1
    assert "not in the MLflow registry" in promoted.output
    assert remote.branches() == ["main"]


def test_promote_defaults_to_the_contracts_model_name(remote: Remote, pipeline: Pipeline) -> None:
    # Given a fork whose contract names another model, and a registered run of that model
    name = "income-classifier" if MODEL != "income-classifier" else "churn-scorer"
    clone = remote.clone("work")
    contract = clone / "contract.yaml"
    contract.write_text(re.sub(r"(?m)^name: .*$", f"name: {name}", contract.read_text()))
    run_git(clone, "commit", "--quiet", "-am", "Rename the model")
    run_git(clone, "push", "--quiet", "origin", "main")
    model = pipeline.train(name=name)
    runner = CliRunner()
    # When staging is promoted with no --model, before and after registration
    unregistered = runner.invoke(app, ["promote", "--env", "staging", "--repo-dir", str(clone)])
    runner.invoke(app, ["register", "--gate", str(model.gate_json)])
    staged = runner.invoke(app, ["promote", "--env", "staging", "--repo-dir", str(clone)])
    # Then the registry is asked for the contract's model, and the message names it
    assert unregistered.exit_code == 1
    assert f"{name} 'candidate' is not in the MLflow registry" in unregistered.output
    # And the promotion pins that model, and the overlay serves it under its name
    assert staged.exit_code == 0, staged.output
    run_git(clone, "pull", "--quiet")
    pin = read_pin(clone / STAGING)
    assert pin is not None
    assert pin.name == name
    docs = k8s.render_kustomize(clone / "manifests" / "overlays" / "staging")
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    assert isvc["metadata"]["name"] == name
    assert MODEL not in remote.show("main", STAGING)


def test_a_plain_http_github_api_is_refused_without_the_opt_in(
    remote: Remote, pipeline: Pipeline, github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a registered model, a token, and an API URL that is plain http (no opt-in)
    model = pipeline.train()
    clone = remote.clone("work")
    runner = CliRunner()
    assert runner.invoke(app, ["register", "--gate", str(model.gate_json)]).exit_code == 0
    monkeypatch.setenv("GITHUB_TOKEN", github_api.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", github_api.repository)
    monkeypatch.setenv("GITHUB_API_URL", github_api.base_url)
    monkeypatch.delenv("ARGOSY_GITHUB_ALLOW_HTTP", raising=False)
    # When production is promoted
    result = runner.invoke(app, ["promote", "--env", "production", "--repo-dir", str(clone)])
    # Then it is refused with a message naming the URL and the opt-in
    assert result.exit_code == 1
    assert f"refusing to send the GitHub token to '{github_api.base_url}'" in result.output
    assert "ARGOSY_GITHUB_ALLOW_HTTP=1" in result.output
    # And the token never reached the server, and nothing was pushed
    assert github_api.requests == []
    assert remote.branches() == ["main"]
    # When the same runs with the explicit opt-in (a local test server)
    monkeypatch.setenv("ARGOSY_GITHUB_ALLOW_HTTP", "1")
    allowed = runner.invoke(app, ["promote", "--env", "production", "--repo-dir", str(clone)])
    # Then the pull request is opened
    assert allowed.exit_code == 0, allowed.output
    assert list(github_api.pulls) == [1]


@pytest.mark.parametrize("url", ["http://api.github.example", "ftp://x", "api.github.com"])
def test_github_settings_accept_https_only(url: str) -> None:
    # Given an API URL that is not https
    # When settings are made with it, without and with the http opt-in
    with pytest.raises(GitHubError, match="must be https://") as refused:
        GitHubSettings("acme/argosy", "t0ken", url)
    # Then the message names the URL and the opt-in, never the token
    assert repr(url) in str(refused.value)
    assert "ARGOSY_GITHUB_ALLOW_HTTP=1" in str(refused.value)
    assert "t0ken" not in str(refused.value)
    # And only http (never another scheme) is accepted with the opt-in
    if url.startswith("http://"):
        assert GitHubSettings("acme/argosy", "t", url, allow_http=True).api_url == url
    else:
        with pytest.raises(GitHubError):
            GitHubSettings("acme/argosy", "t", url, allow_http=True)
    assert GitHubSettings("acme/argosy", "t", "https://ghe.example/api/v3").api_url


@pytest.mark.parametrize("command", ["promote", "rollback"])
def test_an_unknown_environment_is_refused_before_any_registry_call(
    command: str, remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tracking URI nothing answers on: a registry call would fail differently, or wait
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    clone = remote.clone("work")
    before = remote.main()
    # When the environment is misspelled
    result = CliRunner().invoke(app, [command, "--env", "prod", "--repo-dir", str(clone)])
    # Then it exits 2 at once, naming both environments in words, and nothing is pushed
    assert result.exit_code == 2, result.output
    assert "--env must be staging or production, not 'prod'" in result.output
    assert "(" not in result.output.split("not 'prod'")[0]
    assert remote.main() == before
