"""``storage.secretRef`` in the embedded mode: read from ``<home>/secrets/NAME.env``, never shown."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from galley.api.resources import Model
from galley.local.state import Store
from tests.local.test_galley_run import GALLEY

SECRET_VALUE = "embedded-s3cr3t-never-shown"


def _model(uri: str, secret: str = "s3-credentials") -> dict[str, Any]:
    return {"apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "food-model"},
            "spec": {"source": {"uri": uri}, "storage": {"secretRef": secret}}}


def test_a_secret_file_supplies_the_credentials_the_environment_lacks(tmp_path: Path, s3: Any, s3_endpoint: str,
                                                                      trained_package: Path) -> None:
    s3.create_bucket(Bucket="packages")
    for path in trained_package.iterdir():
        s3.upload_file(str(path), "packages", f"food/{path.name}")
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "s3-credentials.env").write_text(
        "# as `kubectl create secret generic s3-credentials --from-env-file` takes it\n"
        f"AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY={SECRET_VALUE}\n"
        f"AWS_ENDPOINT_URL={s3_endpoint}\nAWS_DEFAULT_REGION=us-east-1\n")
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(_model("s3://packages/food/")))
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    ran = subprocess.run([*GALLEY, "run", "-f", str(tmp_path / "model.yaml")], capture_output=True, text=True,
                         timeout=120, env={**bare, "GALLEY_HOME": str(home)})
    assert ran.returncode == 0, ran.stderr
    assert f"storage.secretRef 's3-credentials': 4 value(s) from {home / 'secrets' / 's3-credentials.env'}" \
        in ran.stdout
    assert SECRET_VALUE not in ran.stdout + ran.stderr
    model = Store(home).get(Model, "food-model")
    assert model is not None and model.status is not None and model.status.labels


def test_without_the_file_the_reference_is_ignored_loudly(tmp_path: Path, trained_package: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(_model(str(trained_package))))
    ran = subprocess.run([*GALLEY, "run", "-f", str(tmp_path / "model.yaml")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "GALLEY_HOME": str(home)})
    assert ran.returncode == 0, ran.stderr
    assert "storage.secretRef 's3-credentials' names a Kubernetes Secret; the embedded mode reads it from " \
           f"{home / 'secrets' / 's3-credentials.env'}, which does not exist, so storage uses AWS_* from this " \
           "environment" in ran.stdout


def test_resources_naming_different_secrets_are_refused_before_anything_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    documents = [_model("s3://packages/a/", "team-a"), {**_model("s3://packages/b/", "team-b"),
                                                        "metadata": {"name": "other-model"}}]
    (tmp_path / "models.yaml").write_text(yaml.safe_dump_all(documents))
    ran = subprocess.run([*GALLEY, "run", "-f", str(tmp_path / "models.yaml")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "GALLEY_HOME": str(home)})
    assert ran.returncode == 1
    assert "name different storage.secretRef values (team-a, team-b)" in ran.stderr
    assert Store(home).all(Model) == [], "nothing was applied"
