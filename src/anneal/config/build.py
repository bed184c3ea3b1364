"""Building a run's parts from the composed config: data, network, optimizer, callbacks, trainer, lr plan."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf
from torch import nn

from anneal.bn_update import checked_images
from anneal.callbacks import RunCallback
from anneal.callbacks.base import compose_switches
from anneal.config.checks import check_schedule_free
from anneal.config.keys import instantiate, instantiate_optional, keys
from anneal.data import ImageData
from anneal.errors import ConfigError, require
from anneal.module import is_schedule_free
from anneal.schedules import Clock, LrPlan, LrRecipe

FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def build_data(cfg: DictConfig) -> ImageData:
    """The `data` group's data module: one of anneal's, or a subclass of `ImageData` of the user's own package."""
    with keys("data"):
        datamodule = instantiate(cfg.data)
    if not isinstance(datamodule, ImageData):
        raise ConfigError(
            "data._target_",
            cfg.data.get("_target_"),
            "train.py trains on a subclass of anneal.data.ImageData (its load() returns uint8 images and labels: "
            "docs/extending.md); with another LightningDataModule, use anneal's parts in your own Lightning script",
        )
    return datamodule


def setup_data(datamodule: ImageData) -> None:
    with keys("data"):
        datamodule.setup()


@dataclass
class NetworkSpec:
    network: nn.Module
    compile: bool  # torch.compile it (`model.compile`, not an argument of the network)


def build_network(cfg: DictConfig, num_classes: int) -> NetworkSpec:
    """The `model` group's network for `num_classes` classes."""
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(spec, dict)
    compile_ = bool(spec.pop("compile", False))
    with keys("model"):
        network = instantiate(spec, num_classes=num_classes)
    require(isinstance(network, nn.Module), "model._target_", spec.get("_target_"), "a torch.nn.Module class")
    return NetworkSpec(network, compile_)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def build_optimizer(cfg: DictConfig, network: nn.Module) -> tuple[Any, float]:
    """The optimizer factory (Hydra's `_partial_`) and the peak lr it sets, checked by building one."""
    node = cfg.optimizer
    require(
        is_number(node.get("lr")) and 0 < node.lr < FLOAT32_MAX,
        "optimizer.lr",
        node.get("lr"),
        "the peak learning rate: a number > 0 (that a float32 can hold)",
    )
    for key in ("momentum", "weight_decay", "dampening"):
        if key in node:
            require(is_number(node[key]) and node[key] >= 0, f"optimizer.{key}", node[key], "a number >= 0")
    images = checked_images(node.get("bn_update_images"), "optimizer.bn_update_images")
    if "bn_update_images" in node:  # the module's setting (the pass at a schedule-free average), not torch's
        node = OmegaConf.masked_copy(node, [k for k in node if k != "bn_update_images"])
    with keys("optimizer"):
        factory = instantiate(node)
        try:
            optimizer = factory(params=network.parameters())
        except (TypeError, ValueError, LookupError) as error:  # what torch says of the other arguments
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError("", text=f"{{key}} settings are invalid: {reason}") from None
    check_schedule_free(cfg, optimizer)
    require(
        images is None or is_schedule_free(optimizer),
        "optimizer.bn_update_images",
        images,
        "null: only a schedule-free optimizer is evaluated with a BatchNorm pass of its own (averaging.* has its own)",
    )
    return factory, optimizer.defaults["lr"]


# Lightning's callbacks that change the lr or replace anneal's schedule (the run's lr would no longer be its plan,
# while results.json names the plan), and the anneal setting that does the same within the plan. (LearningRateMonitor
# only reads the lr: it is welcome, though callbacks.step_curves logs the lr of every step already.)
PLAN_BREAKERS = {
    callbacks.StochasticWeightAveraging: "averaging=swa (SWA with the lr switch in the plan: averaging.swa_lr)",
    callbacks.WeightAveraging: "averaging=swa or averaging=ema",
    callbacks.LearningRateFinder: "mode=lr_find",
    callbacks.BatchSizeFinder: "data.batch_size (the plan is built from the batch count)",
    callbacks.GradientAccumulationScheduler: "trainer.accumulate_grad_batches (the plan counts optimizer steps)",
}


def refuse_plan_breakers(name: str, callback: L.Callback) -> None:
    for kind, instead in PLAN_BREAKERS.items():
        if isinstance(callback, kind):
            raise ConfigError(
                name,
                type(callback).__name__,
                text=(
                    f"{{key}} is invalid: Lightning's {type(callback).__name__} changes the lr or the schedule outside "
                    f"anneal's lr plan (the run would not follow the schedule its results name); use {instead}"
                ),
            )


