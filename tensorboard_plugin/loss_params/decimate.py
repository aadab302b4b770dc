"""Extreme-preserving decimation: the steps a chart some pixels wide needs to draw every series exactly.

This is the reduction behind the routes' `columns=N` parameter (see
`http_api.md`, which says what it guarantees); `bodies._reduced` applies it
to a body.

A line chart N pixels wide draws at most N columns of pixels. Of the points
that fall in one column, the first, the last, the lowest and the highest
give the same pixels as all of them (M4: Jugel et al., "M4: A
Visualization-Oriented Time Series Data Aggregation", VLDB 2014), where a
random sample of as many points may miss a one-epoch spike. The chart draws
a NaN or an infinity as a gap with a mark, so the first and last non-finite
value of each column are kept too: a NaN epoch is always in the view, and a
gap's edges are where they are.

The reduction of a body, step by step:

1. Its steps, from the first to the last, are split into N columns of equal
   width by step value, not by count (a resumed run, or one logged every few
   epochs, is unevenly spaced); the last step falls in the last column.
2. Every array of the body is a set of series: each element of `value`,
   each quantile of `distribution`, each field of `stats`, `grad_norm`,
   `norms`, `global_grad_norm` and of the `/weights` norms. In every column,
   each series keeps the steps of its first and last finite value, of its
   lowest and highest finite value, and of its first and last NaN or
   infinity; each column also keeps its first and last step, whatever the
   series.
3. The body keeps the union of those steps, and every array at each of
   them: the same layout as unreduced, on fewer `steps`. That is at most 6
   steps per column and series, usually 2 to 4.
4. Where that keeps more than half of the steps (`bodies.KEEP_ALL_ABOVE`),
   the body keeps every one: it would be barely smaller, and the tab would
   read the series again for its tooltip.

A display (`display.py`) is monotone, so the steps that draw the stored
values exactly draw the shown ones exactly too. All of it is vectorised
(`keep_indices`): no Python loop runs over the steps or the series.
"""

import numpy as np


def keep_indices(steps, arrays, columns):
    """The indices of the steps that draw every one of `arrays` exactly on a chart `columns` wide.

    The range [first step, last step] is split into `columns` columns of
    equal width by step value, not by index (a resumed run, or one logged
    every few epochs, is unevenly spaced); the last step falls in the last
    column. For every series and every column, the indices of its first and
    last finite value, of its lowest and highest finite value, and of its
    first and last non-finite value (NaN, +-Inf) are kept; the result is
    their union over all the series. All of it is vectorised: no Python
    loop runs over the steps or the series.

    Args:
        steps: int[n], sorted and unique: the steps the arrays are drawn over.
        arrays: Arrays of shape [n] or [n, ...]: each element of the
            trailing axes is a series of its own (a variable's elements, a
            kind's fields).
        columns: The chart's width in pixel columns, at least 1.

    Returns:
        int64[k], the indices into `steps` to keep, sorted and unique: every
        index (`arange(n)`) when `n <= columns`. Slicing `steps` and each
        array with them keeps them aligned.
    """
    steps = np.asarray(steps)
    n = len(steps)
    if n <= columns:
        return np.arange(n)
    new_column = np.diff(_column_of(steps, columns), prepend=-1) != 0
    starts = np.flatnonzero(new_column)  # the first index of each column that has steps
    ends = np.append(starts[1:], n) - 1
    # [series, n]; the empty block makes no arrays, or arrays of no elements, zero series.
    values = np.concatenate(
        [np.zeros((n, 0)), *(np.asarray(a, dtype=np.float64).reshape(n, -1) for a in arrays)], axis=1
    ).T
    finite = np.isfinite(values)
    every = finite.all()  # usually: then each column's first and last finite values are its first and last steps
    own = np.cumsum(new_column) - 1  # each step's column, as an index into `starts`
    lowest = np.minimum.reduceat(values if every else np.where(finite, values, np.inf), starts, axis=1)[:, own]
    highest = np.maximum.reduceat(values if every else np.where(finite, values, -np.inf), starts, axis=1)[:, own]
    index = np.arange(n)

    def first(mask):  # per series and column, n where no value is in `mask`
        return np.minimum.reduceat(np.where(mask, index, n), starts, axis=1)

    def last(mask):  # -1 where none is
        return np.maximum.reduceat(np.where(mask, index, -1), starts, axis=1)

    # Each column's first and last step whatever the series: with any, they are among
    # its first and last (non-)finite values anyway; with none, the axis needs them.
    kept = [starts, ends, first(finite & (values == lowest)), first(finite & (values == highest))]
    if not every:
        kept += [first(finite), last(finite), first(~finite), last(~finite)]
    kept = np.concatenate([a.ravel() for a in kept])
    keep = np.zeros(n, dtype=bool)
    keep[kept[(kept >= 0) & (kept < n)]] = True
    return np.flatnonzero(keep)


def _column_of(steps, columns):
    """Each step's column, 0 to `columns - 1`: its offset from the first step times `columns` over the range.

    Computed in integers, exact at the columns' edges, where they cannot
    overflow; in floats, whose rounding keeps the columns in order, for
    steps too far apart for that (only a hostile event file has them).
    """
    first = int(steps[0])
    span = max(int(steps[-1]) - first, 1)
    if span * columns <= np.iinfo(np.int64).max:
        column = (steps.astype(np.int64) - first) * columns // span
    else:
        column = ((steps.astype(np.float64) - first) / span * columns).astype(np.int64)
    return np.clip(column, 0, columns - 1)
