"""Finding the runs in sweep and run directories, and grouping them into arms.

An arm is the set of runs that share every setting that varies across the collected runs, except the seed:
the seeds of one configuration, whose spread is what a comparison between arms has to beat."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# settings that change how a run is logged or shown, never what it computes
IGNORED_PREFIXES = ("hydra.", "hydra/", "logger.")
IGNORED_KEYS = frozenset({"trainer.enable_progress_bar", "trainer.enable_model_summary"})
NOT_ARM_KEYS = frozenset({"seed"})


def parse_override(override: str) -> tuple[str, str]:
    """`+schedule.T_0=5` -> ("schedule.T_0", "5"): adding or deleting a key is the same setting for a study."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def settings_of(overrides: list[str]) -> dict[str, str]:
    pairs = map(parse_override, overrides)
    return {k: v for k, v in pairs if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)}


def metrics_of(results: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of results.json; the seed and flags are not metrics."""
    metrics = {
        k: float(v)
        for k, v in results.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_ARM_KEYS
    }
    ensemble = results.get("ensemble")
    if "ensemble/test/acc" not in metrics and isinstance(ensemble, list) and ensemble and "test/acc" in ensemble[-1]:
        metrics["ensemble/test/acc"] = float(ensemble[-1]["test/acc"])  # runs older than that key
    return metrics


@dataclass(frozen=True)
class Run:
    """One training run: finished when its directory holds results.json, failed otherwise."""

    directory: Path
    source: Path  # the directory it was found through: its sweep, or itself
    job: str  # its number in the sweep, or the run directory's name
    settings: dict[str, str]
    results: dict[str, Any] | None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.results is not None


def job_directories(directory: Path) -> list[Path]:
    """A sweep's numbered job directories, in job order (10 after 9)."""
    jobs = [p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()] if directory.is_dir() else []
    return sorted(jobs, key=lambda p: int(p.name))


def read_run(directory: Path, source: Path, job: str) -> Run:
    results_path, overrides_path = directory / "results.json", directory / ".hydra" / "overrides.yaml"
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    if results is not None and "overrides" in results:
        overrides = results["overrides"]
    elif overrides_path.is_file():  # Hydra writes it for every job, also one that failed
        overrides = yaml.safe_load(overrides_path.read_text()) or []
    else:
        overrides = []
    metrics = metrics_of(results) if results is not None else {}
    return Run(directory, source, job, settings_of([str(o) for o in overrides]), results, metrics)


def collect_runs(directories: list[Path]) -> list[Run]:
    """Every job of every sweep directory, and every run directory, in the order given."""
    runs = []
    for directory in directories:
        if jobs := job_directories(directory):
            runs += [read_run(job, directory, job.name) for job in jobs]
        elif (directory / "results.json").is_file() or (directory / ".hydra").is_dir():
            runs.append(read_run(directory, directory, directory.name))
        else:
            raise ValueError(f"{directory} holds neither numbered job directories (a sweep) nor results.json (a run)")
    return runs


@dataclass(frozen=True)
class Arm:
    label: str
    settings: dict[str, str]  # its values of the settings that vary between arms
    runs: list[Run]

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]

    @property
    def failed(self) -> int:
        return sum(not r.finished for r in self.runs)


def varying_keys(runs: list[Run], exclude: frozenset[str] = NOT_ARM_KEYS) -> list[str]:
    """The settings whose values differ between runs (a setting some runs lack differs), in order of appearance."""
    keys = [k for k in dict.fromkeys(k for r in runs for k in r.settings) if k not in exclude]
    return [k for k in keys if len({r.settings.get(k) for r in runs}) > 1]


def group_arms(runs: list[Run]) -> tuple[list[str], list[Arm]]:
    """The varying settings, and the arms in order of their first run (the sweep's order, not a ranking)."""
    keys = varying_keys(runs)
    groups: dict[tuple[str | None, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(run.settings.get(k) for k in keys), []).append(run)
    arms = []
    for values, members in groups.items():
        settings = {k: v for k, v in zip(keys, values) if v is not None}
        # an arm with none of the varying settings (the only arm, or one without the others' keys): its directories
        label = " ".join(f"{k}={v}" for k, v in settings.items()) or " + ".join(
            dict.fromkeys(r.source.name for r in members)
        )
        arms.append(Arm(label, settings, members))
    return keys, arms
