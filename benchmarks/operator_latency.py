"""How fast the operator turns resources into children, on a real kube-apiserver (envtest).

Creates N TrainingJobs and N OnlineServices (raw runtime; their Model is Ready from a package in a
moto S3 bucket) as fast as one client can, and measures, per resource, the time from the create
call returning to its child (the trainer Job, the predictor Deployment) appearing on a watch.
Prints p50/p99 and the run's throughput next to Kubernetes' API-call latency SLO (p99 <= 1 s).

    .venv/bin/python benchmarks/operator_latency.py [--count 100]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import psutil
from kubernetes import client, watch

from galley.api.crds import all_crds
from galley.model import package
from galley.model.architectures import build
from galley.testing import envtest
from galley.testing.operator import eventually, operator_process
from galley.testing.s3 import moto_server

NAMESPACE = "bench"


def watch_children(api: client.ApiClient, list_fn: Any, seen: dict[str, float], stop: threading.Event) -> None:
    stream = watch.Watch()
    for event in stream.stream(list_fn, NAMESPACE, timeout_seconds=600):
        if event["type"] == "ADDED":
            seen.setdefault(event["object"].metadata.name, time.monotonic())
        if stop.is_set():
            stream.stop()


def explain_missing(env: Any, created: dict[str, float], seen: dict[str, float]) -> None:
    """Which children never appeared on the watch, and whether the API server has them (the watch
    missed them) or not (the operator never made them)."""
    missing = sorted(set(created) - set(seen))
    there = {j.metadata.name for j in client.BatchV1Api(env.api).list_namespaced_job(NAMESPACE).items} | \
        {d.metadata.name for d in client.AppsV1Api(env.api).list_namespaced_deployment(NAMESPACE).items}
    absent = [name for name in missing if name not in there]
    print(f"{len(missing)} children not seen on the watch; {len(absent)} of them not on the API server either "
          f"(first: {', '.join(absent[:5]) or 'none'})", file=sys.stderr)


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")


def cpu_seconds(operator_pid: int) -> dict[tuple[str, int], float]:
    """CPU time (user + system) spent so far by each process: where a slow run's time went."""
    spent: dict[tuple[str, int], float] = {}
    for process in psutil.process_iter(["name", "pid", "cpu_times"]):
        name, pid, times = process.info["name"], process.info["pid"], process.info["cpu_times"]
        part = name if name in CONTROL_PLANE else "operator" if pid == operator_pid else \
            "benchmark client" if pid == os.getpid() else None
        if part is not None and times is not None:
            spent[(part, pid)] = times.user + times.system
    return spent


def cpu_report(before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]) -> str:
    by_part: dict[str, float] = {}
    for key, seconds in after.items():
        by_part[key[0]] = by_part.get(key[0], 0.0) + seconds - before.get(key, 0.0)
    return ", ".join(f"{part} {seconds:.1f}" for part, seconds in sorted(by_part.items()))


