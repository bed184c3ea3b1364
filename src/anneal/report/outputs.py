"""Writing a study's files: the per-job summary, the per-arm study tables and figures, and report.md.

Every file is written to a temporary file and renamed over the old one: the jobs of a parallel sweep rewrite
them at once, and a reader never sees half a file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from anneal.report import figures
from anneal.report.runs import job_directories
from anneal.report.study import Study, higher_is_better, study_of
from anneal.report.tables import study_markdown, study_rows, summary_rows, to_csv, to_markdown
from anneal.storage import save_text

log = logging.getLogger(__name__)


def write_summary(study: Study, out: Path) -> dict[str, Path]:
    """summary.csv, summary.md and summary.png: one row per job, failed ones included."""
    columns, rows = summary_rows(study)
    paths = {
        "summary.csv": save_text(to_csv(columns, rows), out / "summary.csv"),
        "summary.md": save_text(to_markdown(columns, rows), out / "summary.md"),
    }
    if png := figures.summary_plot(study, out / "summary.png"):
        paths["summary.png"] = png
    return paths


def write_study(study: Study, out: Path) -> dict[str, Path]:
    """study.csv, study.md and the figures that the study's shape allows (the heatmap needs two swept settings)."""
    columns, rows = study_rows(study)
    paths = {
        "study.csv": save_text(to_csv(columns, rows), out / "study.csv"),
        "study.md": save_text(study_markdown(study), out / "study.md"),
    }
    if png := figures.heatmap(study, out / "study_heatmap.png"):
        paths["study_heatmap.png"] = png
    if png := figures.curves(study, out / "study_curves.png"):
        paths["study_curves.png"] = png
    return paths


def write_sweep_files(sweep_dir: Path, metric: str = "test/acc") -> tuple[Study, dict[str, Path]]:
    """Everything a sweep directory gets after each job: the summary and the study."""
    study = study_of([sweep_dir], metric)
    paths = write_summary(study, sweep_dir) | write_study(study, sweep_dir)
    finished = sum(run.finished for run in study.runs)
    log.info(
        "sweep summary of %d jobs (%d failed) in %d arms: %s",
        len(study.runs),
        len(study.runs) - finished,
        len(study.arms),
        ", ".join(str(p) for p in paths.values()),
    )
    return study, paths


def describe_source(directory: Path) -> str:
    jobs = job_directories(directory)
    return f"sweep of {len(jobs)} jobs" if jobs else "run"


def report_markdown(study: Study, out: Path, paths: dict[str, Path]) -> str:
    """report.md: where the runs came from, the study table and the figures, linked relative to the report."""
    link = lambda name: Path(os.path.relpath(paths[name], out)).as_posix()  # noqa: E731
    direction = "higher" if higher_is_better(study.metric) else "lower"
    title = " + ".join(dict.fromkeys(directory.resolve().name for directory in study.sources))
    lines = [f"# Study: {title}", "", "From:", ""]
    lines += [f"- `{directory}` ({describe_source(directory)})" for directory in study.sources]
    lines += ["", f"{len(study.arms)} arms, compared on `{study.metric}` ({direction} is better).", ""]
    lines += [study_markdown(study)]
    for name, caption in (("study_heatmap.png", "heatmap"), ("study_curves.png", "curves")):
        if name in paths:
            lines += [f"![{caption}]({link(name)})", ""]
    tables = [f"[{name}]({link(name)})" for name in ("study.csv", "study.md", "summary.csv") if name in paths]
    lines += ["Tables: " + ", ".join(tables), ""]
    return "\n".join(lines)


def write_report(directories: list[Path], out: Path, metric: str = "test/acc") -> tuple[Study, dict[str, Path]]:
    """The summary, the study and report.md of the runs in these sweep and run directories, into out."""
    study = study_of(directories, metric)
    if not study.runs:
        raise ValueError(f"no runs in {', '.join(map(str, directories))}")
    paths = write_summary(study, out) | write_study(study, out)
    paths["report.md"] = save_text(report_markdown(study, out, paths), out / "report.md")
    return study, paths
