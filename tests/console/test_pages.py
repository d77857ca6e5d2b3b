"""The console's pages and guards over a real embedded store, through its ASGI app (no browser):
who may change things, what an unknown name or a stopped service answers, and how the package's
report is fenced off."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from galley.api.flavors import default_catalogue
from galley.api.resources import Model, ModelStatus, OnlineService
from galley.console.app import create_app
from galley.console.security import Guard
from galley.console.server import choose_token
from galley.local.backend import EmbeddedBackend


@pytest.fixture
def backend(tmp_path: Path) -> EmbeddedBackend:
    store = EmbeddedBackend(tmp_path / "home")
    package = tmp_path / "package"
    package.mkdir()
    (package / "config.json").write_text('{"name": "m", "algorithm": "resnet50", "labels": ["a", "b"], '
                                         '"report": "report.html"}')
    (package / "report.html").write_text("<html><script>parent.document.title = 'owned'</script></html>")
    model = Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
                                  "spec": {"source": {"uri": str(package)}}})
    store.apply(model)
    store.save_status(model, ModelStatus(uri=str(package), labels=["a", "b"]))
    store.apply(OnlineService.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService",
                                              "metadata": {"name": "svc"}, "spec": {"model": "m"}}))
    return store


def web(backend: EmbeddedBackend, token: str | None = None) -> TestClient:
    return TestClient(create_app(backend, default_catalogue(), Guard(token, allowed_hosts=["testserver"]),
                                 where="test"))


def test_a_token_is_made_beyond_loopback_and_not_needed_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GALLEY_CONSOLE_TOKEN", raising=False)
    assert choose_token("127.0.0.1", None) is None and choose_token("localhost", None) is None
    made = choose_token("0.0.0.0", None)
    assert made is not None and len(made) >= 24
    assert choose_token("0.0.0.0", "given") == "given"
    monkeypatch.setenv("GALLEY_CONSOLE_TOKEN", "from-env")
    assert choose_token("127.0.0.1", None) == "from-env"


def test_a_change_from_another_site_is_refused_and_changes_nothing(backend: EmbeddedBackend) -> None:
    answer = web(backend).post("/services/svc/stop", headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403 and "https://evil.example is refused" in answer.text
    service = backend.get(OnlineService, "svc")
    assert service is not None and service.spec.stopped is False


def test_a_wrong_token_is_refused_and_the_right_one_becomes_a_cookie(backend: EmbeddedBackend) -> None:
    client = web(backend, token="right")
    assert client.get("/?token=wrong").status_code == 403
    assert client.post("/services/svc/stop").status_code == 401
    landed = client.get("/services/svc?token=right", follow_redirects=False)
    assert landed.status_code == 303 and landed.headers["location"] == "/services/svc"
    assert "HttpOnly" in landed.headers["set-cookie"] and "SameSite=strict" in landed.headers["set-cookie"]
    assert client.post("/services/svc/stop", follow_redirects=False).status_code == 303
    stopped = backend.get(OnlineService, "svc")
    assert stopped is not None and stopped.spec.stopped is True


def test_unknown_names_and_stopped_services_are_said_plainly(backend: EmbeddedBackend) -> None:
    client = web(backend)
    missing = client.get("/trainingjobs/nope")
    assert missing.status_code == 404 and "TrainingJob &#39;nope&#39; not found" in missing.text
    assert client.post("/services/svc/restart").status_code == 404
    not_running = client.post("/services/svc/page/", content=b"x", headers={"Content-Type": "image/jpeg"})
    assert not_running.status_code == 409 and "svc is not running" in not_running.text
    too_big = client.post("/services/svc/page/", content=b"x" * (21 * 1024 * 1024))
    assert too_big.status_code == 413


def test_the_package_report_is_shown_sandboxed(backend: EmbeddedBackend) -> None:
    client = web(backend)
    page = client.get("/models/m")
    assert page.status_code == 200 and 'src="/models/m/report#mistakes" sandbox' in page.text
    report = client.get("/models/m/report")
    assert report.status_code == 200
    assert report.headers["content-security-policy"].startswith("sandbox; default-src 'none'")


def test_curves_come_from_the_trainers_log_where_metrics_jsonl_cannot_be_read(tmp_path: Path) -> None:
    """On a cluster the console may have no storage access; the trainer's log has every epoch too."""
    from galley.api.resources import TrainingJob
    from galley.console.views import history

    store = EmbeddedBackend(tmp_path / "home")
    job = TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food"},
        "spec": {"dataset": {"uri": str(tmp_path / "data")}, "output": {"uri": str(tmp_path / "out")}}})
    store.apply(job)
    (tmp_path / "out" / "logs").mkdir(parents=True)
    (tmp_path / "out" / "logs" / "training.log").write_text(
        "12:32:30 galley.trainer INFO epoch 1/6 lr 0.001 train_loss 0.3594 train_acc 1.0000 eval_acc 0.9300 "
        "2043.2 img/s elapsed 0:00:00 eta 0:00:00\n"
        "12:32:58 galley.trainer INFO epoch 2/6 lr 0.001 train_loss 0.4566 train_acc 0.9652 eval_acc - "
        "11.3 img/s elapsed 0:00:28 eta 0:01:53\n")
    records, source = history(store, job)
    assert source == "the trainer's log"
    assert [r["epoch"] for r in records] == [1, 2] and records[0]["eval_accuracy"] == 0.93
    assert "eval_accuracy" not in records[1] and records[1]["train_loss"] == 0.4566


def test_on_a_cluster_s3_is_read_only_where_the_environment_says_how(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """Without settings the console would wait on an endpoint it may not reach; it says so instead."""
    from galley.cluster import storage_unreadable_here
    from galley.storage import S3_SETTINGS

    for name in S3_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert "console.storageSecret" in (storage_unreadable_here("s3://food/output/logs/metrics.jsonl") or "")
    assert storage_unreadable_here(str(tmp_path / "metrics.jsonl")) is None
    monkeypatch.setenv("GALLEY_DEFAULT_S3_ENDPOINT", "http://minio:9000")
    assert storage_unreadable_here("s3://food/output/logs/metrics.jsonl") is None
