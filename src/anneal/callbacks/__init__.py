"""Cross-cutting behaviour of a run, each a Lightning callback. Those that take part in a run beyond
Lightning's hooks are `RunCallback`s: they may switch the lr (SWA), are handed the run's lr plan before
training, and report results after it."""

from anneal.callbacks.averaging import EMA, SWA, WeightAverage
from anneal.callbacks.base import RunCallback
from anneal.callbacks.branches import BranchPoints
from anneal.callbacks.checkpoints import LastCheckpoint, SaveOnInterrupt
from anneal.callbacks.curves import StepCurves
from anneal.callbacks.guards import NonFiniteLossGuard
from anneal.callbacks.history import History
from anneal.callbacks.lawa import LAWA
from anneal.callbacks.lr_plot import LrSchedulePlot
from anneal.callbacks.snapshots import SnapshotEnsemble
from anneal.callbacks.startup import JobStart, StartupTimer

__all__ = [
    "EMA",
    "LAWA",
    "SWA",
    "BranchPoints",
    "History",
    "JobStart",
    "LastCheckpoint",
    "LrSchedulePlot",
    "NonFiniteLossGuard",
    "RunCallback",
    "SaveOnInterrupt",
    "SnapshotEnsemble",
    "StartupTimer",
    "StepCurves",
    "WeightAverage",
]
