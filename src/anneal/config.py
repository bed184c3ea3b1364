"""The config layer: builds anneal's objects from the composed Hydra config, and the one place that knows the
config's key names. Every group is built and checked inside `keys(group)`, so that a setting error raised
under the name a setting has where it is used (`T_0`) reaches the user under the key they type
(`schedule.T_0`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf
from torch import nn

from anneal.callbacks import RunCallback
from anneal.data import DataMissing, ImageData
from anneal.errors import ConfigError, DataError, require
from anneal.schedules import Clock, LrPlan, LrRecipe

MODES = ("train", "preview", "lr_find")
# what the lr plan calls the settings that live in other groups
ALIASES = {"peak": "optimizer.lr", "schedule.peak": "optimizer.lr"}
# the environment variable each dataset's default data.root reads
ROOT_VARIABLES = {"CIFAR-10": "CIFAR10_ROOT"}
# the targets a run directory (untrusted, like a checkpoint) may name
TRUSTED_MODULES = ("anneal.models.", "anneal.data.")


@contextmanager
def keys(group: str = "") -> Iterator[None]:
    """Setting errors raised inside name the full config key; a missing dataset says which settings find it."""
    try:
        yield
    except ConfigError as error:
        full = error.within(group) if group else error
        raise ConfigError(ALIASES.get(full.key, full.key), full.value, full.allowed, text=full.text) from None
    except DataMissing as error:
        off = " and data.download=false" if error.reason is None else f" and the download failed ({error.reason})"
        raise DataError(
            f"{error.archive.name} not found under data.root={error.root}{off}. Point data.root (or the "
            f"{ROOT_VARIABLES.get(error.archive.name, 'data root')} environment variable) at a directory that holds "
            f"{error.archive.folder}/, or train offline on generated images with data=synthetic."
        ) from None


def instantiate(node: Any, **kwargs: Any) -> Any:
    """Hydra's instantiate, letting anneal's own errors (bad settings, unreadable data) through unwrapped."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, (ConfigError, DataError)):
            raise error.__cause__ from None
        raise


def instantiate_optional(node: DictConfig | None) -> Any:
    """A group option like `averaging=none` is an empty node: nothing to build."""
    return instantiate(node) if node and "_target_" in node else None


def check_run_settings(cfg: DictConfig) -> None:
    """The top-level settings, before anything is built."""
    require(cfg.mode in MODES, "mode", cfg.mode, f"one of {MODES}")
    epochs = cfg.trainer.max_epochs
    require(isinstance(epochs, int) and epochs >= 1, "trainer.max_epochs", epochs, "must be an integer >= 1")


def build_data(cfg: DictConfig) -> ImageData:
    with keys("data"):
        datamodule = instantiate(cfg.data)
    return datamodule


def setup_data(datamodule: ImageData) -> None:
    with keys("data"):
        datamodule.setup()


@dataclass
class NetworkSpec:
    network: nn.Module
    compile: bool  # torch.compile it (`model.compile`, not an argument of the network)


def build_network(cfg: DictConfig, num_classes: int, trusted: bool = True) -> NetworkSpec:
    """The `model` group's network for `num_classes` classes. From an untrusted config (a run directory's),
    only anneal's own networks are built."""
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(spec, dict)
    compile_ = bool(spec.pop("compile", False))
    if not trusted:
        target = str(spec.get("_target_", ""))
        require(
            target.startswith(TRUSTED_MODULES),
            "model._target_",
            target,
            "a run directory may only name anneal's own networks (anneal.models.*)",
        )
    with keys("model"):
        network = instantiate(spec, num_classes=num_classes)
    return NetworkSpec(network, compile_)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def build_optimizer(cfg: DictConfig, network: nn.Module) -> tuple[Any, float]:
    """The optimizer factory (Hydra's `_partial_`) and the peak lr it sets, checked by building one."""
    node = cfg.optimizer
    require(
        is_number(node.get("lr")) and node.lr > 0,
        "optimizer.lr",
        node.get("lr"),
        "the peak learning rate: a number > 0",
    )
    for key in ("momentum", "weight_decay", "dampening"):
        if key in node:
            require(is_number(node[key]) and node[key] >= 0, f"optimizer.{key}", node[key], "a number >= 0")
    with keys("optimizer"):
        factory = instantiate(node)
        try:
            peak = factory(params=network.parameters()).defaults["lr"]
        except (TypeError, ValueError) as error:  # what torch says of the other arguments
            raise ConfigError("", text=f"{{key}} settings are invalid: {error}") from None
    return factory, peak


