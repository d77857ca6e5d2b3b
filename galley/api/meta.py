"""Object metadata and status conditions, shaped as Kubernetes API conventions describe them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic.alias_generators import to_camel

GROUP = "galley.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""Names become Job, Service and Deployment names, so they follow the DNS-1123 label rule."""
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A Service's name: a DNS-1123 label that starts with a letter."""
LABEL_MAX = 63
"""The most characters of a DNS label, and of a label value such as a Job's ``job-name``."""


def check_name(value: str) -> str:
    """Return ``value`` when it is a DNS-1123 label, else raise with the rule spelled out."""
    if not (1 <= len(value) <= 63 and re.fullmatch(DNS1123_LABEL, value)):
        raise ValueError(
            f"{value!r} is not a valid name; expected at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(check_name), Field(json_schema_extra={"pattern": DNS1123_LABEL}, max_length=63)]
"""A DNS-1123 label, checked with a message that states the rule."""

NAMES_KEPT = "names_kept"
"""Validation context: the object already ran (it has a status phase), so its name is checked as
any Kubernetes name only. The stricter rule for the names its children carry came with the CRDs
that refuse such names at apply; an operator upgrade must not fail a job that finished under it."""


def owner_name(kind: str, max_length: int, because: str) -> Any:
    """The ``metadata.name`` type of a ``kind`` whose children add to its name: a DNS-1035 label of
    at most ``max_length`` characters. A refusal says which rule the name breaks, then ``because``
    (which children need it), so nobody learns it from a child the API server refuses later."""
    rule = (f"an {kind} name" if kind[0] in "AEIOU" else f"a {kind} name") + (
        f" is at most {max_length} lowercase letters, digits and '-', starting with a letter and ending with a "
        "letter or digit")

    def check(value: str, info: ValidationInfo) -> str:
        if info.context and info.context.get(NAMES_KEPT):
            return check_name(value)  # an object made under the earlier rule keeps its name
        if len(value) > max_length:
            problem = f"is {len(value)} characters long"
        elif value[:1].isdigit():
            problem = "starts with a digit"
        elif not re.fullmatch(DNS1035_LABEL, value):
            problem = "is not a DNS label"
        else:
            return value
        raise ValueError(f"{value!r} {problem}; {rule}, because {because}")

    # The bounds go to the schema only: as pydantic constraints they would refuse first, without the reason.
    return Annotated[str, AfterValidator(check),
                     Field(json_schema_extra={"pattern": DNS1035_LABEL, "minLength": 1, "maxLength": max_length})]


CAMEL_CASE_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ApiModel(BaseModel):
    """Base for every API object: camelCase on the wire, unknown fields refused, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
    )


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata that Galley reads; everything else is kept as it is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: Name
    namespace: Name | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One observation of the resource's state, as ``kubectl describe`` shows it."""

    type: str = Field(min_length=1, max_length=316)
    """The aspect observed: Ready, Succeeded, Stopped, ..."""
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024, pattern=CAMEL_CASE_REASON)
    """A CamelCase word a program can switch on."""
    message: str = Field("", max_length=32768)
    """What a person needs to know, including what to do."""
    last_transition_time: datetime
    """When ``status`` last changed; a new reason or message alone keeps it."""
    observed_generation: int | None = Field(None, ge=0)
    """The ``metadata.generation`` this condition was computed from."""


RECONCILE_REQUEST = "galley.dev/reconcile-requested-at"
"""Annotate a resource with a new value (a timestamp) to have it reconciled now; status
``lastHandledReconcileAt`` echoes the value once a reconcile has run (as Flux's
``reconcile.fluxcd.io/requestedAt`` does)."""
