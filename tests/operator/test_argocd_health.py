"""The chart's Argo CD health checks (Lua), run by a real Lua interpreter on the statuses a real operator
wrote on the API server: each kind's Progressing, Healthy, Degraded and Suspended, with its message."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from galley.testing.operator import eventually
from tests.operator.conftest import Cluster
from tests.operator.test_services import make_predictor_pods_ready, model, online_service, ready_model
from tests.operator.test_trainingjobs import trainer_pod, training_job

DOCS = Path(__file__).resolve().parents[2] / "helm" / "galley" / "docs" / "argocd"
CHECKS = {"TrainingJob": "trainingjob.lua", "Model": "model.lua", "OnlineService": "onlineservice.lua"}


def lua() -> str:
    """Debian's lua5.4, which scripts/install installs and CI has: without it these tests fail, not skip."""
    found = shutil.which("lua5.4")
    if found is None:
        pytest.fail("lua5.4 is not installed: the Argo CD health checks need a real Lua interpreter "
                    "(Debian package lua5.4; scripts/install installs it)")
    return found


def to_lua(value: Any) -> str:
    """A JSON-like value as a Lua literal, as Argo CD hands the object to a health check."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\{ord(c)}" if ord(c) < 256
                             else c for c in value) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(item) for item in value) + "}"
    return "{" + ", ".join(f"[{to_lua(str(k))}] = {to_lua(v)}" for k, v in value.items() if v is not None) + "}"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) of the kind's health check for ``obj``."""
    check = (DOCS / CHECKS[obj["kind"]]).read_text(encoding="utf-8")
    program = f"obj = {to_lua(obj)}\nlocal hs = (function()\n{check}\nend)()\nio.write(hs.status, '\\n', hs.message)\n"
    answer = subprocess.run([lua(), "-"], input=program, capture_output=True, text=True, timeout=30)
    assert answer.returncode == 0, answer.stderr
    status, _, message = answer.stdout.partition("\n")
    return status, message


def test_the_documented_argocd_configuration_holds_the_checks_as_tested() -> None:
    readme = (DOCS / "README.md").read_text(encoding="utf-8")
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", readme, re.DOTALL).group(1))  # type: ignore[union-attr]
    assert snippet["metadata"]["name"] == "argocd-cm"
    assert snippet["data"] == {f"resource.customizations.health.galley.dev_{kind}": (DOCS / name).read_text()
                               for kind, name in CHECKS.items()}
    for kind in CHECKS:  # before the operator has written anything
        assert health({"kind": kind, "metadata": {"name": "x", "generation": 1}}) == \
            ("Progressing", "Waiting for the Galley operator")


@pytest.mark.envtest
def test_health_of_every_kind_from_the_statuses_a_real_operator_wrote(cluster: Cluster, s3: Any,
                                                                     trained_package: Path) -> None:
    def settled(kind: str, name: str, expected: str, opening: str = "") -> str:
        """The message once the kind's health check says ``expected`` with a message that opens so."""
        found = eventually(lambda: (h := health(cluster.get(kind, name)))[0] == expected and h[1].startswith(opening)
                           and h, timeout=60,
                           message=lambda: f"{kind} {name}: {cluster.status(kind, name)}\n{cluster.operator_log()}")
        return str(found[1])

    cluster.create(training_job())
    pod = trainer_pod(cluster, "food-resnet50")
    eventually(lambda: cluster.condition("TrainingJob", "food-resnet50", "Created") == ("True", "JobCreated"))
    assert settled("TrainingJob", "food-resnet50", "Progressing", "Pending: ")
    cluster.play_kubelet(pod, {"phase": "Running"})
    assert settled("TrainingJob", "food-resnet50", "Progressing", "Training: ")
    cluster.play_kubelet(pod, {"phase": "Succeeded"})
    assert "model package at s3://" in settled("TrainingJob", "food-resnet50", "Healthy", "Completed: ")
    cluster.create(training_job("food-failing", runPolicy={"backoffLimit": 0}))
    cluster.play_kubelet(trainer_pod(cluster, "food-failing"), {"phase": "Failed"})
    assert settled("TrainingJob", "food-failing", "Degraded", "BackoffLimitExceeded: ")

    cluster.create(model("waiting", trainingJob="not-yet-applied"))
    assert "'not-yet-applied' does not exist" in settled("Model", "waiting", "Progressing", "TrainingJobNotFound: ")
    cluster.create(model("broken", uri="s3://models/nothing-here/"))
    assert settled("Model", "broken", "Degraded", "PackageMissing: ")
    ready_model(cluster, s3, trained_package)
    assert settled("Model", "food-model", "Healthy", "PackageReady")

    cluster.create(online_service(runtime="raw"))
    assert settled("OnlineService", "food-service", "Progressing", "RollingOut: ")
    make_predictor_pods_ready(cluster, "food-service")
    assert settled("OnlineService", "food-service", "Healthy", "Serving: serving at http://")
    cluster.patch("OnlineService", "food-service", {"spec": {"stopped": True}})
    assert settled("OnlineService", "food-service", "Suspended") == "StoppedByUser: spec.stopped is true"
    cluster.create(online_service("odd-flavor", flavor="gpu-t4-1"))
    invalid = settled("OnlineService", "odd-flavor", "Degraded", "InvalidSpec: spec.flavor: ")
    assert "unknown flavor 'gpu-t4-1'" in invalid
