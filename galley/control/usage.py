"""What still bills: how long a TrainingJob or OnlineService ran and what it held meanwhile
(``status.usage``), and what runs now. Both backends keep it through :func:`account`, inside the
status they write with the phase, so usage is exactly as durable as the phase is.

What counts: a TrainingJob while its trainer runs (phase Running; waiting for a node does not
count), an OnlineService while its predictor is Ready. It holds its flavor's cores and GPUs times
its nodes (a job) or replicas (a service).

How it is kept: totals, plus ``countedUntil``, the time they count up to while it runs. Each
accounting adds the time since ``countedUntil`` at the rate recorded beside it (``cores``,
``gpus``) and moves it on; a stop adds the last piece and clears it. The totals and
``countedUntil`` move together in one status write, so:

- a reconcile that runs twice adds the time between the two runs once;
- a status write that failed leaves both as they were, and the next accounting adds the whole period;
- a stop closes a period and a start opens another: the stopped time between is not counted;
- while the operator (or the embedded supervisor) is down, status still says "counted until T":
  the first accounting afterwards adds the whole gap. Pods do not stop with their operator, so a
  predictor that was Ready before an hour's outage served (and billed) through it, and the hour
  counts, at the rate recorded before it. Where the end is known (a trainer Job's completion
  time) the period ends there, not when the operator came back; a workload that stopped unseen
  (a Deployment deleted by hand) counts until it is seen stopped. A trainer that started and
  ended while nothing watched is not counted: nobody saw it run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from galley.api.durations import format_duration
from galley.api.flavors import FlavorCatalogue, default_catalogue
from galley.api.resources import OnlineService, TrainingJob, Usage

FLUSH = timedelta(seconds=60)
"""While a resource keeps running at the same rate, an accounting less than this after the last
one changes nothing (no status write): the piece is added by a later one, nothing is lost."""


def holding(flavor: str, count: int, catalogue: FlavorCatalogue | None = None) -> tuple[float, int]:
    """(cores, GPUs) that ``count`` pods of ``flavor`` hold; nothing for a flavor the catalogue lacks
    (such a spec never runs: it is refused as InvalidSpec)."""
    try:
        found = (catalogue or default_catalogue())[flavor]
    except KeyError:
        return 0.0, 0
    return found.cpu_count * count, found.gpus * count


def account(previous: Usage | None, running: bool, cores: float, gpus: int, at: datetime,
            ended: datetime | None = None) -> Usage | None:
    """The usage to record at ``at``, given the recorded one and whether the resource runs now,
    holding ``cores`` and ``gpus``. ``ended`` is when a run that is over really ended, where that
    is known (it is counted up to there, never past ``at``). None while it has never run."""
    if previous is None:
        if not running:
            return None
        previous = Usage()
    since = previous.counted_until
    same_rate = running and previous.cores == cores and previous.gpus == gpus
    if since is not None and same_rate and at - since < FLUSH:
        return previous
    usage = previous.model_copy()
    if since is not None:
        end = at if running or ended is None else min(max(ended, since), at)
        seconds = max(0, int((end - since).total_seconds()))
        usage.running_seconds += seconds
        usage.core_seconds = round(usage.core_seconds + seconds * (previous.cores or 0.0), 3)
        usage.gpu_seconds = round(usage.gpu_seconds + seconds * (previous.gpus or 0), 3)
    if running:
        usage.counted_until = at if since is None else max(at, since)  # a clock that stepped back adds nothing
        usage.cores, usage.gpus = cores, gpus
    else:
        usage.counted_until, usage.cores, usage.gpus = None, None, None
    usage.summary = summary(usage)
    return usage


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return "0" if hours == 0 else "<0.01" if hours < 0.01 else f"{hours:.2f}"


def summary(usage: Usage) -> str:
    """The totals as the USAGE column shows them: running time, then GPU-hours where GPUs were held,
    else core-hours."""
    held = f"{_hours(usage.gpu_seconds)} GPU-h" if usage.gpu_seconds else f"{_hours(usage.core_seconds)} core-h"
    return f"{format_duration(timedelta(seconds=usage.running_seconds))}, {held}"


def is_running(usage: Usage | None) -> bool:
    """Whether the usage is being counted now: the resource runs, and bills."""
    return usage is not None and usage.counted_until is not None


def _count(number: float, noun: str) -> str:
    return f"{number:g} {noun}" + ("" if number == 1 else "s")


@dataclass(frozen=True)
class RunningNow:
    """What runs, and so bills, now: the one line ``galley get`` ends with and the console opens with."""

    training_jobs: int = 0
    gpus: int = 0
    """GPUs the running training jobs hold."""
    services: int = 0
    cores: float = 0.0
    """Cores the running services hold."""

    def line(self) -> str:
        if not (self.training_jobs or self.services):
            return "nothing running"
        return (f"running now: {_count(self.training_jobs, 'training job')} ({_count(self.gpus, 'GPU')}), "
                f"{_count(self.services, 'service')} ({_count(self.cores, 'core')})")


def running_now(jobs: Iterable[TrainingJob], services: Iterable[OnlineService]) -> RunningNow:
    """Sum what the running resources hold, as their usage records it."""
    return held_now([j.status.usage if j.status else None for j in jobs],
                    [s.status.usage if s.status else None for s in services])


def held_now(jobs: Iterable[Usage | None], services: Iterable[Usage | None]) -> RunningNow:
    """:func:`running_now` from the training jobs' and services' usage alone (what the operator's
    gauges keep of each resource)."""
    running_jobs = [u for u in jobs if u is not None and is_running(u)]
    running_services = [u for u in services if u is not None and is_running(u)]
    return RunningNow(training_jobs=len(running_jobs), gpus=sum(u.gpus or 0 for u in running_jobs),
                      services=len(running_services), cores=round(sum(u.cores or 0.0 for u in running_services), 3))
