"""The console in a real browser (Debian's headless Chromium), on the embedded backend, following
the seed's steps: create a job from the form, watch its curves grow while it trains, deploy it,
classify a photo on the embedded test page, stop the service and start it again.

Nothing is mocked: the job trains MobileNetV2 on real photos in a background process, and the
service is a real predictor process under the embedded supervisor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.api.resources import Model, OnlineService, TrainingJob
from galley.local.state import Store
from galley.testing.browser import Browser
from galley.testing.processes import console, free_port
from tests.local.test_galley_run import predictor_processes

EPOCHS = 4


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-home")


@pytest.fixture(scope="module")
def console_url(home: Path) -> Iterator[str]:
    env = {**os.environ, "GALLEY_PORT": str(free_port())}
    with console("--home", str(home), env=env) as url:
        yield url
    subprocess.run([sys.executable, "-m", "galley.cli", "stop", "--home", str(home), "food"], check=False,
                   capture_output=True)
    deadline = time.monotonic() + 30
    while predictor_processes(home) and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


def fill(browser: Browser, values: dict[str, str]) -> None:
    """Type into the form's fields, as a user would (one input or select per name)."""
    browser.evaluate(f"Object.entries({json.dumps(values)})"
                     ".forEach(([name, value]) => { document.querySelector(`[name=${name}]`).value = value; })")


def click_and_wait(browser: Browser, selector: str, path_after: str, timeout: float = 30) -> None:
    """Press a button that submits a form, and wait for the page the server answers with."""
    browser.evaluate(f"window.beforeSubmit = true; document.querySelector({selector!r}).click()")
    browser.wait_for(f"window.beforeSubmit === undefined && location.pathname === {path_after!r} && "
                     "document.readyState === 'complete'", timeout)


def job_form(food_photos: Any, output: Path, name: str = "food") -> dict[str, str]:
    return {"name": name, "algorithm": "mobilenet_v2", "dataset": str(food_photos.manifest),
            "learning_rate_strategy": f"{EPOCHS}:0.001", "flavor": "cpu-2c-8g", "nodes": "1", "output": str(output)}


def test_a_bad_form_entry_names_the_field_and_applies_nothing(console_url: str, browser: Browser, home: Path,
                                                               food_photos: Any, tmp_path: Path) -> None:
    browser.open(console_url + "/create")
    fill(browser, {**job_form(food_photos, tmp_path / "out"), "learning_rate_strategy": "20:fast", "nodes": "0"})
    click_and_wait(browser, "#create-button", "/create")
    errors = browser.evaluate("Array.from(document.querySelectorAll('.error'))"
                              ".map(e => [e.dataset.field, e.textContent])")
    assert {field for field, _ in errors} == {"learning_rate_strategy", "nodes"}, errors
    assert any("'20:fast' is not a learning-rate strategy" in text for _, text in errors)
    # What was typed stays in the form, and the YAML shows what would have been applied.
    assert browser.evaluate("document.querySelector('[name=learning_rate_strategy]').value") == "20:fast"
    assert "learning_rate_strategy: 20:fast" in browser.evaluate("document.getElementById('yaml').textContent")
    assert Store(home).all(TrainingJob) == []
    assert not (tmp_path / "out").exists()


