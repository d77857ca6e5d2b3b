"""The operator's /metrics, scraped from a real operator on the API server: what it created and stopped,
resources by phase, what runs now; and the chart's Grafana dashboard asks only for what it exports."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from galley.operator.metrics import METRICS
from galley.testing.envtest import Envtest
from galley.testing.operator import eventually, operator_process
from tests.operator.conftest import new_namespace
from tests.operator.test_services import make_predictor_pods_ready, online_service, ready_model

pytestmark = pytest.mark.envtest
DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "galley" / "dashboards" / "galley-operator.json"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scrape:
    """One /metrics answer: the families it declares and its samples."""

    def __init__(self, text: str) -> None:
        self.types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
        self.samples: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                self.samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))

    def names(self) -> set[str]:
        """Every name a query may use: families, and a histogram's series."""
        found = set(self.types)
        for family, kind in self.types.items():
            if kind == "histogram":
                found |= {family + suffix for suffix in ("_bucket", "_sum", "_count")}
        return found

    def __getitem__(self, series: str) -> float:
        return self.samples.get(series, 0.0)


def scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return Scrape(answer.read().decode())


def scrape_once_up(port: int) -> Scrape | None:
    """A scrape, or None while the operator has not opened its port yet."""
    try:
        return scrape(port)
    except OSError:
        return None


def dashboard_queries() -> list[str]:
    def exprs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return ([node["expr"]] if isinstance(node.get("expr"), str) else []) + \
                [e for value in node.values() for e in exprs(value)]
        return [e for item in node for e in exprs(item)] if isinstance(node, list) else []

    return exprs(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def test_a_real_operators_metrics_follow_a_service_and_the_dashboard_asks_only_for_them(
        envtest: Envtest, s3_endpoint: str, s3: Any, trained_package: Path, tmp_path: Path) -> None:
    cluster, port = new_namespace(envtest, s3_endpoint, tmp_path), free_port()
    with operator_process(envtest, cluster.namespace, cluster.log, {"GALLEY_METRICS_PORT": str(port)}):
        first = eventually(lambda: scrape_once_up(port), message=cluster.operator_log)
        assert sorted(first.types) == sorted(METRICS)
        queries = dashboard_queries()
        assert len(queries) >= len(METRICS)
        asked = {name for query in queries for name in re.findall(r"\bgalley_[a-z_]+", query)}
        assert asked <= first.names(), f"the dashboard asks for what no operator exports: {asked - first.names()}"
        assert {name.removesuffix("_total") for name in METRICS} <= \
            {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in asked}, "a metric no panel shows"

        ready_model(cluster, s3, trained_package)
        cluster.create(online_service(runtime="raw", flavor="cpu-2c-8g", autoStop={"after": "3s"}))
        make_predictor_pods_ready(cluster, "food-service")
        eventually(lambda: cluster.status("OnlineService", "food-service").get("phase") == "Running",
                   message=cluster.operator_log)
        running = eventually(lambda: (s := scrape(port))["galley_running_services"] == 1 and s)
        assert running["galley_running_cores"] == 2 and running["galley_running_training_jobs"] == 0
        assert running['galley_resources{kind="OnlineService",phase="Running"}'] == 1
        assert running['galley_resources{kind="Model",phase="Ready"}'] == 1
        for child in ("Deployment", "Service"):
            assert running[f'galley_children_created_total{{kind="{child}"}}'] == 1, child

        eventually(lambda: cluster.status("OnlineService", "food-service").get("phase") == "Stopped", timeout=30,
                   message=cluster.operator_log)
        stopped = eventually(lambda: (s := scrape(port))["galley_running_services"] == 0 and s)
        assert stopped['galley_service_stops_total{reason="AutoStopped"}'] == 1
        assert stopped['galley_resources{kind="OnlineService",phase="Stopped"}'] == 1
        assert stopped["galley_running_cores"] == 0
        assert stopped['galley_children_created_total{kind="Deployment"}'] == 1  # scaled to 0, not made again

        cluster.objects.delete_namespaced_custom_object("galley.dev", "v1alpha1", cluster.namespace,
                                                        "onlineservices", "food-service")
        eventually(lambda: not any(k.startswith('galley_resources{kind="OnlineService"')
                                   for k in scrape(port).samples), message=cluster.operator_log)
