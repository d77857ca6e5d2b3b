"""``galley run`` end to end on real photos: train, record, serve, stop by itself, leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from galley.api.resources import OnlineService
from galley.local.state import Store
from galley.testing.processes import free_port

GALLEY = [sys.executable, "-m", "galley.cli"]


def write_resources(folder: Path, food_photos: Any, weights: str, output: Path, *, auto_stop: str = "8s",
                    epochs: str = "1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    documents = [
        {"apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food"},
         "spec": {"algorithm": {"name": "mobilenet_v2", "weights": weights},
                  "dataset": {"uri": str(food_photos.manifest)}, "output": {"uri": str(output)},
                  "hyperparameters": {"learning_rate_strategy": f"{epochs}:0.001", "image_size": "96"},
                  "resources": {"flavor": "gpu-v100-1"}}},
        {"apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "food-model"},
         "spec": {"source": {"trainingJob": "food"}}},
        {"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food-service"},
         "spec": {"model": "food-model", "autoStop": {"after": auto_stop}}},
    ]
    for document in documents:
        (folder / f"{document['kind'].lower()}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
    return folder


def write_model_and_service(folder: Path, package: Path, **service_spec: Any) -> None:
    """A Model from a package folder and an OnlineService of it, in ``folder/resources.yaml``."""
    folder.mkdir()
    (folder / "resources.yaml").write_text(yaml.safe_dump_all([
        {"apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "food-model"},
         "spec": {"source": {"uri": str(package)}}},
        {"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food-service"},
         "spec": {"model": "food-model", **service_spec}},
    ]))


def predictor_processes(home: Path) -> list[int]:
    """Pids of predictor or supervisor processes started for ``home`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ("galley.predictor" in command or "galley.local.supervise" in command) and str(home) in command:
            found.append(int(entry.name))
    return found


def wait_for_service(store: Store, name: str, process: subprocess.Popen[str], timeout: float = 300) -> OnlineService:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service = store.get(OnlineService, name)
        if service and service.status and service.status.phase == "Running":
            return service
        assert process.poll() is None or process.returncode == 0, "galley run exited early"
        time.sleep(0.3)
    raise TimeoutError(f"{name} not running after {timeout}s")


def post_photo(url: str, path: Path) -> dict[str, Any]:
    boundary = "galleytest"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_run_trains_serves_and_stops_by_itself(tmp_path: Path, food_photos: Any, mobilenet_weights: str) -> None:
    home = tmp_path / "home"
    folder = write_resources(tmp_path / "resources", food_photos, mobilenet_weights, tmp_path / "out")
    taken = socket.socket()  # the port the user asked for is in use: Galley says so and takes another
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    env = {**os.environ, "GALLEY_HOME": str(home), "GALLEY_PORT": str(busy)}
    process = subprocess.Popen([*GALLEY, "run", "-f", str(folder)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    store = Store(home)
    service = wait_for_service(store, "food-service", process)
    assert service.status is not None and service.status.url and service.status.stop_at
    assert f":{busy}/" not in service.status.url
    answer = post_photo(service.status.url, food_photos.holdout[0][0])
    assert {label for label, _ in answer["scores"]} == {"水果", "花", "蔬菜", "鸟"}

    output, _ = process.communicate(timeout=120)
    taken.close()
    assert process.returncode == 0, output
    assert "has none: training on the CPU" in output  # gpu-v100-1 on a machine without a GPU
    assert f"port {busy} is in use; serving on port" in output
    stopped = store.get(OnlineService, "food-service")
    assert stopped is not None and stopped.status is not None
    assert stopped.status.phase == "Stopped"
    assert [(c.type, c.status, c.reason) for c in stopped.status.conditions if c.type == "Stopped"] == [
        ("Stopped", "True", "AutoStopped")]
    assert predictor_processes(home) == []

    get = subprocess.run([*GALLEY, "get"], env=env, capture_output=True, text=True)
    rows = [line.split() for line in get.stdout.splitlines()]
    assert rows[2][:3] == ["food", "Succeeded", "1/1"]
    assert ["food-model", "True", "0.0.1"] in [row[:3] for row in rows]

    # Start it again: a background supervisor serves it with a fresh stopAt, `galley predict` reads scores.
    started = subprocess.run([*GALLEY, "start", "food-service"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    again = wait_for_service(store, "food-service", process)
    assert again.status is not None and again.status.stop_at and again.status.stop_at > stopped.status.stop_at
    table = subprocess.run([*GALLEY, "predict", "food-service", str(food_photos.holdout[0][0])], env=env,
                           capture_output=True, text=True)
    assert table.returncode == 0 and "鸟" in table.stdout and "花" in table.stdout
    subprocess.run([*GALLEY, "stop", "food-service"], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while predictor_processes(home) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert predictor_processes(home) == []
    final = store.get(OnlineService, "food-service")
    assert final is not None and final.status is not None and final.status.phase == "Stopped"
    reason = [c.reason for c in final.status.conditions if c.type == "Stopped"]
    assert reason == ["StoppedByUser"]


def test_ctrl_c_during_training_leaves_a_checkpoint_and_the_same_command_resumes(
        tmp_path: Path, food_photos: Any, mobilenet_weights: str) -> None:
    home = tmp_path / "home"
    output = tmp_path / "out"
    folder = write_resources(tmp_path / "resources", food_photos, mobilenet_weights, output, epochs="8",
                             auto_stop="1s")
    env = {**os.environ, "GALLEY_HOME": str(home), "GALLEY_PORT": str(free_port())}
    command = [*GALLEY, "run", "-f", str(folder)]
    # As from a terminal: a test runner started in the background may hand SIGINT down ignored.
    process = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pointer = output / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 300
    while not pointer.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert "run the same command again to resume" in out
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming from the checkpoint of epoch" in rerun.stdout
    assert predictor_processes(home) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "-: (file): no such file"),
        ("kind: [", ": -: (yaml):"),
        ("apiVersion: galley.dev/v1alpha1\nkind: OnlineService\nmetadata: {name: s}\nspec: {model: m, replicas: 0}\n",
         "OnlineService/s: spec.replicas: Input should be greater than or equal to 1"),
        ("apiVersion: galley.dev/v1alpha1\nkind: OnlineService\nmetadata: {name: s}\nspec: {model: nowhere}\n",
         "OnlineService/s: spec.model: Model 'nowhere' is not defined"),
    ],
)
def test_bad_input_touches_nothing(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "service.yaml"
    if content is not None:
        path.write_text(content)
    home = tmp_path / "home"
    result = subprocess.run([*GALLEY, "run", "-f", str(path)], env={**os.environ, "GALLEY_HOME": str(home)},
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert expected in result.stderr
    assert not home.exists()


def test_commands_say_clearly_when_nothing_is_there(tmp_path: Path) -> None:
    env = {**os.environ, "GALLEY_HOME": str(tmp_path / "home")}
    get = subprocess.run([*GALLEY, "get"], env=env, capture_output=True, text=True)
    assert get.returncode == 0 and "No resources found" in get.stdout
    for action in ("describe", "logs", "stop", "start"):
        result = subprocess.run([*GALLEY, action, "food-service"], env=env, capture_output=True, text=True)
        assert result.returncode == 1 and "not found" in result.stderr, (action, result.stderr)
