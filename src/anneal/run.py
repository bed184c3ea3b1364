"""One run wired from the composed config: data, network, lr plan, callbacks, trainer, loggers; every setting
checked before training; fit, test, evaluate snapshots and averages, write results.json."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, cast

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from anneal.callbacks import ClockCheck, RunCallback
from anneal.config import (
    build_callbacks,
    build_data,
    build_network,
    build_optimizer,
    build_plan,
    build_trainer,
    check_optimized_metric,
    check_run_settings,
    instantiate,
    keys,
)
from anneal.data import ImageData
from anneal.errors import require
from anneal.lr_find import RecordingClassifier, lr_find
from anneal.module import Classifier
from anneal.preview import render
from anneal.schedules import LrPlan
from anneal.storage import save_json, save_text

log = logging.getLogger("anneal")


def group_sweep_jobs(cfg: DictConfig) -> None:
    """In a multirun, W&B groups the jobs under the sweep directory's name (unless logger.group is set)."""
    if (
        cfg.logger
        and "group" in cfg.logger
        and cfg.logger.group is None
        and HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
    ):
        cfg.logger.group = Path(HydraConfig.get().sweep.dir).name


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


def quiet_library_noise() -> None:
    """Lightning's loggers print through their own handlers too: send them through Hydra's only (console +
    the run's log file), and drop warnings about things anneal does on purpose."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
    warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")  # no val split
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def run(cfg: DictConfig) -> float | None:
    quiet_library_noise()
    check_run_settings(cfg)
    L.seed_everything(cfg.seed, workers=True)
    group_sweep_jobs(cfg)
    if cfg.mode == "train":  # the resolved config: what `python -m anneal.ensemble` and the notebook rebuild from
        save_text(OmegaConf.to_yaml(cfg, resolve=True), Path(cfg.output_dir) / "config.yaml")

    datamodule = build_data(cfg)
    spec = build_network(cfg, datamodule.num_classes)
    optimizer, peak = build_optimizer(cfg, spec.network)
    callbacks = build_callbacks(cfg)
    if cfg.mode == "train":
        callbacks["clock_check"] = ClockCheck()
    trainer = build_trainer(cfg, list(callbacks.values()))
    plan = build_plan(cfg, trainer, datamodule, callbacks, peak)
    module_type = RecordingClassifier if cfg.mode == "lr_find" else Classifier
    module = module_type(spec.network, optimizer, plan, num_classes=datamodule.num_classes, compile=spec.compile)
    if cfg.mode == "preview":
        preview(cfg, plan)
        return None
    if cfg.mode == "train":
        check_optimized_metric(cfg, datamodule, callbacks)
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, cfg.output_dir) if cfg.mode == "train" else None
    loggers = start_loggers(cfg)
    trainer.loggers = loggers
    for logger in loggers:
        logger.log_hyperparams(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))

    if cfg.mode == "lr_find":
        assert isinstance(module, RecordingClassifier)
        suggestion = lr_find(cfg, trainer, module, datamodule)
        finish_wandb()
        return suggestion
    return fit_and_evaluate(cfg, trainer, module, datamodule, list(callbacks.values()), loggers, ckpt_path)


def fit_and_evaluate(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: Classifier,
    datamodule: ImageData,
    callbacks: list[L.Callback],
    loggers: list[Logger],
    ckpt_path: str | None,
) -> float | None:
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    validated = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    (tested,) = trainer.test(module, datamodule=datamodule, ckpt_path=None, verbose=False)
    results = {
        "data": datamodule.name,
        "model": type(module.network).__name__,
        "seed": cfg.seed,
        "schedule": module.plan.describe(),
        "test/acc": tested["test/acc"],
        "test/loss": tested["test/loss"],
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
    }
    results |= validated  # the last validation's val/loss and val/acc, if there is a validation split
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
    for logger in loggers:
        logger.log_metrics({k: v for k, v in results.items() if isinstance(v, (int, float))})
        logger.finalize("success")
    finish_wandb()
    return results[cfg.optimized_metric]


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
