"""The run record of a Lightning run that anneal did not start: the user's own LightningModule, data and Trainer.
`RunRecorder` writes the same files anneal's own runs write (run.json, results.json with the metrics' declarations,
history.csv, lr_schedule.csv), so that `python -m anneal.report DIR...` pools the user's runs into arms by their
hyperparameters and compares them over seeds, paired, like any sweep of anneal's."""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from anneal.errors import ConfigError, require
from anneal.record.assembly import declarations, merged
from anneal.record.document import RunRecord, plain
from anneal.record.files import RunFiles
from anneal.record.identity import Arm, canonical, flatten
from anneal.record.metrics import Evaluation, Metric, accuracy, count, headline_of, loss, results_document, seconds
from anneal.storage import save_json, save_text

# What a user's run reports unless told otherwise: Lightning's usual names for the final test scores.
TEST_METRICS = (accuracy("test/acc", "test accuracy", headline=1), loss("test/loss", "test loss", column=True))
# The Trainer's settings that change what a run computes: part of its arm, under the names anneal's own runs use
# (the report draws arms that differ only in trainer.max_epochs as one method at several budgets).
TRAINER_SETTINGS = (
    "max_epochs",
    "max_steps",
    "limit_train_batches",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "precision",
    "world_size",
)
HELD_OUT = ("val",)  # per-epoch metrics whose names start so are filled only in the epochs that validated


def own_hyperparameters(pl_module: L.LightningModule, datamodule: Any) -> dict[str, Any]:
    """The module's `save_hyperparameters()`, and the data module's under `data.`."""
    found = dict(pl_module.hparams)
    if datamodule is not None and getattr(datamodule, "hparams", None):
        found |= {f"data.{k}": v for k, v in dict(datamodule.hparams).items()}
    return found


def arm_settings(hyperparameters: Mapping[str, Any], bookkeeping: Iterable[str], trainer: L.Trainer) -> dict[str, Any]:
    """The arm's settings: every hyperparameter (nested ones as `a.b`) but the seed and bookkeeping, and the
    Trainer's settings that change what it computes. Each must be a plain value, recorded as JSON."""
    ignored = set(bookkeeping) | {"seed"}
    settings = {}
    for key, value in flatten(dict(hyperparameters)).items() if hyperparameters else ():
        if key in ignored or key.split(".")[0] in ignored:
            continue
        require(
            plain(value) or value == {},
            key,
            type(value).__name__,
            "an arm setting must be a number, a string, a flag, None or a list of them: leave it out of "
            "save_hyperparameters(ignore=...) or name it in RunRecorder(bookkeeping=...)",
        )
        settings[key] = canonical(value)
    trainer_values = {name: getattr(trainer, name, None) for name in TRAINER_SETTINGS}
    settings |= {f"trainer.{k}": canonical(v if plain(v) else str(v)) for k, v in trainer_values.items()}
    return dict(sorted(settings.items()))


def seed_of(given: int | None, hyperparameters: Mapping[str, Any]) -> int:
    """The run's seed: as given, else the hyperparameter `seed`, else what `lightning.seed_everything` set."""
    found = given if given is not None else hyperparameters.get("seed", os.environ.get("PL_GLOBAL_SEED"))
    require(
        found is not None,
        "seed",
        None,
        "RunRecorder needs the run's seed to pair runs of two arms: pass RunRecorder(seed=...), save it as the "
        "hyperparameter `seed`, or call lightning.seed_everything(seed) first",
    )
    try:
        return int(str(found))
    except ValueError:
        raise ConfigError("seed", found, "an integer") from None


