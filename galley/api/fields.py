"""Constrained string types shared by the resources.

Each type checks its value with a function that writes a message naming what was expected,
and publishes a regular expression into the generated CRD, so the API server refuses the same
malformed values (with a plainer message) before any handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from galley.api import durations, splits, uris
from galley.api.meta import Name


def checked(check: Callable[[str], Any], pattern: str, **field: Any) -> Any:
    """A ``str`` validated by ``check`` whose CRD schema carries ``pattern``."""

    def validate(value: str) -> str:
        check(value)
        return value

    return Annotated[str, AfterValidator(validate), Field(json_schema_extra={"pattern": pattern}, **field)]


StorageUri = checked(uris.check_storage_uri, uris.PATTERN, min_length=1)
Duration = checked(durations.parse_duration, durations.PATTERN)
SplitText = checked(splits.parse_split, splits.PATTERN)
ObjectName = Name

HOSTNAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _check_hostname(value: str) -> None:
    if not re.fullmatch(HOSTNAME_PATTERN, value):
        raise ValueError(f"{value!r} is not a DNS host name; expected lowercase labels such as food.example.com")


Hostname = checked(_check_hostname, HOSTNAME_PATTERN, max_length=253)
"""An Ingress host: lowercase DNS labels separated by dots."""
