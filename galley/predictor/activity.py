"""When this predictor last served a prediction: what idle stop reads.

Counted where predictions are made (every route, every protocol), so health checks, the test
page and metrics scrapes never count as use. Exposed twice: the JSON answer of
``GET /api/activity`` (:mod:`galley.control.activity` reads it) and the Prometheus gauge
``galley_last_prediction_timestamp_seconds`` for dashboards and alerts.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from galley.control.activity import LAST_PREDICTION, PREDICTIONS

LAST_PREDICTION_GAUGE = Gauge("galley_last_prediction_timestamp_seconds",
                              "Unix time of the last prediction served (0: none since the start)")
PREDICTIONS_COUNTER = Counter("galley_predictions", "Images classified since the start")


class ActivityRecord:
    """The time of the newest prediction and how many images were classified."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_prediction: datetime | None = None
        self.predictions = 0

    def served(self, images: int) -> None:
        now = datetime.now(UTC)
        with self._lock:
            self.last_prediction = now
            self.predictions += images
        LAST_PREDICTION_GAUGE.set(now.timestamp())
        PREDICTIONS_COUNTER.inc(images)

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            last = self.last_prediction
            return {LAST_PREDICTION: f"{last:%Y-%m-%dT%H:%M:%S.%f}Z" if last else None,
                    PREDICTIONS: self.predictions}
