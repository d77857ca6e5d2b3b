"""The GPU check stays runnable where there is no GPU: it says so, runs its own code at smoke size on
the CPU (the training step both ways, the resume state, two ranks over gloo), and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_the_gpu_check_runs_on_a_machine_without_a_gpu_and_says_so() -> None:
    assert not torch.cuda.is_available(), "this test is for machines without a GPU"
    done = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "no GPU found" in out
    assert "Galley" in out and "plain torchvision AMP loop" in out and "ratio" in out
    assert "resume state: GradScaler and generators come back as saved" in out
    for rank in (0, 1):
        assert f"rank {rank} on cpu (gloo): collectives and DDP steps agree" in out, out[-3000:]
