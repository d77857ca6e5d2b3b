"""A killed trainer resumes; bad data is skipped and counted, or refused before training starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from galley.cli import main
from galley.control import termination
from tests.trainer.helpers import job_manifest, write_job


def test_killed_trainer_resumes_from_its_last_checkpoint(tmp_path: Path, food_photos: Any,
                                                         mobilenet_weights: str) -> None:
    output = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", job_manifest(
        "resume", str(food_photos.root), str(output), weights=mobilenet_weights,
        learning_rate_strategy="3:0.001", warmup_epochs="1", image_size="64"))
    command = [sys.executable, "-m", "galley.trainer", "-f", str(job)]
    pointer = output / "checkpoints" / "latest.json"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not pointer.exists():
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)  # a real kill, mid-epoch 2: no handler runs
    process.wait()
    killed_at = json.loads(pointer.read_text())["epoch"]
    assert killed_at < 3

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resuming from the checkpoint of epoch {killed_at}" in rerun.stdout
    epochs = [json.loads(x)["epoch"] for x in (output / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert (output / "model" / "config.json").is_file()


def _train(tmp_path: Path, dataset: str, weights: str, **hyperparameters: str) -> tuple[int, str]:
    code, log, _ = _train_and_say(tmp_path, dataset, weights, **hyperparameters)
    return code, log


def _train_and_say(tmp_path: Path, dataset: str, weights: str, **hyperparameters: str) -> tuple[int, str, str]:
    """The trainer's exit status, its log, and its termination message (what the kubelet would keep)."""
    output = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", job_manifest(
        "bad", dataset, str(output), weights=weights, learning_rate_strategy="1:0.001", image_size="64",
        **hyperparameters))
    last_word = tmp_path / "termination-log"
    process = subprocess.run([sys.executable, "-m", "galley.trainer", "-f", str(job)],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, termination.ENV: str(last_word)})
    said = last_word.read_text(encoding="utf-8") if last_word.is_file() else ""
    return process.returncode, process.stdout + process.stderr, said


def _copy(food_photos: Any, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(food_photos.root, data)
    return data


def test_unreadable_images_are_skipped_counted_and_named(tmp_path: Path, food_photos: Any,
                                                         mobilenet_weights: str) -> None:
    data = _copy(food_photos, tmp_path)
    victim = next((data / "鸟").glob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:300])  # truncated JPEG
    (data / "花" / "notes.jpg").write_text("not an image")
    code, log = _train(tmp_path, str(data), mobilenet_weights)
    assert code == 0, log
    assert "skipped 2 unreadable" in log
    assert f"skipped {victim}" in log and "notes.jpg" in log
    config = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert config["training"]["skipped_images"] == 2


def test_too_many_bad_images_fail_the_job(tmp_path: Path, food_photos: Any, mobilenet_weights: str) -> None:
    data = _copy(food_photos, tmp_path)
    for path in list((data / "鸟").glob("*.jpg"))[:20]:
        path.write_bytes(b"\xff\xd8garbage")
    code, log, said = _train_and_say(tmp_path, str(data), mobilenet_weights, max_bad_fraction="0.05")
    assert code == termination.EXIT_PERMANENT
    assert "cannot be read, more than max_bad_fraction 0.05" in log
    assert said.startswith("DatasetInvalid: 20 of")
    progress = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert progress["phase"] == "Failed" and "max_bad_fraction" in progress["message"]
    assert progress["reason"] == "DatasetInvalid"


def _manifest(tmp_path: Path, lines: list[dict[str, Any]]) -> str:
    path = tmp_path / "set.manifest"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("one-class", "found 1 class (鸟); at least two are needed"),
        ("no-train-image", "class '花' has no training image"),
        ("no-label", "line 2: no label (expected annotation[].name)"),
        ("empty-folder", "no labelled images found"),
        ("missing-folder", "cannot read the data set"),
    ],
)
def test_unusable_data_sets_fail_before_training(tmp_path: Path, food_photos: Any, mobilenet_weights: str,
                                                 case: str, expected: str) -> None:
    birds = sorted((food_photos.root / "鸟").glob("*.jpg"))
    flowers = sorted((food_photos.root / "花").glob("*.jpg"))
    datasets = {
        "one-class": lambda: _manifest(tmp_path, [{"source": str(p), "annotation": [{"name": "鸟"}]} for p in birds]),
        "no-train-image": lambda: _manifest(tmp_path, [
            *({"source": str(p), "annotation": [{"name": "鸟"}]} for p in birds),
            *({"source": str(p), "usage": "EVAL", "annotation": [{"name": "花"}]} for p in flowers)]),
        "no-label": lambda: _manifest(tmp_path, [{"source": str(birds[0]), "annotation": [{"name": "鸟"}]},
                                                 {"source": str(birds[1]), "annotation": []}]),
        "empty-folder": lambda: str((tmp_path / "empty").mkdir() or tmp_path / "empty"),
        "missing-folder": lambda: str(tmp_path / "absent"),
    }
    code, log, said = _train_and_say(tmp_path, datasets[case](), mobilenet_weights)
    assert code == termination.EXIT_PERMANENT, log  # the same data fails the same way: not retried
    assert expected in log
    assert said.startswith("DatasetInvalid: ") and expected in said
    assert "epoch 1/1" not in log
    assert "Traceback" in log  # the reason is in the termination message, the traceback in the log


def test_missing_bucket_is_a_clear_error(tmp_path: Path, s3: Any, mobilenet_weights: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    code, log, said = _train_and_say(tmp_path, "s3://no-such-bucket/data/", mobilenet_weights)
    assert code == termination.EXIT_PERMANENT
    assert "bucket 'no-such-bucket' does not exist" in log
    assert said.startswith("DatasetInvalid: cannot read the data set")


def test_storage_that_does_not_answer_is_a_retryable_failure(tmp_path: Path, mobilenet_weights: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A real S3 client against a port nobody listens on: the attempt fails, and says another may succeed."""
    from galley.testing.processes import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code, log, said = _train_and_say(tmp_path, "s3://food/data/", mobilenet_weights)
    assert code == termination.EXIT_RETRYABLE, log
    assert said.startswith("StorageUnavailable: cannot read the data set"), said


def test_pretrained_without_weights_says_where_it_looked(tmp_path: Path, food_photos: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    job = write_job(tmp_path / "job.yaml", job_manifest("w", str(food_photos.root), str(tmp_path / "out"),
                                                        algorithm="resnet50"))
    assert main(["train", "-f", str(job)]) == termination.EXIT_PERMANENT
    log = (tmp_path / "out" / "logs" / "training.log").read_text(encoding="utf-8")
    assert f"looked in {tmp_path / 'torch' / 'hub' / 'checkpoints' / 'resnet50-11ad3fa6.pth'}" in log
    assert "pretrained: false" in log


def test_mobilenet_v2_starts_from_the_weights_the_install_brings(tmp_path: Path, mobilenet_weights: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from galley.trainer.weights import find_pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    state, source = find_pretrained("mobilenet_v2", None)
    assert source == mobilenet_weights and "classifier.1.weight" in state
