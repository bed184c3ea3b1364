"""A study: runs grouped into arms by what they computed (their recorded arm, whatever the command line said),
each metric's spread over an arm's seeds, and each arm against the best, unpaired and paired over shared seeds."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from anneal.record import GROUP_CLASSES, Arm, Metric, describe
from anneal.record.labels import name_arm
from anneal.report.runs import Run, collect_runs
from anneal.report.statistics import Difference, Spread, holm, paired, seeds_for, spread, welch

HEADLINE = "headline"  # the number each arm stands for (its producers say which): the default comparison
MISSING = object()
BUDGETS = ("trainer.max_epochs", "trainer.max_steps")  # training lengths: arms are compared within each
AVERAGED_AFTER = "averaged."  # the settings `python -m anneal.average` adds to its source's arm
TARGET_CI = 0.5  # the default half-width, in the metric's displayed unit (percentage points), seeds are planned for


@dataclass(frozen=True)
class ArmResult:
    arm: Arm
    label: str
    runs: list[Run]  # every run of the arm, however it went
    counted: list[Run]  # its finished runs, one per seed (the newest where a seed ran twice)
    spreads: dict[str, Spread]  # metric -> its spread over the counted runs
    headline: str | None  # the key of the arm's headline metric ("mixed" when its runs disagree)
    versus_best: Difference | None = None  # the study metric, this arm − the best, unpaired
    paired_best: Difference | None = None  # ... paired over the seeds both arms ran
    gain: Spread | None = None  # within each run: its headline − its trained network's test/acc
    group: str = ""  # the values of the study's `within` keys this arm has ("" where nothing splits the study)
    best: str | None = None  # the label of the best arm of its group, which it is compared with
    seeds_needed: int | None = None  # seeds for a paired 95% interval of ± the study's target_ci against `best`

    @property
    def n(self) -> int:
        return len(self.counted)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    def seeds(self, metric: str) -> dict[Any, float]:
        return {r.seed: v for r in self.counted if (v := value(r, metric)) is not None}


@dataclass(frozen=True)
class Study:
    sources: list[Path]
    metric: str  # what arms are compared on: HEADLINE or a results.json key
    declaration: Metric  # how that metric reads (direction, unit, label)
    keys: list[str]  # the options and settings that vary between arms
    arms: list[ArmResult]
    runs: list[Run]
    metrics: list[str]  # every declared metric of the counted runs, in order of appearance
    declared: dict[str, Metric]
    notes: list[str] = field(default_factory=list)  # what the reader must know: duplicates, old runs, ...
    within: list[str] = field(default_factory=list)  # each arm is compared with the best arm of its values of these
    target_ci: float = TARGET_CI  # in the metric's displayed unit (points for a percentage)

    @property
    def unassigned(self) -> list[Run]:
        """Runs whose arm is unknown (unreadable): listed, never pooled."""
        return [r for r in self.runs if r.arm is None]


def value(run: Run, metric: str) -> float | None:
    key = run.headline if metric == HEADLINE else metric
    found = run.metrics.get(key) if key else None
    return found if found is not None and math.isfinite(found) else None


def counted_runs(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(one finished run per seed, the duplicates left out): of two runs of one arm and seed, which compute the
    same thing, the one whose results are newest counts."""
    newest: dict[str, Run] = {}
    for run in runs:
        if run.finished:
            key = json.dumps(run.seed, default=str)
            if key not in newest or mtime(run) >= mtime(newest[key]):
                newest[key] = run
    counted = [r for r in runs if r in newest.values()]
    return counted, [r for r in runs if r.finished and r not in counted]


def mtime(run: Run) -> float:
    try:
        return (run.directory / "results.json").stat().st_mtime
    except OSError:
        return 0.0


