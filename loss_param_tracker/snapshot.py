"""What the tracker keeps of a variable's value, and the arithmetic of its norms.

A `Snapshot` is taken at an epoch's start and at each look: enough to tell
whether a variable changed, its norm, and its update ratio, without a copy
of a large model on the host. A `BatchReader` reads the many small
variables of a model together, a few device calls an epoch instead of one
per variable; a larger variable is read chunk by chunk.
"""

import itertools
import math
from typing import NamedTuple

import numpy as np

from tensorboard_plugin.loss_params import norms

# A weight of more elements is followed, within an epoch, through a fixed
# sample of this many of its elements and a fingerprint of the whole, instead
# of a copy: the tracker's host memory stays small next to a large model's.
SAMPLE_SIZE = 1 << 16
# A model weight is read in chunks of this many elements (4 MB of float32),
# never whole: the host holds one chunk of it at a time.
CHUNK_SIZE = 1 << 20


def host_value(variable):
    """The value of `variable` (a Keras or backend variable, a tensor) as a numpy array.

    Never through numpy's `__array__` of a Keras variable or a torch
    tensor, which lack numpy 2's `copy` keyword: a DeprecationWarning in the
    user's fit. On TensorFlow through the variable's `numpy()`, which reads
    its value's (a mirrored variable's `__array__` fails for a scalar), as
    a raw `tf.Variable` is; on JAX through its value, an array; on PyTorch
    through its tensor's own `numpy()`.
    """
    import keras  # here: the rest of this module is numpy, for tests without a backend

    if isinstance(variable, keras.Variable) and keras.backend.backend() != "tensorflow":
        variable = variable.value
    if hasattr(variable, "detach") and str(variable.dtype) != "torch.bfloat16":  # numpy has no bfloat16
        return variable.detach().cpu().numpy()
    if callable(getattr(variable, "numpy", None)):  # a TensorFlow variable (Keras's too) or tensor
        return np.asarray(variable.numpy())
    return keras.ops.convert_to_numpy(variable)


