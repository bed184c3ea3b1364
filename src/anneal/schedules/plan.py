"""A run's lr plan, built once before training from its recipe (schedule, warmup, SWA switch), the peak lr and
the clock; the module drives the optimizer with it at every step (`ScheduleLR`), and every callback that needs
it (cycle ends for snapshots and per-cycle SWA, the lr picture) is handed the same value."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from anneal.errors import ConfigError, require, within
from anneal.schedules.clock import Clock
from anneal.schedules.compose import LrSwitch, NoWarmup, Switched, Warmup
from anneal.schedules.curves import Schedule

ScheduleFactory = Callable[..., Schedule]  # takes peak, total (epochs) and clock: Hydra's `_partial_` of a schedule


@dataclass(frozen=True)
class LrRecipe:
    """What decides a run's lr before its clock is known: the schedule, the warmup before it, and an optional
    switch to a constant lr (SWA's swa_lr)."""

    schedule: ScheduleFactory
    warmup: Warmup = field(default_factory=NoWarmup)
    switch: LrSwitch | None = None

    def build(self, peak: float, clock: Clock) -> LrPlan:
        """The plan of a run with this peak lr on this clock; setting errors name the part they come from."""
        require(peak > 0, "peak", peak, "the peak learning rate must be > 0")
        total = clock.total_epochs
        with within("warmup"):
            warm = self.warmup.duration(clock)
        if warm >= total:
            text = f"{{key}} of {warm:g} epochs is invalid: it must be shorter than training ({total:g} epochs)"
            raise ConfigError("warmup", warm, text=text)
        with within("schedule"):
            schedule = self.schedule(peak=peak, total=total - warm, clock=clock)
        with within("warmup"):
            schedule = self.warmup.wrap(schedule, warm)
        if self.switch is not None:
            schedule = self.switch.apply(schedule, clock)
        return LrPlan(clock, peak, schedule, self)


class LrPlan:
    """A run's learning rate: at optimizer step s, `lr(s) = schedule(clock.epochs(s))`. A schedule that adapts
    to a held-out metric learns from `observe`; the cycle ends then follow what it has learnt."""

    def __init__(self, clock: Clock, peak: float, schedule: Schedule, recipe: LrRecipe | None = None):
        self.clock, self.peak, self.schedule, self.recipe = clock, peak, schedule, recipe
        self._cycle_end_steps: frozenset[int] | None = None
        self.marks: list[tuple[float, str]] = []  # what else happens on the plan's time axis (epoch, what)

    def for_clock(self, clock: Clock) -> LrPlan:
        """The same recipe for a run of another length (what a resume that changes the length compares with)."""
        if self.recipe is None:
            raise ValueError("a plan built without its recipe cannot be built again")
        return self.recipe.build(self.peak, clock)

    def lr(self, step: int) -> float:
        """The lr of optimizer step `step` (0 is the first)."""
        return self.schedule(self.clock.epochs(step))

    def lr_at(self, t: float) -> float:
        """The lr at time `t` of training, in epochs (a float: 2.5 is half-way through the third epoch)."""
        return self.schedule(t)

    def add_switch(self, switch: LrSwitch) -> bool:
        """Compose a switch of the lr (SWA's swa_lr) into this plan, in place, as its recipe would have built it;
        whether the plan changed (False: it has this switch already). A plan has at most one switch."""
        if isinstance(self.schedule, Switched):
            if self.schedule.switch == switch:
                return False
            raise ConfigError(
                "", text=f"the lr plan switches already ({self.schedule.switch}); a second switch {switch}"
            )
        self.schedule = switch.apply(self.schedule, self.clock)
        if self.recipe is not None:  # a resume that changes the length builds the plan again, with the switch
            self.recipe = replace(self.recipe, switch=switch)
        self._cycle_end_steps = None
        return True

    @property
    def monitor(self) -> str | None:
        """The held-out metric the schedule adapts to, if any."""
        return self.schedule.monitor

    def cycle_ends(self) -> list[float]:
        """When the schedule's cycles end (its restarts: where snapshots are taken), in epochs of the run."""
        return self.schedule.cycle_ends()

    def cycle_end_steps(self) -> frozenset[int]:
        """Optimizer steps after which a cycle has ended (the step count at the restart); cached, as the
        snapshot and SWA callbacks ask after every step."""
        if self._cycle_end_steps is None:
            self._cycle_end_steps = frozenset(self.clock.step_at(t) for t in self.cycle_ends())
        return self._cycle_end_steps

    def cooldown_start(self) -> float | None:
        """When the schedule's final cooldown begins, in epochs of the run (warmup-stable-decay), else None. The lr
        before it depends only on the peak and the warmup, not on the run's length: a run of another length whose
        cooldown starts later follows the same lr up to here."""
        return self.schedule.cooldown_start()

    def has_cycles(self) -> bool:
        """Whether snapshots and per-cycle averages can be taken: cycle ends within training, or an adaptive
        schedule whose cycles begin once the metric triggers them."""
        return bool(self.cycle_ends()) or self.schedule.cycles_follow_metric

    def observe(self, step: int, value: float) -> None:
        """The monitored metric, measured after `step` optimizer steps."""
        self.schedule.observe(self.clock.epochs(step), value)
        self._cycle_end_steps = None

    def describe(self) -> str:
        """The composed schedule in one line (`LinearWarmup(...) -> SGDR(T_0=10, ...)`), as run records name it."""
        return self.schedule.describe()

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state)
        self._cycle_end_steps = None


class ScheduleLR(LambdaLR):
    """Drives the optimizer with the plan at every step: LambdaLR scales each param group's initial lr (the
    peak) by lr(step) / peak. Step it after every optimizer step (Lightning: `"interval": "step"`); `plan` is
    the lr plan it follows. `anneal.lr_scheduler` builds one from a schedule's name."""

    def __init__(self, optimizer: Optimizer, plan: LrPlan):
        self.plan = plan

        def factor(step: int) -> float:
            return plan.lr(step) / plan.peak

        super().__init__(optimizer, factor)

    def observe(self, value: float) -> None:
        """Feed the monitored metric, measured now, to the plan, and apply what it changes to the lr of the
        coming step (already set when the last step ended) by taking that step's lr again."""
        self.plan.observe(self.last_epoch, value)
        self.apply_current_lr()

    def retake(self) -> None:
        """Set the lr of the coming step again, from the plan as it is now (changed since the lr was set)."""
        self.last_epoch -= 1
        with warnings.catch_warnings():  # (torch's check for a scheduler stepped before its optimizer: not that)
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.step()

    def state_dict(self) -> dict[str, Any]:
        # LambdaLR saves every attribute; keep checkpoints to plain values (they load with weights_only=True)
        state = {k: v for k, v in super().state_dict().items() if k != "plan"}
        return {**state, "schedule": self.plan.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.plan.load_state_dict(state_dict.pop("schedule", {}))
        super().load_state_dict(state_dict)
        self.apply_current_lr()

    def apply_current_lr(self) -> None:
        """Set the optimizer's lr to the plan's lr of the coming step by taking that step again. After a load the
        optimizer's restored state holds the lr that the run which saved it set at the end of its last step, from
        its own plan: a resume whose plan differs from there on (a cooldown branched inside an epoch, any
        `resume_changes=[trainer.max_epochs]`) would otherwise train its first step at the old plan's lr."""
        self.last_epoch -= 1
        with warnings.catch_warnings():  # (torch's advice on the order of optimizer and scheduler steps: no step here)
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.step()
