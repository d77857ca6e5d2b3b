"""A store that accepts connections and never answers: with the operator's bounds one read gives
up in seconds (StorageUnavailable), where the defaults (5 attempts, 60 s reads) held a worker for
about six minutes and, with it, every other resource behind it in the operator's queue."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from galley import storage
from galley.operator.handlers import OPERATOR_STORAGE_TIMEOUTS


@pytest.fixture
def silent_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # accepted, never answered
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{listener.getsockname()[1]}"}.items():
        monkeypatch.setenv(name, value)
    yield "s3://food/output/progress.json"
    stop.set()
    for connection in held:
        connection.close()
    listener.close()
    storage.set_timeouts(storage.Timeouts())


def test_a_store_that_never_answers_is_given_up_on_within_the_bounds(silent_store: str) -> None:
    storage.set_timeouts(storage.Timeouts(connect=1, read=1, attempts=2))
    started = time.monotonic()
    with pytest.raises(storage.StorageError):
        storage.read_text(silent_store)
    assert time.monotonic() - started < 30  # bounded by the settings (about 2 s), not boto3's defaults


def test_the_operators_bounds_hold_a_worker_seconds_not_minutes() -> None:
    bounds = OPERATOR_STORAGE_TIMEOUTS
    assert bounds.attempts * (bounds.connect + bounds.read) <= 20
    defaults = storage.Timeouts()
    assert defaults.attempts * (defaults.connect + defaults.read) >= 300  # what the trainer and predictor keep
