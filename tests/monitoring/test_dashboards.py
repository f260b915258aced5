"""The monitoring component: strict render, valid Grafana JSON, queries on metrics that exist."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from argosy import k8s
from argosy.monitoring.decision import MonitorState, Verdict, WindowOutcome
from argosy.monitoring.feedback import Feedback
from argosy.monitoring.monitor import MonitorOutcome, render_metrics
from argosy.serving.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "manifests" / "components" / "monitoring-dashboards"
METRIC = re.compile(r"\b(argosy_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_metrics() -> set[str]:
    """Every metric family the server and the monitor expose, read from their real renderers."""
    metrics = Metrics("example-model", "3", "ab" * 32)
    metrics.observe_request("infer", 200, 0.01)
    metrics.observe_request("infer", 500, 0.01)
    metrics.add_family("argosy_prediction_log_rows_total", "counter", "x", lambda: [])
    server = metrics.render().decode()
    window = WindowOutcome(
        "2026-05-01T00:00:00+00:00", "2026-05-02T00:00:00+00:00", 5, "no_drift", 0.0
    )
    feedback = Feedback(1, 1, 1, 1.0, 0.01, 0.9, 0.9, "ok", ())
    outcome = MonitorOutcome(
        Verdict("no_drift", (), 0), [], MonitorState([window]), feedback, datetime.now(UTC)
    )
    monitor = render_metrics(outcome, {"staging": "3"})
    names = set()
    for line in (server + monitor).splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    return names


def queried_metrics(exprs: list[str]) -> set[str]:
    """Metric families named in PromQL expressions (histogram series mapped to their family)."""
    names = set()
    for expr in exprs:
        for name in METRIC.findall(expr):
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and not name.endswith("_rows_total"):
                    name = name.removesuffix(suffix)
            names.add(name)
    return names


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The production overlay rendered with the monitoring component."""
    root = tmp_path_factory.mktemp("with-monitoring")
    rel = Path(os.path.relpath(REPO / "manifests", root))
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(rel / "overlays" / "production")],
                "components": [str(rel / "components" / "monitoring-dashboards")],
            }
        )
    )
    return k8s.render_kustomize(root)


def test_component_renders_and_validates_strictly(rendered: list[dict[str, Any]]) -> None:
    # Given the production overlay with the monitoring component
    # When every document is validated against the strict schemas
    errors = k8s.validate_documents(rendered)
    # Then nothing is reported and the dashboard ConfigMap carries the Grafana sidecar label
    assert errors == []
    maps = [d for d in rendered if d["kind"] == "ConfigMap"]
    assert [m["metadata"]["labels"]["grafana_dashboard"] for m in maps] == ["1"]


def test_dashboard_is_grafana_json_with_the_panels_the_issue_asks_for() -> None:
    # Given the dashboard JSON
    dashboard = json.loads((COMPONENT / "model-dashboard.json").read_text())
    # When its structure is inspected
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    # Then it is a dashboard Grafana imports: uid, title, schema version, unique panel ids,
    # each panel placed on the grid with at least one PromQL target
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"]
        assert all(t["expr"] and t["refId"] for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("traffic", "latency", "error", "score", "drift", "model version"):
        assert topic in titles


def test_every_queried_metric_is_exported_by_the_server_or_the_monitor(
    rendered: list[dict[str, Any]],
) -> None:
    # Given the metric families the server and the monitor really expose
    exported = exported_metrics()
    # When the dashboard's and the alert rules' queries are scanned for metric names
    dashboard = json.loads((COMPONENT / "model-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [
        rule["expr"]
        for doc in rendered
        if doc["kind"] == "PrometheusRule"
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
    ]
    queried = queried_metrics(exprs)
    # Then each one exists (a renamed metric would leave a panel or an alert silently empty)
    assert queried - exported == set()
    assert "argosy_monitor_drift_share" in queried
    assert "argosy_model_info" in queried


def test_alerts_cover_errors_latency_sustained_drift_and_unpinned_versions(
    rendered: list[dict[str, Any]],
) -> None:
    # Given every alert rule in the render (base plus component)
    rules = {
        rule["alert"]: rule["expr"]
        for doc in rendered
        if doc["kind"] == "PrometheusRule"
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
    }
    # When they are looked up by purpose
    # Then each of the four the issue names is there, on the right metrics
    assert "argosy_request_errors_total" in rules["ArgosyHighErrorRate"]
    assert "histogram_quantile(0.99" in rules["ArgosyHighLatency"]
    assert "argosy_monitor_drift_streak" in rules["ArgosySustainedDrift"]
    assert "argosy_pinned_model_info" in rules["ArgosyServedVersionNotPinned"]
