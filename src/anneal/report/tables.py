"""The tables of a study: the per-job summary and the per-arm study, each as CSV (for machines: raw values, typed)
and Markdown (for readers: percent, mean ± std (± 95% interval), differences to the best arm)."""

from __future__ import annotations

import csv
import io
from typing import Any

from anneal.record import Metric
from anneal.report.statistics import Difference, Spread
from anneal.report.study import HEADLINE, ArmResult, Study

SUMMARY_METRICS = ["test/acc", "test/loss", "val/acc", "ensemble/test/acc", "swa/test/acc", "ema/test/acc"]
STD_NOTE = (
    "Mean ± sample std over seeds (ddof=1) (± half-width of the Student-t 95% interval of the mean). Δ to best: "
    "this arm − the best arm, unpaired (Welch's t-test: 95% interval, p) and paired over the seeds both ran "
    "(a paired t-test: the same seed gives both arms the same initialization and data order). Accuracies in %, "
    "differences in percentage points (pp)."
)


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
    return buffer.getvalue()


def cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, line breaks flattened (a value from a run directory is data)."""
    text = f"{value:.4f}" if isinstance(value, float) else str("" if value is None else value)
    return " ".join(text.split()).replace("|", "\\|")


def to_markdown(columns: list[str], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def number(metric: Metric, value: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if metric.percent:
        return f"{value * 100:{sign}.2f}"
    return f"{value:{sign}.4g}"


def format_spread(metric: Metric, s: Spread) -> str:
    """mean ± std (± ci95), or the mean alone for a single run."""
    text = number(metric, s.mean)
    if s.std is not None and s.ci95 is not None:
        text += f" ± {number(metric, s.std)} (± {number(metric, s.ci95)})"
    return text


def format_difference(metric: Metric, d: Difference | None, paired: bool = False) -> str:
    if d is None:
        return ""
    text = number(metric, d.diff, signed=True)
    if d.ci95 is not None:
        text += f" ± {number(metric, d.ci95)}"
    details = ([f"n={d.n}"] if paired else []) + ([f"p={d.p:.2g}"] if d.p is not None else [])
    return text + (f" ({', '.join(details)})" if details else "")


def summary_rows(study: Study) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per job: where it is, how it went (and why), its arm and seed, and its main numbers."""
    several = len({run.source for run in study.runs}) > 1
    arm_labels = {a.arm.id: a.label for a in study.arms}
    rows = []
    for run in study.runs:
        job = f"{run.source.name}/{run.job}" if several and run.source != run.directory else run.job
        row: dict[str, Any] = {
            "job": job,
            "status": run.status,
            "arm": arm_labels.get(run.arm.id, "") if run.arm else "",
            "seed": run.seed,
            "headline": run.headline,
            "headline value": run.metrics.get(run.headline) if run.headline else None,
        }
        row |= {m: run.metrics[m] for m in SUMMARY_METRICS if m in run.metrics}
        rows.append(row | {"reason": run.reason})
    present = [m for m in SUMMARY_METRICS if any(m in row for row in rows)]
    return ["job", "status", "arm", "seed", "headline", "headline value", *present, "reason"], rows


def used(study: Study, result: ArmResult) -> int:
    """n: the arm's runs whose value of the compared metric the statistics use."""
    found = result.spreads.get(study.metric)
    return found.n if found is not None else 0


def comparison_columns(metric: str) -> list[str]:
    unpaired = [f"{metric}_diff_to_best", f"{metric}_diff_ci95", f"{metric}_diff_p"]
    return unpaired + [f"{metric}_paired_{x}" for x in ("n", "diff", "ci95", "p")]


