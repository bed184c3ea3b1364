"""The tables of a study: the per-job summary and the per-arm study, each as CSV (for machines: raw values, typed)
and Markdown (for readers: percent, mean ± std (± 95% interval), differences to the best arm)."""

from __future__ import annotations

import csv
import io
from typing import Any

from anneal.record import Metric, short_keys
from anneal.report.statistics import Difference, Spread
from anneal.report.study import HEADLINE, ArmResult, Study, value

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
    details += [f"Holm p={d.p_holm:.2g}"] if d.p_holm is not None else []
    return text + (f" ({', '.join(details)})" if details else "")


def comparison_note(study: Study) -> str:
    """What the differences are against, how their p-values are adjusted, and what the seed column plans for."""
    unit = "pp" if study.declaration.percent else study.declaration.name
    text = ""
    if study.within:
        shown = short_keys(study.within).items()
        names = ", ".join(f"{short} ({key})" if short != key else key for key, short in shown)
        text += (
            f"Each arm is compared with the best arm of its own {names} (column 'compared with'): arms trained for "
            "different lengths, or named apart with --within, are not ranked against each other. "
        )
    text += (
        "The best arm shows no difference to itself. p: each test's own p-value; Holm p: adjusted (Holm 1979) over "
        "the arms compared with the same best arm, one family for the unpaired tests and one for the paired, since "
        "that best arm was picked after seeing the results. Holm bounds the chance of any false 'differs' in the "
        "family; the pick itself still flatters the best arm (its lead is biased up), so read small leads with care. "
        f"Seeds for ± {study.target_ci:g} {unit}: how many seeds would give the paired 95% interval of the "
        f"difference a half-width of {study.target_ci:g} {unit}, from the observed spread of the per-seed "
        "differences (the least n with t(0.975, n − 1) · sd / √n within it)."
    )
    return text


def summary_rows(study: Study) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per job: where it is, how it went (and why), its arm and seed, and the numbers its producers
    declared as columns."""
    shown = table_metrics(study)
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
        row |= {m: run.metrics[m] for m in shown if m in run.metrics}
        rows.append(row | {"reason": run.reason})
    return ["job", "status", "arm", "seed", "headline", "headline value", *shown, "reason"], rows


def per_run_rows(study: Study) -> list[dict[str, Any]]:
    """One row per counted run (the notebook's table): its arm and seed, the value of its headline and which
    metric that is, its trained network's test accuracy, and every other metric its producers declared as a column."""
    rows = []
    for result in study.arms:
        for run in result.counted:
            row: dict[str, Any] = {"arm": result.label, "seed": run.seed, "headline": value(run, HEADLINE)}
            row |= {"headline metric": run.headline, "test/acc (trained network)": run.metrics.get("test/acc")}
            shown = {k: v for k, v in run.metrics.items() if k != "test/acc" and k in run.declared}
            rows.append(row | {k: v for k, v in shown.items() if run.declared[k].in_tables})
    return rows


def used(study: Study, result: ArmResult) -> int:
    """n: the arm's runs whose value of the compared metric the statistics use."""
    found = result.spreads.get(study.metric)
    return found.n if found is not None else 0


def comparison_columns(metric: str) -> list[str]:
    unpaired = [f"{metric}_diff_to_best", f"{metric}_diff_ci95", f"{metric}_diff_p"]
    paired = [f"{metric}_paired_{x}" for x in ("n", "diff", "ci95", "p")]
    adjusted = [f"{metric}_diff_p_holm", f"{metric}_paired_p_holm"]
    return unpaired + paired + adjusted + ["compared_within", "best_arm", f"{metric}_seeds_needed", "target_ci"]


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
        row |= comparison_values(study.metric, result) | {"target_ci": study.target_ci}
        if result.gain is not None:
            row |= {"headline_gain_mean": result.gain.mean, "headline_gain_ci95": result.gain.ci95}
        rows.append(row)
    if any(r.gain is not None for r in study.arms):
        columns += gain
    return columns, rows


def comparison_values(metric: str, result: ArmResult) -> dict[str, Any]:
    names = comparison_columns(metric)
    u, p = result.versus_best, result.paired_best
    values: list[Any] = [u and u.diff, u and u.ci95, u and u.p, p and p.n, p and p.diff, p and p.ci95, p and p.p]
    values += [u and u.p_holm, p and p.p_holm, result.group, result.best, result.seeds_needed]
    return dict(zip(names, values))


def table_metrics(study: Study) -> list[str]:
    """The metrics the runs' producers declared as columns (`Metric.in_tables`): the headline candidates by rank
    (the trained network, the averages, the ensemble), then the others in the order the runs report them."""
    shown = [m for m in study.metrics if m in study.declared and study.declared[m].in_tables]
    return sorted(shown, key=lambda m: (study.declared[m].headline == 0, study.declared[m].headline))


def main_metrics(study: Study) -> list[str]:
    """The metrics a reader compares arms by, those the runs have, but the study's own."""
    headlines = {a.headline for a in study.arms} if study.metric == HEADLINE else {study.metric}
    return [m for m in table_metrics(study) if {m} != headlines]


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
    seeds = f"seeds for ± {study.target_ci:g}{' pp' if d.percent else ''}"
    columns += [compared, *(["compared with"] if study.within else [])]
    columns += [f"Δ to best{unit}", f"paired Δ to best{unit}", seeds]
    columns += ["headline − test acc (pp)"] if gains else []
    columns += list(headers.values())
    rows = []
    for result in study.arms:
        row: dict[str, Any] = {"arm": result.label, "n": used(study, result), **{s: result.count(s) for s in show}}
        if study.metric in result.spreads:
            row[compared] = format_spread(d, result.spreads[study.metric])
        best = result.best == result.label
        if study.within and result.best is not None:
            row["compared with"] = "—" if best else result.best
        row[f"Δ to best{unit}"] = "best" if best else format_difference(d, result.versus_best)
        row[f"paired Δ to best{unit}"] = "" if best else format_difference(d, result.paired_best, paired=True)
        row[seeds] = result.seeds_needed
        if result.gain is not None:
            row["headline − test acc (pp)"] = format_spread(study.declared["test/acc"], result.gain)
        row |= {headers[m]: format_spread(study.declared[m], result.spreads[m]) for m in extra if m in result.spreads}
        rows.append(row)
    notes = "".join(f"\n- {note}" for note in study.notes)
    text = to_markdown(columns, rows) + "\n" + STD_NOTE + "\n"
    text += f"\n{comparison_note(study)}\n" if study.declaration.better is not None else ""
    return text + (f"\nNotes:{notes}\n" if notes else "")
