"""A predictor on a loopback port serving the trained package, one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from galley.testing.processes import predictor


@pytest.fixture(scope="module")
def server(trained_package: Path) -> Iterator[str]:
    with predictor(str(trained_package)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c
