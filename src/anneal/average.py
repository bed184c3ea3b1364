"""Average the weights a run kept, after the fact, and report the average as a run of its own:

    python -m anneal.average RUN_DIR [RUN_DIR ...] (--last K | --window FROM:TO | --every N) [--out DIR]
                             [--bn-update-images N] [--data-root DIR] [--device cpu|cuda] [--allow-module PACKAGE]

Each RUN_DIR kept its network's weights every N epochs or steps (`callbacks.model_checkpoint.
keep_weights_every_n_epochs=1`, files in checkpoints/weights/). From each, the choice takes its last K files,
those of steps FROM..TO (epochs with an `e` suffix: `10e:20e`), or every N-th counted back from the last; the
chosen weights of every RUN_DIR are averaged uniformly. One run: latest weight averaging after the fact (Kaddour
2022, "Stop Wasting My Time!"; the same mean as averaging=lawa online, bit for bit), metrics `lawa/...`. Several
runs (the cooldown branches of one run, RUN_DIR/branches/budget_*, or seeds): a uniform model soup (Wortsman et
al. 2022), metrics `soup/...`. BatchNorm statistics are then recomputed on the training set (all of it, or
--bn-update-images drawn with the run's seed), and the average is evaluated on the test set (and validation, if
held out). The result is written as a run directory (run.json, results.json, the averaged weights): its arm is
the source's arm plus the averaging, its seed the source's, so the report pools the seeds of one source arm
averaged one way as an arm of its own. Nothing in a run directory is executed or unpickled; a network or data module of
the user's own package is rebuilt only from a package allowed with --allow-module (as `python -m anneal.ensemble`)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anneal.bn_update import checked_images, recompute_bn
from anneal.callbacks.lawa import mean_weights
from anneal.data import DATASETS, ImageData
from anneal.ensemble import allowed_modules, build
from anneal.errors import ConfigError, DataError
from anneal.evaluation import classification_metrics, predict
from anneal.models import NETWORKS
from anneal.record import (
    LEGACY,
    Arm,
    Metric,
    Part,
    RunFiles,
    RunRecord,
    UnreadableRun,
    accuracy,
    count,
    loss,
    results_document,
    results_format,
    results_of,
    seconds,
)
from anneal.storage import load_tensors, save_json, save_tensors


@dataclass(frozen=True)
class Choice:
    """Which kept weights of each run are averaged: a window of steps (epochs with `e`), then every N-th counted
    back from the newest, then the last K."""

    last: int | None = None
    every: int | None = None
    window: str | None = None

    def text(self) -> str:
        parts = [f"window {self.window}"] if self.window else []
        parts += [f"every {self.every}"] if self.every else []
        parts += [f"last {self.last}"] if self.last else []
        return ", ".join(parts) or "all"

    def of(self, kept: list[tuple[int, Path]], steps_per_epoch: float) -> list[tuple[int, Path]]:
        chosen = kept
        if self.window is not None:
            low, high = (
                bound(part, steps_per_epoch, default) for part, default in zip(self.window.split(":"), (0, math.inf))
            )
            chosen = [(step, path) for step, path in chosen if low <= step <= high]
        if self.every is not None:
            chosen = chosen[::-1][:: self.every][::-1]
        if self.last is not None:
            chosen = chosen[-self.last :]
        return chosen


def bound(text: str, steps_per_epoch: float, default: float) -> float:
    """A window's end: optimizer steps, or epochs with an `e` suffix; empty for the open end."""
    text = text.strip()
    try:
        if not text:
            return default
        return float(text[:-1]) * steps_per_epoch if text.endswith("e") else float(text)
    except ValueError:
        raise ConfigError(
            "--window", text, "FROM:TO in optimizer steps, or epochs with an e suffix (10e:20e)"
        ) from None


def kept_weights(files: RunFiles) -> list[tuple[int, Path]]:
    """(step, file) of every weights file the run kept, oldest first."""
    found = []
    for path in files.kept_weights.glob("step_*.pt"):
        digits = path.stem.removeprefix("step_")
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found)