def test_a_created_job_shows_its_curves_growing_while_it_trains(console_url: str, browser: Browser, home: Path,
                                                                 food_photos: Any,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    browser.open(console_url + "/create")
    fill(browser, job_form(food_photos, tmp_path_factory.mktemp("food-output")))
    click_and_wait(browser, "#create-button", "/trainingjobs/food")
    browser.evaluate("window.sameDocument = true")  # a reload would drop it: the curves must update in place
    seen: list[int] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = browser.evaluate(
            "({phase: document.getElementById('phase').textContent, same: window.sameDocument === true,"
            " points: Number((document.querySelector('#curves polyline[data-series=\"train loss\"]') || "
            "{dataset: {points: 0}}).dataset.points)})")
        assert state["same"], "the job page reloaded instead of updating in place"
        if not seen or seen[-1] != state["points"]:
            seen.append(state["points"])
        if state["phase"] in ("Succeeded", "Failed"):
            break
        time.sleep(0.2)
    job = Store(home).get(TrainingJob, "food")
    assert job is not None and job.status is not None and job.status.phase == "Succeeded", seen
    assert seen == sorted(seen) and seen[-1] == EPOCHS, seen
    assert any(0 < points < EPOCHS for points in seen), f"the curves never showed a partial run: {seen}"
    assert browser.evaluate("document.getElementById('epoch').textContent") == f"{EPOCHS}/{EPOCHS}"
    accuracy = browser.evaluate("document.getElementById('accuracy').textContent")
    assert accuracy == f"{job.status.metrics.accuracy:.4f}"  # type: ignore[union-attr]
    assert "evaluation photos" in browser.evaluate("document.getElementById('split').textContent")


def test_deploy_this_then_the_embedded_test_page_classifies_a_photo(console_url: str, browser: Browser,
                                                                    home: Path, food_photos: Any) -> None:
    browser.open(console_url + "/trainingjobs/food")
    fill(browser, {"model_name": "food-model", "service_name": "food", "flavor": "cpu-1c-4g",
                   "auto_stop_after": "1h"})
    click_and_wait(browser, "#deploy-button", "/services/food")
    browser.wait_for("document.getElementById('phase').textContent === 'Running'", timeout=180)
    browser.wait_for("!document.getElementById('test-page').hidden")
    frame = "document.getElementById('test-page').contentDocument"
    browser.wait_for(f"{frame} && {frame}.getElementById('model-name') && "
                     f"{frame}.getElementById('model-name').textContent === 'food-model'")
    path, _ = food_photos.holdout[0]
    browser.set_file_at(f"{frame}.getElementById('file')", path)
    rows = browser.wait_for(f"Array.from({frame}.querySelectorAll('#scores .row'))"
                            ".map(r => [r.dataset.label, Number(r.querySelector('.score').textContent)])", timeout=60)
    assert {row[0] for row in rows} == {"水果", "花", "蔬菜", "鸟"}
    assert sum(score for _, score in rows) == pytest.approx(1.0, abs=2e-3)
    service = Store(home).get(OnlineService, "food")
    assert service is not None and service.status is not None and service.status.stop_at is not None
    assert browser.evaluate("document.getElementById('stop-at').textContent").startswith(
        f"{service.status.stop_at:%Y-%m-%d %H:%M:%S}Z")
    browser.open(console_url + "/models/food-model")
    model = Store(home).get(Model, "food-model")
    assert model is not None and model.status is not None
    assert browser.evaluate("document.getElementById('labels').textContent") == ", ".join(model.status.labels)
    assert browser.evaluate("document.querySelectorAll('#per-class tr').length") == 5  # header + 4 classes
    assert browser.evaluate("document.querySelectorAll('#confusion td').length") == 16


def test_stop_then_start_changes_the_service_and_the_page_shows_it(console_url: str, browser: Browser,
                                                                    home: Path) -> None:
    store = Store(home)
    browser.open(console_url + "/services/food")
    browser.wait_for("document.getElementById('phase').textContent === 'Running'", timeout=60)
    click_and_wait(browser, "#stop-button", "/services/food")
    browser.wait_for("document.getElementById('phase').textContent === 'Stopped'", timeout=60)
    assert browser.evaluate("document.getElementById('test-page').hidden") is True
    stopped = store.get(OnlineService, "food")
    assert stopped is not None and stopped.spec.stopped is True  # what `galley stop food` changes

    click_and_wait(browser, "#start-button", "/services/food")
    browser.wait_for("document.getElementById('phase').textContent === 'Running'", timeout=180)
    started = store.get(OnlineService, "food")
    assert started is not None and started.spec.stopped is False
    assert "galley.dev/start" in (started.metadata.annotations or {})  # what `galley start food` adds
    browser.wait_for("!document.getElementById('test-page').hidden")


def test_markup_in_a_package_is_shown_as_text_and_never_runs(console_url: str, browser: Browser, home: Path,
                                                              tmp_path: Path) -> None:
    """Whoever can write a package's files chooses its labels and metrics: on the Model page they are
    text, and the package's report, shown in a sandbox, runs no script either."""
    script = "<script>window.parent.owned = (window.parent.owned || 0) + 1</script>"
    handler = '<img src=x onerror="window.parent.owned = 99">'
    package = tmp_path / "evil-package"
    package.mkdir()
    (package / "config.json").write_text(json.dumps({
        "name": "evil", "algorithm": "resnet50", "labels": [script, "plain"], "report": "report.html",
        "training": {"near_duplicate_groups": handler, "train_images": script, "selection_reason": script},
        "quantization": {"int8_accuracy": None, "reason": handler}}))
    (package / "metrics.json").write_text(json.dumps({
        "accuracy": 0.5, "eval_images": 2, "macro_f1": 0.5,
        "per_class": {script: {"precision": handler, "recall": 1.0, "f1": 1.0, "support": script}},
        "confusion_matrix": {"labels": [handler, "plain"], "matrix": [[1, 0], [script, 1]]}}))
    (package / "report.html").write_text(f"<html><body>{script}<p id='in-report'>report</p></body></html>")
    store = Store(home)
    model = Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model",
                                  "metadata": {"name": "evil-model"}, "spec": {"source": {"uri": str(package)}}})
    store.apply(model)
    from galley.api.resources import ModelStatus

    store.save_status(model, ModelStatus(uri=str(package), labels=[script, "plain"]))
    browser.open(console_url + "/models/evil-model")
    browser.wait_for("document.querySelectorAll('#per-class tr').length === 2")
    time.sleep(1)  # the report's frame loads and the images fail to load: any handler has run by now
    assert browser.evaluate("window.owned === undefined") is True
    assert browser.evaluate("document.querySelectorAll('#evaluation script, #evaluation img').length") == 0
    assert script in browser.evaluate("document.getElementById('labels').textContent")
    assert script in browser.evaluate("document.getElementById('per-class').textContent")
    assert handler in browser.evaluate("document.getElementById('confusion').textContent")
