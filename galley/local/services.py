"""Serving OnlineServices on this machine: a supervisor owns each predictor process.

The supervisor applies :func:`galley.control.services.plan_service` about twice a second: it
starts the predictor, records ``status.url`` and ``status.stopAt`` when it is ready, reads when
the predictor last served a prediction, stops it at ``stopAt``, when it has been idle for
``autoStop.idle`` or when ``galley stop`` asks, and exits once every service it watches is stopped.
Ctrl-C stops its predictors too: no process outlives the command.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from galley.api.flavors import default_catalogue
from galley.api.resources import Model, OnlineService, OnlineServiceStatus
from galley.control import reasons as r
from galley.control.activity import read_activity
from galley.control.conditions import now as utc_now
from galley.control.conditions import set_condition
from galley.control.services import plan_service, service_blocked
from galley.control.usage import account
from galley.local.state import Store

log = logging.getLogger("galley.local")
DEFAULT_PORT = 8080
POLL_SECONDS = 0.5
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Asks a predictor on loopback directly, whatever HTTP_PROXY says."""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_port(preferred: int) -> int:
    """``preferred`` when free, otherwise any free port (and say so)."""
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    if preferred:
        log.warning("port %d is in use; serving on port %d instead (set GALLEY_PORT to choose)", preferred, port)
    return port


def rendered_from(service: OnlineService, model: Model) -> tuple[str, ...]:
    """What a predictor process is started from: a change of any of it restarts the process (as
    a changed pod template rolls a Deployment on a cluster)."""
    return (model.status.uri if model.status else "") or "", model.spec.version, service.spec.flavor, \
        service.spec.precision


@dataclass
class Predictor:
    """One predictor process."""

    process: subprocess.Popen[bytes]
    url: str
    rendered: tuple[str, ...] = ()
    model_uri: str | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        """Where its activity is asked: the loopback address and port it was started on."""
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def ready(self) -> bool:
        if self.process.poll() is not None:
            return False
        try:
            with _DIRECT.open(self.url + "v2/health/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_predictor(store: Store, service: OnlineService, model: Model, port: int) -> Predictor:
    assert model.status is not None and model.status.uri
    flavor = default_catalogue()[service.spec.flavor]
    threads = max(1, int(flavor.cpu_count))
    log_file = store.log_path(service.KIND, service.name).open("ab")
    command = [sys.executable, "-m", "galley.predictor", "--model", model.status.uri, "--port", str(port),
               "--name", model.name, "--model-version", model.spec.version, "--threads", str(threads),
               "--precision", service.spec.precision]
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "GALLEY_THREADS": str(threads)})
    log.info("starting the predictor of %s on port %d (flavor %s: %d thread(s))", service.name, port,
             flavor.name, threads)
    return Predictor(process, f"http://127.0.0.1:{port}/", rendered_from(service, model), model.status.uri)


RESTART_BACKOFF_SECONDS = 1.0
"""The wait before restarting a predictor that exited once; it doubles with each exit in a row."""
RESTART_BACKOFF_MAX_SECONDS = 300.0
"""The longest wait between restarts (five minutes, as the kubelet's CrashLoopBackOff)."""


RESTART_BACKOFF_RESET_SECONDS = 600.0
"""How long a restarted predictor must stay up before its exits stop counting (the kubelet's 10 minutes)."""


@dataclass
class CrashLoop:
    """A predictor that keeps exiting: how often in a row, when it may start again, and why it stopped."""

    rendered: tuple[str, ...] = ()
    """What the exiting predictor was started from: a fixed spec starts afresh, without waiting."""
    exits: int = 0
    retry_at: float = 0.0
    message: str = ""
    ready_since: float | None = None

    def exited(self, code: int | None, last_words: str, now: float) -> None:
        self.exits += 1
        delay = min(RESTART_BACKOFF_MAX_SECONDS, RESTART_BACKOFF_SECONDS * 2 ** (self.exits - 1))
        self.retry_at = now + delay
        self.message = (f"the predictor exited (status {code}) {self.exits} time(s) in a row; the next start is in "
                        f"{delay:.0f}s (restarts back off up to {RESTART_BACKOFF_MAX_SECONDS / 60:.0f} minutes). "
                        f"Its last error: {last_words or '(nothing in its log)'}")


