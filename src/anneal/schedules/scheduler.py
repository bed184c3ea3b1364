"""Any of anneal's schedules, with any warmup and SWA's lr switch, as a torch lr scheduler in one call: the same
lr plan `python train.py` builds from its config groups, for an optimizer of your own code."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch.optim import Optimizer

from anneal.errors import ConfigError, require, within
from anneal.schedules.clock import EPS, Clock, Span
from anneal.schedules.compose import LrSwitch
from anneal.schedules.options import SCHEDULES, WARMUPS, Option
from anneal.schedules.plan import LrRecipe, ScheduleLR

WARMUP_PREFIX, SWA_PREFIX = "warmup_", "swa_"
SWA_SETTINGS = {"start": "75%", "lr": None, "anneal_epochs": 5}  # as conf/averaging/swa.yaml sets them


def lr_scheduler(
    optimizer: Optimizer,
    schedule: str | Callable[..., Any] = "cosine",
    *,
    epochs: int | None = None,
    steps: int | None = None,
    steps_per_epoch: int,
    warmup: str = "none",
    **settings: Any,
) -> ScheduleLR:
    """A per-step torch lr scheduler that drives `optimizer` along one of anneal's schedules.

    Call `scheduler.step()` after every `optimizer.step()`; in Lightning, return it from `configure_optimizers` as
    `{"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}`. The peak lr is the
    optimizer's lr (that of its first parameter group; other groups keep their ratio to it).

    Args:
        optimizer: the optimizer whose lr is set at every step.
        schedule: the name of a `schedule` option of `python train.py` (`"cosine"`, `"sgdr"`, `"snapshot"`,
            `"wsd"`, `"onecycle"`, `"plateau"`, ... see `anneal.schedules.options.SCHEDULES`), or a schedule class of
            your own (an `anneal.schedules.Curve` subclass), which is given the settings as they are.
        epochs: the length of training in epochs; or
        steps: its length in optimizer steps (if both are given, whichever ends training first, as Lightning's
            `max_epochs` and `max_steps`).
        steps_per_epoch: optimizer steps per epoch (the training batches of an epoch divided by gradient
            accumulation, rounded up): the clock that turns the settings given in epochs into steps.
        warmup: the name of a `warmup` option: `"none"`, `"linear"` or `"exponential"`.
        **settings: the schedule's settings by the names its option file gives them (`T_0=10, T_mult=2`,
            `lr_min="1%"`, `cooldown="20%"`); the warmup's prefixed with `warmup_` (`warmup_epochs=1`,
            `warmup_steps=500` (then `warmup_epochs` need not be set to None), `warmup_start_lr=0.0`); SWA's switch
            to a constant lr (Izmailov et al. 2018) with `swa_lr=0.05`, from `swa_start` (default `"75%"`, or
            epochs, or `"N steps"`), reached along a half cosine over `swa_anneal_epochs` (default 5). A setting not
            given takes the value of the option file, so that `lr_scheduler(opt, "sgdr", ...)` follows the lr of
            `python train.py schedule=sgdr`.

    Returns:
        An `anneal.schedules.ScheduleLR` (a torch `LambdaLR` with `state_dict` / `load_state_dict`) whose `plan`
        gives the lr of every step (`plan.lr(step)`) and time (`plan.lr_at(epochs)`), the cycle ends
        (`plan.cycle_ends()` in epochs, `plan.cycle_end_steps()`) and draws with `anneal.preview_lr`.

    A schedule that adapts to a held-out metric (`"plateau"`, `"adaptive_sgdr"`; `scheduler.plan.monitor` names the
    metric) must be fed it after every evaluation: `scheduler.observe(value)` (in Lightning, in
    `on_validation_epoch_end`: `self.lr_schedulers().observe(self.trainer.callback_metrics["val/loss"].item())`).

    Raises:
        ConfigError: a name or setting is invalid; the one-line message names the argument, its value and what is
            allowed, before any step is taken.
    """
    require(
        isinstance(steps_per_epoch, int) and not isinstance(steps_per_epoch, bool) and steps_per_epoch >= 1,
        "steps_per_epoch",
        steps_per_epoch,
        "an integer >= 1 (optimizer steps per epoch)",
    )
    for key, value in (("epochs", epochs), ("steps", steps)):
        require(value is None or (isinstance(value, int) and value >= 1), key, value, "an integer >= 1, or None")
    require(epochs is not None or steps is not None, "epochs", epochs, "give the length of training: epochs or steps")
    clock = Clock.of_length(steps_per_epoch, max_epochs=epochs if epochs is not None else -1, max_steps=steps or -1)
    option = schedule_option(schedule)
    schedule_settings = {k: v for k, v in settings.items() if not k.startswith((WARMUP_PREFIX, SWA_PREFIX))}
    warmup_settings = prefixed(settings, WARMUP_PREFIX)
    swa_settings = prefixed(settings, SWA_PREFIX)
    if isinstance(schedule, str):
        check_names(schedule_settings, option, f"schedule={schedule!r}")
    switch = build_switch(swa_settings, clock)
    with arguments():
        factory = functools.partial(option.target, **{**option.defaults, **schedule_settings})
        recipe = LrRecipe(factory, build_warmup(warmup, warmup_settings), switch)
        plan = recipe.build(peak_of(optimizer), clock)
    return ScheduleLR(optimizer, plan)


def schedule_option(schedule: object) -> Option:
    if isinstance(schedule, str):
        require(schedule in SCHEDULES, "schedule", schedule, f"one of {', '.join(SCHEDULES)}, or a schedule class")
        return SCHEDULES[schedule]
    require(callable(schedule), "schedule", schedule, f"one of {', '.join(SCHEDULES)}, or a schedule class")
    assert callable(schedule)
    return Option(schedule)


def prefixed(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in settings.items() if k.startswith(prefix)}


def check_names(given: Mapping[str, Any], option: Option, what: str, prefix: str = "") -> None:
    """A setting the option does not have is named, with the ones it has."""
    for name, value in given.items():
        if name not in option.defaults:
            known = ", ".join(prefix + k for k in option.defaults) or "none"
            raise ConfigError(f"{prefix}{name}", value, f"not a setting of {what}: its settings are {known}")


def build_warmup(name: str, settings: dict[str, Any]) -> Any:
    require(isinstance(name, str) and name in WARMUPS, "warmup", name, f"one of {', '.join(WARMUPS)}")
    option = WARMUPS[name]
    check_names(settings, option, f"warmup={name!r}", WARMUP_PREFIX)
    if "steps" in settings and "epochs" not in settings:  # a warmup in steps replaces the option's epochs
        settings = {**settings, "epochs": None}
    with within("warmup"):
        return option.target(**{**option.defaults, **settings})


def build_switch(settings: dict[str, Any], clock: Clock) -> LrSwitch | None:
    check_names(settings, Option(LrSwitch, SWA_SETTINGS), "SWA's lr switch", SWA_PREFIX)
    given = {**SWA_SETTINGS, **settings}
    if given["lr"] is None:
        for name, value in ((k, v) for k, v in settings.items() if k != "lr"):
            raise ConfigError(f"{SWA_PREFIX}{name}", value, "it shapes the switch to swa_lr: set swa_lr too")
        return None
    require(given["lr"] > 0, "swa_lr", given["lr"], "must be > 0")
    anneal = given["anneal_epochs"]
    require(isinstance(anneal, (int, float)) and anneal >= 0, "swa_anneal_epochs", anneal, "must be >= 0 epochs")
    start = Span.parse(given["start"], "swa_start", shares=True)
    start_epochs, total = start.epochs(clock.total_epochs, clock), clock.total_epochs
    require(start_epochs < total, "swa_start", str(start), f"must be within training ({total:g} epochs)")
    require(
        start_epochs + anneal <= total + EPS,
        "swa_anneal_epochs",
        anneal,
        f"the ramp to swa_lr from swa_start (epoch {start_epochs:g}) must end within training ({total:g} epochs)",
    )
    return LrSwitch(start, given["lr"], anneal)


def peak_of(optimizer: Optimizer) -> float:
    """The lr the schedule peaks at: the first parameter group's (its `initial_lr` once a scheduler has set one)."""
    require(isinstance(optimizer, Optimizer), "optimizer", type(optimizer).__name__, "a torch.optim.Optimizer")
    group = optimizer.param_groups[0]
    return float(group.get("initial_lr", group["lr"]))


@contextmanager
def arguments() -> Iterator[None]:
    """Setting errors name the argument the caller typed: `schedule.T_0` is `T_0`, `warmup.epochs` is
    `warmup_epochs`, the peak is the optimizer's lr; a setting the schedule does not take is named too."""
    try:
        yield
    except ConfigError as error:
        key = error.key
        if key.startswith("schedule."):
            key = key.removeprefix("schedule.")
        elif key.startswith("warmup."):
            key = WARMUP_PREFIX + key.removeprefix("warmup.")
        elif key == "peak":
            key = "the optimizer's lr"
        raise ConfigError(key, error.value, error.allowed, text=error.text) from None
    except TypeError as error:  # a schedule class of the caller's that does not take a setting
        raise ConfigError("schedule", text=f"{{key}} settings are invalid: {error}") from None
