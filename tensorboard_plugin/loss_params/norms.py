"""Norm arithmetic shared by the writer and the readers: numpy only, no BLAS.

The callback logs norms and combines a network's or a model's weights into
one vector (`metadata.FIELDS[WEIGHT_NORMS]`); the diagnosis combines a
network's gradient norms; the plugin combines a layer's weights. They all
combine here, the same way.
"""

import math

import numpy as np


def l2_norm(value):
    """The L2 norm of `value` in float64, without BLAS.

    A BLAS call (`np.dot`, `np.linalg.norm`) wakes OpenBLAS's worker
    threads, which then spin for a while: beside a training loop that cost
    more CPU time than all the tracker's own work.
    """
    return float(np.sqrt(np.square(value, dtype=np.float64).sum()))


def root_sum_square(norms, axis=None):
    """sqrt(sum of squares) of norms taken as one, NaN ones (no gradient) left out; NaN where all are.

    Args:
        norms: Array-like of norms.
        axis: The axis to combine along; `None` combines all (a float).
    """
    x = np.asarray(norms, np.float64)
    known = ~np.isnan(x)
    squares = np.where(known, x, 0.0) ** 2
    total = np.sqrt(np.sum(squares, axis=axis))
    result = np.where(np.any(known, axis=axis), total, math.nan)
    return float(result) if axis is None else result


def combine_weight_norms(rows, start_norms=None):
    """Combines weights' WEIGHT_NORMS rows (`[weights, ..., 4]`) into their whole's (`[..., 4]`).

    Norms and gradient norms combine as root-sum-squares. A weight's
    update ratio is its change over its norm at the epoch's start; the
    whole's is sqrt(sum change^2) / sqrt(sum start norm^2) over the weights
    whose ratio is known (not a bias that started at zero). Without
    `start_norms` (a reader has the end norms only), the norms stand in for
    them: near, since an epoch changes a weight by a small fraction.
    """
    rows = np.asarray(rows, np.float64)
    norm, grad_mean, grad_max, ratio = (rows[..., i] for i in range(4))
    start = norm if start_norms is None else np.asarray(start_norms, np.float64)
    known = np.isfinite(ratio) & np.isfinite(start)
    change = root_sum_square(np.where(known, ratio * start, math.nan), axis=0)
    base = root_sum_square(np.where(known, start, math.nan), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        update_ratio = np.where(base > 0, change / np.where(base > 0, base, 1.0), math.nan)
    combined = [root_sum_square(x, axis=0) for x in (norm, grad_mean, grad_max)]
    return np.stack([*combined, update_ratio], axis=-1)
