"""The per-step curves of a run: the lr of every optimizer step and the training loss every
`trainer.log_every_n_steps` steps, kept in memory and sent to every logger in one batch per epoch.

Written here rather than with Lightning's LearningRateMonitor and `self.log`: each `self.log` call costs
Lightning about a LeNet forward pass, and LearningRateMonitor logs only every `log_every_n_steps` steps."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from anneal.callbacks.base import RunCallback


class StepCurves(RunCallback):
    """Logs `lr-<Optimizer>` for every step and `train/loss_step` for every `log_every_n_steps`-th step,
    each against the step's index (the global step before it). What is held is sent before each validation,
    at each epoch's end, before a checkpoint is written and when training stops, so that a resumed run logs each
    step once and the steps sent to a logger only go forward (W&B drops a step lower than one it has)."""

    def __init__(self) -> None:
        self.pending: dict[int, dict[str, Any]] = {}  # step -> its values; losses stay on the device until sent
        self.lr_key = "lr"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.lr_key = f"lr-{type(trainer.optimizers[0]).__name__}"  # LearningRateMonitor's name for it

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        epoch = trainer.current_epoch + 1  # counted from 1, as history.csv and the figures count them
        self.pending.setdefault(trainer.global_step, {"epoch": epoch})[self.lr_key] = float(lr)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step - 1  # the step this batch completed
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # a Trainer argument, set in its __init__
        if step in self.pending and isinstance(loss, Tensor) and (step + 1) % every == 0:
            self.pending[step]["train/loss_step"] = loss.detach()

    def send(self, trainer: L.Trainer) -> None:
        pending, self.pending = self.pending, {}
        if not pending or not trainer.loggers:
            return
        with_loss = [values for values in pending.values() if "train/loss_step" in values]
        if with_loss:  # one read from the device for the whole batch of losses
            for values, loss in zip(with_loss, torch.stack([v["train/loss_step"] for v in with_loss]).tolist()):
                values["train/loss_step"] = loss
        rows = sorted(pending.items())
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):  # W&B's own call: Lightning's wrapper around it costs as much again
                run = logger.experiment
                for step, values in rows:
                    run.log({**values, "trainer/global_step": step}, step=step)
            else:
                for step, values in rows:
                    logger.log_metrics(values, step=step)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send(trainer)  # before the held-out metrics are logged at the current step: steps only go forward

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.send(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.send(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.send(trainer)
