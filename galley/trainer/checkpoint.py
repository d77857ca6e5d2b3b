"""Checkpoints under ``<output>/checkpoints/``: everything needed to resume, written every epoch.

``latest.pt`` holds the network, optimizer, epoch, history and RNG state; ``best.pt`` the
network with the best evaluation accuracy so far. ``latest.json`` names the epoch and is written
last, so a trainer killed while uploading resumes from the previous complete checkpoint.
Checkpoints load with ``torch.load(weights_only=True)``: tensors and plain data only.
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch

from galley import storage

LATEST = "latest.pt"
BEST = "best.pt"
POINTER = "latest.json"


def checkpoints_uri(output_uri: str) -> str:
    return storage.join(output_uri, "checkpoints")


def _to_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save(output_uri: str, state: dict[str, Any], *, best: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``state`` as the latest checkpoint (and ``best`` when given), pointer last."""
    root = checkpoints_uri(output_uri)
    if best is not None:
        storage.write_bytes(storage.join(root, BEST), _to_bytes({"model": best, "epoch": state["epoch"]}))
    storage.write_bytes(storage.join(root, LATEST), _to_bytes(state))
    storage.write_text(storage.join(root, POINTER), json.dumps({"epoch": state["epoch"], "file": LATEST}) + "\n")


def _load(uri: str) -> dict[str, Any]:
    loaded = torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise ValueError(f"{uri}: not a Galley checkpoint")
    return loaded


def load_latest(output_uri: str) -> dict[str, Any] | None:
    """The latest complete checkpoint, or None when the job has none yet."""
    root = checkpoints_uri(output_uri)
    pointer = storage.join(root, POINTER)
    if not storage.exists(pointer):
        return None
    name = json.loads(storage.read_text(pointer))["file"]
    return _load(storage.join(root, name))


def load_best(output_uri: str) -> dict[str, torch.Tensor] | None:
    uri = storage.join(checkpoints_uri(output_uri), BEST)
    if not storage.exists(uri):
        return None
    model: dict[str, torch.Tensor] = _load(uri)["model"]
    return model
