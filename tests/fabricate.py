"""Run directories in the exact formats anneal writes (run.json, results.json with declarations, history.csv,
lr_schedule.csv), through the record's own writers, so that every number a report test checks is known; and
directories as anneal wrote them before run.json existed (config.yaml, Hydra's .hydra/, no declarations)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from anneal.record import LEGACY, Arm, RunFiles, RunRecord, results_document

SGDR = {
    "schedule._target_": "anneal.schedules.SGDR",
    "schedule.T_0": 10,
    "schedule.T_mult": 2,
    "schedule.lr_min": 1e-5,
    "trainer.max_epochs": 3,
}
OPTIONS = {
    "data": "synthetic",
    "model": "lenet",
    "optimizer": "sgd",
    "schedule": "sgdr",
    "warmup": "none",
    "averaging": "none",
    "ensemble": "none",
}


def arm(settings: dict | None = None, options: dict | None = None) -> Arm:
    return Arm({**OPTIONS, **(options or {})}, {**SGDR, **(settings or {})})


def make_run(
    directory: Path,
    the_arm: Arm,
    seed: int,
    metrics: dict | None = None,
    *,
    status: str = "finished",
    error: str | None = None,
    label: str = "",
    epochs: int = 3,
) -> Path:
    """A run of `the_arm` and `seed`; with metrics (test/acc at least): finished, else as `status` says."""
    files = RunFiles(directory)
    directory.mkdir(parents=True)
    done = metrics is not None
    RunRecord(the_arm, seed, [f"seed={seed}"], "finished" if done else status, label=label, error=error).save(files)
    if not done:
        return directory
    acc = metrics["test/acc"]
    values = {"data": "SYNTHETIC", "seed": seed, "test/loss": 2 - acc, "wall_seconds": 10.0, "epochs": epochs}
    values |= metrics
    declared = [LEGACY[k] for k in values if k in LEGACY]
    files.results.write_text(json.dumps(results_document(values, declared)))
    history = ["epoch,step,lr,train/loss,train/acc,test/loss,test/acc,seconds"]
    history += [f"{e + 1},{10 * (e + 1)},0.1,1.0,0.5,1.0,{acc * (e + 1) / epochs},1.5" for e in range(epochs)]
    files.history.write_text("\n".join(history) + "\n")
    steps = range(10 * epochs)
    lr = ["step,epoch,lr"] + [f"{s},{s / 10},{0.05 * (1 + math.cos(math.pi * (s % 10) / 10))}" for s in steps]
    files.lr_csv.write_text("\n".join(lr) + "\n")
    return directory


def make_legacy_run(directory: Path, choices: dict, config: dict, overrides: list[str], results: dict | None) -> Path:
    """A run directory as anneal left it before run.json: config.yaml (resolved), .hydra/ (Hydra's config,
    choices and overrides) and, if it finished, results.json without declarations."""
    hydra = directory / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    if results is not None:
        (directory / "config.yaml").write_text(yaml.safe_dump(config))
        (directory / "results.json").write_text(json.dumps(results | {"overrides": overrides}))
    return directory
