"""What making the synthetic images' sin and cos on one thread costs: `synthetic_images` as it is, against the
same function with that guard removed, alternating in one process (medians of the rounds).

    python benchmarks/synthetic_data.py [--images 50000] [--rounds 5]"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

import anneal.data.synthetic as synthetic


def seconds(guard, images: int) -> float:
    synthetic.one_thread = guard
    start = time.perf_counter()
    synthetic.synthetic_images(images, seed=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    guard = synthetic.one_thread
    seconds(guard, args.images)  # warm-up
    sides: dict[str, list[float]] = {"all threads": [], "sin/cos on one thread (anneal)": []}
    for _ in range(args.rounds):
        sides["all threads"].append(seconds(contextlib.nullcontext, args.images))
        sides["sin/cos on one thread (anneal)"].append(seconds(guard, args.images))
    base = statistics.median(sides["all threads"])
    print(f"{args.images} images, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for side, times in sides.items():
        print(f"{side}: {statistics.median(times):.2f} s ({statistics.median(times) / base:.2f}x)")


if __name__ == "__main__":
    main()
