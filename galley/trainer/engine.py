"""The training loop of the preset algorithms.

Shaped after torchvision's classification reference (load data, train one epoch, evaluate,
checkpoint), with the choices that make a good model soonest on the hardware at hand:

* images are decoded once and kept in memory as uint8 tensors when they fit;
* the first ``warmup_epochs`` train only the new head on backbone features computed once
  (a frozen-backbone warm-up: a pretrained network gets most of its accuracy from it, at the
  cost of one forward pass), then every layer is fine-tuned with augmentation;
* bf16 autocast and channels_last on CPUs with native bf16, AMP on GPUs (see ``hardware``).

The log says what was chosen and why. A checkpoint is written every epoch; running the same job
again with the same output resumes after the last complete epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as tvf

from galley import storage
from galley.api.resources import TrainingJob
from galley.model import architectures, package
from galley.model.hardware import Accelerator, choose
from galley.model.preprocessing import Preprocessing
from galley.trainer import checkpoint, data, distributed, images, quantize, transforms
from galley.trainer.evaluation import classification_metrics
from galley.trainer.progress import Reporter
from galley.trainer.report import render
from galley.trainer.weights import find_pretrained

log = logging.getLogger("galley.trainer")
CALIBRATION_IMAGES = 64
"""Training photos that calibrate the INT8 graph's activation ranges."""

CACHE_BUDGET_BYTES = 3 * 1024**3
"""``cache_images: auto`` keeps decoded images in memory up to this size."""
HEAD_PASSES = 15
"""Passes over the cached features in one warm-up epoch: cheap, and enough for the head to settle."""


