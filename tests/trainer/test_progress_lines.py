"""The trainer's epoch log lines read back as the numbers that were logged (the console's curves
come from them where it cannot read metrics.jsonl)."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.control.progress import epoch_records
from galley.trainer.progress import Reporter


def test_logged_epochs_read_back_as_their_numbers(tmp_path: Path) -> None:
    reporter = Reporter(output_uri=str(tmp_path / "out"), logs_uri=str(tmp_path / "out" / "logs"))
    logged = [
        {"epoch": 1, "epochs": 2, "lr": 0.001, "train_loss": 0.8123, "train_accuracy": 0.6, "eval_accuracy": None,
         "images_per_second": 41.25, "elapsed": 30.0, "eta": 30.0},
        {"epoch": 2, "epochs": 2, "lr": 0.0005, "train_loss": 0.4, "train_accuracy": 0.875, "eval_accuracy": 0.93,
         "images_per_second": 40.0, "elapsed": 61.0, "eta": 0.0},
    ]
    for record in logged:
        reporter.epoch(record)

    read = epoch_records((tmp_path / "out" / "logs" / "training.log").read_text())

    assert [(r["epoch"], r["epochs"]) for r in read] == [(1, 2), (2, 2)]
    assert "eval_accuracy" not in read[0] and read[1]["eval_accuracy"] == pytest.approx(0.93)
    for record, back in zip(logged, read, strict=True):
        assert back["train_loss"] == pytest.approx(record["train_loss"], abs=1e-4)
        assert back["train_accuracy"] == pytest.approx(record["train_accuracy"], abs=1e-4)
        assert back["images_per_second"] == pytest.approx(record["images_per_second"], abs=0.05)
