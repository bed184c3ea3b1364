"""How long a run took to reach its first optimizer step, from the start of the process."""

from __future__ import annotations

import os

import lightning as L

from anneal.callbacks.base import RunCallback


def seconds_since_process_start() -> float | None:
    """From /proc on Linux (the process's start tick against the system's uptime); None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class StartupTimer(RunCallback):
    """Puts `time_to_first_step` (seconds from process start to the first training batch) in the results."""

    def __init__(self) -> None:
        self.time_to_first_step: float | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        if self.time_to_first_step is None:
            self.time_to_first_step = seconds_since_process_start()

    def results(self, trainer: L.Trainer, module: object, datamodule: object) -> dict[str, float]:
        return {} if self.time_to_first_step is None else {"time_to_first_step": round(self.time_to_first_step, 2)}
