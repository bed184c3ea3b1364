"""Learning-rate schedules: pure functions of training time t, measured in epochs (a float).

A schedule is built with its peak lr (always `optimizer.lr`) and its length in epochs. `schedule(t)`
is the lr at time t; `cycle_ends()` lists the times at which its cycles end (the low points where
snapshots are taken and cyclic SWA averages), empty for schedules without cycles. A warmup wraps a
schedule and starts the schedule's clock when it ends. `Clock` is the one place where optimizer
steps and epochs are converted; `ScheduleLR` applies the composed function at every optimizer step.

`interval="epoch"` samples the function at whole epochs (the papers' and blog posts' convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from anneal.errors import ConfigError, require

EPS = 1e-9  # boundaries computed in floating point (5 * 0.1, 2.5 * 3) land within this of the exact value
INTERVALS = ("step", "epoch")


def cosine(start: float, end: float, progress: float) -> float:
    """Half a cosine from `start` (progress 0) to `end` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def fraction_or_epochs(value: float, total: float) -> float:
    """A value below 1 is a fraction of training (0.75 -> 75%), anything else is epochs."""
    return value * total if 0 < value < 1 else float(value)


@dataclass(frozen=True)
class Clock:
    """Converts optimizer steps to training time in epochs and back."""

    steps_per_epoch: int

    def __post_init__(self):
        require(self.steps_per_epoch >= 1, "steps_per_epoch", self.steps_per_epoch, "must be >= 1")

    def epochs(self, step: int) -> float:
        return step / self.steps_per_epoch

    def step_at(self, epochs: float) -> int:
        """The first optimizer step whose time is at or after `epochs`."""
        return math.ceil(epochs * self.steps_per_epoch - EPS)


@dataclass(frozen=True)
class Schedule:
    """Base: subclasses implement `lr(t)` and, if they have cycles, `uncapped_cycle_ends()`."""

    peak: float
    total: float
    interval: str = "step"
    needs_val_acc = False

    def __post_init__(self):
        require(self.peak > 0, "optimizer.lr", self.peak, "the peak learning rate must be > 0")
        require(self.total > 0, "trainer.max_epochs", self.total, "training must last > 0 epochs")
        require(self.interval in INTERVALS, "schedule.interval", self.interval, f"one of {INTERVALS}")

    def __call__(self, t: float) -> float:
        return self.lr(math.floor(t + EPS) if self.interval == "epoch" else t)

    def lr(self, t: float) -> float:
        raise NotImplementedError

    def uncapped_cycle_ends(self) -> list[float]:
        """Where cycles end as the formula has it, up to about the end of training."""
        return []

    def cycle_ends(self) -> list[float]:
        """Times (epochs) at which a cycle ends, within training. Sampled per epoch, a cycle ends at
        the whole epoch on which the restart is first seen."""
        ends = [e for e in self.uncapped_cycle_ends() if e <= self.total + EPS]
        return sorted({math.ceil(e - EPS) for e in ends}) if self.interval == "epoch" else ends

    # Stateless schedules: nothing to observe, nothing to checkpoint.
    def observe(self, t: float, val_acc: float) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _check_lr_min(lr_min: float, peak: float) -> None:
    require(0 <= lr_min <= peak, "schedule.lr_min", lr_min, f"must be in [0, optimizer.lr={peak}]")


def _check_decay(gamma: float, key: str = "schedule.gamma") -> None:
    require(0 < gamma < 1, key, gamma, "must be in (0, 1): the schedule decays")


@dataclass(frozen=True)
class Constant(Schedule):
    def lr(self, t):
        return self.peak


@dataclass(frozen=True)
class Step(Schedule):
    """peak * gamma ** floor(t / step_size)."""

    step_size: float = 30.0
    gamma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(self.step_size > 0, "schedule.step_size", self.step_size, "must be > 0 epochs")
        _check_decay(self.gamma)

    def lr(self, t):
        return self.peak * self.gamma ** math.floor(t / self.step_size + EPS)


