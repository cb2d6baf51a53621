"""Intervals and significance tests of SPEC §2 ("Statistics on every reading").

Every function returns None where the statistic is undefined (an empty side, too few samples), so a
reading never reports a number it cannot stand behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special as _special  # the distribution functions `scipy.stats` wraps, without its import

Z95 = 1.959963984540054
ALPHA = 0.05
Interval = tuple[float, float]
#: A sorted sample as a numpy array (how a store hands over a large one).
Sample = np.ndarray[Any, np.dtype[np.float64]]
Values = Sequence[float] | Sample


def nps_variance(promoters: int, detractors: int, n: int) -> float:
    """Variance of the NPS estimate on the −1…1 scale: (p + d − (p − d)²) / n."""
    p, d = promoters / n, detractors / n
    return (p + d - (p - d) ** 2) / n


def nps_interval(promoters: int, detractors: int, n: int) -> Interval | None:
    """95% normal-approximation interval for NPS, on the −100…100 scale."""
    if n == 0:
        return None
    value = (promoters - detractors) / n
    half = Z95 * math.sqrt(nps_variance(promoters, detractors, n))
    return (max(-1.0, value - half) * 100, min(1.0, value + half) * 100)


def wilson_interval(successes: int, n: int) -> Interval | None:
    """95% Wilson score interval for a proportion, on the 0…100 scale."""
    if n == 0:
        return None
    p = successes / n
    z2 = Z95 * Z95
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, center - half) * 100, min(1.0, center + half) * 100)


def t_interval(mean: float, variance: float, n: int) -> Interval | None:
    """95% Student-t interval for a mean from its sample variance; needs n ≥ 2."""
    if n < 2:
        return None
    half = float(_special.stdtrit(n - 1, 0.975)) * math.sqrt(variance / n)
    return (mean - half, mean + half)


def median(sorted_values: Values) -> float | None:
    """Exact median: the mean of the two middle values for an even count."""
    n = len(sorted_values)
    if n == 0:
        return None
    mid = n // 2
    return float(sorted_values[mid]) if n % 2 else float((sorted_values[mid - 1] + sorted_values[mid]) / 2)


def nearest_rank(sorted_values: Values, q: float) -> float | None:
    """Nearest-rank percentile: the ⌈q·n⌉-th smallest value."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(round(q * n, 9)))
    return float(sorted_values[rank - 1])


def median_interval(sorted_values: Values) -> Interval | None:
    """Distribution-free 95% interval for the median from order statistics (binomial, p = ½).

    Uses ranks l and n − l + 1 with l the largest rank whose tail P(B ≤ l − 1) ≤ 2.5%; None when n is too
    small for any pair of order statistics to reach 95% coverage (n ≤ 5).
    """
    n = len(sorted_values)
    if n == 0:
        return None
    rank = _binomial_quantile(0.025, n)
    if _special.bdtr(rank, n, 0.5) <= 0.025:
        rank += 1
    if rank < 1:
        return None
    return (float(sorted_values[rank - 1]), float(sorted_values[n - rank]))


def _binomial_quantile(q: float, n: int) -> int:
    """The smallest k with P(B ≤ k) ≥ q for B ~ Binomial(n, ½), 0 < q < 1 (`scipy.stats.binom.ppf`)."""
    k = math.ceil(float(_special.bdtrik(q, n, 0.5)))
    return k - 1 if k > 0 and _special.bdtr(k - 1, n, 0.5) >= q else k


def _two_sided(z: float) -> bool:
    return 2 * float(_special.ndtr(-abs(z))) < ALPHA


def nps_change_significant(current: tuple[int, int, int], previous: tuple[int, int, int]) -> bool | None:
    """Two-sample z-test of NPS (promoters, detractors, n) with the NPS variance above."""
    (p1, d1, n1), (p2, d2, n2) = current, previous
    if n1 == 0 or n2 == 0:
        return None
    diff = (p1 - d1) / n1 - (p2 - d2) / n2
    se = math.sqrt(nps_variance(p1, d1, n1) + nps_variance(p2, d2, n2))
    if se == 0:  # both sides unanimous: judge the difference with the variance pooled under "no change"
        pooled = nps_variance(p1 + p2, d1 + d2, n1 + n2) * (n1 + n2)
        se = math.sqrt(pooled / n1 + pooled / n2)
        if se == 0:
            return False
    return _two_sided(diff / se)


