"""Time to the first step of two checkouts of anneal, interleaved round by round so that both see the same load:
`python train.py` for one epoch with each logger, against a fresh interpreter's `import lightning.pytorch`.

    python benchmarks/startup_between.py --before /tmp/old-checkout --rounds 7   # CIFAR10_ROOT: the real subset

The other checkout (`git worktree add /tmp/old-checkout <commit>`) runs with its own src/ first on PYTHONPATH."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lightning_import_seconds() -> float:
    """A fresh interpreter's start and `import lightning.pytorch`, the floor under any run's first step."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lightning.pytorch"], check=True, capture_output=True)
    return time.perf_counter() - started


def first_step(checkout: Path, logger: str) -> tuple[float, float]:
    """(seconds from process start to the first step, the whole run's seconds) of a 1-epoch run of checkout on
    the images at CIFAR10_ROOT (generated ones without it), W&B offline."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(checkout / "src")}
    root = os.environ.get("CIFAR10_ROOT")
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(checkout / "train.py"), f"data.root={root}" if root else "data=synthetic"]
        command += ["trainer.max_epochs=1", f"logger={logger}", f"hydra.run.dir={out}"]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, cwd=checkout)
        wall = time.perf_counter() - started
        return json.loads((Path(out) / "results.json").read_text())["time_to_first_step"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sides = {"before": args.before.resolve(), "this checkout": ROOT}
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {(s, lg): [] for s in sides for lg in ("csv", "wandb")}
    floor = []
    for _ in range(args.rounds):
        floor.append(lightning_import_seconds())
        for side, logger in runs:
            runs[side, logger].append(first_step(sides[side], logger))
    base = statistics.median(floor)
    print(f"| run | first step | after the floor ({base:.2f} s) | whole run |\n|---|---|---|---|")
    for (side, logger), values in runs.items():
        step, wall = (statistics.median(v[i] for v in values) for i in (0, 1))
        print(f"| {side}, logger={logger} | {step:.2f} s | {step - base:+.2f} s | {wall:.2f} s |")
    print(f"medians of {args.rounds} rounds")


if __name__ == "__main__":
    main()
