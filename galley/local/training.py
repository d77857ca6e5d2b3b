"""Running a TrainingJob on this machine, with its status kept like the operator keeps it."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from galley.api.flavors import default_catalogue
from galley.api.resources import TrainingJob
from galley.control import termination
from galley.control.progress import job_identity, read_progress
from galley.control.reasons import PREEMPTED
from galley.control.training import TrainerState, training_status
from galley.local.progress_bar import ProgressBar
from galley.local.state import Store
from galley.model import package
from galley.trainer.checkpoint import OutputInUseError
from galley.trainer.engine import train
from galley.trainer.launch import NPROC_PER_NODE_ENV, ranks_per_node
from galley.trainer.preemption import PreemptedError

log = logging.getLogger("galley.local")


def _progress(job: TrainingJob) -> dict[str, Any] | None:
    """This job's progress record; another job's in the same output location is not this job's."""
    return read_progress(job.spec.output.uri, job_identity(job))


def _update(store: Store, name: str, state: TrainerState, progress: dict[str, Any] | None) -> TrainingJob:
    job = store.get(TrainingJob, name)
    assert job is not None
    status = training_status(job, state, progress)
    if job.status is None or job.status.phase != status.phase:
        store.record_event(job, status.phase or "Pending", f"TrainingJob {name} is {status.phase}")
    store.save_status(job, status)
    return job.model_copy(update={"status": status})


def already_done(job: TrainingJob) -> bool:
    """Succeeded before, and its package is still there."""
    if job.status is None or job.status.phase != "Succeeded" or not job.status.model_uri:
        return False
    try:
        package.read_config(job.status.model_uri)
    except package.PackageError:
        return False
    return True


def _run_ranks(store: Store, job: TrainingJob, per_node: int) -> TrainingJob:
    """``resources.nodes`` x ``per_node`` local processes, one per rank, as the cluster runs one pod per
    node and one rank per GPU."""
    import json

    from galley.trainer.launch import run_local_ranks

    manifest = job.to_manifest()
    manifest.pop("status", None)
    nodes = job.spec.resources.nodes
    log.info("resources.nodes is %d, %d rank(s) per node: training with %d local processes", nodes, per_node,
             nodes * per_node)
    _update(store, job.name, TrainerState(exists=True, active=True), _progress(job))
    with tempfile.TemporaryDirectory() as scratch:
        last_word = Path(scratch) / "termination-log"
        code = run_local_ranks(json.dumps(manifest, ensure_ascii=False), nodes, per_node,
                               termination_log=last_word, gpus=torch.cuda.device_count())
        said = termination.parse(last_word.read_text(encoding="utf-8")) if last_word.is_file() else None
    if code == termination.EXIT_PREEMPTED:
        _preempted(store, job.name, said[1] if said else "stopped on SIGTERM")
    if code == 130:
        raise KeyboardInterrupt
    if said is not None and said[0] == OutputInUseError.reason:  # the progress record there is another job's
        return _update(store, job.name, TrainerState(exists=True, failed=True, failure_reason=said[0],
                                                     message=said[1]), None)
    progress = _progress(job)
    if code != 0:
        message = (progress or {}).get("message") or f"a trainer process exited with {code}"
        return _update(store, job.name, TrainerState(exists=True, failed=True, message=message), progress)
    return _update(store, job.name, TrainerState(exists=True, succeeded=True), progress)


def _preempted(store: Store, name: str, message: str) -> None:
    """Stopped on SIGTERM with a checkpoint: Pending (Preempted) until the same command runs again,
    which resumes there; the command ends as an interrupt does."""
    job = store.get(TrainingJob, name)
    assert job is not None
    _update(store, name, TrainerState(exists=True, waiting_reason=PREEMPTED,
                                      message=f"{message}; run the same command again to resume"), _progress(job))
    raise KeyboardInterrupt


def run_training_job(store: Store, name: str) -> TrainingJob:
    """Train in this process; Ctrl-C leaves the last epoch's checkpoint, and the next run resumes."""
    job = store.get(TrainingJob, name)
    assert job is not None, name
    if already_done(job):
        log.info("TrainingJob %s already succeeded; model package at %s", name, job.status.model_uri)  # type: ignore[union-attr]
        return job
    flavor = default_catalogue()[job.spec.resources.flavor]
    if flavor.is_gpu and not torch.cuda.is_available():
        log.warning("flavor %s asks for %d GPU(s) but this machine has none: training on the CPU",
                    flavor.name, flavor.gpus)
    try:
        per_node = ranks_per_node(flavor.gpus, job.spec.resources.nodes, torch.cuda.device_count(),
                                  os.environ.get(NPROC_PER_NODE_ENV))
        if job.spec.resources.nodes * per_node > 1:
            return _run_ranks(store, job, per_node)
    except ValueError as error:  # a bad $GALLEY_NPROC_PER_NODE, or fewer GPUs than the ranks need
        return _update(store, name, TrainerState(exists=True, failed=True, message=str(error)), None)
    bar = ProgressBar()
    running = TrainerState(exists=True, active=True)

    def on_progress(record: dict[str, Any]) -> None:
        bar.progress(record)
        if record.get("phase") == "Running":
            _update(store, name, running, record)

    _update(store, name, running, _progress(job))
    try:
        train(job, on_progress=on_progress, on_step=bar.step)
    except KeyboardInterrupt:
        bar.clear()
        _update(store, name, TrainerState(exists=True, active=False, waiting_reason="Interrupted",
                                          message="interrupted; run again to resume from the last checkpoint"),
                _progress(job))
        raise
    except PreemptedError as error:
        bar.clear()
        _preempted(store, name, str(error))
    except OutputInUseError as error:  # the progress record there is another job's
        bar.clear()
        return _update(store, name, TrainerState(exists=True, failed=True, failure_reason=error.reason,
                                                 message=str(error)), None)
    except Exception as error:
        bar.clear()
        return _update(store, name, TrainerState(exists=True, failed=True, message=str(error)),
                       _progress(job))
    bar.clear()
    return _update(store, name, TrainerState(exists=True, succeeded=True), _progress(job))
