"""A trainer stopped by SIGTERM in the middle of an epoch (a spot reclaim, a drain, ``kubectl delete
pod``) finishes its step, checkpoints it, exits as preempted, and the next run resumes at the next
batch: no step is lost or done twice, and it ends where an uninterrupted run of the same seed ends."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from galley.control import termination
from tests.trainer.helpers import job_manifest, write_job
from tests.trainer.test_distributed_failure import _rank_processes

BATCH = 4
TRAIN_LINE = re.compile(r"train: (\d+) of (\d+) images")


class _Trainer:
    """``python -m galley.trainer -v`` in the background, its output collected line by line."""

    def __init__(self, job: Path, termination_log: Path | None = None):
        env = None if termination_log is None else {**os.environ, termination.ENV: str(termination_log)}
        self.process = subprocess.Popen([sys.executable, "-m", "galley.trainer", "-v", "-f", str(job)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, found: Any, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not found(self.lines):
            assert self.process.poll() is None, "".join(self.lines)[-4000:]
            assert time.monotonic() < deadline, "".join(self.lines)[-4000:]
            time.sleep(0.02)

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code, "".join(self.lines)


def _in_second_epoch(lines: list[str]) -> bool:
    """Fine-tuning is two batches in: epoch 1 is the frozen-backbone warm-up, which trains no batches."""
    return any(int(m.group(1)) >= 2 * BATCH for line in lines for m in TRAIN_LINE.finditer(line))


def _job(tmp_path: Path, name: str, food_photos: Any, weights: str, nodes: int = 1) -> tuple[Path, Path]:
    output = tmp_path / name
    manifest = job_manifest(name, str(food_photos.manifest), str(output), weights=weights,
                            learning_rate_strategy="3:0.001", image_size="64", batch_size=str(BATCH), seed="5")
    if nodes > 1:
        manifest["spec"]["resources"] = {"nodes": nodes}
    return write_job(tmp_path / f"{name}.yaml", manifest), output


def _records(output: Path) -> list[dict[str, Any]]:
    records = [json.loads(x) for x in (output / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    return records


def _final_accuracy(output: Path) -> float:
    return float(_records(output)[-1]["eval_accuracy"])


def _checkpoint(output: Path) -> dict[str, Any]:
    data = (output / "checkpoints" / "latest.pt").read_bytes()
    return dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def test_sigterm_mid_epoch_loses_no_step_and_the_resumed_run_ends_as_an_uninterrupted_one(
        tmp_path: Path, food_photos: Any, mobilenet_weights: str) -> None:
    job, output = _job(tmp_path, "stopped", food_photos, mobilenet_weights)
    last_word = tmp_path / "termination-log"
    trainer = _Trainer(job, last_word)
    trainer.wait_for(_in_second_epoch)
    trainer.process.send_signal(signal.SIGTERM)
    code, out = trainer.finish()
    assert code == termination.EXIT_PREEMPTED, out[-4000:]
    stopped = re.search(r"stopped on SIGTERM in epoch 2, after batch (\d+)", out)
    assert stopped, out[-4000:]
    steps = int(stopped.group(1))
    assert steps >= 2
    said = termination.parse(last_word.read_text(encoding="utf-8"))
    assert said is not None and said[0] == "Preempted" and f"after batch {steps}" in said[1]
    saved = _checkpoint(output)
    assert saved["epoch"] == 1 and saved["partial"]["epoch"] == 2 and saved["partial"]["steps"] == steps
    assert json.loads((output / "checkpoints" / "latest.json").read_text())["epoch"] == 1

    resumed = _Trainer(job)
    code, again = resumed.finish()
    assert code == 0, again[-4000:]
    assert f"resuming from the checkpoint taken on SIGTERM in epoch 2, after batch {steps}" in again
    # The first batch this run trains is the one after the last checkpointed: none lost, none twice.
    first = TRAIN_LINE.search(again)
    assert first and int(first.group(1)) == (steps + 1) * BATCH, again[-4000:]

    plain_job, plain_output = _job(tmp_path, "uninterrupted", food_photos, mobilenet_weights)
    plain = _Trainer(plain_job)
    code, plain_out = plain.finish()
    assert code == 0, plain_out[-4000:]
    ours, theirs = _final_accuracy(output), _final_accuracy(plain_output)
    print(f"resume after SIGTERM in epoch 2 at batch {steps}: steps lost 0, final eval accuracy {ours:.4f} "
          f"against {theirs:.4f} uninterrupted")
    # The same batches, augmentations and dropout masks in the same order: the epochs match the
    # uninterrupted run's (here to the last digit; allowed: float noise, one photo in 24).
    for resumed_epoch, plain_epoch in zip(_records(output), _records(plain_output), strict=True):
        assert abs(resumed_epoch["train_loss"] - plain_epoch["train_loss"]) <= 1e-3, (resumed_epoch, plain_epoch)
        assert abs(resumed_epoch["eval_accuracy"] - plain_epoch["eval_accuracy"]) <= 1 / 24 + 1e-9


def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step(tmp_path: Path, food_photos: Any,
                                                                   mobilenet_weights: str) -> None:
    """One pod of a 2-node job deleted: only its rank gets SIGTERM, yet both stop after one step,
    rank 0 checkpoints it, and the rerun resumes both there."""
    job, output = _job(tmp_path, "pair", food_photos, mobilenet_weights, nodes=2)
    trainer = _Trainer(job)
    trainer.wait_for(_in_second_epoch)
    ranks = _rank_processes(trainer.process.pid)
    assert set(ranks) == {0, 1}, ranks
    os.kill(ranks[1], signal.SIGTERM)
    code, out = trainer.finish()
    assert code == termination.EXIT_PREEMPTED, out[-4000:]
    stops = set(re.findall(r"\[rank (\d)/2\].*preempted: stopped on SIGTERM in epoch 2, after batch (\d+)", out))
    assert {rank for rank, _ in stops} == {"0", "1"} and len({steps for _, steps in stops}) == 1, out[-4000:]
    steps = int(stops.pop()[1])
    assert _checkpoint(output)["partial"]["steps"] == steps

    code, again = _Trainer(job).finish()
    assert code == 0, again[-4000:]
    assert again.count(f"resuming from the checkpoint taken on SIGTERM in epoch 2, after batch {steps}") == 2
    assert _final_accuracy(output) is not None  # and its history holds epochs 1, 2 and 3 once each
