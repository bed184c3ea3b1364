"""The per-epoch and per-step curves of a run (history.csv, lr_schedule.csv), and an arm's mean curve.

Both files may be missing (older runs, a failed job) or damaged: every reader here returns nothing then."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

from anneal.record import RunFiles
from anneal.report.runs import Run

HELD_OUT = {"val/acc": "validation accuracy", "test/acc": "test accuracy"}


def read_columns(path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def held_out_accuracy(run: Run) -> tuple[str, dict[int, float]]:
    """(column, epoch -> accuracy): the run's per-epoch held-out curve, val/acc with a validation split, else
    the test set's."""
    rows = read_columns(RunFiles(run.directory).history)
    for column in HELD_OUT:
        curve = {}
        for row in rows:
            epoch, acc = number(row.get("epoch")), number(row.get(column))
            if epoch is not None and acc is not None:
                curve[int(epoch)] = acc
        if curve:
            return column, curve
    return "", {}


def lr_curve(run: Run) -> tuple[list[float], list[float]]:
    """(epochs, lrs) of every optimizer step the run wrote to lr_schedule.csv."""
    points = [(number(r.get("epoch")), number(r.get("lr"))) for r in read_columns(RunFiles(run.directory).lr_csv)]
    kept = [(e, lr) for e, lr in points if e is not None and lr is not None]
    return [e for e, _ in kept], [lr for _, lr in kept]


@dataclass(frozen=True)
class MeanCurve:
    column: str  # which held-out accuracy: val/acc or test/acc
    epochs: list[int]
    mean: list[float]
    std: list[float]  # over the runs that reached that epoch; 0 where only one did


def arm_accuracy_curve(runs: list[Run]) -> MeanCurve | None:
    """The held-out accuracy per epoch, averaged over an arm's counted runs."""
    curves = [c for c in map(held_out_accuracy, runs) if c[1]]
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


def arm_lr_curve(runs: list[Run]) -> tuple[list[float], list[float]]:
    """The lr of the arm's first run that wrote one (its seeds share the schedule)."""
    for run in runs:
        epochs, lrs = lr_curve(run)
        if epochs:
            return epochs, lrs
    return [], []
