"""Open or update the promotion pull request through the GitHub REST API (PyGithub).

The API base URL is configurable (GitHub Enterprise: ``https://HOST/api/v3``; Actions sets
``GITHUB_API_URL``) and the token comes from the environment only (``GITHUB_TOKEN``), never from
a file or an argument. The token is only ever sent over https: a plain ``http://`` URL is refused
unless ``ARGOSY_GITHUB_ALLOW_HTTP=1`` opts in (a local stand-in of the API, in tests). One branch
has at most one open pull request: an existing one is updated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from github.Repository import Repository

DEFAULT_API_URL = "https://api.github.com"
TOKEN_ENV = ("GITHUB_TOKEN", "GH_TOKEN")
ALLOW_HTTP_ENV = "ARGOSY_GITHUB_ALLOW_HTTP"
_REMOTE_RE = re.compile(r"(?:github[^/:]*[/:])([^/]+/[^/]+?)(?:\.git)?/?$")


class GitHubError(RuntimeError):
    """The GitHub API refused or failed a request; the message names the call and the reason."""


@dataclass(frozen=True)
class GitHubSettings:
    """Where and as whom to call the API.

    Attributes:
        repository: ``owner/name``.
        token: API token (from the environment).
        api_url: REST API base URL; https only, unless ``allow_http``.
        allow_http: Accept a plain ``http://`` URL (a local test server only: the token would
            cross the network in clear text).

    Raises:
        GitHubError: ``api_url`` is not https (and http is not allowed).
    """

    repository: str
    token: str
    api_url: str = DEFAULT_API_URL
    allow_http: bool = False

    def __post_init__(self) -> None:
        check_api_url(self.api_url, allow_http=self.allow_http)

    def __repr__(self) -> str:  # never print the token
        return f"GitHubSettings(repository={self.repository!r}, api_url={self.api_url!r})"


@dataclass(frozen=True)
class PullRequest:
    """A pull request as the promotion needs it."""

    number: int
    url: str
    created: bool


def allow_http_from_env() -> bool:
    """Whether ``$ARGOSY_GITHUB_ALLOW_HTTP`` opts in to a plain-http API URL."""
    return os.environ.get(ALLOW_HTTP_ENV, "").strip().lower() in ("1", "true", "yes")


def check_api_url(url: str, *, allow_http: bool = False) -> None:
    """Refuse an API URL the token must not be sent to.

    Raises:
        GitHubError: The URL is not https, and not http with ``allow_http``; the message names
            the URL and the opt-in.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    raise GitHubError(
        f"refusing to send the GitHub token to {url!r}: the API URL must be https://. "
        f"For a local test server only, set {ALLOW_HTTP_ENV}=1 to allow http://."
    )


def repository_from_remote(url: str) -> str | None:
    """``owner/name`` from a GitHub remote URL (https or ssh), else None."""
    match = _REMOTE_RE.search(url.strip())
    return match.group(1) if match else None


def settings_from_env(
    repository: str | None = None, api_url: str | None = None
) -> GitHubSettings | None:
    """Settings from the environment; None when no token is set (local runs).

    Args:
        repository: ``owner/name``; default ``$GITHUB_REPOSITORY``.
        api_url: Base URL; default ``$GITHUB_API_URL`` or the public API.

    Raises:
        GitHubError: A token is set but the repository is unknown, or the API URL is not https
            (http only with ``$ARGOSY_GITHUB_ALLOW_HTTP=1``).
    """
    token = next((os.environ[k] for k in TOKEN_ENV if os.environ.get(k)), None)
    if not token:
        return None
    repository = repository or os.environ.get("GITHUB_REPOSITORY")
    if not repository or "/" not in repository:
        raise GitHubError(
            "GITHUB_TOKEN is set but the repository is unknown: pass --github-repo OWNER/NAME "
            "or set GITHUB_REPOSITORY"
        )
    return GitHubSettings(
        repository=repository,
        token=token,
        api_url=(api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
        allow_http=allow_http_from_env(),
    )


def _explain(exc: Exception, action: str) -> GitHubError:
    from github import GithubException

    if isinstance(exc, GithubException):
        data = exc.data if isinstance(exc.data, dict) else {}
        message = data.get("message") or str(exc)
        details = "; ".join(
            str(e.get("message") or e) if isinstance(e, dict) else str(e)
            for e in data.get("errors") or []
        )
        hint = {
            401: " (the token is invalid or expired)",
            403: " (the token lacks permission: it needs contents and pull-requests write)",
            404: " (no such repository, or the token cannot see it)",
        }.get(exc.status, "")
        suffix = f": {details}" if details else ""
        return GitHubError(f"GitHub API error {exc.status} while {action}: {message}{hint}{suffix}")
    return GitHubError(f"GitHub API unreachable while {action}: {exc}")


class PullRequests:
    """Pull requests of one repository."""

    def __init__(self, settings: GitHubSettings, retries: int = 2, timeout_s: int = 15) -> None:
        from github import Auth, Github, GithubRetry

        self.settings = settings
        self._gh = Github(
            auth=Auth.Token(settings.token),
            base_url=settings.api_url,
            timeout=timeout_s,
            retry=GithubRetry(total=retries, backoff_factor=0.2) if retries else None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self._repo: Repository | None = None

    def check_access(self) -> None:
        """Fetch the repository, so a bad token or URL fails before anything is pushed.

        Raises:
            GitHubError: The repository cannot be read with this token.
        """
        try:
            self._repo = self._gh.get_repo(self.settings.repository)
        except Exception as exc:
            raise _explain(exc, f"reading repository {self.settings.repository}") from exc

    def _repository(self) -> Repository:
        if self._repo is None:
            self.check_access()
        assert self._repo is not None  # noqa: S101 - set by check_access or it raised
        return self._repo

    def open_or_update(
        self, *, head: str, base: str, title: str, body: str, labels: list[str]
    ) -> PullRequest:
        """Open a pull request from ``head`` into ``base``, or update the open one.

        Raises:
            GitHubError: Any API call failed (the message says which and why).
        """
        repo = self._repository()
        owner = self.settings.repository.split("/")[0]
        try:
            existing = list(repo.get_pulls(state="open", head=f"{owner}:{head}", base=base))
        except Exception as exc:
            raise _explain(exc, f"looking for an open pull request from {head}") from exc
        created = not existing
        try:
            if existing:
                pull = existing[0]
                pull.edit(title=title, body=body)
            else:
                pull = repo.create_pull(base=base, head=head, title=title, body=body)
        except Exception as exc:
            action = "updating" if existing else "creating"
            raise _explain(exc, f"{action} the pull request from {head}") from exc
        try:
            if labels:
                pull.add_to_labels(*labels)
        except Exception as exc:
            raise _explain(exc, f"labelling pull request #{pull.number}") from exc
        return PullRequest(number=pull.number, url=pull.html_url, created=created)

    def close(self, number: int) -> None:
        """Close a pull request (used to undo one whose labelling failed)."""
        try:
            self._repository().get_pull(number).edit(state="closed")
        except Exception as exc:
            raise _explain(exc, f"closing pull request #{number}") from exc
