"""A predictor that keeps exiting, under the embedded supervisor: restarts back off (doubling, up
to five minutes) instead of one every half second, and the service's Ready condition says
CrashLoopBackOff with the predictor's last error. The predictor is real; its package is broken
after the Model took it (a truncated ONNX graph), as a bucket edited under a running service is."""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from galley.api.resources import Model, ModelStatus, OnlineService
from galley.control import reasons
from galley.control.conditions import set_condition
from galley.local import services
from galley.local.state import Store


def _broken_service(tmp_path: Path, trained_package: Path) -> Store:
    """A store holding a Ready Model whose package breaks after it was checked, and its service."""
    package = tmp_path / "package"
    shutil.copytree(trained_package, package)
    for graph in package.glob("*.onnx"):
        graph.write_bytes(graph.read_bytes()[:1000])
    store = Store(tmp_path / "home")
    model = Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model",
                                  "metadata": {"name": "food-model"}, "spec": {"source": {"uri": str(package)}}})
    store.apply(model)
    store.save_status(model, ModelStatus(uri=str(package), labels=["a"], conditions=set_condition(
        [], reasons.READY, "True", reasons.PACKAGE_READY, "checked")))
    store.apply(OnlineService.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService",
                                              "metadata": {"name": "food-service"}, "spec": {"model": "food-model"}}))
    return store


def _counting_starts(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    starts: list[float] = []
    real_start = services.start_predictor

    def counted(*args: object, **kwargs: object) -> services.Predictor:
        starts.append(time.monotonic())
        return real_start(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services, "start_predictor", counted)
    return starts


def _steps(supervisor: services.Supervisor, seconds: float, until: Callable[[], bool] = lambda: False) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        supervisor.step()
        time.sleep(services.POLL_SECONDS)


def test_a_crashing_predictor_backs_off_and_says_why(tmp_path: Path, trained_package: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = _broken_service(tmp_path, trained_package)
    monkeypatch.setattr(services, "RESTART_BACKOFF_SECONDS", 4.0)
    starts = _counting_starts(monkeypatch)
    supervisor = services.Supervisor(store, ["food-service"], port=0)
    try:
        _steps(supervisor, 24)
    finally:
        for predictor in supervisor.predictors.values():
            predictor.stop()
    # Without a backoff a predictor that fails in ~2 s is started about 10 times in 24 s; with it
    # (4 s, then 8 s, then 16 s) at most 3 times.
    assert 2 <= len(starts) <= 3, starts
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= 4 for gap in gaps), gaps
    service = store.get(OnlineService, "food-service")
    assert service is not None and service.status is not None
    ready = next(c for c in service.status.conditions if c.type == reasons.READY)
    assert (ready.status, ready.reason) == ("False", reasons.CRASH_LOOP_BACK_OFF)
    assert "exited" in ready.message and "Its last error:" in ready.message
    assert "(nothing in its log)" not in ready.message
    assert service.status.phase == "Pending"


def test_a_changed_spec_starts_at_once_whatever_the_backoff(tmp_path: Path, trained_package: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """As a changed pod template gets a fresh pod: the user's fix is tried now, not after the wait
    the old spec's exits earned."""
    store = _broken_service(tmp_path, trained_package)
    monkeypatch.setattr(services, "RESTART_BACKOFF_SECONDS", 120.0)
    starts = _counting_starts(monkeypatch)
    supervisor = services.Supervisor(store, ["food-service"], port=0)
    try:
        _steps(supervisor, 60, until=lambda: "food-service" in supervisor.crashes)
        assert len(starts) == 1 and "food-service" in supervisor.crashes  # it exited; the next try is 2 min away
        service = store.get(OnlineService, "food-service")
        assert service is not None
        store.apply(service.model_copy(update={"spec": service.spec.model_copy(update={"precision": "fp32"})}))
        _steps(supervisor, 10, until=lambda: len(starts) == 2)
        assert len(starts) == 2, "the changed spec waited for the old spec's backoff"
    finally:
        for predictor in supervisor.predictors.values():
            predictor.stop()
