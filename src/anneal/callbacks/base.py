"""What a callback may do in a run beyond Lightning's hooks: change the lr plan, read it, report results."""

from __future__ import annotations

from typing import Any

import lightning as L

from anneal.schedules import LrPlan, LrSwitch


class RunCallback(L.Callback):
    """A Lightning callback that takes part in a run. The run calls these, in this order; each default
    does nothing. Settings errors raised here stop the run before training, naming the setting."""

    def lr_switch(self) -> LrSwitch | None:
        """A switch of the lr from some point of training on (SWA's swa_lr), composed into the plan."""
        return None

    def use_plan(self, plan: LrPlan) -> None:
        """The run's lr plan, before training: keep what you read from it; check your settings against it."""

    def result_metrics(self, has_val: bool) -> list[str]:
        """The numeric results.json keys `results` will produce (a sweeper may optimize one of them)."""
        return []

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any) -> dict[str, Any]:
        """After training and testing: what goes into results.json (evaluated on rank 0, or on every rank)."""
        return {}
