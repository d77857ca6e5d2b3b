"""What the trainer tells the world while it runs.

Three outputs, one per reader:

* stdout: readable lines per epoch (``kubectl logs``, the embedded mode's progress bar).
* ``<logs>/training.log`` and ``<logs>/metrics.jsonl``: the same, kept with the job.
* ``<output>/progress.json``: the progress record, whose format and readers live in
  :mod:`galley.control.progress` (the contract with the operator and the embedded backend).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from galley import storage
from galley.control.progress import EPOCH_LINE, progress_uri

log = logging.getLogger("galley.trainer")

@dataclass
class Reporter:
    """Writes the training log, the metrics lines and the progress record."""

    output_uri: str
    logs_uri: str
    job: str = ""
    """The writing job's identity, stamped on every progress record."""
    lines: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    on_progress: Callable[[dict[str, Any]], None] | None = None
    """Called with every progress record as it is published (the embedded backend's status updates)."""
    on_step: Callable[[str, int, int], None] | None = None
    """Called as ``(stage, done, total)`` during an epoch (the embedded backend's progress bar)."""
    writes: bool = True
    """False on the ranks other than 0 of a distributed job: they log, rank 0 writes the files."""

    def resume(self) -> None:
        """Keep the earlier run's log lines when a job resumes."""
        try:
            self.lines = storage.read_text(storage.join(self.logs_uri, "training.log")).splitlines()
        except storage.StorageError:
            self.lines = []

    def step(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` images through ``stage`` of this epoch (logged at debug level: ``-v``)."""
        log.debug("%s: %d of %d images", stage, done, total)
        if self.on_step is not None:
            self.on_step(stage, done, total)

    def say(self, message: str, *args: object) -> None:
        text = message % args if args else message
        log.info(text)
        self.lines.append(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {text}")

    def flush_log(self) -> None:
        if not self.writes:
            return
        storage.write_text(storage.join(self.logs_uri, "training.log"), "\n".join(self.lines) + "\n")
        storage.write_text(storage.join(self.logs_uri, "metrics.jsonl"),
                           "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records))

    def epoch(self, record: dict[str, Any]) -> None:
        """One epoch's numbers: logged, appended to metrics.jsonl, published as progress."""
        self.records.append(record)
        accuracy = record.get("eval_accuracy")
        self.say(
            EPOCH_LINE, record["epoch"], record["epochs"], record["lr"], record["train_loss"], record["train_accuracy"],
            "-" if accuracy is None else f"{accuracy:.4f}", record["images_per_second"],
            _clock(record["elapsed"]), _clock(record["eta"]),
        )
        self.flush_log()
        self.publish("Running", record["epoch"], record["epochs"], self.latest_metrics())

    def latest_metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for record in self.records:
            if record.get("eval_accuracy") is not None:
                metrics["accuracy"] = round(record["eval_accuracy"], 4)
            metrics["loss"] = round(record["train_loss"], 4)
            metrics["imagesPerSecond"] = round(record["images_per_second"], 1)
        return metrics

    def publish(self, phase: str, epoch: int, epochs: int, metrics: dict[str, float],
                message: str = "", model_uri: str | None = None, reason: str | None = None) -> None:
        if not self.writes:
            return
        record: dict[str, Any] = {"phase": phase, "epoch": epoch, "epochs": epochs, "metrics": metrics,
                                  "message": message, "updated": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"}
        if model_uri:
            record["modelUri"] = model_uri
        if reason:
            record["reason"] = reason
        if self.job:
            record["job"] = self.job
        storage.write_text(progress_uri(self.output_uri), json.dumps(record, ensure_ascii=False) + "\n")
        if self.on_progress is not None:
            self.on_progress(record)


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
