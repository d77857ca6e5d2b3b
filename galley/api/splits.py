"""Data-set splits such as ``train:0.8,eval:0.2``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

PATTERN = r"^\s*(train|eval)\s*:\s*[0-9]*\.?[0-9]+\s*(,\s*(train|eval)\s*:\s*[0-9]*\.?[0-9]+\s*)?$"
EXPECTED = "expected 'train:FRACTION,eval:FRACTION' summing to 1, such as 'train:0.8,eval:0.2'"


@dataclass(frozen=True)
class Split:
    """Fractions of the labelled images used for training and for evaluation."""

    train: float
    eval: float


def parse_split(text: str) -> Split:
    """Parse ``text``; a missing ``eval`` part takes what ``train`` leaves."""
    if not isinstance(text, str) or not re.fullmatch(PATTERN, text):
        raise ValueError(f"{text!r} is not a split; {EXPECTED}")
    parts: dict[str, float] = {}
    for part in text.split(","):
        name, value = (s.strip() for s in part.split(":"))
        if name in parts:
            raise ValueError(f"{text!r} names {name!r} twice; {EXPECTED}")
        parts[name] = float(value)
    if "train" not in parts:
        raise ValueError(f"{text!r} has no train fraction; {EXPECTED}")
    train = parts["train"]
    evaluation = parts.get("eval", 1.0 - train)
    if not (0 < train < 1 and 0 < evaluation < 1):
        raise ValueError(f"{text!r}: each fraction must be between 0 and 1, exclusive; {EXPECTED}")
    if not math.isclose(train + evaluation, 1.0, abs_tol=1e-6):
        raise ValueError(f"{text!r}: fractions add up to {train + evaluation:g}, not 1; {EXPECTED}")
    return Split(train=train, eval=evaluation)
