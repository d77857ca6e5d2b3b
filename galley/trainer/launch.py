"""Starting the ranks of a multi-node TrainingJob as local processes (the embedded backend's pods).

Each rank is ``python -m galley.trainer`` with the rendezvous in its environment and an equal share
of this machine's CPU threads; rank 0's output is the job's output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from galley.control import termination
from galley.model.hardware import available_cpus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_local_ranks(job_json: str, nodes: int, termination_log: Path | None = None) -> int:
    """Run ``nodes`` trainer processes on gloo over loopback; the exit status of the worst rank.

    Rank 0 leaves its reason for failing in ``termination_log`` (see :mod:`galley.control.termination`).
    """
    port = _free_port()
    threads = max(1, available_cpus() // nodes)
    processes = []
    for rank in range(nodes):
        env = {**os.environ, "WORLD_SIZE": str(nodes), "RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "GALLEY_THREADS": str(threads), "GALLEY_TRAINING_JOB": job_json}
        if termination_log is not None:
            env[termination.ENV] = str(termination_log)
        processes.append(subprocess.Popen([sys.executable, "-m", "galley.trainer"], env=env))
    try:
        codes = [p.wait() for p in processes]
    except KeyboardInterrupt:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait()
        raise
    return max(codes, key=abs)
