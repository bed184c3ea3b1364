"""Snapshot ensembles: the network's weights at every cycle end of the lr schedule."""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from anneal.callbacks.base import RunCallback, network_of
from anneal.callbacks.data_access import heldout_batches
from anneal.errors import ConfigError, require
from anneal.evaluation import evaluate_snapshots
from anneal.record import Evaluation, Metric, RunFiles, accuracy, count
from anneal.schedules import Clock, LrPlan
from anneal.storage import copy_file, save_tensors

log = logging.getLogger(__name__)


class SnapshotEnsemble(RunCallback):
    """Saves the weights after the last step of every cycle the schedule reports (its low-lr points;
    irregular for T_mult > 1), each to its own file in `<run dir>/snapshots/`, written atomically.
    After training, `results` scores each snapshot and the ensembles of the newest i on the test set.

    include_final: also keep the last weights when training stops mid-cycle.
    max_members: the ensemble uses the newest max_members snapshots (all files are kept).
    output_dir: where `snapshots/` and the ensemble table go (None: the trainer's default_root_dir).

    The cycle ends are the lr plan's: in your own Lightning project, the module's lr scheduler must be anneal's
    (`ScheduleLR`), else the callback refuses when fitting starts. A snapshot holds the weights of the module's
    `network` attribute, or of the LightningModule itself when it has none."""

    def __init__(
        self, include_final: bool = False, max_members: int | None = None, output_dir: str | Path | None = None
    ):
        require(
            max_members is None or (isinstance(max_members, int) and max_members >= 1),
            "max_members",
            max_members,
            "must be null or an integer >= 1",
        )
        self.include_final, self.max_members = include_final, max_members
        self.snapshots: list[dict[str, Any]] = []  # {"epoch", "step", "file"}, file relative to the run directory
        self.run_dir: Path | None = None  # where the files are: a resumed run may have started elsewhere
        self.output_dir = None if output_dir is None else Path(output_dir)

    def use_clock(self, clock: Clock) -> None:
        super().use_clock(clock)
        self.refuse_without_plan("the schedule's cycle ends to take its snapshots at")

    def use_plan(self, plan: LrPlan) -> None:
        super().use_plan(plan)
        if not plan.has_cycles():
            raise ConfigError(
                "",
                "snapshot",
                text=(
                    "{key}=snapshot needs a schedule with cycles, and this one has no cycle end within training: use "
                    "SGDR, snapshot cycles, a cyclic or an adaptive SGDR schedule, with cycles shorter than training"
                ),
            )
        if plan.schedule.cycles_follow_metric:  # its cycles begin once a metric triggers them: known only then
            return
        ends = [e for e in plan.cycle_end_steps() if 1 <= e <= plan.clock.total_steps]
        final = self.include_final and plan.clock.total_steps not in ends
        if len(ends) + final < 2:
            at = ", ".join(f"{plan.clock.epochs(e):g}" for e in sorted(ends))
            raise ConfigError(
                "",
                "snapshot",
                text=(
                    f"{{key}}=snapshot would ensemble {len(ends) + final} snapshot: the schedule's cycles end at epoch "
                    f"{at} of {plan.clock.total_epochs:g}. An ensemble needs 2 or more: train longer, shorten the "
                    f"cycles, or add the last weights (ensemble.include_final=true)"
                ),
            )

    def marks(self) -> list[tuple[float, str]]:
        assert self.plan is not None
        return [(self.plan.clock.epochs(e), "snapshot") for e in sorted(self.plan.cycle_end_steps())]

    def past_differs(self, old: LrPlan, new: LrPlan, step: int) -> str | None:
        was, now = ({s for s in plan.cycle_end_steps() if s <= step} for plan in (old, new))
        return None if was == now else f"the snapshots up to step {step} would be taken at steps {sorted(now)}"

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        super().on_fit_start(trainer, pl_module)
        here = self.output_folder(trainer).resolve()
        if self.run_dir is not None and self.run_dir != here and trainer.is_global_zero:
            self.snapshots = adopt(self.snapshots, self.run_dir, here)
        self.run_dir = here

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        assert self.plan is not None
        if trainer.global_step in self.plan.cycle_end_steps():
            self._take(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        # the last epoch's end, before its checkpoint is written: a resume from that checkpoint skips on_train_end
        if self.include_final and self.clock is not None and trainer.global_step >= self.clock.total_steps:
            self._take(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.include_final:  # training that stopped before its planned end
            self._take(trainer, pl_module)

    def _take(self, trainer: L.Trainer, pl_module: Any) -> None:
        step = trainer.global_step
        if any(s["step"] == step for s in self.snapshots):
            return
        assert self.clock is not None
        epoch = self.clock.epochs(step)
        files = RunFiles(self.output_folder(trainer))
        file = files.relative(files.snapshot(len(self.snapshots) + 1, epoch))
        evaluated = getattr(pl_module, "evaluated", None)  # anneal's Classifier: a schedule-free optimizer's average
        with evaluated() if evaluated is not None else nullcontext(network_of(pl_module)) as network:
            if trainer.is_global_zero:  # one file, written and reported once (DDP's other ranks keep the list only)
                save_tensors(network.state_dict(), files.directory / file)
                log.info("snapshot %d saved at epoch %g (step %d): %s", len(self.snapshots) + 1, epoch, step, file)
        self.snapshots.append({"epoch": epoch, "step": step, "file": file})

    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": self.snapshots, "run_dir": None if self.run_dir is None else str(self.run_dir)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.snapshots = list(state["snapshots"])
        self.run_dir = Path(state["run_dir"]) if state.get("run_dir") else None

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any = None) -> dict[str, Any]:
        """Each snapshot and the ensembles of the newest i on the test data (anneal's test split, or the data
        module's test_dataloader, or the trainer's test dataloader): the table in ensemble.csv/.md/.png."""
        if not trainer.is_global_zero or not self.snapshots:
            if not self.snapshots:
                log.warning("ensemble=snapshot: no cycle ended during training, so there is nothing to ensemble")
            return {}
        test = heldout_batches(trainer, datamodule).get("test")
        if test is None:
            raise ConfigError(
                "",
                text="SnapshotEnsemble scores its ensemble on test data: give the data module a "
                "test_dataloader (or run trainer.test first)",
            )
        run_dir = self.output_folder(trainer)
        rows, results = evaluate_snapshots(
            copy.deepcopy(network_of(module)), self.snapshots, self.max_members, run_dir, test, module.device
        )
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                step = trainer.global_step
                data = [list(r.values()) for r in rows]
                logger.log_table("ensemble/table", columns=list(rows[0]), data=data, step=step)
                logger.log_image("ensemble/plot", images=[str(RunFiles(run_dir).ensemble("png"))], step=step)
        return results

    def declare(self, evaluation: Evaluation) -> list[Metric]:
        return [
            # the ensemble is what a snapshot run is for: its accuracy is the run's headline
            accuracy("ensemble/test/acc", "snapshot ensemble test accuracy", headline=3),
            accuracy("snapshots/test/acc_mean", "single snapshots' mean test accuracy"),
            count("snapshots/test/acc_std", "single snapshots' test accuracy std"),
        ]


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
