"""Snapshot ensembles: the network's weights at every cycle end of the lr schedule."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from anneal.callbacks.base import RunCallback
from anneal.errors import ConfigError, require
from anneal.evaluation import evaluate_snapshots
from anneal.schedules import LrPlan
from anneal.storage import copy_file, save_tensors

log = logging.getLogger(__name__)


class SnapshotEnsemble(RunCallback):
    """Saves the weights after the last step of every cycle the schedule reports (its low-lr points;
    irregular for T_mult > 1), each to its own file in `<run dir>/snapshots/`, written atomically.
    After training, `results` scores each snapshot and the ensembles of the newest i on the test set.

    include_final: also keep the last weights when training stops mid-cycle.
    max_members: the ensemble uses the newest max_members snapshots (all files are kept)."""

    def __init__(self, include_final: bool = False, max_members: int | None = None):
        require(
            max_members is None or (isinstance(max_members, int) and max_members >= 1),
            "max_members",
            max_members,
            "must be null or an integer >= 1",
        )
        self.include_final, self.max_members = include_final, max_members
        self.snapshots: list[dict[str, Any]] = []  # {"epoch", "step", "file"}, file relative to the run directory
        self.run_dir: Path | None = None  # where the files are: a resumed run may have started elsewhere

    def use_plan(self, plan: LrPlan) -> None:
        if not plan.has_cycles():
            raise ConfigError(
                "",
                "snapshot",
                text=(
                    "{key}=snapshot needs a schedule with cycles, and this one has no cycle end within training: use "
                    "SGDR, snapshot cycles, a cyclic or an adaptive SGDR schedule, with cycles shorter than training"
                ),
            )
        self.plan = plan

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        here = Path(trainer.default_root_dir).resolve()
        if self.run_dir is not None and self.run_dir != here and trainer.is_global_zero:
            self.snapshots = adopt(self.snapshots, self.run_dir, here)
        self.run_dir = here

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step in self.plan.cycle_end_steps():
            self._take(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        # the last epoch's end, before its checkpoint is written: a resume from that checkpoint skips on_train_end
        if self.include_final and trainer.global_step >= self.plan.clock.total_steps:
            self._take(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.include_final:  # training that stopped before its planned end
            self._take(trainer, pl_module)

    def _take(self, trainer: L.Trainer, pl_module: Any) -> None:
        step = trainer.global_step
        if any(s["step"] == step for s in self.snapshots):
            return
        epoch = self.plan.clock.epochs(step)
        file = f"snapshots/snapshot_{len(self.snapshots) + 1:02d}_epoch{epoch:g}.pt"
        if trainer.is_global_zero:  # one file, written and reported once (DDP's other ranks keep the list only)
            save_tensors(pl_module.network.state_dict(), Path(trainer.default_root_dir) / file)
            log.info("snapshot %d saved at epoch %g (step %d): %s", len(self.snapshots) + 1, epoch, step, file)
        self.snapshots.append({"epoch": epoch, "step": step, "file": file})

    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": self.snapshots, "run_dir": None if self.run_dir is None else str(self.run_dir)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snapshots = list(state["snapshots"])
        self.run_dir = Path(state["run_dir"]) if state.get("run_dir") else None

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any) -> dict[str, Any]:
        if not trainer.is_global_zero or not self.snapshots:
            if not self.snapshots:
                log.warning("ensemble=snapshot: no cycle ended during training, so there is nothing to ensemble")
            return {}
        run_dir = Path(trainer.default_root_dir)
        rows, results = evaluate_snapshots(
            copy.deepcopy(module.network),
            self.snapshots,
            self.max_members,
            run_dir,
            datamodule.batches("test"),
            module.device,
        )
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("ensemble/table", columns=list(rows[0]), data=[list(r.values()) for r in rows])
                logger.log_image("ensemble/plot", images=[str(run_dir / "ensemble.png")])
        return results

    def result_metrics(self, has_val: bool) -> list[str]:
        return ["ensemble/test/acc", "snapshots/test/acc_mean"]


def adopt(snapshots: list[dict[str, Any]], source: Path, target: Path) -> list[dict[str, Any]]:
    """A run resumed in another directory (ckpt_path=<file>): copy its snapshots here; one that is gone is
    dropped from the ensemble with a warning."""
    kept = []
    for snapshot in snapshots:
        there, here = source / snapshot["file"], target / snapshot["file"]
        if not here.exists():
            if not there.is_file():
                log.warning(
                    "snapshot %s of the resumed run is in neither %s nor %s: the ensemble goes without it",
                    snapshot["file"],
                    source,
                    target,
                )
                continue
            copy_file(there, here)
        kept.append(snapshot)
    return kept
