"""One run wired from the composed config: data, network, lr plan, callbacks, logger, trainer; every
setting checked before training; fit, test, evaluate snapshots and averages, write results.json."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from anneal.callbacks import LrSchedulePlot, ValAccFeedback
from anneal.data import DataError
from anneal.errors import ConfigError, require
from anneal.module import Classifier
from anneal.schedules import Clock, LrPlan, Schedule
from anneal.storage import save_json, save_text

log = logging.getLogger("anneal")
MODES = ("train", "preview", "lr_find")


def instantiate(node, **kwargs):
    """Hydra's instantiate, letting anneal's own errors (bad settings, unreadable data) through unwrapped."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, (ConfigError, DataError)):
            raise error.__cause__ from None
        raise


def build_network(model_cfg: DictConfig) -> tuple[nn.Module, bool]:
    """The `model` group's network, and whether to torch.compile it (`model.compile`, not a network argument)."""
    spec = OmegaConf.to_container(model_cfg, resolve=True)
    compile_ = bool(spec.pop("compile", False))
    return instantiate(spec), compile_


def instantiate_optional(node: DictConfig | None):
    """A group option like `averaging=none` is an empty node: nothing to build."""
    return instantiate(node) if node and "_target_" in node else None


def group_sweep_jobs(cfg: DictConfig) -> None:
    """In a multirun, W&B groups the jobs under the sweep directory's name (unless logger.group is set)."""
    if cfg.logger and "group" in cfg.logger and cfg.logger.group is None and HydraConfig.initialized() \
            and HydraConfig.get().mode == RunMode.MULTIRUN:
        cfg.logger.group = Path(HydraConfig.get().sweep.dir).name


def build_loggers(cfg: DictConfig) -> list:
    if not cfg.logger:
        return []
    return [instantiate(cfg.logger)]  # W&B starts when something is logged, after the preflight


def build_callbacks(cfg: DictConfig, lr_plan: LrPlan, extra: list, has_logger: bool) -> list:
    """The `callbacks` group, the ensemble and averaging callbacks, and what the schedule needs."""
    if cfg.mode == "lr_find":  # a range test, not a training run: no checkpoints, snapshots or averages
        return []
    callbacks = [c for c in (instantiate_optional(n) for n in cfg.callbacks.values()) if c is not None]
    callbacks += [c for c in extra if c is not None]
    if lr_plan.needs_val_acc:
        callbacks.append(ValAccFeedback())
    if not has_logger:  # nothing to log the lr to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def steps_per_epoch_estimate(trainer: L.Trainer, datamodule) -> int:
    """Optimizer steps per epoch before Lightning has counted them (it does so only inside fit), with
    limit_train_batches (and fast_dev_run, which sets it) applied the way Lightning applies it."""
    batches = datamodule.steps_per_epoch(trainer.world_size)
    limit = trainer.limit_train_batches
    batches = min(batches, int(limit)) if isinstance(limit, int) else max(1, int(batches * limit))
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


def check_optimized_metric(cfg: DictConfig, datamodule, callbacks: list) -> None:
    """The metric returned to a sweeper must be one this run will produce."""
    has_val = datamodule.val_size > 0
    produced = ["test/acc", "test/loss"] + (["val/acc", "val/loss"] if has_val else [])
    produced += [m for c in callbacks if hasattr(c, "result_metrics") for m in c.result_metrics(has_val)]
    require(cfg.optimized_metric in produced, "optimized_metric", cfg.optimized_metric,
            f"this run produces {produced}")


def preflight(cfg: DictConfig, trainer: L.Trainer, datamodule, module: Classifier, callbacks: list) -> tuple[Schedule, Clock]:
    """Build the run's lr function and check every setting that depends on it, before any training."""
    lr = getattr(module.optimizer_factory, "keywords", {}).get("lr")
    require(lr is None or lr > 0, "optimizer.lr", lr, "the peak learning rate must be > 0")
    clock = Clock(steps_per_epoch_estimate(trainer, datamodule))
    peak = module.optimizer_factory(params=module.parameters()).defaults["lr"]
    schedule = module.lr_plan.build(peak, clock)
    if schedule.needs_val_acc:
        require(datamodule.val_size > 0, "data.val_size", datamodule.val_size,
                "schedule=adaptive_sgdr watches val/acc: hold out a validation split (e.g. data.val_size=5000)")
    for callback in callbacks:
        if hasattr(callback, "check"):
            callback.check(schedule, clock)
    if cfg.mode == "train":
        check_optimized_metric(cfg, datamodule, callbacks)
    return schedule, clock


