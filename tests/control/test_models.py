"""A storage blip is not news about a package: a Ready Model stays Ready through it.

The store is a real S3 endpoint (moto server): one Model's package is read from it, then the same
bucket is read through an endpoint where nothing listens (the store unreachable), then again.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from galley import storage
from galley.api.resources import Model
from galley.control import reasons as r
from galley.control.conditions import is_true
from galley.control.models import PackageSource, model_status
from galley.model.config import PackageConfig, PackageError, PackageUnreachable, read_config

URI = "s3://models/food/model/"


def _model() -> Model:
    return Model.model_validate({"apiVersion": "galley.dev/v1alpha1", "kind": "Model",
                                 "metadata": {"name": "food", "generation": 1}, "spec": {"source": {"uri": URI}}})


def _closed_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connections are refused


def _read(uri: str) -> tuple[PackageConfig | None, str | None, bool]:
    try:
        return read_config(uri), None, False
    except PackageError as error:
        return None, str(error), isinstance(error, PackageUnreachable)


def test_a_ready_model_stays_ready_while_its_store_cannot_be_reached(s3: Any, s3_endpoint: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    s3.create_bucket(Bucket="models")
    config = PackageConfig(name="food", algorithm="mobilenet_v2", labels=["凉皮", "肉夹馍"])
    s3.put_object(Bucket="models", Key="food/model/config.json", Body=config.to_json().encode())
    model = _model()
    source = PackageSource(URI)

    ready = model_status(model, source, *_read(URI)[:2])
    assert is_true(ready.conditions, r.READY) and ready.labels == ["凉皮", "肉夹馍"]
    model = model.model_copy(update={"status": ready})

    monkeypatch.setenv("AWS_ENDPOINT_URL", _closed_endpoint())
    found, error, unreachable = _read(URI)
    assert found is None and unreachable, error
    during = model_status(model, source, found, error, unreachable=unreachable)
    assert is_true(during.conditions, r.READY)  # its services keep serving
    assert during.labels == ["凉皮", "肉夹馍"]
    blip = next(c for c in during.conditions if c.type == r.PACKAGE_REACHABLE)
    assert (blip.status, blip.reason) == ("False", r.STORAGE_UNAVAILABLE) and URI in blip.message
    model = model.model_copy(update={"status": during})

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # the store answers again
    after = model_status(model, source, *_read(URI)[:2])
    assert is_true(after.conditions, r.READY)
    assert next(c for c in after.conditions if c.type == r.PACKAGE_REACHABLE).status == "True"


def test_a_package_that_is_really_gone_makes_the_model_not_ready(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    config = PackageConfig(name="food", algorithm="mobilenet_v2", labels=["凉皮", "肉夹馍"])
    s3.put_object(Bucket="models", Key="food/model/config.json", Body=config.to_json().encode())
    model = _model()
    model = model.model_copy(update={"status": model_status(model, PackageSource(URI), *_read(URI)[:2])})
    s3.delete_object(Bucket="models", Key="food/model/config.json")
    found, error, unreachable = _read(URI)
    assert not unreachable
    gone = model_status(model, PackageSource(URI), found, error, unreachable=unreachable)
    ready = next(c for c in gone.conditions if c.type == r.READY)
    assert (ready.status, ready.reason) == ("False", r.PACKAGE_MISSING)


def test_a_model_never_read_waits_with_storage_unavailable_not_package_missing(
        s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.create_bucket(Bucket="models")  # credentials and a bucket in place: only the endpoint is down
    monkeypatch.setenv("AWS_ENDPOINT_URL", _closed_endpoint())
    found, error, unreachable = _read(URI)
    status = model_status(_model(), PackageSource(URI), found, error, unreachable=unreachable)
    ready = next(c for c in status.conditions if c.type == r.READY)
    assert (ready.status, ready.reason) == ("False", r.STORAGE_UNAVAILABLE)


def test_storage_tells_a_missing_object_from_an_unreachable_store(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.create_bucket(Bucket="models")
    with pytest.raises(storage.StorageNotFound):
        storage.read_bytes("s3://models/nothing-here")
    with pytest.raises(storage.StorageNotFound):
        storage.read_bytes("s3://no-such-bucket/key")
    monkeypatch.setenv("AWS_ENDPOINT_URL", _closed_endpoint())
    with pytest.raises(storage.StorageUnavailable):
        storage.read_bytes("s3://models/nothing-here")