def api_requests(env: envtest.Envtest) -> dict[tuple[str, str], float]:
    """The API server's own request counters, by verb and resource (subresource after a slash)."""
    counts: dict[tuple[str, str], float] = {}
    for line in env.get_text("/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            resource = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
            value = float(line.rsplit(" ", 1)[1])
            key = (labels.get("verb", ""), resource)
            counts[key] = counts.get(key, 0.0) + value
            if labels.get("code") == "409":
                counts[(labels.get("verb", "") + "409", resource)] = counts.get((labels.get("verb", "") + "409",
                                                                                 resource), 0.0) + value
    return counts


def watch_events(env: envtest.Envtest) -> dict[str, float]:
    """Watch events the API server has sent, by kind: what moved while "nothing changed"."""
    counts: dict[str, float] = {}
    for line in env.get_text("/metrics").splitlines():
        if line.startswith("apiserver_watch_events_total{"):
            kind = dict(re.findall(r'(\w+)="([^"]*)"', line)).get("kind", "")
            counts[kind] = counts.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


QUIET_EVENTS, QUIET_WINDOW, QUIET_LONGEST = 20, 30.0, 600.0
"""Quiet: fewer than 20 watch events of the children's kinds in 30 s (kube-controller-manager
makes a burst's pods at its own rate, 20 requests a second, for minutes after the operator is done)."""
CHILD_KINDS = ("Pod", "Job", "Deployment", "ReplicaSet", "Service", "EndpointSlice", "Endpoints")


def wait_for_quiet(env: envtest.Envtest) -> float:
    """Seconds until the children stop changing (at most QUIET_LONGEST, then it says how many child
    events the last window still had), so that the steady state measures the operator with nothing
    changing, not the tail of the control plane's work."""
    started = time.monotonic()
    moved = 0.0
    while time.monotonic() - started < QUIET_LONGEST:
        before = watch_events(env)
        time.sleep(QUIET_WINDOW)
        after = watch_events(env)
        moved = sum(after.get(k, 0.0) - before.get(k, 0.0) for k in CHILD_KINDS)
        if moved < QUIET_EVENTS:
            return time.monotonic() - started
    print(f"not quiet after {QUIET_LONGEST:.0f}s: {moved:.0f} child events in the last {QUIET_WINDOW:.0f}s "
          "(Deployments reaching their progress deadline, one by one)", file=sys.stderr)
    return time.monotonic() - started


OPERATOR_CREATES = {"jobs", "deployments", "services", "ingresses", "inferenceservices"}
"""What the operator creates: a 409 on one of these is one of its own creates meeting a child already there."""


def conflicts(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, float]:
    """409 answers to creates during the run, by resource: each is a create of something already there."""
    found = {key[1]: after[key] - before.get(key, 0.0) for key in after if key[0] == "POST409"}
    return {resource: n for resource, n in found.items() if n}


def requests_report(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> str:
    made = {key: after[key] - before.get(key, 0.0) for key in after
            if after[key] > before.get(key, 0.0) and not key[0].endswith("409")}
    top = sorted(made.items(), key=lambda item: -item[1])[:10]
    return f"{sum(made.values()):.0f} in all; most: " + ", ".join(f"{verb} {res} {n:.0f}" for (verb, res), n in top)


SETTLE_SECONDS = 60
"""After the burst, how long the operator is left to finish what it queued before idle is measured."""


def steady_state_cpu(env: envtest.Envtest, operator_pid: int, seconds: float) -> tuple[float, dict[str, float]]:
    """The operator's CPU time over ``seconds`` with nothing changing, as a share of one core (what
    resyncs, watches and timers cost when there is no work), and the watch events sent meanwhile."""
    process = psutil.Process(operator_pid)
    time.sleep(SETTLE_SECONDS)
    settled = wait_for_quiet(env)
    print(f"the control plane was quiet {settled:.0f}s after the children appeared", file=sys.stderr)
    before, events_before = sum(process.cpu_times()[:2]), watch_events(env)
    time.sleep(seconds)
    events = {kind: n - events_before.get(kind, 0.0) for kind, n in watch_events(env).items()}
    return (sum(process.cpu_times()[:2]) - before) / seconds, {k: n for k, n in events.items() if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--log", metavar="FILE", help="keep the operator's log there")
    parser.add_argument("--idle", type=float, default=0, metavar="SECONDS",
                        help="then, with nothing changing, measure the operator's CPU for that long "
                             "(the issue's steady state: --count 2500 --idle 300 is 5,000 resources for 5 minutes)")
    parser.add_argument("--profile", metavar="FILE",
                        help="also record the operator with py-spy during the burst (raw collapsed stacks)")
    args = parser.parse_args()
    env = envtest.start()
    try:
        envtest.apply_crds(env.api, list(all_crds().values()))
        with moto_server() as endpoint, tempfile.TemporaryDirectory() as scratch:
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
            s3.create_bucket(Bucket="models")
            folder = Path(scratch) / "model"
            config = package.PackageConfig(name="bench", algorithm="resnet18", labels=["a", "b"])
            package.write_package(str(folder), config, build("resnet18", 2), {})
            for path in folder.iterdir():
                s3.upload_file(str(path), "models", f"bench/{path.name}")
            core = client.CoreV1Api(env.api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            values = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": endpoint}
            core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "s3"}, "data": {
                k: base64.b64encode(v.encode()).decode() for k, v in values.items()}})
            objects = client.CustomObjectsApi(env.api)
            with operator_process(env, NAMESPACE, Path(args.log) if args.log else Path(scratch) / "operator.log",
                                  extra_env={"GALLEY_OPERATOR_INTERVAL": "30"}) as operator:
                objects.create_namespaced_custom_object("galley.dev", "v1alpha1", NAMESPACE, "models", {
                    "apiVersion": "galley.dev/v1alpha1", "kind": "Model", "metadata": {"name": "bench"},
                    "spec": {"source": {"uri": "s3://models/bench/"}, "storage": {"secretRef": "s3"}}})
                eventually(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in objects.
                                       get_namespaced_custom_object("galley.dev", "v1alpha1", NAMESPACE, "models",
                                                                    "bench").get("status", {}).get("conditions", [])),
                           timeout=120)
                jobs_seen: dict[str, float] = {}
                deployments_seen: dict[str, float] = {}
                stop = threading.Event()
                for fn, seen in ((client.BatchV1Api(env.api).list_namespaced_job, jobs_seen),
                                 (client.AppsV1Api(env.api).list_namespaced_deployment, deployments_seen)):
                    threading.Thread(target=watch_children, args=(env.api, fn, seen, stop), daemon=True).start()
                time.sleep(1)
                profiler = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                                             str(operator.pid), "--format", "raw", "--rate", "100", "--nonblocking",
                                             "-o", args.profile], stdout=subprocess.DEVNULL) if args.profile else None
                peak_rss = [psutil.Process(operator.pid).memory_info().rss]

                def sample_rss() -> None:
                    while not stop.is_set():
                        try:
                            peak_rss[0] = max(peak_rss[0], psutil.Process(operator.pid).memory_info().rss)
                        except psutil.Error:
                            return
                        time.sleep(0.2)

                threading.Thread(target=sample_rss, daemon=True).start()
                cpu_before = cpu_seconds(operator.pid)
                requests_before = api_requests(env)
                created: dict[str, float] = {}
                start = time.monotonic()
                for i in range(args.count):
                    objects.create_namespaced_custom_object("galley.dev", "v1alpha1", NAMESPACE, "trainingjobs", {
                        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": f"tj-{i}"},
                        "spec": {"dataset": {"uri": "s3://data/x/"}, "output": {"uri": f"s3://out/tj-{i}/"},
                                 "resources": {"flavor": "gpu-v100-1"}}})
                    created[f"tj-{i}-trainer"] = time.monotonic()
                    objects.create_namespaced_custom_object("galley.dev", "v1alpha1", NAMESPACE, "onlineservices", {
                        "apiVersion": "galley.dev/v1alpha1", "kind": "OnlineService",
                        "metadata": {"name": f"svc-{i}"},
                        "spec": {"model": "bench", "runtime": "raw", "autoStop": {"after": "1h"}}})
                    created[f"svc-{i}-predictor"] = time.monotonic()
                submitted = time.monotonic() - start
                try:
                    eventually(lambda: all(name in {**jobs_seen, **deployments_seen} for name in created),
                               timeout=600, interval=0.5, message="not every child appeared")
                except TimeoutError:
                    explain_missing(env, created, {**jobs_seen, **deployments_seen})
                    raise
                seen_all = {**jobs_seen, **deployments_seen}
                cpu_after = cpu_seconds(operator.pid)
                requests_after = api_requests(env)
                idle_share, idle_events = steady_state_cpu(env, operator.pid, args.idle) if args.idle else (None, {})
                if profiler is not None:
                    profiler.send_signal(signal.SIGINT)
                    profiler.wait(timeout=60)
                stop.set()
                latencies = sorted(seen_all[name] - t for name, t in created.items())
                total = max(seen_all[name] for name in created) - start
    finally:
        envtest.stop(env)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{args.count} TrainingJobs + {args.count} OnlineServices created in {submitted:.1f}s by one client")
    print(f"create -> child created: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")
    print(f"throughput: {len(created) / total:.1f} children/s over {total:.1f}s")
    print(f"CPU seconds spent during the run: {cpu_report(cpu_before, cpu_after)}")
    print(f"API requests during the run (operator, controller-manager, client): "
          f"{requests_report(requests_before, requests_after)}")
    conflicted = conflicts(requests_before, requests_after)
    own = sum(n for resource, n in conflicted.items() if resource in OPERATOR_CREATES)
    print(f"409 Conflict answers to the operator's creates (of a child already there): {own:.0f}; "
          f"to any create, by resource: {conflicted or 'none'}")
    print(f"operator peak RSS: {peak_rss[0] / 2**20:.0f} MiB (goal <= 250 MB)")
    print(f"Kubernetes API-call latency SLO: p99 <= 1000 ms; operator p99 / SLO = {p99:.2f}x")
    if idle_share is not None:
        print(f"steady state, {2 * args.count + 1} resources and nothing changing, over {args.idle:.0f}s: operator "
              f"CPU {idle_share * 100:.1f}% of one core (goal <= 5%); peak RSS {peak_rss[0] / 2**20:.0f} MiB")
        print(f"watch events sent meanwhile, by kind: {idle_events or 'none'}")


if __name__ == "__main__":
    main()
