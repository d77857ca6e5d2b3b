"""How a failed run is named for its supervisor: the reason a user acts on, and whether another
attempt could succeed (the exit status a Job's podFailurePolicy reads)."""

from __future__ import annotations

import pytest

from galley import storage
from galley.control import reasons, termination
from galley.trainer.checkpoint import OutputInUseError
from galley.trainer.failures import classify
from galley.trainer.preparation import TrainingError
from galley.trainer.weights import WeightsNotFound


class OutOfMemoryError(RuntimeError):
    """Named as torch names its CUDA one (torch.OutOfMemoryError), which cannot be raised without a GPU."""


@pytest.mark.parametrize(("error", "reason", "permanent"), [
    (MemoryError(), reasons.OUT_OF_MEMORY, True),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), reasons.OUT_OF_MEMORY, True),
    (WeightsNotFound("no resnet50 weights: looked in /weights/resnet50.pth"), reasons.WEIGHTS_NOT_FOUND, True),
    (storage.StorageUnavailable("s3://food/: timed out"), reasons.STORAGE_UNAVAILABLE, False),
    (storage.StorageNotFound("s3://food/: no such object"), reasons.TRAINER_ERROR, True),
    (TrainingError("class 'a' has no readable training image", reasons.DATASET_INVALID), reasons.DATASET_INVALID,
     True),
    (OutputInUseError("s3://food/out/ is another job's"), reasons.OUTPUT_IN_USE, True),
    (ValueError("batch_size must be positive"), reasons.TRAINER_ERROR, True),
    (RuntimeError("NCCL watchdog"), reasons.TRAINER_ERROR, False),
])
def test_each_failure_gets_a_reason_and_an_exit_status(error: BaseException, reason: str, permanent: bool) -> None:
    failure = classify(error)
    assert (failure.reason, failure.permanent) == (reason, permanent)
    assert failure.exit_status == (termination.EXIT_PERMANENT if permanent else termination.EXIT_RETRYABLE)
    assert failure.message
    assert termination.parse(f"{failure.reason}: {failure.message}") == (failure.reason, failure.message)
