"""Composing schedules: a warmup before any schedule, and SWA's switch to a constant lr after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anneal.errors import ConfigError, require
from anneal.schedules.clock import EPS, Clock, Span
from anneal.schedules.curves import Schedule, cosine


class Wrapped(Schedule):
    """A schedule with something that changes its lr over part of training. Its own changes are sampled
    the way the inner schedule is sampled (per step, or at whole epochs); what the inner schedule learns
    and keeps passes through."""

    def __init__(self, inner: Schedule, total: float):
        self.inner, self.total = inner, total
        self.peak, self.interval, self.monitor = inner.peak, inner.interval, inner.monitor
        self.cycles_follow_metric = inner.cycles_follow_metric

    def lr(self, t: float) -> float:
        return self(t)

    def cooldown_start(self) -> float | None:
        return self.inner.cooldown_start()

    def observe(self, t: float, value: float) -> None:
        self.inner.observe(t, value)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


class Warmed(Wrapped):
    """A schedule preceded by a warmup ramp of `duration` epochs; the schedule's clock starts after it."""

    def __init__(self, inner: Schedule, duration: float, ramp: Callable[[float], float], name: str):
        super().__init__(inner, duration + inner.total)
        self.duration, self.ramp, self.name = duration, ramp, name

    def __call__(self, t: float) -> float:
        if t < self.duration:
            return self.ramp(self.sample(t) / self.duration)
        return self.inner(t - self.duration)

    def cycle_ends(self) -> list[float]:
        return [self.duration + e for e in self.inner.cycle_ends()]

    def cooldown_start(self) -> float | None:
        start = self.inner.cooldown_start()
        return None if start is None else self.duration + start

    def observe(self, t: float, value: float) -> None:
        if t >= self.duration:
            self.inner.observe(t - self.duration, value)

    def describe(self) -> str:
        return f"{self.name} -> {self.inner.describe()}"


@dataclass(frozen=True)
class NoWarmup:
    def duration(self, clock: Clock) -> float:
        return 0.0

    def wrap(self, schedule: Schedule, duration: float) -> Schedule:
        return schedule


@dataclass(frozen=True)
class LinearWarmup:
    """Ramp from start_lr to the schedule's first value over `epochs` (or `steps`); the schedule's
    own clock starts when the warmup ends (Goyal et al. 2017)."""

    epochs: float | None = 5.0
    steps: int | None = None
    start_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs is not None and self.steps is not None:
            raise ConfigError(
                "",
                (self.epochs, self.steps),
                text=f"{{key}}.epochs={self.epochs:g} and {{key}}.steps={self.steps} are invalid together (the warmup "
                f"option sets epochs): a warmup in steps is '{{key}}.steps={self.steps} {{key}}.epochs=null'",
            )
        if self.epochs is None and self.steps is None:
            raise ConfigError("", text="{key}.epochs and {key}.steps are both null: set one of the two")
        length = self.epochs if self.steps is None else self.steps
        require(length is not None and length > 0, "epochs" if self.steps is None else "steps", length, "must be > 0")
        require(self.start_lr >= 0, "start_lr", self.start_lr, "must be >= 0")

    def duration(self, clock: Clock) -> float:
        return clock.epochs(self.steps) if self.steps is not None else float(self.epochs or 0.0)

    def ramp(self, start: float, target: float, progress: float) -> float:
        return start + (target - start) * progress

    def wrap(self, schedule: Schedule, duration: float) -> Schedule:
        target = schedule(0.0)
        require(
            self.start_lr <= target, "start_lr", self.start_lr, f"must not exceed the schedule's first lr ({target:g})"
        )
        return Warmed(schedule, duration, lambda p: self.ramp(self.start_lr, target, p), repr(self))


@dataclass(frozen=True)
class ExponentialWarmup(LinearWarmup):
    """Geometric ramp: start_lr * (target / start_lr) ** progress; start_lr must be > 0."""

    start_lr: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.start_lr > 0, "start_lr", self.start_lr, "must be > 0 for an exponential ramp")

    def ramp(self, start: float, target: float, progress: float) -> float:
        return start * (target / start) ** progress


Warmup = NoWarmup | LinearWarmup


@dataclass(frozen=True)
class LrSwitch:
    """From `start` on, anneal (half cosine) from the lr reached to `lr` over `anneal_epochs`, then hold it:
    SWA's `swa_lr` (Izmailov et al. 2018). Cycles after the switch no longer exist."""

    start: Span
    lr: float
    anneal_epochs: float = 0.0

    def apply(self, schedule: Schedule, clock: Clock) -> Schedule:
        return Switched(schedule, self.start.epochs(schedule.total, clock), self)


class Switched(Wrapped):
    def __init__(self, inner: Schedule, start: float, switch: LrSwitch):
        super().__init__(inner, inner.total)
        self.start, self.switch = start, switch

    def __call__(self, t: float) -> float:
        if t < self.start:
            return self.inner(t)
        anneal = self.switch.anneal_epochs
        progress = 1.0 if anneal <= 0 else min((self.sample(t) - self.start) / anneal, 1.0)
        return cosine(self.inner(self.start), self.switch.lr, max(progress, 0.0))

    def cycle_ends(self) -> list[float]:
        return [e for e in self.inner.cycle_ends() if e <= self.start + EPS]

    def describe(self) -> str:
        s = self.switch
        return f"{self.inner.describe()} -> LrSwitch(start={s.start}, lr={s.lr}, anneal_epochs={s.anneal_epochs})"
