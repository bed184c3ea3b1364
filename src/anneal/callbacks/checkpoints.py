"""Checkpoints a run can resume from exactly: at any step, and on SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from anneal.errors import require
from anneal.record import RunFiles
from anneal.storage import save_tensors

log = logging.getLogger(__name__)


class MidEpoch(L.Callback):
    """Knows whether training is in the middle of an epoch (after a training batch that does not end it), the
    only place besides an epoch's end where a checkpoint resumes exactly. Lightning resumes a checkpoint taken
    after an epoch's last batch but before its validation and epoch-end hooks in the next epoch, so the run
    would miss that validation (and what listens to it, such as adaptive SGDR). From an epoch's last batch to
    the next batch, and in a process that has not trained yet, the last checkpoint holds the run."""

    mid_epoch = False

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.mid_epoch = batch_idx + 1 < trainer.num_training_batches


class LastCheckpoint(MidEpoch, Checkpoint):
    """Keeps `<dirpath>/last.ckpt` current: after every epoch (its validation included) and, with
    every_n_train_steps=N, after every N-th optimizer step too. A step that ends an epoch is saved when the
    epoch has ended instead. Written atomically through the trainer's CheckpointIO. (Lightning's
    ModelCheckpoint writes `last` only beside a top-k checkpoint, which one resumable file does not need.)

    keep_weights_every_n_epochs / _n_steps also keep the network's weights alone (no optimizer, a few hundred KB
    to a few MB each) at the end of every N-th epoch or after every N-th optimizer step, in
    `checkpoints/weights/step_<step>.pt`, for `python -m anneal.average` to average after the fact."""

    def __init__(
        self,
        dirpath: str,
        every_n_train_steps: int | None = None,
        keep_weights_every_n_epochs: int | None = None,
        keep_weights_every_n_steps: int | None = None,
    ):
        for key, value in (
            ("every_n_train_steps", every_n_train_steps),
            ("keep_weights_every_n_epochs", keep_weights_every_n_epochs),
            ("keep_weights_every_n_steps", keep_weights_every_n_steps),
        ):
            require(
                value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                key,
                value,
                "null or an integer >= 1",
            )
        self.dirpath, self.every_n_train_steps = Path(dirpath), every_n_train_steps
        self.keep_every_epochs, self.keep_every_steps = keep_weights_every_n_epochs, keep_weights_every_n_steps
        self.last_model_path = ""
        self._saved_step = -1
        self._kept_step = -1

    def keep_weights(self, trainer: L.Trainer, pl_module: Any) -> None:
        """The network's weights at this step, weights only (loaded back with torch.load(weights_only=True))."""
        step = trainer.global_step
        if trainer.sanity_checking or self._kept_step == step or not trainer.is_global_zero:
            return
        epoch = step / max(1, trainer.num_training_batches // trainer.accumulate_grad_batches)
        weights = {k: v.detach().cpu().clone() for k, v in pl_module.network.state_dict().items()}
        save_tensors(
            {"step": step, "epoch": epoch, "weights": weights}, RunFiles(Path(trainer.default_root_dir)).kept(step)
        )
        self._kept_step = step

    def save(self, trainer: L.Trainer) -> None:
        debugging = trainer.fast_dev_run  # type: ignore[attr-defined]  # a Trainer argument, set in its __init__
        if trainer.sanity_checking or debugging or self._saved_step == trainer.global_step:
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint: optimizer, loops, callbacks
        self._saved_step, self.last_model_path = trainer.global_step, str(path)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        every = self.every_n_train_steps
        if every and trainer.global_step % every == 0 and self.mid_epoch:
            self.save(trainer)
        if self.keep_every_steps and trainer.global_step % self.keep_every_steps == 0:
            self.keep_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.keep_every_epochs and (trainer.current_epoch + 1) % self.keep_every_epochs == 0:
            self.keep_weights(trainer, pl_module)
        self.save(trainer)


class SaveOnInterrupt(MidEpoch):
    """On SIGTERM (a cluster's preemption, `kill`) or Ctrl-C, save `<dirpath>/last.ckpt` before exiting, so
    `ckpt_path=last` resumes from the step it stopped at. (Lightning's OnExceptionCheckpoint saves on any
    exception, which after a nan loss would overwrite the last good checkpoint.) A stop outside the middle of
    an epoch keeps the last checkpoint, which holds the run there (anneal.interrupts stops training only
    mid-epoch or once an epoch's checkpoint is written). Under DDP every rank stops at the same batch, so all
    of them take part in the save."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.state.fn != "fit":
            return
        if not self.mid_epoch:
            if trainer.is_global_zero:
                log.warning("stopped at step %d: the last checkpoint holds the run", trainer.global_step)
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint: optimizer, loops, callbacks
        if trainer.is_global_zero:
            log.warning("stopped: saved %s at step %d", path, trainer.global_step)