def varying(arms: list[Arm]) -> list[str]:
    """The options and settings that tell arms apart: a key whose value differs among the arms that have it.
    (A setting only some arms have, all with one value, is told apart by their option, e.g. `sgdr`; a group's
    class, `_target_`, by its option's name where the arms record it.)"""
    keys = list(dict.fromkeys(k for arm in arms for k in arm.values()))
    named = {g for g in GROUP_CLASSES if all(g in arm.options for arm in arms)}
    found = []
    for key in keys:
        if key.rsplit(".", 1)[-1].startswith("_") and key.split(".")[0] in named:
            continue
        values = [arm.values().get(key, MISSING) for arm in arms]
        present = {json.dumps(v, sort_keys=True, default=str) for v in values if v is not MISSING}
        told_apart = key in GROUP_CLASSES or key.startswith(AVERAGED_AFTER)  # present in some arms only
        if len(present) > 1 or (told_apart and MISSING in values and present):
            found.append(key)
    return found


def labels(arms: list[Arm], keys: list[str], fallback: list[str]) -> list[str]:
    """Each arm by the options and settings in which it differs from the others; unique (the id where not)."""
    found = [name_arm(arm, keys) or fallback[i] for i, arm in enumerate(arms)]
    return [f"{label} [{arm.id}]" if found.count(label) > 1 else label for label, arm in zip(found, arms)]


def study_declaration(arms: list[list[Run]], metric: str) -> Metric:
    """How the compared metric reads, from the runs' own declarations; refused if they disagree or it is absent."""
    keys = {k for runs in arms for r in runs if r.finished and (k := r.headline if metric == HEADLINE else metric)}
    found = {
        (d.better, d.percent): d for runs in arms for r in runs for k in keys if r.finished and (d := r.declared.get(k))
    }
    if not any(r.finished for runs in arms for r in runs):  # nothing finished yet: nothing to compare
        return Metric(metric, None, label="no run finished" if metric == HEADLINE else metric)
    if not found:
        raise LookupError(metric)
    if len(found) > 1:
        raise ValueError(f"the runs declare {metric} in different ways ({sorted(map(str, found))}): not comparable")
    declaration = next(iter(found.values()))
    if metric == HEADLINE:
        names = sorted(
            {d.label for runs in arms for r in runs if r.finished and (d := r.declared.get(r.headline or ""))}
        )
        label = names[0] if len(names) == 1 else " / ".join(names)  # (the tables say "headline: ")
        return Metric(HEADLINE, declaration.better, declaration.percent, label)
    return declaration


def build_study(
    runs: list[Run],
    sources: list[Path],
    metric: str = HEADLINE,
    within: list[str] | tuple[str, ...] = (),
    target_ci: float = TARGET_CI,
) -> Study:
    groups: dict[str, list[Run]] = {}
    arms: dict[str, Arm] = {}
    for run in runs:
        if run.arm is not None:
            groups.setdefault(run.arm.id, []).append(run)
            arms[run.arm.id] = run.arm
    declaration = study_declaration(list(groups.values()), metric)
    keys = varying(list(arms.values()))
    own_labels = [next((r.label for r in groups[i] if r.label), "") for i in arms]
    fallback = [own or " + ".join(dict.fromkeys(r.source.name for r in groups[i])) for own, i in zip(own_labels, arms)]
    names = labels(list(arms.values()), keys, fallback)
    results, notes = [], []
    for (arm_id, members), label in zip(groups.items(), names):
        counted, duplicates = counted_runs(members)
        if duplicates:
            notes.append(
                f"{label}: {len(duplicates)} run(s) repeat a seed of the arm and are left out (the newest counts): "
                + ", ".join(str(r.directory) for r in duplicates)
            )
        results.append(arm_result(arms[arm_id], label, members, counted))
    metrics = list(dict.fromkeys(k for r in runs if r.finished for k in r.metrics))
    declared = {k: d for r in runs for k, d in r.declared.items()}
    grouping = comparison_keys(keys, within)
    results = compared(results, metric, declaration, grouping, target_ci)
    legacy = sorted({r.legacy for r in runs if r.legacy})
    notes += [f"runs older than this report's format lack: {lacks}" for lacks in legacy]
    return Study(sources, metric, declaration, keys, results, runs, metrics, declared, notes, grouping, target_ci)


