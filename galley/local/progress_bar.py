"""A one-line progress bar for training in a terminal; nothing at all when output is not a terminal.

Per-epoch lines still come from the trainer's log, so a piped run reads as plain lines.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class ProgressBar:
    """Draws ``epoch 3/20 [######....] 62% train  41 img/s  ETA 0:00:12`` on one line."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.epoch, self.epochs = 1, 0
        self.last: dict[str, Any] = {}
        self._started = time.monotonic()
        self._stage = ""

    def progress(self, record: dict[str, Any]) -> None:
        """A progress record from the trainer: an epoch ended."""
        self.clear()
        self.epoch = int(record.get("epoch") or 0) + 1
        self.epochs = int(record.get("epochs") or 0)
        self.last = record.get("metrics") or {}

    def step(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self._stage or done <= 0:
            self._stage, self._started = stage, time.monotonic()
        elapsed = max(1e-6, time.monotonic() - self._started)
        rate = done / elapsed
        eta = (total - done) / rate if rate else 0
        width = 24
        filled = int(width * done / max(1, total))
        bar = "#" * filled + "." * (width - filled)
        loss = f" loss {self.last['loss']:.3f}" if "loss" in self.last else ""
        accuracy = f" acc {self.last['accuracy']:.3f}" if "accuracy" in self.last else ""
        epochs = f"/{self.epochs}" if self.epochs else ""
        line = (f"epoch {self.epoch}{epochs} [{bar}] {done * 100 // max(1, total):3d}% {stage}{loss}{accuracy} "
                f"{rate:5.1f} img/s ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.write("\r" + line[:120].ljust(120))
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()
