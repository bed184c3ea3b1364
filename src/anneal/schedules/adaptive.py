"""Schedules that adapt to a held-out metric: they learn from `observe` and keep it in `state_dict`."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any

from anneal.errors import require
from anneal.schedules.clock import EPS, Clock
from anneal.schedules.curves import (
    Schedule,
    check_basics,
    check_restarts,
    cosine,
    cycle_position,
    ends_within,
    lr_floor,
    restart_times,
)


class Learning(Schedule):
    """A schedule that learns from a held-out metric. What it has learnt is its dataclass fields that are not
    settings (`init=False`): checkpoints keep them as plain values; its description shows its settings."""

    def learnt(self) -> list[str]:
        return [f.name for f in fields(self) if not f.init]  # type: ignore[arg-type]  # a dataclass, as subclasses are

    def state_dict(self) -> dict[str, Any]:
        return {name: copy.copy(getattr(self, name)) for name in self.learnt()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.learnt():
            setattr(self, name, copy.copy(state[name]))

    def describe(self) -> str:
        hidden = ("peak", "total", "interval", "clock")
        shown = [f for f in fields(self) if f.init and f.name not in hidden]  # type: ignore[arg-type]
        return f"{type(self).__name__}({', '.join(f'{f.name}={getattr(self, f.name)}' for f in shown)})"


@dataclass(eq=False)
class AdaptiveSGDR(Learning):
    """SGDR with a trigger and decaying restart peaks (a published SGDR variant): hold the peak until the
    validation accuracy first reaches `trigger_val_acc`, then run SGDR cycles. Whenever the validation
    accuracy improves, the next restart's peak becomes max(current peak / compression, current lr), or the
    current lr itself with compression = 0 (koshian2's lr_max_compression=0). compression = 1 gives plain SGDR."""

    peak: float
    total: float
    interval: str = "step"
    clock: Clock | None = field(default=None, repr=False)
    T_0: float = 10.0
    T_mult: float = 2.0
    lr_min: float | str = 0.0  # an lr, or 'P%' of the peak
    trigger_val_acc: float = 0.85
    compression: float = 5.0
    monitor = "val/acc"
    cycles_follow_metric = True
    # what it has learnt: when SGDR started, the peak of every started cycle, the next restart's peak
    triggered_at: float | None = field(default=None, init=False)
    peaks: list[float] = field(default_factory=list, init=False)
    next_peak: float = field(default=0.0, init=False)
    best_val_acc: float = field(default=-1.0, init=False)
    floor: float = field(default=0.0, init=False)  # lr_min as an lr

    def __post_init__(self) -> None:
        check_basics(self.peak, self.total, self.interval)
        check_restarts(self.T_0, self.T_mult)
        self.floor = lr_floor(self.lr_min, self.peak)
        require(0 <= self.trigger_val_acc <= 1, "trigger_val_acc", self.trigger_val_acc, "must be in [0, 1]")
        require(
            self.compression == 0 or self.compression >= 1,
            "compression",
            self.compression,
            "must be >= 1, or 0 (restart at the lr reached when val/acc last improved)",
        )
        self.next_peak = self.peak

    def _position(self, t: float, ending: bool = False) -> tuple[int, float, float]:
        assert self.triggered_at is not None
        return cycle_position(t - self.triggered_at, self.T_0, self.T_mult, ending)

    def _peak(self, i: int) -> float:
        return self.peaks[i] if i < len(self.peaks) else self.next_peak

    def lr(self, t: float, ending: bool = False) -> float:
        if self.triggered_at is None or t < self.triggered_at:
            return self.peak
        i, T_cur, T_i = self._position(t, ending)
        return cosine(self._peak(i), self.floor, T_cur / T_i)

    def observe(self, t: float, value: float) -> None:
        if self.triggered_at is None:
            if value < self.trigger_val_acc:
                return
            self.triggered_at = t
        i = self._position(t, ending=True)[0]
        while len(self.peaks) <= i:  # cycles that have started keep the peak they started with
            self.peaks.append(self.next_peak)
        if value > self.best_val_acc:
            self.best_val_acc = value
            reached = self.lr(t, ending=True)
            self.next_peak = reached if self.compression == 0 else max(self.peaks[i] / self.compression, reached)

    def cycle_ends(self) -> list[float]:
        """Known once triggered: the restarts of the SGDR cycles that began then."""
        start = self.triggered_at
        if start is None:
            return []
        ends = [start + e for e in restart_times(self.T_0, self.T_mult, self.total - start)]
        return ends_within(ends, self.total, self.interval)


PLATEAU_MONITORS = ("val/loss", "val/acc")


@dataclass(eq=False)
class Plateau(Learning):
    """torch's ReduceLROnPlateau as a schedule: hold the lr, and multiply it by `factor` (not below min_lr)
    once the monitored held-out metric has not improved for more than `patience` evaluations; improving means
    beating the best by more than `threshold` (relative to it, or absolute); after a reduction, `cooldown`
    evaluations pass before bad ones count again. The lr is a step function of time whose steps are the
    reductions made so far."""

    peak: float
    total: float
    interval: str = "step"
    clock: Clock | None = field(default=None, repr=False)
    monitor: str = "val/loss"
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    # what it has learnt: the best value, the evaluations since it, the cooldown left, the reductions' times
    best: float = field(default=math.nan, init=False)
    bad_evaluations: int = field(default=0, init=False)
    cooldown_left: int = field(default=0, init=False)
    reductions: list[float] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        check_basics(self.peak, self.total, self.interval)
        require(
            self.monitor in PLATEAU_MONITORS, "monitor", self.monitor, f"a held-out metric: one of {PLATEAU_MONITORS}"
        )
        require(self.mode in ("min", "max"), "mode", self.mode, "'min' (a loss) or 'max' (an accuracy)")
        require(0 < self.factor < 1, "factor", self.factor, "must be in (0, 1): the lr is reduced")
        require(isinstance(self.patience, int) and self.patience >= 0, "patience", self.patience, "an integer >= 0")
        require(self.threshold >= 0, "threshold", self.threshold, "must be >= 0")
        require(self.threshold_mode in ("rel", "abs"), "threshold_mode", self.threshold_mode, "'rel' or 'abs'")
        require(isinstance(self.cooldown, int) and self.cooldown >= 0, "cooldown", self.cooldown, "an integer >= 0")
        require(0 <= self.min_lr <= self.peak, "min_lr", self.min_lr, f"must be in [0, the peak lr {self.peak:g}]")

    def lr(self, t: float) -> float:
        lr = self.peak
        for _ in (at for at in self.reductions if at <= t + EPS):
            lr = max(lr * self.factor, self.min_lr)
        return lr

    def improves(self, value: float) -> bool:
        """torch's test, to the letter."""
        if math.isnan(self.best):
            return True
        if self.threshold_mode == "rel":
            scale = 1 - self.threshold if self.mode == "min" else 1 + self.threshold
            return value < self.best * scale if self.mode == "min" else value > self.best * scale
        return value < self.best - self.threshold if self.mode == "min" else value > self.best + self.threshold

    def observe(self, t: float, value: float) -> None:
        if self.improves(value):
            self.best, self.bad_evaluations = value, 0
        else:
            self.bad_evaluations += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_evaluations = 0
        if self.bad_evaluations > self.patience:
            self.reductions.append(t)
            self.cooldown_left, self.bad_evaluations = self.cooldown, 0