def last_error(log_path: Path, limit: int = 500) -> str:
    """The last line of a predictor's log that says what went wrong (or its last line)."""
    try:
        with log_path.open("rb") as stream:
            stream.seek(max(0, log_path.stat().st_size - 16384))
            lines = [line.strip() for line in stream.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    telling = [line for line in lines if "error" in line.lower() or "refused" in line.lower()]
    return (telling or lines or [""])[-1][:limit]


@dataclass
class Supervisor:
    """Keeps the named services in the state their resources ask for."""

    store: Store
    names: list[str]
    port: int = field(default_factory=lambda: int(os.environ.get("GALLEY_PORT", DEFAULT_PORT)))
    on_ready: Callable[[OnlineService], None] | None = None
    predictors: dict[str, Predictor] = field(default_factory=dict)
    crashes: dict[str, CrashLoop] = field(default_factory=dict)
    _announced: set[str] = field(default_factory=set)

    def step(self) -> bool:
        """One reconciliation of every service; True while any of them should run."""
        any_running = False
        for name in self.names:
            service = self.store.get(OnlineService, name)
            if service is None:  # deleted: nothing of it may keep running
                gone = self.predictors.pop(name, None)
                if gone is not None:
                    gone.stop()
                continue
            model = self.store.get(Model, service.spec.model)
            predictor = self.predictors.get(name)
            if predictor is not None and predictor.process.poll() is not None:
                log.error("the predictor of %s exited with %s; see `galley logs %s`", name,
                          predictor.process.returncode, name)
                self.predictors.pop(name)
                exited = self.crashes.setdefault(name, CrashLoop())
                exited.rendered, exited.ready_since = predictor.rendered, None
                exited.exited(predictor.process.returncode,
                              last_error(self.store.log_path(service.KIND, name)), time.monotonic())
                predictor = None
            if predictor is not None and model is not None and predictor.rendered != rendered_from(service, model):
                log.info("OnlineService %s changed (package, version, flavor or precision): restarting its predictor",
                         name)
                predictor.stop()
                self.predictors.pop(name)
                predictor = None
            ready = predictor is not None and predictor.ready()
            activity = read_activity([predictor.endpoint], timeout=1) if ready and predictor else None
            plan = plan_service(service, model, ready, predictor.url if predictor else None, activity=activity,
                                serving_uri=predictor.model_uri if ready and predictor else None)
            crash = self._crash_loop(name, service, model, ready, plan.run)
            if crash is not None and not ready:
                plan = service_blocked(service, plan, r.CRASH_LOOP_BACK_OFF, crash.message)
            waiting = crash is not None and time.monotonic() < crash.retry_at
            if plan.run and predictor is None and model is not None and not waiting:
                port = choose_port(self.port + len(self.predictors))
                self.predictors[name] = start_predictor(self.store, service, model, port)
            if not plan.run and predictor is not None:
                predictor.stop()
                self.predictors.pop(name)
                log.info("OnlineService %s stopped (%s)", name, plan.status.phase)
            previous_phase = service.status.phase if service.status else None
            self.store.save_status(service, plan.status)
            if plan.status.phase != previous_phase:
                self.store.record_event(service, plan.status.phase or "Pending",
                                        f"OnlineService {name} is {plan.status.phase}")
            if ready and name not in self._announced:
                self._announced.add(name)
                log.info("OnlineService %s is ready at %s (test page: open it in a browser); stops by itself at %s",
                         name, plan.status.url, plan.status.stop_at or "never (no autoStop)")
                if self.on_ready is not None:
                    self.on_ready(service.model_copy(update={"status": plan.status}))
            if not ready:
                self._announced.discard(name)
            any_running = any_running or plan.run
        return any_running

    def _crash_loop(self, name: str, service: OnlineService, model: Model | None, ready: bool,
                    run: bool) -> CrashLoop | None:
        """The service's crash loop, if its exits still count: not once it is stopped, not once its
        spec changed from what kept exiting, not once it has served for RESTART_BACKOFF_RESET_SECONDS."""
        crash = self.crashes.get(name)
        if crash is None:
            return None
        now = time.monotonic()
        if ready:
            crash.ready_since = crash.ready_since or now
        fixed = model is not None and crash.rendered != rendered_from(service, model)
        settled = crash.ready_since is not None and now - crash.ready_since >= RESTART_BACKOFF_RESET_SECONDS
        if not run or fixed or settled:
            self.crashes.pop(name)
            return None
        return crash

    def run(self) -> None:
        """Reconcile until every service is stopped; Ctrl-C stops them all."""
        for name in self.names:
            self.store.pid_path(name).parent.mkdir(parents=True, exist_ok=True)
            self.store.pid_path(name).write_text(str(os.getpid()))
        try:
            while self.step():
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            log.info("interrupted: stopping %s", ", ".join(self.names))
            self._mark_interrupted()
            raise
        finally:
            for predictor in self.predictors.values():
                predictor.stop()
            self.predictors.clear()
            for name in self.names:
                self.store.pid_path(name).unlink(missing_ok=True)

    def _mark_interrupted(self) -> None:
        for name in self.names:
            service = self.store.get(OnlineService, name)
            if service is None:  # deleted: nothing of it may keep running
                gone = self.predictors.pop(name, None)
                if gone is not None:
                    gone.stop()
                continue
            status = (service.status or OnlineServiceStatus()).model_copy(deep=True)
            status.conditions = set_condition(status.conditions, r.STOPPED, "True", r.STOPPED_BY_USER,
                                              "interrupted (Ctrl-C); start it again with `galley start`")
            status.conditions = set_condition(status.conditions, r.READY, "False", r.STOPPED_BY_USER, "stopped")
            status.phase, status.stop_at = "Stopped", None
            status.usage = account(status.usage, False, 0.0, 0, utc_now())  # its predictor stops with this process
            self.store.save_status(service, status)


def spawn_detached_supervisor(store: Store, name: str) -> int:
    """Run a supervisor for ``name`` in the background (``galley start`` after ``galley run`` has exited)."""
    log_file = store.log_path("supervisor", name).open("ab")
    process = subprocess.Popen([sys.executable, "-m", "galley.local.supervise", "--home", str(store.home), name],
                               stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid
