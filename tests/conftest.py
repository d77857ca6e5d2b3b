"""Shared fixtures: real components, started by the tests that need them."""

from __future__ import annotations

from collections.abc import Iterator

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
