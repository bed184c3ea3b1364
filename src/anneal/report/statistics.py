"""Mean, sample standard deviation and the Student-t 95% confidence half-width of a few seeds' results.

The t quantile is computed here rather than taken from scipy, which anneal does not otherwise need: the t
distribution's CDF is a regularized incomplete beta function, evaluated with its continued fraction (Lentz's
method, as in Press et al., "Numerical Recipes", 3rd ed. 2007, §6.4), and the quantile is found by bisection."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

TINY = 1e-300  # keeps Lentz's method away from a division by zero


def continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes' betacf), converging for x < (a + 1) / (a + b + 2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > TINY else TINY)
    fraction = d
    # converges in O(sqrt(max(a, b))) terms: a million degrees of freedom take about a thousand
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > TINY else TINY)
            c = 1 + numerator / c
            c = c if abs(c) > TINY else TINY
            fraction *= c * d
        if abs(c * d - 1) < 1e-15:
            return fraction
    raise ArithmeticError(f"the incomplete beta fraction did not converge for x={x}, a={a}, b={b}")


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b): the CDF at x of a Beta(a, b) variable."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * continued_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * continued_fraction(1 - x, b, a) / b  # the symmetry I_x(a,b) = 1 - I_1-x(b,a)


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    tail = regularized_incomplete_beta(df / (df + t * t), df / 2, 0.5) / 2  # P(T > |t|)
    return 1 - tail if t >= 0 else tail


@lru_cache(maxsize=256)
def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on the CDF (which is increasing)."""
    if not 0 < p < 1 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -student_t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        low, high = high, 2 * high
    while high - low > 1e-12 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Spread:
    """What a few runs of one arm say about a metric; std and ci95 are None below two runs."""

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
    return Spread(n, mean, std, student_t_quantile(0.975, n - 1) * std / math.sqrt(n))
