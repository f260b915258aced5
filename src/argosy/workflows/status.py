"""The exit handler's job: report the workflow's outcome as a GitHub commit status."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

STATES = {"Succeeded": "success", "Failed": "failure", "Error": "error"}


class StatusError(RuntimeError):
    """GitHub refused the status or could not be reached."""


def commit_status_request(
    api_url: str,
    repository: str,
    revision: str,
    workflow_status: str,
    token: str,
    context: str,
    target_url: str | None = None,
) -> urllib.request.Request:
    """Build ``POST /repos/{owner}/{repo}/statuses/{sha}`` for an Argo ``{{workflow.status}}``.

    Raises:
        ValueError: An unknown workflow status or a repository that is not OWNER/NAME.
    """
    if workflow_status not in STATES:
        raise ValueError(f"unknown workflow status {workflow_status!r}; known: {sorted(STATES)}")
    if not api_url.startswith(("https://", "http://")):
        raise ValueError(f"GitHub API URL must be http(s), got {api_url!r}")
    if repository.count("/") != 1:
        raise ValueError(f"repository must be OWNER/NAME, got {repository!r}")
    body: dict[str, str] = {
        "state": STATES[workflow_status],
        "context": context,
        "description": f"Argo workflow {workflow_status.lower()}",
    }
    if target_url:
        body["target_url"] = target_url
    return urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{api_url.rstrip('/')}/repos/{repository}/statuses/{revision}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-GitHub-Api-Version": "2022-11-28",
        },
    )


def post_commit_status(request: urllib.request.Request, timeout: float = 30.0) -> str:
    """Send the request; return the state GitHub recorded.

    Raises:
        StatusError: A non-2xx answer or a network error.
    """
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only  # nosec B310
            return json.loads(response.read() or b"{}").get("state", "")
    except urllib.error.HTTPError as exc:
        raise StatusError(f"GitHub answered {exc.code}: {exc.read()[:300]!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise StatusError(f"cannot reach {request.full_url}: {exc}") from exc
