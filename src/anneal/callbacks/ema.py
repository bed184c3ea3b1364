"""The exponential moving average of the weights, on torch.optim.swa_utils."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from anneal.bn_update import checked_images
from anneal.callbacks.averaging import WeightAverage, every
from anneal.errors import require
from anneal.schedules import Span


class EMA(WeightAverage):
    """Exponential moving average of the weights and buffers: avg <- decay * avg + (1 - decay) * w, after every
    `every_n_steps`-th optimizer step from `start` on; the first update copies the weights. warmup=true forgets the
    first, poor weights fast: the n-th update after the first uses min(decay, (1 + n) / (10 + n)) (0.18, 0.25, ...),
    TensorFlow's ExponentialMovingAverage(num_updates) warmup, as in timm's ModelEmaV3 (whose default is a power
    form) and Tarvainen & Valpola 2017's mean teacher (min(1 − 1 / (n + 1), decay))."""

    prefix, title = "ema", "EMA"

    def __init__(
        self,
        decay: float = 0.999,
        every_n_steps: int = 1,
        start: float | str = 0.0,
        bn_update: bool = False,
        warmup: bool = False,
        bn_update_images: int | float | None = None,
        output_dir: str | Path | None = None,
    ):
        require(0 < decay < 1, "decay", decay, "must be in (0, 1)")
        require(
            isinstance(every_n_steps, int) and every_n_steps >= 1,
            "every_n_steps",
            every_n_steps,
            "must be an integer >= 1",
        )
        require(isinstance(warmup, bool), "warmup", warmup, "true or false")
        super().__init__(
            Span.parse(start, "start", shares=True),
            start_key="start",
            bn_update=bn_update,
            use_buffers=True,
            multi_avg_fn=self.warmed if warmup else get_ema_multi_avg_fn(decay),
            output_dir=output_dir,
        )
        self.every_n_steps, self.decay, self.warmup = every_n_steps, decay, warmup
        self.bn_update_images = checked_images(bn_update_images)
        self.updates = 0  # taken so far (kept in Python: reading the average's count would wait for the device)

    def decay_at(self, n: int) -> float:  # the n-th update after the first, n >= 1
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    def warmed(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        get_ema_multi_avg_fn(self.decay_at(self.updates))(averaged, current, num_averaged)

    def update(self, network: nn.Module, step: int) -> None:
        super().update(network, step)
        self.updates += 1

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.average is not None and self._pending_state is None:
            self.updates = int(self.average.n_averaged.item())

    def updates_planned(self) -> int | None:
        assert self.clock is not None
        return every(self.start_step, self.clock.total_steps, self.every_n_steps)

    def should_update(self, step: int) -> bool:
        return (step - self.start_step) % self.every_n_steps == 0
