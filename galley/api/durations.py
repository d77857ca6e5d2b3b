"""Durations such as ``90s``, ``30m``, ``1h`` or ``1h30m``, as ``autoStop.after`` takes them."""

from __future__ import annotations

import re
from datetime import timedelta

PATTERN = r"^([0-9]+[smhd])+$"
"""One or more ``<integer><unit>`` parts, units s, m, h, d."""

MAX_DURATION = timedelta(days=7)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, maximum: timedelta = MAX_DURATION) -> timedelta:
    """Parse ``text`` into a positive duration no longer than ``maximum``."""
    if not isinstance(text, str) or not re.fullmatch(PATTERN, text):
        raise ValueError(f"{text!r} is not a duration; expected a number and a unit (s, m, h, d), like 90s, 30m, 1h")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"([0-9]+)([smhd])", text))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if seconds > maximum.total_seconds():
        raise ValueError(f"{text!r} is longer than the maximum of {maximum.days} days")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """The shortest ``1h30m``-style text for ``duration`` (whole seconds)."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
