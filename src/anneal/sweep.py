"""The summary of a multirun: a table of every job's overrides and results, and a plot, in the sweep dir.

Hydra calls `SweepSummary` after every job and when the sweep ends; `python -m anneal.sweep SWEEP_DIR`
writes the same files for a sweep directory by hand."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from anneal.storage import atomic_write, save_text

log = logging.getLogger(__name__)
METRICS = [
    "test/acc",
    "test/loss",
    "val/acc",
    "ensemble/test/acc",
    "snapshots/test/acc_mean",
    "swa/test/acc",
    "ema/test/acc",
    "lr_find/suggestion",
    "wall_seconds",
]


def parse_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def collect(sweep_dir: Path) -> list[dict]:
    """One row per job directory holding a results.json: its number, overrides and results."""
    rows = []
    for results_path in sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        results = json.loads(results_path.read_text())
        row = {"job": results_path.parent.name, **dict(map(parse_override, results.get("overrides", [])))}
        if results.get("ensemble"):
            results["ensemble/test/acc"] = results["ensemble"][-1]["test/acc"]
        row |= {m: results[m] for m in METRICS if m in results}
        rows.append(row)
    return rows


def varying_keys(rows: list[dict]) -> list[str]:
    keys = [k for k in rows[0] if k != "job" and k not in METRICS] if rows else []
    return [k for k in keys if len({str(r.get(k)) for r in rows}) > 1]


def write_summary(sweep_dir: Path) -> list[Path]:
    rows = collect(sweep_dir)
    if not rows:
        log.warning("no results.json under %s: no sweep summary", sweep_dir)
        return []
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    save_text(buffer.getvalue(), sweep_dir / "summary.csv")  # atomic: parallel jobs may rewrite it at once
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v if v is not None else "")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    save_text("\n".join(lines) + "\n", sweep_dir / "summary.md")
    paths = [sweep_dir / "summary.csv", sweep_dir / "summary.md", plot(rows, sweep_dir / "summary.png")]
    log.info("sweep summary of %d jobs: %s", len(rows), ", ".join(str(p) for p in paths))
    return paths


def plot(rows: list[dict], path: Path, metric: str = "test/acc") -> Path:
    """Test accuracy over the swept values: a grid when two settings vary, bars otherwise."""
    from matplotlib.figure import Figure

    keys = varying_keys(rows)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    if len(keys) == 2:
        xs = sorted({r[keys[0]] for r in rows}, key=_numeric)
        ys = sorted({r[keys[1]] for r in rows}, key=_numeric)
        grid = np.array(
            [
                [next((r.get(metric) for r in rows if r[keys[0]] == x and r[keys[1]] == y), np.nan) for x in xs]
                for y in ys
            ],
            dtype=float,
        )
        image = ax.imshow(grid, cmap="viridis", origin="lower")
        middle = (np.nanmin(grid) + np.nanmax(grid)) / 2
        for i, line in enumerate(grid):
            for j, value in enumerate(line):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="black" if value > middle else "white")
        ax.set(
            xticks=range(len(xs)),
            xticklabels=xs,
            yticks=range(len(ys)),
            yticklabels=ys,
            xlabel=keys[0],
            ylabel=keys[1],
            title=f"{metric} over {keys[0]} x {keys[1]}",
        )
        fig.colorbar(image, ax=ax, label=metric)
    else:
        labels = [", ".join(f"{k}={r.get(k)}" for k in keys) or r["job"] for r in rows]
        ax.barh(labels, [r.get(metric, float("nan")) for r in rows])
        ax.set(xlabel=metric, title=f"{metric} per job")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


def _numeric(value: str):
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


class SweepSummary(Callback):
    """Rewrites the summary after every job (so a failed or interrupted sweep still has one) and at the end."""

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            write_summary(Path(HydraConfig.get().sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        write_summary(Path(config.hydra.sweep.dir))


if __name__ == "__main__":
    write_summary(Path(sys.argv[1]))
