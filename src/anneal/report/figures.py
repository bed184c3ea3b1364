"""The figures of a study: the per-job summary plot, the heatmap over two swept settings and the arms' curves.

matplotlib is imported inside each function: it costs a second at start-up, which a run that draws nothing
should not pay. Figures are matplotlib `Figure`s, not pyplot's, so nothing global is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anneal.report.histories import arm_accuracy_curve, arm_lr_curve
from anneal.report.runs import varying_keys
from anneal.report.study import Study, is_accuracy
from anneal.report.tables import number
from anneal.storage import atomic_write


def numeric_order(value: Any) -> tuple[int, float, str]:
    """Numbers by value, then everything else by name: 1, 2, 10, adam, sgd."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def save(fig: Any, path: Path) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def label_cells(ax: Any, grid: np.ndarray, texts: list[list[str]]) -> None:
    """Write each cell's text in black on light cells and white on dark ones (viridis is light at the top)."""
    middle = (np.nanmin(grid) + np.nanmax(grid)) / 2 if np.isfinite(grid).any() else 0.0
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            color = "black" if np.isfinite(value) and value > middle else "white"
            ax.text(j, i, texts[i][j], ha="center", va="center", color=color)


def summary_plot(study: Study, path: Path, metric: str = "test/acc") -> Path | None:
    """The metric of every finished job: a grid when exactly two settings vary, bars otherwise."""
    from matplotlib.figure import Figure

    runs = [r for r in study.runs if metric in r.metrics]
    if not runs:
        return None
    keys = varying_keys(runs, exclude=frozenset())
    labels = [", ".join(f"{k}={r.settings.get(k)}" for k in keys) or r.job for r in runs]
    bars = len(keys) != 2
    # bars' labels sit left of the axes: the figure widens with the longest (~0.062 inch per character)
    width = 5.5 + 0.062 * max(map(len, labels)) if bars else 7.0
    fig = Figure(figsize=(width, max(4.5, 1 + 0.3 * len(runs)) if bars else 4.5), layout="constrained")
    ax = fig.add_subplot()
    if not bars:
        xs = sorted({r.settings.get(keys[0]) for r in runs}, key=numeric_order)
        ys = sorted({r.settings.get(keys[1]) for r in runs}, key=numeric_order)
        cell = {(r.settings.get(keys[0]), r.settings.get(keys[1])): r.metrics[metric] for r in runs}
        grid = np.array([[cell.get((x, y), np.nan) for x in xs] for y in ys], dtype=float)
        image = ax.imshow(grid, cmap="viridis", origin="lower")
        label_cells(ax, grid, [[f"{v:.3f}" for v in line] for line in grid])
        ax.set(xticks=range(len(xs)), yticks=range(len(ys)), yticklabels=ys)
        ax.set_xticklabels([str(x) for x in xs], rotation=20 if max(len(str(x)) for x in xs) > 8 else 0, ha="right")
        ax.set(xlabel=keys[0], ylabel=keys[1], title=f"{metric} over {keys[0]} x {keys[1]}")
        fig.colorbar(image, ax=ax, label=metric)
    else:
        ax.barh(labels, [r.metrics[metric] for r in runs])
        ax.set(xlabel=metric, title=f"{metric} per job")
    return save(fig, path)


def heatmap(study: Study, path: Path) -> Path | None:
    """The study metric's mean over seeds for each pair of values of the two swept settings, ± std underneath."""
    from matplotlib.figure import Figure

    if len(study.keys) != 2:
        return None
    cells = {
        (r.arm.settings.get(study.keys[0]), r.arm.settings.get(study.keys[1])): r.spreads[study.metric]
        for r in study.arms
        if study.metric in r.spreads
    }
    if not cells:
        return None
    scale = 100 if is_accuracy(study.metric) else 1
    xs = sorted({x for x, _ in cells}, key=numeric_order)
    ys = sorted({y for _, y in cells}, key=numeric_order)
    grid = np.array([[cells[x, y].mean * scale if (x, y) in cells else np.nan for x in xs] for y in ys])
    texts = [
        [
            ""
            if (s := cells.get((x, y))) is None
            else number(study.metric, s.mean) + ("" if s.std is None else f"\n± {number(study.metric, s.std)}")
            for x in xs
        ]
        for y in ys
    ]
    fig = Figure(figsize=(1.6 * len(xs) + 3, 1.1 * len(ys) + 2.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    label_cells(ax, grid, texts)
    unit = " (%)" if scale == 100 else ""
    ax.set(xticks=range(len(xs)), yticks=range(len(ys)), yticklabels=ys)
    ax.set_xticklabels([str(x) for x in xs], rotation=20 if max(len(str(x)) for x in xs) > 8 else 0, ha="right")
    ax.set(xlabel=study.keys[0], ylabel=study.keys[1], title=f"{study.metric}{unit}: mean ± std over seeds")
    fig.colorbar(image, ax=ax, label=f"{study.metric}{unit}")
    return save(fig, path)


def curves(study: Study, path: Path) -> Path | None:
    """Left: each arm's mean held-out accuracy per epoch, ± std over seeds; right: its lr, in the same colour."""
    from matplotlib.figure import Figure

    accuracy = [arm_accuracy_curve(r.arm) for r in study.arms]
    lrs = [arm_lr_curve(r.arm) for r in study.arms]
    if not any(accuracy) and not any(epochs for epochs, _ in lrs):
        return None
    legend = len(study.arms) <= 12  # a longer legend hides the curves; the colours still tell arms apart
    fig = Figure(figsize=(13, 4.8 + 0.2 * len(study.arms) * legend), layout="constrained")
    left, right = fig.subplots(1, 2)
    columns: set[str] = set()
    for i, (result, curve, (epochs, lr)) in enumerate(zip(study.arms, accuracy, lrs)):
        color, label = f"C{i % 10}", f"{result.arm.label} (n={result.n})"
        if curve is not None:
            mean, std = np.array(curve.mean), np.array(curve.std)
            left.plot(curve.epochs, mean, color=color, label=label, marker="." if len(mean) < 30 else None)
            left.fill_between(curve.epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            columns.add(curve.column)
        if epochs:
            right.plot(epochs, lr, color=color, label=label, linewidth=1.2)
    held_out = " or ".join(sorted(columns)) or "held-out accuracy"
    if not columns:
        left.text(0.5, 0.5, "no history.csv in these runs", ha="center", va="center", transform=left.transAxes)
    left.set(xlabel="epoch", ylabel=held_out, title=f"{held_out} per epoch: mean ± std over seeds")
    right.set(xlabel="epoch", ylabel="learning rate", title="learning rate (each arm's first run)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    # the panel that drew more arms (an arm may lack history.csv or an lr curve) names them all
    handles, labels = max((ax.get_legend_handles_labels() for ax in (left, right)), key=lambda h: len(h[0]))
    if handles and legend:
        # one legend under both panels: arm labels (every setting that differs) are often wider than a panel
        fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=1 if len(handles) <= 4 else 2)
    return save(fig, path)
