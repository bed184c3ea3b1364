"""One run wired from the composed config: claim the run directory and record what the run is, check every
setting, build data, network, lr plan, callbacks, trainer and loggers, then fit, test and record the results."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import lightning as L
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from anneal import config, sweep_jobs
from anneal.callbacks import JobStart
from anneal.console import quiet_library_noise
from anneal.data import ImageData
from anneal.errors import require
from anneal.interrupts import Interrupted, StopSignals
from anneal.lr_find import RecordingClassifier, lr_find
from anneal.module import Classifier
from anneal.preview import render
from anneal.record import RunFiles, RunRecord, assembly, read_json
from anneal.results import declarations, evaluation_of, gather, optimized, record_results
from anneal.run_dir import claimed, unclaimed
from anneal.schedules import LrPlan
from anneal.storage import load_tensors, save_text

log = logging.getLogger("anneal")


def run(cfg: DictConfig) -> float | None:
    """One run; a signal stops it in any phase with `Interrupted` (after a checkpoint, during training)."""
    JobStart.begin()
    if (job := sweep_jobs.sweep_job()) is not None:
        sweep_jobs.share_threads()
        state = continued(cfg, *job)
        if state == sweep_jobs.NOT_STARTED:
            return None
        if state == sweep_jobs.FINISHED:
            results = RunFiles(Path(cfg.output_dir)).results
            return optimized(read_json(results), cfg.optimized_metric) if results.is_file() else None
    stops = StopSignals()
    if threading.current_thread() is not threading.main_thread():  # (a launcher's worker thread: its handlers)
        return run_in(cfg, stops)
    with stops.installed():
        return run_in(cfg, stops)


def continued(cfg: DictConfig, sweep_dir: Path, job: int) -> str:
    """A job of a sweep run again goes on from what the earlier run left in its directory (anneal.sweep_jobs)."""
    run_dir = Path(cfg.output_dir)
    if cfg.ckpt_path is not None:  # a sweep that resumes on purpose
        return sweep_jobs.NEW
    state = sweep_jobs.earlier_state(run_dir, sweep_dir, config.arm_of_config(cfg), cfg.seed)
    sweep_jobs.announce(state, run_dir, job, sweep_jobs.recorded_status(run_dir))
    if state == sweep_jobs.RESUME and cfg.mode == "train":
        cfg.ckpt_path = "last"
    return state


def run_in(cfg: DictConfig, stops: StopSignals) -> float | None:
    quiet_library_noise()
    # (DDP's other processes run this too: the directory and its record are rank 0's)
    rank_zero = getattr(rank_zero_only, "rank", 0) == 0  # Lightning sets it from the launcher's environment
    claim = claimed if rank_zero else unclaimed
    resuming = cfg.mode == "train" and cfg.ckpt_path is not None
    with claim(Path(cfg.output_dir), resuming=resuming) as files:
        record = config.start_record(cfg, files, save=False)
        keeper = RecordKeeper(record, config.arm_label_soon(record.arm, record.overrides), files, rank_zero)
        if not resuming:  # a resume's record changes only once its checkpoint is accepted
            keeper.accept()
        with keeper.outcome():
            return run_checked(cfg, files, keeper, stops)


class RecordKeeper:
    """Keeps run.json (rank 0): written once the run is accepted (at once for a new run, after its checks for a
    resume, so that a refused resume leaves the record of the run it refused as it was), then updated with how
    the run ended: finished, failed (and why, in one line) or stopped by a signal."""

    def __init__(self, record: RunRecord, label: Future[str], files: RunFiles, writer: bool):
        self.record, self.label, self.files, self.writer, self.accepted = record, label, files, writer, False

    def labelled(self) -> RunRecord:
        """The record with its arm's label, once the label is ready (it is composed on a thread)."""
        if not self.record.label:
            self.record.label = self.label.result()
        return self.record

    def accept(self) -> None:
        self.accepted = True
        self.save()

    def save(self) -> None:
        if self.writer and self.accepted:
            self.labelled().save(self.files)

    @contextlib.contextmanager
    def outcome(self) -> Iterator[None]:
        try:
            yield
        except BaseException as error:
            stopped = isinstance(error, (Interrupted, SIGTERMException, KeyboardInterrupt))
            self.record.status = "stopped" if stopped else "failed"
            self.record.error = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.save()
            raise
        self.record.status, self.record.error = "finished", None
        self.save()