@dataclass(frozen=True)
class MultiStep(Schedule):
    """Multiply by gamma at each milestone; milestones below 1 are fractions of training."""

    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        _check_decay(self.gamma)
        object.__setattr__(self, "milestones", tuple(self.milestones))
        at = self.milestone_epochs
        inside = all(0 < m < self.total for m in at) and list(at) == sorted(set(at))
        require(inside and len(at) > 0, "schedule.milestones", list(self.milestones),
                f"increasing epochs (or fractions < 1) strictly inside training (0, {self.total:g})")

    @property
    def milestone_epochs(self) -> tuple[float, ...]:
        return tuple(fraction_or_epochs(m, self.total) for m in self.milestones)

    def lr(self, t):
        return self.peak * self.gamma ** sum(t >= m - EPS for m in self.milestone_epochs)


@dataclass(frozen=True)
class Exponential(Schedule):
    """peak * exp(-k * t)."""

    k: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        require(self.k > 0, "schedule.k", self.k, "must be > 0 (the lr decays as exp(-k * epoch))")

    def lr(self, t):
        return self.peak * math.exp(-self.k * t)


@dataclass(frozen=True)
class Cosine(Schedule):
    """One half-cosine from the peak to lr_min over the whole run, no restarts."""

    lr_min: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        _check_lr_min(self.lr_min, self.peak)

    def lr(self, t):
        return cosine(self.peak, self.lr_min, min(t / self.total, 1.0))


def cycle_position(t: float, T_0: float, T_mult: float, ending: bool = False) -> tuple[int, float, float]:
    """(i, T_cur, T_i): the cycle holding time t, the epochs since its restart, and its length.

    A cycle runs from its restart up to its end; at exactly an end, t opens the next cycle, unless
    `ending`, where it closes the cycle that ends there (T_cur = T_i, the SPEC table's convention)."""
    if T_mult == 1:
        i = max(math.ceil(t / T_0 - EPS) - 1, 0) if ending else math.floor(t / T_0 + EPS)
        return i, max(t - i * T_0, 0.0), T_0
    i, start, length = 0, 0.0, T_0
    while (t > start + length + EPS) if ending else (t >= start + length - EPS):
        i, start, length = i + 1, start + length, length * T_mult
    return i, max(t - start, 0.0), length


def restart_times(T_0: float, T_mult: float, until: float) -> list[float]:
    """Cycle ends T_0, T_0 + T_0*T_mult, ... up to `until`, accumulated as cycle_position does."""
    ends, end, length = [], T_0, T_0
    while end <= until + EPS:
        ends.append(end)
        if T_mult == 1:
            end = (len(ends) + 1) * T_0
        else:
            length *= T_mult
            end += length
    return ends


def _check_restarts(T_0: float, T_mult: float) -> None:
    require(T_0 > 0, "schedule.T_0", T_0, "must be > 0 epochs")
    require(T_mult >= 1, "schedule.T_mult", T_mult, "must be >= 1 (may be non-integer)")


@dataclass(frozen=True)
class SGDR(Schedule):
    """Cosine annealing with warm restarts (Loshchilov & Hutter, ICLR 2017)."""

    T_0: float = 10.0
    T_mult: float = 1.0
    lr_min: float = 0.0
    cycle_decay: float = 1.0  # the peak of cycle i is peak * cycle_decay ** i

    def __post_init__(self):
        super().__post_init__()
        _check_restarts(self.T_0, self.T_mult)
        _check_lr_min(self.lr_min, self.peak)
        require(0 < self.cycle_decay <= 1, "schedule.cycle_decay", self.cycle_decay, "must be in (0, 1]")

    def position(self, t: float, ending: bool = False) -> tuple[int, float, float]:
        return cycle_position(t, self.T_0, self.T_mult, ending)

    def lr(self, t, ending: bool = False):
        i, T_cur, T_i = self.position(t, ending)
        return cosine(self.peak * self.cycle_decay**i, self.lr_min, T_cur / T_i)

    def uncapped_cycle_ends(self):
        return restart_times(self.T_0, self.T_mult, self.total)


def snapshot_cycles(peak: float, total: float, cycles: int = 5, lr_min: float = 0.0,
                    interval: str = "step") -> SGDR:
    """Huang et al. 2017: M equal cosine cycles over the run (SGDR with T_0 = epochs / M, T_mult = 1)."""
    require(isinstance(cycles, int) and cycles >= 1, "schedule.cycles", cycles, "must be an integer >= 1")
    require(cycles <= total, "schedule.cycles", cycles,
            f"at most one cycle per epoch: training has {total:g} epochs after warmup")
    return SGDR(peak=peak, total=total, interval=interval, T_0=total / cycles, T_mult=1.0, lr_min=lr_min)


CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@dataclass(frozen=True)
class Cyclic(Schedule):
    """Smith's cyclical learning rates between lr_min and the peak; step_size is half a cycle, in epochs.
    exp_range scales the amplitude by gamma ** t, gamma per epoch."""

    lr_min: float = 0.001
    step_size: float = 4.0
    mode: str = "triangular"
    gamma: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        _check_lr_min(self.lr_min, self.peak)
        require(self.step_size > 0, "schedule.step_size", self.step_size, "must be > 0 epochs")
        require(self.mode in CYCLIC_MODES, "schedule.mode", self.mode, f"one of {CYCLIC_MODES}")
        require(0 < self.gamma <= 1, "schedule.gamma", self.gamma, "must be in (0, 1]")

    def lr(self, t):
        cycle = math.floor(1 + t / (2 * self.step_size) + EPS)
        x = abs(t / self.step_size - 2 * cycle + 1)
        scale = {"triangular": 1.0, "triangular2": 0.5 ** (cycle - 1), "exp_range": self.gamma**t}[self.mode]
        return self.lr_min + (self.peak - self.lr_min) * max(0.0, 1.0 - x) * scale

    def uncapped_cycle_ends(self):
        return restart_times(2 * self.step_size, 1.0, self.total)


@dataclass(frozen=True)
class OneCycle(Schedule):
    """Smith's 1cycle as torch's OneCycleLR (two phases, cosine): rise from peak / div_factor to the
    peak over pct_start of training, then anneal to peak / (div_factor * final_div_factor).
    Only the lr is cycled, not the momentum."""

    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self):
        super().__post_init__()
        require(0 < self.pct_start < 1, "schedule.pct_start", self.pct_start, "must be in (0, 1)")
        require(self.div_factor >= 1, "schedule.div_factor", self.div_factor, "must be >= 1")
        require(self.final_div_factor >= 1, "schedule.final_div_factor", self.final_div_factor, "must be >= 1")

    def lr(self, t):
        start = self.peak / self.div_factor
        rise = self.pct_start * self.total
        if t < rise:
            return cosine(start, self.peak, t / rise)
        return cosine(self.peak, start / self.final_div_factor, min((t - rise) / (self.total - rise), 1.0))


@dataclass(frozen=True)
class AdaptiveSGDR(Schedule):
    """SGDR with a trigger and decaying restart peaks (SPEC 1.1): hold the peak until the validation
    accuracy first reaches `trigger_val_acc`, then run SGDR cycles. Whenever the validation accuracy
    improves, the next restart's peak becomes max(current peak / compression, current lr).
    compression = 1 gives plain SGDR. What it has learnt lives in `state` and in checkpoints."""

    T_0: float = 10.0
    T_mult: float = 2.0
    lr_min: float = 0.0
    trigger_val_acc: float = 0.85
    compression: float = 5.0
    state: dict = field(default_factory=dict, init=False, compare=False)  # triggered_at, peaks (one per started cycle), next_peak, best_val_acc
    needs_val_acc = True

    def __post_init__(self):
        super().__post_init__()
        _check_restarts(self.T_0, self.T_mult)
        _check_lr_min(self.lr_min, self.peak)
        require(0 <= self.trigger_val_acc <= 1, "schedule.trigger_val_acc", self.trigger_val_acc, "must be in [0, 1]")
        require(self.compression >= 1, "schedule.compression", self.compression, "must be >= 1")
        self.state.update({"triggered_at": None, "peaks": [], "next_peak": self.peak, "best_val_acc": -1.0})

    def _position(self, t, ending=False):
        return cycle_position(t - self.state["triggered_at"], self.T_0, self.T_mult, ending)

    def _peak(self, i: int) -> float:
        peaks = self.state["peaks"]
        return peaks[i] if i < len(peaks) else self.state["next_peak"]

    def lr(self, t, ending: bool = False):
        if self.state["triggered_at"] is None or t < self.state["triggered_at"]:
            return self.peak
        i, T_cur, T_i = self._position(t, ending)
        return cosine(self._peak(i), self.lr_min, T_cur / T_i)

    def observe(self, t, val_acc):
        """Validation accuracy measured at time t, after the last step before t."""
        s = self.state
        if s["triggered_at"] is None:
            if val_acc < self.trigger_val_acc:
                return
            s["triggered_at"] = t
        i = self._position(t, ending=True)[0]
        while len(s["peaks"]) <= i:  # cycles that have started keep the peak they started with
            s["peaks"].append(s["next_peak"])
        if val_acc > s["best_val_acc"]:
            s["best_val_acc"] = val_acc
            s["next_peak"] = max(s["peaks"][i] / self.compression, self.lr(t, ending=True))

    def uncapped_cycle_ends(self):
        start = self.state["triggered_at"]
        return [] if start is None else [start + e for e in restart_times(self.T_0, self.T_mult, self.total - start)]

    def state_dict(self):
        return {**self.state, "peaks": list(self.state["peaks"])}

    def load_state_dict(self, state):
        self.state.update(state)


