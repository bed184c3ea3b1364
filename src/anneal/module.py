"""The LightningModule: a network, cross-entropy, accuracy, and the optimizer driven per step by the lr plan."""

from __future__ import annotations

import math
from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from anneal.schedules import Clock, LrPlan, ScheduleLR


def steps_per_epoch(trainer: L.Trainer) -> int:
    """Optimizer steps in one epoch of this trainer (after limit_train_batches and gradient accumulation)."""
    trainer.estimated_stepping_batches  # makes Lightning set up the train loader and count its batches
    return max(1, math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches))


class Classifier(L.LightningModule):
    def __init__(self, network: nn.Module, optimizer: Callable[..., torch.optim.Optimizer], lr_plan: LrPlan,
                 num_classes: int = 10, compile: bool = False):
        super().__init__()
        self.network, self.optimizer_factory, self.lr_plan = network, optimizer, lr_plan
        self.compile = compile
        self.channels_last = False  # set in setup(): true when training on a GPU
        self.metrics = nn.ModuleDict({
            f"{stage}_{name}": metric
            for stage in ("val", "test")
            for name, metric in (("acc", MulticlassAccuracy(num_classes, average="micro")), ("loss", MeanMetric()))
        })
        # training loss and accuracy as running sums on the device, reduced over ranks once per epoch:
        # torchmetrics' bookkeeping on every update costs ~4% of a small network's step
        self.train_sums: torch.Tensor | None = None  # loss * images, correct, images

    def configure_model(self):
        if self.compile and self.plain_network is self.network:  # not compiled yet
            self.network = torch.compile(self.network)

    @property
    def plain_network(self) -> nn.Module:
        """The network without torch.compile's wrapper: what snapshots and averages hold."""
        return getattr(self.network, "_orig_mod", self.network)

    def setup(self, stage: str) -> None:
        # NHWC for the GPU's tensor cores (on a CPU it only costs copies); here, before callbacks copy the
        # network (SWA, EMA) in on_fit_start, so the copies share the layout
        self.channels_last = self.trainer.strategy.root_device.type == "cuda"
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x)

    def _evaluation_step(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.metrics[f"{stage}_acc"].update(logits, y)
        self.metrics[f"{stage}_loss"].update(loss.detach(), weight=len(y))

    def _log_epoch(self, stage: str) -> None:
        # once per epoch, not per batch: each self.log call costs Lightning about a LeNet forward pass
        acc, loss = self.metrics[f"{stage}_acc"], self.metrics[f"{stage}_loss"]
        self.log_dict({f"{stage}/loss": loss.compute(), f"{stage}/acc": acc.compute()}, prog_bar=True)
        acc.reset()
        loss.reset()

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            correct = (logits.argmax(1) == y).sum().to(loss.dtype)
            sums = torch.stack([loss * len(y), correct, torch.full_like(loss, len(y))])
            self.train_sums = sums if self.train_sums is None else self.train_sums + sums
        if self.trainer._logger_connector.should_update_logs:  # the steps whose logs Lightning writes
            self.log("train/loss_step", loss.detach(), prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self._evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluation_step(batch, "test")

    def on_train_epoch_end(self):
        if self.train_sums is not None:
            loss_sum, correct, seen = self.trainer.strategy.reduce(self.train_sums, reduce_op="sum")
            self.log_dict({"train/loss": loss_sum / seen, "train/acc": correct / seen})
            self.train_sums = None

    def on_validation_epoch_end(self):
        self._log_epoch("val")

    def on_test_epoch_end(self):
        self._log_epoch("test")

    def on_save_checkpoint(self, checkpoint):
        # Lightning restores weights, optimizer and loops but not the random generators; dropout (and anything
        # else drawing from them) would continue differently after a resume without this.
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint):
        if rng := checkpoint.get("rng"):
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        clock = Clock(steps_per_epoch(self.trainer))
        schedule = self.lr_plan.build(peak=optimizer.defaults["lr"], clock=clock)
        scheduler = ScheduleLR(optimizer, schedule, clock)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


def lr_scheduler(trainer: L.Trainer) -> ScheduleLR:
    """The run's ScheduleLR: callbacks read the schedule, its clock and its cycle ends from it."""
    for config in trainer.lr_scheduler_configs:
        if isinstance(config.scheduler, ScheduleLR):
            return config.scheduler
    raise RuntimeError("no ScheduleLR configured: anneal's callbacks need anneal.module.Classifier")
