"""The tables of a study: the per-job summary and the per-arm study, each as CSV (for machines) and Markdown."""

from __future__ import annotations

import csv
import io
from typing import Any

from anneal.report.statistics import Spread
from anneal.report.study import Study, is_accuracy

# the summary's metrics, one row per job: what a glance at a sweep needs
SUMMARY_METRICS = [
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
STD_NOTE = (
    "std is the sample standard deviation over seeds (ddof=1); ci95 is the half-width of the Student-t 95% "
    "confidence interval of the mean, t(0.975, n-1) · std / √n. Accuracies are in %."
)


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
    return buffer.getvalue()


def to_markdown(columns: list[str], rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.4f}" if isinstance(value, float) else str("" if value is None else value)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def summary_rows(study: Study) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per job: its number, status (ok, or failed: no results.json), settings and main metrics."""
    several = len({run.source for run in study.runs}) > 1
    keys = list(dict.fromkeys(k for run in study.runs for k in run.settings))
    rows = []
    for run in study.runs:
        job = f"{run.source.name}/{run.job}" if several and run.source != run.directory else run.job
        row: dict[str, Any] = {"job": job, "status": "ok" if run.finished else "failed", **run.settings}
        rows.append(row | {m: run.metrics[m] for m in SUMMARY_METRICS if m in run.metrics})
    present = [m for m in SUMMARY_METRICS if any(m in row for row in rows)]
    return ["job", "status", *keys, *present], rows


def study_rows(study: Study) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per arm, for machines: its settings, n, failed, every metric's mean/std/ci95, the gap to the best."""
    stats = [f"{m}_{s}" for m in study.metrics for s in ("mean", "std", "ci95")]
    columns = ["arm", *study.keys, "n", "failed", *stats, f"{study.metric}_diff_to_best"]
    rows = []
    for result in study.arms:
        row: dict[str, Any] = {"arm": result.arm.label, **result.arm.settings, "n": result.n}
        row["failed"] = result.arm.failed
        for metric, s in result.spreads.items():
            row |= {f"{metric}_mean": s.mean, f"{metric}_std": s.std, f"{metric}_ci95": s.ci95}
        row[f"{study.metric}_diff_to_best"] = result.diff_to_best
        rows.append(row)
    return columns, rows


def main_metrics(study: Study) -> list[str]:
    """The metrics a reader compares arms by, those that the runs have; the study's own metric first."""
    wanted = [study.metric, "test/acc", study.best_held_out_metric(), "ensemble/test/acc", "swa/test/acc"]
    wanted += ["ema/test/acc", "test/loss", "wall_seconds"]
    return [m for m in dict.fromkeys(wanted) if m is not None and m in study.metrics]


def number(metric: str, value: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if is_accuracy(metric):
        return f"{value * 100:{sign}.2f}"
    if metric.endswith("seconds"):
        return f"{value:{sign}.1f}"
    return f"{value:{sign}.4g}"


def format_spread(metric: str, s: Spread) -> str:
    """mean ± std (± ci95), or the mean alone for a single run."""
    text = number(metric, s.mean)
    if s.std is not None and s.ci95 is not None:
        text += f" ± {number(metric, s.std)} (± {number(metric, s.ci95)})"
    return text


def study_markdown(study: Study) -> str:
    """One readable row per arm: n and the main metrics as mean ± std (± ci95), and the gap to the best arm."""
    metrics = main_metrics(study)
    unit = " (pp)" if is_accuracy(study.metric) else ""
    gap = f"Δ {study.metric} to best{unit}"
    show_failed = any(result.arm.failed for result in study.arms)
    headers = {m: f"{m} (%)" if is_accuracy(m) else m for m in metrics}
    columns = ["arm", "n", *(["failed"] if show_failed else []), *headers.values(), gap]
    rows = []
    for result in study.arms:
        row: dict[str, Any] = {"arm": result.arm.label, "n": result.n, "failed": result.arm.failed}
        row |= {headers[m]: format_spread(m, result.spreads[m]) for m in metrics if m in result.spreads}
        if result.diff_to_best is not None:
            best = result.diff_to_best == 0
            row[gap] = "best" if best else number(study.metric, result.diff_to_best, signed=True)
        rows.append(row)
    return to_markdown(columns, rows) + "\n" + STD_NOTE + "\n"
