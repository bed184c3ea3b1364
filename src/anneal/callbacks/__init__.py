"""Cross-cutting behaviour of a run, each a Lightning callback that reads the lr schedule from the
trainer (`anneal.module.lr_scheduler`). Callbacks with results implement `evaluate(trainer, module,
datamodule) -> dict`, called after training; those with settings that depend on the schedule
implement `check(schedule, clock)`, called before training."""

from anneal.callbacks.averaging import EMA, SWA, WeightAverage
from anneal.callbacks.feedback import ValAccFeedback
from anneal.callbacks.checkpoints import LastCheckpoint, SaveOnInterrupt
from anneal.callbacks.guards import NonFiniteLossGuard
from anneal.callbacks.lr_plot import LrSchedulePlot
from anneal.callbacks.snapshots import SnapshotEnsemble
from anneal.callbacks.startup import StartupTimer

__all__ = ["EMA", "SWA", "WeightAverage", "ValAccFeedback", "LrSchedulePlot", "SnapshotEnsemble", "NonFiniteLossGuard",
           "SaveOnInterrupt", "LastCheckpoint", "StartupTimer"]
