"""The per-epoch and per-step curves of a run (history.csv, lr_schedule.csv), and an arm's mean curve.

Both files may be missing (older runs, a failed job): every reader here returns nothing then."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from anneal.report.runs import Arm


def read_columns(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def held_out_accuracy(run_dir: Path) -> tuple[str, dict[float, float]]:
    """(column, epoch -> accuracy): val/acc with a validation split, else the test set's per-epoch test/acc."""
    rows = read_columns(run_dir / "history.csv")
    for column in ("val/acc", "test/acc"):
        curve = {float(r["epoch"]): float(r[column]) for r in rows if r.get(column) and r.get("epoch")}
        if curve:
            return column, curve
    return "", {}


def lr_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """(epochs, lrs) of every optimizer step the run wrote to lr_schedule.csv."""
    rows = [r for r in read_columns(run_dir / "lr_schedule.csv") if r.get("epoch") and r.get("lr")]
    return [float(r["epoch"]) for r in rows], [float(r["lr"]) for r in rows]


@dataclass(frozen=True)
class MeanCurve:
    column: str  # which held-out accuracy: val/acc or test/acc
    epochs: list[float]
    mean: list[float]
    std: list[float]  # over the runs that reached that epoch; 0 where only one did


def arm_accuracy_curve(arm: Arm) -> MeanCurve | None:
    """The arm's held-out accuracy per epoch, averaged over its seeds."""
    curves = [held_out_accuracy(run.directory) for run in arm.finished]
    curves = [c for c in curves if c[1]]
    if not curves:
        return None
    epochs = sorted({e for _, curve in curves for e in curve})
    means, stds = [], []
    for epoch in epochs:
        values = [curve[epoch] for _, curve in curves if epoch in curve]
        mean = math.fsum(values) / len(values)
        variance = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        means.append(mean)
        stds.append(math.sqrt(variance))
    return MeanCurve(" or ".join(sorted({c for c, _ in curves})), epochs, means, stds)


def arm_lr_curve(arm: Arm) -> tuple[list[float], list[float]]:
    """The lr of the arm's first run that wrote one (its seeds share the schedule)."""
    for run in arm.runs:
        epochs, lrs = lr_curve(run.directory)
        if epochs:
            return epochs, lrs
    return [], []
