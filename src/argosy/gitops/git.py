"""Commit one file change to a remote branch without touching the caller's working tree.

Every change is made in a throw-away detached worktree based on the freshly fetched remote branch,
committed, and pushed. A push rejected because the remote moved on is retried from a fresh fetch
(the change is re-applied, never merged), a bounded number of times. Nothing local is left behind:
no branch, no worktree, no modified file.
"""

from __future__ import annotations

import random
import re
import socket
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from argosy.files import write_atomic
from argosy.proc import GitError, git, git_show, identity_args, run_bytes


class PushRejected(GitError):
    """The remote refused a push because it has commits the push does not contain."""


@dataclass(frozen=True)
class FileChange:
    """Set one repository file to ``text`` in a commit with ``message``.

    Attributes:
        path: Repository-relative path.
        text: New content.
        message: Commit message.
        equivalent: ``(old, new) -> bool``: the old content already says the same (e.g. the same
            model pinned with different UI links), so there is nothing to commit.
    """

    path: str
    text: str
    message: str
    equivalent: Callable[[str, str], bool] | None = None


@dataclass(frozen=True)
class PushResult:
    """Outcome of publishing a change.

    Attributes:
        commit: The commit now at the tip of the remote branch holding the change; None when the
            base already had exactly this content and nothing was pushed.
        pushed: Whether this run pushed anything.
        created: Whether this run created the remote branch.
        attempts: Pushes tried (more than one after a rejected push).
    """

    commit: str | None
    pushed: bool
    created: bool = False
    attempts: int = 0


CONNECT_TIMEOUT_S = 10.0
"""How long a git remote's host may take to accept a connection before a command gives up."""
_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?!//)")
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}


def remote_endpoint(url: str) -> tuple[str, int] | None:
    """(host, port) a remote URL connects to; None for a local path or ``file://``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in _DEFAULT_PORTS and parts.hostname:
        return parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]
    match = _SCP_LIKE.match(url) if not parts.scheme or len(parts.scheme) > 1 else None
    if match and not Path(url).exists():
        return match.group("host"), 22
    return None


def _shown(url: str) -> str:
    """``url`` without credentials, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password or parts.username:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname or ""))
    return url


def check_reachable(repo: Path, remote: str, timeout_s: float | None = None) -> None:
    """Fail in seconds, naming the remote, when its host does not accept a connection.

    A dead or firewalled host otherwise holds ``git fetch``/``push`` for minutes (the kernel's
    connect retries). Local paths and ``file://`` remotes are not probed.

    Raises:
        GitError: The host does not answer within ``timeout_s``.
    """
    url = git(repo, "remote", "get-url", remote, check=False).strip() or remote
    endpoint = remote_endpoint(url)
    if endpoint is None:
        return
    timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            pass
    except OSError as exc:
        raise GitError(
            f"cannot reach the git remote {remote} ({_shown(url)}): {endpoint[0]}:{endpoint[1]} "
            f"did not accept a connection within {timeout_s:.0f} s ({exc}); check the network, "
            "the remote URL (`git remote -v`) and any proxy"
        ) from None


def fetch(repo: Path, remote: str, branch: str) -> str | None:
    """Fetch ``remote/branch``; return its commit, or None when the remote has no such branch.

    Raises:
        GitError: The remote is unreachable (in seconds) or git fails.
    """
    check_reachable(repo, remote)
    listed = git(repo, "ls-remote", "--heads", remote, f"refs/heads/{branch}").split()
    if not listed:
        return None
    git(repo, "fetch", "--quiet", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}")
    return git(repo, "rev-parse", f"refs/remotes/{remote}/{branch}").strip()


