"""A callback the sweep-continuation tests add by config (`+callbacks.trouble._target_=sweep_trouble.Trouble`):
the jobs it names meet their trouble once, after an optimizer step: `raise@4` (the job fails after step 4) or
`SIGTERM@12` (sent to this process after step 12). Once: each trouble leaves a mark in the directory
$SWEEP_TROUBLE and never comes again, so that the same command run again meets none, as a sweep hit by a
passing fault."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig


class Trouble(L.Callback):
    def __init__(self, jobs: dict[Any, str]):
        self.jobs = {int(k): v.split("@") for k, v in jobs.items()}

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        job = int(HydraConfig.get().job.num)
        if job not in self.jobs or trainer.global_step != int(self.jobs[job][1]):
            return
        mark = Path(os.environ["SWEEP_TROUBLE"]) / str(job)
        if mark.exists():
            return
        mark.touch()
        if self.jobs[job][0] == "raise":
            raise RuntimeError(f"trouble planted in job {job}")
        os.kill(os.getpid(), getattr(signal, self.jobs[job][0]))
