"""Saves the run's lr function (PNG + CSV) in its directory at the start and logs it to W&B. A schedule
that adapts to validation accuracy is drawn again at the end, as it actually ran."""

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from anneal.module import lr_scheduler
from anneal.preview import render


class LrSchedulePlot(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer, pl_module, "")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if lr_scheduler(trainer).schedule.needs_val_acc:
            self._draw(trainer, pl_module, " (as it ran: restarts follow val/acc)")

    def _draw(self, trainer, pl_module, note: str) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        scheduler = lr_scheduler(trainer)
        png, _ = render(scheduler.schedule, scheduler.clock, int(trainer.estimated_stepping_batches),
                        Path(trainer.default_root_dir), f"lr schedule{note}: {pl_module.lr_plan.describe()}")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="lr_schedule", images=[str(png)])
