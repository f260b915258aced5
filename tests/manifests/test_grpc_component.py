"""The gRPC component: in serverless mode the predictor's one routed port becomes V2 gRPC (h2c)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from argosy import k8s

from .test_overlays import OVERLAYS, _by_kind, _one, _with_components


def _runtime_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(docs, "ServingRuntime")["spec"]["containers"][0]


@pytest.mark.parametrize("env", sorted(OVERLAYS))
@pytest.mark.parametrize(
    ("components", "inside"),
    [(["grpc"], False), (["grpc"], True), (["raw-deployment", "grpc"], False)],
    ids=["on-top", "listed-in-overlay", "with-raw-deployment"],
)
def test_grpc_component_renders_validates_and_routes_h2c(
    tmp_path: Path, env: str, components: list[str], inside: bool
) -> None:
    # Given an overlay with the gRPC component (on top of it, or listed in it, or with the
    # raw-deployment component, whose one Service port then carries gRPC)
    root = _with_components(tmp_path, env, components, inside=inside)
    # When it is rendered and validated strictly
    docs = k8s.render_kustomize(root)
    # Then it is valid
    assert k8s.validate_documents(docs) == []
    # and the runtime routes exactly one port, h2c on 8081, where the server serves gRPC
    container = _runtime_container(docs)
    assert container["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    args = container["args"]
    assert args[args.index("--grpc-port") + 1] == "8081"
    assert "grpc-v2" in _one(docs, "ServingRuntime")["spec"]["protocolVersions"]
    predictor = _one(docs, "InferenceService")["spec"]["predictor"]
    assert predictor["model"]["protocolVersion"] == "grpc-v2"
    # and the probes use gRPC health on that port (liveness through the always-serving `live`)
    assert container["readinessProbe"]["grpc"] == {"port": 8081}
    assert container["livenessProbe"]["grpc"] == {"port": 8081, "service": "live"}
    # and the ingress policy lets the activator reach it; Prometheus still scrapes REST on 8080
    ingress = next(
        p for p in _by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-ingress")
    )
    assert {"port": 8081, "protocol": "TCP"} in ingress["spec"]["ingress"][0]["ports"]
    endpoint = _one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    assert endpoint["portNumber"] == 8081
    assert endpoint["relabelings"][-1]["targetLabel"] == "__address__"
    assert endpoint["relabelings"][-1]["replacement"] == "${1}:8080"


def test_without_the_component_rest_is_routed() -> None:
    # Given the staging overlay alone / Then the one routed port is REST (http1 on 8080)
    docs = k8s.render_kustomize(OVERLAYS["staging"])
    assert [p["name"] for p in _runtime_container(docs)["ports"]] == ["http1"]
    assert _runtime_container(docs)["readinessProbe"]["httpGet"]["port"] == 8080
