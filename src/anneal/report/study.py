"""A study: the arms of a set of runs with each metric's spread over seeds, and each arm's distance to the best."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from anneal.report.runs import Arm, Run, collect_runs, group_arms
from anneal.report.statistics import Spread, spread

# lower is better for these (the last part of a metric's name); higher for everything else, accuracies first
LOWER_IS_BETTER = ("loss", "nll", "ece", "seconds", "time_to_first_step")


def higher_is_better(metric: str) -> bool:
    name = metric.rsplit("/", 1)[-1]
    return not any(word in name for word in LOWER_IS_BETTER)


def is_accuracy(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in ("acc", "acc_best", "acc_mean")


@dataclass(frozen=True)
class ArmResult:
    arm: Arm
    spreads: dict[str, Spread]  # metric -> its spread over the arm's finished runs
    diff_to_best: float | None  # the study metric's mean minus the best arm's (0 for the best)

    @property
    def n(self) -> int:
        return len(self.arm.finished)


@dataclass(frozen=True)
class Study:
    sources: list[Path]
    keys: list[str]  # the settings that vary between arms
    metric: str  # the one arms are ranked by
    metrics: list[str]  # every metric of any run, in order of appearance
    arms: list[ArmResult]
    runs: list[Run]

    def best_held_out_metric(self) -> str | None:
        """val/acc_best with a validation split, test/acc_best when the test set was the held-out one."""
        return next((m for m in ("val/acc_best", "test/acc_best") if m in self.metrics), None)


def build_study(runs: list[Run], sources: list[Path], metric: str = "test/acc") -> Study:
    keys, arms = group_arms(runs)
    metrics = list(dict.fromkeys(m for r in runs for m in r.metrics))
    spreads = [
        {m: spread(values) for m in metrics if (values := [r.metrics[m] for r in arm.finished if m in r.metrics])}
        for arm in arms
    ]
    means = [s[metric].mean for s in spreads if metric in s and math.isfinite(s[metric].mean)]
    best = (max if higher_is_better(metric) else min)(means) if means else None
    results = []
    for arm, arm_spreads in zip(arms, spreads):
        own = arm_spreads.get(metric)
        diff = own.mean - best if own is not None and best is not None and math.isfinite(own.mean) else None
        results.append(ArmResult(arm, arm_spreads, diff))
    return Study(sources, keys, metric, metrics, results, runs)


def study_of(directories: list[Path], metric: str = "test/acc") -> Study:
    """The study of the runs in these sweep and run directories."""
    missing = [str(d) for d in directories if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"no such directory: {', '.join(missing)}")
    runs = collect_runs(directories)
    return build_study(runs, directories, metric)