def arm_result(arm: Arm, label: str, members: list[Run], counted: list[Run]) -> ArmResult:
    values: dict[str, list[float]] = {}
    for run in counted:
        for key in [*run.metrics, HEADLINE]:
            if (v := value(run, key)) is not None:
                values.setdefault(key, []).append(v)
    headlines = {r.headline for r in counted}
    headline = next(iter(headlines)) if len(headlines) == 1 else ("mixed" if headlines else None)
    gains = [
        h - t
        for r in counted
        if r.headline != "test/acc"
        and (h := value(r, HEADLINE)) is not None
        and (t := value(r, "test/acc")) is not None
    ]
    gain = spread(gains) if gains and len(gains) == len(counted) else None
    return ArmResult(arm, label, members, counted, {k: spread(v) for k, v in values.items()}, headline, gain=gain)


def comparison_keys(keys: list[str], within: list[str] | tuple[str, ...]) -> list[str]:
    """What splits the comparisons: the training length where it varies (a 10-epoch arm is not ranked against a
    20-epoch one), then the keys asked for (`--within model`)."""
    return list(dict.fromkeys([*(k for k in BUDGETS if k in keys), *within]))


def compared(
    arms: list[ArmResult], metric: str, declaration: Metric, within: list[str], target_ci: float
) -> list[ArmResult]:
    """Each arm against the best arm of its group (its values of `within`) on the study metric; the best arm
    shows no difference to itself. Within a group, the p-values of the arms against its best are Holm-adjusted
    as one family (one for the unpaired tests, one for the paired)."""
    if declaration.better is None:
        return arms
    groups: dict[str, list[ArmResult]] = {}
    for arm in arms:
        if metric in arm.spreads:
            groups.setdefault(describe(arm.arm.values(), within) if within else "", []).append(arm)
    pick = max if declaration.better == "higher" else min
    scale = 100 if declaration.percent else 1
    found: dict[int, ArmResult] = {}
    for group, members in groups.items():
        best = pick(members, key=lambda a: a.spreads[metric].mean)
        theirs = best.seeds(metric)
        for arm in members:
            changes: dict[str, Any] = {"group": group, "best": best.label}
            if arm is best:
                itself = Difference(arm.n, 0.0, None, None)
                changes |= {"versus_best": itself, "paired_best": itself}
            else:
                mine = arm.seeds(metric)
                changes |= {"versus_best": welch(list(mine.values()), list(theirs.values()))}
                changes |= {"paired_best": paired(mine, theirs)}
                shared = [mine[s] - theirs[s] for s in mine if s in theirs]
                if len(shared) > 1 and (std := spread(shared).std) is not None:
                    changes["seeds_needed"] = seeds_for(std * scale, target_ci)
            found[id(arm)] = ArmResult(**{**arm.__dict__, **changes})
        for kind in ("versus_best", "paired_best"):
            tested = [a for a in members if (d := getattr(found[id(a)], kind)) is not None and d.p is not None]
            adjusted = holm([getattr(found[id(a)], kind).p for a in tested])
            for a, p in zip(tested, adjusted):
                result = found[id(a)]
                found[id(a)] = ArmResult(**{**result.__dict__, kind: replace(getattr(result, kind), p_holm=p)})
    return [found.get(id(arm), arm) for arm in arms]


def study_of(
    directories: list[Path],
    metric: str = HEADLINE,
    within: list[str] | tuple[str, ...] = (),
    target_ci: float = TARGET_CI,
) -> Study:
    """The study of the runs in these sweep and run directories."""
    return build_study(collect_runs(directories), directories, metric, within, target_ci)


def known_metrics(study_runs: list[Run]) -> list[str]:
    """What --metric may name: the headline and every metric a finished run declared."""
    return [HEADLINE, *dict.fromkeys(k for r in study_runs if r.finished for k in r.declared)]