def proportions_significant(current: tuple[int, int], previous: tuple[int, int]) -> bool | None:
    """Pooled two-proportion z-test of (successes, n) pairs."""
    (x1, n1), (x2, n2) = current, previous
    if n1 == 0 or n2 == 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return False
    return _two_sided((x1 / n1 - x2 / n2) / se)


def welch_significant(current: tuple[float, float, int], previous: tuple[float, float, int]) -> bool | None:
    """Welch's t-test of (mean, sample variance, n) pairs; needs n ≥ 2 on both sides."""
    (m1, v1, n1), (m2, v2, n2) = current, previous
    if n1 < 2 or n2 < 2:
        return None
    a, b = v1 / n1, v2 / n2
    if a + b == 0:
        return m1 != m2
    t = (m1 - m2) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    return 2 * float(_special.stdtr(df, -abs(t))) < ALPHA


def rank_sum_significant(current: Sequence[float], previous: Sequence[float]) -> bool | None:
    """Mann–Whitney U test (two-sided) for a change in a median such as resolution time."""
    if not current or not previous:
        return None
    if min(current) == max(current) == min(previous) == max(previous):  # one value on both sides
        return False
    from scipy import stats  # its import costs a second at startup; small samples only come here

    return float(stats.mannwhitneyu(current, previous, alternative="two-sided").pvalue) < ALPHA


def net_sample(values: Sequence[float], retracted: Sequence[float] = ()) -> Sample:
    """The sorted multiset `values` minus `retracted` (a sub-multiset of it: a store's signed rows list a
    changed fact's old value once as added and once as retracted)."""
    added = np.sort(np.asarray(values, dtype=np.float64), kind="stable")  # usually sorted already: O(n)
    if not len(retracted):
        return added
    gone = np.asarray(retracted, dtype=np.float64)
    distinct, index = np.unique(np.concatenate([added, gone]), return_inverse=True)
    weights = np.concatenate([np.ones(len(added)), -np.ones(len(gone))])
    counts = np.rint(np.bincount(index, weights=weights, minlength=len(distinct))).astype(np.int64)
    if (counts < 0).any():
        raise ValueError("a retracted value that was never added")
    return np.repeat(distinct, counts)


def rank_sum_significant_sorted(current: Sample, previous: Sample) -> bool | None:
    """`rank_sum_significant` of two sorted samples: the same answer as scipy's `mannwhitneyu` (two-sided,
    continuity correction, normal approximation with the tie correction — what it uses whenever both
    samples have more than 8 values or there are ties), with U found by binary search instead of ranking
    the pooled sample. Small samples without ties go to scipy (its exact distribution)."""
    n1, n2 = len(current), len(previous)
    if n1 == 0 or n2 == 0:
        return None
    if current[0] == current[-1] == previous[0] == previous[-1]:  # one value on both sides
        return False
    pooled = np.sort(np.concatenate([current, previous]), kind="stable")  # two sorted runs: a merge
    starts = np.flatnonzero(np.concatenate([[True], pooled[1:] != pooled[:-1], [True]]))
    ties = np.diff(starts)  # the size of each group of equal values
    if (n1 <= 8 or n2 <= 8) and not (ties > 1).any():
        return rank_sum_significant(current.tolist(), previous.tolist())
    below = np.searchsorted(previous, current, side="left")
    at_or_below = np.searchsorted(previous, current, side="right")
    u1 = float(np.sum(below + at_or_below)) / 2  # Σ (#previous < x + ½ #previous = x)
    u = max(u1, n1 * n2 - u1)
    t = ties.astype(np.float64)
    n = n1 + n2
    s = math.sqrt(n1 * n2 / 12 * ((n + 1) - float(np.sum(t**3 - t)) / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.float64(u - n1 * n2 / 2 - 0.5) / s
    p = min(1.0, max(0.0, 2 * float(_special.ndtr(-z))))
    return p < ALPHA
