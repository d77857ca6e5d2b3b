"""Operator settings, from the environment the Helm chart sets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _port(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator puts into the workloads it creates."""

    trainer_image: str = field(default_factory=lambda: _env("GALLEY_TRAINER_IMAGE", "ghcr.io/galley-dev/trainer:0.1.0"))
    """Image of trainer pods (``python -m galley.trainer``)."""
    predictor_image: str = field(
        default_factory=lambda: _env("GALLEY_PREDICTOR_IMAGE", "ghcr.io/galley-dev/predictor:0.1.0"))
    """Image of predictor pods (``python -m galley.predictor``)."""
    image_pull_policy: str = field(default_factory=lambda: _env("GALLEY_IMAGE_PULL_POLICY", "IfNotPresent"))
    trainer_service_account: str | None = field(
        default_factory=lambda: os.environ.get("GALLEY_TRAINER_SERVICE_ACCOUNT") or None)
    """Service account of trainer pods; None leaves the namespace default."""
    predictor_service_account: str | None = field(
        default_factory=lambda: os.environ.get("GALLEY_PREDICTOR_SERVICE_ACCOUNT") or None)
    predictor_port: int = field(default_factory=lambda: int(_env("GALLEY_PREDICTOR_PORT", "8080")))
    """Container port predictors listen on; the operator asks pods on it how recently they were used."""
    default_storage_secret: str | None = field(
        default_factory=lambda: os.environ.get("GALLEY_DEFAULT_STORAGE_SECRET") or None)
    """The Secret (in each resource's namespace) for resources that name none; without it they get
    no credentials at all (anonymous S3), never the operator's own identity."""
    storage_endpoint: str | None = field(default_factory=lambda: os.environ.get("GALLEY_STORAGE_ENDPOINT") or None)
    """The S3 endpoint wherever a resource's Secret sets none."""
    interval: float = field(default_factory=lambda: float(_env("GALLEY_OPERATOR_INTERVAL", "10")))
    """Seconds between reads of a running trainer's progress record, and between retries."""
    cluster_domain: str = field(default_factory=lambda: _env("GALLEY_CLUSTER_DOMAIN", "cluster.local"))
    kserve_check_seconds: float = field(default_factory=lambda: float(_env("GALLEY_KSERVE_CHECK_SECONDS", "30")))
    """How long the answer to "is KServe installed?" is reused."""
    metrics_port: int | None = field(default_factory=lambda: _port("GALLEY_METRICS_PORT"))
    """Port of the Prometheus ``/metrics`` endpoint (0: any free one); unset: no endpoint."""
    master_port: int = 29500
    """torch.distributed rendezvous port of multi-node jobs."""
    trainer_grace_seconds: int = field(default_factory=lambda: int(_env("GALLEY_TRAINER_GRACE_SECONDS", "120")))
    """A trainer pod's terminationGracePeriodSeconds: on SIGTERM it finishes its step and writes a checkpoint
    (a ResNet50 with its optimizer state is about 300 MB to upload) before the kubelet kills it."""

