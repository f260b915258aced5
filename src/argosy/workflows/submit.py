"""Submit ``argosy-training`` through the Argo Server API (Hera's client), for CI-driven teams."""

from __future__ import annotations

from dataclasses import dataclass

from hera.workflows import WorkflowsService
from hera.workflows.models import SubmitOpts, WorkflowSubmitRequest

from argosy.workflows.training import NAME as TRAINING


class SubmitError(RuntimeError):
    """The Argo Server refused the submission or could not be reached."""


@dataclass(frozen=True)
class Submission:
    """What was submitted and what the server called it."""

    name: str
    namespace: str
    revision: str


def submit_training(
    server: str,
    namespace: str,
    token: str | None,
    revision: str,
    branch: str,
    *,
    template: str = TRAINING,
    verify_ssl: bool = True,
    extra_parameters: dict[str, str] | None = None,
) -> Submission:
    """Submit a Workflow from the training WorkflowTemplate at ``revision``.

    Args:
        server: Argo Server base URL (``https://argo.example.com``).
        namespace: Namespace of the WorkflowTemplate.
        token: Bearer token (a ServiceAccount token allowed to create Workflows) or None.
        revision: Git commit every task checks out.
        branch: The branch of ``revision`` (the template's mutex name).
        template: WorkflowTemplate name.
        verify_ssl: Check the server's TLS certificate.
        extra_parameters: More ``name: value`` parameters for the template.

    Returns:
        The created Workflow's name and namespace.

    Raises:
        SubmitError: The server answered with an error or was unreachable.
    """
    parameters = {"revision": revision, "branch": branch, **(extra_parameters or {})}
    request = WorkflowSubmitRequest(
        namespace=namespace,
        resource_kind="WorkflowTemplate",
        resource_name=template,
        submit_options=SubmitOpts(
            generate_name=f"{template}-",
            labels=f"app.kubernetes.io/part-of=argosy,argosy.dev/revision={revision[:40]}",
            parameters=[f"{key}={value}" for key, value in parameters.items()],
        ),
    )
    service = WorkflowsService(host=server, token=token, namespace=namespace, verify_ssl=verify_ssl)
    try:
        created = service.submit_workflow(request, namespace=namespace)
    except Exception as exc:  # Hera raises its own exception types and requests' errors
        raise SubmitError(f"submitting {template} to {server} failed: {exc}") from exc
    finally:
        service.close()
    name = created.metadata.name if created.metadata else None
    if not name:
        raise SubmitError(f"{server} accepted the submission but returned no workflow name")
    return Submission(name=name, namespace=namespace, revision=revision)
