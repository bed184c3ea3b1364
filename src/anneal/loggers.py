"""The W&B logger: offline unless an API key is configured, so that a run never blocks on the network."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from anneal.wandb_start import wandb_mode

log = logging.getLogger(__name__)


class StepWandbLogger(WandbLogger):
    """W&B's own step is the run's global step: a resumed run (a new segment of the same W&B run) goes on from the
    step it stopped at instead of restarting at 0, which W&B would drop as steps going backwards when it merges
    the segments. Everything anneal logs to W&B passes the global step."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is None:
            super().log_metrics(metrics, step)
        else:
            self.experiment.log({**metrics, "trainer/global_step": step}, step=step)


def previous_run_id(save_dir: str) -> str | None:
    """The id of the newest W&B run under save_dir (online `run-<time>-<id>` or `offline-run-<time>-<id>`)."""
    runs = sorted(Path(save_dir, "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def wandb_logger(
    project: str = "anneal",
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    save_dir: str = ".",
    mode: str = "auto",
    init_timeout: float = 30,
    resuming_from: str | None = None,
    **kwargs: Any,
) -> WandbLogger:
    """A WandbLogger whose run has started: online with an API key, offline without one, and offline instead
    when the server cannot be reached or refuses the key (`wandb sync` uploads it later), so that a run never
    dies of its logging. Build it only once the run's settings have been checked: it starts the W&B run."""
    import wandb

    mode = wandb_mode(mode)
    if resuming_from and "id" not in kwargs and (previous := previous_run_id(save_dir)):
        kwargs["id"] = previous  # a resumed training run goes on in the same W&B run

    def start(mode: str) -> WandbLogger:
        # mode goes to wandb.init; WandbLogger(offline=True) would set WANDB_MODE for the whole process
        logger = StepWandbLogger(
            project=project,
            name=name,
            group=group,
            tags=list(tags or []),
            save_dir=save_dir,
            mode=mode,
            settings=wandb.Settings(init_timeout=init_timeout),
            **kwargs,
        )
        logger.experiment  # noqa: B018 (starts the run: a refused key or an unreachable server shows here)
        return logger

    if mode != "online":
        if mode == "offline":
            log.info(
                "W&B offline (no API key configured): the run is saved under %s/wandb; `wandb sync` uploads it",
                save_dir,
            )
        return start(mode)
    try:
        return start(mode)
    except Exception as error:  # wandb raises CommError, UsageError, AuthenticationError, timeouts ...
        log.warning(
            "W&B could not start online (%s: %s); logging offline under %s/wandb instead",
            type(error).__name__,
            error,
            save_dir,
        )
        return start("offline")
