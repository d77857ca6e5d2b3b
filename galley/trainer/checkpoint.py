"""Checkpoints under ``<output>/checkpoints/``: everything needed to resume, written every epoch.

``latest.pt`` holds the network, optimizer, GradScaler, epoch, history and RNG states (CPU and,
where there is one, CUDA); ``best.pt`` the network with the best evaluation accuracy so far.
``latest.json`` names the epoch and the job that wrote it, and is written last, so a trainer
killed while uploading resumes from the previous complete checkpoint. Checkpoints load with
``torch.load(weights_only=True)``: tensors and plain data only.

Every checkpoint carries its job's identity (see :func:`galley.control.progress.job_identity`). A job that finds another
job's checkpoints in its output location stops with ``OutputInUse`` instead of silently
continuing someone else's training, unless ``spec.output.resumeFromOtherJobs`` says it may.
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch

from galley import storage
from galley.control.reasons import OUTPUT_IN_USE

LATEST = "latest.pt"
BEST = "best.pt"
POINTER = "latest.json"


class OutputInUseError(RuntimeError):
    """The output location holds another job's checkpoints."""

    reason = OUTPUT_IN_USE


def checkpoints_uri(output_uri: str) -> str:
    return storage.join(output_uri, "checkpoints")


def _to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save(output_uri: str, state: dict[str, Any], *, job: str, best: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``state`` as the latest checkpoint of ``job`` (and ``best`` when given), pointer last."""
    root = checkpoints_uri(output_uri)
    if best is not None:
        storage.write_bytes(storage.join(root, BEST), _to_bytes({"model": best, "epoch": state["epoch"], "job": job}))
    storage.write_bytes(storage.join(root, LATEST), _to_bytes({**state, "job": job}))
    storage.write_text(storage.join(root, POINTER),
                       json.dumps({"epoch": state["epoch"], "file": LATEST, "job": job}) + "\n")


def _load(uri: str) -> dict[str, Any]:
    loaded = torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise ValueError(f"{uri}: not a Galley checkpoint")
    return loaded


def load_latest(output_uri: str, job: str, *, allow_other_jobs: bool = False) -> dict[str, Any] | None:
    """The latest complete checkpoint of ``job``, or None when there is none yet.

    Raises :class:`OutputInUseError` when the checkpoint belongs to another job and
    ``allow_other_jobs`` is false.
    """
    root = checkpoints_uri(output_uri)
    pointer = storage.join(root, POINTER)
    if not storage.exists(pointer):
        return None
    record = json.loads(storage.read_text(pointer))
    owner = record.get("job")
    if owner != job and not allow_other_jobs:
        whose = f"job {owner}" if owner else "a job of an earlier Galley"
        raise OutputInUseError(
            f"{root} holds checkpoints of another TrainingJob ({whose}, epoch {record.get('epoch')}); "
            "use an output location of its own, or set spec.output.resumeFromOtherJobs: true to continue "
            "from them")
    return _load(storage.join(root, record["file"]))


def load_best(output_uri: str) -> tuple[dict[str, torch.Tensor], int] | None:
    """The best epoch's weights and its number, or None when no epoch was evaluated."""
    uri = storage.join(checkpoints_uri(output_uri), BEST)
    if not storage.exists(uri):
        return None
    loaded = _load(uri)
    return loaded["model"], int(loaded["epoch"])


def rng_states() -> dict[str, Any]:
    """The random number generators a resumed run must continue from."""
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any] | torch.Tensor) -> None:
    if isinstance(states, torch.Tensor):  # checkpoints written before CUDA states were kept
        torch.set_rng_state(states)
        return
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
