"""Learning-rate schedules as pure functions of training time in epochs, their composition with a warmup and
SWA's lr switch, and the run's lr plan that drives the optimizer at every step."""

from anneal.schedules.adaptive import AdaptiveSGDR, Plateau
from anneal.schedules.clock import Clock, Span
from anneal.schedules.compose import ExponentialWarmup, LinearWarmup, LrSwitch, NoWarmup, Warmup
from anneal.schedules.curves import (
    SGDR,
    Constant,
    Curve,
    Cyclic,
    Exponential,
    MultiStep,
    OneCycle,
    Schedule,
    Step,
    cycle_position,
    lr_floor,
    snapshot_cycles,
)
from anneal.schedules.decays import Cosine, LinearDecay, RampDown, WarmupStableDecay
from anneal.schedules.plan import LrPlan, LrRecipe, ScheduleLR

__all__ = [
    "SGDR",
    "AdaptiveSGDR",
    "Clock",
    "Constant",
    "Cosine",
    "Curve",
    "Cyclic",
    "Exponential",
    "ExponentialWarmup",
    "LinearDecay",
    "LinearWarmup",
    "LrPlan",
    "LrRecipe",
    "LrSwitch",
    "MultiStep",
    "NoWarmup",
    "OneCycle",
    "Plateau",
    "RampDown",
    "Schedule",
    "ScheduleLR",
    "Span",
    "Step",
    "Warmup",
    "WarmupStableDecay",
    "cycle_position",
    "lr_floor",
    "snapshot_cycles",
]
