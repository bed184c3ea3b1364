"""The Hydra callback that keeps a multirun's summary and study up to date in its sweep directory.

It runs in each job's process (in the launcher's process for Hydra's basic launcher, in every job's own for
submitit, Ray or joblib), so jobs on different processes or nodes rewrite the files in turns (outputs.exclusive).
`python -m anneal.report SWEEP_DIR [--watch]` writes the same files by hand."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from anneal.report.outputs import write_sweep_files
from anneal.report.study import HEADLINE, Study
from anneal.report.wandb_summary import log_study_run, logs_to_wandb

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    """Rewrites the summary and the study after every job (so a failed or interrupted sweep still has them) and
    at the end, when it also logs the study to W&B if the jobs did. A report that cannot be written is logged,
    never raised: the jobs' own results matter more than their summary."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            self.write(Path(HydraConfig.get().sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        written = self.write(sweep_dir)
        if written is not None and logs_to_wandb(config):
            try:
                log_study_run(config, sweep_dir, *written)
            except Exception:
                log.exception("the W&B study run of %s could not be logged", sweep_dir)

    @staticmethod
    def write(sweep_dir: Path) -> tuple[Study, dict[str, Path]] | None:
        try:
            return write_sweep_files(sweep_dir, HEADLINE)
        except Exception:
            log.exception("the summary of %s could not be written", sweep_dir)
            return None
