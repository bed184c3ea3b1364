"""Checks of the settings that no single part can make: the run's mode and length, the types of each group's
settings against what its target declares, what a sweeper optimizes."""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig

from anneal.errors import ConfigError, require
from anneal.module import is_schedule_free
from anneal.record import Metric
from anneal.schedules import Span

MODES = ("train", "preview", "lr_find")
LR_FIND_MODES = ("exponential", "linear")
TYPED_GROUPS = ("data", "model", "schedule", "warmup", "averaging", "ensemble", "logger")


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_run_settings(cfg: DictConfig) -> None:
    """The top-level settings, before anything is built."""
    require(cfg.mode in MODES, "mode", cfg.mode, f"one of {MODES}")
    epochs, steps = cfg.trainer.max_epochs, cfg.trainer.get("max_steps", -1)
    require(
        isinstance(steps, int) and (steps == -1 or steps >= 1),
        "trainer.max_steps",
        steps,
        "an integer >= 1 (optimizer steps), or -1 for no limit",
    )
    if steps == -1 or epochs is not None:
        require(
            isinstance(epochs, int) and epochs >= 1,
            "trainer.max_epochs",
            epochs,
            "must be an integer >= 1 (or null with trainer.max_steps set)",
        )
    require(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool), "seed", cfg.seed, "an integer")
    accelerator = cfg.trainer.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda"):
        require(
            torch.cuda.is_available(),
            "trainer.accelerator",
            accelerator,
            "no GPU is available on this machine: use cpu or auto",
        )
    if cfg.mode == "lr_find":
        check_lr_find(cfg.lr_find)
    for group in TYPED_GROUPS:
        if cfg.get(group):
            check_types(cfg[group], group)


def check_lr_find(settings: DictConfig) -> None:
    require(settings.mode in LR_FIND_MODES, "lr_find.mode", settings.mode, f"one of {LR_FIND_MODES}")
    steps = settings.num_training
    require(isinstance(steps, int) and steps >= 2, "lr_find.num_training", steps, "an integer >= 2 (steps)")
    low, high = settings.min_lr, settings.max_lr
    require(is_number(low) and low > 0, "lr_find.min_lr", low, "a number > 0")
    require(is_number(high) and high > low, "lr_find.max_lr", high, f"a number above lr_find.min_lr={low}")
    stop = settings.early_stop_threshold
    require(
        stop is None or (is_number(stop) and stop > 1),
        "lr_find.early_stop_threshold",
        stop,
        "a number > 1 (times the best loss), or null to never stop early",
    )


def accepts(hint: Any, value: Any) -> bool:
    """Whether `value` (from the config) can be what a parameter annotated `hint` expects; unknown: yes."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return is_number(value)
    if hint is str:
        return isinstance(value, str)
    if hint is Span:
        return is_number(value) or isinstance(value, (str, Span))
    if origin in (tuple, list):
        item = args[0] if args else Any
        return isinstance(value, (list, tuple, ListConfig)) and all(accepts(item, v) for v in value)
    return True


def describe(hint: Any) -> str:
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
        Span: "epochs, 'N steps' or 'P%'",
    }
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if typing.get_origin(hint) in (tuple, list):
        return f"a list of {describe(args[0]) if args else 'values'}"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_names(node: DictConfig, group: str, target: Any) -> None:
    """A setting the target does not take (a typo, or `+key=` on the wrong group) is named with the ones it does."""
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # passed on to a base whose settings the signature does not show
    known = [name for name in parameters if name not in ("peak", "total", "clock", "num_classes")]
    for name in map(str, node):
        if not name.startswith("_") and name not in parameters and name != "compile":
            allowed = f"not a setting of {target.__name__}: its settings are {', '.join(known)}"
            raise ConfigError(f"{group}.{name}", node[name], allowed)


def check_types(node: DictConfig, group: str) -> None:
    """Each setting of a group against the type its target's constructor declares, before it is built: a
    string where a number belongs, or null where none is allowed, is named by its key."""
    try:
        target = get_object(str(node["_target_"]))
    except Exception:  # a target anneal cannot import: Hydra says so when it builds it
        return
    hints: dict[str, Any] = {}
    for function in (
        [vars(k)["__init__"] for k in reversed(target.__mro__) if "__init__" in vars(k)]
        if isinstance(target, type)
        else [target]
    ):  # a subclass passes **kwargs on to its bases: their parameters count too
        try:
            hints |= typing.get_type_hints(function)
        except Exception:  # annotations anneal cannot evaluate: left to the target itself
            continue
    check_names(node, group, target)
    for name, value in ((str(k), v) for k, v in node.items()):
        hint = hints.get(name)
        if hint is not None and not name.startswith("_") and not accepts(hint, value):
            raise ConfigError(f"{group}.{name}", value, f"must be {describe(hint)}")


def check_schedule_free(cfg: DictConfig, optimizer: torch.optim.Optimizer) -> None:
    """A schedule-free optimizer (Defazio et al. 2024) stands in for a decaying lr schedule and is evaluated at an
    average of its iterates: it takes schedule=constant (warmed up by the warmup group, not by its own warmup_steps,
    so that there is one warmup) and no weight-averaging callback, which would average the points it takes
    gradients at, never the ones it is evaluated at."""
    if not is_schedule_free(optimizer):
        return
    name = f"optimizer={type(optimizer).__name__}"
    warmup_steps = cfg.optimizer.get("warmup_steps", 0)
    require(
        warmup_steps == 0,
        "optimizer.warmup_steps",
        warmup_steps,
        "must be 0: warm up with the warmup group (e.g. warmup=linear warmup.epochs=2), which drives the lr of "
        "every optimizer, so that there is one warmup",
    )
    if cfg.mode == "lr_find":  # a range test sets the lr itself and averages nothing
        return
    schedule = str(cfg.schedule.get("_target_", "")).rsplit(".", 1)[-1]
    if schedule != "Constant":
        raise ConfigError(
            "schedule",
            text=f"{{key}}={schedule} is invalid with {name}: a schedule-free optimizer replaces a decaying lr "
            "schedule by averaging its iterates (Defazio et al. 2024); use schedule=constant, the one schedule "
            "allowed with it (a warmup composes with it)",
        )
    averaging = str((cfg.averaging or {}).get("_target_", "")).rsplit(".", 1)[-1]
    if averaging:
        raise ConfigError(
            "averaging",
            text=f"{{key}}={averaging} is invalid with {name}: the optimizer is evaluated at x, an average of its "
            "iterates it keeps itself, while the averaging callback would average the points it takes gradients "
            "at (y), which are never evaluated; use averaging=none",
        )


def check_optimized_metric(cfg: DictConfig, declared: list[Metric]) -> None:
    """The metric returned to a sweeper must be one this run declares it will produce."""
    produced = [m.key for m in declared]
    require(cfg.optimized_metric in produced, "optimized_metric", cfg.optimized_metric, f"this run produces {produced}")
