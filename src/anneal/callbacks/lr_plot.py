"""Saves the run's lr plan (PNG + CSV) in its directory at the start and logs it to W&B. A schedule
that adapts to a held-out metric is drawn again at the end, as it actually ran.

The start's picture is drawn on a thread while training begins (matplotlib and the drawing take a few tenths of
a second, which the first step would otherwise wait for) and logged at the start of an epoch once it is ready,
at that step: W&B drops whatever is logged at a step before one it has, and the per-step curves of an epoch
reach it at the epoch's end, so a picture logged mid-epoch would push the epoch's earlier steps out."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from anneal.callbacks.base import RunCallback
from anneal.preview import render
from anneal.record import RunFiles
from anneal.schedules import Clock


class LrSchedulePlot(RunCallback):
    """lr_schedule.png and .csv: the plan of the module's anneal lr scheduler (`ScheduleLR`; without one the
    callback refuses when fitting starts), in `output_dir` (None: the trainer's default_root_dir)."""

    def __init__(self, output_dir: str | Path | None = None) -> None:
        self.drawing: threading.Thread | None = None
        self.drawn: Path | None = None
        self.output_dir = None if output_dir is None else Path(output_dir)

    def use_clock(self, clock: Clock) -> None:
        super().use_clock(clock)
        self.refuse_without_plan("the lr plan to draw")

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        debugging = trainer.fast_dev_run  # type: ignore[attr-defined]  # a Trainer argument, set in its __init__
        if trainer.is_global_zero and not debugging:
            files = RunFiles(self.output_folder(trainer))
            self.drawing = threading.Thread(target=self.draw, args=(files, ""), name="lr-plot", daemon=True)
            self.drawing.start()

    def draw(self, files: RunFiles, note: str) -> None:
        assert self.plan is not None
        self.drawn, _ = render(self.plan, files, f"lr schedule{note}: {self.plan.describe()}")

    def finish_drawing(self, trainer: L.Trainer) -> None:
        """Wait for the start's picture and log it (once)."""
        if self.drawing is None:
            return
        self.drawing.join()
        self.drawing = None
        if self.drawn is not None:
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key="lr_schedule", images=[str(self.drawn)], step=trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.drawing is not None and not self.drawing.is_alive():
            self.finish_drawing(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        if self.drawing is not None:  # a run stopped in its first epoch still leaves its picture (W&B: on resume)
            self.drawing.join()
            self.drawing = None

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.finish_drawing(trainer)
        debugging = trainer.fast_dev_run  # type: ignore[attr-defined]  # a Trainer argument, set in its __init__
        if self.plan is not None and self.plan.monitor is not None and trainer.is_global_zero and not debugging:
            self.draw(RunFiles(self.output_folder(trainer)), f" (as it ran: it follows {self.plan.monitor})")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger) and self.drawn is not None:
                    logger.log_image(key="lr_schedule", images=[str(self.drawn)], step=trainer.global_step)