# --- warmup -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoWarmup:
    def duration(self, clock: Clock) -> float:
        return 0.0

    def wrap(self, schedule: Schedule, duration: float) -> Schedule:
        return schedule


@dataclass(frozen=True)
class LinearWarmup:
    """Ramp from start_lr to the schedule's first value over `epochs` (or `steps`); the schedule's
    own clock starts when the warmup ends."""

    epochs: float | None = 5.0
    steps: int | None = None
    start_lr: float = 0.0

    def __post_init__(self):
        require((self.epochs is None) != (self.steps is None), "warmup.epochs/warmup.steps",
                (self.epochs, self.steps), "set exactly one of the two (the other null)")
        length = self.epochs if self.steps is None else self.steps
        require(length > 0, "warmup.epochs" if self.steps is None else "warmup.steps", length, "must be > 0")
        require(self.start_lr >= 0, "warmup.start_lr", self.start_lr, "must be >= 0")

    def duration(self, clock: Clock) -> float:
        return self.epochs if self.steps is None else clock.epochs(self.steps)

    def ramp(self, start: float, target: float, progress: float) -> float:
        return start + (target - start) * progress

    def wrap(self, schedule: Schedule, duration: float) -> Schedule:
        target = schedule(0.0)
        require(self.start_lr <= target, "warmup.start_lr", self.start_lr,
                f"must not exceed the schedule's first lr ({target:g})")
        return Warmed(schedule, duration, lambda p: self.ramp(self.start_lr, target, p))


@dataclass(frozen=True)
class ExponentialWarmup(LinearWarmup):
    """Geometric ramp: start_lr * (target / start_lr) ** progress; start_lr must be > 0."""

    start_lr: float = 1e-4

    def __post_init__(self):
        super().__post_init__()
        require(self.start_lr > 0, "warmup.start_lr", self.start_lr, "must be > 0 for an exponential ramp")

    def ramp(self, start, target, progress):
        return start * (target / start) ** progress


class Wrapped:
    """A schedule wrapped in something that changes its lr over part of training (a warmup, the SWA switch).
    It offers what a Schedule offers, delegating to the inner one, and samples its own changes the way
    the inner schedule is sampled (per step, or at whole epochs)."""

    def __init__(self, schedule: Schedule, total: float):
        self.schedule, self.total = schedule, total
        self.peak, self.interval, self.needs_val_acc = schedule.peak, schedule.interval, schedule.needs_val_acc

    def sample(self, t: float) -> float:
        return math.floor(t + EPS) if self.interval == "epoch" else t

    def observe(self, t, val_acc):
        self.schedule.observe(t, val_acc)

    def state_dict(self):
        return self.schedule.state_dict()

    def load_state_dict(self, state):
        self.schedule.load_state_dict(state)


class Warmed(Wrapped):
    """A schedule preceded by a warmup ramp of `duration` epochs; the schedule's clock starts after it."""

    def __init__(self, schedule: Schedule, duration: float, ramp: Callable[[float], float]):
        super().__init__(schedule, duration + schedule.total)
        self.duration, self.ramp = duration, ramp

    def __call__(self, t):
        if t < self.duration:
            return self.ramp(self.sample(t) / self.duration)
        return self.schedule(t - self.duration)

    def cycle_ends(self):
        return [self.duration + e for e in self.schedule.cycle_ends()]

    def observe(self, t, val_acc):
        if t >= self.duration:
            self.schedule.observe(t - self.duration, val_acc)


@dataclass(frozen=True)
class LrSwitch:
    """From `start` epochs on, anneal (half cosine) from the lr reached to `lr` over `anneal_epochs`,
    then hold it: SWA's `swa_lr` (Izmailov et al. 2018). Cycles after the switch no longer exist."""

    start: float
    lr: float
    anneal_epochs: float = 0.0

    def __call__(self, schedule: Schedule) -> Schedule:
        return Switched(schedule, self)


