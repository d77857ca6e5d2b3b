"""What still bills, in the embedded mode: a service's usage over two runs, the USAGE column and the
"running now" line of `galley get`, and the console's overview opening with the same line."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from fastapi.testclient import TestClient

from galley.api.flavors import default_catalogue
from galley.api.resources import OnlineService
from galley.console.app import create_app
from galley.console.security import Guard
from galley.local.backend import EmbeddedBackend
from galley.local.state import Store
from tests.local.test_galley_run import GALLEY, predictor_processes, wait_for_service, write_model_and_service

RUN_SECONDS = 4


def _get(env: dict[str, str], *args: str) -> list[str]:
    answer = subprocess.run([*GALLEY, "get", *args], env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.splitlines()


def _overview_line(home: Path) -> str:
    page = TestClient(create_app(EmbeddedBackend(home), default_catalogue(), Guard(None, allowed_hosts=["testserver"]),
                                 where="test")).get("/").text
    opening = page.split("<h1>Overview</h1>", 1)[1].split("</p>", 1)[0]
    return opening.split(">", 1)[1].strip()


def _stopped(store: Store, name: str, timeout: float = 120) -> OnlineService:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = store.get(OnlineService, name)
        if found is not None and found.status is not None and found.status.phase == "Stopped":
            return found
        time.sleep(0.3)
    raise TimeoutError(f"{name} did not stop within {timeout}s")


def test_usage_adds_up_over_two_runs_and_get_says_what_still_runs(tmp_path: Path, trained_package: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "resources"
    write_model_and_service(folder, trained_package, flavor="cpu-2c-8g", autoStop={"after": f"{RUN_SECONDS}s"})
    env = {**os.environ, "GALLEY_HOME": str(home), "GALLEY_PORT": "0"}
    store = Store(home)
    assert _get(env)[-1] == "nothing running"

    process = subprocess.Popen([*GALLEY, "run", "-f", str(folder)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_service(store, "food-service", process)
    while_running = _get(env)[-1]
    assert while_running == "running now: 0 training jobs (0 GPUs), 1 service (2 cores)"
    assert _overview_line(home) == while_running
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output

    first = _stopped(store, "food-service").status
    assert first is not None and first.usage is not None and first.usage.counted_until is None
    assert RUN_SECONDS <= first.usage.running_seconds <= RUN_SECONDS + 3
    assert first.usage.core_seconds == 2 * first.usage.running_seconds and first.usage.gpu_seconds == 0
    lines = _get(env, "osvc")
    assert lines[-1] == "nothing running" and _overview_line(home) == "nothing running"
    header, row = lines[0].split(), re.split(r"\s{3,}", lines[1])
    assert "USAGE" in header
    assert first.usage.summary in row  # the same text kubectl's USAGE column shows

    # A second run (a detached supervisor) adds to the first; the stopped time between is not counted.
    time.sleep(2)
    started = subprocess.run([*GALLEY, "start", "food-service"], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    second_started = time.monotonic()
    deadline = time.monotonic() + 120
    while not ((s := store.get(OnlineService, "food-service")) and s.status and s.status.phase == "Running"):
        assert time.monotonic() < deadline, "the service did not run again"
        time.sleep(0.3)
    second = _stopped(store, "food-service").status
    assert second is not None and second.usage is not None
    added = second.usage.running_seconds - first.usage.running_seconds
    assert RUN_SECONDS <= added <= min(RUN_SECONDS + 3, time.monotonic() - second_started + 1)
    assert second.usage.core_seconds == 2 * second.usage.running_seconds
    deadline = time.monotonic() + 30
    while predictor_processes(home):  # the supervisor exits once its service is stopped
        assert time.monotonic() < deadline, "a predictor outlived its stopped service"
        time.sleep(0.3)
    assert _get(env)[-1] == "nothing running"
