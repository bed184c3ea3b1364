"""Cooldowns branched from one run (the point of warmup-stable-decay; Hägele et al. 2024): while a run holds its
peak lr, it saves its state where each shorter training budget's cooldown would begin. A budget's cooldown is
then that checkpoint resumed with the budget's length (`python -m anneal.branch RUN_DIR`): the same lr up to there,
so the branch computes exactly the run of that budget started from scratch, without training its stable phase
again."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L

from anneal.callbacks.base import RunCallback
from anneal.callbacks.checkpoints import MidEpoch
from anneal.errors import ConfigError, require
from anneal.record import RunFiles
from anneal.schedules import Clock, LrPlan

log = logging.getLogger(__name__)


def branch_step(plan: LrPlan, budget: int) -> int:
    """The optimizer step at which the cooldown of a run of `budget` epochs on this plan's recipe begins, checked:
    up to it, that run's lr is this run's."""
    try:
        shorter = plan.for_clock(Clock.of_length(plan.clock.steps_per_epoch, max_epochs=budget))
    except ConfigError as error:  # a setting of the run, e.g. its warmup, that a run of this budget cannot have
        raise ConfigError(
            "budgets",
            budget,
            text=f"{{key}}={budget} is invalid: a run of {budget} epochs with this run's settings cannot be: {error}",
        ) from None
    start = shorter.cooldown_start()
    if start is None:
        raise ConfigError(
            "budgets",
            budget,
            text="{key} needs a schedule with a final cooldown whose start does not depend on the run's length "
            "(schedule=wsd)",
        )
    step = shorter.clock.step_at(start)
    for s in range(step):
        if abs(shorter.lr(s) - plan.lr(s)) > 1e-12 * max(plan.peak, 1.0):
            raise ConfigError(
                "budgets",
                budget,
                text=f"{{key}}: a run of {budget} epochs would train step {s} at lr {shorter.lr(s):.6g}, this run at "
                f"{plan.lr(s):.6g}: its cooldown cannot branch from this run (give the cooldown in epochs or as a "
                f"share of the run, after a warmup of fixed length)",
            )
    return step


class BranchPoints(MidEpoch, RunCallback):
    """Saves `branches/budget_<B>.ckpt` (a full checkpoint) at the step where the cooldown of a run of B epochs
    begins, for each of `budgets` (epochs, shorter than this run). A branch point at an epoch's last step is saved
    once that epoch has ended (its validation included), as last.ckpt is. The points are read from the lr plan:
    the module's lr scheduler must be anneal's (`ScheduleLR`), else the callback refuses when fitting starts.
    output_dir: where `branches/` goes (None: the trainer's default_root_dir)."""

    def __init__(self, budgets: Sequence[int] = (), output_dir: str | Path | None = None):
        require(
            isinstance(budgets, Sequence)
            and not isinstance(budgets, str)
            and len(budgets) > 0
            and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in budgets),
            "budgets",
            list(budgets) if isinstance(budgets, Sequence) and not isinstance(budgets, str) else budgets,
            "a list of training lengths in epochs (integers >= 1), shorter than this run",
        )
        self.budgets = sorted(set(budgets))
        self.steps: dict[int, int] = {}  # budget -> the step its cooldown begins at
        self.saved: list[dict[str, Any]] = []  # {"budget", "step", "file"}, in checkpoints and results.json
        self.output_dir = None if output_dir is None else Path(output_dir)

    def use_clock(self, clock: Clock) -> None:
        super().use_clock(clock)
        self.refuse_without_plan("the schedule's cooldown start to place branch points at")

    def use_plan(self, plan: LrPlan) -> None:
        super().use_plan(plan)
        total = plan.clock.total_epochs
        for budget in self.budgets:
            require(budget < total, "budgets", budget, f"each budget must be shorter than this run ({total:g} epochs)")
            self.steps[budget] = branch_step(plan, budget)

    def marks(self) -> list[tuple[float, str]]:
        assert self.plan is not None
        return [(self.plan.clock.epochs(step), "branch point") for step in self.steps.values()]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.mid_epoch:
            self.save_due(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.save_due(trainer)

    def save_due(self, trainer: L.Trainer) -> None:
        done = {s["budget"] for s in self.saved}
        for budget, step in self.steps.items():
            if step == trainer.global_step and budget not in done:
                files = RunFiles(self.output_folder(trainer))
                path = files.branch_point(budget)
                self.saved.append({"budget": budget, "step": step, "file": files.relative(path)})
                trainer.save_checkpoint(path, weights_only=False)  # (it holds the list above, this point included)
                log.info("branch point for a %d-epoch run saved at step %d: %s", budget, step, path)

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any = None) -> dict[str, Any]:
        return {"branch_points": self.saved}

    def state_dict(self) -> dict[str, Any]:
        return {"saved": self.saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.saved = list(state["saved"])
