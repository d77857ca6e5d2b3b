"""Usage accounting as pure decisions, with the clock passed in: each second is counted once, whatever
order reconciles, failed writes, stops and starts come in."""

from __future__ import annotations

from datetime import timedelta

from galley.control.services import plan_service
from galley.control.usage import account
from tests.control.test_services import T0, ready_model, service


def test_a_write_that_failed_is_made_up_by_the_next_accounting_and_a_repeat_adds_nothing() -> None:
    opened = account(None, True, 2.0, 0, T0)
    written = account(opened, True, 2.0, 0, T0 + timedelta(minutes=2))
    assert written is not None and written.running_seconds == 120 and written.core_seconds == 240
    # The write of `written` failed: the next reconcile starts again from `opened`.
    retried = account(opened, True, 2.0, 0, T0 + timedelta(minutes=3))
    assert retried is not None and retried.running_seconds == 180
    assert account(retried, True, 2.0, 0, T0 + timedelta(minutes=3)) is retried  # the same moment again
    stopped = account(retried, False, 0.0, 0, T0 + timedelta(minutes=4))
    assert stopped is not None and (stopped.running_seconds, stopped.counted_until, stopped.cores) == (240, None, None)
    assert account(stopped, False, 0.0, 0, T0 + timedelta(hours=5)) == stopped  # stopped time is free


def test_a_known_end_closes_the_period_there_and_a_new_rate_starts_a_new_period() -> None:
    opened = account(None, True, 8.0, 1, T0)
    finished = account(opened, False, 8.0, 1, T0 + timedelta(hours=1), ended=T0 + timedelta(minutes=10))
    assert finished is not None and finished.running_seconds == 600 and finished.gpu_seconds == 600
    assert finished.summary == "10m, 0.17 GPU-h"
    scaled = account(account(None, True, 1.0, 0, T0), True, 3.0, 0, T0 + timedelta(seconds=10))
    closed = account(scaled, False, 0.0, 0, T0 + timedelta(seconds=20))
    assert closed is not None and closed.running_seconds == 20 and closed.core_seconds == 10 * 1 + 10 * 3


def test_a_service_counts_replicas_times_the_flavors_cores_only_while_ready() -> None:
    svc = service(flavor="cpu-2c-8g", replicas=3)
    rolling = plan_service(svc, ready_model(), False, None, T0).status
    assert rolling.usage is None  # a rollout bills nothing yet
    ready = plan_service(svc.model_copy(update={"status": rolling}), ready_model(), True, "http://x/", T0).status
    assert ready.usage is not None and ready.usage.cores == 6 and ready.usage.counted_until == T0