def build_callbacks(cfg: DictConfig) -> dict[str, L.Callback]:
    """The `callbacks` group, the ensemble and the averaging callback, by the config key that built each."""
    if cfg.mode == "lr_find":  # a range test, not a training run: no checkpoints, snapshots or averages
        return {}
    built: dict[str, L.Callback] = {}
    for name, node in (cfg.callbacks or {}).items():
        with keys(f"callbacks.{name}"):
            callback = instantiate_optional(node)
        if callback is not None:
            refuse_plan_breakers(f"callbacks.{name}", callback)
            require(
                not isinstance(callback, callbacks.LearningRateMonitor) or bool(cfg.logger),
                f"callbacks.{name}",
                "LearningRateMonitor",
                "Lightning's LearningRateMonitor sends the lr to a logger: choose one (logger=csv, logger=wandb)",
            )
            built[f"callbacks.{name}"] = callback
    for group in ("ensemble", "averaging", "branch"):
        with keys(group):
            callback = instantiate_optional(cfg[group])
        if callback is not None:
            built[group] = callback
    if not progress_bar(cfg):  # Lightning refuses a bar callback then
        built = {k: c for k, c in built.items() if not isinstance(c, ProgressBar)}
    return built


def progress_bar(cfg: DictConfig) -> bool:
    """A progress bar only on a terminal: in a log file (CI, SLURM, nohup) its redraws bury the epoch lines."""
    return bool(cfg.trainer.get("enable_progress_bar", True)) and sys.stdout.isatty()


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback]) -> L.Trainer:
    """The trainer, without loggers: they start once every setting has been checked."""
    extra: dict[str, Any] = {"enable_checkpointing": False} if cfg.mode == "lr_find" else {}
    extra["enable_progress_bar"] = progress_bar(cfg)
    with keys("trainer"):
        return instantiate(cfg.trainer, callbacks=callbacks, logger=False, **extra)


def check_before_data(recipe: LrRecipe, peak: float, max_epochs: int | None, max_steps: int) -> None:
    """The lr recipe's settings, checked before the data is read (its batch count sets the real clock): on a
    clock of 1 and of 10,000 steps per epoch; an error both give with the same message does not depend on the
    clock, and is the one the real clock would give (`schedule.T_mult=0.5` is named, not a missing data set)."""
    errors = []
    for steps_per_epoch in (1, 10_000):
        try:
            with keys():
                recipe.build(peak, Clock.of_length(steps_per_epoch, max_epochs=max_epochs, max_steps=max_steps))
        except ConfigError as error:
            errors.append(error)
    if len(errors) == 2 and str(errors[0]) == str(errors[1]):
        raise errors[0]


def build_plan(
    cfg: DictConfig, trainer: L.Trainer, datamodule: ImageData, callbacks: dict[str, L.Callback], peak: float
) -> LrPlan:
    """The run's lr plan, on the clock Lightning will count: the data module's batches on this rank, with the
    trainer's batch limit, gradient accumulation and length."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    # a smoke test takes a step or so of the configured run, on that run's plan
    if trainer.fast_dev_run:  # type: ignore[attr-defined]  # a Trainer argument, set in its __init__
        max_epochs, max_steps = cfg.trainer.max_epochs, cfg.trainer.get("max_steps", -1)
    with keys("schedule"):
        schedule = instantiate(cfg.schedule)
    with keys("warmup"):
        warmup = instantiate(cfg.warmup)
    recipe = LrRecipe(schedule=schedule, warmup=warmup)  # the callbacks compose their lr switches (hand_over)
    check_before_data(recipe, peak, max_epochs, max_steps)
    setup_data(datamodule)
    with keys("trainer"):
        clock = Clock.for_training(
            datamodule.batches_per_epoch(trainer.world_size),
            limit_batches=trainer.limit_train_batches,
            accumulate=trainer.accumulate_grad_batches,
            max_epochs=max_epochs,
            max_steps=max_steps,
        )
    with keys():
        plan = recipe.build(peak, clock)
    if plan.monitor is not None:
        require(
            datamodule.val_size > 0,
            "data.val_size",
            datamodule.val_size,
            f"the schedule watches {plan.monitor}: hold out a validation split (e.g. data.val_size=5000)",
        )
    hand_over(plan, callbacks)
    return plan


def hand_over(plan: LrPlan, callbacks: dict[str, L.Callback]) -> None:
    """The plan to the callbacks before training, as each would find it when fitting starts (`RunCallback.find_plan`:
    the lr switches composed into it, then each reads and checks it), so that a setting's error names its key and
    the preview shows every switch and mark."""
    with keys("averaging"):
        compose_switches(plan, callbacks.values())
    for key, callback in callbacks.items():
        if isinstance(callback, RunCallback):
            with keys(key):
                callback.use_plan(plan)
            plan.marks += callback.marks()
