"""The progress record: the contract between a running trainer and whoever follows it.

The trainer writes ``<output>/progress.json`` (:class:`galley.trainer.progress.Reporter`); the
operator and the embedded backend read it into the TrainingJob's ``status`` while the job runs.
Its fields are camelCase, as in ``status``::

    {"phase": "Running" | "Succeeded" | "Failed", "epoch": 3, "epochs": 20,
     "metrics": {"accuracy": 0.91, "loss": 0.42, "imagesPerSecond": 38.5},
     "message": "...", "modelUri": "s3://.../model/" (once written), "updated": "<RFC 3339>",
     "reason": "OutputInUse" (when a failure has a reason of its own),
     "job": "uid:..." (who wrote it: see :func:`job_identity`)}

A reader passes the job's identity to :func:`read_progress`, so that another job's record in a
shared output location is never shown as this job's. The record is rewritten whole after every
epoch and at the end; ``epoch`` only grows. Both sides import this module, so neither imports
the other.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from galley import storage
from galley.api.resources import TrainingJob

PROGRESS_FILE = "progress.json"


def progress_uri(output_uri: str) -> str:
    return storage.join(output_uri, PROGRESS_FILE)


def job_identity(job: TrainingJob) -> str:
    """Who a checkpoint or progress record belongs to: the resource's uid on a cluster or in the
    embedded store, else (a job file run directly) a digest of its namespace, name and spec, so that
    re-running the same file resumes."""
    if job.metadata.uid:
        return f"uid:{job.metadata.uid}"
    spec = json.dumps(job.to_manifest()["spec"], sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{job.metadata.namespace}/{job.name}\n{spec}".encode()).hexdigest()[:16]
    return f"spec:{digest}"


def read_progress(output_uri: str, job: str | None = None, *, strict: bool = False) -> dict[str, Any] | None:
    """The progress record, or None before the trainer has written one, or when ``job`` is given
    and the record is another job's. With ``strict``, a store that cannot be read raises
    (StorageUnavailable, or another StorageError) instead of reading as "no record": the
    operator keeps the last record it read rather than forget it."""
    try:
        data = json.loads(storage.read_text(progress_uri(output_uri)))
    except storage.StorageNotFound:
        return None
    except storage.StorageError:
        if strict:
            raise
        return None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    if job is not None and data.get("job") not in (None, job):
        return None
    return data


EPOCH_LINE = "epoch %d/%d lr %.6g train_loss %.4f train_acc %.4f eval_acc %s %.1f img/s elapsed %s eta %s"
"""The trainer's log line of one epoch (:class:`galley.trainer.progress.Reporter` writes it);
:func:`epoch_records` reads it back (the console, where it cannot read ``metrics.jsonl``)."""
_EPOCH_PATTERN = re.compile(
    r"epoch (?P<epoch>\d+)/(?P<epochs>\d+) lr \S+ train_loss (?P<train_loss>[\d.]+) "
    r"train_acc (?P<train_accuracy>[\d.]+) eval_acc (?P<eval_accuracy>[\d.]+|-) (?P<images_per_second>[\d.]+) img/s")


def epoch_records(log_text: str) -> list[dict[str, Any]]:
    """The per-epoch numbers in a trainer's log, as in ``metrics.jsonl`` (no eval accuracy where
    the epoch had none)."""
    records = []
    for match in _EPOCH_PATTERN.finditer(log_text):
        record: dict[str, Any] = {k: float(v) for k, v in match.groupdict().items() if v != "-"}
        record["epoch"], record["epochs"] = int(record["epoch"]), int(record["epochs"])
        records.append(record)
    return records
