"""The schedules and warmups by the names of their options in the config groups (`schedule=sgdr`, `warmup=linear`),
each with the settings its option file sets (conf/schedule/*.yaml, conf/warmup/*.yaml): what `anneal.lr_scheduler`
builds from a name. A test composes every option and checks this table against it, so that a schedule named here
has the values `python train.py schedule=NAME` gives it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from anneal.schedules.adaptive import AdaptiveSGDR, Plateau
from anneal.schedules.compose import ExponentialWarmup, LinearWarmup, NoWarmup
from anneal.schedules.curves import SGDR, Constant, Cyclic, Exponential, MultiStep, OneCycle, Step, snapshot_cycles
from anneal.schedules.decays import Cosine, LinearDecay, RampDown, WarmupStableDecay


@dataclass(frozen=True)
class Option:
    """One option of a config group: what it builds and the settings its YAML file gives it."""

    target: Callable[..., Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


STEP = {"interval": "step"}  # every schedule's option samples it at every optimizer step unless it says otherwise

SCHEDULES: Mapping[str, Option] = MappingProxyType(
    {
        "adaptive_sgdr": Option(
            AdaptiveSGDR,
            {"T_0": 10, "T_mult": 2, "lr_min": 1.0e-4, "trigger_val_acc": 0.85, "compression": 5, **STEP},
        ),
        "constant": Option(Constant, STEP),
        "cosine": Option(Cosine, {"lr_min": 0.0, **STEP}),
        "cyclic": Option(Cyclic, {"lr_min": 1.0e-3, "step_size": 4, "mode": "triangular", "gamma": 1.0, **STEP}),
        "exp": Option(Exponential, {"k": 0.1, **STEP}),
        "linear": Option(LinearDecay, {"lr_min": 0.0, **STEP}),
        "multistep": Option(MultiStep, {"milestones": ["50%", "75%"], "gamma": 0.1, **STEP}),
        "onecycle": Option(OneCycle, {"pct_start": 0.3, "div_factor": 25, "final_div_factor": 1.0e4, **STEP}),
        "plateau": Option(
            Plateau,
            {
                "monitor": "val/loss",
                "mode": "min",
                "factor": 0.1,
                "patience": 10,
                "threshold": 1.0e-4,
                "threshold_mode": "rel",
                "cooldown": 0,
                "min_lr": 0.0,
                **STEP,
            },
        ),
        "ramp_down": Option(RampDown, {"length": "100%", "end_factor": 0.01, "interval": "epoch"}),
        "sgdr": Option(
            SGDR,
            {"T_0": 10, "T_mult": 2, "lr_min": 1.0e-5, "cycle_decay": 1.0, "decay_lr_min": False, **STEP},
        ),
        "snapshot": Option(snapshot_cycles, {"cycles": 5, "lr_min": 0.0, **STEP}),
        "step": Option(Step, {"step_size": 30, "gamma": 0.1, **STEP}),
        "wsd": Option(WarmupStableDecay, {"cooldown": "20%", "shape": "1-sqrt", "lr_min": 0.0, **STEP}),
    }
)

WARMUPS: Mapping[str, Option] = MappingProxyType(
    {
        "none": Option(NoWarmup),
        "linear": Option(LinearWarmup, {"epochs": 5, "steps": None, "start_lr": 0.0}),
        "exponential": Option(ExponentialWarmup, {"epochs": 5, "steps": None, "start_lr": 1.0e-4}),
    }
)