def build_callbacks(cfg: DictConfig) -> dict[str, L.Callback]:
    """The `callbacks` group, the ensemble and the averaging callback, by the config key that built each."""
    if cfg.mode == "lr_find":  # a range test, not a training run: no checkpoints, snapshots or averages
        return {}
    built: dict[str, L.Callback] = {}
    for name, node in (cfg.callbacks or {}).items():
        with keys(f"callbacks.{name}"):
            callback = instantiate_optional(node)
        if callback is not None:
            built[f"callbacks.{name}"] = callback
    for group in ("ensemble", "averaging"):
        with keys(group):
            callback = instantiate_optional(cfg[group])
        if callback is not None:
            built[group] = callback
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback then
        built = {k: c for k, c in built.items() if not isinstance(c, ProgressBar)}
    return built


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback]) -> L.Trainer:
    """The trainer, without loggers: they start once every setting has been checked."""
    extra = {"enable_checkpointing": False} if cfg.mode == "lr_find" else {}
    with keys("trainer"):
        return instantiate(cfg.trainer, callbacks=callbacks, logger=False, **extra)


def build_plan(
    cfg: DictConfig, trainer: L.Trainer, datamodule: ImageData, callbacks: dict[str, L.Callback], peak: float
) -> LrPlan:
    """The run's lr plan, on the clock Lightning will count: the data module's batches on this rank, with the
    trainer's batch limit, gradient accumulation and length."""
    setup_data(datamodule)
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    # a smoke test takes a step or so of the configured run, on that run's plan
    if trainer.fast_dev_run:  # type: ignore[attr-defined]  # a Trainer argument, set in its __init__
        max_epochs, max_steps = cfg.trainer.max_epochs, cfg.trainer.get("max_steps", -1)
    with keys("trainer"):
        clock = Clock.for_training(
            datamodule.batches_per_epoch(trainer.world_size),
            limit_batches=trainer.limit_train_batches,
            accumulate=trainer.accumulate_grad_batches,
            max_epochs=max_epochs,
            max_steps=max_steps,
        )
    switches = {key: c.lr_switch() for key, c in callbacks.items() if isinstance(c, RunCallback)}
    switches = {key: switch for key, switch in switches.items() if switch is not None}
    with keys("schedule"):
        schedule = instantiate(cfg.schedule)
    with keys("warmup"):
        warmup = instantiate(cfg.warmup)
    recipe = LrRecipe(schedule=schedule, warmup=warmup, switch=next(iter(switches.values()), None))
    with keys():
        plan = recipe.build(peak, clock)
    if plan.monitor is not None:
        require(
            datamodule.val_size > 0,
            "data.val_size",
            datamodule.val_size,
            f"the schedule watches {plan.monitor}: hold out a validation split (e.g. data.val_size=5000)",
        )
    for key, callback in callbacks.items():
        if isinstance(callback, RunCallback):
            with keys(key):
                callback.use_plan(plan)
    return plan


def check_optimized_metric(cfg: DictConfig, datamodule: ImageData, callbacks: dict[str, L.Callback]) -> None:
    """The metric returned to a sweeper must be one this run will produce."""
    has_val = datamodule.val_size > 0
    produced = ["test/acc", "test/loss"] + (["val/acc", "val/loss"] if has_val else [])
    produced += [m for c in callbacks.values() if isinstance(c, RunCallback) for m in c.result_metrics(has_val)]
    require(cfg.optimized_metric in produced, "optimized_metric", cfg.optimized_metric, f"this run produces {produced}")