def run_checked(cfg: DictConfig, files: RunFiles, keeper: RecordKeeper, stops: StopSignals) -> float | None:
    record = keeper.record
    config.check_run_settings(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = config.build_data(cfg)
    spec = config.build_network(cfg, datamodule.num_classes)
    optimizer, peak = config.build_optimizer(cfg, spec.network)
    callbacks = config.build_callbacks(cfg)
    trainer = config.build_trainer(cfg, list(callbacks.values()))
    plan = config.build_plan(cfg, trainer, datamodule, callbacks, peak)
    record.network = config.part(cfg.model, spec.network, drop=("compile",), num_classes=datamodule.num_classes)
    record.data = config.part(cfg.data, datamodule)
    record.arm = replace(record.arm, data=datamodule.identity)  # loaded by now: what the run computes on
    keeper.save()
    module_type = RecordingClassifier if cfg.mode == "lr_find" else Classifier
    module = module_type(
        spec.network,
        optimizer,
        plan,
        num_classes=datamodule.num_classes,
        compile=spec.compile,
        heldout=datamodule.heldout or "val",
        settings=config.settings_of(cfg),
        bn_update_images=cfg.optimizer.get("bn_update_images"),
    )
    evaluation = evaluation_of(datamodule)
    declared = declarations(module, list(callbacks.values()), evaluation)
    if cfg.mode == "preview":
        preview(cfg, plan, files)
        return None
    config.name_wandb_run(cfg, keeper.labelled())  # before config.yaml is written: it names the W&B group
    ckpt_path = None
    if cfg.mode == "train":
        config.check_optimized_metric(cfg, declared)
        ckpt_path = resolve_checkpoint(cfg.ckpt_path, files)
        if ckpt_path is not None:
            changed = config.check_resume(cfg, ckpt_path, load_tensors(ckpt_path), plan, callbacks)
            if changed:
                log.warning(
                    "resuming with changed settings (%s): the lr plan is derived again from them; see %s",
                    ", ".join(changed),
                    files.lr_png.name,
                )
        # the resolved config, as the run uses it
        save_text(OmegaConf.to_yaml(cfg, resolve=True), files.config)
    keeper.accept()
    loggers = start_loggers(cfg)
    trainer.loggers = loggers
    for logger in loggers:
        logger.log_hyperparams(config.wandb_config(cfg, record) if isinstance(logger, WandbLogger) else resolved(cfg))
    if cfg.mode == "lr_find":
        assert isinstance(module, RecordingClassifier)
        with stops.lightning("the LR range test", trainer):
            suggestion = lr_find(cfg, trainer, module, datamodule, files)
        finish_wandb()
        return suggestion
    started = time.perf_counter()
    scores = fit_and_test(trainer, module, datamodule, ckpt_path, stops)
    info = {"seed": cfg.seed, "arm": record.arm.id, "overrides": record.overrides}
    produced = gather(module, datamodule, list(callbacks.values()), scores, info)
    timing: dict[str, Any] = {"wall_seconds": round(time.perf_counter() - started, 2)}
    for logger in loggers:  # (on other ranks Lightning hands out a stand-in experiment)
        if isinstance(logger, WandbLogger) and trainer.is_global_zero and logger.experiment.settings.mode == "online":
            timing["wandb/path"] = logger.experiment.path  # entity/project/id: the notebook fetches curves from it
    values = assembly.merged([*produced, ("the run", timing)])
    curves = {"train/loss", "train/acc", f"{module.heldout}/loss", f"{module.heldout}/acc"}
    document = record_results(files, values, declared, trainer, loggers, curves)
    finish_wandb()
    return optimized(document, cfg.optimized_metric)


def resolved(cfg: DictConfig) -> dict[str, Any]:
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


def start_loggers(cfg: DictConfig) -> list[Logger]:
    """The run's logger, started once every setting has been checked (W&B begins a run here)."""
    if not cfg.logger:
        return []
    with config.keys("logger"):
        return [config.instantiate(cfg.logger)]


def resolve_checkpoint(ckpt_path: str | None, files: RunFiles) -> str | None:
    if ckpt_path != "last":
        if ckpt_path is not None:
            require(Path(ckpt_path).is_file(), "ckpt_path", ckpt_path, "no such checkpoint file")
        return ckpt_path
    last = files.last_checkpoint
    require(
        last.is_file(),
        "ckpt_path",
        "last",
        f"no {last}: run inside the run directory to resume "
        "(hydra.run.dir=<that run's directory>) or give the path of a .ckpt",
    )
    return str(last)


def fit_and_test(
    trainer: L.Trainer, module: Classifier, datamodule: ImageData, ckpt_path: str | None, stops: StopSignals
) -> dict[str, float]:
    """Train, then score the last network on the test set (and the validation split, if held out)."""
    try:
        with stops.lightning("training", trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        stops.phase = "the final evaluation"
        with stops.lightning("the final evaluation", trainer):
            trainer.test(module, datamodule=datamodule, ckpt_path=None, verbose=False)
            scores = {k: v.item() for k, v in trainer.callback_metrics.items() if k in ("test/acc", "test/loss")}
            if datamodule.val_size > 0:  # the last network's, also when a resume found training already done
                trainer.validate(module, datamodule=datamodule, verbose=False)
                scores |= {k: v.item() for k, v in trainer.callback_metrics.items() if k in ("val/acc", "val/loss")}
    except SIGTERMException:
        raise Interrupted(stops.received or signal.SIGTERM, stops.phase) from None
    return scores


def finish_wandb() -> None:
    """Close the W&B run, so that the next job of a multirun (same process) starts its own."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


def preview(cfg: DictConfig, plan: LrPlan, files: RunFiles) -> None:
    """mode=preview: the composed lr plan as PNG + CSV in the run directory, without training."""
    png, csv_path = render(plan, files, f"lr schedule: {plan.describe()}")
    ends = ", ".join(f"{e:g}" for e in plan.cycle_ends()) or "none"
    log.info(
        "lr schedule over %d steps (%d per epoch); cycle ends at epochs: %s",
        plan.clock.total_steps,
        plan.clock.steps_per_epoch,
        ends,
    )
    log.info("wrote %s and %s", png, csv_path)
    print(f"preview: {png}\npreview: {csv_path}")
