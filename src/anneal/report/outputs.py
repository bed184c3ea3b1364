"""Writing a study's files: the per-job summary, the per-arm study tables and figures, and report.md.

Every file is written to a temporary file and renamed over the old one, and a sweep's files are rewritten under
an exclusive lock of the sweep directory: jobs that finish at the same moment (parallel launchers, nodes of a
cluster sharing the directory) take turns, and the last to write has read every finished job."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from anneal.report import figures
from anneal.report.runs import is_sweep
from anneal.report.study import HEADLINE, TARGET_CI, Study, study_of
from anneal.report.tables import study_markdown, study_rows, summary_rows, to_csv, to_markdown
from anneal.storage import save_text

log = logging.getLogger(__name__)
LOCK = ".anneal-report.lock"


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold the directory's report lock (flock; released when the process ends, however it ends)."""
    with open(directory / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_summary(study: Study, out: Path) -> dict[str, Path]:
    """summary.csv and summary.md: one row per job, failed, running and unreadable ones included."""
    columns, rows = summary_rows(study)
    return {
        "summary.csv": save_text(to_csv(columns, rows), out / "summary.csv"),
        "summary.md": save_text(to_markdown(columns, rows), out / "summary.md"),
    }


def write_study(study: Study, out: Path) -> dict[str, Path]:
    """study.csv, study.md and the figures that the study's shape allows (the heatmap needs two varying keys)."""
    columns, rows = study_rows(study)
    paths = {
        "study.csv": save_text(to_csv(columns, rows), out / "study.csv"),
        "study.md": save_text(study_markdown(study), out / "study.md"),
    }
    drawn = (("summary.png", figures.dots), ("study_heatmap.png", figures.heatmap), ("budgets.png", figures.budgets))
    for name, draw in drawn:
        if png := draw(study, out / name):
            paths[name] = png
    if png := figures.curves(study, out / "study_curves.png"):
        paths["study_curves.png"] = png
    return paths


def write_sweep_files(sweep_dir: Path, metric: str = HEADLINE) -> tuple[Study, dict[str, Path]]:
    """Everything a sweep directory gets after each job: the summary and the study (under the sweep's lock)."""
    with exclusive(sweep_dir):
        study = study_of([sweep_dir], metric)
        paths = write_summary(study, sweep_dir) | write_study(study, sweep_dir)
    finished = sum(run.finished for run in study.runs)
    log.info(
        "sweep summary of %d jobs (%d finished) in %d arms: %s",
        len(study.runs),
        finished,
        len(study.arms),
        ", ".join(str(p) for p in paths.values()),
    )
    return study, paths


def describe_source(directory: Path) -> str:
    return "sweep" if is_sweep(directory) else "run"


def report_markdown(study: Study, out: Path, paths: dict[str, Path]) -> str:
    """report.md: where the runs came from, the study table and the figures, linked relative to the report."""

    def link(name: str) -> str:
        return Path(os.path.relpath(paths[name], out)).as_posix()

    d = study.declaration
    direction = {"higher": "higher is better", "lower": "lower is better", None: "not ranked"}[d.better]
    title = " + ".join(dict.fromkeys(directory.resolve().name for directory in study.sources))
    lines = [f"# Study: {title}", "", "From:", ""]
    lines += [f"- `{directory}` ({describe_source(directory)})" for directory in study.sources]
    compared = "each arm's headline" if study.metric == HEADLINE else f"`{study.metric}`"
    lines += ["", f"{len(study.arms)} arms, compared on {compared}: {d.name}, {direction}.", ""]
    lines += [study_markdown(study)]
    captions = (
        ("summary.png", "every run and the 95% interval"),
        ("study_heatmap.png", "heatmap"),
        ("budgets.png", "against the training budget"),
    )
    for name, caption in (*captions, ("study_curves.png", "curves")):
        if name in paths:
            lines += [f"![{caption}]({link(name)})", ""]
    tables = [f"[{name}]({link(name)})" for name in ("study.csv", "study.md", "summary.csv") if name in paths]
    lines += ["Tables: " + ", ".join(tables), ""]
    return "\n".join(lines)


def write_report(
    directories: list[Path],
    out: Path,
    metric: str = HEADLINE,
    within: list[str] | tuple[str, ...] = (),
    target_ci: float = TARGET_CI,
) -> tuple[Study, dict[str, Path]]:
    """The summary, the study and report.md of the runs in these sweep and run directories, into out."""
    study = study_of(directories, metric, within, target_ci)
    if not study.runs:
        raise ValueError(f"no runs in {', '.join(map(str, directories))}")
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        paths = write_summary(study, out) | write_study(study, out)
        paths["report.md"] = save_text(report_markdown(study, out, paths), out / "report.md")
    return study, paths
