"""CLI habits kubectl and pip users expect, through the real ``galley`` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from galley import __version__

GALLEY = [sys.executable, "-m", "galley.cli"]
SERVICE = {"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService", "metadata": {"name": "food-service"},
           "spec": {"model": "food-model", "flavor": "cpu-1c-4g", "autoStop": {"after": "1h"}}}


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
    assert "a YAML file or a folder of them" in validate
    assert "(default: False)" not in _galley("run", "--help").stdout  # flags say nothing about a default


def test_get_prints_whole_objects_as_yaml_or_json(tmp_path: Path) -> None:
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
    refused = _galley("get", "-o", "xml", home=home)
    assert refused.returncode == 2 and "invalid choice: 'xml'" in refused.stderr
