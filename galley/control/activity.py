"""How recently a predictor served a prediction: what idle stop decides on, read the same way by
the embedded supervisor and the operator.

Every predictor answers ``GET /api/activity`` with ``{"lastPredictionTime": <RFC 3339 or null>,
"predictions": <count>}``. Health checks, the test page and metrics scrapes do not count as use.
A replica that does not answer makes the whole reading unknown: an unreachable predictor is
counted as busy, so a network fault never stops a service that is in use.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

ACTIVITY_PATH = "api/activity"
LAST_PREDICTION = "lastPredictionTime"
PREDICTIONS = "predictions"


@dataclass(frozen=True)
class Activity:
    """The newest prediction any replica served, and whether every replica answered."""

    last_prediction: datetime | None
    """None when no replica has served one since it started."""
    known: bool
    """False when some replica could not be asked: the service then counts as busy."""


UNKNOWN = Activity(None, False)


def parse_activity(payload: object) -> datetime | None:
    """The ``lastPredictionTime`` of one answer; ValueError when the answer is not one."""
    if not isinstance(payload, dict) or LAST_PREDICTION not in payload:
        raise ValueError(f"expected a JSON object with {LAST_PREDICTION!r}")
    value = payload[LAST_PREDICTION]
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{LAST_PREDICTION} must be a timestamp or null")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def read_activity(base_urls: Iterable[str], timeout: float = 2.0) -> Activity:
    """Ask every replica (``http://host:port/``) for its activity; no replica at all is unknown."""
    newest: datetime | None = None
    asked = 0
    for base in base_urls:
        asked += 1
        try:
            with urllib.request.urlopen(base.rstrip("/") + "/" + ACTIVITY_PATH, timeout=timeout) as response:
                last = parse_activity(json.loads(response.read()))
        except (OSError, ValueError):
            return Activity(newest, False)
        if last is not None and (newest is None or last > newest):
            newest = last
    return Activity(newest, asked > 0)
