"""Finding the runs in sweep and run directories and reading what each is (its arm and seed) and how it went.

A run directory is untrusted input: it is read as JSON, YAML (safe) and CSV, never executed or unpickled, and
whatever cannot be read makes that run `unreadable` (with the file and the reason) while the others are read.
Runs made before run.json existed are read from what they left (config.yaml, Hydra's .hydra/); what such a run
lacks is said, not guessed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from anneal.record import (
    Arm,
    Metric,
    RunFiles,
    RunRecord,
    UnreadableRun,
    arm_of,
    declared_metrics,
    headline_key,
    read_json,
    results_of,
)
from anneal.run_dir import is_locked

# what became of a run: finished (results.json), running (its lock is held), lost (killed: a lock nobody holds,
# or a record that never ended), failed or stopped (run.json says why), unreadable (a file that cannot be read)
STATUSES = ("finished", "running", "lost", "failed", "stopped", "unreadable")


@dataclass(frozen=True)
class Run:
    directory: Path  # resolved: a run is counted once however it is reached
    source: Path  # the directory it was found through: its sweep, or itself
    job: str  # its number in the sweep, or the run directory's name
    status: str
    arm: Arm | None = None  # None: unknown (unreadable, or nothing recorded)
    seed: Any = None
    reason: str = ""  # why it failed, stopped or could not be read
    results: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the declared numbers of results.json
    declared: dict[str, Metric] = field(default_factory=dict)
    headline: str | None = None
    legacy: str = ""  # for a run older than run.json or the declarations: what it lacks
    label: str = ""  # its arm against the defaults of its options, as the run recorded it

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def is_run_directory(directory: Path) -> bool:
    files = RunFiles(directory)
    return any(p.exists() for p in (files.record, files.results, files.config, files.legacy_hydra))


def job_directories(directory: Path) -> list[Path]:
    """A sweep's numbered job directories that hold a run, in job order (10 after 9)."""
    if not directory.is_dir():
        return []
    jobs = [p for p in directory.iterdir() if p.name.isdigit() and p.is_dir() and is_run_directory(p)]
    return sorted(jobs, key=lambda p: int(p.name))


def is_sweep(directory: Path) -> bool:
    return bool(job_directories(directory)) and not is_run_directory(directory)


def legacy_arm(files: RunFiles) -> tuple[Arm, Any, str]:
    """(arm, seed, what is missing) of a run made before run.json: its resolved config.yaml (else Hydra's copy
    of the unresolved one) and Hydra's record of the chosen options."""
    choices: dict[str, Any] = {}
    lacks = []
    hydra = files.legacy_hydra / "hydra.yaml"
    if hydra.is_file():
        found = yaml.safe_load(hydra.read_text())
        choices = dict(((found or {}).get("hydra") or {}).get("runtime", {}).get("choices") or {})
    if not choices:
        lacks.append("the chosen option of each group")
    config_path = files.config if files.config.is_file() else files.legacy_hydra / "config.yaml"
    if not config_path.is_file():
        raise UnreadableRun(f"{files.directory}: neither run.json nor a config.yaml to know what the run was")
    config = yaml.safe_load(config_path.read_text())
    if not isinstance(config, Mapping):
        raise UnreadableRun(f"{config_path}: not a config (a {type(config).__name__})")
    if config_path != files.config:
        lacks.append("a resolved config (interpolated values are kept as written)")
    return arm_of(config, choices), config.get("seed"), "; ".join(lacks)


def read_results(files: RunFiles) -> tuple[dict[str, Any], dict[str, float], dict[str, Metric], str | None, str]:
    """(results.json, its declared numbers, their declarations, the headline key, what it lacks)."""
    results = results_of(files)
    try:
        declared, own = declared_metrics(results)
    except ValueError as error:
        raise UnreadableRun(f"{files.results}: {error}") from None
    numbers = {}
    for key, metric in declared.items():
        if (problem := out_of_range(metric, results.get(key, MISSING))) is not None:
            raise UnreadableRun(f"{files.results}: {key} {problem}")
        numbers[key] = float(results[key])
    lacks = "" if own else "metric declarations (read as anneal declared these keys before they were recorded)"
    return results, numbers, declared, headline_key(results, declared), lacks


MISSING = object()
LARGEST = 1e15  # beyond any number a run measures (a count, seconds, a loss), and its square stays finite


