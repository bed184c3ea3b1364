"""The run directory's files, each named once: whoever writes a file and whoever reads it take its name here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFiles:
    """The files of one run directory."""

    directory: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))

    @property
    def record(self) -> Path:
        """run.json: what the run is (its arm and seed) and how it went, written before training starts."""
        return self.directory / "run.json"

    @property
    def results(self) -> Path:
        """results.json: the final numbers and the declaration of each metric, written once training has ended."""
        return self.directory / "results.json"

    @property
    def config(self) -> Path:
        return self.directory / "config.yaml"  # the resolved config

    @property
    def history(self) -> Path:
        return self.directory / "history.csv"  # one row per epoch

    @property
    def lr_csv(self) -> Path:
        return self.directory / "lr_schedule.csv"

    @property
    def lr_png(self) -> Path:
        return self.directory / "lr_schedule.png"

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def branches(self) -> Path:
        return self.directory / "branches"

    @property
    def snapshots(self) -> Path:
        return self.directory / "snapshots"

    def snapshot(self, number: int, epoch: float) -> Path:
        return self.snapshots / f"snapshot_{number:02d}_epoch{epoch:g}.pt"

    def ensemble(self, suffix: str) -> Path:
        return self.directory / f"ensemble.{suffix}"  # csv, md, png

    def averaged(self, prefix: str) -> Path:
        return self.directory / f"{prefix}.pt"  # swa.pt, ema.pt, ...

    @property
    def lr_find_curve(self) -> Path:
        return self.directory / "lr_find.json"

    @property
    def lr_find_png(self) -> Path:
        return self.directory / "lr_find.png"

    @property
    def job(self) -> Path:
        """job.json: where a cluster launcher ran the job and where its log is."""
        return self.directory / "job.json"

    @property
    def lock(self) -> Path:
        return self.directory / ".anneal.lock"

    @property
    def log(self) -> Path:
        return self.directory / "train.log"

    @property
    def legacy_hydra(self) -> Path:
        """Hydra's own copy of the config, choices and overrides, in runs made before anneal kept run.json."""
        return self.directory / ".hydra"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.directory).as_posix()
