"""Idle stop in the embedded mode, with real requests: used, it keeps running; unused, it stops."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from galley.api.resources import OnlineService
from galley.local.state import Store
from tests.local.test_galley_run import (
    GALLEY,
    post_photo,
    predictor_processes,
    wait_for_service,
    write_model_and_service,
)

IDLE_SECONDS = 6


def test_a_used_service_keeps_running_and_an_unused_one_stops(tmp_path: Path, trained_package: Path,
                                                               food_photos: Any) -> None:
    home, folder = tmp_path / "home", tmp_path / "resources"
    write_model_and_service(folder, trained_package, autoStop={"after": "1h", "idle": f"{IDLE_SECONDS}s"})
    env = {**os.environ, "GALLEY_HOME": str(home), "GALLEY_PORT": "0"}
    process = subprocess.Popen([*GALLEY, "run", "-f", str(folder)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    store = Store(home)
    service = wait_for_service(store, "food-service", process)
    assert service.status is not None and service.status.url
    assert service.status.last_request_time is None

    # In use for twice the idle time: a prediction every 2 s keeps it running.
    busy_until = time.monotonic() + 2 * IDLE_SECONDS
    while time.monotonic() < busy_until:
        post_photo(service.status.url, food_photos.holdout[0][0])
        time.sleep(2)
        running = store.get(OnlineService, "food-service")
        assert running is not None and running.status is not None and running.status.phase == "Running"
    last_use = time.time()
    used = store.get(OnlineService, "food-service")
    assert used is not None and used.status is not None and used.status.last_request_time is not None
    assert abs(used.status.last_request_time.timestamp() - last_use) < 4

    # Then unused: it stops by itself, `galley run` ends, nothing keeps running.
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    stopped = store.get(OnlineService, "food-service")
    assert stopped is not None and stopped.status is not None and stopped.status.phase == "Stopped"
    condition = next(c for c in stopped.status.conditions if c.type == "Stopped")
    assert (condition.status, condition.reason) == ("True", "IdleStopped")
    assert f"no prediction for {IDLE_SECONDS}s" in condition.message
    assert stopped.status.stopped_at is not None
    idle_for = (stopped.status.stopped_at - stopped.status.last_request_time).total_seconds() \
        if stopped.status.last_request_time else 0
    assert IDLE_SECONDS <= idle_for <= IDLE_SECONDS + 5
    assert predictor_processes(home) == []

    table = subprocess.run([*GALLEY, "get", "osvc"], env=env, capture_output=True, text=True).stdout
    lines = [line.split() for line in table.splitlines() if line.strip()]
    header, row = lines[0], lines[1]
    assert lines[2:] == [["nothing", "running"]], table  # galley get's last line: what still bills
    assert header[:6] == ["NAME", "READY", "REASON", "URL", "STOP-AT", "LAST-REQUEST"]
    assert row[:3] == ["food-service", "False", "IdleStopped"]
    assert row[5] == f"{stopped.status.last_request_time:%Y-%m-%dT%H:%M:%SZ}"