def source(run_dir: Path) -> tuple[RunRecord, dict[str, Any]]:
    """A finished run's record and results."""
    files = RunFiles(run_dir)
    record = RunRecord.load(files)
    if record.network is None or record.data is None:
        raise UnreadableRun(f"{files.record}: the run stopped before it built its network and data")
    results = results_of(files)
    try:
        results_format(results)
    except ValueError as error:
        raise UnreadableRun(f"{files.results}: {error}") from None
    return record, results


def steps_per_epoch(results: dict[str, Any]) -> float:
    steps, epochs = results.get("steps"), results.get("epochs")
    ok = isinstance(steps, (int, float)) and isinstance(epochs, (int, float)) and epochs > 0
    return float(steps) / float(epochs) if ok else 1.0  # type: ignore[arg-type]


def chosen_weights(run_dirs: list[Path], choice: Choice) -> list[Path]:
    """The weights files the choice names, run by run (in the order given)."""
    paths = []
    for run_dir in run_dirs:
        _, results = source(run_dir)
        kept = kept_weights(RunFiles(run_dir))
        if not kept:
            raise UnreadableRun(
                f"{run_dir}: no kept weights in {RunFiles(run_dir).kept_weights} "
                "(train with callbacks.model_checkpoint.keep_weights_every_n_epochs=N or _n_steps=N)"
            )
        picked = choice.of(kept, steps_per_epoch(results))
        if not picked:
            raise ConfigError("choice", choice.text(), f"names none of the {len(kept)} kept weights of {run_dir}")
        paths += [path for _, path in picked]
    return paths


def average_of(paths: list[Path], device: torch.device) -> dict[str, torch.Tensor]:
    """The uniform mean of the weights in these files (loaded weights-only), as LAWA averages its window."""
    return mean_weights([load_tensors(path, map_location=device)["weights"] for path in paths], device)


def declarations(prefix: str, splits: list[str]) -> list[Metric]:
    title = {"lawa": "LAWA after the fact", "soup": "model soup"}[prefix]
    found = [count(f"{prefix}/n_averaged", f"{title}: weights averaged")]
    found += [count(f"{prefix}/bn_update_images", f"{title}: images of the BatchNorm update")]
    found += [seconds(f"{prefix}/seconds", f"{title}: seconds to average, update BatchNorm and evaluate")]
    for split in splits:
        name = "test" if split == "test" else "validation"
        found += [accuracy(f"{prefix}/{split}/acc", f"{title} {name} accuracy", headline=2 * (split == "test"))]
        found += [loss(f"{prefix}/{split}/loss", f"{title} {name} loss")]
    return found


