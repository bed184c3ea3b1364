"""A run gone wrong stops before a checkpoint can keep it: a loss or weights that turn nan or inf."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from anneal.callbacks.checkpoints import LastCheckpoint
from anneal.errors import TrainingStopped

log = logging.getLogger(__name__)


class NonFiniteLossGuard(L.Callback):
    """Stops training when the loss or the weights turn nan or inf, before any checkpoint can store broken
    weights. The loss's flag stays on the device; it is read every `check_every_n_steps` steps (default: every
    step on the CPU, every 50 on an accelerator, where reading it waits for the device). The weights (a
    gradient can overflow while the loss is finite) are checked at every epoch end and before every checkpoint."""

    def __init__(self, check_every_n_steps: int | None = None):
        self.check_every_n_steps = check_every_n_steps
        self._nonfinite: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        every = self.check_every_n_steps or (1 if pl_module.device.type == "cpu" else 50)
        if trainer.global_step % every == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer, weights=True)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._check(trainer, weights=True)  # raising here keeps the checkpoint on disk from being overwritten

    def _check(self, trainer: L.Trainer, weights: bool = False) -> None:
        what = "loss" if self._nonfinite is not None and bool(self._nonfinite) else None
        if what is None and weights:
            parameters = [p for p in trainer.lightning_module.parameters() if p.requires_grad]
            what = None if torch.isfinite(torch.nn.utils.get_total_norm(parameters)) else "weights"
        if what is not None:
            checkpoint = trainer.checkpoint_callback
            last = checkpoint.last_model_path if isinstance(checkpoint, (LastCheckpoint, ModelCheckpoint)) else ""
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been written yet"
            raise TrainingStopped(
                f"the training {what} became nan/inf by step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}); training stopped and {kept}. Lower optimizer.lr, "
                f"add a warmup, or check the data."
            )