class TrainingError(RuntimeError):
    """The job cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class TrainingResult:
    """What a finished job produced."""

    model_uri: str
    metrics: dict[str, Any]
    epochs: int


class _Images(Dataset[tuple[torch.Tensor, int]]):
    """Decoded images (cached or read on demand) through a transform."""

    def __init__(self, decoded: images.DecodedSet, preprocessing: Preprocessing, transform: Any):
        self.decoded = decoded
        self.preprocessing = preprocessing
        self.transform = transform

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        cached = self.decoded.images
        image = cached[i] if cached is not None else images.load_one(self.decoded.samples[i], self.preprocessing)
        return self.transform(image), self.decoded.targets[i]


class _Run:
    """One training run of one job: state shared by the steps below."""

    def __init__(self, job: TrainingJob, reporter: Reporter):
        self.job = job
        self.reporter = reporter
        self.params = job.spec.hyperparameters.resolved()
        self.strategy = self.params["learning_rate_strategy"]
        self.epochs: int = self.strategy.epochs
        self.output = job.spec.output.uri
        self.model_uri = storage.join(self.output, "model") + "/"
        self.preprocessing = Preprocessing.for_size(self.params["image_size"])
        self.accelerator: Accelerator = choose()
        self.features: tuple[torch.Tensor, torch.Tensor] | None = None
        self.world = distributed.from_environment(self.accelerator.device)
        reporter.writes = self.world.is_main

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> None:
        say = self.reporter.say
        seed = self.params["seed"]
        random.seed(seed)
        torch.manual_seed(seed)
        torch.set_num_threads(self.accelerator.threads)
        say("job %s: %s on %s, %d epochs (learning_rate_strategy %r)", self.job.name, self.job.spec.algorithm.name,
            self.job.spec.dataset.uri, self.epochs, self.job.spec.hyperparameters.learning_rate_strategy or "default")
        say("hardware: %s", self.accelerator.reason)
        try:
            samples = data.discover(self.job.spec.dataset.uri, self.job.spec.dataset.format)
            self.dataset = data.split(samples, self.job.spec.dataset.split, seed)
        except storage.StorageError as error:
            raise TrainingError(f"cannot read the data set: {error}") from None
        except data.DatasetError as error:
            raise TrainingError(str(error)) from None
        self.labels = self.dataset.labels
        counts = {label: sum(s.label == label for s in self.dataset.train) for label in self.labels}
        say("data: %d classes, %d training and %d evaluation images; per class: %s", len(self.labels),
            len(self.dataset.train), len(self.dataset.eval), ", ".join(f"{k} {v}" for k, v in counts.items()))
        self.split_record = self.dataset.split_record()
        if self.world.distributed:
            own = distributed.shard(self.dataset.train, self.world)
            self.dataset = data.LabelledSet(self.labels, own, self.dataset.eval)
            log.info("rank %d of %d: %d training images in this rank's shard (%s)", self.world.rank,
                     self.world.size, len(own), "gloo" if self.accelerator.device.type == "cpu" else "nccl")
        self._decode()
        self._build_network()

    def _decode(self) -> None:
        total = len(self.dataset.train) + len(self.dataset.eval)
        size = self.preprocessing.resize_size
        needed = total * 3 * size * size
        choice = self.params["cache_images"]
        keep = choice == "true" or (choice == "auto" and needed <= CACHE_BUDGET_BYTES)
        why = "asked" if choice != "auto" else f"{needed / 2**20:.0f} MiB {'fits' if keep else 'exceeds'} the budget"
        self.reporter.say("image cache: %s (%s)", "in memory" if keep else "off, decoding every epoch", why)
        started = time.monotonic()
        threads = max(2, self.accelerator.threads * 2)
        self.train_set = images.decode(self.dataset.train, self.labels, self.preprocessing, keep=keep, threads=threads)
        self.eval_set = images.decode(self.dataset.eval, self.labels, self.preprocessing, keep=keep, threads=threads)
        skipped = self.train_set.skipped + self.eval_set.skipped
        self.skipped = len(skipped)
        self.reporter.say("decoded %d images in %.1fs; skipped %d unreadable", total - len(skipped),
                          time.monotonic() - started, len(skipped))
        for source, reason in skipped:
            self.reporter.say("skipped %s: %s", source, reason)
        share = len(skipped) / max(1, total)
        if share > self.params["max_bad_fraction"]:
            raise TrainingError(f"{len(skipped)} of {total} images ({share:.0%}) cannot be read, more than "
                                f"max_bad_fraction {self.params['max_bad_fraction']:g}; first: {skipped[0][0]}")
        missing = [label for i, label in enumerate(self.labels) if i not in set(self.train_set.targets)]
        if missing and not self.world.distributed:  # a shard may lack a class; the whole set was checked
            raise TrainingError(f"class {missing[0]!r} has no readable training image")
        if self.world.is_main:
            storage.write_text(storage.join(self.output, "split.json"),
                               json.dumps(self.split_record, ensure_ascii=False) + "\n")

    def _build_network(self) -> None:
        spec = self.job.spec.algorithm
        network = architectures.build(spec.name, len(self.labels))
        if spec.pretrained:
            state, where = find_pretrained(spec.name, spec.weights)
            missing = architectures.load_backbone_weights(network, state)
            if missing:
                raise TrainingError(f"{where} does not fit {spec.name}: missing {', '.join(missing[:3])}")
            self.reporter.say("weights: ImageNet from %s; new %d-class head", where, len(self.labels))
        else:
            self.reporter.say("weights: random (algorithm.pretrained is false)")
        if self.accelerator.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network.to(self.accelerator.device)

    # -- helpers --------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.accelerator.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=dtype)

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.accelerator.device, non_blocking=True)
        if self.accelerator.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _loader(self, decoded: images.DecodedSet, transform: Any, batch: int, shuffle: bool) -> DataLoader[Any]:
        workers = self.params["num_workers"]
        return DataLoader(_Images(decoded, self.preprocessing, transform), batch_size=batch, shuffle=shuffle,
                          num_workers=workers, persistent_workers=False, drop_last=False)

    def _loss(self) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.params["label_smoothing"])

    def _param_groups(self) -> list[dict[str, Any]]:
        """Pretrained layers and the new head, so each can get its own learning rate."""
        head_ids = {id(p) for p in architectures.head(self.network).parameters()}
        return [
            {"params": [p for p in self.network.parameters() if id(p) not in head_ids], "scale": self._backbone_scale},
            {"params": list(architectures.head(self.network).parameters()), "scale": 1.0},
        ]

    @property
    def _backbone_scale(self) -> float:
        return self.params["backbone_lr_multiplier"] if self.job.spec.algorithm.pretrained else 1.0

    def _optimizer(self, parameters: Any, lr: float) -> torch.optim.Optimizer:
        name, decay = self.params["optimizer"], self.params["weight_decay"]
        if name == "sgd":
            return torch.optim.SGD(parameters, lr=lr, momentum=self.params["momentum"], weight_decay=decay)
        if name == "adamw":
            return torch.optim.AdamW(parameters, lr=lr, weight_decay=decay)
        return torch.optim.Adam(parameters, lr=lr, weight_decay=decay)

    @torch.inference_mode()
    def _features(self, decoded: images.DecodedSet) -> torch.Tensor:
        body = architectures.backbone(self.network).eval()
        chunks = []
        done = 0
        for batch, _ in self._loader(decoded, transforms.eval_from_cache(self.preprocessing),
                                     self.params["eval_batch_size"], False):
            with self._autocast():
                chunks.append(body(self._to_device(batch)).float())
            done += len(batch)
            self.reporter.step("features", done, len(decoded))
        return torch.cat(chunks) if chunks else torch.empty(0)

    @torch.inference_mode()
    def predict(self) -> np.ndarray:
        """Class probabilities for the evaluation set with the whole network."""
        self.network.eval()
        outputs = []
        for batch, _ in self._loader(self.eval_set, transforms.eval_from_cache(self.preprocessing),
                                     self.params["eval_batch_size"], False):
            with self._autocast():
                outputs.append(torch.softmax(self.network(self._to_device(batch)).float(), dim=1).cpu())
        return torch.cat(outputs).numpy() if outputs else np.zeros((0, len(self.labels)))

    # -- epochs ---------------------------------------------------------------------------------

    def warmup_epoch(self, lr: float) -> tuple[float, float, float | None]:
        """Train only the head on frozen backbone features; returns loss, train and eval accuracy."""
        if self.features is None:
            self.features = (self._features(self.train_set), self._features(self.eval_set))
        train_x, eval_x = self.features
        train_y = torch.tensor(self.train_set.targets, device=train_x.device)
        head = architectures.head(self.network)
        optimizer = self._optimizer(head.parameters(), lr * 10)
        loss_fn = self._loss()
        batch = self.params["batch_size"]
        steps = distributed.common_steps(-(-len(train_x) // batch), self.world)
        head.train()
        for _ in range(HEAD_PASSES):
            order = torch.randperm(len(train_x), device=train_x.device)
            total, correct, count = 0.0, 0, 0
            for start in range(0, steps * batch, batch):
                index = order[start : start + batch]
                logits = head(train_x[index])
                loss = loss_fn(logits, train_y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                distributed.average_gradients(head.parameters(), self.world)
                optimizer.step()
                total += loss.item() * len(index)
                correct += int((logits.argmax(1) == train_y[index]).sum())
                count += len(index)
        with torch.inference_mode():
            eval_y = torch.tensor(self.eval_set.targets, device=eval_x.device)
            eval_accuracy = float((head(eval_x).argmax(1) == eval_y).float().mean()) if len(eval_x) else None
        total, right, seen = distributed.sum_across([total, correct, count], self.world)
        return total / max(1, seen), right / max(1, seen), eval_accuracy

    def finetune_epoch(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> tuple[float, float]:
        """One pass over the training images with augmentation, every layer trained."""
        self.network.train()
        if self.job.spec.algorithm.pretrained:
            # Small fine-tuning sets give noisy batch statistics; pretrained ones are better estimates.
            for module in self.network.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        loss_fn = self._loss()
        if self.params["augment"]:
            augment = transforms.train_augment(self.preprocessing)
        else:
            augment = transforms.eval_from_cache(self.preprocessing)
        total, correct, count = 0.0, 0, 0
        loader = self._loader(self.train_set, augment, self.params["batch_size"], True)
        steps = distributed.common_steps(len(loader), self.world)
        for step, (batch, targets) in enumerate(loader):
            if step >= steps:
                break
            batch, targets = self._to_device(batch), targets.to(self.accelerator.device)
            with self._autocast():
                logits = self.network(batch)
                loss = loss_fn(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            distributed.average_gradients(self.network.parameters(), self.world)
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(targets)
            correct += int((logits.argmax(1) == targets).sum())
            count += len(targets)
            self.reporter.step("train", count, len(self.train_set))
        total, right, seen = distributed.sum_across([total, correct, count], self.world)
        return total / max(1, seen), right / max(1, seen)

    def evaluate_accuracy(self) -> float | None:
        if not len(self.eval_set):
            return None
        probabilities = self.predict()
        return float((probabilities.argmax(1) == np.array(self.eval_set.targets)).mean())

    # -- the run --------------------------------------------------------------------------------

    def train(self) -> TrainingResult:
        warmup = self.params["warmup_epochs"]
        every = self.params["evaluate_every_n_epochs"]
        history: list[dict[str, Any]] = []
        start_epoch, best_accuracy, best_epoch = 1, -1.0, 0
        optimizer: torch.optim.Optimizer | None = None
        scaler = torch.amp.GradScaler(enabled=self.accelerator.autocast_dtype == torch.float16)
        resumed = checkpoint.load_latest(self.output)
        if resumed is not None:
            if resumed.get("labels") != self.labels:
                raise TrainingError(f"{checkpoint.checkpoints_uri(self.output)} holds a checkpoint for other "
                                    f"classes ({resumed.get('labels')}); use a new output location")
            self.network.load_state_dict(resumed["model"])
            torch.set_rng_state(resumed["rng"])
            history = list(resumed["history"])
            start_epoch = int(resumed["epoch"]) + 1
            best_accuracy, best_epoch = float(resumed["best_accuracy"]), int(resumed["best_epoch"])
            if resumed.get("optimizer"):
                optimizer = self._optimizer(self._param_groups(), self.strategy.rate_at(min(start_epoch,
                                                                                               self.epochs)))
                optimizer.load_state_dict(resumed["optimizer"])
            self.reporter.records = list(history)
            self.reporter.resume()
            self.reporter.say("resuming from the checkpoint of epoch %d", start_epoch - 1)
        if warmup:
            self.reporter.say("schedule: %d frozen-backbone warm-up epoch(s) on cached features (head learning rate "
                              "10x), then every layer fine-tuned with augmentation (pretrained layers at %gx the rate)",
                              min(warmup, self.epochs), self._backbone_scale)
        started = time.monotonic()
        for epoch in range(start_epoch, self.epochs + 1):
            epoch_started = time.monotonic()
            lr = self.strategy.rate_at(epoch)
            if epoch <= warmup:
                loss, train_accuracy, eval_accuracy = self.warmup_epoch(lr)
                if epoch % every and epoch != self.epochs:
                    eval_accuracy = None
            else:
                if optimizer is None:
                    optimizer = self._optimizer(self._param_groups(), lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["scale"]
                loss, train_accuracy = self.finetune_epoch(optimizer, scaler)
                evaluate = epoch % every == 0 or epoch == self.epochs
                eval_accuracy = self.evaluate_accuracy() if evaluate else None
            seconds = time.monotonic() - epoch_started
            elapsed = time.monotonic() - started
            done = epoch - start_epoch + 1
            record = {
                "epoch": epoch, "epochs": self.epochs, "lr": lr, "train_loss": round(loss, 5),
                "train_accuracy": round(train_accuracy, 5),
                "eval_accuracy": None if eval_accuracy is None else round(eval_accuracy, 5),
                "images_per_second": round(len(self.train_set) * self.world.size / max(seconds, 1e-9), 2),
                "epoch_seconds": round(seconds, 2), "elapsed": round(elapsed, 2),
                "eta": round(elapsed / done * (self.epochs - epoch), 1),
            }
            history.append(record)
            improved = eval_accuracy is not None and eval_accuracy > best_accuracy
            if improved:
                best_accuracy, best_epoch = float(eval_accuracy), epoch  # type: ignore[arg-type]
            state = self.network.state_dict()
            if not self.world.is_main:
                continue
            checkpoint.save(self.output, {
                "epoch": epoch, "model": state, "optimizer": optimizer.state_dict() if optimizer else {},
                "history": history, "labels": self.labels, "rng": torch.get_rng_state(),
                "best_accuracy": best_accuracy, "best_epoch": best_epoch,
            }, best=state if improved else None)
            self.reporter.epoch(record)
        distributed.barrier(self.world)
        if not self.world.is_main:
            return TrainingResult(self.model_uri, {}, self.epochs)
        return self.finish(history, best_epoch)

    def _onnx_batches(self, decoded: images.DecodedSet, limit: int | None = None) -> list[np.ndarray]:
        """Evaluation-transformed float32 batches of ``decoded`` (the first ``limit`` images)."""
        batches: list[np.ndarray] = []
        seen = 0
        for batch, _ in self._loader(decoded, transforms.eval_from_cache(self.preprocessing), 16, False):
            batches.append(batch.numpy().astype(np.float32))
            seen += len(batch)
            if limit is not None and seen >= limit:
                break
        return batches

    def finish(self, history: list[dict[str, Any]], best_epoch: int) -> TrainingResult:
        best = checkpoint.load_best(self.output)
        if best is not None and best_epoch:
            self.network.load_state_dict(best)
            self.reporter.say("packaging the weights of epoch %d (best evaluation accuracy)", best_epoch)
        probabilities = self.predict()
        targets = np.array(self.eval_set.targets, dtype=np.int64)
        predictions = probabilities.argmax(1) if len(probabilities) else np.zeros(0, dtype=np.int64)
        metrics = classification_metrics(self.labels, targets, predictions)
        mistakes = []
        for i in np.flatnonzero(predictions != targets)[:8]:
            ranked = sorted(zip(self.labels, probabilities[i].tolist(), strict=True), key=lambda p: -p[1])
            cached = self.eval_set.images
            tensor = cached[i] if cached is not None else images.load_one(self.eval_set.samples[i], self.preprocessing)
            mistakes.append((tvf.to_pil_image(tensor), self.labels[targets[i]], ranked))
        network = self.network.float().cpu().to(memory_format=torch.contiguous_format).eval()
        onnx = package.export_onnx(network, self.preprocessing.image_size)
        self.reporter.say("ONNX export: %s", "written" if onnx else "not possible here; serving falls back to PyTorch")
        quantized = None
        if onnx:
            quantized = quantize.quantize(onnx, self._onnx_batches(self.train_set, CALIBRATION_IMAGES),
                                          self._onnx_batches(self.eval_set), targets)
            self.reporter.say("INT8: %s", quantized.reason)
        spec = self.job.spec
        config = package.PackageConfig(
            name=self.job.name, algorithm=spec.algorithm.name, labels=self.labels,
            image_size=self.preprocessing.image_size, resize_size=self.preprocessing.resize_size,
            metrics={"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]},
            onnx=package.ONNX if onnx else None, report=package.REPORT,
            onnx_int8=package.ONNX_INT8 if quantized is not None and quantized.kept else None,
            quantization=quantized.record() if quantized is not None else {},
            training={"job": self.job.name, "dataset": spec.dataset.uri, "epochs": self.epochs,
                      "selected_epoch": best_epoch or self.epochs,
                      "hyperparameters": spec.hyperparameters.as_strings(),
                      "train_images": len(self.train_set), "eval_images": len(self.eval_set),
                      "skipped_images": self.skipped},
        )
        files = {package.METRICS: (json.dumps(metrics, ensure_ascii=False, indent=2) + "\n").encode(),
                 package.REPORT: render(self.job.name, history, metrics, mistakes,
                                        quantized.record() if quantized is not None else None).encode()}
        if onnx:
            files[package.ONNX] = onnx
        if quantized is not None and quantized.graph is not None:
            files[package.ONNX_INT8] = quantized.graph
        package.write_package(self.model_uri, config, network, files)
        self.reporter.say("model package written to %s (eval accuracy %.4f)", self.model_uri, metrics["accuracy"])
        final = {**self.reporter.latest_metrics(), "accuracy": metrics["accuracy"]}
        self.reporter.publish("Succeeded", self.epochs, self.epochs, final, model_uri=self.model_uri)
        self.reporter.flush_log()
        return TrainingResult(self.model_uri, metrics, self.epochs)


def train(job: TrainingJob, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
          on_step: Callable[[str, int, int], None] | None = None) -> TrainingResult:
    """Run ``job`` to completion (resuming from its checkpoint) and write the model package.

    ``on_progress`` receives each progress record (see :mod:`galley.trainer.progress`),
    ``on_step`` the progress within an epoch.
    """
    reporter = Reporter(job.spec.output.uri, job.logs_uri, on_progress=on_progress, on_step=on_step)
    run: _Run | None = None
    try:
        run = _Run(job, reporter)
        run.setup()
        try:
            return run.train()
        finally:
            distributed.leave(run.world)
    except KeyboardInterrupt:
        reporter.say("interrupted; the next run with the same output resumes from the last checkpoint")
        with contextlib.suppress(Exception):
            reporter.flush_log()
        raise
    except Exception as error:
        message = str(error) if isinstance(error, TrainingError | ValueError | FileNotFoundError) else repr(error)
        reporter.say("failed: %s", message)
        with contextlib.suppress(Exception):
            reporter.flush_log()
            epochs = run.epochs if run else 0
            reporter.publish("Failed", len(reporter.records), epochs, reporter.latest_metrics(), message=message)
        raise
