"""`argosy workflows submit` against a local HTTP server standing in for the Argo Server.

The server listens on 127.0.0.1 and checks the method, path, headers and JSON body of the request
that Hera's client sends; no network is used.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from argosy.cli import app
from argosy.workflows.submit import SubmitError, submit_training


class ArgoServer(BaseHTTPRequestHandler):
    """Accepts POST /api/v1/workflows/<ns>/submit with a bearer token; records each request."""

    requests: list[dict] = []  # noqa: RUF012 - the test reads what the handler recorded
    status = 200

    def do_POST(self) -> None:
        """Record the request and answer like the Argo Server."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(
            {
                "method": "POST",
                "path": self.path,
                "authorization": self.headers["Authorization"],
                "content_type": self.headers["Content-Type"],
                "body": body,
            }
        )
        reply = json.dumps(
            {
                "metadata": {"name": "argosy-training-x7k2p", "namespace": "argosy-pipelines"},
                "spec": {"workflowTemplateRef": {"name": "argosy-training"}},
            }
        ).encode()
        if self.status != 200:
            reply = json.dumps({"code": 7, "message": "forbidden"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server():
    """A fresh local Argo Server stand-in on a free port."""
    ArgoServer.requests = []
    ArgoServer.status = 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ArgoServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_submit_posts_the_template_and_revision(server: str, monkeypatch) -> None:
    # Given an Argo Server and a token in the environment
    monkeypatch.setenv("ARGO_TOKEN", "s3cr3t")
    # When the CLI submits a revision
    result = CliRunner().invoke(
        app, ["workflows", "submit", "--revision", "a" * 40, "--server", server]
    )
    # Then one submit request names the WorkflowTemplate, the parameters and the bearer token
    assert result.exit_code == 0, result.output
    assert "argosy-pipelines/argosy-training-x7k2p" in result.output
    (request,) = ArgoServer.requests
    assert request["path"] == "/api/v1/workflows/argosy-pipelines/submit"
    assert request["authorization"] == "Bearer s3cr3t"
    assert request["content_type"] == "application/json"
    body = request["body"]
    assert body["resourceKind"] == "WorkflowTemplate"
    assert body["resourceName"] == "argosy-training"
    assert body["submitOptions"]["parameters"] == [f"revision={'a' * 40}", "branch=main"]
    assert body["submitOptions"]["generateName"] == "argosy-training-"


def test_a_refusal_is_an_error_naming_the_server(server: str) -> None:
    # Given a server that refuses
    ArgoServer.status = 403
    # When a submission is made
    # Then it fails with SubmitError naming the server
    with pytest.raises(SubmitError, match=r"127\.0\.0\.1"):
        submit_training(server, "argosy-pipelines", "t", "b" * 40, "main")


def test_submit_without_a_server_exits_2(monkeypatch) -> None:
    # Given no --server and no ARGO_SERVER
    monkeypatch.delenv("ARGO_SERVER", raising=False)
    # When the CLI is called
    result = CliRunner().invoke(app, ["workflows", "submit", "--revision", "c" * 40])
    # Then it exits 2 and says what is missing
    assert result.exit_code == 2
    assert "ARGO_SERVER" in result.output
