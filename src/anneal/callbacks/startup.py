"""How long a job took to reach its first optimizer step, from the job's start: the process's start for the
first job of a process (imports included: what a user waits for), the job's own start for each later job of a
multirun that Hydra runs in the same process (their imports were paid once, by the first)."""

from __future__ import annotations

import os
import time

import lightning as L

from anneal.callbacks.base import RunCallback
from anneal.record import Evaluation, Metric, seconds


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


class JobStart:
    """When the current job of this process started (time.time() seconds), set by `begin` at each job's start."""

    at: float | None = None
    jobs = 0

    @classmethod
    def begin(cls) -> None:
        since_process = seconds_since_process_start() if cls.jobs == 0 else None
        cls.at = time.time() - since_process if since_process is not None else time.time()
        cls.jobs += 1


class StartupTimer(RunCallback):
    """Puts `time_to_first_step` (seconds from the job's start to its first training batch) in the results."""

    def __init__(self) -> None:
        self.time_to_first_step: float | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        if self.time_to_first_step is None and JobStart.at is not None:
            self.time_to_first_step = time.time() - JobStart.at

    def declare(self, evaluation: Evaluation) -> list[Metric]:
        return [seconds("time_to_first_step", "time from the job's start to its first step (s)")]

    def results(self, trainer: L.Trainer, module: object, datamodule: object = None) -> dict[str, float]:
        return {} if self.time_to_first_step is None else {"time_to_first_step": round(self.time_to_first_step, 2)}