def validates(trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
    overridden = type(pl_module).validation_step is not L.LightningModule.validation_step
    return overridden and trainer.limit_val_batches != 0


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Logged metrics as numbers: one-element tensors and numbers; Lightning's `_step` copies left out."""
    found = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith("_step"):
            found[key] = float(value)
    return found


def producers(trainer: L.Trainer) -> list[L.Callback]:
    """The trainer's callbacks that report numbers for results.json (anneal's, or any with the same two methods:
    `declare(evaluation)` and `results(trainer, module, datamodule)`)."""
    return [
        c
        for c in trainer.callbacks  # type: ignore[attr-defined]  # Lightning types it loosely
        if callable(getattr(c, "declare", None)) and callable(getattr(c, "results", None))
    ]


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class RunRecorder(L.Callback):
    """Writes a Lightning run's record into `directory` (default: the Trainer's `default_root_dir`; one directory
    per run): run.json when the run sets up (its arm and seed), history.csv after every training epoch,
    lr_schedule.csv when fitting ends, and results.json when testing ends (`trainer.test(...)` after `fit`).

    - The arm: `arm` (a dict of settings), else the module's `save_hyperparameters()` (and the data module's,
      as `data.*`), less the seed and the `bookkeeping` keys, plus the Trainer's settings that change what it
      computes (`trainer.max_epochs`, ...). Runs with equal arms and different seeds are the replicates a study
      pools; give everything that differs between arms as a hyperparameter.
    - The seed: `seed`, else the hyperparameter `seed`, else the one `lightning.seed_everything` set.
    - The numbers: the metrics logged when testing, declared by `metrics` (`anneal.record.accuracy("test/acc",
      "test accuracy", headline=1)`: which direction is better, a percentage, the run's headline), and the
      results of every callback that declares its own (anneal's SWA, EMA, LAWA, SnapshotEnsemble, History). A key
      two producers declare stops the run at set-up, naming both."""

    def __init__(
        self,
        metrics: Iterable[Metric] = TEST_METRICS,
        *,
        arm: Mapping[str, Any] | None = None,
        seed: int | None = None,
        directory: str | Path | None = None,
        bookkeeping: Iterable[str] = (),
        overwrite: bool = False,
    ):
        self.metrics, self.given_arm, self.given_seed = list(metrics), arm, seed
        self.directory = Path(directory) if directory is not None else None
        self.bookkeeping, self.overwrite = tuple(bookkeeping), overwrite
        self.record: RunRecord | None = None
        self.declared: list[Metric] = []
        self.started = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self.held_out: dict[str, float] = {}
        self.lrs: list[dict[str, float]] = []
        self.history = True  # whether history.csv is this recorder's to write

    @property
    def files(self) -> RunFiles:
        if self.directory is None:
            raise RuntimeError("RunRecorder: the run directory is known once the Trainer sets the run up")
        return RunFiles(self.directory)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Once per run (its first fit, validate or test): the arm, the seed and the declarations, checked before
        any step; run.json written."""
        if self.record is not None:
            return
        self.directory = self.directory or Path(trainer.default_root_dir)
        files = self.files
        if not self.overwrite and files.results.exists():
            raise ConfigError(
                "directory",
                str(files.directory),
                text=f"RunRecorder: {files.results} holds a finished run: give each run its own directory "
                "(Trainer(default_root_dir=...) or RunRecorder(directory=...)), or pass overwrite=True",
            )
        datamodule = getattr(trainer, "datamodule", None)
        given = self.given_arm
        hyperparameters = dict(given) if given is not None else own_hyperparameters(pl_module, datamodule)
        require(
            bool(hyperparameters) or given is not None,
            "arm",
            None,
            f"RunRecorder found no hyperparameters of {type(pl_module).__name__} to tell its arms apart: call "
            "self.save_hyperparameters() in its __init__, or pass RunRecorder(arm={...})",
        )
        seed = seed_of(self.given_seed, hyperparameters)
        validated = validates(trainer, pl_module)
        evaluation = Evaluation(("val", "test"), "val") if validated else Evaluation(("test",), None)
        own = [
            count("epochs", "epochs"),
            count("steps", "optimizer steps"),
            count("params", "trainable parameters"),
            seconds("wall_seconds", "training and evaluation time (s)", column=True),
        ]
        parts = [(type(pl_module).__name__, self.metrics), (type(self).__name__, own)]
        parts += [(type(c).__name__, c.declare(evaluation)) for c in producers(trainer)]  # type: ignore[attr-defined]
        self.declared = declarations(parts)
        require(
            headline_of(self.declared) is not None,
            "metrics",
            [m.key for m in self.metrics],
            "RunRecorder needs a headline to compare runs by: declare one, e.g. "
            'anneal.record.accuracy("test/acc", "test accuracy", headline=1)',
        )
        arm = Arm({}, arm_settings(hyperparameters, self.bookkeeping, trainer))
        # a callback that writes history.csv itself (anneal's History) keeps it: one writer per file
        self.history = not any(getattr(c, "writes_history", False) for c in trainer.callbacks)  # type: ignore[attr-defined]
        self.record = RunRecord(arm, seed, list(sys.argv[1:]), attempts=[{"started": time.time()}])
        self.started = time.perf_counter()
        if trainer.is_global_zero:
            if self.overwrite:
                for stale in [files.results, files.lr_csv] + [files.history] * self.history:
                    stale.unlink(missing_ok=True)
            files.directory.mkdir(parents=True, exist_ok=True)
            self.record.save(files)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if (not self.lrs or self.lrs[-1]["step"] < step) and trainer.optimizers:
            epoch = trainer.current_epoch + batch_idx / max(1, int(trainer.num_training_batches))
            self.lrs.append({"step": step, "epoch": epoch, "lr": trainer.optimizers[0].param_groups[0]["lr"]})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            metrics = scalars(trainer.callback_metrics)
            self.held_out = {k: v for k, v in metrics.items() if k.startswith(HELD_OUT)}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One row: the epoch, its last step and lr, the training metrics logged per epoch and, if it validated,
        the held-out ones."""
        metrics = {k: v for k, v in scalars(trainer.callback_metrics).items() if not k.startswith(HELD_OUT)}
        lr = self.lrs[-1]["lr"] if self.lrs else math.nan
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step, "lr": lr, **metrics, **self.held_out}
        self.rows.append(row)
        self.held_out = {}
        if trainer.is_global_zero and self.history:
            columns = list(dict.fromkeys(k for r in self.rows for k in r))
            save_text(csv_text(columns, self.rows), self.files.history)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.lrs:
            save_text(csv_text(["step", "epoch", "lr"], self.lrs), self.files.lr_csv)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """results.json: the logged test metrics, the run's size and time, then every producing callback's results
        (evaluated outside the test loop's inference mode: an averaged network's BatchNorm update writes buffers)."""
        assert self.record is not None  # set up
        logged = scalars(trainer.callback_metrics)
        parts: list[tuple[str, Mapping[str, Any]]] = [(type(pl_module).__name__, logged)]
        with torch.inference_mode(False), torch.no_grad():
            for callback in producers(trainer):
                datamodule = getattr(trainer, "datamodule", None)
                parts.append((type(callback).__name__, callback.results(trainer, pl_module, datamodule)))  # type: ignore[attr-defined]
        size = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        own = {"seed": self.record.seed, "arm": self.record.arm.id, "params": size}
        own |= {"epochs": trainer.current_epoch, "steps": trainer.global_step}
        own["wall_seconds"] = round(time.perf_counter() - self.started, 2)
        values = merged([(type(self).__name__, own), *parts])
        document = results_document(values, self.declared)
        if document["headline"] is None:
            wanted = [m.key for m in self.declared if m.headline > 0]
            raise ConfigError(
                "metrics",
                wanted,
                text=f"RunRecorder: none of the headline candidates {wanted} was logged when testing (logged: "
                f"{sorted(logged)}); declare the one to compare runs by: RunRecorder(metrics=[anneal.record."
                "accuracy(KEY, LABEL, headline=1)])",
            )
        self.record.status = "finished"
        if trainer.is_global_zero:
            save_json(document, self.files.results)
            self.record.save(self.files)

    def state_dict(self) -> dict[str, Any]:
        """In Lightning's checkpoints: a resumed run continues history.csv and lr_schedule.csv with nothing lost."""
        return {"rows": self.rows, "lrs": self.lrs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows, self.lrs = list(state_dict["rows"]), list(state_dict["lrs"])

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.record is None or self.record.status == "finished":
            return
        self.record.status = "stopped" if isinstance(exception, KeyboardInterrupt) else "failed"
        self.record.error = f"{type(exception).__name__}: {exception}".splitlines()[0]
        if trainer.is_global_zero:
            self.record.save(self.files)
