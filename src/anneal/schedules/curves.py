"""The learning-rate curves: pure functions of training time t, in epochs (a float).

A curve is built with its peak lr (always `optimizer.lr`) and its length in epochs. `curve(t)` is the lr
at time t; `cycle_ends()` lists the times at which its cycles end (the low points where snapshots are
taken and cyclic SWA averages), empty for curves without cycles. `interval="epoch"` samples the
function at whole epochs (the papers' and blog posts' convention).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any

from anneal.errors import require
from anneal.schedules.clock import EPS, Clock, Span

INTERVALS = ("step", "epoch")


def cosine(start: float, end: float, progress: float) -> float:
    """Half a cosine from `start` (progress 0) to `end` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Schedule(ABC):
    """The lr as a function of training time in epochs. Curves are frozen values; schedules that adapt
    to a held-out metric (`monitor`) learn through `observe` and keep what they learnt in `state_dict`."""

    peak: float  # the peak lr
    total: float  # length in epochs
    interval: str  # "step": the function at every optimizer step; "epoch": sampled at whole epochs
    monitor: str | None = None  # the held-out metric an adaptive schedule observes
    cycles_follow_metric = False  # cycles begin only once the metric triggers them (adaptive SGDR)

    def __call__(self, t: float) -> float:
        return self.lr(self.sample(t))

    def sample(self, t: float) -> float:
        return math.floor(t + EPS) if self.interval == "epoch" else t

    @abstractmethod
    def lr(self, t: float) -> float: ...

    def cycle_ends(self) -> list[float]:
        """Times (epochs) within training at which a cycle ends."""
        return []

    def describe(self) -> str:
        return type(self).__name__

    def cooldown_start(self) -> float | None:
        """When a final cooldown begins (epochs), for a schedule whose lr before it does not depend on its length."""
        return None

    def observe(self, t: float, value: float) -> None:  # noqa: B027 (a no-op unless the schedule adapts)
        """A held-out metric measured at time t (after the last step before t). Curves ignore it."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (a no-op unless the schedule adapts)
        """Curves have nothing to restore."""


def ends_within(ends: list[float], total: float, interval: str) -> list[float]:
    """The cycle ends within training. Sampled per epoch, a cycle ends at the whole epoch on which the
    restart is first seen."""
    ends = [e for e in ends if e <= total + EPS]
    return sorted({math.ceil(e - EPS) for e in ends}) if interval == "epoch" else ends


def check_basics(peak: float, total: float, interval: str) -> None:
    require(peak > 0, "peak", peak, "the peak learning rate must be > 0")
    require(total > 0, "total", total, "training must last > 0 epochs")
    require(interval in INTERVALS, "interval", interval, f"one of {INTERVALS}")


PERCENT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*")


def lr_floor(lr_min: float | str, peak: float) -> float:
    """The lowest lr of a schedule: `lr_min` is an lr (a number) or a share of the peak ('10%')."""
    share = PERCENT.fullmatch(lr_min) if isinstance(lr_min, str) else None
    number = isinstance(lr_min, (int, float)) and not isinstance(lr_min, bool)
    value = peak * float(share.group(1)) / 100 if share else float(lr_min) if number else math.nan
    require(0 <= value <= peak, "lr_min", lr_min, f"must be in [0, the peak lr {peak:g}] or 'P%' of it")
    return float(value)


def check_decay(gamma: float, key: str = "gamma") -> None:
    require(0 < gamma < 1, key, gamma, "must be in (0, 1): the schedule decays")


@dataclass(frozen=True)
class Curve(Schedule):
    """A schedule that is a fixed function of time. `clock` converts settings given in optimizer steps."""

    peak: float
    total: float
    interval: str = "step"
    clock: Clock | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_basics(self.peak, self.total, self.interval)

    def uncapped_cycle_ends(self) -> list[float]:
        """Where cycles end as the formula has it, up to about the end of training."""
        return []

    def cycle_ends(self) -> list[float]:
        return ends_within(self.uncapped_cycle_ends(), self.total, self.interval)

    def describe(self) -> str:
        hidden = ("peak", "total", "interval", "clock")
        settings = ", ".join(
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.init and f.name not in hidden
        )
        return f"{type(self).__name__}({settings})"


@dataclass(frozen=True)
class Constant(Curve):
    def lr(self, t: float) -> float:
        return self.peak


@dataclass(frozen=True)
class Step(Curve):
    """peak * gamma ** floor(t / step_size)."""

    step_size: float = 30.0
    gamma: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.step_size > 0, "step_size", self.step_size, "must be > 0 epochs")
        check_decay(self.gamma)

    def lr(self, t: float) -> float:
        return self.peak * self.gamma ** math.floor(t / self.step_size + EPS)


@dataclass(frozen=True)
class MultiStep(Curve):
    """Multiply by gamma at each milestone: epochs, 'N steps', or 'P%' of the schedule."""

    milestones: tuple[Span, ...] = (Span(0.5, "fraction"), Span(0.75, "fraction"))
    gamma: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_decay(self.gamma)
        object.__setattr__(self, "milestones", tuple(Span.parse(m, "milestones", shares=True) for m in self.milestones))
        at = self.milestone_epochs
        inside = all(0 < m < self.total for m in at) and list(at) == sorted(set(at))
        require(
            inside and len(at) > 0,
            "milestones",
            [str(m) for m in self.milestones],
            f"increasing times strictly inside the schedule's {self.total:g} epochs",
        )

    @property
    def milestone_epochs(self) -> tuple[float, ...]:
        return tuple(m.epochs(self.total, self.clock) for m in self.milestones)

    def lr(self, t: float) -> float:
        return self.peak * self.gamma ** sum(t >= m - EPS for m in self.milestone_epochs)

    def describe(self) -> str:
        return f"MultiStep(milestones={[str(m) for m in self.milestones]}, gamma={self.gamma})"


@dataclass(frozen=True)
class Exponential(Curve):
    """peak * exp(-k * t)."""

    k: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.k > 0, "k", self.k, "must be > 0 (the lr decays as exp(-k * epoch))")

    def lr(self, t: float) -> float:
        return self.peak * math.exp(-self.k * t)


def cycle_position(t: float, T_0: float, T_mult: float, ending: bool = False) -> tuple[int, float, float]:
    """(i, T_cur, T_i): the cycle holding time t, the epochs since its restart, and its length.

    A cycle runs from its restart up to its end; at exactly an end, t opens the next cycle, unless
    `ending`, where it closes the cycle that ends there (T_cur = T_i, SGDR's worked table's convention)."""
    if T_mult == 1:
        i = max(math.ceil(t / T_0 - EPS) - 1, 0) if ending else math.floor(t / T_0 + EPS)
        return i, max(t - i * T_0, 0.0), T_0
    i, start, length = 0, 0.0, T_0
    while (t > start + length + EPS) if ending else (t >= start + length - EPS):
        i, start, length = i + 1, start + length, length * T_mult
    return i, max(t - start, 0.0), length


def restart_times(T_0: float, T_mult: float, until: float) -> list[float]:
    """Cycle ends T_0, T_0 + T_0*T_mult, ... up to `until`, accumulated as cycle_position does."""
    ends: list[float] = []
    end, length = T_0, T_0
    while end <= until + EPS:
        ends.append(end)
        if T_mult == 1:
            end = (len(ends) + 1) * T_0
        else:
            length *= T_mult
            end += length
    return ends


def check_restarts(T_0: float, T_mult: float) -> None:
    require(T_0 > 0, "T_0", T_0, "must be > 0 epochs")
    require(T_mult >= 1, "T_mult", T_mult, "must be >= 1 (may be non-integer)")


class ToFloor(Curve):
    """A curve that ends at lr_min (an lr, or 'P%' of the peak), which its dataclass declares with `floor`, the
    lr it stands for. (Not a dataclass itself: each curve's fields keep their order in its repr, the schedule's
    name in run records.)"""

    lr_min: float | str
    floor: float

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "floor", lr_floor(self.lr_min, self.peak))


@dataclass(frozen=True)
class SGDR(ToFloor):
    """Cosine annealing with warm restarts (Loshchilov & Hutter, ICLR 2017)."""

    T_0: float = 10.0
    T_mult: float = 1.0
    lr_min: float | str = 0.0  # an lr, or 'P%' of the peak
    floor: float = field(default=0.0, init=False)  # lr_min as an lr
    cycle_decay: float = 1.0  # the peak of cycle i is peak * cycle_decay ** i
    decay_lr_min: bool = False  # and its floor lr_min * cycle_decay ** i (Jordan, "Setting the learning rate", 2018)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_restarts(self.T_0, self.T_mult)
        require(0 < self.cycle_decay <= 1, "cycle_decay", self.cycle_decay, "must be in (0, 1]")

    def position(self, t: float, ending: bool = False) -> tuple[int, float, float]:
        return cycle_position(t, self.T_0, self.T_mult, ending)

    def lr(self, t: float, ending: bool = False) -> float:
        i, T_cur, T_i = self.position(t, ending)
        decay = self.cycle_decay**i
        return cosine(self.peak * decay, self.floor * (decay if self.decay_lr_min else 1.0), T_cur / T_i)

    def uncapped_cycle_ends(self) -> list[float]:
        return restart_times(self.T_0, self.T_mult, self.total)


def snapshot_cycles(
    peak: float,
    total: float,
    cycles: int = 5,
    lr_min: float | str = 0.0,
    interval: str = "step",
    clock: Clock | None = None,
) -> SGDR:
    """Huang et al. 2017: M equal cosine cycles over the run (SGDR with T_0 = epochs / M, T_mult = 1)."""
    require(isinstance(cycles, int) and cycles >= 1, "cycles", cycles, "must be an integer >= 1")
    require(cycles <= total, "cycles", cycles, f"at most one cycle per epoch: the schedule has {total:g} epochs")
    return SGDR(peak=peak, total=total, interval=interval, T_0=total / cycles, T_mult=1.0, lr_min=lr_min)


CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
FOUR_EPOCHS = Span(4.0)


@dataclass(frozen=True)
class Cyclic(ToFloor):
    """Smith's cyclical learning rates (2017) between lr_min and the peak. step_size is half a cycle: in
    epochs, or in optimizer steps as Smith gives it ('2000 steps'). exp_range scales the amplitude by
    gamma ** t, gamma per epoch."""

    lr_min: float | str = 0.001  # an lr, or 'P%' of the peak
    floor: float = field(default=0.0, init=False)  # lr_min as an lr
    step_size: Span = FOUR_EPOCHS
    mode: str = "triangular"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "step_size", Span.parse(self.step_size, "step_size"))
        require(self.half_cycle > 0, "step_size", str(self.step_size), "must be > 0")
        require(self.mode in CYCLIC_MODES, "mode", self.mode, f"one of {CYCLIC_MODES}")
        require(0 < self.gamma <= 1, "gamma", self.gamma, "must be in (0, 1]")

    @property
    def half_cycle(self) -> float:
        return self.step_size.epochs(self.total, self.clock)

    def lr(self, t: float) -> float:
        half = self.half_cycle
        cycle = math.floor(1 + t / (2 * half) + EPS)
        x = abs(t / half - 2 * cycle + 1)
        scale = {"triangular": 1.0, "triangular2": 0.5 ** (cycle - 1), "exp_range": self.gamma**t}[self.mode]
        return self.floor + (self.peak - self.floor) * max(0.0, 1.0 - x) * scale

    def uncapped_cycle_ends(self) -> list[float]:
        return restart_times(2 * self.half_cycle, 1.0, self.total)


@dataclass(frozen=True)
class OneCycle(Curve):
    """Smith's 1cycle as torch's OneCycleLR (two phases, cosine): rise from peak / div_factor to the
    peak over pct_start of training, then anneal to peak / (div_factor * final_div_factor).
    Only the lr is cycled, not the momentum."""

    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.pct_start < 1, "pct_start", self.pct_start, "must be in (0, 1)")
        require(self.div_factor >= 1, "div_factor", self.div_factor, "must be >= 1")
        require(self.final_div_factor >= 1, "final_div_factor", self.final_div_factor, "must be >= 1")

    def lr(self, t: float) -> float:
        start = self.peak / self.div_factor
        rise = self.pct_start * self.total
        if t < rise:
            return cosine(start, self.peak, t / rise)
        return cosine(self.peak, start / self.final_div_factor, min((t - rise) / (self.total - rise), 1.0))