@contextmanager
def worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A temporary detached worktree at ``commit``, removed on exit whatever happens."""
    with tempfile.TemporaryDirectory(prefix="argosy-worktree-") as tmp:
        path = Path(tmp) / "tree"
        git(repo, "worktree", "add", "--quiet", "--detach", str(path), commit)
        try:
            yield path
        finally:
            git(repo, "worktree", "remove", "--force", str(path), check=False)
            git(repo, "worktree", "prune", check=False)


def _apply(
    repo: Path,
    tree: Path,
    change: FileChange,
    validate: Callable[[Path], list[str]] | None,
) -> bool:
    """Write the change into ``tree`` and commit it; False when it changes nothing."""
    target = tree / change.path
    if target.exists():
        old = target.read_text()
        if old == change.text or (change.equivalent and change.equivalent(old, change.text)):
            return False
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, change.text)
    if validate is not None:
        errors = validate(tree)
        if errors:
            raise GitError(
                f"{change.path}: the change does not validate, nothing was pushed:\n  "
                + "\n  ".join(errors)
            )
    git(tree, "add", "--", change.path)
    git(tree, *identity_args(repo), "commit", "--quiet", "-m", change.message, "--", change.path)
    return True


def _push(tree: Path, remote: str, refspec: str, *extra: str) -> None:
    check_reachable(tree, remote)
    result = run_bytes(
        ["git", "push", "--porcelain", *extra, remote, refspec], tree, check=False, error=GitError
    )
    if result.returncode == 0:
        return
    detail = (result.stderr + result.stdout).decode(errors="replace").strip()
    # "[rejected] ... (fetch first)" / "(non-fast-forward)" / "(stale info)": the remote moved on.
    # "cannot lock ref" / "(failed to update ref)": another push is updating the branch right now.
    # Any other "[remote rejected]" (a hook, a protected branch) is final and is not retried.
    transient = ("fetch first", "non-fast-forward", "stale info", "cannot lock ref")
    if any(s in detail for s in transient) or "(failed to update ref)" in detail:
        raise PushRejected(f"push of {refspec} to {remote} rejected: {detail}")
    raise GitError(f"push of {refspec} to {remote} failed: {detail}")


def commit_to_branch(
    repo: Path,
    change: FileChange,
    *,
    remote: str = "origin",
    branch: str = "main",
    validate: Callable[[Path], list[str]] | None = None,
    max_attempts: int = 5,
    backoff_s: float = 0.5,
    before_push: Callable[[int], None] | None = None,
) -> PushResult:
    """Commit ``change`` on top of ``remote/branch`` and push it, retrying if the remote moves.

    Each attempt fetches the branch afresh and re-applies the change there, so a concurrent push
    is never overwritten and the change never conflicts. When the branch already holds exactly
    this content, nothing is committed (idempotent).

    Args:
        repo: Any checkout of the repository (its working tree is not touched).
        change: The file content and commit message.
        remote: Remote name.
        branch: Branch to advance (fast-forward only).
        validate: Called with the worktree after the change is written; errors abort the push.
        max_attempts: Pushes to try before giving up.
        backoff_s: Base of the jittered exponential wait between attempts.
        before_push: Called with the attempt number just before each push (lets tests interleave
            a competing push at the worst moment).

    Raises:
        GitError: The branch does not exist, validation failed, a push was refused for a reason
            other than a moved remote, or every attempt was rejected.
    """
    for attempt in range(1, max_attempts + 1):
        base = fetch(repo, remote, branch)
        if base is None:
            raise GitError(f"{remote} has no branch {branch!r}")
        with worktree(repo, base) as tree:
            if not _apply(repo, tree, change, validate):
                return PushResult(commit=None, pushed=False, attempts=attempt - 1)
            if before_push is not None:
                before_push(attempt)
            try:
                _push(tree, remote, f"HEAD:refs/heads/{branch}")
            except PushRejected:
                if attempt == max_attempts:
                    raise GitError(
                        f"push to {remote}/{branch} was rejected {max_attempts} times because "
                        "the branch kept moving; nothing was pushed. Run the command again."
                    ) from None
                time.sleep(backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311
                continue
            return PushResult(
                commit=git(tree, "rev-parse", "HEAD").strip(), pushed=True, attempts=attempt
            )
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def push_topic_branch(
    repo: Path,
    change: FileChange,
    *,
    topic: str,
    remote: str = "origin",
    base: str = "main",
    validate: Callable[[Path], list[str]] | None = None,
) -> PushResult:
    """Put ``change`` on ``topic``, a branch holding one commit on top of ``remote/base``.

    Re-running with the same content leaves an up-to-date branch alone; with new content, or when
    ``base`` moved on, the branch is replaced (``--force-with-lease``, so a concurrent update to the
    topic branch is never overwritten blindly).

    Returns:
        ``commit`` None when ``base`` already has the content (nothing to propose).

    Raises:
        GitError: The base branch is missing, validation failed or the push was refused.
    """
    base_commit = fetch(repo, remote, base)
    if base_commit is None:
        raise GitError(f"{remote} has no branch {base!r}")
    current = fetch(repo, remote, topic)
    with worktree(repo, base_commit) as tree:
        if not _apply(repo, tree, change, validate):
            return PushResult(commit=None, pushed=False)
        head = git(tree, "rev-parse", "HEAD").strip()
        if current is not None:
            same_tree = (
                git(repo, "rev-parse", f"{current}^{{tree}}").strip()
                == git(tree, "rev-parse", "HEAD^{tree}").strip()
            )
            same_base = git(repo, "rev-parse", f"{current}^").strip() == base_commit
            if same_tree and same_base:
                return PushResult(commit=current, pushed=False)
            lease = f"--force-with-lease=refs/heads/{topic}:{current}"
            _push(tree, remote, f"HEAD:refs/heads/{topic}", lease)
            return PushResult(commit=head, pushed=True, attempts=1)
        _push(tree, remote, f"HEAD:refs/heads/{topic}")
        return PushResult(commit=head, pushed=True, created=True, attempts=1)


def delete_branch(repo: Path, branch: str, remote: str = "origin") -> None:
    """Delete a remote branch (used to undo a branch whose pull request could not be opened)."""
    git(repo, "push", "--quiet", remote, "--delete", branch)
    git(repo, "update-ref", "-d", f"refs/remotes/{remote}/{branch}", check=False)


def file_history(repo: Path, ref: str, path: str) -> list[tuple[str, str]]:
    """``(commit, content)`` for each commit that changed ``path`` on ``ref``, newest first."""
    commits = git(repo, "log", "--format=%H", ref, "--", path).split()
    history = []
    for commit in commits:
        text = git_show(repo, commit, path)
        if text is not None:
            history.append((commit, text))
    return history
