"""One run wired from the composed config: data, network, lr plan, callbacks, trainer, loggers; every setting
checked before training; fit, test, evaluate snapshots and averages, write results.json."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, cast

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from anneal.callbacks import RunCallback
from anneal.config import (
    arithmetic_settings,
    build_callbacks,
    build_data,
    build_network,
    build_optimizer,
    build_plan,
    build_trainer,
    check_optimized_metric,
    check_resume,
    check_run_settings,
    instantiate,
    keys,
    run_name,
    swept_keys,
)
from anneal.data import ImageData
from anneal.errors import TrainingStopped, require
from anneal.interrupts import Interrupted, StopSignals
from anneal.lr_find import RecordingClassifier, lr_find
from anneal.module import Classifier
from anneal.preview import render
from anneal.run_dir import claimed, unclaimed
from anneal.schedules import LrPlan
from anneal.storage import load_tensors, save_json, save_text

log = logging.getLogger("anneal")


def name_wandb_run(cfg: DictConfig) -> None:
    """W&B names a run after its settings (`sgdr T_0=5 T_mult=2 seed=1`) and, in a multirun, groups the jobs
    under the sweep directory's name, unless logger.name / logger.group are set."""
    if not (cfg.logger and "group" in cfg.logger and HydraConfig.initialized()):
        return
    if cfg.logger.group is None and HydraConfig.get().mode == RunMode.MULTIRUN:
        cfg.logger.group = Path(HydraConfig.get().sweep.dir).name
    if cfg.logger.get("name") is None:
        swept = None
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # the sweep's command line, as Hydra saved it for its jobs
            sweep_config = Path(HydraConfig.get().sweep.dir) / "multirun.yaml"
            if sweep_config.is_file():
                swept = swept_keys(list(OmegaConf.load(sweep_config).hydra.overrides.task))
        cfg.logger.name = run_name(list(HydraConfig.get().overrides.task), swept) or None


def start_loggers(cfg: DictConfig) -> list[Logger]:
    """The run's logger, started once every setting has been checked (W&B begins a run here)."""
    if not cfg.logger:
        return []
    with keys("logger"):
        return [instantiate(cfg.logger)]


def resolve_checkpoint(ckpt_path: str | None, output_dir: str) -> str | None:
    if ckpt_path != "last":
        if ckpt_path is not None:
            require(Path(ckpt_path).is_file(), "ckpt_path", ckpt_path, "no such checkpoint file")
        return ckpt_path
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    require(
        last.is_file(),
        "ckpt_path",
        "last",
        f"no {last}: run inside the run directory to resume "
        "(hydra.run.dir=<that run's directory>) or give the path of a .ckpt",
    )
    return str(last)


