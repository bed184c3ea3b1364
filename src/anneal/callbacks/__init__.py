"""Cross-cutting behaviour of a run, each a Lightning callback that works in any Lightning Trainer. Those that take
part in a run beyond Lightning's hooks are `RunCallback`s: they find the run's lr plan when fitting starts (or are
handed it before), may switch the lr (SWA), and report results after training."""

from anneal.callbacks.averaging import SWA, WeightAverage
from anneal.callbacks.base import RunCallback
from anneal.callbacks.branches import BranchPoints
from anneal.callbacks.checkpoints import LastCheckpoint, SaveOnInterrupt
from anneal.callbacks.curves import StepCurves
from anneal.callbacks.ema import EMA
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
