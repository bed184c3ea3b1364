"""What a callback may do in a run beyond Lightning's hooks (change the lr plan, read it, declare and report
results), and how it finds what it needs in any Lightning Trainer: the run's lr plan, its clock, its output folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from anneal.errors import ConfigError
from anneal.record import Evaluation, Metric
from anneal.schedules import Clock, LrPlan, LrSwitch, ScheduleLR


class RunCallback(L.Callback):
    """A Lightning callback that takes part in a run. It works in any Lightning Trainer: when fitting starts
    (`on_fit_start`, once Lightning has created the optimizers) it finds the run's lr plan in the module's anneal
    scheduler (a `ScheduleLR` among `trainer.lr_scheduler_configs`) and calls `use_plan`; without one it calls
    `use_clock` with the trainer's own count of optimizer steps, and what needs the plan refuses there, before the
    first training step. A plan handed over before fitting (`use_plan`: anneal's own run builds its plan before
    the trainer starts) is kept. Settings errors raised here name the setting."""

    plan: LrPlan | None = None
    clock: Clock | None = None
    found_plan = False  # the plan (or clock) was found in a trainer, not handed over: a later fit finds its own
    output_dir: Path | None = None  # where the callback writes its files; None: the trainer's default_root_dir

    def lr_switch(self) -> LrSwitch | None:
        """A switch of the lr from some point of training on (SWA's swa_lr), composed into the plan."""
        return None

    def use_plan(self, plan: LrPlan) -> None:
        """The run's lr plan, before training: keep what you read from it; check your settings against it."""
        self.plan = plan
        self.use_clock(plan.clock)

    def use_clock(self, clock: Clock) -> None:
        """The run's clock (optimizer steps per epoch and in all); without `use_plan` before it, the lr is not an
        anneal plan: refuse here what needs one (`refuse_without_plan`)."""
        self.clock = clock

    def marks(self) -> list[tuple[float, str]]:
        """Times (epochs) this callback acts at, drawn on the lr plan's picture: (epoch, what happens)."""
        return []

    def past_differs(self, old: LrPlan, new: LrPlan, step: int) -> str | None:
        """A resume that changes the run's length from `old` to `new` at `step`: what this callback did in the
        steps already taken that it would have done differently under `new` (None: nothing)."""
        return None

    def declare(self, evaluation: Evaluation) -> list[Metric]:
        """The declaration of every number `results` will put in results.json: its key, which direction is better
        and whether it is the number the run stands for. Readers (the report, a sweeper's optimized_metric)
        know a metric only from this."""
        return []

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any = None) -> dict[str, Any]:
        """After training and testing: what goes into results.json (evaluated on rank 0, or on every rank).
        `datamodule`: where to evaluate (None: the trainer's data module or dataloaders)."""
        return {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.find_plan(trainer)

    def find_plan(self, trainer: L.Trainer) -> None:
        """The plan of the trainer's anneal scheduler (every callback's lr switch composed into it), or the
        trainer's clock; a plan handed over before fitting is kept."""
        if self.plan is not None and not self.found_plan:
            return
        plan = scheduled_plan(trainer)
        if plan is None:
            self.plan = None
            self.use_clock(trainer_clock(trainer, type(self).__name__))
        elif plan is not self.plan:
            check_clock(plan, trainer)
            self.use_plan(plan)
            plan.marks += self.marks()
        self.found_plan = True

    def refuse_without_plan(self, what: str) -> None:
        """Stop before training when there is no anneal lr plan to read `what` from."""
        if self.plan is None:
            raise ConfigError(
                "",
                text=f"{type(self).__name__} needs {what}, which only an anneal lr scheduler knows: return an "
                f"anneal.schedules.ScheduleLR (interval 'step') from the module's configure_optimizers",
            )

    def output_folder(self, trainer: L.Trainer) -> Path:
        """Where this callback writes: its `output_dir`, else the trainer's default_root_dir (a run's directory in
        anneal's runs; in your own project, give each run its own)."""
        return Path(self.output_dir if self.output_dir is not None else trainer.default_root_dir)


def scheduled_plan(trainer: L.Trainer) -> LrPlan | None:
    """The lr plan of the trainer's anneal scheduler, with every callback's lr switch composed into it; None
    when the module's lr is driven otherwise."""
    found = [c.scheduler for c in trainer.lr_scheduler_configs if isinstance(c.scheduler, ScheduleLR)]
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError("", text="anneal's callbacks follow one lr plan, and the module has several ScheduleLR")
    scheduler = found[0]
    if compose_switches(scheduler.plan, trainer.callbacks):  # type: ignore[attr-defined]  # set in Trainer.__init__
        scheduler.retake()  # the lr of the first step, already set by the scheduler, from the switched plan
    return scheduler.plan


def compose_switches(plan: LrPlan, callbacks: Iterable[L.Callback]) -> bool:
    """Compose the callbacks' lr switches (SWA's swa_lr) into the plan, each once; whether the plan changed."""
    switches = [s for c in callbacks if isinstance(c, RunCallback) and (s := c.lr_switch()) is not None]
    if len(set(switches)) > 1:
        raise ConfigError("", text=f"two callbacks switch the lr ({', '.join(map(str, switches))}): keep one")
    return any(plan.add_switch(switch) for switch in switches)


def trainer_clock(trainer: L.Trainer, who: str) -> Clock:
    """The clock Lightning counts (optimizer steps per epoch and in all), for a run without an anneal plan."""
    if trainer.train_dataloader is None:  # (Lightning loads it when the fit loop starts: now, to count its batches)
        trainer.fit_loop.setup_data()
    total = trainer.estimated_stepping_batches
    batches = trainer.num_training_batches
    if not (math.isfinite(total) and math.isfinite(batches)):
        raise ConfigError(
            "",
            text=f"{who} needs the length of training in optimizer steps: set the Trainer's max_epochs or max_steps "
            f"and use a training dataloader with a length",
        )
    return Clock(max(1, math.ceil(batches / trainer.accumulate_grad_batches)), int(total))


def check_clock(plan: LrPlan, trainer: L.Trainer) -> None:
    """A plan found in a trainer must count the steps Lightning will take: else its cycle ends, its cooldown and the
    times given as a share of training would fall elsewhere than the callbacks read them."""
    if trainer.fast_dev_run:  # type: ignore[attr-defined]  # a smoke test takes a step or so of the planned run
        return
    counted = trainer_clock(trainer, "the lr plan")
    if counted != plan.clock:
        raise ConfigError(
            "",
            text=f"the module's anneal lr scheduler plans {plan.clock.steps_per_epoch} optimizer steps per epoch and "
            f"{plan.clock.total_steps} in all, the Trainer takes {counted.steps_per_epoch} and {counted.total_steps}: "
            f"build it with the trainer's count (trainer.estimated_stepping_batches)",
        )


def network_of(module: Any) -> Any:
    """The network a callback averages, saves and evaluates: the module's `network` attribute when it has one
    (anneal's Classifier), else the LightningModule itself (its forward returns the class scores)."""
    network = getattr(module, "network", None)
    return network if isinstance(network, nn.Module) else module
