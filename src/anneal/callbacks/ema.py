"""The exponential moving average of the weights, on torch.optim.swa_utils."""

from __future__ import annotations

from pathlib import Path

from torch.optim.swa_utils import get_ema_multi_avg_fn

from anneal.callbacks.averaging import WeightAverage, every
from anneal.errors import require
from anneal.schedules import Span


class EMA(WeightAverage):
    """Exponential moving average of the weights and buffers: avg <- decay * avg + (1 - decay) * w,
    after every `every_n_steps`-th optimizer step from `start` on."""

    prefix, title = "ema", "EMA"

    def __init__(
        self,
        decay: float = 0.999,
        every_n_steps: int = 1,
        start: float | str = 0.0,
        bn_update: bool = False,
        output_dir: str | Path | None = None,
    ):
        require(0 < decay < 1, "decay", decay, "must be in (0, 1)")
        require(
            isinstance(every_n_steps, int) and every_n_steps >= 1,
            "every_n_steps",
            every_n_steps,
            "must be an integer >= 1",
        )
        super().__init__(
            Span.parse(start, "start", shares=True),
            start_key="start",
            bn_update=bn_update,
            use_buffers=True,
            multi_avg_fn=get_ema_multi_avg_fn(decay),
            output_dir=output_dir,
        )
        self.every_n_steps = every_n_steps

    def updates_planned(self) -> int | None:
        assert self.clock is not None
        return every(self.start_step, self.clock.total_steps, self.every_n_steps)

    def should_update(self, step: int) -> bool:
        return (step - self.start_step) % self.every_n_steps == 0
