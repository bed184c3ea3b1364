"""Feeds the validation accuracy to schedules that adapt to it (adaptive SGDR)."""

import lightning as L

from anneal.module import lr_scheduler


class ValAccFeedback(L.Callback):
    """After each validation, tell the schedule the val/acc measured at the current training time.
    The schedule's state is saved with the lr scheduler in every checkpoint."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val/acc" not in trainer.callback_metrics:
            return
        lr_scheduler(trainer).observe(trainer.callback_metrics["val/acc"].item())