def resolve_checkpoint(ckpt_path: str | None, output_dir: str) -> str | None:
    if ckpt_path != "last":
        if ckpt_path is not None:
            require(Path(ckpt_path).is_file(), "ckpt_path", ckpt_path, "no such checkpoint file")
        return ckpt_path
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    require(last.is_file(), "ckpt_path", "last", f"no {last}: run inside the run directory to resume "
            "(hydra.run.dir=<that run's directory>) or give the path of a .ckpt")
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
    require(cfg.mode in MODES, "mode", cfg.mode, f"one of {MODES}")
    epochs = cfg.trainer.max_epochs
    require(isinstance(epochs, int) and epochs >= 1, "trainer.max_epochs", epochs, "must be an integer >= 1")
    L.seed_everything(cfg.seed, workers=True)
    group_sweep_jobs(cfg)
    if cfg.mode == "train":  # the resolved config: what `python -m anneal.ensemble` and the notebook rebuild from
        save_text(OmegaConf.to_yaml(cfg, resolve=True), Path(cfg.output_dir) / "config.yaml")

    datamodule = instantiate(cfg.data)
    network, compile_ = build_network(cfg.model)
    averaging, ensemble = instantiate_optional(cfg.averaging), instantiate_optional(cfg.ensemble)
    lr_plan = LrPlan(schedule=instantiate(cfg.schedule), warmup=instantiate(cfg.warmup), epochs=epochs,
                     switch=averaging.lr_switch() if hasattr(averaging, "lr_switch") else None)
    module = Classifier(network, instantiate(cfg.optimizer), lr_plan, compile=compile_)

    if cfg.mode == "preview":
        return preview(cfg, module, datamodule)

    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, lr_plan, [ensemble, averaging], has_logger=bool(loggers))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          **({"enable_checkpointing": False} if cfg.mode == "lr_find" else {}))
    preflight(cfg, trainer, datamodule, module, callbacks)
    ckpt_path = resolve_checkpoint(cfg.ckpt_path, cfg.output_dir) if cfg.mode == "train" else None
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.mode == "lr_find":
        from anneal.lr_find import lr_find

        suggestion = lr_find(cfg, trainer, module, datamodule)
        finish_wandb()
        return suggestion
    return fit_and_evaluate(cfg, trainer, module, datamodule, callbacks, loggers, ckpt_path)


def fit_and_evaluate(cfg, trainer, module, datamodule, callbacks, loggers, ckpt_path: str | None) -> float | None:
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    validated = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    (tested,) = trainer.test(module, datamodule=datamodule, ckpt_path=None, verbose=False)
    results = {
        "data": datamodule.name, "model": type(module.plain_network).__name__, "seed": cfg.seed,
        "schedule": module.lr_plan.describe(),
        "test/acc": tested["test/acc"], "test/loss": tested["test/loss"],
        "epochs": trainer.current_epoch, "steps": trainer.global_step,
    }
    results |= validated  # the last validation's val/loss and val/acc, if there is a validation split
    for callback in callbacks:
        if hasattr(callback, "evaluate"):
            results |= callback.evaluate(trainer, module, datamodule)
    results["wall_seconds"] = round(time.perf_counter() - started, 2)
    if HydraConfig.initialized():
        results["overrides"] = list(HydraConfig.get().overrides.task)
    for logger in loggers:  # (on other ranks Lightning hands out a stand-in experiment)
        if isinstance(logger, WandbLogger) and trainer.is_global_zero and logger.experiment.settings.mode == "online":
            results["wandb/path"] = logger.experiment.path  # entity/project/id: the notebook fetches curves from it
    if trainer.is_global_zero:
        path = save_json(results, Path(cfg.output_dir) / "results.json")
        log.info("test acc %.4f (%s, %s); results in %s", results["test/acc"], results["data"], results["schedule"], path)
    for logger in loggers:
        logger.log_metrics({k: v for k, v in results.items() if isinstance(v, (int, float))})
        logger.finalize("success")
    finish_wandb()
    return results[cfg.optimized_metric]


def finish_wandb() -> None:
    """Close the W&B run, so that the next job of a multirun (same process) starts its own."""
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


def preview(cfg: DictConfig, module: Classifier, datamodule) -> None:
    """mode=preview: the composed lr function as PNG + CSV in the run directory, without training."""
    from anneal.preview import render

    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False,
                          enable_model_summary=False)
    schedule, clock = preflight(cfg, trainer, datamodule, module, [])
    total_steps = clock.step_at(cfg.trainer.max_epochs)
    png, csv_path = render(schedule, clock, total_steps, cfg.output_dir, f"lr schedule: {module.lr_plan.describe()}")
    ends = ", ".join(f"{e:g}" for e in schedule.cycle_ends()) or "none"
    log.info("lr schedule over %d steps (%d per epoch); cycle ends at epochs: %s", total_steps, clock.steps_per_epoch, ends)
    log.info("wrote %s and %s", png, csv_path)
    print(f"preview: {png}\npreview: {csv_path}")
    return None
