"""What a callback may do in a run beyond Lightning's hooks: change the lr plan, read it, declare and report results."""

from __future__ import annotations

from typing import Any

import lightning as L

from anneal.record import Evaluation, Metric
from anneal.schedules import LrPlan, LrSwitch


class RunCallback(L.Callback):
    """A Lightning callback that takes part in a run. The run calls these, in this order; each default
    does nothing. Settings errors raised here stop the run before training, naming the setting."""

    def lr_switch(self) -> LrSwitch | None:
        """A switch of the lr from some point of training on (SWA's swa_lr), composed into the plan."""
        return None

    def use_plan(self, plan: LrPlan) -> None:
        """The run's lr plan, before training: keep what you read from it; check your settings against it."""

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

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any) -> dict[str, Any]:
        """After training and testing: what goes into results.json (evaluated on rank 0, or on every rank)."""
        return {}
