"""Latest weight averaging: the uniform mean of a sliding window of the network's latest weights."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from anneal.bn_update import checked_images
from anneal.callbacks.averaging import WeightAverage, every
from anneal.callbacks.base import network_of
from anneal.errors import require
from anneal.schedules import Clock, LrPlan, Span


def mean_weights(states: list[dict[str, Tensor]], device: torch.device) -> dict[str, Tensor]:
    """The uniform mean of each floating tensor; integer buffers (BatchNorm's batch counter) are the newest's."""
    newest = states[-1]
    return {
        key: torch.stack([s[key].to(device) for s in states]).mean(0) if value.is_floating_point() else value.to(device)
        for key, value in newest.items()
    }


class LAWA(WeightAverage):
    """Latest weight averaging (Kaddour 2022, "Stop Wasting My Time!"; Sanyal et al. 2023): the uniform mean of the
    network's weights at the latest k of the points taken every `every` (epochs, 'N steps' or 'P%' of training)
    from `start` on. A window, not a running mean like SWA's: the k copies are kept, in checkpoints too, and
    averaged when evaluated. BatchNorm statistics are recomputed as for SWA (bn_update) or averaged with the rest."""

    prefix, title = "lawa", "LAWA"

    def __init__(
        self,
        k: int = 5,
        every: float | str = 1,
        start: float | str = 0.0,
        bn_update: bool = True,
        bn_update_images: int | float | None = None,
        output_dir: str | Path | None = None,
    ):
        require(isinstance(k, int) and not isinstance(k, bool) and k >= 1, "k", k, "an integer >= 1")
        super().__init__(
            Span.parse(start, "start", shares=True),
            start_key="start",
            bn_update=bn_update,
            use_buffers=not bn_update,
            output_dir=output_dir,
        )
        self.bn_update_images = checked_images(bn_update_images)
        self.k, self.every = k, Span.parse(every, "every")
        self.every_steps = 1
        self.window: list[dict[str, Any]] = []  # {"step", "weights"}, oldest first

    def every_steps_of(self, plan: LrPlan) -> int:
        return self.every_steps_at(plan.clock)

    def every_steps_at(self, clock: Clock) -> int:
        return clock.step_at(self.every.epochs(clock.total_epochs, clock))

    def check_against(self, clock: Clock) -> None:
        self.every_steps = self.every_steps_at(clock)
        require(
            1 <= self.every_steps <= clock.total_steps,
            "every",
            str(self.every),
            f"must be at least one optimizer step and at most the run's {clock.total_epochs:g} epochs",
        )

    def updates_planned(self) -> int | None:
        assert self.clock is not None
        return every(self.start_step, self.clock.total_steps, self.every_steps)

    def past_differs(self, old: LrPlan, new: LrPlan, step: int) -> str | None:
        if (moved := super().past_differs(old, new, step)) is not None:
            return moved
        was, now = self.every_steps_of(old), self.every_steps_of(new)
        if was != now and self.start_step_of(new) + min(was, now) <= step:
            return f"every={self.every} would take the window's weights every {now} steps instead of {was}"
        return None

    def should_update(self, step: int) -> bool:
        return (step - self.start_step) % self.every_steps == 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        """Nothing to create: the window fills as training goes."""
        self.find_plan(trainer)

    def update(self, network: nn.Module, step: int) -> None:
        weights = {key: value.detach().clone() for key, value in network.state_dict().items()}
        self.window = [*self.window, {"step": step, "weights": weights}][-self.k :]

    def averaged(self, module: Any) -> tuple[nn.Module, int]:
        if not self.window:
            return network_of(module), 0
        network = copy.deepcopy(network_of(module))
        network.load_state_dict(mean_weights([w["weights"] for w in self.window], module.device))
        return network, len(self.window)

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window, self.last_step = list(state["window"]), state["last_step"]

    def results(self, trainer: L.Trainer, module: Any, datamodule: Any = None) -> dict[str, Any]:
        results = super().results(trainer, module, datamodule)
        clock = self.clock
        assert clock is not None
        return results | {f"{self.prefix}/epochs": [clock.epochs(w["step"]) for w in self.window]}
