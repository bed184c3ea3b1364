"""The figures of a study, each as PNG and SVG: every arm's result with its 95% interval, the heatmap over two
swept settings, the result against the training budget, and the arms' curves. Human labels, accuracies in
percent, whole epochs.

matplotlib is imported inside each function: it costs a second at start-up, which a run that draws nothing
should not pay. Figures are matplotlib `Figure`s, not pyplot's, so nothing global is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anneal.record import describe, format_value, short_keys
from anneal.report.histories import HELD_OUT, arm_accuracy_curve, arm_lr_curve
from anneal.report.study import BUDGETS, Study, value
from anneal.report.tables import number
from anneal.storage import atomic_write

FORMATS = ("png", "svg")


def numeric_order(value: Any) -> tuple[int, float, str]:
    """Numbers by value, then everything else by name: 1, 2, 10, adam, sgd."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def save(fig: Any, path: Path) -> Path:
    """The figure as `path` (.png) and beside it in the other formats; returns the PNG's path."""
    for suffix in FORMATS:

        def write(f: Any, suffix: str = suffix) -> None:
            fig.savefig(f, format=suffix, dpi=110)

        atomic_write(path.with_suffix(f".{suffix}"), write)
    return path.with_suffix(".png")


def integer_epochs(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def label_cells(ax: Any, grid: np.ndarray, texts: list[list[str]]) -> None:
    """Write each cell's text in black on light cells and white on dark ones (viridis is light at the top)."""
    middle = (np.nanmin(grid) + np.nanmax(grid)) / 2 if np.isfinite(grid).any() else 0.0
    for i, line in enumerate(grid):
        for j, v in enumerate(line):
            color = "black" if np.isfinite(v) and v > middle else "white"
            ax.text(j, i, texts[i][j], ha="center", va="center", color=color)


def dots(study: Study, path: Path) -> Path | None:
    """Each arm's runs on the compared metric (small dots), their mean (large) and its 95% interval (whisker)."""
    from matplotlib.figure import Figure

    arms = [a for a in study.arms if study.metric in a.spreads]
    if not arms:
        return None
    d = study.declaration
    scale = 100 if d.percent else 1
    width = 5.5 + 0.062 * max(len(a.label) for a in arms)  # labels sit left of the axes
    fig = Figure(figsize=(width, 1.2 + 0.45 * len(arms)), layout="constrained")
    ax = fig.add_subplot()
    for row, arm in enumerate(arms):
        values = [v * scale for r in arm.counted if (v := value(r, study.metric)) is not None]
        s = arm.spreads[study.metric]
        ax.plot(values, [row] * len(values), "o", color="C0", alpha=0.45, markersize=4)
        whisker = (s.ci95 or 0) * scale
        ax.errorbar(s.mean * scale, row, xerr=whisker, fmt="o", color="C0", markersize=8, capsize=4)
    ax.set_yticks(range(len(arms)), [f"{a.label} (n={a.spreads[study.metric].n})" for a in arms])
    ax.invert_yaxis()
    ax.set(xlabel=d.name)
    ax.set_title("each run (small) and the mean with its 95% interval", fontsize="medium")
    ax.grid(alpha=0.3, axis="x")
    return save(fig, path)


def heatmap(study: Study, path: Path) -> Path | None:
    """The compared metric's mean over seeds for each pair of values of two varying settings, ± std."""
    from matplotlib.figure import Figure

    if len(study.keys) != 2:
        return None
    k0, k1 = study.keys
    cells = {
        (a.arm.values().get(k0), a.arm.values().get(k1)): a.spreads[study.metric]
        for a in study.arms
        if study.metric in a.spreads
    }
    if len(cells) <= max(len({x for x, _ in cells}), len({y for _, y in cells})):
        return None  # no value of one setting met two of the other: nothing a grid shows that a list does not
    d = study.declaration
    scale = 100 if d.percent else 1
    xs = sorted({x for x, _ in cells}, key=numeric_order)
    ys = sorted({y for _, y in cells}, key=numeric_order)
    grid = np.array([[cells[x, y].mean * scale if (x, y) in cells else np.nan for x in xs] for y in ys])
    texts = [
        [
            ""
            if (s := cells.get((x, y))) is None
            else number(d, s.mean) + ("" if s.std is None else f"\n± {number(d, s.std)}")
            for x in xs
        ]
        for y in ys
    ]
    names = short_keys([k0, k1])
    fig = Figure(figsize=(1.6 * len(xs) + 3, 1.1 * len(ys) + 2.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    label_cells(ax, grid, texts)
    ax.set(xticks=range(len(xs)), yticks=range(len(ys)), yticklabels=[format_value(y) for y in ys])
    ax.set_xticklabels([format_value(x) for x in xs], rotation=20 if max(len(str(x)) for x in xs) > 8 else 0)
    ax.set(xlabel=names[k0], ylabel=names[k1], title=f"{d.label}: mean ± std over seeds")
    fig.colorbar(image, ax=ax, label=d.name)
    return save(fig, path)


def budget_lines(study: Study) -> dict[str, list[tuple[float, float, float]]]:
    """Each method (the arms that differ in nothing but trainer.max_epochs or max_steps) as its points (budget,
    mean, 95% half-width) on the compared metric, in its unit (% for accuracies); empty where no budget varies."""
    length = next((k for k in BUDGETS if k in study.keys), None)
    if length is None:
        return {}
    others = [k for k in study.keys if k not in BUDGETS]
    scale = 100 if study.declaration.percent else 1
    methods: dict[str, list[tuple[float, float, float]]] = {}
    for a in study.arms:
        budget = a.arm.values().get(length)
        if study.metric in a.spreads and isinstance(budget, (int, float)) and not isinstance(budget, bool):
            s = a.spreads[study.metric]
            line = methods.setdefault(describe(a.arm.values(), others) or "every arm", [])
            line.append((budget, s.mean * scale, (s.ci95 or 0) * scale))
    return {method: sorted(points) for method, points in methods.items()}


def budgets(study: Study, path: Path) -> Path | None:
    """The compared metric against the training budget, one line per method, mean and 95% interval over seeds;
    drawn where a method ran at two budgets or more."""
    from matplotlib.figure import Figure

    methods = budget_lines(study)
    if not any(len(points) > 1 for points in methods.values()):
        return None
    d = study.declaration
    length = next(k for k in BUDGETS if k in study.keys)
    ticks = sorted({b for points in methods.values() for b, _, _ in points})
    fig = Figure(figsize=(7.5, 4.6 + 0.22 * len(methods)), layout="constrained")
    ax = fig.add_subplot()
    for i, (method, points) in enumerate(methods.items()):
        x, mean, ci = zip(*points)
        offset = (i - (len(methods) - 1) / 2) * 0.008 * (ticks[-1] - ticks[0] or 1)  # whiskers side by side
        ax.errorbar([v + offset for v in x], mean, yerr=ci, marker="o", capsize=3, color=f"C{i % 10}", label=method)
    ax.set_xticks(ticks, [format_value(t) for t in ticks])
    unit = "epochs" if length.endswith("epochs") else "optimizer steps"
    ax.set(xlabel=f"training budget ({unit})", ylabel=d.name, title=f"{d.label}: mean and 95% interval over seeds")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", ncols=1 if len(methods) <= 4 else 2)
    return save(fig, path)


def curves(study: Study, path: Path) -> Path | None:
    """Left: each arm's held-out accuracy (%) per epoch, mean ± std over seeds; right: its lr, same colour."""
    from matplotlib.figure import Figure

    accuracy = [arm_accuracy_curve(a.counted) for a in study.arms]
    lrs = [arm_lr_curve(a.counted or a.runs) for a in study.arms]
    if not any(accuracy) and not any(epochs for epochs, _ in lrs):
        return None
    legend = len(study.arms) <= 12  # a longer legend hides the curves; the colours still tell arms apart
    fig = Figure(figsize=(13, 4.8 + 0.2 * len(study.arms) * legend), layout="constrained")
    left, right = fig.subplots(1, 2)
    columns: set[str] = set()
    for i, (result, curve, (epochs, lr)) in enumerate(zip(study.arms, accuracy, lrs)):
        color, label = f"C{i % 10}", f"{result.label} (n={result.n})"
        if curve is not None:
            mean, std = np.array(curve.mean) * 100, np.array(curve.std) * 100
            left.plot(curve.epochs, mean, color=color, label=label, marker="." if len(mean) < 30 else None)
            left.fill_between(curve.epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            columns.add(curve.column)
        if epochs:
            right.plot(epochs, lr, color=color, label=label, linewidth=1.2)
    held_out = " or ".join(HELD_OUT[c] for c in sorted(columns) if c in HELD_OUT) or "held-out accuracy"
    if not columns:
        left.text(0.5, 0.5, "no history.csv in these runs", ha="center", va="center", transform=left.transAxes)
    left.set(xlabel="epoch", ylabel=f"{held_out} (%)", title=f"{held_out} per epoch: mean ± std over seeds")
    right.set(xlabel="epoch", ylabel="learning rate", title="learning rate (each arm's first run)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        integer_epochs(ax)
    # the panel that drew more arms (an arm may lack history.csv or an lr curve) names them all
    handles, labels = max((ax.get_legend_handles_labels() for ax in (left, right)), key=lambda h: len(h[0]))
    if handles and legend:
        # one legend under both panels: arm labels are often wider than a panel
        fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=1 if len(handles) <= 4 else 2)
    return save(fig, path)
