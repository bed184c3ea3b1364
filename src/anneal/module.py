"""The LightningModule: a network, cross-entropy, accuracy, and the optimizer driven per step by the run's lr plan."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, cast

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.seed import isolate_rng
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from anneal.bn_update import checked_images, recompute_bn
from anneal.record import Evaluation, accuracy, count, loss, seconds
from anneal.record import Metric as Declared
from anneal.schedules import LrPlan, ScheduleLR

OptimizerFactory = Callable[..., torch.optim.Optimizer]  # takes params: Hydra's `_partial_` of an optimizer


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """A schedule-free optimizer (Defazio et al. 2024, the `schedulefree` package) trains at one point and is
    evaluated at another: it has `train()` and `eval()`, which move the parameters between the two."""
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


class Classifier(L.LightningModule):
    """Trains `network` with `optimizer` under `plan`. The validation loop evaluates the held-out split,
    `heldout`: "val" (a validation split) or "test" (the test set every epoch, as the SGDR, Snapshot Ensembles
    and SWA papers plot it; nothing selects on it), and its metrics carry that name. After every validation, a
    schedule that adapts to a held-out metric (`plan.monitor`) is fed that metric."""

    def __init__(
        self,
        network: nn.Module,
        optimizer: OptimizerFactory,
        plan: LrPlan,
        num_classes: int = 10,
        compile: bool = False,
        heldout: str = "val",
        settings: dict[str, Any] | None = None,
        bn_update_images: int | float | None = None,
    ):
        super().__init__()
        # a schedule-free optimizer's BatchNorm pass at its average: the training set, or this many images of it
        self.bn_update_images, self.bn_pass = checked_images(bn_update_images), (0, 0.0)
        self.network, self.optimizer_factory, self.plan, self.heldout = network, optimizer, plan, heldout
        self.settings = settings or {}  # what the run was configured with: every checkpoint records it
        self.compile_network = compile
        self.channels_last = False  # set in setup(): true when training on a GPU
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": metric
                for stage in ("val", "test")
                for name, metric in (("acc", MulticlassAccuracy(num_classes, average="micro")), ("loss", MeanMetric()))
            }
        )
        # training loss and accuracy as running sums on the device, reduced over ranks once per epoch:
        # torchmetrics' bookkeeping on every update costs ~4% of a small network's step
        self.train_sums: Tensor | None = None  # loss * images, correct, images
        self._compiled = False
        self.schedule_free: Any = None  # the optimizer, when it is schedule-free
        self._evaluation = ExitStack()

    def configure_model(self) -> None:
        if self.compile_network and not self._compiled:
            self.network.compile()  # in place: the state dict keeps the plain network's keys
            self._compiled = True

    def setup(self, stage: str) -> None:
        # NHWC for the GPU's tensor cores (on a CPU it only costs copies); here, before callbacks copy the
        # network (SWA, EMA) in on_fit_start, so the copies share the layout
        self.channels_last = self.trainer.strategy.root_device.type == "cuda"
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x)

    def _evaluation_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        cast(Metric, self.metrics[f"{stage}_acc"]).update(logits, y)
        cast(Metric, self.metrics[f"{stage}_loss"]).update(loss.detach(), weight=len(y))

    def _log_epoch(self, stage: str, to_loggers: bool = True) -> dict[str, Tensor]:
        # once per epoch, not per batch: each self.log call costs Lightning about a LeNet forward pass
        acc, loss = cast(Metric, self.metrics[f"{stage}_acc"]), cast(Metric, self.metrics[f"{stage}_loss"])
        values = {f"{stage}/loss": loss.compute(), f"{stage}/acc": acc.compute()}
        self.log_dict(values | self.epoch_count(), prog_bar=True, logger=to_loggers)
        acc.reset()
        loss.reset()
        return values

    def epoch_count(self) -> dict[str, float]:
        """The epoch the logged values belong to, counted from 1 as history.csv and the figures count them
        (Lightning's own `epoch` counts from 0)."""
        return {"epoch": float(self.current_epoch + 1)}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            correct = (logits.argmax(1) == y).sum().to(loss.dtype)
            sums = torch.stack([loss * len(y), correct, torch.full_like(loss, len(y))])
            self.train_sums = sums if self.train_sums is None else self.train_sums.to(sums.device) + sums
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, self.heldout)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def _log_train_epoch(self) -> None:
        if self.train_sums is not None:
            loss_sum, correct, seen = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
            values = {"train/loss": loss_sum / seen, "train/acc": correct / seen} | self.epoch_count()
            self.log_dict(values, on_step=False, on_epoch=True)
            self.train_sums = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 >= self.trainer.num_training_batches:  # logged now, so that callbacks see them at epoch end
            self._log_train_epoch()

    def on_train_epoch_end(self) -> None:
        self._log_train_epoch()  # an epoch cut short (max_steps)

    def on_train_start(self) -> None:
        self.check_clock()

    def check_clock(self) -> None:
        """Stop before the first step if the plan's clock, computed from the data module before training,
        disagrees with the step count Lightning arrives at: the schedule would be stretched or cut."""
        trainer = self.trainer
        if trainer.fast_dev_run:  # type: ignore[attr-defined]  # a smoke test takes a step of the configured plan
            return
        per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        counted = (per_epoch, int(trainer.estimated_stepping_batches))
        planned = (self.plan.clock.steps_per_epoch, self.plan.clock.total_steps)
        if counted != planned:
            raise RuntimeError(
                f"the lr plan counts {planned[0]} optimizer steps per epoch and {planned[1]} in all, Lightning "
                f"{counted[0]} and {counted[1]}: anneal's clock arithmetic is out of step with this Lightning version"
            )

    def on_validation_epoch_end(self) -> None:
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        values = self._log_epoch(self.heldout, to_loggers=fitting)  # a final validate() adds no point to the curve
        if self.plan.monitor in values and fitting and not self.trainer.sanity_checking:
            scheduler = self.lr_schedulers()
            assert isinstance(scheduler, ScheduleLR)
            scheduler.observe(values[self.plan.monitor].item())

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", to_loggers=False)  # results.json has them; the curves are logged per epoch

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores weights, optimizer and loops but not the random generators; dropout (and anything
        # else drawing from them) would continue differently after a resume without this.
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        checkpoint["train_sums"] = self.gathered_train_sums()  # an epoch resumed mid-way reports all its batches
        checkpoint["settings"] = self.settings  # a resume compares its own with them before training
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def gathered_train_sums(self) -> Tensor | None:
        """The running sums of every rank, one row each: a checkpoint is written by rank 0 alone."""
        if self.train_sums is None or self.trainer.world_size == 1:
            return self.train_sums
        rows = self.train_sums.new_zeros(self.trainer.world_size, len(self.train_sums))
        rows[self.global_rank] = self.train_sums
        return self.trainer.strategy.reduce(rows, reduce_op="sum")  # every rank saves, so every rank takes part

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sums = checkpoint.get("train_sums")
        if sums is not None and sums.dim() == 2:  # one row per rank
            rows = len(sums)
            sums = sums[self.global_rank] if rows == self.trainer.world_size else sums.sum(0) * (self.global_rank == 0)
        self.train_sums = sums
        if rng := checkpoint.get("rng"):
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def declare(self, evaluation: Evaluation) -> list[Declared]:
        """The trained network's final scores (its test accuracy is the run's headline unless an ensemble or an
        average declares one of higher rank) and the run's size."""
        found = [accuracy("test/acc", "test accuracy", headline=1), loss("test/loss", "test loss", column=True)]
        if "val" in evaluation.splits:
            found += [accuracy("val/acc", "validation accuracy", column=True), loss("val/loss", "validation loss")]
        found += [count("epochs", "epochs"), count("steps", "optimizer steps"), count("params", "trainable parameters")]
        found += [count("bn_update_images", "images of the BatchNorm pass at the schedule-free average")]
        found += [seconds("bn_update_seconds", "seconds of that pass (the last evaluation's)")]
        return [*found, seconds("wall_seconds", "training and evaluation time (s)", column=True)]

    def results(self) -> dict[str, Any]:
        """What the run trained: the network and how far training went."""
        return {
            "model": type(self.network).__name__,
            "params": sum(p.numel() for p in self.network.parameters() if p.requires_grad),
            "schedule": self.plan.describe(),
            "epochs": self.trainer.current_epoch,
            "steps": self.trainer.global_step,
        } | ({"bn_update_images": self.bn_pass[0], "bn_update_seconds": self.bn_pass[1]} if self.schedule_free else {})

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = self.optimizer_factory(params=self.parameters())
        self.schedule_free = optimizer if is_schedule_free(optimizer) else None
        scheduler = ScheduleLR(optimizer, self.plan)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # --- schedule-free optimizers (Defazio et al. 2024, "The Road Less Scheduled") --------------------------------
    # They take gradients at one point (y) and are evaluated at another (x, the average of their iterates, which
    # `eval()` moves the parameters to). The optimizer is in train mode for every training step. Every evaluation
    # (the held-out curve, the final test and validation, snapshots) runs at x with BatchNorm statistics recomputed
    # there, and puts y and its statistics back bit for bit afterwards: evaluating never changes training, and the
    # checkpoints, written outside evaluations, hold y (and z in the optimizer's state), so a resume is exact.

    @contextmanager
    def evaluated(self) -> Iterator[nn.Module]:
        """The network at the weights it is evaluated at: as trained, or a schedule-free optimizer's average x."""
        optimizer = self.schedule_free
        if optimizer is None:
            yield self.network
            return
        trained = {key: value.clone() for key, value in self.network.state_dict().items()}
        data = self.trainer.datamodule  # type: ignore[attr-defined]  # set by Lightning when fitting or testing
        try:
            optimizer.eval()
            with isolate_rng():  # dropout in the pass must not move training's random stream
                self.bn_pass = recompute_bn(
                    self.network, data.batches("train"), self.device, self.bn_update_images, data.seed
                )  # no pass without BatchNorm
            yield self.network
        finally:
            optimizer.train()
            self.network.load_state_dict(trained)

    def on_train_epoch_start(self) -> None:
        if self.schedule_free is not None:
            self.schedule_free.train()

    def on_validation_start(self) -> None:
        self._evaluation.enter_context(self.evaluated())

    def on_validation_end(self) -> None:
        self._evaluation.close()

    def on_test_start(self) -> None:
        self._evaluation.enter_context(self.evaluated())

    def on_test_end(self) -> None:
        self._evaluation.close()
