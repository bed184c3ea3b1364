"""Rendering a run's lr function: a CSV of the lr at every optimizer step and a PNG against epochs,
cycle ends marked. `mode=preview` does only this; every training run does it at the start."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

from anneal.schedules import Clock, Schedule


def lr_per_step(schedule: Schedule, clock: Clock, total_steps: int) -> list[tuple[int, float, float]]:
    """(step, epoch, lr) for every optimizer step of the run."""
    return [(step, clock.epochs(step), schedule(clock.epochs(step))) for step in range(total_steps)]


def render(schedule: Schedule, clock: Clock, total_steps: int, out_dir: str | Path, title: str,
           name: str = "lr_schedule") -> tuple[Path, Path]:
    from matplotlib.figure import Figure  # imported here: only runs that draw pay for matplotlib

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = lr_per_step(schedule, clock, total_steps)
    csv_path, png_path = out_dir / f"{name}.csv", out_dir / f"{name}.png"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "epoch", "lr"])
        writer.writerows((s, f"{e:.6g}", f"{lr:.10g}") for s, e, lr in rows)

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([e for _, e, _ in rows], [lr for _, _, lr in rows], lw=1.2, color="tab:blue")
    for i, end in enumerate(schedule.cycle_ends()):
        ax.axvline(end, color="tab:red", ls="--", lw=0.8, label="cycle end" if i == 0 else None)
    if schedule.cycle_ends():
        ax.legend(loc="upper right")
    ax.set(xlabel="epoch", ylabel="learning rate", xlim=(0, total_steps / clock.steps_per_epoch))
    ax.set_title(textwrap.fill(title, 100), fontsize=9)
    ax.grid(alpha=0.3)
    fig.savefig(png_path, dpi=110)
    return png_path, csv_path
