"""Status writes: only fields that differ from what the API server keeps are patched."""

from __future__ import annotations

from typing import Any

import kopf

from galley.operator.reconcile import write_status

STORED: dict[str, Any] = {  # as the API server returns it: no nulls, no empty strings
    "phase": "Running",
    "conditions": [{"type": "Created", "status": "True", "reason": "JobCreated",
                    "lastTransitionTime": "2026-11-26T10:00:00Z"}],
    "metrics": {"accuracy": 0.91},
}


def body_with(status: dict[str, Any]) -> kopf.Body:
    return kopf.Body({"apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob",
                      "metadata": {"name": "job", "namespace": "ns"}, "spec": {}, "status": status})


def test_a_status_equal_to_the_stored_one_is_not_written_again() -> None:
    desired = {**STORED, "message": None, "modelUri": "",
               "metrics": {"accuracy": 0.91, "loss": None, "imagesPerSecond": None}}
    patch = kopf.Patch()
    assert write_status(body_with(STORED), patch, desired) is False
    assert not patch


def test_only_the_fields_that_changed_are_written() -> None:
    desired = {**STORED, "phase": "Succeeded", "metrics": {"accuracy": 0.95, "loss": None}}
    patch = kopf.Patch()
    assert write_status(body_with(STORED), patch, desired) is True
    assert dict(patch["status"]) == {"phase": "Succeeded", "metrics": {"accuracy": 0.95, "loss": None}}
