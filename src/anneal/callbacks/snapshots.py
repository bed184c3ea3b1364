"""Snapshot ensembles: the network's weights at every cycle end of the lr schedule."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from anneal.ensemble import evaluate_snapshots
from anneal.errors import ConfigError, require
from anneal.module import lr_scheduler
from anneal.schedules import has_cycles
from anneal.storage import save_tensors

log = logging.getLogger(__name__)


class SnapshotEnsemble(L.Callback):
    """Saves the weights after the last step of every cycle the schedule reports (its low-lr points;
    irregular for T_mult > 1), each to its own file in `<run dir>/snapshots/`, written atomically.
    After training, `evaluate` scores each snapshot and the ensembles of the newest i on the test set.

    include_final: also keep the last weights when training stops mid-cycle.
    max_members: the ensemble uses the newest max_members snapshots (all files are kept)."""

    def __init__(self, include_final: bool = False, max_members: int | None = None):
        require(max_members is None or (isinstance(max_members, int) and max_members >= 1),
                "ensemble.max_members", max_members, "must be null or an integer >= 1")
        self.include_final, self.max_members = include_final, max_members
        self.snapshots: list[dict] = []  # {"epoch", "step", "file"}, file relative to the run directory

    def check(self, schedule, clock) -> None:
        if not has_cycles(schedule):
            raise ConfigError("ensemble=snapshot needs a schedule with cycles, and this one has no cycle end "
                              "within training: use schedule=sgdr, snapshot, cyclic or adaptive_sgdr, with cycles "
                              "shorter than trainer.max_epochs")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in lr_scheduler(trainer).cycle_end_steps():
            self._take(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        if self.include_final:
            self._take(trainer, pl_module)

    def _take(self, trainer: L.Trainer, pl_module) -> None:
        step = trainer.global_step
        if any(s["step"] == step for s in self.snapshots):
            return
        epoch = lr_scheduler(trainer).clock.epochs(step)
        file = f"snapshots/snapshot_{len(self.snapshots) + 1:02d}_epoch{epoch:g}.pt"
        if trainer.is_global_zero:
            save_tensors(pl_module.plain_network.state_dict(), Path(trainer.default_root_dir) / file)
        self.snapshots.append({"epoch": epoch, "step": step, "file": file})
        log.info("snapshot %d saved at epoch %g (step %d): %s", len(self.snapshots), epoch, step, file)

    def state_dict(self) -> dict:
        return {"snapshots": self.snapshots}

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = list(state["snapshots"])

    def evaluate(self, trainer: L.Trainer, module, datamodule) -> dict:
        if not trainer.is_global_zero or not self.snapshots:
            if not self.snapshots:
                log.warning("ensemble=snapshot: no cycle ended during training, so there is nothing to ensemble")
            return {}
        run_dir = Path(trainer.default_root_dir)
        rows, results = evaluate_snapshots(copy.deepcopy(module.plain_network), self.snapshots, self.max_members,
                                           run_dir, datamodule.batches("test"), module.device)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("ensemble/table", columns=list(rows[0]), data=[list(r.values()) for r in rows])
                logger.log_image("ensemble/plot", images=[str(run_dir / "ensemble.png")])
        return results

    def result_metrics(self, has_val: bool) -> list[str]:
        return ["ensemble/test/acc", "snapshots/test/acc_mean"]
