"""Reading a JSON request body, and showing its values in messages, whatever the body holds.

A body is untrusted: nested 100,000 deep, ``json`` raises RecursionError; an integer of more than
4,300 digits (``sys.get_int_max_str_digits``) raises a plain ValueError, not JSONDecodeError.
Both are caught here and become an :class:`InvalidInput` (400), so the serving path parses once,
with no pre-scan of the bytes. Values that are shown back in a message go through :func:`shown`,
which never recurses into a structure and never echoes a long string.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from galley.predictor._kserve import InvalidInput

SHOWN_CHARACTERS = 60
"""The most of a request's own text that one value in a message repeats."""
MESSAGE_CHARACTERS = 1000
"""The most characters of an error message sent back or logged: a message never echoes a body."""


def load_json(data: bytes, expected: str, what: str = "the body") -> Any:
    """``data`` (``what``) parsed as JSON; whatever the parser cannot take is an InvalidInput ending in ``expected``."""
    try:
        return json.loads(data)
    except RecursionError:
        raise InvalidInput(f"{what} nests arrays or objects too deeply to be read; {expected}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput(f"{what} is not valid JSON; {expected}") from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        raise InvalidInput(f"{what} holds a number of more than {sys.get_int_max_str_digits():,} digits; "
                           f"{expected}") from None


def shown(value: Any) -> str:
    """A short rendering of a JSON value for a message: scalars as repr, cut short; containers by size."""
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"an object with {len(value)} key{'' if len(value) == 1 else 's'}"
    if isinstance(value, str) and len(value) > SHOWN_CHARACTERS:
        return repr(value[:SHOWN_CHARACTERS]) + f"... ({len(value):,} characters)"
    text = repr(value)  # int, float, bool, None: json.loads already bounded an int's digits
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + f"... ({len(text):,} characters)"


def brief(message: str) -> str:
    """``message`` cut to :data:`MESSAGE_CHARACTERS`, for messages built by code this module does not see."""
    if len(message) <= MESSAGE_CHARACTERS:
        return message
    return message[:MESSAGE_CHARACTERS] + f"... (cut from {len(message):,} characters)"
