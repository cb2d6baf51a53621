"""Golden tables for `cxpulse.domain.stats` (SPEC §2 "Statistics on every reading").

Expected values are computed independently from the textbook formulas written next to each row, with
z = 1.959964 (the 97.5% normal quantile) and Student-t quantiles from standard tables.
"""

from __future__ import annotations

import pytest

from cxpulse.domain import stats

Z = 1.959963984540054


# --- NPS variance / interval --------------------------------------------------------------------------------

NPS_VARIANCE = [
    # (promoters, detractors, n) -> (p + d − (p − d)²) / n
    ((5, 3, 10), (0.8 - 0.04) / 10),  # SPEC §5 example: p = .5, d = .3 → 0.076
    ((10, 0, 10), 0.0),  # all promoters: p = 1 → 1 − 1 = 0
    ((0, 0, 4), 0.0),  # all passives
    ((1, 1, 2), (1.0 - 0.0) / 2),  # p = d = .5 → 0.5
    ((50, 30, 100), (0.8 - 0.04) / 100),
]


@pytest.mark.parametrize(("args", "expected"), NPS_VARIANCE)
def test_nps_variance(args: tuple[int, int, int], expected: float) -> None:
    assert stats.nps_variance(*args) == pytest.approx(expected)


NPS_INTERVAL = [
    # SPEC §5: NPS 20, var 0.076 → 0.2 ± 1.959964·√0.076 = 0.2 ± 0.540325 → ×100
    ((5, 3, 10), (-34.032478, 74.032478)),
    # zero variance: a degenerate interval at the value
    ((10, 0, 10), (100.0, 100.0)),
    ((0, 10, 10), (-100.0, -100.0)),
    ((0, 0, 3), (0.0, 0.0)),
    # p = d = .5, n = 2: var = 0.5 → half = 1.959964·0.707107 = 1.385904 → clipped to the −1…1 scale
    ((1, 1, 2), (-100.0, 100.0)),
    # p = .5, d = .3, n = 100: half = 1.959964·√0.0076 = 0.170866 → 0.2 ± 0.170866 (0.1708657)
    ((50, 30, 100), (2.913430, 37.086570)),
    ((0, 0, 0), None),
]


@pytest.mark.parametrize(("args", "expected"), NPS_INTERVAL)
def test_nps_interval(args: tuple[int, int, int], expected: tuple[float, float] | None) -> None:
    got = stats.nps_interval(*args)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-5)


# --- Wilson score interval ----------------------------------------------------------------------------------
# center = (p + z²/2n) / (1 + z²/n), half = z·√(p(1−p)/n + z²/4n²) / (1 + z²/n)

WILSON = [
    # 3/5: p = .6, z²/n = 0.768301 → center 0.556545, half 0.325827
    ((3, 5), (23.072428, 88.237923)),
    # 0/5: lower bound exactly 0, upper = z²/(n + z²) = 3.841459 / 8.841459 = 0.434482
    ((0, 5), (0.0, 43.448246)),
    # 5/5: lower = n/(n + z²) = 5 / 8.841459 = 0.565518, upper 1
    ((5, 5), (56.551754, 100.0)),
    # 1/1: lower = 1/(1 + z²) = 0.206549
    ((1, 1), (20.654931, 100.0)),
    # 50/100: symmetric around 50, half = z·√(0.0025 + z²/40000)/(1 + z²/100) = 0.096168
    ((50, 100), (40.383153, 59.616847)),
    ((1, 3), (6.149194, 79.234040)),
    ((0, 0), None),
]


@pytest.mark.parametrize(("args", "expected"), WILSON)
def test_wilson_interval(args: tuple[int, int], expected: tuple[float, float] | None) -> None:
    got = stats.wilson_interval(*args)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got == pytest.approx(expected, abs=1e-5)
        lo, hi = got
        assert 0.0 <= lo <= 100 * args[0] / args[1] <= hi <= 100.0


# --- t interval ---------------------------------------------------------------------------------------------

T_INTERVAL = [
    # SPEC §5 CES [1, 2, 2, 5, 7]: mean 3.4, s² = 25.2/4 = 6.3, se = √1.26 = 1.122497,
    # t(0.975, 4) = 2.776445 → half 3.116552
    ((3.4, 6.3, 5), (0.283448, 6.516552)),
    # [1, 3]: mean 2, s² = 2, se = 1, t(0.975, 1) = 12.706205
    ((2.0, 2.0, 2), (-10.706205, 14.706205)),
    # n = 10, s² = 1: se = 0.316228, t(0.975, 9) = 2.262157 → half 0.715357
    ((4.0, 1.0, 10), (3.284643, 4.715357)),
    # all equal: zero-width interval
    ((2.0, 0.0, 4), (2.0, 2.0)),
    ((5.0, 0.0, 1), None),  # one answer: no sample variance
    ((0.0, 0.0, 0), None),
]


@pytest.mark.parametrize(("args", "expected"), T_INTERVAL)
def test_t_interval(args: tuple[float, float, int], expected: tuple[float, float] | None) -> None:
    got = stats.t_interval(*args)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-5)


