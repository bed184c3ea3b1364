"""Curves that decay once, to a floor: over the whole run (cosine, linear), in the SWA reference code's ramp, or
only at the end, after a stable phase at the peak (warmup-stable-decay)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from anneal.errors import require
from anneal.schedules.clock import EPS, Span
from anneal.schedules.curves import Curve, ToFloor, cosine


@dataclass(frozen=True)
class Cosine(ToFloor):
    """One half-cosine from the peak to lr_min over the whole run, no restarts."""

    lr_min: float | str = 0.0  # an lr, or 'P%' of the peak
    floor: float = field(default=0.0, init=False)  # lr_min as an lr

    def lr(self, t: float) -> float:
        return cosine(self.peak, self.floor, min(t / self.total, 1.0))


@dataclass(frozen=True)
class LinearDecay(ToFloor):
    """From the peak to lr_min in a straight line over the whole run (to zero: Bergsma et al. 2025, "Straight to
    Zero")."""

    lr_min: float | str = 0.0  # an lr, or 'P%' of the peak
    floor: float = field(default=0.0, init=False)  # lr_min as an lr

    def lr(self, t: float) -> float:
        return self.peak + (self.floor - self.peak) * min(t / self.total, 1.0)


COOLDOWN_SHAPES = ("linear", "cosine", "1-sqrt")
LAST_FIFTH = Span(0.2, "fraction")


@dataclass(frozen=True)
class WarmupStableDecay(ToFloor):
    """Warmup-stable-decay (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
    Durations"; Hu et al. 2024, MiniCPM): the peak, then a cooldown over the last `cooldown` of the schedule (epochs,
    'N steps' or 'P%' of it) down to lr_min, along `shape`: linear, cosine, or 1-sqrt (Hägele et al.'s best:
    lr_min + (peak - lr_min)(1 - sqrt(progress))). The warmup before it is the warmup group's. Before its cooldown the
    lr is the peak whatever the run's length, so a run stopped at another length's cooldown start can be continued
    into that length's cooldown."""

    cooldown: Span = LAST_FIFTH
    shape: str = "1-sqrt"
    lr_min: float | str = 0.0  # an lr, or 'P%' of the peak
    floor: float = field(default=0.0, init=False)  # lr_min as an lr

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "cooldown", Span.parse(self.cooldown, "cooldown", positive=True))
        length = self.cooldown.epochs(self.total, self.clock)
        require(
            0 < length <= self.total + EPS,
            "cooldown",
            str(self.cooldown),
            f"must be > 0 and at most the schedule's {self.total:g} epochs (after any warmup)",
        )
        require(self.shape in COOLDOWN_SHAPES, "shape", self.shape, f"one of {COOLDOWN_SHAPES}")

    def cooldown_start(self) -> float:
        return max(self.total - self.cooldown.epochs(self.total, self.clock), 0.0)

    def lr(self, t: float) -> float:
        start = self.cooldown_start()
        if t <= start:
            return self.peak
        progress = min((t - start) / (self.total - start), 1.0)
        if self.shape == "cosine":
            return cosine(self.peak, self.floor, progress)
        remaining = 1.0 - (progress if self.shape == "linear" else math.sqrt(progress))
        return self.floor + (self.peak - self.floor) * remaining


WHOLE_RUN = Span(1.0, "fraction")


@dataclass(frozen=True)
class RampDown(Curve):
    """The SWA reference code's schedule (Izmailov et al. 2018): the peak for the first half of `length`, then
    linearly down to end_factor * peak at 90% of it, flat after. Its SGD runs take the whole run as `length`
    and end_factor 0.01; its SWA runs take swa_start and swa_lr / peak, and average at that lr."""

    length: Span = WHOLE_RUN
    end_factor: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "length", Span.parse(self.length, "length"))
        require(self.length.epochs(self.total, self.clock) > 0, "length", str(self.length), "must be > 0")
        require(0 <= self.end_factor <= 1, "end_factor", self.end_factor, "must be in [0, 1]")

    def lr(self, t: float) -> float:
        progress = t / self.length.epochs(self.total, self.clock)
        if progress <= 0.5:
            return self.peak
        if progress <= 0.9:
            return self.peak * (1.0 - (1.0 - self.end_factor) * (progress - 0.5) / 0.4)
        return self.peak * self.end_factor
