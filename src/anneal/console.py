"""What a run prints: Lightning's messages through the root logger once (Hydra's console and the run's log
file), without its advertisements and without warnings about what anneal does on purpose."""

from __future__ import annotations

import logging
import warnings


class DropTips(logging.Filter):
    """Lightning's advertisements for its cloud products."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_library_noise() -> None:
    """Lightning's loggers print through their own handlers as well as the root's: send them through the root's
    only, once; drop Lightning's tips and warnings about things anneal does on purpose."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropTips) for f in logger.filters):
            logger.addFilter(DropTips())
    warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")  # no val split
    # the per-step curves are logged whatever log_every_n_steps is (callbacks.step_curves)
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller than the logging interval")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    # a branched cooldown resumes without the callback that saved its branch point; every callback that changes
    # what a run computes is held to the checkpoint's by the resume check instead
    warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks used to create")


def log_to_files(message: str, name: str = "anneal", level: int = logging.ERROR) -> None:
    """A line for the run's log files only (the root logger's file handlers): for a message the console is given
    once by other means, so that a terminal does not show it twice."""
    logger = logging.getLogger(name)
    record = logger.makeRecord(name, level, "(anneal)", 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and level >= handler.level:
            handler.handle(record)
