"""The training run of the preset algorithms, from a TrainingJob to a model package.

Shaped after torchvision's classification reference (load data, train one epoch, evaluate,
checkpoint), with the choices that make a good model soonest on the hardware at hand:

* images are decoded once and kept in memory as uint8 tensors when they fit;
* one pass of the pretrained body gives every photo's features: near-duplicate photos are grouped
  from them and each group kept on one side of the train/eval split (:mod:`galley.trainer.grouping`),
  and the first ``warmup_epochs`` fit only the new head on them (a frozen-backbone warm-up: a converged linear probe);
* then every layer is fine-tuned with augmentation, the pretrained layers at a fraction of the
  rate, batch norm on its pretrained statistics;
* bf16 autocast and channels_last on CPUs with native bf16, AMP on GPUs (see ``hardware``);
* the packaged weights are those of the best-evaluated epoch (ties to the later one), or the last.

The log says what was chosen and why. A checkpoint is written every epoch; running the same job
again with the same output resumes after the last complete epoch, with the same split.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from galley import storage
from galley.api.hyperparameters import Resolved
from galley.api.resources import TrainingJob
from galley.control import reasons, termination
from galley.control.progress import job_identity
from galley.model import architectures
from galley.model.hardware import Accelerator, choose
from galley.model.preprocessing import Preprocessing
from galley.trainer import checkpoint, distributed, failures, images, loop, packaging, probe, transforms
from galley.trainer.preparation import Prepared, TrainingError, discover, prepare
from galley.trainer.progress import Reporter
from galley.trainer.weights import find_pretrained

log = logging.getLogger("galley.trainer")

@dataclass(frozen=True)
class TrainingResult:
    """What a finished job produced."""

    model_uri: str
    metrics: dict[str, Any]
    epochs: int


@dataclass
class Progress:
    """Where the epochs stand; saved in every checkpoint."""

    history: list[dict[str, Any]]
    next_epoch: int = 1
    best_accuracy: float = -1.0
    best_epoch: int = 0


# -- set-up -------------------------------------------------------------------------------------


def build_network(job: TrainingJob, classes: int, accelerator: Accelerator, reporter: Reporter) -> nn.Module:
    spec = job.spec.algorithm
    network = architectures.build(spec.name, classes)
    if spec.pretrained:
        state, where = find_pretrained(spec.name, spec.weights)
        missing = architectures.load_backbone_weights(network, state)
        if missing:
            raise TrainingError(f"{where} does not fit {spec.name}: missing {', '.join(missing[:3])}",
                                reasons.WEIGHTS_NOT_FOUND)
        reporter.say("weights: ImageNet from %s; new %d-class head", where, classes)
    else:
        reporter.say("weights: random (algorithm.pretrained is false)")
    if accelerator.channels_last:
        network = network.to(memory_format=torch.channels_last)
    return network.to(accelerator.device)


# -- the optimizer ------------------------------------------------------------------------------


def param_groups(network: nn.Module, backbone_scale: float) -> list[dict[str, Any]]:
    """Pretrained layers and the new head, so each can get its own learning rate."""
    head = architectures.head(network)
    head_ids = {id(p) for p in head.parameters()}
    return [
        {"params": [p for p in network.parameters() if id(p) not in head_ids], "scale": backbone_scale},
        {"params": list(head.parameters()), "scale": 1.0},
    ]


def make_optimizer(settings: Resolved, parameters: Any, lr: float) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=settings.weight_decay)
    return torch.optim.Adam(parameters, lr=lr, weight_decay=settings.weight_decay)


# -- the run ------------------------------------------------------------------------------------


class _Run:
    """The epochs of one job: the network, its data, and the state a checkpoint saves."""

    def __init__(self, job: TrainingJob, settings: Resolved, reporter: Reporter, world: distributed.World,
                 placement: loop.Placement):
        self.job, self.settings, self.reporter, self.world, self.placement = job, settings, reporter, world, placement
        self.strategy = settings.learning_rate_strategy
        self.output = job.spec.output.uri
        self.identity = job_identity(job)
        self.preprocessing = Preprocessing.for_size(settings.image_size)
        self.backbone_scale = settings.backbone_lr_multiplier if job.spec.algorithm.pretrained else 1.0
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
        self.scaler = torch.amp.GradScaler(enabled=placement.accelerator.autocast_dtype == torch.float16)
        self.optimizer: torch.optim.Optimizer | None = None
        self.model: nn.Module | None = None
        """The network as trained: DDP-wrapped when there are several ranks."""

    def start(self) -> tuple[nn.Module, Prepared, Progress]:
        try:
            resumed = checkpoint.load_latest(self.output, self.identity,
                                             allow_other_jobs=self.job.spec.output.resume_from_other_jobs)
        except storage.StorageError as error:
            raise TrainingError(f"cannot read the checkpoints in {checkpoint.checkpoints_uri(self.output)}: "
                                f"{error}", reasons.STORAGE_UNAVAILABLE, permanent=False) from None
        samples = discover(self.job)
        classes = len({s.label for s in samples})
        if classes < 2:
            raise TrainingError(f"found {classes} class ({samples[0].label}); at least two are needed",
                                reasons.DATASET_INVALID)
        network = build_network(self.job, classes, self.placement.accelerator, self.reporter)
        prepared = prepare(self.job, samples, self.settings, network, self.placement, self.world, self.reporter,
                           resumed_epoch=int(resumed["epoch"]) if resumed is not None else None)
        progress = Progress(history=[])
        if resumed is not None:
            if resumed.get("labels") != prepared.labels:
                raise TrainingError(f"{checkpoint.checkpoints_uri(self.output)} holds a checkpoint for other classes "
                                    f"({resumed.get('labels')}); use a new output location", reasons.OUTPUT_IN_USE)
            network.load_state_dict(resumed["model"])
            checkpoint.restore_rng(resumed["rng"])
            progress = Progress(list(resumed["history"]), int(resumed["epoch"]) + 1,
                                float(resumed["best_accuracy"]), int(resumed["best_epoch"]))
            if resumed.get("optimizer"):
                self.optimizer = make_optimizer(self.settings, param_groups(network, self.backbone_scale),
                                                self.strategy.rate_at(min(progress.next_epoch, self.strategy.epochs)))
                self.optimizer.load_state_dict(resumed["optimizer"])
            if resumed.get("scaler"):
                self.scaler.load_state_dict(resumed["scaler"])
            self.reporter.records = list(progress.history)
            self.reporter.resume()
            self.reporter.say("resuming from the checkpoint of epoch %d", progress.next_epoch - 1)
        return network, prepared, progress

    def warmup_epoch(self, network: nn.Module, prepared: Prepared) -> tuple[float, float, float | None]:
        """Fit only the head on the fixed features, as a converged linear probe (:mod:`probe`);
        every rank fits the same head on all of them (deterministic, and fine-tuning's DDP starts
        every rank from rank 0's weights anyway)."""
        assert prepared.features is not None
        train_features, eval_features = prepared.features
        device = self.placement.accelerator.device
        head = architectures.head(network)
        targets = torch.tensor(prepared.train.targets, device=device)
        loss, train_accuracy = probe.fit_linear_head(head, train_features.to(device), targets, loss_fn=self.loss_fn)
        with torch.inference_mode():
            scores = head(eval_features.to(device)).cpu().numpy()
        return loss, train_accuracy, loop.accuracy(scores, prepared.eval.targets)

    def finetune_epoch(self, network: nn.Module, prepared: Prepared, epoch: int, lr: float) -> tuple[float, float]:
        if self.model is None:
            self.model = distributed.wrap(network, self.world)
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.settings, param_groups(network, self.backbone_scale), lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        augment = (transforms.train_augment(self.preprocessing) if self.settings.augment
                   else transforms.eval_from_cache(self.preprocessing))
        dataset = loop.ImageDataset(prepared.train, self.preprocessing, augment)
        sampler = distributed.sampler(dataset, self.world, self.settings.seed)
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = loop.make_loader(dataset, self.settings.batch_size, workers=self.settings.num_workers,
                                  shuffle=True, sampler=sampler)
        self.model.train()
        if self.job.spec.algorithm.pretrained:
            loop.freeze_batch_norm(self.model)
        first_after_warmup = self.settings.warmup_epochs > 0 and epoch == self.settings.warmup_epochs + 1
        return loop.train_one_epoch(self.model, loader, optimizer=self.optimizer, scaler=self.scaler,
                                    loss_fn=self.loss_fn, placement=self.placement, world=self.world,
                                    total=len(prepared.train), ramp_steps=len(loader) if first_after_warmup else 0,
                                    on_step=self.reporter.step)

    def eval_loader(self, decoded: images.DecodedSet) -> Any:
        dataset = loop.ImageDataset(decoded, self.preprocessing, transforms.eval_from_cache(self.preprocessing))
        return loop.make_loader(dataset, self.settings.eval_batch_size, workers=self.settings.num_workers)

    def evaluate(self, network: nn.Module, prepared: Prepared) -> float | None:
        if not len(prepared.eval):
            return None
        probabilities = loop.predict(network, self.eval_loader(prepared.eval), self.placement, len(prepared.labels))
        return loop.accuracy(probabilities, prepared.eval.targets)

    def epochs(self, network: nn.Module, prepared: Prepared, progress: Progress) -> None:
        settings, epochs = self.settings, self.strategy.epochs
        warmup, every = settings.warmup_epochs, settings.evaluate_every_n_epochs
        if warmup and progress.next_epoch <= warmup:
            self.reporter.say("schedule: %d frozen-backbone warm-up epoch(s) on cached features (the head fitted as "
                              "a linear probe), then every layer fine-tuned with augmentation (pretrained layers at "
                              "%gx the rate)", min(warmup, epochs), self.backbone_scale)
        started = time.monotonic()
        for epoch in range(progress.next_epoch, epochs + 1):
            epoch_started = time.monotonic()
            lr = self.strategy.rate_at(epoch)
            evaluate = epoch % every == 0 or epoch == epochs
            if epoch <= warmup:
                loss, train_accuracy, eval_accuracy = self.warmup_epoch(network, prepared)
                eval_accuracy = eval_accuracy if evaluate else None
            else:
                loss, train_accuracy = self.finetune_epoch(network, prepared, epoch, lr)
                eval_accuracy = self.evaluate(network, prepared) if evaluate else None
            seconds = time.monotonic() - epoch_started
            elapsed = time.monotonic() - started
            done = epoch - progress.next_epoch + 1
            record = {
                "epoch": epoch, "epochs": epochs, "lr": lr, "train_loss": round(loss, 5),
                "train_accuracy": round(train_accuracy, 5),
                "eval_accuracy": None if eval_accuracy is None else round(eval_accuracy, 5),
                "images_per_second": round(len(prepared.train) / max(seconds, 1e-9), 2),
                "epoch_seconds": round(seconds, 2), "elapsed": round(elapsed, 2),
                "eta": round(elapsed / done * (epochs - epoch), 1),
            }
            progress.history.append(record)
            # Ties go to the later epoch: as good on evaluation, and trained longer.
            improved = eval_accuracy is not None and eval_accuracy >= progress.best_accuracy
            if improved:
                progress.best_accuracy, progress.best_epoch = float(eval_accuracy), epoch  # type: ignore[arg-type]
            if self.world.is_main:
                state = network.state_dict()
                checkpoint.save(self.output, {
                    "epoch": epoch, "model": state, "history": progress.history, "labels": prepared.labels,
                    "optimizer": self.optimizer.state_dict() if self.optimizer else {},
                    "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                    "rng": checkpoint.rng_states(), "best_accuracy": progress.best_accuracy,
                    "best_epoch": progress.best_epoch,
                }, job=self.identity, best=state if improved else None)
                self.reporter.epoch(record)
            progress.next_epoch = epoch + 1
        distributed.barrier(self.world)

    def select(self, network: nn.Module, progress: Progress) -> packaging.Selection:
        """Load the weights to package, per ``selection``."""
        last = self.strategy.epochs
        if self.settings.selection == "last" or progress.best_epoch in (0, last):
            why = "asked for" if self.settings.selection == "last" else (
                "it is also the best-evaluated" if progress.best_epoch == last else "no epoch was evaluated")
            return packaging.Selection(last, self.settings.selection, f"Packaged the last epoch ({last}): {why}.")
        best = checkpoint.load_best(self.output)
        if best is None:
            return packaging.Selection(last, "best", f"Packaged the last epoch ({last}): no best checkpoint found.")
        weights, epoch = best
        network.load_state_dict(weights)
        return packaging.Selection(epoch, "best", f"Packaged epoch {epoch} of {last}: the best evaluation accuracy "
                                                  f"({progress.best_accuracy:.4f}); ties go to the later epoch.")

    def package(self, network: nn.Module, prepared: Prepared, progress: Progress) -> dict[str, Any]:
        selection = self.select(network, progress)
        self.reporter.say("%s", selection.reason)
        probabilities = loop.predict(network, self.eval_loader(prepared.eval), self.placement, len(prepared.labels))

        def batches(decoded: images.DecodedSet) -> list[np.ndarray]:
            dataset = loop.ImageDataset(decoded, self.preprocessing, transforms.eval_from_cache(self.preprocessing))
            return [b.numpy().astype(np.float32) for b, _ in loop.make_loader(dataset, 16)]

        calibration = batches(prepared.train.subset(range(min(len(prepared.train), packaging.CALIBRATION_IMAGES))))
        spec = self.job.spec
        contents = packaging.Contents(
            job_name=self.job.name, algorithm=spec.algorithm.name, dataset=spec.dataset.uri,
            hyperparameters=spec.hyperparameters.as_strings(), labels=prepared.labels,
            preprocessing=self.preprocessing, history=progress.history, selection=selection, split=prepared.summary)
        return packaging.write(storage.join(self.output, "model") + "/", network, contents, eval_set=prepared.eval,
                               probabilities=probabilities, calibration=calibration,
                               eval_batches=batches(prepared.eval), reporter=self.reporter)


def _run(job: TrainingJob, reporter: Reporter, world: distributed.World, accelerator: Accelerator) -> TrainingResult:
    settings = job.spec.hyperparameters.resolved()
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(accelerator.threads)
    epochs = settings.learning_rate_strategy.epochs
    reporter.say("job %s: %s on %s, %d epochs (learning_rate_strategy %r)", job.name, job.spec.algorithm.name,
                 job.spec.dataset.uri, epochs, job.spec.hyperparameters.learning_rate_strategy or "default")
    reporter.say("hardware: %s", accelerator.reason)
    run = _Run(job, settings, reporter, world, loop.Placement(accelerator))
    network, prepared, progress = run.start()
    if world.distributed:
        backend = "gloo" if accelerator.device.type == "cpu" else "nccl"
        log.info("rank %d of %d: %d training images in this rank's shard, reshuffled every epoch (%s)", world.rank,
                 world.size, -(-len(prepared.train) // world.size), backend)
    run.epochs(network, prepared, progress)
    model_uri = storage.join(job.spec.output.uri, "model") + "/"
    if not world.is_main:
        return TrainingResult(model_uri, {}, epochs)
    metrics = run.package(network, prepared, progress)
    reporter.say("model package written to %s (eval accuracy %.4f)", model_uri, metrics["accuracy"])
    final = {**reporter.latest_metrics(), "accuracy": metrics["accuracy"]}
    reporter.publish("Succeeded", epochs, epochs, final, model_uri=model_uri)
    reporter.flush_log()
    return TrainingResult(model_uri, metrics, epochs)


def train(job: TrainingJob, *, on_progress: Callable[[dict[str, Any]], None] | None = None,
          on_step: loop.StepCallback | None = None) -> TrainingResult:
    """Run ``job`` to completion (resuming from its checkpoint) and write the model package.

    ``on_progress`` receives each progress record (see :mod:`galley.control.progress`),
    ``on_step`` the progress within an epoch.
    """
    reporter = Reporter(job.spec.output.uri, job.logs_uri, job=job_identity(job), on_progress=on_progress,
                        on_step=on_step)
    epochs = 0
    world = distributed.World()
    try:
        epochs = job.spec.hyperparameters.resolved().learning_rate_strategy.epochs
        accelerator = choose()
        world = distributed.from_environment(accelerator.device)
        reporter.writes = world.is_main
        try:
            return _run(job, reporter, world, accelerator)
        finally:
            distributed.leave(world)
    except KeyboardInterrupt:
        reporter.say("interrupted; the next run with the same output resumes from the last checkpoint")
        with contextlib.suppress(Exception):
            reporter.flush_log()
        raise
    except Exception as error:
        failure = failures.classify(error)
        message, reason = failure.message, failure.reason
        reporter.say("failed: %s: %s", reason, message)
        if world.is_main:
            termination.write(reason, message)
        if isinstance(error, checkpoint.OutputInUseError):
            raise  # the output location is another job's: write nothing there, not even this failure
        with contextlib.suppress(Exception):
            reporter.flush_log()
            reporter.publish("Failed", len(reporter.records), epochs, reporter.latest_metrics(), message=message,
                             reason=reason)
        raise
