"""What a few seeds say: each arm's mean, sample standard deviation and Student-t 95% interval, and how two arms
differ, unpaired (Welch's t-test) and paired over the seeds they share (a paired t-test). Two runs with the same
seed share their initialization and data order, so their difference is far less noisy than two arms' means."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from scipy import stats


def t_quantile(df: float, level: float = 0.95) -> float:
    return float(stats.t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Spread:
    """What the runs of one arm say about a metric; std and ci95 are None below two runs."""

    n: int
    mean: float
    std: float | None
    ci95: float | None


def spread(values: list[float]) -> Spread:
    """Mean, sample std (ddof=1) and the half-width of the Student-t 95% interval of the mean."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n < 2:
        return Spread(n, mean, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Spread(n, mean, std, t_quantile(n - 1) * std / math.sqrt(n))


@dataclass(frozen=True)
class Difference:
    """a − b: the mean difference, the half-width of its 95% interval and the two-sided p-value of no
    difference (None where too few runs make them undefined), over `n` runs or shared seeds; p_holm: p adjusted
    over the family of comparisons it was made in (`holm`), where the study made one."""

    n: int
    diff: float
    ci95: float | None
    p: float | None
    p_holm: float | None = None


def welch(a: list[float], b: list[float]) -> Difference:
    """Unpaired: Welch's t-test (unequal variances) and its Welch–Satterthwaite interval."""
    diff = math.fsum(a) / len(a) - math.fsum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(min(len(a), len(b)), diff, None, None)
    va, vb = (spread(x).std ** 2 / len(x) for x in (a, b))  # type: ignore[operator]
    if va + vb == 0:
        return Difference(min(len(a), len(b)), diff, 0.0, None if diff == 0 else 0.0)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    with warnings.catch_warnings():  # an arm whose seeds agree exactly: scipy warns, its answer stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Difference(min(len(a), len(b)), diff, t_quantile(df) * math.sqrt(va + vb), p)


def paired(a: dict[object, float], b: dict[object, float]) -> Difference | None:
    """Over the seeds both have: the mean of a − b per seed, its t interval and the paired t-test's p-value."""
    shared = [s for s in a if s in b]
    if not shared:
        return None
    differences = [a[s] - b[s] for s in shared]
    d = spread(differences)
    if d.n < 2:
        return Difference(1, d.mean, None, None)
    assert d.std is not None and d.ci95 is not None
    if d.std == 0:
        return Difference(d.n, d.mean, 0.0, None if d.mean == 0 else 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_rel([a[s] for s in shared], [b[s] for s in shared]).pvalue)
    return Difference(d.n, d.mean, d.ci95, p)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's (1979) step-down adjustment of a family of p-values (in their order): the k-th smallest is
    multiplied by m − k + 1, capped at 1, and never below the one before it. It holds the chance of any false
    "differs" in the family at the level, whatever the tests' dependence. (scipy.stats adjusts only by the false
    discovery rate, `false_discovery_control`; Holm is these few lines.)"""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def seeds_for(std: float, target: float, level: float = 0.95) -> int:
    """The fewest seeds n (at least 2) whose Student-t interval of a mean, t(n − 1) · std / √n, is no wider
    than ± target, for differences as spread as `std` (the observed paired spread; a planning guess, since the
    spread of a few seeds is itself uncertain). The normal quantile gives a lower bound; t then steps up to it."""
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"the target half-width must be a positive number, not {target}")
    if std == 0:
        return 2
    z = float(stats.norm.ppf(0.5 + level / 2))
    n = max(2, math.floor((z * std / target) ** 2))  # t(n - 1) > z: no smaller n can reach the target
    while t_quantile(n - 1, level) * std / math.sqrt(n) > target:
        n += 1
    return n