def study_rows(study: Study) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per arm, for machines: its label and id, its varying settings (typed), its run counts, every
    metric's mean/std/ci95, and the study metric's difference to the best arm, unpaired and paired."""
    metrics = [HEADLINE, *study.metrics]
    stats = [f"{m}_{s}" for m in metrics for s in ("mean", "std", "ci95")]
    counts = ["n", "failed", "running", "lost"]
    gain = ["headline_gain_mean", "headline_gain_ci95"]
    columns = ["arm", "arm_id", *study.keys, *counts, "headline_metric", *stats, *comparison_columns(study.metric)]
    rows = []
    for result in study.arms:
        values = result.arm.values()
        row: dict[str, Any] = {"arm": result.label, "arm_id": result.arm.id, **{k: values.get(k) for k in study.keys}}
        row |= {"n": used(study, result), "failed": result.count("failed") + result.count("stopped")}
        row |= {"running": result.count("running"), "lost": result.count("lost"), "headline_metric": result.headline}
        for metric, s in result.spreads.items():
            row |= {f"{metric}_mean": s.mean, f"{metric}_std": s.std, f"{metric}_ci95": s.ci95}
        row |= comparison_values(study.metric, result)
        if result.gain is not None:
            row |= {"headline_gain_mean": result.gain.mean, "headline_gain_ci95": result.gain.ci95}
        rows.append(row)
    if any(r.gain is not None for r in study.arms):
        columns += gain
    return columns, rows


def comparison_values(metric: str, result: ArmResult) -> dict[str, Any]:
    names = comparison_columns(metric)
    u, p = result.versus_best, result.paired_best
    values = [u and u.diff, u and u.ci95, u and u.p, p and p.n, p and p.diff, p and p.ci95, p and p.p]
    return dict(zip(names, values))


def main_metrics(study: Study) -> list[str]:
    """The metrics a reader compares arms by, those the runs have, after the study's own."""
    headlines = {a.headline for a in study.arms} if study.metric == HEADLINE else {study.metric}
    wanted = ["test/acc", study.best_held_out_metric(), "ensemble/test/acc", "swa/test/acc", "ema/test/acc"]
    wanted += ["test/loss", "wall_seconds"]
    return [m for m in dict.fromkeys(wanted) if m is not None and m in study.metrics and {m} != headlines]


def study_markdown(study: Study) -> str:
    """One readable row per arm: n, the study metric as mean ± std (± ci95), its difference to the best arm
    (unpaired and paired), the headline's gain over the trained network, then the main metrics."""
    d = study.declaration
    unit = " (pp)" if d.percent else ""
    compared = d.name if study.metric != HEADLINE else f"headline: {d.name}"
    extra = main_metrics(study)
    headers = {m: study.declared[m].name for m in extra}
    show = {s for s in ("failed", "running", "lost") if any(a.count(s) for a in study.arms)}
    gains = any(a.gain is not None for a in study.arms)
    columns = ["arm", "n", *sorted(show)]
    columns += [compared, f"Δ to best{unit}", f"paired Δ to best{unit}"]
    columns += ["headline − test acc (pp)"] if gains else []
    columns += list(headers.values())
    rows = []
    for result in study.arms:
        row: dict[str, Any] = {"arm": result.label, "n": used(study, result), **{s: result.count(s) for s in show}}
        if study.metric in result.spreads:
            row[compared] = format_spread(d, result.spreads[study.metric])
        best = result.versus_best is not None and result.versus_best.diff == 0 and result.paired_best is not None
        row[f"Δ to best{unit}"] = "best" if best else format_difference(d, result.versus_best)
        row[f"paired Δ to best{unit}"] = "" if best else format_difference(d, result.paired_best, paired=True)
        if result.gain is not None:
            row["headline − test acc (pp)"] = format_spread(study.declared["test/acc"], result.gain)
        row |= {headers[m]: format_spread(study.declared[m], result.spreads[m]) for m in extra if m in result.spreads}
        rows.append(row)
    notes = "".join(f"\n- {note}" for note in study.notes)
    return to_markdown(columns, rows) + "\n" + STD_NOTE + "\n" + (f"\nNotes:{notes}\n" if notes else "")
