"""Run external tools (git, dvc, kubectl) with a time limit and one kind of error.

Every command's failure becomes a :class:`CommandError` whose message names the command and
carries the tool's own explanation, so callers add what to do next instead of a traceback.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

#: Commits made by Argosy where no git identity is configured (CI runners, workflow pods).
BOT_NAME = "argosy-bot"
BOT_EMAIL = "argosy-bot@users.noreply.github.com"

#: A git credential helper that reads $GIT_USERNAME/$GIT_PASSWORD when git asks: a repository's
#: config holds only this script, never the Secret's value.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'echo "username=$GIT_USERNAME"; echo "password=$GIT_PASSWORD"; }; f'
)

DEFAULT_TIMEOUT_S = 300.0


class CommandError(RuntimeError):
    """An external command failed or ran past its time limit."""


class GitError(CommandError):
    """A git command failed; the message carries git's own explanation."""


HEARTBEAT_S = 15.0
"""How often a long command's ``tick`` hears that it still runs."""
TAIL_LINES = 20
"""How many of a failed command's last output lines its error quotes."""


def run_bytes(
    args: Sequence[str],
    cwd: Path | None = None,
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    error: type[CommandError] = CommandError,
    tick: Callable[[str, float], None] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` and capture its output as bytes.

    Args:
        args: The command and its arguments.
        cwd: Where it runs.
        check: Raise when it exits non-zero.
        env: Its whole environment (None: this process's).
        timeout: Seconds before it is killed.
        error: The :class:`CommandError` subclass to raise.
        tick: Called with (command, seconds so far) every :data:`HEARTBEAT_S` while it runs.

    Raises:
        CommandError (or ``error``): The tool is missing, exits non-zero (when ``check``) or runs
            past ``timeout`` seconds; the message names the command and quotes its last lines.
    """
    shown = " ".join(args)
    began = time.monotonic()
    try:
        with subprocess.Popen(
            list(args),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as child:
            while True:
                left = timeout - (time.monotonic() - began)
                try:
                    out, err = child.communicate(timeout=max(0.01, min(HEARTBEAT_S, left)))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() - began >= timeout:
                        child.kill()
                        child.communicate()
                        raise error(f"`{shown}` did not finish in {timeout:.0f} s") from None
                    if tick is not None:
                        tick(shown, time.monotonic() - began)
    except FileNotFoundError as exc:
        raise error(f"`{shown}`: {args[0]} is not installed or not on PATH") from exc
    result = subprocess.CompletedProcess(list(args), child.returncode, out, err)
    if check and result.returncode != 0:
        text = (err or out).decode(errors="replace").strip().splitlines()
        where = f" in {cwd}" if cwd is not None else ""
        raise error(
            f"`{shown}` failed ({result.returncode}){where}: " + "\n".join(text[-TAIL_LINES:])
        )
    return result


def run(
    args: Sequence[str],
    cwd: Path | None = None,
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    error: type[CommandError] = CommandError,
    tick: Callable[[str, float], None] | None = None,
) -> str:
    """Run ``args`` and return its stdout as text (see :func:`run_bytes`)."""
    result = run_bytes(args, cwd, check=check, env=env, timeout=timeout, error=error, tick=tick)
    return result.stdout.decode(errors="replace")


def run_attached(args: Sequence[str], cwd: Path | None = None) -> int:
    """Run ``args`` with this process's stdout and stderr, so a pod's log shows its progress.

    Returns:
        Its exit code (127 when the tool is not installed).
    """
    try:
        return subprocess.run(list(args), cwd=cwd, check=False).returncode
    except FileNotFoundError:
        return 127


def git(cwd: Path, *args: str, check: bool = True, env: Mapping[str, str] | None = None) -> str:
    """Run git in ``cwd`` and return its stdout.

    Raises:
        GitError: Non-zero exit (when ``check``), with git's stderr in the message.
    """
    return run(["git", *args], cwd, check=check, env=env, error=GitError)


def repo_root(path: Path) -> Path:
    """The top level of the git repository containing ``path``.

    Raises:
        GitError: ``path`` is not inside a git repository.
    """
    return Path(git(path, "rev-parse", "--show-toplevel").strip())


def git_bytes(cwd: Path, *args: str) -> bytes:
    """Run git and return its raw stdout (an archive, a blob).

    Raises:
        GitError: Non-zero exit, with git's stderr in the message.
    """
    return run_bytes(["git", *args], cwd, error=GitError).stdout


def git_show(repo: Path, rev: str, path: str) -> str | None:
    """A file's content at ``rev``, or None when it does not exist there."""
    result = run_bytes(["git", "show", f"{rev}:{path}"], repo, check=False, error=GitError)
    return result.stdout.decode() if result.returncode == 0 else None


def identity_args(repo: Path) -> list[str]:
    """``-c`` options giving commits an author: the configured one, else Argosy's bot."""
    name = git(repo, "config", "user.name", check=False).strip()
    email = git(repo, "config", "user.email", check=False).strip()
    return (
        [] if name and email else ["-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}"]
    )
