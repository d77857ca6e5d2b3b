"""The trainer container's entry point: ``python -m galley.trainer``.

The operator hands the TrainingJob over as JSON in ``$GALLEY_TRAINING_JOB`` (or ``--job-json``);
on one machine ``-f trainingjob.yaml`` reads it from a file. Exit status: 0 when the model
package is written, 1 when the job failed (the log and the progress record say why), 130 when
interrupted, 4 when stopped by SIGTERM (preempted: the checkpoint written at the last step resumes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from galley import logs
from galley.api.resources import TrainingJob
from galley.manifests import InvalidManifests, load_resources

JOB_ENV = "GALLEY_TRAINING_JOB"
log = logging.getLogger("galley.trainer")


def load_job(filename: str | None, job_json: str | None) -> TrainingJob:
    """The TrainingJob from a file, a JSON argument or the environment."""
    if filename:
        jobs = [r for r in load_resources([filename]) if isinstance(r, TrainingJob)]
        if len(jobs) != 1:
            raise InvalidManifests([])  # reported by the caller as "expected one TrainingJob"
        return jobs[0]
    text = job_json or os.environ.get(JOB_ENV)
    if not text:
        raise SystemExit(f"no job given: use -f FILE, --job-json or ${JOB_ENV}")
    return TrainingJob.model_validate(json.loads(text))


def _local_ranks(job: TrainingJob, verbose: bool) -> int | None:
    """Run a job of several ranks (``resources.nodes``, GPUs per node) as local processes; None when
    it has one rank, which this process then is."""
    import torch

    from galley.api.flavors import default_catalogue
    from galley.trainer import launch

    nodes, gpus = job.spec.resources.nodes, torch.cuda.device_count()
    try:
        per_node = launch.ranks_per_node(default_catalogue()[job.spec.resources.flavor].gpus, nodes, gpus,
                                         os.environ.get(launch.NPROC_PER_NODE_ENV))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if nodes * per_node == 1:
        return None
    log.info("resources.nodes is %d, %d rank(s) per node: starting %d local ranks (%s over loopback)", nodes,
             per_node, nodes * per_node, "nccl" if gpus else "gloo")
    manifest = job.to_manifest()
    manifest.pop("status", None)
    try:
        return launch.run_local_ranks(json.dumps(manifest, ensure_ascii=False), nodes, per_node, gpus=gpus,
                                      verbose=verbose)
    except ValueError as error:  # fewer GPUs than the ranks need
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m galley.trainer", description="Run one TrainingJob.")
    parser.add_argument("-f", "--filename", help="a YAML file holding one TrainingJob")
    parser.add_argument("--job-json", help=f"the TrainingJob as JSON (default: ${JOB_ENV})")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = "LOCAL_RANK" not in os.environ and int(os.environ.get("LOCAL_WORLD_SIZE") or "1") > 1
    rank = f"node {os.environ.get('NODE_RANK', '0')}" if launcher else f"rank {os.environ.get('RANK', '0')}"
    logs.configure(args.verbose, prefix=f"[{rank}/{world}] " if world > 1 else "")
    try:
        job = load_job(args.filename, args.job_json)
    except InvalidManifests as error:
        lines = [str(p) for p in error.problems] or [f"{args.filename}: expected exactly one TrainingJob"]
        print("\n".join(lines), file=sys.stderr)
        return 1
    if "WORLD_SIZE" not in os.environ:  # on one machine: this process starts the job's ranks, if it has several
        ranks = _local_ranks(job, args.verbose)
        if ranks is not None:
            return ranks
    elif int(os.environ.get("LOCAL_WORLD_SIZE") or "1") > 1 and "LOCAL_RANK" not in os.environ:
        from galley.trainer.launch import run_node_ranks

        try:  # a pod of a G-GPU flavor: this container starts its G ranks
            return run_node_ranks(verbose=args.verbose)
        except KeyboardInterrupt:
            return 130
    from galley.control import termination
    from galley.trainer.engine import train
    from galley.trainer.failures import classify
    from galley.trainer.preemption import PreemptedError

    try:
        result = train(job)
    except KeyboardInterrupt:
        return 130
    except PreemptedError as error:  # the log and the termination message say where it stopped
        log.warning("preempted: %s", error)
        return termination.EXIT_PREEMPTED
    except Exception as error:  # the reason is in the termination message; the traceback goes to the log
        failure = classify(error)
        log.error("training failed (%s, %s): %s", failure.reason, "permanent" if failure.permanent else "retryable",
                  failure.message, exc_info=True)
        return failure.exit_status
    if result.metrics:  # rank 0 (or the only rank) wrote the package
        log.info("done: %s (eval accuracy %.4f)", result.model_uri, result.metrics["accuracy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
