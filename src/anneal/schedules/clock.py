"""Training time: optimizer steps and epochs, and the settings that may be given in either."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from anneal.errors import ConfigError, require

EPS = 1e-9  # boundaries computed in floating point (5 * 0.1, 2.5 * 3) land within this of the exact value


@dataclass(frozen=True)
class Clock:
    """A run's optimizer steps per epoch and its length in steps: the one place where steps and epochs convert."""

    steps_per_epoch: int
    total_steps: int

    def __post_init__(self) -> None:
        require(self.steps_per_epoch >= 1, "steps_per_epoch", self.steps_per_epoch, "must be >= 1")
        require(self.total_steps >= 1, "total_steps", self.total_steps, "training must last at least one step")

    @property
    def total_epochs(self) -> float:
        return self.total_steps / self.steps_per_epoch

    def epochs(self, step: float) -> float:
        return step / self.steps_per_epoch

    def step_at(self, epochs: float) -> int:
        """The first optimizer step whose time is at or after `epochs`."""
        return math.ceil(epochs * self.steps_per_epoch - EPS)

    @classmethod
    def for_training(
        cls,
        batches_per_epoch: int,
        *,
        limit_batches: int | float = 1.0,
        accumulate: int = 1,
        max_epochs: int | None = None,
        max_steps: int = -1,
    ) -> Clock:
        """The clock of a Lightning run: `limit_batches` caps (an int) or scales (a float) the batches of an
        epoch, an optimizer step comes every `accumulate` batches and at the end of each epoch, and training
        ends at `max_steps` or `max_epochs`, whichever comes first (Lightning's rules, checked against its
        own count when fitting starts)."""
        if isinstance(limit_batches, int):
            batches = min(batches_per_epoch, limit_batches)
        else:
            batches = int(batches_per_epoch * limit_batches)
        require(batches >= 1, "limit_train_batches", limit_batches, f"leaves no batch of the {batches_per_epoch}")
        return cls.of_length(math.ceil(batches / accumulate), max_epochs=max_epochs, max_steps=max_steps)

    @classmethod
    def of_length(cls, steps_per_epoch: int, *, max_epochs: int | None = None, max_steps: int = -1) -> Clock:
        """A run of `steps_per_epoch` that ends at `max_steps` or `max_epochs`, whichever comes first."""
        if max_epochs is None:  # Lightning: unlimited epochs when max_steps is given, else 1000
            max_epochs = -1 if max_steps != -1 else 1000
        limits = [steps_per_epoch * max_epochs] if max_epochs != -1 else []
        limits += [max_steps] if max_steps != -1 else []
        require(bool(limits), "max_epochs", max_epochs, "set max_epochs or max_steps: training must end")
        return cls(steps_per_epoch, min(limits))


_SPAN = re.compile(r"^\s*([0-9.eE+-]+)\s*(%|epochs?|steps?)\s*$")
SPAN_FORMS = "a number of epochs, 'N epochs', 'N steps' (optimizer steps) or 'P%' (of training)"


@dataclass(frozen=True)
class Span:
    """An amount of training time as a setting gives it: epochs (`5`, `'5 epochs'`), optimizer steps
    (`'2000 steps'`) or a share of training (`'75%'`). For settings that once read a bare number below 1 as
    a share of training (`shares=True`), such a number is refused as ambiguous."""

    amount: float
    unit: str = "epochs"  # epochs | steps | fraction

    @classmethod
    def parse(cls, value: object, key: str, shares: bool = False, positive: bool = False) -> Span:
        """`positive`: a span that must be longer than nothing (a cooldown), said as such for any value below."""
        if isinstance(value, Span):
            return value
        least = "> 0" if positive else ">= 0"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
            require(ok, key, value, f"must be {least}: {SPAN_FORMS}")
            if shares and 0 < value < 1:
                raise ConfigError(
                    key, value, f"is ambiguous: write {value * 100:g}% for a share of training or '{value:g} epochs'"
                )
            return cls(float(value))
        match = _SPAN.match(value) if isinstance(value, str) else None
        try:
            amount = float(match.group(1)) if match else math.nan
        except ValueError:
            amount = math.nan
        require(match is not None and math.isfinite(amount) and amount >= 0, key, value, SPAN_FORMS)
        require(amount > 0 or not positive, key, value, f"must be {least}: {SPAN_FORMS}")
        assert match is not None
        unit = {"%": "fraction", "epoch": "epochs", "step": "steps"}.get(match.group(2), match.group(2))
        if unit == "fraction":
            require(amount <= 100, key, value, "a share of training is at most 100%")
            return cls(amount / 100, "fraction")
        require(unit != "steps" or amount == int(amount), key, value, "a whole number of steps")
        return cls(amount, unit)

    def epochs(self, total: float, clock: Clock | None = None) -> float:
        """In epochs, for a run (or schedule) of `total` epochs on `clock`."""
        if self.unit == "fraction":
            return self.amount * total
        if self.unit == "steps":
            if clock is None:
                raise ValueError(f"{self} needs the run's clock to be converted to epochs")
            return clock.epochs(self.amount)
        return self.amount

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.unit == "fraction" else f"{self.amount:g} {self.unit}"