class Snapshot(NamedTuple):
    """What the tracker keeps of a variable's value at one moment.

    Attributes:
        sample: The value's flat elements, or a fixed strided sample of
            `SAMPLE_SIZE` of them for a larger variable.
        fingerprint: float64 sum and sum of squares of every element: an
            exact change detector where `sample` is partial (the sum is
            `None` where `sample` is whole).
        finite: Whether every element is finite.
    """

    sample: np.ndarray
    fingerprint: tuple
    finite: bool

    @classmethod
    def of(cls, variable):
        """Reads `variable` chunk by chunk, keeping only what the snapshot holds."""
        size = size_of(variable)
        if size <= SAMPLE_SIZE:  # the common case, in few numpy calls
            return cls.of_flat(np.ravel(host_value(variable)).astype(np.float64))
        stride = max(1, size // SAMPLE_SIZE)
        total = squares = 0.0
        finite = True
        samples = []
        for begin, chunk in _chunks(variable, size):
            total += float(chunk.sum(dtype=np.float64))
            squares += float(np.square(chunk, dtype=np.float64).sum())
            finite = finite and bool(np.isfinite(chunk).all())
            samples.append(chunk[(-begin) % stride :: stride].copy())  # a view would keep the chunk
        sample = np.concatenate(samples)[:SAMPLE_SIZE].astype(np.float64) if samples else np.zeros(0)
        return cls(sample, (total, squares), finite)

    @classmethod
    def of_flat(cls, flat):
        """The snapshot of a whole variable from its flat float64 elements (a view is kept)."""
        return cls(flat, (None, float(np.square(flat).sum())), bool(np.isfinite(flat).all()))

    @property
    def norm(self):
        return math.sqrt(self.fingerprint[1])

    def changed(self, later):
        """Whether `later`, a snapshot of the same variable, differs from this one, bit for bit.

        (Compared as bytes: a NaN that stays NaN is no change, and the
        comparison costs a memcmp, a thirtieth of `np.array_equal`'s.)
        """
        if self.sample.tobytes() != later.sample.tobytes():
            return True
        # A whole sample is the value; a partial one's fingerprint, as bytes too.
        return self.fingerprint[0] is not None and _bits(self.fingerprint) != _bits(later.fingerprint)

    def update_ratio(self, later):
        """||later - self|| / ||self|| over the sample (exact up to `SAMPLE_SIZE` elements); NaN where the shape changed."""
        if self.sample.shape != later.sample.shape:
            return math.nan
        whole = self.fingerprint[0] is None
        start_norm = self.norm if whole else norms.l2_norm(self.sample)
        if start_norm == 0:
            return math.nan
        return norms.l2_norm(later.sample - self.sample) / start_norm


class Change(NamedTuple):
    """What a variable did between two snapshots: `Snapshot.changed` and `Snapshot.update_ratio`, computed for many at once."""

    changed: bool
    update_ratio: float


def static_shape(variable):
    """The variable's shape as known before run time, -1 for an unknown dimension."""
    return tuple(-1 if d is None else int(d) for d in variable.shape)


def size_of(variable):
    """The number of elements of the variable's value, also where a dimension is unknown until run time."""
    shape = static_shape(variable)
    if -1 not in shape:
        return math.prod(shape)
    return int(np.size(host_value(variable)))


def _chunks(variable, size):
    """Yields `(offset, flat numpy chunk)` of `variable`'s value, `CHUNK_SIZE` elements at a time."""
    if size <= CHUNK_SIZE:
        yield 0, np.ravel(host_value(variable))
        return
    import keras  # here: the rest of this module is numpy, for tests without a backend

    flat = keras.ops.reshape(variable, [-1])
    for begin in range(0, size, CHUNK_SIZE):
        yield begin, host_value(flat[begin : begin + CHUNK_SIZE])


class BatchReader:
    """Reads many small variables in a few device calls: snapshots for all of them.

    Variables of at most `SAMPLE_SIZE` elements are read in groups of at
    most `CHUNK_SIZE` elements, each group by one call of a function the
    backend compiles once per group (`read_flat`, see `capture.flat_reader`).

    Args:
        read_flat: `read_flat(variables)` returns a callable that gives the
            variables' elements, flattened and concatenated, as float64.
    """

    def __init__(self, read_flat):
        self._read_flat = read_flat
        self._readers = {}  # tuple of variable ids -> the group's compiled read
        # tuple of variable ids -> (the variables, kept alive so that no id
        # is reused while cached; their groups, see `_groups`)
        self._grouped = {}

    def snapshots(self, variables, since=None):
        """`{index: Snapshot}` of the small variables among `variables`, by their index there, and their changes.

        A variable of unknown or larger size is left out (read alone, in
        chunks); so is a group whose read fails, its variables then read
        alone by the caller.

        Args:
            variables: The variables.
            since: `{index: Snapshot}` of some of them, taken earlier.

        Returns:
            `({index: Snapshot}, {index: Change})`: the changes since
            `since`, of the groups where it holds every variable (one
            computation for the group, where `Snapshot.changed` and
            `update_ratio` take several numpy calls a variable).
        """
        found, changes = {}, {}
        since = since or {}
        key = tuple(map(id, variables))
        if key not in self._grouped:
            if len(self._grouped) >= 8:  # lists of earlier epochs (a variable added since)
                self._grouped.clear()
                self._readers.clear()  # each holds its variables: none outlives its lists
            self._grouped[key] = (tuple(variables), self._groups(variables))
        for group in self._grouped[key][1]:
            try:
                flat = self._reader(group, variables)()
            except Exception:  # noqa: BLE001 - the caller reads them one by one
                continue
            indices, sizes, offsets = group
            if flat.shape != (offsets[-1] + sizes[-1],):
                continue
            squares = np.add.reduceat(np.square(flat), offsets).tolist()
            finite = np.logical_and.reduceat(np.isfinite(flat), offsets).tolist()
            found.update(
                (index, Snapshot(flat[offset : offset + size], (None, square), ok))
                for index, offset, size, square, ok in zip(indices, offsets, sizes, squares, finite)
            )
            starts = [since.get(index) for index in indices]
            if all(map(_whole, starts, sizes)):
                changes.update(zip(indices, _changes(starts, flat, offsets)))
        return found, changes

    def _groups(self, variables):
        """`[(indices, sizes, offsets), ...]`: the small variables in groups of at most `CHUNK_SIZE` elements.

        `offsets`: where each variable's elements begin in the group's flat read.
        """
        groups, group, total = [], [], 0
        for index, variable in enumerate(variables):
            shape = static_shape(variable)
            size = math.prod(shape)
            if -1 in shape or not 0 < size <= SAMPLE_SIZE:
                continue
            if total + size > CHUNK_SIZE and group:
                groups.append(group)
                group, total = [], 0
            group.append((index, size))
            total += size
        groups = groups + [group] if group else groups
        return [_columns(group) for group in groups]

    def _reader(self, group, variables):
        key = tuple(id(variables[i]) for i in group[0])
        if key not in self._readers:
            self._readers[key] = self._read_flat([variables[i] for i in group[0]])
        return self._readers[key]


def _columns(group):
    """`(indices, sizes, offsets)` of a group's `[(index, size), ...]`."""
    indices, sizes = [index for index, _ in group], [size for _, size in group]
    return indices, sizes, list(itertools.accumulate(sizes[:-1], initial=0))


def _whole(snapshot, size):
    """Whether `snapshot` holds every element of a variable of `size` elements, as float64."""
    return (
        snapshot is not None
        and snapshot.fingerprint[0] is None
        and snapshot.sample.shape == (size,)
        and snapshot.sample.dtype == np.float64
    )


def _bits(numbers):
    return np.array(numbers, np.float64).tobytes()


def _changes(starts, flat, offsets):
    """The `Change`s from whole snapshots `starts` to a group's `flat` elements (`offsets` its variables')."""
    before = np.concatenate([start.sample for start in starts])
    # Bit for bit, as `Snapshot.changed`: a NaN that stays NaN is no change.
    changed = np.logical_or.reduceat(before.view(np.int64) != flat.view(np.int64), offsets)
    moved = np.sqrt(np.add.reduceat(np.square(flat - before), offsets))
    start_norms = np.sqrt([start.fingerprint[1] for start in starts])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(start_norms == 0, math.nan, moved / start_norms)
    return list(map(Change, changed.tolist(), ratios.tolist()))
