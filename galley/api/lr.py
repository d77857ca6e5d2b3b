"""Learning-rate strategies written the way cloud ML platforms take them.

``"20:0.001"`` trains 20 epochs at 0.001; ``"10:0.001,20:0.0001"`` is piecewise (0.001 for
epochs 1-10, then 0.0001 up to epoch 20); a bare ``"0.001"`` is a constant rate for
``max_epochs`` epochs. Parsing happens once, here, so the API server's pattern, ``galley
validate`` and the trainer agree on what a string means.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_EPOCHS = 10_000
"""Upper bound on epochs: a guard against typos such as ``2000000:0.1``."""

MAX_RATE = 10.0
"""Upper bound on a learning rate; anything above is a typo, not a schedule."""

_NUMBER = r"[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?"
_SEGMENT = rf"\s*[0-9]+\s*:\s*{_NUMBER}\s*"
PATTERN = rf"^(\s*{_NUMBER}\s*|{_SEGMENT}(,{_SEGMENT})*)$"
"""The syntax, as a regular expression that RE2 (the API server) and Python both accept."""

EXPECTED = "expected 'EPOCHS:RATE' such as '20:0.001', piecewise '10:0.001,20:0.0001', or a bare rate '0.001'"


@dataclass(frozen=True)
class LearningRateStrategy:
    """A parsed strategy: the learning rate of every epoch, 1-based."""

    rates: tuple[float, ...]

    @property
    def epochs(self) -> int:
        return len(self.rates)

    def rate_at(self, epoch: int) -> float:
        """The learning rate for ``epoch`` (1-based)."""
        if not 1 <= epoch <= self.epochs:
            raise IndexError(f"epoch {epoch} is outside 1..{self.epochs}")
        return self.rates[epoch - 1]


def _rate(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0 or value > MAX_RATE:
        raise ValueError(f"learning rate {text.strip()!r} must be a number in (0, {MAX_RATE:g}]")
    return value


def parse_learning_rate_strategy(text: str, max_epochs: int | None = None) -> LearningRateStrategy:
    """Parse ``text``; ``max_epochs`` gives the length of a bare constant rate."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"is empty; {EXPECTED}")
    if not re.fullmatch(PATTERN, text):
        raise ValueError(f"{text!r} is not a learning-rate strategy; {EXPECTED}")
    if ":" not in text:
        epochs = 10 if max_epochs is None else max_epochs
        if not 1 <= epochs <= MAX_EPOCHS:
            raise ValueError(f"max_epochs {epochs} must be in 1..{MAX_EPOCHS}")
        return LearningRateStrategy((_rate(text),) * epochs)
    rates: list[float] = []
    for segment in text.split(","):
        boundary_text, rate_text = segment.split(":")
        boundary = int(boundary_text)
        if boundary < 1 or boundary > MAX_EPOCHS:
            raise ValueError(f"epoch boundary {boundary_text.strip()} must be in 1..{MAX_EPOCHS}")
        if boundary <= len(rates):
            raise ValueError(
                f"epoch boundaries must increase strictly: {boundary} follows {len(rates)}; {EXPECTED}"
            )
        rates.extend([_rate(rate_text)] * (boundary - len(rates)))
    return LearningRateStrategy(tuple(rates))
