"""The run's per-epoch history: `history.csv` in the run directory and one log line per epoch."""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from anneal.callbacks.base import RunCallback
from anneal.record import Evaluation, Metric, RunFiles, accuracy, count
from anneal.schedules import Clock
from anneal.storage import save_text

log = logging.getLogger(__name__)
COLUMNS = ["epoch", "step", "lr", "train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "seconds"]
HELDOUT = ("val", "test")


class History(RunCallback):
    """One row per epoch (epoch, step, the lr of its last step, training loss and accuracy, the held-out
    metrics, seconds) in `<run dir>/history.csv`, rewritten atomically after every epoch, and one log line.
    The rows live in checkpoints, so that a resumed run continues the file with no epoch missing or repeated.
    Reports the best held-out accuracy and its epoch, named after the split (`val/acc_best`).

    In your own Lightning project: the training columns are what the module logs for the epoch under a name that
    begins with `train` (`train/loss`, `train_acc`), the held-out ones what validation logs under names beginning
    with `val` or `test`; `output_dir` is where history.csv goes (None: the trainer's default_root_dir)."""

    writes_history = True  # the run's history.csv is this callback's: a RunRecorder beside it leaves the file alone

    def __init__(self, output_dir: str | Path | None = None) -> None:
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.rows: list[dict[str, float]] = []
        self.heldout: dict[str, float] = {}
        self.lr = math.nan
        self.started = time.perf_counter()
        self.total_epochs = 0
        self.complete = False

    def use_clock(self, clock: Clock) -> None:
        super().use_clock(clock)
        self.total_epochs = math.ceil(clock.total_epochs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.complete = batch_idx + 1 >= trainer.num_training_batches  # the module's epoch metrics are logged then

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING:  # now: Lightning keeps old values when an epoch is not validated
            self.heldout = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(HELDOUT)}
        else:
            self.score_cut_short_epoch(trainer, pl_module, "val")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """An epoch cut short (max_steps): the module logs its training loss and accuracy after this callback saw
        the epoch end; they complete its row now."""
        if self.rows and self.rows[-1]["step"] == trainer.global_step and "train/loss" not in self.rows[-1]:
            metrics = trainer.callback_metrics
            self.rows[-1] |= training_metrics(metrics)
            if trainer.is_global_zero:
                self.write(RunFiles(self.output_folder(trainer)).history)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.score_cut_short_epoch(trainer, pl_module, "test")

    def score_cut_short_epoch(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        """Training that stops within an epoch (max_steps) is not evaluated there, but the final evaluation scores
        the same network: its scores complete that epoch's row, so the curve and the best held-out accuracy
        include the network the run ends with."""
        if not self.rows or getattr(pl_module, "heldout", None) != split:
            return
        last = self.rows[-1]
        if last["step"] != trainer.global_step or f"{split}/acc" in last:
            return
        datamodule = getattr(trainer, "datamodule", None)  # Lightning's, set by fit/test
        if split == "test" and not getattr(datamodule, "test_every_epoch", True):
            return
        keys = (f"{split}/loss", f"{split}/acc")
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k in keys}
        last |= scores
        if trainer.is_global_zero:
            self.write(RunFiles(self.output_folder(trainer)).history)
            log.info("%s (its scores: the final evaluation's)", describe(last, self.total_epochs))
        for logger in trainer.loggers:  # the curve's point for the epoch, as validation would have logged it
            logger.log_metrics({**scores, "epoch": float(last["epoch"])}, step=trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step, "lr": self.lr}
        if self.complete:  # an epoch cut short (max_steps) has no epoch metrics yet: blank, not the last epoch's
            row |= training_metrics(metrics)
        row |= self.heldout
        row["seconds"] = round(time.perf_counter() - self.started, 3)
        self.rows.append(row)
        self.heldout, self.complete = {}, False
        if trainer.is_global_zero:
            self.write(RunFiles(self.output_folder(trainer)).history)
            log.info("%s", describe(row, self.total_epochs))

    def write(self, path: Path) -> Path:
        present = {k for row in self.rows for k in row}
        others = sorted(present - set(COLUMNS))  # a module of your own logs under its own names
        columns = [c for c in COLUMNS[:-1] if c in present] + others + [c for c in COLUMNS[-1:] if c in present]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        return save_text(buffer.getvalue(), path)

    def best(self) -> tuple[str, float, int] | None:
        """(split, best held-out accuracy, its epoch): the first epoch to reach the best, if any."""
        for split in HELDOUT:
            scored = [(row[f"{split}/acc"], int(row["epoch"])) for row in self.rows if f"{split}/acc" in row]
            if scored:
                acc, epoch = max(scored, key=lambda s: (s[0], -s[1]))
                return split, acc, epoch
        return None

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any = None) -> dict[str, Any]:
        if (best := self.best()) is None:
            return {}
        split, acc, epoch = best
        return {f"{split}/acc_best": acc, f"{split}/acc_best_epoch": epoch}

    def declare(self, evaluation: Evaluation) -> list[Metric]:
        split = evaluation.every_epoch
        if split is None:  # no evaluation after each epoch: no best epoch to report
            return []
        title = "test" if split == "test" else "validation"
        return [
            accuracy(f"{split}/acc_best", f"best {title} accuracy in an epoch", column=True),
            count(f"{split}/acc_best_epoch", f"epoch of the best {title} accuracy"),
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])


def training_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The epoch's training metrics among what the module logged: anneal's train/loss and train/acc, and whatever a
    module of your own logs under a name beginning with `train` (its per-step values, `..._step`, excluded)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if k.startswith("train") and not k.endswith("_step") and getattr(v, "numel", lambda: 1)() == 1
    }


def describe(row: dict[str, float], total_epochs: int) -> str:
    """One line for a log file: epoch, lr, losses, accuracies, seconds."""
    parts = [f"epoch {int(row['epoch'])}/{total_epochs}", f"lr {row['lr']:.4g}"]
    for split in ("train", *HELDOUT):
        if f"{split}/loss" in row:
            parts.append(f"{split} loss {row[f'{split}/loss']:.4f} acc {row.get(f'{split}/acc', math.nan):.4f}")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)
