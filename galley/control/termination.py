"""The trainer's last word: why it failed, where its supervisor reads it.

On Kubernetes that is the container's termination message (``/dev/termination-log``, which the
kubelet mounts and copies into the pod's ``state.terminated.message``); the embedded backend
names a file through ``$GALLEY_TERMINATION_LOG``. The text is ``<Reason>: <message>``, so the
TrainingJob's Failed condition can carry a reason a user acts on (``OutputInUse``) rather than
the Job's generic ``BackoffLimitExceeded``. Nothing is written where no such file is expected.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

ENV = "GALLEY_TERMINATION_LOG"
EXIT_RETRYABLE = 1
"""The trainer's exit status when another attempt may succeed (storage did not answer, a crash)."""
EXIT_PERMANENT = 3
"""The trainer's exit status when the same spec will fail the same way again (a bad data set,
weights not found, out of memory, another job's output): a Job's podFailurePolicy fails the Job
at once instead of spending its backoffLimit."""
EXIT_PREEMPTED = 4
"""The trainer's exit status after a stop it was asked for (SIGTERM), with a checkpoint at the last step
done: a Job's podFailurePolicy does not count it against backoffLimit."""
KUBERNETES_PATH = Path("/dev/termination-log")
LIMIT = 4096
"""Kubernetes keeps at most 4096 bytes of a termination message."""
_FORMAT = re.compile(r"^([A-Z][A-Za-z]{2,63}): (.*)$", re.DOTALL)


def _path() -> Path | None:
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    return KUBERNETES_PATH if KUBERNETES_PATH.is_file() else None


def write(reason: str, message: str) -> None:
    """Leave ``reason`` and ``message`` for the supervisor, where one reads them."""
    path = _path()
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.write_text(f"{reason}: {message}"[:LIMIT], encoding="utf-8")


def parse(text: str | None) -> tuple[str, str] | None:
    """``(reason, message)`` from a termination message, or None when it is not one of ours."""
    match = _FORMAT.match((text or "").strip())
    return (match.group(1), match.group(2)) if match else None
