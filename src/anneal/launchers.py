"""Hydra's submitit launchers for anneal's runs: on SLURM (`hydra/launcher=slurm`) or on one machine through
submitit's local executor (`hydra/launcher=slurm_local`), which pickles each job and runs it in a process of
its own as SLURM does. Each job notes in its run directory where submitit writes its log (job.json); a job that
submitit requeues after a preemption or a time limit resumes from the checkpoints/last.ckpt its first attempt
left, where a plain requeue would refuse to start over a run that has started."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig

from anneal.errors import ConfigError, DataError, TrainingStopped
from anneal.record import RunFiles
from anneal.sweep_jobs import STOPPED, local_slots

log = logging.getLogger("anneal")
REPORTED = (ConfigError, DataError, TrainingStopped)  # train.py logs their message; others need their traceback


@dataclasses.dataclass(frozen=True)
class SubmititJob:
    """A sweep job's task as submitit runs it; `requeues` counts how often submitit has requeued it."""

    task: TaskFunction
    separate_stderr: bool = True
    requeues: int = 0

    def __call__(self, cfg: DictConfig) -> Any:
        import submitit  # (the job's process only)

        from anneal.storage import save_json

        environment = submitit.JobEnvironment()
        files = RunFiles(Path(cfg.output_dir))
        logs = {"log": str(environment.paths.stdout)}
        if self.separate_stderr:
            logs["stderr"] = str(environment.paths.stderr)
        if environment.global_rank == 0:  # (DDP's other tasks share the run directory)
            note: dict[str, Any] = {"launcher": f"submitit_{environment.cluster}", "job_id": environment.job_id}
            note |= {"host": environment.hostname, "requeues": self.requeues, **logs}
            save_json(note, files.job)
        if self.requeues and cfg.ckpt_path is None and files.last_checkpoint.is_file():
            log.info("requeued by submitit (%d): resuming from %s", self.requeues, files.last_checkpoint)
            cfg.ckpt_path = "last"
        try:
            return self.task(cfg)
        except Exception as error:
            log.error(
                "job %s failed (%s); its log: %s",
                environment.job_id,
                type(error).__name__,
                ", ".join(logs.values()),
                exc_info=not isinstance(error, REPORTED),
            )
            raise


class RequeueingLauncher(BaseSubmititLauncher):
    """The plugin's launcher, running each job's task as a `SubmititJob`. Submitit pickles the launcher as the
    job's callable and, on its preemption signal, calls `checkpoint` for the submission to requeue. (Hydra takes
    launchers only from the hydra_plugins package: hydra_plugins.anneal_sweeps has the two executors'.)"""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        job = SubmititJob(task_function, separate_stderr=not self.params.get("stderr_to_stdout", False))
        super().setup(hydra_context=hydra_context, task_function=job, config=config)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        assert isinstance(self.task_function, SubmititJob)
        requeued = copy.copy(self)
        requeued.task_function = dataclasses.replace(self.task_function, requeues=self.task_function.requeues + 1)
        return submitit.helpers.DelayedSubmission(requeued, *args, **kwargs)


class OnThisMachine(RequeueingLauncher):
    """submitit's local executor starts every job at once: a fresh interpreter each, all importing torch on the same
    cores. This runs them in turns of as many as the machine has cores (each job's torch threads are its share,
    anneal.sweep_jobs), and starts no further turn once a signal has stopped the sweep."""

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        returns: list[JobReturn] = []
        slots = local_slots(len(job_overrides))
        for start in range(0, len(job_overrides), slots):
            if (Path(str(self.config.hydra.sweep.dir)) / STOPPED).is_file():
                log.info("sweep: jobs %d and after not started: the sweep was stopped", initial_job_idx + start)
                break
            turn = job_overrides[start : start + slots]
            log.info("sweep: jobs %d-%d started", initial_job_idx + start, initial_job_idx + start + len(turn) - 1)
            returns += super().launch(turn, initial_job_idx + start)
            ended = ", ".join(
                f"{initial_job_idx + start + i} {r.status.name.lower()}" for i, r in enumerate(returns[start:])
            )
            log.info("sweep: jobs ended: %s", ended)
        return returns
