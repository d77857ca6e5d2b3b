"""Constrained string types shared by the resources.

Each type checks its value with a function that writes a message naming what was expected,
and publishes a regular expression into the generated CRD, so the API server refuses the same
malformed values (with a plainer message) before any handler runs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from galley.api import durations, splits, uris
from galley.api.meta import LABEL_MAX, Name, owner_name


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

# Names of the resources whose children carry the name with a suffix. The operator's builders
# name the children; tests/api/test_names.py checks that they use these suffixes.
MAX_NODES = 64
"""The most pods one TrainingJob trains on."""
TRAINER_SUFFIX = "-trainer"
"""The trainer Job is ``<name>-trainer`` (:func:`galley.operator.builders.trainer_name`)."""
WORKERS_SUFFIX = "-workers"
"""A multi-node job's headless Service is ``<name>-workers`` (``builders.workers_service_name``)."""
TRAINING_JOB_NAME_MAX = LABEL_MAX - max(len(f"{TRAINER_SUFFIX}-{MAX_NODES - 1}"), len(WORKERS_SUFFIX))
"""52: the trainer Job's name is its pods' ``job-name`` label (63 at most), and an Indexed Job
names each pod's host ``<job>-<index>``, a DNS label of 63 at most."""
TrainingJobName = owner_name(
    "TrainingJob", TRAINING_JOB_NAME_MAX,
    f"its trainer Job is named NAME{TRAINER_SUFFIX}, which its pods carry in the job-name label (63 characters at "
    f"most) and a multi-node job's pods in the host name NAME{TRAINER_SUFFIX}-INDEX (INDEX up to {MAX_NODES - 1}), "
    f"and a multi-node job's Service is NAME{WORKERS_SUFFIX}, a DNS-1035 label")
PREDICTOR_SUFFIX = "-predictor"
"""The predictor's Deployment, Service and InferenceService Service are ``<name>-predictor``."""
ONLINE_SERVICE_NAME_MAX = LABEL_MAX - len(PREDICTOR_SUFFIX)
"""53: ``<name>-predictor`` names a Service, a DNS-1035 label of 63 characters at most."""
OnlineServiceName = owner_name(
    "OnlineService", ONLINE_SERVICE_NAME_MAX,
    f"its predictor's Deployment and Service are named NAME{PREDICTOR_SUFFIX}, and a Service name is a DNS-1035 "
    "label of 63 characters at most (KServe adds its own suffixes to an InferenceService's children)")


_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOSTNAME_PATTERN = rf"^({_LABEL}\.)*[a-z]([-a-z0-9]{{0,61}}[a-z0-9])?$"
"""Lowercase DNS labels, the last starting with a letter (RFC 1123 2.1: a top-level domain is
alphabetic). That one rule keeps every numeric host out: ``169.254.169.254``, ``2130706433``,
``0x7f.1`` and ``017700000001`` all end in a label that starts with a digit, and the C resolver
reads each of them as an IPv4 address; an IPv6 literal has ``:``. The API server applies the same
pattern (RE2 has no look-ahead, so "not all-numeric" is written as "starts with a letter")."""


def _is_ip_literal(value: str) -> bool:
    """Whether ``value`` is an address by Python's or the C resolver's (inet_aton's) reading."""
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(value)  # parses only; "1", "0x7f.1", "017700000001" are addresses to it
        return True
    except OSError:
        return False


def _check_hostname(value: str) -> None:
    if _is_ip_literal(value):
        raise ValueError(f"{value!r} is an IP address; an ingress host must be a DNS name such as "
                         "food.example.com, so that no request is sent to an address by number")
    if not re.fullmatch(HOSTNAME_PATTERN, value):
        if re.fullmatch(rf"({_LABEL}\.)*{_LABEL}", value):
            raise ValueError(f"{value!r} is not a DNS host name: its last label {value.rsplit('.', 1)[-1]!r} must "
                             "start with a letter, as every top-level domain does (a numeric one reads as an IP "
                             "address); expected lowercase labels such as food.example.com")
        raise ValueError(f"{value!r} is not a DNS host name; expected lowercase labels such as food.example.com")


Hostname = checked(_check_hostname, HOSTNAME_PATTERN, max_length=253)
"""An Ingress host: lowercase DNS labels separated by dots, never an IP address."""
