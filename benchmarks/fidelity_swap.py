"""The plain loop (plain_loop.py) with one ingredient taken from anneal, to find where a difference between the
two comes from (RESULTS.md, "Fidelity: anneal against a plain PyTorch loop").

    python benchmarks/fidelity_swap.py --root /tmp/cifar10-full --seed 0 --batches anneal --json swap.json

`--batches anneal`: anneal's training batches (its data module with data.seed=SEED: order, crops, flips and its
normalization by the training split's own statistics) instead of the plain loop's; `--stats anneal`: only
anneal's normalization constants. The network's initial weights are the same on both sides for a seed (torch's
default initialization right after seeding; anneal builds its data module first, which draws nothing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plain_loop import Normalize, train

from anneal.data import CIFAR10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batches", choices=("plain", "anneal"), default="anneal")
    parser.add_argument("--stats", choices=("cifar", "anneal"), default="cifar", help="with --batches plain")
    parser.add_argument("--schedule", choices=("exp", "sgdr"), default="exp")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = CIFAR10(root=args.root, download=False, seed=args.seed, batch_size=128)
    data.setup()
    normalize = Normalize(data.mean.tolist(), data.std.tolist()) if args.stats == "anneal" else None
    epoch_batches = None
    if args.batches == "anneal":
        normalize = Normalize(data.mean.tolist(), data.std.tolist())  # the test set as anneal normalizes it
        batches = data.batches("train", train=True, batch_size=128)  # counts its passes: epoch 0, 1, ...
        epoch_batches = lambda epoch: batches  # noqa: E731
    result = train(
        args.root,
        seed=args.seed,
        epochs=args.epochs,
        schedule=args.schedule,
        normalize=normalize,
        epoch_batches=epoch_batches,
    )
    result |= {"batches": args.batches, "stats": args.stats}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
