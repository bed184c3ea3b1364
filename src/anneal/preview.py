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
from anneal.schedules import LrPlan, ScheduleLR

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
    """A run's lr picture and CSV, under the names of its run directory."""
    files.directory.mkdir(parents=True, exist_ok=True)
    draw(plan, files.lr_png, files.lr_csv, title)
    return files.lr_png, files.lr_csv


def preview_lr(scheduler: LrPlan | ScheduleLR, path: str | Path, title: str | None = None) -> Path:
    """Draw the lr of a scheduler made by `anneal.lr_scheduler` (or of its plan) against epochs into the PNG `path`,
    its cycle ends marked, and write the lr of every step beside it (the same name, `.csv`: step, epoch, lr).
    Returns the PNG's path."""
    plan = scheduler.plan if isinstance(scheduler, ScheduleLR) else scheduler
    png_path = Path(path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    draw(plan, png_path, png_path.with_suffix(".csv"), title or f"lr schedule: {plan.describe()}")
    return png_path


def draw(plan: LrPlan, png_path: Path, csv_path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # imported here: only runs that draw pay for matplotlib

    rows = lr_points(plan)
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
