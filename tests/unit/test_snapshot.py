"""Snapshots and the batched reads: what changed, and by how much, bit for bit (numpy only)."""

import math

import numpy as np
import pytest

from loss_param_tracker import snapshot

pytestmark = pytest.mark.unit


def read_flat(variables):
    """A backend's `flat_reader`, for numpy arrays."""
    return lambda: np.concatenate([np.ravel(v) for v in variables]).astype(np.float64)


def test_changes_read_in_bulk_are_the_snapshots_own():
    before = [np.float32([1, 2]), np.float32([0, 0]), np.float32([np.nan, 1]), np.float32([0.0]), np.float32(3)]
    after = [np.float32([1, 2]), np.float32([0, 1]), np.float32([np.nan, 1]), np.float32([-0.0]), np.float32(4)]
    reader = snapshot.BatchReader(read_flat)
    starts, none = reader.snapshots(before)
    assert none == {} and len(starts) == 5
    ends, changes = reader.snapshots(after, since=starts)
    for i in range(5):
        expected = (starts[i].changed(ends[i]), starts[i].update_ratio(ends[i]))
        got = changes[i]
        assert got.changed == expected[0], i
        assert (math.isnan(got.update_ratio) and math.isnan(expected[1])) or got.update_ratio == pytest.approx(expected[1])
    assert [c.changed for c in changes.values()] == [False, True, False, True, True]
    assert math.isnan(changes[1].update_ratio), "from zero: no ratio"
    assert changes[4].update_ratio == pytest.approx(1 / 3)


def test_a_group_whose_start_is_partial_or_missing_gets_no_bulk_change():
    reader = snapshot.BatchReader(read_flat)
    values = [np.float32([1, 2]), np.float32([3])]
    starts, _ = reader.snapshots(values)
    _, changes = reader.snapshots(values, since={0: starts[0]})
    assert changes == {}, "the caller compares those one by one"
    sampled = snapshot.Snapshot(np.zeros(1), (3.0, 9.0), True)  # a sample of a larger variable
    _, changes = reader.snapshots(values, since={0: starts[0], 1: sampled})
    assert changes == {}


def test_a_nan_that_stays_nan_is_no_change_and_a_partial_snapshot_compares_its_fingerprint():
    nan = snapshot.Snapshot.of_flat(np.array([np.nan, 1.0]))
    assert not nan.changed(snapshot.Snapshot.of_flat(np.array([np.nan, 1.0])))
    sampled = snapshot.Snapshot(np.zeros(2), (math.nan, 1.0), True)
    assert not sampled.changed(snapshot.Snapshot(np.zeros(2), (math.nan, 1.0), True))
    assert sampled.changed(snapshot.Snapshot(np.zeros(2), (math.nan, 2.0), True)), "elements not in the sample moved"