class Switched(Wrapped):
    def __init__(self, schedule: Schedule, switch: LrSwitch):
        super().__init__(schedule, schedule.total)
        self.switch = switch

    def __call__(self, t):
        start, anneal = self.switch.start, self.switch.anneal_epochs
        if t < start:
            return self.schedule(t)
        progress = 1.0 if anneal <= 0 else min((self.sample(t) - start) / anneal, 1.0)
        return cosine(self.schedule(start), self.switch.lr, max(progress, 0.0))

    def cycle_ends(self):
        return [e for e in self.schedule.cycle_ends() if e <= self.switch.start + EPS]


@dataclass
class LrPlan:
    """What decides a run's lr before its step count is known: the schedule (a partial taking peak
    and total, Hydra's `_partial_`), the warmup, the length of training and an optional switch to a
    constant lr (SWA). `build` makes the run's lr function once the optimizer and the clock exist."""

    schedule: Callable[..., Schedule]
    warmup: NoWarmup | LinearWarmup = field(default_factory=NoWarmup)
    epochs: float = 1.0
    switch: Callable[[Schedule], Schedule] | None = None

    @property
    def needs_val_acc(self) -> bool:
        return getattr(getattr(self.schedule, "func", self.schedule), "needs_val_acc", False)

    def describe(self) -> str:
        name = getattr(self.schedule, "func", self.schedule).__name__
        args = ", ".join(f"{k}={v}" for k, v in getattr(self.schedule, "keywords", {}).items() if k != "interval")
        parts = [f"{name}({args})"]
        if not isinstance(self.warmup, NoWarmup):
            parts.insert(0, repr(self.warmup))
        if self.switch:
            parts.append(repr(self.switch))
        return " -> ".join(parts)

    def build(self, peak: float, clock: Clock) -> Schedule:
        warm = self.warmup.duration(clock)
        if warm >= self.epochs:
            raise ConfigError(f"warmup of {warm:g} epochs is invalid: it must be shorter than training "
                              f"(trainer.max_epochs={self.epochs:g}); lower warmup.epochs / warmup.steps")
        built = self.warmup.wrap(self.schedule(peak=peak, total=self.epochs - warm), warm)
        return self.switch(built) if self.switch else built


def has_cycles(schedule: Schedule) -> bool:
    """Whether snapshots and per-cycle averages can be taken: cycle ends within training, or an adaptive
    schedule whose cycles begin once validation accuracy triggers them."""
    return bool(schedule.cycle_ends()) or schedule.needs_val_acc


class ScheduleLR(LambdaLR):
    """Drives the optimizer with `schedule` at every step: lr(step) = schedule(clock.epochs(step)).

    LambdaLR scales each param group's initial lr (the peak) by schedule(t) / peak."""

    def __init__(self, optimizer: Optimizer, schedule: Schedule, clock: Clock):
        self.schedule, self.clock = schedule, clock
        self._cycle_end_steps: frozenset[int] | None = None

        def factor(step: int) -> float:
            return schedule(clock.epochs(step)) / schedule.peak

        super().__init__(optimizer, factor)

    def observe(self, val_acc: float) -> None:
        """Feed a validation accuracy measured now to the schedule, and apply what it changes to
        the lr of the coming step (already set when the last step ended)."""
        self.schedule.observe(self.clock.epochs(self.last_epoch), val_acc)
        self._cycle_end_steps = None  # an adaptive schedule may have new cycles now
        for group, base_lr, factor in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base_lr * factor(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def cycle_end_steps(self) -> frozenset[int]:
        """Optimizer steps after which a cycle has ended (the step count at the restart); cached, as the
        snapshot and SWA callbacks ask after every step."""
        if self._cycle_end_steps is None:
            self._cycle_end_steps = frozenset(self.clock.step_at(t) for t in self.schedule.cycle_ends())
        return self._cycle_end_steps

    def state_dict(self):
        # LambdaLR saves every attribute; keep checkpoints to plain values (they load with weights_only=True)
        state = {k: v for k, v in super().state_dict().items() if k not in ("clock", "_cycle_end_steps")}
        return {**state, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        self.schedule.load_state_dict(state_dict.pop("schedule", {}))
        super().load_state_dict(state_dict)
        self._cycle_end_steps = None
