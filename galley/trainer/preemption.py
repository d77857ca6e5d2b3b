"""Stopping when asked (SIGTERM), at a step boundary, with nothing lost but the step in progress.

Kubernetes sends SIGTERM before it kills a pod: a spot reclaim, a node drain, ``kubectl delete pod``.
During fine-tuning the signal only raises a flag; the step in progress finishes, every rank agrees
to stop after that same step (:func:`galley.trainer.distributed.any_across`), rank 0 writes a
checkpoint holding the epoch and the batches done (a flag seen at an epoch's end stops the run
after that epoch's own checkpoint), and the trainer exits with reason ``Preempted``
(:data:`galley.control.termination.EXIT_PREEMPTED`). Anywhere else (decoding, the feature pass,
evaluation, packaging) nothing is half-done that a checkpoint could keep, so the signal stops the
run at once and the last checkpoint resumes it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from galley.control.reasons import PREEMPTED


class PreemptedError(Exception):
    """The run stopped on SIGTERM; its last checkpoint resumes it."""

    reason = PREEMPTED
    permanent = False


class StopRequest:
    """Whether SIGTERM has arrived, and whether the code running now finishes its step first."""

    def __init__(self) -> None:
        self.requested = False
        self._deferring = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self._deferring:
            raise PreemptedError("stopped on SIGTERM before fine-tuning steps were under way; "
                                 "the last checkpoint resumes the run")

    @contextlib.contextmanager
    def at_step_boundaries(self) -> Iterator[None]:
        """Within this block SIGTERM only sets :attr:`requested`: the loop checks it before each step,
        and the run checks it again at the epoch's end."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGTERM in this block (main thread only; elsewhere the default handling stays)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self._on_signal)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


NEVER = StopRequest()
"""A request that is never made: for callers (tests, the GPU check) that run steps without a handler."""
