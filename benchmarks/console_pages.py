"""How fast the console's pages load with 200 resources on this machine (embedded backend).

Fills a fresh state folder with 70 TrainingJobs (status, a 20-epoch metrics.jsonl and a training
log each), 65 Models (config.json and metrics.json in the package format, four classes) and 65
OnlineServices, starts ``galley console`` through the CLI, and times each page over loopback.
The baseline, in the same run: reading and printing the same resources as ``galley get`` does
(in-process), which the overview must do too. Goal (issue 16): every page under 300 ms.

    .venv/bin/python benchmarks/console_pages.py [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from galley import commands
from galley.api.resources import Model, ModelStatus, OnlineService, OnlineServiceStatus, TrainingJob, TrainingJobStatus
from galley.local.state import Store
from galley.testing.processes import console

LABELS = ["凉皮", "柿子饼", "灌汤包", "肉夹馍"]
GOAL_MS = 300.0


def fill(home: Path, jobs: int = 70, models: int = 65, services: int = 65) -> None:
    store = Store(home)
    now = datetime.now(UTC)
    for i in range(jobs):
        output = home / "output" / f"job-{i}"
        job = TrainingJob.model_validate({
            "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": f"job-{i}"},
            "spec": {"dataset": {"uri": "s3://galley-data/food/"}, "output": {"uri": str(output)},
                     "hyperparameters": {"learning_rate_strategy": "20:0.001"}}})
        store.apply(job)
        records = [{"epoch": e, "epochs": 20, "lr": 0.001, "train_loss": 1.2 / e, "train_accuracy": 1 - 0.5 / e,
                    "eval_accuracy": 1 - 0.6 / e, "images_per_second": 38.5, "elapsed": 10.0 * e,
                    "eta": 10.0 * (20 - e)} for e in range(1, 21)]
        (output / "logs").mkdir(parents=True)
        (output / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (output / "logs" / "training.log").write_text("".join(f"epoch {r['epoch']}/20 ...\n" for r in records))
        store.save_status(job, TrainingJobStatus(
            phase="Succeeded", epoch=20, epochs=20, model_uri=str(output / "model"),
            metrics={"accuracy": 0.94, "loss": 0.06, "imagesPerSecond": 38.5}))
        per_class = {label: {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 25} for label in LABELS}
        package = output / "model"
        package.mkdir()
        (package / "config.json").write_text(json.dumps({
            "name": f"job-{i}", "algorithm": "resnet50", "labels": LABELS,
            "training": {"selected_epoch": 18, "epochs": 20, "selection_reason": "best eval accuracy",
                         "train_images": 400, "eval_images": 100, "near_duplicate_groups": 12}}))
        (package / "metrics.json").write_text(json.dumps({
            "accuracy": 0.94, "eval_images": 100, "macro_f1": 0.94, "per_class": per_class,
            "confusion_matrix": {"labels": LABELS, "matrix": [[23, 1, 1, 0]] * 4}}))
    for i in range(models):
        model = Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model",
                                      "metadata": {"name": f"model-{i}"},
                                      "spec": {"source": {"trainingJob": f"job-{i}"}}})
        store.apply(model)
        store.save_status(model, ModelStatus(uri=str(home / "output" / f"job-{i}" / "model"), labels=LABELS,
                                             metrics={"accuracy": 0.94}, algorithm="resnet50"))
    for i in range(services):
        service = OnlineService.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService",
                                                "metadata": {"name": f"service-{i}"},
                                                "spec": {"model": f"model-{i}", "autoStop": {"after": "1h"}}})
        store.apply(service)
        store.save_status(service, OnlineServiceStatus(phase="Stopped", stopped_at=now))


def timed_get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        assert response.status == 200, url
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="requests per page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="galley-console-bench-") as folder:
        home = Path(folder)
        fill(home)
        store = Store(home)
        baseline = []
        for _ in range(args.requests):
            start = time.perf_counter()
            commands.get(store, None)
            baseline.append((time.perf_counter() - start) * 1000)
        pages = {"overview /": "/", "job page": "/trainingjobs/job-7", "job live part": "/trainingjobs/job-7/live",
                 "model page": "/models/model-7", "service page": "/services/service-7", "create form": "/create"}
        with console("--home", str(home), env=dict(os.environ)) as url:
            for path in pages.values():  # warm-up: templates compiled, caches filled
                timed_get(url + path)
            results = {name: [timed_get(url + path) for _ in range(args.requests)] for name, path in pages.items()}
    base = statistics.median(baseline)
    print(f"200 resources (70 TrainingJobs, 65 Models, 65 OnlineServices), {args.requests} requests per page")
    print(f"baseline: `galley get` of the same store, in-process: p50 {base:.1f} ms")
    print(f"{'page':<16}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'x baseline':>12}  goal <{GOAL_MS:.0f} ms")
    for name, times in results.items():
        times.sort()
        p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
        verdict = "ok" if p95 < GOAL_MS else "MISSED"
        print(f"{name:<16}{p50:>9.1f}{p95:>9.1f}{times[-1]:>9.1f}{p50 / base:>12.2f}  {verdict}")


if __name__ == "__main__":
    main()
