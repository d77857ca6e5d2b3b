"""Resource names leave room for what the children add: the limits follow from the builders' names."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from galley.api.crds import all_crds
from galley.api.fields import (
    MAX_NODES,
    ONLINE_SERVICE_NAME_MAX,
    PREDICTOR_SUFFIX,
    TRAINER_SUFFIX,
    TRAINING_JOB_NAME_MAX,
    WORKERS_SUFFIX,
)
from galley.api.meta import DNS1035_LABEL
from galley.api.resources import Model, OnlineService, TrainingJob
from galley.operator import builders

JOB_SPEC = {"dataset": {"uri": "s3://food/data/"}, "output": {"uri": "s3://food/out/"},
            "resources": {"flavor": "cpu-1c-4g", "nodes": MAX_NODES}}


def training_job(name: str) -> TrainingJob:
    return TrainingJob.model_validate({"kind": "TrainingJob", "metadata": {"name": name}, "spec": JOB_SPEC})


def online_service(name: str) -> OnlineService:
    return OnlineService.model_validate({"kind": "OnlineService", "metadata": {"name": name},
                                         "spec": {"model": "m"}})


def test_the_limits() -> None:
    assert (TRAINING_JOB_NAME_MAX, ONLINE_SERVICE_NAME_MAX) == (52, 53)


def test_the_builders_name_children_with_these_suffixes() -> None:
    job, service = training_job("food"), online_service("food")
    assert builders.trainer_name(job) == "food" + TRAINER_SUFFIX
    assert builders.workers_service_name(job) == "food" + WORKERS_SUFFIX
    assert builders.predictor_name(service) == "food" + PREDICTOR_SUFFIX


def _label_sized(value: str) -> None:
    assert len(value) <= 63 and re.fullmatch(DNS1035_LABEL, value), value


def test_children_of_the_longest_names_fit() -> None:
    """Every name a child takes from the longest TrainingJob of 64 nodes, or OnlineService, is a DNS-1035 label."""
    job = training_job("t" * TRAINING_JOB_NAME_MAX)
    trainer = builders.trainer_name(job)
    _label_sized(trainer)  # the pods' job-name label
    _label_sized(f"{trainer}-{MAX_NODES - 1}")  # an Indexed Job's last pod's host name
    _label_sized(builders.workers_service_name(job))
    _label_sized(builders.predictor_name(online_service("s" * ONLINE_SERVICE_NAME_MAX)))


@pytest.mark.parametrize(("make", "name", "message"), [
    (online_service, "s" * 54, "'" + "s" * 54 + "' is 54 characters long; an OnlineService name is at most 53"),
    (online_service, "4food", "'4food' starts with a digit; an OnlineService name is at most 53 lowercase letters"),
    (online_service, "food-", "'food-' is not a DNS label"),
    (online_service, "", "'' is not a DNS label"),
    (training_job, "t" * 53, "is 53 characters long; a TrainingJob name is at most 52"),
    (training_job, "4food", "'4food' starts with a digit; a TrainingJob name is at most 52"),
])
def test_names_past_the_limits_say_why(make: Any, name: str, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        make(name)
    text = str(error.value)
    assert "metadata.name" in text and message in text and "because" in text, text


def test_a_model_keeps_the_dns_1123_rule() -> None:
    """A Model has no children named after it: a name of 63 characters, or one starting with a digit, is fine."""
    for name in ("m" * 63, "4food"):
        Model.model_validate({"kind": "Model", "metadata": {"name": name}, "spec": {"source": {"uri": "s3://food/m/"}}})


@pytest.mark.parametrize(("crd", "limit"), [("galley.dev_trainingjobs.yaml", TRAINING_JOB_NAME_MAX),
                                            ("galley.dev_onlineservices.yaml", ONLINE_SERVICE_NAME_MAX)])
def test_the_crds_carry_the_name_rule(crd: str, limit: int) -> None:
    schema = all_crds()[crd]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"]
    assert schema["properties"]["name"] == {"type": "string", "minLength": 1, "maxLength": limit,
                                            "pattern": DNS1035_LABEL}