class DropTips(logging.Filter):
    """Lightning's advertisements for its cloud products."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_library_noise() -> None:
    """Lightning's loggers print through their own handlers as well as the root's: send them through the root's
    only (Hydra's console and the run's log file), once; drop Lightning's tips and warnings about things anneal
    does on purpose."""
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


def run(cfg: DictConfig) -> float | None:
    """One run; a signal stops it in any phase with `Interrupted` (after a checkpoint, during training)."""
    stops = StopSignals()
    if threading.current_thread() is not threading.main_thread():  # (a launcher's worker thread: its handlers)
        return run_in(cfg, stops)
    with stops.installed():
        return run_in(cfg, stops)


def run_in(cfg: DictConfig, stops: StopSignals) -> float | None:
    quiet_library_noise()
    check_run_settings(cfg)
    # (DDP's other processes run this too: the directory is rank 0's to claim)
    rank = getattr(rank_zero_only, "rank", 0)  # Lightning sets it from the launcher's environment
    claim = claimed if rank == 0 else unclaimed
    with claim(Path(cfg.output_dir), resuming=cfg.mode != "train" or cfg.ckpt_path is not None):
        L.seed_everything(cfg.seed, workers=True)
        name_wandb_run(cfg)
        datamodule = build_data(cfg)
        spec = build_network(cfg, datamodule.num_classes)
        optimizer, peak = build_optimizer(cfg, spec.network)
        callbacks = build_callbacks(cfg)
        trainer = build_trainer(cfg, list(callbacks.values()))
        plan = build_plan(cfg, trainer, datamodule, callbacks, peak)
        module_type = RecordingClassifier if cfg.mode == "lr_find" else Classifier
        module = module_type(
            spec.network,
            optimizer,
            plan,
            num_classes=datamodule.num_classes,
            compile=spec.compile,
            heldout=datamodule.heldout or "val",
            settings=arithmetic_settings(cfg),
        )
        if cfg.mode == "preview":
            preview(cfg, plan)
            return None
        ckpt_path = None
        if cfg.mode == "train":
            check_optimized_metric(cfg, datamodule, callbacks)
            ckpt_path = resolve_checkpoint(cfg.ckpt_path, cfg.output_dir)
            if ckpt_path is not None:
                changed = check_resume(cfg, ckpt_path, saved_settings(ckpt_path))
                if changed:
                    log.warning(
                        "resuming with changed settings (%s): the lr plan is derived again from them; "
                        "see lr_schedule.png",
                        ", ".join(changed),
                    )
        if cfg.mode == "train":  # the resolved config: what `python -m anneal.ensemble` and the notebook rebuild
            save_text(OmegaConf.to_yaml(cfg, resolve=True), Path(cfg.output_dir) / "config.yaml")
        loggers = start_loggers(cfg)
        trainer.loggers = loggers
        for logger in loggers:
            logger.log_hyperparams(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))
        if cfg.mode == "lr_find":
            assert isinstance(module, RecordingClassifier)
            with stops.lightning("the LR range test", trainer):
                suggestion = lr_find(cfg, trainer, module, datamodule)
            finish_wandb()
            return suggestion
        return fit_and_evaluate(cfg, trainer, module, datamodule, list(callbacks.values()), loggers, ckpt_path, stops)


def saved_settings(ckpt_path: str) -> dict[str, Any] | None:
    """The settings a checkpoint was written with; None for a checkpoint from before anneal recorded them."""
    return load_tensors(ckpt_path).get("settings")


def fit_and_evaluate(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: Classifier,
    datamodule: ImageData,
    callbacks: list[L.Callback],
    loggers: list[Logger],
    ckpt_path: str | None,
    stops: StopSignals,
) -> float | None:
    started = time.perf_counter()
    try:
        with stops.lightning("training", trainer):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        stops.phase = "the final evaluation"
        with stops.lightning("the final evaluation", trainer):
            trainer.test(module, datamodule=datamodule, ckpt_path=None, verbose=False)
            tested = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            validated: dict[str, float] = {}
            if datamodule.val_size > 0:  # the last network's, also when a resume found training already done
                trainer.validate(module, datamodule=datamodule, verbose=False)
                validated = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    except SIGTERMException:
        raise Interrupted(stops.received or signal.SIGTERM, stops.phase) from None
    results = {
        "data": datamodule.name,
        "num_classes": datamodule.num_classes,
        "model": type(module.network).__name__,
        "params": sum(p.numel() for p in module.network.parameters() if p.requires_grad),
        "seed": cfg.seed,
        "schedule": module.plan.describe(),
        "test/acc": tested["test/acc"],
        "test/loss": tested["test/loss"],
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
    }
    results |= {k: v for k, v in validated.items() if k in ("val/acc", "val/loss")}
    for callback in callbacks:
        if isinstance(callback, RunCallback):
            results |= callback.results(trainer, module, datamodule)
    results["wall_seconds"] = round(time.perf_counter() - started, 2)
    if HydraConfig.initialized():
        results["overrides"] = list(HydraConfig.get().overrides.task)
    for logger in loggers:  # (on other ranks Lightning hands out a stand-in experiment)
        if isinstance(logger, WandbLogger) and trainer.is_global_zero and logger.experiment.settings.mode == "online":
            results["wandb/path"] = logger.experiment.path  # entity/project/id: the notebook fetches curves from it
    if trainer.is_global_zero:
        path = save_json(results, Path(cfg.output_dir) / "results.json")
        log.info(
            "test acc %.4f (%s, %s); results in %s", results["test/acc"], results["data"], results["schedule"], path
        )
    log_results(results, module, trainer, loggers)
    finish_wandb()
    if cfg.optimized_metric not in results:
        raise TrainingStopped(
            f"optimized_metric={cfg.optimized_metric} was not produced by this run; results.json "
            f"holds {sorted(k for k, v in results.items() if isinstance(v, float))}"
        )
    return results[cfg.optimized_metric]


def log_results(results: dict[str, Any], module: Classifier, trainer: L.Trainer, loggers: list[Logger]) -> None:
    """The run's final numbers: W&B's run summary; for the other loggers, one row at the last step, without the
    values their per-epoch curves already hold."""
    numbers = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numbers.pop("seed", None)
    curves = {"train/loss", "train/acc", f"{module.heldout}/loss", f"{module.heldout}/acc"}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            if trainer.is_global_zero:
                logger.experiment.summary.update(numbers)
        else:
            logger.log_metrics({k: v for k, v in numbers.items() if k not in curves}, step=trainer.global_step)
        logger.finalize("success")


def finish_wandb() -> None:
    """Close the W&B run, so that the next job of a multirun (same process) starts its own."""
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


def preview(cfg: DictConfig, plan: LrPlan) -> None:
    """mode=preview: the composed lr plan as PNG + CSV in the run directory, without training."""
    png, csv_path = render(plan, cfg.output_dir, f"lr schedule: {plan.describe()}")
    ends = ", ".join(f"{e:g}" for e in plan.cycle_ends()) or "none"
    log.info(
        "lr schedule over %d steps (%d per epoch); cycle ends at epochs: %s",
        plan.clock.total_steps,
        plan.clock.steps_per_epoch,
        ends,
    )
    log.info("wrote %s and %s", png, csv_path)
    print(f"preview: {png}\npreview: {csv_path}")
    return None
