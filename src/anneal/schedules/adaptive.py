"""Schedules that adapt to a held-out metric: they learn from `observe` and keep it in `state_dict`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anneal.errors import require
from anneal.schedules.clock import Clock
from anneal.schedules.curves import (
    Schedule,
    check_basics,
    check_lr_min,
    check_restarts,
    cosine,
    cycle_position,
    ends_within,
    restart_times,
)


@dataclass(eq=False)
class AdaptiveSGDR(Schedule):
    """SGDR with a trigger and decaying restart peaks (a published SGDR variant): hold the peak until the
    validation accuracy first reaches `trigger_val_acc`, then run SGDR cycles. Whenever the validation
    accuracy improves, the next restart's peak becomes max(current peak / compression, current lr).
    compression = 1 gives plain SGDR."""

    peak: float
    total: float
    interval: str = "step"
    clock: Clock | None = field(default=None, repr=False)
    T_0: float = 10.0
    T_mult: float = 2.0
    lr_min: float = 0.0
    trigger_val_acc: float = 0.85
    compression: float = 5.0
    monitor = "val/acc"
    cycles_follow_metric = True
    # what it has learnt: when SGDR started, the peak of every started cycle, the next restart's peak
    triggered_at: float | None = field(default=None, init=False)
    peaks: list[float] = field(default_factory=list, init=False)
    next_peak: float = field(default=0.0, init=False)
    best_val_acc: float = field(default=-1.0, init=False)

    def __post_init__(self) -> None:
        check_basics(self.peak, self.total, self.interval)
        check_restarts(self.T_0, self.T_mult)
        check_lr_min(self.lr_min, self.peak)
        require(0 <= self.trigger_val_acc <= 1, "trigger_val_acc", self.trigger_val_acc, "must be in [0, 1]")
        require(self.compression >= 1, "compression", self.compression, "must be >= 1")
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
        return cosine(self._peak(i), self.lr_min, T_cur / T_i)

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
            self.next_peak = max(self.peaks[i] / self.compression, self.lr(t, ending=True))

    def cycle_ends(self) -> list[float]:
        """Known once triggered: the restarts of the SGDR cycles that began then."""
        start = self.triggered_at
        if start is None:
            return []
        ends = [start + e for e in restart_times(self.T_0, self.T_mult, self.total - start)]
        return ends_within(ends, self.total, self.interval)

    def describe(self) -> str:
        return (
            f"AdaptiveSGDR(T_0={self.T_0}, T_mult={self.T_mult}, lr_min={self.lr_min}, "
            f"trigger_val_acc={self.trigger_val_acc}, compression={self.compression})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "triggered_at": self.triggered_at,
            "peaks": list(self.peaks),
            "next_peak": self.next_peak,
            "best_val_acc": self.best_val_acc,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.triggered_at, self.peaks = state["triggered_at"], list(state["peaks"])
        self.next_peak, self.best_val_acc = state["next_peak"], state["best_val_acc"]
