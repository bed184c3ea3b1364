"""Saves the run's lr plan (PNG + CSV) in its directory at the start and logs it to W&B. A schedule
that adapts to a held-out metric is drawn again at the end, as it actually ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from anneal.callbacks.base import RunCallback
from anneal.preview import render
from anneal.record import RunFiles
from anneal.schedules import LrPlan


class LrSchedulePlot(RunCallback):
    def use_plan(self, plan: LrPlan) -> None:
        self.plan = plan

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._draw(trainer, "")

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.plan.monitor is not None:
            self._draw(trainer, f" (as it ran: it follows {self.plan.monitor})")

    def _draw(self, trainer: L.Trainer, note: str) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:  # type: ignore[attr-defined]  # set in Trainer.__init__
            return
        png, _ = render(
            self.plan, RunFiles(Path(trainer.default_root_dir)), f"lr schedule{note}: {self.plan.describe()}"
        )
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="lr_schedule", images=[str(png)], step=trainer.global_step)
