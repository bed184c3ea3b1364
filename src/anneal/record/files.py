"""The run directory's files, each named once: whoever writes a file and whoever reads it take its name here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


def entry(name: str, doc: str = "") -> Any:
    """A file of the run directory, as an attribute: `RunFiles(d).results` is `d / "results.json"`."""
    return property(lambda self: self.directory / name, doc=doc or None)


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory."""

    directory: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))

    record = entry("run.json", "what the run is (its arm and seed) and how it went, written before training")
    results = entry("results.json", "the final numbers and each metric's declaration, written once training ended")
    config = entry("config.yaml", "the resolved config")
    history = entry("history.csv", "one row per epoch")
    lr_csv = entry("lr_schedule.csv")
    lr_png = entry("lr_schedule.png")
    checkpoints = entry("checkpoints")
    last_checkpoint = entry("checkpoints/last.ckpt")
    kept_weights = entry("checkpoints/weights", "the network's weights, kept every N epochs or steps")
    branches = entry("branches")
    snapshots = entry("snapshots")
    lr_find_curve = entry("lr_find.json")
    lr_find_png = entry("lr_find.png")
    job = entry("job.json", "where a cluster launcher ran the job and where its log is")
    lock = entry(".anneal.lock")
    log = entry("train.log")
    legacy_hydra = entry(".hydra", "Hydra's copy of the config, choices and overrides, in runs made before run.json")

    def kept(self, step: int) -> Path:
        return self.directory / "checkpoints" / "weights" / f"step_{step:08d}.pt"

    def snapshot(self, number: int, epoch: float) -> Path:
        return self.directory / "snapshots" / f"snapshot_{number:02d}_epoch{epoch:g}.pt"

    def branch_point(self, budget: int) -> Path:
        return self.directory / "branches" / f"budget_{budget}.ckpt"

    def branch(self, budget: int) -> Path:
        """The run directory of the cooldown branched at that point."""
        return self.directory / "branches" / f"budget_{budget}"

    def ensemble(self, suffix: str) -> Path:
        return self.directory / f"ensemble.{suffix}"  # csv, md, png

    def averaged(self, prefix: str) -> Path:
        return self.directory / f"{prefix}.pt"  # swa.pt, ema.pt, ...

    def relative(self, path: Path) -> str:
        return path.relative_to(self.directory).as_posix()
