"""A git remote that does not answer fails a promotion in seconds, naming it; nothing is pushed.

Real git on disk; the unreachable remote is a closed port on 127.0.0.1 (the connection is
refused), and a silent host is simulated (see that test).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from argosy.gitops import git as gitops_git
from argosy.gitops.git import FileChange, commit_to_branch, remote_endpoint
from argosy.proc import GitError


def repo_with_remote(tmp_path: Path, url: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", "main")
    run("remote", "add", "origin", url)
    return repo


@pytest.mark.parametrize(
    "url",
    ["https://bot:s3cret@127.0.0.1:9/argosy.git", "ssh://git@127.0.0.1:9/argosy.git"],
    ids=["https", "ssh"],
)
def test_a_closed_remote_fails_fast_naming_it_without_credentials(tmp_path: Path, url: str) -> None:
    repo = repo_with_remote(tmp_path, url)
    began = time.monotonic()
    change = FileChange("manifests/overlays/staging/model.yaml", "x: 1\n", "Pin")
    with pytest.raises(GitError, match=r"cannot reach the git remote origin") as failure:
        commit_to_branch(repo, change, remote="origin", branch="main")
    assert time.monotonic() - began < 5
    assert "127.0.0.1:9" in str(failure.value)
    assert "s3cret" not in str(failure.value)
    assert "git remote -v" in str(failure.value)


def test_a_silent_host_is_given_up_on_after_the_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that never answers is simulated: outbound connections here go through a proxy."""
    # Given a remote whose connection attempt times out, and a 1 s connect budget
    asked: list[float] = []

    def silent(address: tuple[str, int], timeout: float) -> None:
        asked.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(gitops_git, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(gitops_git.socket, "create_connection", silent)
    repo = repo_with_remote(tmp_path, "https://git.example.org/argosy.git")
    # Then fetch gives up after that budget, before git runs, naming the host and what to check
    with pytest.raises(
        GitError, match=r"git\.example\.org:443 did not accept a connection within 1 s"
    ):
        gitops_git.fetch(repo, "origin", "main")
    assert asked == [1.0]


def test_local_remotes_are_not_probed() -> None:
    assert remote_endpoint("/srv/git/argosy.git") is None
    assert remote_endpoint("file:///srv/git/argosy.git") is None
    assert remote_endpoint("git@github.com:org/argosy.git") == ("github.com", 22)
    assert remote_endpoint("https://github.com/org/argosy.git") == ("github.com", 443)
