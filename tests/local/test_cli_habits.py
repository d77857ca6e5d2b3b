"""CLI habits kubectl and pip users expect, through the real ``galley`` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from galley import __version__

GALLEY = [sys.executable, "-m", "galley.cli"]
SERVICE = {"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food-service"},
           "spec": {"model": "food-model", "flavor": "cpu-1c-4g", "autoStop": {"after": "1h"}}}


def _exited(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet (the detached supervisor's parent was the CLI)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def _galley(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"GALLEY_HOME": str(home)} if home else {})}
    return subprocess.run([*GALLEY, *args], env=env, capture_output=True, text=True, timeout=120)


def test_version() -> None:
    result = _galley("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"galley {__version__}"


def test_every_option_with_a_default_shows_it_in_help() -> None:
    assert "(default: 6)" in _galley("demo", "--help").stdout  # --epochs
    assert "(default: 16)" in _galley("serve", "--help").stdout  # --max-batch
    validate = _galley("validate", "--help").stdout
    assert "a YAML file, a folder of them, or - for standard input" in " ".join(validate.split())
    assert "(default: False)" not in _galley("run", "--help").stdout  # flags say nothing about a default


def test_get_prints_wide_tables_and_whole_objects_as_yaml_or_json(tmp_path: Path) -> None:
    from galley.api.resources import OnlineService
    from galley.local.state import Store

    home = tmp_path / "home"
    Store(home).apply(OnlineService.model_validate(SERVICE))
    as_json = _galley("get", "osvc", "-o", "json", home=home)
    assert as_json.returncode == 0, as_json.stderr
    listing = json.loads(as_json.stdout)
    assert listing["kind"] == "List" and [i["metadata"]["name"] for i in listing["items"]] == ["food-service"]
    assert listing["items"][0]["spec"]["autoStop"] == {"after": "1h"}
    as_yaml = yaml.safe_load(_galley("get", "-o", "yaml", home=home).stdout)
    assert as_yaml["items"][0]["kind"] == "OnlineService"
    wide = _galley("get", "osvc", "-o", "wide", home=home).stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "REASON", "URL", "STOP-AT", "LAST-REQUEST", "USAGE", "AGE", "MODEL",
                               "FLAVOR", "RUNTIME"]
    assert wide[1].split()[-3:] == ["food-model", "cpu-1c-4g", "auto"]
    refused = _galley("get", "-o", "xml", home=home)
    assert refused.returncode == 2 and "invalid choice: 'xml'" in refused.stderr


def test_delete_stops_the_running_predictor_then_forgets_the_service(tmp_path: Path, trained_package: Path) -> None:
    from galley.api.resources import Model, OnlineService
    from galley.local.models import reconcile_model
    from galley.local.state import Store
    from galley.testing.operator import eventually
    from galley.testing.processes import free_port

    home = tmp_path / "home"
    store = Store(home)
    store.apply(Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model",
                                      "metadata": {"name": "food-model"},
                                      "spec": {"source": {"uri": str(trained_package)}}}))
    reconcile_model(store, "food-model")
    store.apply(OnlineService.model_validate(SERVICE))
    env_port = {"GALLEY_PORT": str(free_port())}
    started = subprocess.run([*GALLEY, "start", "food-service"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "GALLEY_HOME": str(home), **env_port})
    assert started.returncode == 0, started.stderr

    def serving() -> str | None:
        service = store.get(OnlineService, "food-service")
        return service.status.url if service and service.status and service.status.phase == "Running" else None

    url = eventually(serving, timeout=120, message="the service to serve")
    supervisor = store.supervisor_pid("food-service")
    assert supervisor is not None
    with urllib.request.urlopen(url + "v2/health/ready", timeout=5) as answer:
        assert answer.status == 200

    opened = tmp_path / "opened"  # $BROWSER stands in for the user's browser
    browser = {"BROWSER": f"sh -c 'echo %s > {opened}'"}
    shown = subprocess.run([*GALLEY, "open", "food-service"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "GALLEY_HOME": str(home), **browser})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == url and opened.read_text().strip() == url
    printed = _galley("open", "osvc/food-service", "--no-browser", home=home)
    assert printed.stdout.strip() == url

    deleted = _galley("delete", "osvc/food-service", home=home)
    assert deleted.returncode == 0, deleted.stderr
    assert "OnlineService food-service deleted" in deleted.stdout
    with pytest.raises(urllib.error.URLError):  # the predictor was stopped before the service was forgotten
        urllib.request.urlopen(url + "v2/health/ready", timeout=5)
    eventually(lambda: _exited(supervisor), timeout=30, message="the supervisor to exit")
    assert "food-service" not in _galley("get", "osvc", home=home).stdout
    assert store.get(Model, "food-model") is not None  # only what was named is deleted
    assert trained_package.is_dir() and (trained_package / "config.json").is_file()  # storage is never touched


def test_validate_knows_a_clusters_own_flavors_when_given_its_catalogue(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food"},
        "spec": {"dataset": {"uri": "s3://food/data/"}, "output": {"uri": "s3://food/out/"},
                 "resources": {"flavor": "gpu-t4-1"}}}))
    built_in = _galley("validate", "-f", str(job))
    assert built_in.returncode == 1 and "unknown flavor 'gpu-t4-1'" in built_in.stderr
    flavors = tmp_path / "flavors.yaml"  # as the chart's values.yaml has them
    flavors.write_text(yaml.safe_dump({"flavors": [{"name": "gpu-t4-1", "description": "1 x NVIDIA T4", "cpu": "4",
                                                    "memory": "16Gi", "gpus": 1, "gpuProduct": "Tesla-T4"}]}))
    known = _galley("validate", "-f", str(job), "--flavors", str(flavors))
    assert known.returncode == 0 and "TrainingJob/food: valid" in known.stdout, known.stderr
    missing = _galley("validate", "-f", str(job), "--flavors", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "--flavors" in missing.stderr and "nope.yaml" in missing.stderr


def test_purge_output_deletes_a_jobs_output_only_when_confirmed(tmp_path: Path, s3: Any) -> None:
    from galley.api.resources import TrainingJob
    from galley.local.state import Store

    s3.create_bucket(Bucket="food")
    for key in ("runs/a/model/config.json", "runs/a/logs/training.log", "runs/b/model/config.json"):
        s3.put_object(Bucket="food", Key=key, Body=b"{}")
    home = tmp_path / "home"
    Store(home).apply(TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food"},
        "spec": {"algorithm": {"name": "resnet50"}, "dataset": {"uri": "s3://food/photos/"},
                 "output": {"uri": "s3://food/runs/a/"}}}))

    def keys() -> list[str]:
        return sorted(item["Key"] for item in s3.list_objects_v2(Bucket="food").get("Contents", []))

    env = {**os.environ, "GALLEY_HOME": str(home)}
    refused = subprocess.run([*GALLEY, "delete", "tj/food", "--purge-output"], input="fod\n", env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "s3://food/runs/a/" in refused.stderr
    assert "not confirmed: nothing was deleted" in refused.stderr
    assert len(keys()) == 3 and "food" in _galley("get", "tj", home=home).stdout
    not_a_job = _galley("delete", "food", "--purge-output", "--yes", home=Path(tmp_path / "empty"))
    assert not_a_job.returncode == 1 and "not found" in not_a_job.stderr

    confirmed = subprocess.run([*GALLEY, "delete", "tj/food", "--purge-output"], input="food\n", env=env,
                               capture_output=True, text=True, timeout=60)
    assert confirmed.returncode == 0, confirmed.stderr
    assert "TrainingJob food deleted, and 2 file(s) under s3://food/runs/a/" in confirmed.stdout
    assert keys() == ["runs/b/model/config.json"], "only the job's own output goes"
    assert "food" not in _galley("get", "tj", home=home).stdout


def test_output_cut_short_by_the_reader_is_no_error(tmp_path: Path) -> None:
    """`galley get | head -1`: the reader leaves early; galley stops quietly, as Unix tools do."""
    from galley.api.resources import OnlineService
    from galley.local.state import Store

    home = tmp_path / "home"
    store = Store(home)
    for index in range(1500):  # more than a pipe holds (64 KiB), so the writer meets the closed end
        store.apply(OnlineService.model_validate({**SERVICE, "metadata": {"name": f"service-{index}"}}))
    pipeline = subprocess.run(f"{' '.join(GALLEY)} get osvc | head -1", shell=True, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "GALLEY_HOME": str(home)})
    assert pipeline.stdout.split()[:2] == ["NAME", "READY"]
    assert "error" not in pipeline.stderr.lower() and "Traceback" not in pipeline.stderr, pipeline.stderr
