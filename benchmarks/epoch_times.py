"""How long one training epoch of each network takes on this machine: a few timed SGD steps at batch 128 on
32x32 images (after two warm-up steps), extrapolated to the 391 steps of a 50,000-image epoch.

    python benchmarks/epoch_times.py [--steps 3] [--models lenet vgg16 ...] [--classes 10]

Prints a Markdown table (the README's) and each network's parameter count for the given class count."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from anneal.config import build_network

CONF = Path(__file__).resolve().parents[1] / "conf"
MODELS = [
    "lenet",
    "lenet_conv4",
    "wrn16_4",
    "wrn28_5",
    "wrn28_10",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "preresnet110",
    "preresnet164",
    "resnet110",
    "densenet40",
]
STEPS_PER_EPOCH = 391  # 50,000 images at batch 128


def seconds_per_step(network: torch.nn.Module, steps: int, batch: int = 128, classes: int = 10) -> float:
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, classes, (batch,))
    times = []
    for step in range(steps + 2):
        started = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(network(x), y).backward()
        optimizer.step()
        if step >= 2:  # the first steps pay for allocations
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def describe(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128, {args.steps} timed steps\n")
    print("| `model=` | network | parameters | one epoch (images/s) |\n|---|---|---|---|")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for name in args.models:
            cfg = compose("train", [f"model={name}", "output_dir=."])
            network = build_network(cfg, num_classes=args.classes).network.train()
            params = sum(p.numel() for p in network.parameters())
            step = seconds_per_step(network, args.steps, classes=args.classes)
            print(
                f"| {name} | {type(network).__name__} | {params:,} | {describe(step * STEPS_PER_EPOCH)} "
                f"({128 / step:,.0f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
