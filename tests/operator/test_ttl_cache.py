"""The operator's read cache: what it keeps, for how long, and what it does not keep."""

from __future__ import annotations

import time

import pytest

from galley.operator.kube import TtlCache


def test_a_value_is_read_once_per_ttl_even_when_it_is_none() -> None:
    reads: list[str] = []
    cache = TtlCache[dict[str, int] | None](ttl=0.3)

    def load() -> None:  # "no progress record yet" is an answer worth keeping too
        reads.append("read")

    assert cache.get("job", load) is None and cache.get("job", load) is None
    assert reads == ["read"]
    time.sleep(0.35)
    cache.get("job", load)
    assert reads == ["read", "read"], "after the ttl the value is read again"


def test_a_failed_read_is_not_kept() -> None:
    cache = TtlCache[str](ttl=30)

    def missing() -> str:
        raise LookupError("Secret 's3' not found")

    with pytest.raises(LookupError):
        cache.get("s3", missing)
    assert cache.get("s3", lambda: "created since") == "created since"


def test_put_peek_and_forget() -> None:
    cache = TtlCache[dict[str, int]](ttl=30)
    cache.put(("Deployment", "ns", "svc-predictor"), {"replicas": 1})
    assert cache.peek(("Deployment", "ns", "svc-predictor")) == {"replicas": 1}
    cache.forget(("Deployment", "ns", "svc-predictor"))
    assert cache.peek(("Deployment", "ns", "svc-predictor")) is None
