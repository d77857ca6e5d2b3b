"""Why a training run failed, in the terms its supervisor needs: a reason a user can act on, the
message, and whether another attempt could succeed.

The reason goes to the termination message (:mod:`galley.control.termination`) and from there
to the TrainingJob's Failed condition; the exit status tells a Job's podFailurePolicy (and the
embedded backend) not to retry what will fail the same way again.
"""

from __future__ import annotations

from dataclasses import dataclass

from galley import storage
from galley.control import reasons, termination
from galley.trainer.weights import WeightsNotFound


@dataclass(frozen=True)
class Failure:
    """One run's failure, classified."""

    reason: str
    message: str
    permanent: bool

    @property
    def exit_status(self) -> int:
        if self.reason == reasons.PREEMPTED:
            return termination.EXIT_PREEMPTED
        return termination.EXIT_PERMANENT if self.permanent else termination.EXIT_RETRYABLE


def _out_of_memory(error: BaseException) -> bool:
    """Host memory (MemoryError) or a device's (torch's OutOfMemoryError, named so torch need not load)."""
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def classify(error: BaseException) -> Failure:
    """The reason, message and permanence of ``error``, the exception a run ended with."""
    if _out_of_memory(error):
        detail = (str(error).splitlines() or ["no detail"])[0][:300]
        return Failure(reasons.OUT_OF_MEMORY, f"out of memory ({detail}); choose a flavor with more memory or a "
                       "smaller batch_size", permanent=True)
    if isinstance(error, WeightsNotFound):
        return Failure(reasons.WEIGHTS_NOT_FOUND, str(error), permanent=True)
    if isinstance(error, storage.StorageUnavailable):  # it may answer next time
        return Failure(reasons.STORAGE_UNAVAILABLE, f"storage: {error}", permanent=False)
    if isinstance(error, storage.StorageError):  # not found, or a name refused: the same next time
        return Failure(reasons.TRAINER_ERROR, f"storage: {error}", permanent=True)
    reason = getattr(error, "reason", None)
    if isinstance(reason, str):  # TrainingError, OutputInUseError: the message is written for users
        return Failure(reason, str(error), permanent=bool(getattr(error, "permanent", True)))
    if isinstance(error, ValueError | FileNotFoundError):
        return Failure(reasons.TRAINER_ERROR, str(error), permanent=True)
    return Failure(reasons.TRAINER_ERROR, repr(error), permanent=False)
