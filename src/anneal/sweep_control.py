"""The sweep as a whole, in the process that launches its jobs (anneal.sweep_jobs says how each job continues an
earlier run of the sweep): a signal that stops a job stops the sweep and says how to continue it, the jobs
that run at once share the cores, and a line says when each job starts and ends.

A job stopped by a signal stops the sweep: it stops as a single run does (a checkpoint, its message, its exit
code) and no further job starts. With Hydra's basic launcher the jobs run in the sweep's own process, which
then exits; a launcher that runs them in processes of their own (joblib, submitit) learns it from a mark in
the sweep directory (`sweep_jobs.STOPPED`): a job that finds it does not start, and the sweep ends with the
signal's exit code once its launcher is done."""

from __future__ import annotations

import logging
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from anneal.storage import save_text
from anneal.sweep_jobs import AT_ONCE, STOPPED, local_slots

if TYPE_CHECKING:  # (Hydra builds its callbacks before anneal imports torch: W&B's service starts first)
    from anneal.interrupts import Interrupted

log = logging.getLogger("anneal")
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def continue_command(sweep_dir: Path) -> str:
    """The command that continues the sweep: the same one, with its sweep directory if it chose none."""
    argv = ["python", *sys.argv]
    if not any(a.lstrip("+").startswith("hydra.sweep.dir=") for a in argv):
        argv.append(f"hydra.sweep.dir={sweep_dir}")
    return shlex.join(argv)


def stop_sweep(error: Interrupted, sweep_dir: Path) -> None:
    """A job stopped by a signal stops its sweep: at once (SystemExit with the signal's code) where the jobs run in
    the sweep's process; else by the mark that keeps the next jobs from starting (the launcher's process ends the
    sweep with the code)."""
    if HydraConfig.get().launcher.get("_target_") == BASIC:
        print(f"anneal: error: {stopped_sweep(error.signum, sweep_dir)}", file=sys.stderr)
        raise SystemExit(128 + error.signum)
    save_text(str(error.signum), sweep_dir / STOPPED)


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def stopped_sweep(signum: int, sweep_dir: Path) -> str:
    return (
        f"the sweep was stopped by {signal_name(signum)}; no further job started. Continue it by running "
        f"the same command again: {continue_command(sweep_dir)}"
    )


def jobs_of(overrides: list[str]) -> int:
    """How many jobs a basic sweep of these overrides has (each sweep `a=1,2` multiplies them)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return math.prod(len(list(o.sweep_iterator())) for o in parsed if o.is_sweep_override())


def at_once(config: DictConfig, jobs: int) -> int:
    """How many jobs the sweep's launcher runs at the same time on this machine."""
    launcher = config.hydra.launcher
    target = str(launcher.get("_target_", ""))
    if "Joblib" in target:
        n = int(launcher.get("n_jobs") or 1)
        return min(jobs, n if n > 0 else max(1, (os.cpu_count() or 1) + 1 + n))
    if target.endswith("LocalLauncher"):  # submitit's local executor, in turns (anneal.launchers.OnThisMachine)
        return local_slots(jobs)
    return 1


class SweepControl(Callback):
    """In the sweep's process: clears an earlier run's stop mark, tells the jobs how many run at once (their share
    of the cores), says when each job starts and ends, and ends a sweep that a signal stopped with its code."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        (sweep_dir / STOPPED).unlink(missing_ok=True)
        try:
            jobs = jobs_of(list(config.hydra.overrides.task))
        except Exception:  # a sweeper of its own (Optuna): its batch size is what runs at once
            jobs = 1
        os.environ[AT_ONCE] = str(at_once(config, jobs))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            job = int(config.hydra.job.num)
            self.started[job] = time.perf_counter()
            overrides = " ".join(config.hydra.overrides.task)
            log.info("sweep: job %d started (%s)", job, overrides)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            job = int(config.hydra.job.num)
            seconds = time.perf_counter() - self.started.pop(job, time.perf_counter())
            log.info("sweep: job %d ended (%s) after %.0f s", job, job_return.status.name.lower(), seconds)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        mark = Path(config.hydra.sweep.dir) / STOPPED
        if mark.is_file():
            signum = int(mark.read_text().strip() or 15)
            print(f"anneal: error: {stopped_sweep(signum, Path(config.hydra.sweep.dir))}", file=sys.stderr)
            raise SystemExit(128 + signum)  # as shells report a signal's end
