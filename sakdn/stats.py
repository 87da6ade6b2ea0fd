"""Paired comparisons over seeds: is a difference larger than the run-to-run noise?

Two training set-ups compared on the same seeds (same data order, same initial student) give
paired values; their differences d_i = a_i − b_i carry the effect without the seed-to-seed
spread both share. For n seeds:

- mean d̄ and standard deviation s (n − 1 in the denominator);
- the 95 % t confidence interval d̄ ± t_{0.975, n−1} · s / √n;
- the two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``, zero differences
  dropped as Wilcoxon does), which needs no normality;
- wins: how many seeds have d_i > 0.

A noise floor comes from a control that should change nothing (the same set-up with a
negligible perturbation): its paired differences show how far chaotic training alone moves a
mean over n seeds, F = t_{0.975, n−1} · s_control / √n. A comparison is ``above`` the floor
when d̄ > F and its interval excludes 0, ``below`` when d̄ < −F and its interval excludes 0,
``within`` otherwise.

Rank agreement between two measures of the same items (a cheap signal and the objective, two
training seeds' objectives): Spearman's ρ with its 95 % interval from Fisher's z = atanh ρ and
Bonett & Wright's variance for ρ, (1 + ρ²/2) / (n − 3): z ± z_{0.975} · √that, mapped back by
tanh. Two such agreements over the same items (one measure at two fidelities, each against
its own other seed) are compared by their difference ρ₁ − ρ₂ with a paired percentile
bootstrap: items resampled with replacement, both ρ recomputed on each resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Paired:
    """The paired comparison of one set-up (a) against a reference (b) over the same seeds."""

    n: int
    mean: float  # d̄
    sd: float  # s of the differences (nan for n < 2)
    ci_low: float
    ci_high: float
    p_wilcoxon: float  # nan when every difference is 0 or n < 1
    wins: int  # seeds with a_i > b_i
    ties: int  # seeds with a_i == b_i


def _t_quantile(n: int, confidence: float) -> float:
    from scipy import stats

    return float(stats.t.ppf((1 + confidence) / 2, n - 1))


def paired(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Paired:
    """Compare ``a`` with ``b``, both indexed by the same seeds (see the module docstring)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need equal 1-D shapes, got {x.shape} and {y.shape}")
    d = x - y
    n = len(d)
    if n == 0:
        nan = float("nan")
        return Paired(0, nan, nan, nan, nan, nan, 0, 0)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    half = _t_quantile(n, confidence) * sd / math.sqrt(n) if n > 1 else float("nan")
    p = float("nan")
    if np.any(d != 0):
        p = float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    return Paired(n, mean, sd, mean - half, mean + half, p, int((d > 0).sum()),
                  int((d == 0).sum()))


def noise_floor(control: Paired, confidence: float = CONFIDENCE) -> float:
    """F = t · s_control / √n: how far a mean over n seeds moves when nothing changed."""
    if control.n < 2:
        return float("nan")
    return _t_quantile(control.n, confidence) * control.sd / math.sqrt(control.n)


def verdict(comparison: Paired, floor: float) -> str:
    """``above`` / ``below`` the noise floor, or ``within`` it (see the module docstring)."""
    if math.isnan(comparison.ci_low) or math.isnan(floor):
        return "within"
    if comparison.mean > floor and comparison.ci_low > 0:
        return "above"
    if comparison.mean < -floor and comparison.ci_high < 0:
        return "below"
    return "within"


@dataclass(frozen=True)
class RankAgreement:
    """Spearman's ρ of paired values over n items, with its confidence interval."""

    n: int
    rho: float  # nan when fewer than 2 items or one side constant
    low: float  # nan when n < 4
    high: float


def spearman(a: Sequence[float], b: Sequence[float],
             confidence: float = CONFIDENCE) -> RankAgreement:
    """ρ between ``a`` and ``b`` (pairs with a NaN on either side left out) and its interval
    tanh(atanh ρ ± z · √((1 + ρ²/2) / (n − 3))) (see the module docstring)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need equal 1-D shapes, got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    nan = float("nan")
    if n < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return RankAgreement(n, nan, nan, nan)
    rho = float(stats.spearmanr(x, y).statistic)
    if n < 4:
        return RankAgreement(n, rho, nan, nan)
    z = math.atanh(min(max(rho, -1 + 1e-12), 1 - 1e-12))
    half = float(stats.norm.ppf((1 + confidence) / 2)) * math.sqrt((1 + rho**2 / 2) / (n - 3))
    return RankAgreement(n, rho, math.tanh(z - half), math.tanh(z + half))


@dataclass(frozen=True)
class RankDifference:
    """ρ₁ − ρ₂ of two rank agreements over the same n items, with a bootstrap interval."""

    n: int
    difference: float
    low: float
    high: float


def spearman_difference(a1: Sequence[float], b1: Sequence[float], a2: Sequence[float],
                        b2: Sequence[float], draws: int = 2000, seed: int = 0,
                        confidence: float = CONFIDENCE) -> RankDifference:
    """ρ(a1, b1) − ρ(a2, b2) over the same items, with a paired percentile bootstrap interval
    (items resampled together; a resample on which either ρ is undefined is left out). Items
    with a NaN in any of the four are left out first."""
    if len({len(a1), len(b1), len(a2), len(b2)}) != 1:
        raise ValueError("four equally long sequences are needed, got lengths "
                         f"{len(a1)}, {len(b1)}, {len(a2)} and {len(b2)}")
    x = np.asarray([a1, b1, a2, b2], dtype=float)
    x = x[:, ~np.isnan(x).any(axis=0)]
    n = x.shape[1]
    diff = spearman(x[0], x[1]).rho - spearman(x[2], x[3]).rho
    if n < 4 or diff != diff:
        return RankDifference(n, diff, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        i = rng.integers(0, n, n)
        d = spearman(x[0, i], x[1, i]).rho - spearman(x[2, i], x[3, i]).rho
        if d == d:
            samples.append(d)
    if not samples:
        return RankDifference(n, diff, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return RankDifference(n, diff, float(low), float(high))
