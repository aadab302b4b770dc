"""`decimate.keep_indices`, the extreme-preserving reduction behind `columns=N`: a pure function of arrays."""

import numpy as np
import pytest

from tensorboard_plugin.loss_params.decimate import keep_indices

pytestmark = pytest.mark.unit


def column_of(steps, columns):
    """Each step's column, computed step by step in Python integers: the reference."""
    first, span = int(steps[0]), max(int(steps[-1]) - int(steps[0]), 1)
    return np.array([min((int(s) - first) * columns // span, columns - 1) for s in steps])


def test_a_one_epoch_spike_and_a_one_epoch_nan_survive_among_ten_thousand():
    rng = np.random.default_rng(0)
    steps = np.arange(10_000)
    value = 1 + 0.01 * rng.standard_normal(10_000)
    value[4321] = 50.0
    grad_norm = np.full((10_000, 2), 0.5)
    grad_norm[7777] = np.nan
    keep = keep_indices(steps, [value, grad_norm], 50)
    assert 4321 in keep and 7777 in keep
    assert len(keep) <= 50 * 6, f"kept {len(keep)} of 10,000 steps for 50 columns"


def test_each_column_keeps_the_full_series_extremes_and_edges():
    rng = np.random.default_rng(1)
    steps = np.cumsum(rng.integers(1, 5, 2_000))  # uneven: columns are by step value
    values = rng.standard_normal((2_000, 3))
    values[rng.random((2_000, 3)) < 0.05] = np.nan
    values[rng.random((2_000, 3)) < 0.01] = np.inf
    values[rng.random((2_000, 3)) < 0.01] = -np.inf
    keep = keep_indices(steps, [values], 37)
    kept = np.zeros(len(steps), bool)
    kept[keep] = True
    column = column_of(steps, 37)
    for c in np.unique(column):
        where = np.flatnonzero(column == c)
        for series in values[where].T:
            finite = np.isfinite(series)
            mine = series[kept[where]]
            if finite.any():
                assert np.min(mine[np.isfinite(mine)]) == np.min(series[finite]), f"column {c}: minimum"
                assert np.max(mine[np.isfinite(mine)]) == np.max(series[finite]), f"column {c}: maximum"
            for edges in (where[finite], where[~finite]):
                if len(edges):
                    assert kept[edges[0]] and kept[edges[-1]], f"column {c}: first and last, finite or not"


def test_kept_indices_are_sorted_unique_and_in_range():
    rng = np.random.default_rng(2)
    values = rng.standard_normal((5_000, 4))
    keep = keep_indices(np.arange(5_000), [values, values[:, 0] * -1], 64)
    assert keep.dtype.kind == "i"
    assert np.array_equal(keep, np.unique(keep)), "sorted and unique"
    assert keep[0] == 0 and keep[-1] == 4_999, "the first and last step are always kept"


def test_columns_split_the_step_range_not_the_indices():
    # 100 epochs close together, then one far away: with 2 columns, all but
    # the last fall in the first column, which keeps its first, last, lowest
    # and highest step.
    steps = np.append(np.arange(100), 10_000)
    value = np.ones(101)
    value[30], value[60] = -5.0, 9.0
    assert keep_indices(steps, [value], 2).tolist() == [0, 30, 60, 99, 100]


@pytest.mark.parametrize("n", [0, 1])
def test_zero_or_one_step(n):
    assert keep_indices(np.arange(n), [np.ones(n)], 1).tolist() == list(range(n))
    assert keep_indices(np.arange(n), [], 10).tolist() == list(range(n))


@pytest.mark.parametrize("columns", [1_000, 1_001, 100_000])
def test_as_many_columns_as_steps_keeps_every_step(columns):
    rng = np.random.default_rng(3)
    assert keep_indices(np.arange(1_000), [rng.standard_normal(1_000)], columns).tolist() == list(range(1_000))


def test_constant_all_nan_and_infinite_series_keep_each_columns_edges():
    steps = np.arange(1_000)
    for values in (np.full(1_000, 3.0), np.full(1_000, np.nan), np.full(1_000, np.inf)):
        keep = keep_indices(steps, [values], 10)
        assert keep.tolist() == [i for c in range(10) for i in (100 * c, 100 * c + 99)], values[0]
    for none in ([], [np.zeros((1_000, 0))]):  # no series, or a variable of no elements
        assert keep_indices(steps, none, 10).tolist() == [i for c in range(10) for i in (100 * c, 100 * c + 99)]
    # A lone NaN and a lone infinity in one column: each edge of the non-finite values is kept.
    values = np.ones(1_000)
    values[[420, 450]] = [np.nan, -np.inf]
    assert keep_indices(steps, [values], 10).tolist()[8:12] == [400, 420, 450, 499]


def test_steps_too_far_apart_for_int64_arithmetic():
    steps = np.array([-(2**62), 0, 1, 2**62, 2**63 - 1])
    value = np.array([1.0, 7.0, -7.0, 2.0, 3.0])
    keep = keep_indices(steps, [value], 2)
    assert keep.tolist() == [0, 1, 2, 3, 4], "the lowest and highest of the first column, each column's edges"
    assert keep_indices(steps, [value], 1).tolist() == [0, 1, 2, 4]
