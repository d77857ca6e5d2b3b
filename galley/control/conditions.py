"""Setting status conditions the way Kubernetes API conventions ask.

``lastTransitionTime`` moves only when a condition's ``status`` flips; a new reason or message
alone keeps it, so ``kubectl describe`` shows how long a state has really lasted.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from galley.api.meta import Condition, ConditionStatus


def now() -> datetime:
    """The current time in UTC, truncated to seconds as the API server stores it."""
    return datetime.now(UTC).replace(microsecond=0)


def find(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    generation: int | None = None,
    at: datetime | None = None,
) -> list[Condition]:
    """A new list with ``type_`` set; other conditions and their order are kept."""
    previous = find(conditions, type_)
    when = at or now()
    if previous is not None and previous.status == status:
        when = previous.last_transition_time
    updated = Condition(
        type=type_, status=status, reason=reason, message=message,
        last_transition_time=when, observed_generation=generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


def field_problem(error: ValidationError) -> str:
    """The first problem of a spec that the CRD schema let through, with the field it is in: the
    message of an InvalidSpec condition, on either backend."""
    first_error = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first_error["loc"])
    return f"{where}: {first_error['msg']}" if where else str(first_error["msg"])
