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

from anneal.callbacks.base import RunCallback
from anneal.schedules import LrPlan
from anneal.storage import save_text

log = logging.getLogger(__name__)
COLUMNS = ["epoch", "step", "lr", "train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "seconds"]
HELDOUT = ("val", "test")


class History(RunCallback):
    """One row per epoch (epoch, step, the lr of its last step, training loss and accuracy, the held-out
    metrics, seconds) in `<run dir>/history.csv`, rewritten atomically after every epoch, and one log line.
    The rows live in checkpoints, so that a resumed run continues the file with no epoch missing or repeated.
    Reports the best held-out accuracy and its epoch, named after the split (`val/acc_best`)."""

    def __init__(self, filename: str = "history.csv"):
        self.filename = filename
        self.rows: list[dict[str, float]] = []
        self.heldout: dict[str, float] = {}
        self.lr = math.nan
        self.started = time.perf_counter()
        self.total_epochs = 0
        self.complete = False

    def use_plan(self, plan: LrPlan) -> None:
        self.total_epochs = math.ceil(plan.clock.total_epochs)

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
        if not trainer.sanity_checking:  # taken now: Lightning keeps old values when an epoch is not validated
            self.heldout = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(HELDOUT)}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step, "lr": self.lr}
        if self.complete:  # an epoch cut short (max_steps) has no epoch metrics yet: blank, not the last epoch's
            row |= {k: float(metrics[k]) for k in ("train/loss", "train/acc") if k in metrics}
        row |= self.heldout
        row["seconds"] = round(time.perf_counter() - self.started, 3)
        self.rows.append(row)
        self.heldout, self.complete = {}, False
        if trainer.is_global_zero:
            self.write(Path(trainer.default_root_dir) / self.filename)
            log.info("%s", describe(row, self.total_epochs))

    def write(self, path: Path) -> Path:
        present = {k for row in self.rows for k in row}
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[c for c in COLUMNS if c in present], extrasaction="ignore")
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

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any) -> dict[str, Any]:
        if (best := self.best()) is None:
            return {}
        split, acc, epoch = best
        return {f"{split}/acc_best": acc, f"{split}/acc_best_epoch": epoch}

    def result_metrics(self, has_val: bool) -> list[str]:
        return ["val/acc_best"] if has_val else ["test/acc_best"]

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])


def describe(row: dict[str, float], total_epochs: int) -> str:
    """One line for a log file: epoch, lr, losses, accuracies, seconds."""
    parts = [f"epoch {int(row['epoch'])}/{total_epochs}", f"lr {row['lr']:.4g}"]
    for split in ("train", *HELDOUT):
        if f"{split}/loss" in row:
            parts.append(f"{split} loss {row[f'{split}/loss']:.4f} acc {row.get(f'{split}/acc', math.nan):.4f}")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)
