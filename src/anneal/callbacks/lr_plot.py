"""Saves the run's lr function (PNG + CSV) in its directory at the start and logs it to W&B."""

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from anneal.module import lr_scheduler
from anneal.preview import render


class LrSchedulePlot(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        scheduler = lr_scheduler(trainer)
        title = f"lr schedule: {pl_module.lr_plan.describe()}"
        png, _ = render(scheduler.schedule, scheduler.clock, int(trainer.estimated_stepping_batches),
                        Path(trainer.default_root_dir), title)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="lr_schedule", images=[str(png)])
