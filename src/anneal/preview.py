"""Rendering a run's lr plan: a CSV of the lr at every optimizer step and a PNG against epochs, cycle ends
marked. `mode=preview` does only this; every training run does it at the start.

A run of more than `MAX_POINTS` steps is drawn from that many evenly spaced steps plus the steps around
every cycle end, so that the picture costs the same for 10^3 steps as for 10^9."""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

from anneal.record import RunFiles
from anneal.schedules import LrPlan

MAX_POINTS = 100_000


def plotted_steps(plan: LrPlan, max_points: int = MAX_POINTS) -> list[int]:
    """Every step of the run when there are at most `max_points`, else a sample that keeps the restarts."""
    total = plan.clock.total_steps
    if total <= max_points:
        return list(range(total))
    stride = math.ceil(total / max_points)
    ends = [s for end in plan.cycle_end_steps() for s in (end - 1, end) if 0 <= s < total]
    return sorted({*range(0, total, stride), total - 1, *ends})


def lr_points(plan: LrPlan, max_points: int = MAX_POINTS) -> list[tuple[int, float, float]]:
    """(step, epoch, lr) for the steps of the run that are drawn."""
    return [(step, plan.clock.epochs(step), plan.lr(step)) for step in plotted_steps(plan, max_points)]


def render(plan: LrPlan, files: RunFiles, title: str) -> tuple[Path, Path]:
    from matplotlib.figure import Figure  # imported here: only runs that draw pay for matplotlib

    files.directory.mkdir(parents=True, exist_ok=True)
    rows = lr_points(plan)
    csv_path, png_path = files.lr_csv, files.lr_png
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "epoch", "lr"])
        writer.writerows((s, f"{e:.6g}", f"{lr:.10g}") for s, e, lr in rows)

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([e for _, e, _ in rows], [lr for _, _, lr in rows], lw=1.2, color="tab:blue")
    ends = plan.cycle_ends()
    for i, end in enumerate(ends[:1000]):  # a marker per cycle end, as long as they can be told apart
        ax.axvline(end, color="tab:red", ls="--", lw=0.8, label="cycle end" if i == 0 else None)
    colors: dict[str, str] = {}
    for epoch, what in plan.marks[:1000]:  # snapshots taken, an average's start ...
        color = colors.setdefault(what, f"C{len(colors) + 2}")
        ax.axvline(epoch, color=color, ls=":", lw=1.6, label=what)
    if ends or plan.marks:
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))  # one entry per kind of mark
        ax.legend(unique.values(), unique.keys(), loc="upper right")
    ax.set(xlabel="epoch", ylabel="learning rate", xlim=(0, plan.clock.total_epochs))
    ax.set_title(textwrap.fill(title, 100), fontsize=9)
    ax.grid(alpha=0.3)
    fig.savefig(png_path, dpi=110)
    return png_path, csv_path