def out_of_range(metric: Metric, value: object) -> str | None:
    """Why a declared metric's value cannot be a measurement, if it cannot: a study must not average it in (nor
    be stopped by it: the report lists the run as unreadable)."""
    if value is MISSING:
        return "is declared but has no value"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"is {value!r}, not a number"
    if not math.isfinite(value):
        return f"is {value!r}, not a finite number"
    if metric.percent and not 0 <= value <= 1:
        return f"is {value!r}, outside [0, 1] (a share: 1 is 100%)"
    if abs(value) > LARGEST:
        return f"is {value!r}, beyond any measurement (|value| > {LARGEST:g})"
    return None


def log_of(files: RunFiles) -> str:
    """Where the run's log is: the one a cluster launcher noted in job.json, else train.log, if any."""
    if files.job.is_file():
        try:
            noted = read_json(files.job)
        except ValueError:
            noted = None
        if isinstance(noted, dict) and isinstance(noted.get("log"), str):
            return noted["log"]
    return str(files.log) if files.log.exists() else ""


def status_without_results(files: RunFiles, record: RunRecord | None) -> tuple[str, str]:
    if is_locked(files.directory):
        return "running", ""
    log = log_of(files)
    see = f" (log: {log})" if log else ""
    if files.lock.exists():
        return "lost", f"killed: {files.relative(files.lock)} is held by no process and there is no results.json{see}"
    if record is None:
        return "failed", f"no results.json{see}"
    if record.status in ("failed", "stopped"):
        resumable = " (resume: ckpt_path=last)" if files.last_checkpoint.exists() else ""
        return record.status, (record.error or "") + resumable + see
    if record.status == "started":
        return "lost", f"its record says it started and nothing says it ended{see}"
    return "failed", f"run.json says finished but there is no results.json{see}"


def read_run(directory: Path, source: Path, job: str) -> Run:
    files = RunFiles(directory)
    try:
        record = RunRecord.load(files) if files.record.is_file() else None
        label = record.label if record is not None else ""
        if record is not None:
            arm, seed, lacks = record.arm, record.seed, ""
        else:
            arm, seed, lacks = legacy_arm(files)
            lacks = "run.json" + (f", {lacks}" if lacks else "")
        seed = whole_seed(seed, files)
        if not files.results.is_file():
            status, reason = status_without_results(files, record)
            return Run(directory, source, job, status, arm, seed, reason, legacy=lacks, label=label)
        results, numbers, declared, headline, lacks_declarations = read_results(files)
    except (UnreadableRun, yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        reason = str(error) if isinstance(error, UnreadableRun) else f"{directory}: {type(error).__name__}: {error}"
        return Run(directory, source, job, "unreadable", reason=reason.splitlines()[0])
    lacks = "; ".join(x for x in (lacks, lacks_declarations) if x)
    return Run(directory, source, job, "finished", arm, seed, "", results, numbers, declared, headline, lacks, label)


def whole_seed(seed: Any, files: RunFiles) -> Any:
    """A recorded seed as the integer it is: "0" and 0.0 are seed 0 (a seed shared by two arms pairs their runs,
    so two spellings of one seed must not count as two seeds); None where the run recorded none."""
    if seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
        return seed
    if isinstance(seed, float) and seed.is_integer():
        return int(seed)
    if isinstance(seed, str) and seed.strip().lstrip("+-").isdigit():
        return int(seed.strip())
    recorded = files.record if files.record.is_file() else files.config
    raise UnreadableRun(f"{recorded}: the seed {seed!r} is not a whole number")


def collect_runs(directories: list[Path]) -> list[Run]:
    """Every job of every sweep directory and every run directory, in the order given, each once."""
    runs: dict[Path, Run] = {}
    for given in directories:
        directory = given.resolve()
        if not directory.is_dir():
            raise FileNotFoundError(f"no such directory: {given}")
        if is_run_directory(directory):
            found = [(directory, directory.name)]
        elif jobs := job_directories(directory):
            found = [(job, job.name) for job in jobs]
        else:
            raise ValueError(f"{given} is neither a run directory (run.json, results.json) nor a sweep of them")
        for path, job in found:
            path = path.resolve()  # a job directory reached again through a link is the same run
            if path not in runs:
                runs[path] = read_run(path, directory, job)
    return list(runs.values())
