"""A multirun is continued by running it again; its parallel local jobs share the machine's cores.

Hydra cannot resume a multirun (Hydra issues 1407 and 3328): each job of the same command and sweep directory
finds its own directory as an earlier run of the sweep left it, and goes on from there. A finished job is
skipped (its recorded result is returned to the sweeper), a stopped, killed or failed one resumes from its
`checkpoints/last.ckpt` (a failed one without a checkpoint, or a killed one that never wrote one, starts
again), and one never started starts. A directory that holds a run with other settings is refused.

A sweep that a signal stopped leaves a mark in its directory (`STOPPED`, anneal.sweep_control): a job that
finds it does not start."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from anneal.errors import DirectoryTaken
from anneal.record import Arm, RunFiles, RunRecord, UnreadableRun
from anneal.run_dir import is_locked

log = logging.getLogger("anneal")
STOPPED = ".anneal-stopped"  # in the sweep directory: the number of the signal that stopped the sweep
THREADS = "ANNEAL_THREADS_PER_JOB"  # torch threads of each job of a sweep: set to override the share of cores
AT_ONCE = "ANNEAL_JOBS_AT_ONCE"  # set by the sweep's process for its jobs: how many of them run at once
NEW, RESUME, FINISHED, NOT_STARTED = "new", "resume", "finished", "not started"


def sweep_job() -> tuple[Path, int] | None:
    """The sweep directory and job number, in a job of a multirun."""
    if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        return None
    return Path(HydraConfig.get().sweep.dir), int(HydraConfig.get().job.num)


def differences(record: RunRecord, arm: Arm, seed: Any) -> list[str]:
    """The settings (and options, and the seed) in which a recorded run differs from this job. The data's identity
    is known only once the data is loaded: before that (`arm.data` empty) the recorded one is not compared."""
    if not arm.data:
        record = replace(record, arm=replace(record.arm, data={}))
    if record.arm.id == arm.id and record.seed == seed:
        return []
    was, now = record.arm.values(), arm.values()
    pairs = [(k, was.get(k), now.get(k)) for k in {*was, *now}] + [("seed", record.seed, seed)]
    return sorted(f"{k}: {a!r} there, {b!r} now" for k, a, b in pairs if json.dumps(a) != json.dumps(b))


def earlier_state(run_dir: Path, sweep_dir: Path, arm: Arm, seed: Any) -> str:
    """What this job of a sweep run again does with what an earlier run of the sweep left in its directory."""
    if (sweep_dir / STOPPED).is_file():
        return NOT_STARTED
    files = RunFiles(run_dir)
    if not files.record.is_file() or is_locked(run_dir):  # (a live run's directory: claiming it says so)
        return NEW
    try:
        record = RunRecord.load(files)
    except UnreadableRun:
        return NEW  # the run says so, and refuses the directory if it holds a run that has started
    if changed := differences(record, arm, seed):
        raise DirectoryTaken(
            "hydra.sweep.dir",
            str(sweep_dir),
            text=(
                f"{{key}}={sweep_dir}: job {run_dir.name} holds a run with other settings ({'; '.join(changed)}): "
                f"running a sweep again continues it with the same settings; choose another sweep directory for "
                f"another sweep"
            ),
        )
    if files.results.is_file() or record.status == "finished":
        return FINISHED
    return RESUME if files.last_checkpoint.is_file() else NEW


def announce(state: str, run_dir: Path, job: int, status: str) -> None:
    if state == FINISHED:
        log.info("job %d finished earlier (%s): skipped", job, run_dir)
    elif state == RESUME:
        log.info("job %d %s earlier: resuming it from %s", job, status, RunFiles(run_dir).last_checkpoint)
    elif state == NOT_STARTED:
        log.info("job %d not started: the sweep was stopped; run the same command again to continue it", job)


def recorded_status(run_dir: Path) -> str:
    try:
        status = RunRecord.load(RunFiles(run_dir)).status
    except UnreadableRun:
        return "stopped"
    return "was killed" if status == "started" else status


def local_slots(jobs: int) -> int:
    """How many of a sweep's jobs run at once in processes of their own on this machine: one per core."""
    return max(1, min(jobs, len(os.sched_getaffinity(0))))


def share_threads() -> int | None:
    """Torch's threads for a job of a sweep whose jobs run at once: the cores this process may use, shared by
    the jobs running at once (ANNEAL_THREADS_PER_JOB overrides it); None where the job has the machine to itself."""
    if os.environ.get(THREADS):
        threads = int(os.environ[THREADS])
    elif int(os.environ.get(AT_ONCE, "1")) > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // int(os.environ[AT_ONCE]))
    else:
        return None
    import torch

    torch.set_num_threads(threads)
    log.info(
        "sweep: %s jobs at once share %d cores: %d torch threads each",
        os.environ.get(AT_ONCE, "1"),
        len(os.sched_getaffinity(0)),
        threads,
    )
    return threads
