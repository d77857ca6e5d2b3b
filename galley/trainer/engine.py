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
import dataclasses
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
from galley.trainer import checkpoint, distributed, failures, images, loop, packaging, preemption, probe, transforms
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
    partial: dict[str, Any] | None = None
    """The epoch a stop on SIGTERM left half done: its number, the steps done and their sums."""


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
                 placement: loop.Placement, stop: preemption.StopRequest = preemption.NEVER):
        self.job, self.settings, self.reporter, self.world, self.placement = job, settings, reporter, world, placement
        self.stop = stop
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
                                float(resumed["best_accuracy"]), int(resumed["best_epoch"]), resumed.get("partial"))
            if resumed.get("optimizer"):
                self.optimizer = make_optimizer(self.settings, param_groups(network, self.backbone_scale),
                                                self.strategy.rate_at(min(progress.next_epoch, self.strategy.epochs)))
                self.optimizer.load_state_dict(resumed["optimizer"])
            if resumed.get("scaler"):
                self.scaler.load_state_dict(resumed["scaler"])
            self.reporter.records = list(progress.history)
            self.reporter.resume()
            if progress.partial:
                self.reporter.say("resuming from the checkpoint taken on SIGTERM in epoch %d, after batch %d",
                                  progress.next_epoch, progress.partial["steps"])
            else:
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

    def finetune_epoch(self, network: nn.Module, prepared: Prepared, epoch: int, lr: float,
                       partial: dict[str, Any] | None) -> loop.EpochOutcome:
        """One epoch of every layer, or the rest of it after a stop (``partial``): the batches come in
        the order fixed by the seed and the epoch, so the rest is exactly the batches not yet done."""
        if self.model is None:
            self.model = distributed.wrap(network, self.world)
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.settings, param_groups(network, self.backbone_scale), lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        augment = (transforms.train_augment(self.preprocessing) if self.settings.augment
                   else transforms.eval_from_cache(self.preprocessing))
        dataset = loop.ImageDataset(prepared.train, self.preprocessing, augment)
        done = int(partial["steps"]) if partial else 0
        batch_size = self.settings.batch_size
        share = distributed.EpochSampler(len(dataset), self.world, self.settings.seed, epoch)
        sampler = distributed.EpochSampler(len(dataset), self.world, self.settings.seed, epoch, start=done * batch_size)
        loader = loop.make_loader(dataset, batch_size, workers=self.settings.num_workers, sampler=sampler,
                                  seed=self.settings.seed * 1000 + epoch)
        self.model.train()
        if self.job.spec.algorithm.pretrained:
            loop.freeze_batch_norm(self.model)
        first_after_warmup = self.settings.warmup_epochs > 0 and epoch == self.settings.warmup_epochs + 1
        steps = -(-len(share) // batch_size)
        carried = tuple(partial["sums"]) if partial else (0.0, 0, 0)
        return loop.train_one_epoch(self.model, loader, optimizer=self.optimizer, scaler=self.scaler,
                                    loss_fn=self.loss_fn, placement=self.placement, world=self.world,
                                    total=len(prepared.train), ramp_steps=steps if first_after_warmup else 0,
                                    on_step=self.reporter.step, start_step=done,
                                    carried=(float(carried[0]), int(carried[1]), int(carried[2])), stop=self.stop)

    def eval_loader(self, decoded: images.DecodedSet) -> Any:
        dataset = loop.ImageDataset(decoded, self.preprocessing, transforms.eval_from_cache(self.preprocessing))
        return loop.make_loader(dataset, self.settings.eval_batch_size, workers=self.settings.num_workers)

    def evaluate(self, network: nn.Module, prepared: Prepared) -> float | None:
        if not len(prepared.eval):
            return None
        probabilities = loop.predict(network, self.eval_loader(prepared.eval), self.placement, len(prepared.labels))
        return loop.accuracy(probabilities, prepared.eval.targets)

    def epochs(self, network: nn.Module, prepared: Prepared, progress: Progress) -> None:
        epochs, warmup = self.strategy.epochs, self.settings.warmup_epochs
        if warmup and progress.next_epoch <= warmup:
            self.reporter.say("schedule: %d frozen-backbone warm-up epoch(s) on cached features (the head fitted as "
                              "a linear probe), then every layer fine-tuned with augmentation (pretrained layers at "
                              "%gx the rate)", min(warmup, epochs), self.backbone_scale)
        started, first = time.monotonic(), progress.next_epoch
        with self.stop.at_step_boundaries():
            for epoch in range(first, epochs + 1):
                self.one_epoch(network, prepared, progress, epoch, started, first)
                if distributed.any_across(self.stop.requested, self.world):
                    raise preemption.PreemptedError(f"stopped on SIGTERM after epoch {epoch} of {epochs}, with its "
                                                    f"checkpoint written; the next run resumes at epoch {epoch + 1}")
        distributed.barrier(self.world)

    def one_epoch(self, network: nn.Module, prepared: Prepared, progress: Progress, epoch: int,
                  started: float, first: int) -> None:
        """Train, evaluate and checkpoint ``epoch``; a stop on SIGTERM in its middle checkpoints the
        steps done and raises :class:`~galley.trainer.preemption.PreemptedError`."""
        settings, epochs = self.settings, self.strategy.epochs
        warmup, every = settings.warmup_epochs, settings.evaluate_every_n_epochs
        epoch_started = time.monotonic()
        lr = self.strategy.rate_at(epoch)
        evaluate = epoch % every == 0 or epoch == epochs
        partial = progress.partial if progress.partial and int(progress.partial["epoch"]) == epoch else None
        progress.partial = None
        earlier_seconds = float(partial.get("seconds", 0.0)) if partial else 0.0
        if epoch <= warmup:
            loss, train_accuracy, eval_accuracy = self.warmup_epoch(network, prepared)
            eval_accuracy = eval_accuracy if evaluate else None
            images = len(prepared.train)
        else:
            outcome = self.finetune_epoch(network, prepared, epoch, lr, partial)
            if outcome.stopped:
                self.checkpoint_stop(network, prepared, progress, epoch, outcome,
                                     earlier_seconds + time.monotonic() - epoch_started)
            loss, train_accuracy, images = outcome.loss, outcome.accuracy, outcome.images
            eval_accuracy = self.evaluate(network, prepared) if evaluate else None
        seconds = time.monotonic() - epoch_started
        elapsed = time.monotonic() - started
        done = epoch - first + 1  # epochs this run has trained, for the estimate of the rest
        record = {
            "epoch": epoch, "epochs": epochs, "lr": lr, "train_loss": round(loss, 5),
            "train_accuracy": round(train_accuracy, 5),
            "eval_accuracy": None if eval_accuracy is None else round(eval_accuracy, 5),
            "images_per_second": round(images / max(seconds, 1e-9), 2),
            "epoch_seconds": round(seconds + earlier_seconds, 2), "elapsed": round(elapsed, 2),
            "eta": round(elapsed / done * (epochs - epoch), 1),
        }
        progress.history.append(record)
        # Ties go to the later epoch: as good on evaluation, and trained longer.
        improved = eval_accuracy is not None and eval_accuracy >= progress.best_accuracy
        if improved:
            progress.best_accuracy, progress.best_epoch = float(eval_accuracy), epoch  # type: ignore[arg-type]
        if self.world.is_main:
            state = network.state_dict()
            checkpoint.save(self.output, {**self.state(prepared, progress), "epoch": epoch, "model": state},
                            job=self.identity, best=state if improved else None)
            self.reporter.epoch(record)
        progress.next_epoch = epoch + 1

    def state(self, prepared: Prepared, progress: Progress) -> dict[str, Any]:
        """What a checkpoint holds besides the epoch number and the weights."""
        return {
            "history": progress.history, "labels": prepared.labels,
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": checkpoint.rng_states(), "best_accuracy": progress.best_accuracy,
            "best_epoch": progress.best_epoch,
        }

    def checkpoint_stop(self, network: nn.Module, prepared: Prepared, progress: Progress, epoch: int,
                        outcome: loop.EpochOutcome, seconds: float) -> None:
        """Every rank stopped after the same step: rank 0 checkpoints it (as the end of the epoch
        before, with this epoch's steps and sums), and the run stops as preempted."""
        if self.world.is_main:
            partial = {"epoch": epoch, "steps": outcome.steps, "sums": list(outcome.sums), "seconds": round(seconds, 2)}
            checkpoint.save(self.output, {**self.state(prepared, progress), "epoch": epoch - 1,
                                          "model": network.state_dict(), "partial": partial}, job=self.identity)
            self.reporter.flush_log()
        distributed.barrier(self.world)
        raise preemption.PreemptedError(
            f"stopped on SIGTERM in epoch {epoch}, after batch {outcome.steps}, with a checkpoint of it; "
            f"the next run resumes at batch {outcome.steps + 1}")

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


def _run(job: TrainingJob, reporter: Reporter, world: distributed.World, accelerator: Accelerator,
         stop: preemption.StopRequest) -> TrainingResult:
    settings = job.spec.hyperparameters.resolved()
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(accelerator.threads)
    epochs = settings.learning_rate_strategy.epochs
    reporter.say("job %s: %s on %s, %d epochs (learning_rate_strategy %r)", job.name, job.spec.algorithm.name,
                 job.spec.dataset.uri, epochs, job.spec.hyperparameters.learning_rate_strategy or "default")
    reporter.say("hardware: %s", accelerator.reason)
    run = _Run(job, settings, reporter, world, loop.Placement(accelerator), stop)
    network, prepared, progress = run.start()
    if world.distributed:
        log.info("rank %d of %d (node %d, local rank %d, %s, %s): %d training images in this rank's shard, "
                 "reshuffled every epoch; the global batch is %d x %d", world.rank, world.size, world.node_rank,
                 world.local_rank, accelerator.device, world.backend, -(-len(prepared.train) // world.size),
                 settings.batch_size, world.size)
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
        if world.device.type == "cuda":  # this rank's own GPU, not cuda:0
            accelerator = dataclasses.replace(accelerator, device=world.device)
        reporter.writes = world.is_main
        try:
            with preemption.StopRequest().installed() as stop:
                return _run(job, reporter, world, accelerator, stop)
        finally:
            distributed.leave(world)
    except preemption.PreemptedError as error:  # not a failure: the next pod resumes from the checkpoint
        reporter.say("preempted: %s", error)
        if world.local_rank == 0:
            termination.write(error.reason, str(error))
        with contextlib.suppress(Exception):
            reporter.flush_log()
        raise
    except KeyboardInterrupt:
        reporter.say("interrupted; the next run with the same output resumes from the last checkpoint")
        with contextlib.suppress(Exception):
            reporter.flush_log()
        raise
    except Exception as error:
        failure = failures.classify(error)
        message, reason = failure.message, failure.reason
        reporter.say("failed: %s: %s", reason, message)
        if world.local_rank == 0:  # each pod's first rank speaks for its pod
            termination.write(reason, message)
        if isinstance(error, checkpoint.OutputInUseError):
            raise  # the output location is another job's: write nothing there, not even this failure
        with contextlib.suppress(Exception):
            reporter.flush_log()
            reporter.publish("Failed", len(reporter.records), epochs, reporter.latest_metrics(), message=message,
                             reason=reason)
        raise
