"""One W&B run per sweep that holds its study: the per-arm table and the figures.

W&B groups each job with the other seeds of its arm and averages their curves; what it cannot show is the
comparison of arms (paired over seeds) that the study table holds, so that table is logged once, from the
finished sweep, as a run of job type `study`, tagged and configured with the sweep's name like its jobs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, cast

from omegaconf import DictConfig, OmegaConf

from anneal.report.study import Study
from anneal.report.tables import study_rows
from anneal.wandb_start import wandb_mode

log = logging.getLogger(__name__)
FIGURES = {
    "study/heatmap": "study_heatmap.png",
    "study/curves": "study_curves.png",
    "study/runs": "summary.png",
    "study/budgets": "budgets.png",
}


def logs_to_wandb(config: DictConfig) -> bool:
    return str(OmegaConf.select(config, "logger._target_", default="") or "").endswith("wandb_logger")


def log_study_run(config: DictConfig, sweep_dir: Path, study: Study, paths: dict[str, Path]) -> str:
    """Start the sweep's study run, log the table and the figures, finish it; returns the run's directory."""
    import wandb

    if wandb.run is not None:  # a job's run left open (one that failed): the study run is a run of its own
        wandb.finish()
    sweep = sweep_dir.resolve().name
    group = f"{sweep} study"

    def start(mode: str) -> Any:
        return wandb.init(
            project=OmegaConf.select(config, "logger.project", default="anneal"),
            group=group,
            job_type="study",
            name=group,
            tags=[f"sweep-{sweep}"[:64]],  # the tag the sweep's jobs carry
            config={"sweep": sweep},
            dir=str(sweep_dir),
            mode=cast(Literal["online", "offline", "disabled"], mode),
        )

    mode = wandb_mode(OmegaConf.select(config, "logger.mode") or "auto")  # offline without an API key
    try:
        run = start(mode)
    except Exception as error:  # as the jobs do (anneal.loggers): an unreachable server means offline
        if mode != "online":
            raise
        log.warning("W&B could not start online (%s); logging the study offline instead", error)
        run = start("offline")
    try:
        columns, rows = study_rows(study)
        header: list[str | int] = list(columns)
        data = [[row.get(column) for column in columns] for row in rows]  # None, not "": W&B types each column
        run.log({"study/table": wandb.Table(columns=header, data=data)})
        images = {key: wandb.Image(str(paths[name])) for key, name in FIGURES.items() if name in paths}
        if images:
            run.log(images)
        log.info("W&B study run of the sweep in group %s: %s", group, run.dir)
        return run.dir
    finally:
        run.finish()