# --- median, nearest rank, median interval ------------------------------------------------------------------

MEDIAN = [
    ([7.0], 7.0),
    ([1.0, 3.0], 2.0),  # even count: mean of the two middle values
    ([1.0, 2.0, 10.0], 2.0),
    ([1.0, 2.0, 4.0, 100.0], 3.0),
    ([0.0, 0.0, 5.0, 6.0, 6.0, 9.0], 5.5),
    ([], None),
]


@pytest.mark.parametrize(("values", "expected"), MEDIAN)
def test_median(values: list[float], expected: float | None) -> None:
    assert stats.median(values) == expected


NEAREST_RANK = [
    # (values, q) -> the ⌈q·n⌉-th smallest
    ((list(range(1, 11)), 0.9), 9.0),  # ⌈9.0⌉ = 9 (no float drift to rank 10)
    ((list(range(1, 12)), 0.9), 10.0),  # ⌈9.9⌉ = 10
    ((list(range(1, 21)), 0.9), 18.0),  # ⌈18⌉ = 18
    (([5.0], 0.9), 5.0),
    (([1.0, 2.0, 3.0, 4.0, 5.0], 0.9), 5.0),  # ⌈4.5⌉ = 5
    (([1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0),  # ⌈2.5⌉ = 3
    (([1.0, 2.0, 3.0, 4.0], 0.5), 2.0),  # ⌈2⌉ = 2
    (([1.0, 2.0, 3.0], 0.0), 1.0),  # rank at least 1
    (([], 0.9), None),
]


@pytest.mark.parametrize(("args", "expected"), NEAREST_RANK)
def test_nearest_rank(args: tuple[list[float], float], expected: float | None) -> None:
    values, q = args
    assert stats.nearest_rank([float(v) for v in values], q) == expected


MEDIAN_INTERVAL = [
    # rank l = largest with P(B ≤ l − 1) ≤ 0.025, B ~ Bin(n, ½); interval = (x_(l), x_(n−l+1)).
    # n = 5: P(B ≤ 0) = 1/32 = 0.03125 > 0.025 → no rank reaches 95% → None
    (5, None),
    (3, None),
    (1, None),
    (0, None),
    # n = 6: P(B ≤ 0) = 1/64 = 0.0156, P(B ≤ 1) = 7/64 = 0.109 → l = 1 → (x1, x6), coverage 96.9%
    (6, (1, 6)),
    # n = 10: P(B ≤ 1) = 11/1024 = 0.0107, P(B ≤ 2) = 56/1024 = 0.0547 → l = 2 → (x2, x9)
    (10, (2, 9)),
    # n = 20: P(B ≤ 5) = 0.0207, P(B ≤ 6) = 0.0577 → l = 6 → (x6, x15)
    (20, (6, 15)),
    # n = 30: P(B ≤ 9) = 0.0214, P(B ≤ 10) = 0.0494 → l = 10 → (x10, x21)
    (30, (10, 21)),
]


@pytest.mark.parametrize(("n", "ranks"), MEDIAN_INTERVAL)
def test_median_interval_ranks(n: int, ranks: tuple[int, int] | None) -> None:
    values = [float(10 * i) for i in range(1, n + 1)]  # x_(k) = 10·k
    got = stats.median_interval(values)
    if ranks is None:
        assert got is None
    else:
        assert got == (10.0 * ranks[0], 10.0 * ranks[1])


# --- significance tests -------------------------------------------------------------------------------------
# z = diff / √(var1 + var2); significant when |z| > 1.959964.

NPS_SIGNIFICANT = [
    # z = 0.4 / √(0.0076 + 0.0076) = 3.244 → significant
    (((50, 30, 100), (30, 50, 100)), True),
    # same readings
    (((50, 30, 100), (50, 30, 100)), False),
    # borderline: 32 vs 10 points, z = 2.0563 → significant
    (((50, 17, 100), (40, 30, 100)), True),
    # borderline: 32 vs 10 points, but more spread: z = 1.9540 → not significant
    (((50, 18, 100), (40, 30, 100)), False),
    # 10 points on n = 100 each: z = 0.8305
    (((50, 30, 100), (40, 30, 100)), False),
    # zero variance on both sides: the variance pooled under "no change" judges the difference —
    # all promoters vs all detractors, n = 10 each: pooled var 1, se = √(1/10 + 1/10) = 0.447, z = 4.47
    (((10, 0, 10), (0, 10, 10)), True),
    (((10, 0, 10), (5, 0, 5)), False),
    # … but one answer each is no evidence: se = √2, z = 1.41
    (((1, 0, 1), (0, 1, 1)), False),
    # an empty side → None
    (((5, 3, 10), (0, 0, 0)), None),
    (((0, 0, 0), (5, 3, 10)), None),
]


@pytest.mark.parametrize(("args", "expected"), NPS_SIGNIFICANT)
def test_nps_change_significant(
    args: tuple[tuple[int, int, int], tuple[int, int, int]], expected: bool | None
) -> None:
    assert stats.nps_change_significant(*args) is expected


PROPORTIONS_SIGNIFICANT = [
    # pooled 0.4, se = √(0.24·0.02) = 0.069282, z = 0.2/0.069282 = 2.887
    (((30, 100), (50, 100)), True),
    # borderline: pooled 0.43, se = 0.070015, z = 0.14/0.070015 = 1.9996 → significant (p = 0.0455)
    (((36, 100), (50, 100)), True),
    # borderline: pooled 0.435, se = 0.070111, z = 0.13/0.070111 = 1.854 → not significant
    (((37, 100), (50, 100)), False),
    # 3/5 vs 2/5: pooled 0.5, se = 0.316228, z = 0.632
    (((3, 5), (2, 5)), False),
    (((3, 5), (3, 5)), False),
    # pooled 0 or 1: no variance, equal proportions → not significant
    (((0, 5), (0, 7)), False),
    (((5, 5), (7, 7)), False),
    (((3, 5), (0, 0)), None),
    (((0, 0), (3, 5)), None),
]


@pytest.mark.parametrize(("args", "expected"), PROPORTIONS_SIGNIFICANT)
def test_proportions_significant(
    args: tuple[tuple[int, int], tuple[int, int]], expected: bool | None
) -> None:
    assert stats.proportions_significant(*args) is expected


WELCH_SIGNIFICANT = [
    # means 1 vs 3, var 0.5, n 30: t = 2/√(1/30) = 10.95
    (((1.0, 0.5, 30), (3.0, 0.5, 30)), True),
    # borderline, equal var 1, n = 10: se = √0.2 = 0.447214, df = 0.04/(2·0.01/9) = 18,
    # t(0.975, 18) = 2.100922
    (((2.95, 1.0, 10), (2.0, 1.0, 10)), True),  # t = 0.95/0.447214 = 2.1243
    (((2.93, 1.0, 10), (2.0, 1.0, 10)), False),  # t = 0.93/0.447214 = 2.0795
    # unequal variances: t = 2/√(0.8 + 0.05) = 2.1693 but Welch df = 4.51 → t crit ≈ 2.65 → not significant
    (((4.0, 4.0, 5), (2.0, 1.0, 20)), False),
    (((3.4, 6.3, 5), (3.4, 6.3, 5)), False),
    # both sides constant: a different mean is certain, the same mean is no change
    (((2.0, 0.0, 3), (5.0, 0.0, 4)), True),
    (((2.0, 0.0, 3), (2.0, 0.0, 4)), False),
    # fewer than two answers on a side → None
    (((3.0, 0.0, 1), (3.4, 6.3, 5)), None),
    (((3.4, 6.3, 5), (3.0, 0.0, 1)), None),
    (((3.4, 6.3, 5), (0.0, 0.0, 0)), None),
]


@pytest.mark.parametrize(("args", "expected"), WELCH_SIGNIFICANT)
def test_welch_significant(
    args: tuple[tuple[float, float, int], tuple[float, float, int]], expected: bool | None
) -> None:
    assert stats.welch_significant(*args) is expected


RANK_SUM_SIGNIFICANT = [
    # complete separation, exact two-sided p = 2 / C(10, 5) = 2/252 = 0.0079
    (([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]), True),
    # complete separation, n = 4 each: p = 2 / C(8, 4) = 2/70 = 0.0286 → significant
    (([1, 2, 3, 4], [5, 6, 7, 8]), True),
    # complete separation, n = 3 each: p = 2 / C(6, 3) = 2/20 = 0.1 → not significant
    (([1, 2, 3], [4, 5, 6]), False),
    # interleaved samples
    (([1, 3, 5, 7], [2, 4, 6, 8]), False),
    # a single value everywhere: no change
    (([5, 5, 5], [5, 5]), False),
    (([1, 2], []), None),
    (([], [1, 2]), None),
    (([], []), None),
]


@pytest.mark.parametrize(("args", "expected"), RANK_SUM_SIGNIFICANT)
def test_rank_sum_significant(args: tuple[list[float], list[float]], expected: bool | None) -> None:
    current, previous = args
    assert stats.rank_sum_significant([float(v) for v in current], [float(v) for v in previous]) is expected


def test_the_distribution_functions_equal_scipy_stats() -> None:
    """The module calls `scipy.special` (what `scipy.stats` wraps) to spare the service a second of import;
    the results are the same numbers."""
    from scipy import special
    from scipy import stats as st

    for n in range(1, 2000):
        assert stats._binomial_quantile(0.025, n) == int(st.binom.ppf(0.025, n, 0.5)), n
    for df in (1, 2, 3, 5, 10, 29, 100, 1000, 12345.6):
        assert float(special.stdtrit(df, 0.975)) == float(st.t.ppf(0.975, df))
        for t in (0.0, 0.1, 1.5, 1.96, 2.5, 10.0):
            assert float(special.stdtr(df, -t)) == float(st.t.sf(t, df))
    for z in (0.0, 0.5, 1.96, 3.0, 8.0):
        assert float(special.ndtr(-z)) == float(st.norm.sf(z))
