"""Final test accuracies of anneal runs against plain-loop runs (plain_loop.py, fidelity_swap.py): per seed,
mean ± sample std, and the difference of the means with its Welch 95% confidence interval and p-value (the
seeds of the two sides share nothing but the initial weights, so the test does not pair them; the paired
differences are printed beside it).

    python benchmarks/fidelity_compare.py --anneal /tmp/fid/anneal_exp_* --plain /tmp/fid/plain_exp_*.json
    python benchmarks/fidelity_compare.py --key ensemble --anneal /tmp/fid/anneal_sgdr_* \
        --plain /tmp/fid/plain_sgdr_*.json

`--anneal` takes run directories (their results.json) or plain-loop JSON files alike, so two plain variants
can be compared too.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy import stats

KEYS = {  # what --key reads from anneal's results.json and from the plain loop's JSON
    "final": ("test/acc", "test_acc"),
    "ensemble": ("ensemble/test/acc", "ensemble_acc"),
}


def accuracy_by_seed(paths: list[Path], key: str) -> dict[int, float]:
    anneal_key, plain_key = KEYS[key]
    found = {}
    for path in paths:
        file = path / "results.json" if path.is_dir() else path
        if not file.is_file():
            continue  # a run still in progress
        result = json.loads(file.read_text())
        value = result.get(anneal_key, result.get(plain_key))
        if value is not None:
            found[int(result["seed"])] = 100 * value
    return dict(sorted(found.items()))


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def welch(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """Mean difference a - b, its 95% CI (Welch-Satterthwaite degrees of freedom) and the two-sided p-value."""
    test = stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(0.95)
    return statistics.mean(a) - statistics.mean(b), low, high, test.pvalue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anneal", nargs="+", type=Path, required=True)
    parser.add_argument("--plain", nargs="+", type=Path, required=True)
    parser.add_argument("--key", choices=tuple(KEYS), default="final")
    parser.add_argument("--names", nargs=2, default=("anneal", "plain"))
    args = parser.parse_args()
    a, b = accuracy_by_seed(args.anneal, args.key), accuracy_by_seed(args.plain, args.key)
    first, second = args.names
    print(f"| seed | {first} | {second} | {first} - {second} |\n|---|---|---|---|")
    for seed in sorted(set(a) | set(b)):
        x, y = a.get(seed), b.get(seed)
        diff = f"{x - y:+.2f}" if x is not None and y is not None else ""
        print(f"| {seed} | {'' if x is None else f'{x:.2f}'} | {'' if y is None else f'{y:.2f}'} | {diff} |")
    print(f"| mean ± std | {summary(list(a.values()))} (n={len(a)}) | {summary(list(b.values()))} (n={len(b)}) | |")
    if len(a) > 1 and len(b) > 1:
        diff, low, high, p = welch(list(a.values()), list(b.values()))
        print(f"\nWelch: {first} - {second} = {diff:+.2f} points, 95% CI [{low:+.2f}, {high:+.2f}], p = {p:.3f}")
    both = sorted(set(a) & set(b))
    if len(both) > 1:
        paired = [a[s] - b[s] for s in both]
        test = stats.ttest_rel([a[s] for s in both], [b[s] for s in both])
        low, high = test.confidence_interval(0.95)
        lower = sum(d < 0 for d in paired)
        print(
            f"paired by seed (same initial weights): mean {statistics.mean(paired):+.2f}, 95% CI [{low:+.2f}, "
            f"{high:+.2f}], p = {test.pvalue:.3f}; {first} lower on {lower} of {len(both)} seeds"
        )


if __name__ == "__main__":
    main()