def average_runs(
    run_dirs: list[Path],
    choice: Choice,
    out: Path,
    bn_update_images: int | float | None = None,
    data_root: str | None = None,
    device: str = "cpu",
    allowed: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Average the chosen weights of these runs, recompute BatchNorm, evaluate, and write `out` as a run."""
    began = time.perf_counter()
    checked_images(bn_update_images, "--bn-update-images")
    records = [source(d)[0] for d in run_dirs]
    first, results = records[0], source(run_dirs[0])[1]
    if len({repr(r.seed) for r in records}) > 1:
        raise ConfigError("RUN_DIR", [str(d) for d in run_dirs], "average one run and its cooldown branches: one seed")
    prefix = "lawa" if len(run_dirs) == 1 else "soup"
    paths = chosen_weights(run_dirs, choice)
    assert first.network is not None and first.data is not None
    data_part = first.data if data_root is None else Part(first.data.name, first.data.settings | {"root": data_root})
    datamodule: ImageData = build(data_part, DATASETS, "data module", allowed, ImageData)
    network = build(first.network, NETWORKS, "network", allowed, nn.Module, num_classes=datamodule.num_classes)
    network = network.to(device)
    network.load_state_dict(average_of(paths, torch.device(device)))
    seed = first.seed if isinstance(first.seed, int) else 0
    images, bn_seconds = recompute_bn(
        network, datamodule.batches("train"), torch.device(device), bn_update_images, seed
    )
    values: dict[str, Any] = {"data": results.get("data"), "seed": first.seed, "averaged": [str(p) for p in paths]}
    values |= {
        k: results[k] for k in ("test/acc", "test/loss", "val/acc", "val/loss", "epochs", "steps") if k in results
    }
    values |= {f"{prefix}/n_averaged": len(paths), f"{prefix}/bn_update_images": images}
    values |= {f"{prefix}/bn_update_seconds": bn_seconds}
    splits: list[str] = [s for s in ("val", "test") if s in datamodule.splits]
    for split in splits:
        metrics = classification_metrics(*predict(network, datamodule.batches(split), torch.device(device)))
        values |= {f"{prefix}/{split}/acc": metrics["acc"], f"{prefix}/{split}/loss": metrics["nll"]}
    values[f"{prefix}/seconds"] = time.perf_counter() - began
    after: dict[str, Any] = {"averaged.method": prefix, "averaged.choice": choice.text()}
    if bn_update_images is not None:  # (absent: the whole training set, as every average's default)
        after["averaged.bn_update_images"] = bn_update_images
    if len(run_dirs) > 1:
        after["averaged.sources"] = sorted(r.arm.id for r in records)
    arm = Arm(first.arm.options, first.arm.settings | after)
    label = f"{first.label or first.arm.id} + {prefix} {choice.text()}"
    files = RunFiles(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*first.overrides, f"python -m anneal.average {' '.join(map(str, run_dirs))} ({choice.text()})"]
    record = RunRecord(arm, first.seed, overrides, "finished", None, first.network, first.data, label)
    record.save(files)
    declared = [*(LEGACY[k] for k in values if k in LEGACY), *declarations(prefix, splits)]
    save_tensors(network.state_dict(), files.averaged(prefix))
    save_json(results_document(values, declared), files.results)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anneal.average", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--last", type=int, metavar="K", help="the last K kept weights of each run")
    parser.add_argument("--every", type=int, metavar="N", help="every N-th kept weights, counted back from the last")
    parser.add_argument("--window", metavar="FROM:TO", help="kept weights of these steps (or epochs: 10e:20e)")
    parser.add_argument("--out", type=Path, help="the run directory to write (default: RUN_DIR/averaged/<choice>)")
    parser.add_argument("--bn-update-images", type=float, metavar="N", help="images (or a share < 1) for BatchNorm")
    parser.add_argument("--data-root", help="override data.root of the run (where cifar-10-batches-py is)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--allow-module", action="append", default=[], metavar="PACKAGE", help="rebuild classes of this package"
    )
    args = parser.parse_args(argv)
    try:
        for key, value in (("--last", args.last), ("--every", args.every)):
            if value is not None and value < 1:
                raise ConfigError(key, value, "an integer >= 1")
        images = args.bn_update_images
        images = int(images) if images is not None and images >= 1 and float(images).is_integer() else images
        choice = Choice(args.last, args.every, args.window)
        name = "_".join(choice.text().replace(",", "").replace(":", "-").split())
        out = args.out or args.run_dirs[0] / "averaged" / name
        allowed = allowed_modules(args.allow_module, os.environ)
        values = average_runs(args.run_dirs, choice, out, images, args.data_root, args.device, allowed)
    except (ConfigError, DataError, UnreadableRun) as error:
        print(f"python -m anneal.average: error: {error}", file=sys.stderr)
        return 2
    prefix = "lawa" if len(args.run_dirs) == 1 else "soup"
    accuracy_of = values[f"{prefix}/test/acc"]
    print(f"{prefix} of {values[f'{prefix}/n_averaged']} weights: test acc {accuracy_of:.4f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
