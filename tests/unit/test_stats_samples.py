"""Samples as sorted arrays: netting retracted values, and the rank test by binary search = scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.domain import stats

values = st.lists(st.integers(0, 40).map(lambda v: v / 2), max_size=60)


@given(values, values)
@settings(max_examples=300)
def test_rank_test_on_sorted_samples_equals_scipy(current: list[float], previous: list[float]) -> None:
    a, b = np.sort(np.array(current, dtype=float)), np.sort(np.array(previous, dtype=float))
    assert stats.rank_sum_significant_sorted(a, b) is stats.rank_sum_significant(current, previous)


def test_rank_test_on_large_shifted_samples() -> None:
    rng = np.random.default_rng(1)
    a = np.sort(rng.exponential(100, 5000).round(1))
    for shift in (0.0, 2.0, 10.0):
        b = np.sort((rng.exponential(100, 4000) + shift).round(1))
        assert stats.rank_sum_significant_sorted(a, b) is stats.rank_sum_significant(a.tolist(), b.tolist())


@given(values, st.data())
def test_net_sample_removes_retracted_values(added: list[float], data: st.DataObject) -> None:
    retracted = data.draw(st.lists(st.sampled_from(added), max_size=len(added)) if added else st.just([]))
    left = list(added)
    for v in retracted:
        if v in left:
            left.remove(v)
        else:
            return  # drew a value more often than it was added
    assert stats.net_sample(added, retracted).tolist() == sorted(left)


def test_net_sample_refuses_a_value_never_added() -> None:
    with pytest.raises(ValueError, match="never added"):
        stats.net_sample([1.0], [2.0])
