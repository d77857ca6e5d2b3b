"""The console's Algorithms page and the create form's hyperparameter help, through the real app over
an embedded store: what they show is the table that checks hyperparameters, and the form's extra
fields reach the TrainingJob it creates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from galley.api.flavors import default_catalogue
from galley.api.hyperparameters import HYPERPARAMETERS
from galley.api.resources import TrainingJob
from galley.console.app import create_app
from galley.console.security import Guard
from galley.local.backend import EmbeddedBackend

FORM = {"name": "food", "algorithm": "resnet18", "dataset": "s3://food/data/", "learning_rate_strategy": "5:0.01",
        "flavor": "cpu-2c-8g", "nodes": "1", "output": "s3://food/output/", "secret": ""}


@pytest.fixture
def web(tmp_path: Path) -> tuple[TestClient, EmbeddedBackend]:
    backend = EmbeddedBackend(tmp_path / "home")
    return TestClient(create_app(backend, default_catalogue(), Guard(None, allowed_hosts=["testserver"]),
                                 where="test")), backend


def row(page: str, table: str, name: str) -> str:
    found = re.search(rf'<table id="{table}">.*?<tr[^>]*data-name="{name}">(.*?)</tr>', page, re.S)
    assert found, f"no row {name} in table {table}"
    return found.group(1)


def test_the_algorithms_page_shows_every_preset_and_hyperparameter_from_the_table(
        web: tuple[TestClient, EmbeddedBackend], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    client, _ = web
    page = client.get("/algorithms")
    assert page.status_code == 200
    assert '<a href="/algorithms">Algorithms</a>' in client.get("/").text
    resnet50 = row(page.text, "algorithms", "resnet50")
    assert "ResNet-50" in resnet50 and "25.6 M" in resnet50 and "224×224 (resize 256)" in resnet50
    assert "not found" in resnet50 and str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") \
        in resnet50
    mobilenet = row(page.text, "algorithms", "mobilenet_v2")
    assert "found</span>" in mobilenet and "mobilenet_v2-b0353104.pth" in mobilenet
    for h in HYPERPARAMETERS:
        cells = re.findall(r"<td>(.*?)</td>", row(page.text, "hyperparameters", h.name), re.S)
        assert cells == [f"<code>{h.name}</code>", f"<code>{escape(h.default)}</code>", str(escape(str(h.allowed))),
                         str(escape(h.description))]


def test_the_create_form_shows_each_hyperparameters_help_beside_its_field(
        web: tuple[TestClient, EmbeddedBackend]) -> None:
    client, _ = web
    page = client.get("/create").text
    for h in HYPERPARAMETERS:
        field = re.search(rf'<input name="{h.name}"[^>]*aria-describedby="help-{h.name}"></label>\s*'
                          rf'<p class="help muted" id="help-{h.name}" data-help="{h.name}">(.*?)</p>', page, re.S)
        assert field, f"{h.name}: no field with its help"
        assert field.group(1).startswith(f"{escape(h.description)} Allowed: {escape(str(h.allowed))}; "
                                         f"default {escape(h.default)}.")
    assert '<details id="more-hyperparameters">' in page  # closed until one is typed in


def test_hyperparameters_typed_in_the_form_are_checked_beside_their_field_and_created(
        web: tuple[TestClient, EmbeddedBackend]) -> None:
    client, backend = web
    refused = client.post("/create", data={**FORM, "batch_size": "many", "seed": "", "action": "create"})
    assert refused.status_code == 422
    assert re.findall(r'<p class="error" data-field="([a-z_]+)">', refused.text) == ["batch_size"]
    assert '<details id="more-hyperparameters" open>' in refused.text
    created = client.post("/create", data={**FORM, "batch_size": "16", "optimizer": "sgd", "seed": "",
                                           "action": "create"}, follow_redirects=False)
    assert created.status_code == 303, created.text
    job = backend.get(TrainingJob, "food")
    assert job is not None
    assert job.spec.hyperparameters.as_strings() == {"learning_rate_strategy": "5:0.01", "batch_size": "16",
                                                     "optimizer": "sgd"}
