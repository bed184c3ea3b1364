"""Clocks that benchmarks/sweeps.py adds to every job of a sweep by config (on PYTHONPATH): when the job's
process started, when the launcher began the job, when its first optimizer step began and when the job ended,
all wall-clock (time.time()) so that jobs in different processes compare. Written to <run dir>/timing.json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback

from anneal.callbacks.startup import seconds_since_process_start

CLOCKS: dict[str, Any] = {}  # this process's current job (a worker process runs several, one after another)


class JobClock(Callback):
    """A Hydra callback: the job's start and end, in the job's own process."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        now = time.time()
        CLOCKS.clear()
        CLOCKS.update(job_start=now, process_start=now - (seconds_since_process_start() or 0.0), pid=os.getpid())

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        CLOCKS["job_end"] = time.time()
        path = Path(HydraConfig.get().runtime.output_dir) / "timing.json"
        path.write_text(json.dumps(CLOCKS, indent=2) + "\n")


class FirstStep(L.Callback):
    """A Lightning callback: when the first training batch of the job begins."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        CLOCKS.setdefault("first_step", time.time())
