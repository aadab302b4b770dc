"""Writers of the loss_params summaries, one function per kind, and the numpy reductions they log.

As TensorBoard's `summary_v2.scalar` does for Scalars, each function takes
one step of one series and gives its `Summary.Value` protos, with the
plugin's metadata: `loss_variable` (a loss variable's value, or statistics
and histogram, and gradient norm), `grad_norm`, `weight_norms`,
`diagnosis`, `steps`; `values` is the engine under them. A writer
(`loss_param_tracker.writer`) puts one step's protos in one event.

TensorFlow is imported inside `write` only: the plugin imports this package
and TensorBoard must start without TensorFlow. The protos are built with
TensorBoard's own pure-Python helpers.
"""

import functools

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, types_pb2
from tensorboard.util import tensor_util

from tensorboard_plugin.loss_params import metadata, norms


# One entry per series: a model of 1,000 weights and 200 loss variables has
# about 2,500 (epoch and batch series).
@functools.lru_cache(maxsize=1 << 14)
def _tags_and_metadata(described, fields, extra):
    """`((tag, SummaryMetadata), ...)` of a series' fields; `described` and `extra` as in `values`."""
    role, kind, path, shape, dtype, granularity = described
    display, layer_index = extra
    display = display.to_proto() if display else None
    return tuple(
        (
            metadata.tag(path, kind, granularity, field),
            metadata.create_summary_metadata(
                role, kind, path, shape, dtype, granularity, field, display, layer_index
            ),
        )
        for field in fields
    )


def loss_variable(path, value, *, shape, dtype, granularity=metadata.EPOCH, display=None, grad=None):
    """One step of a loss variable: its value, or statistics and histogram, and its gradient norm.

    A variable of at most `metadata.MAX_WHOLE_ELEMENTS` elements is logged
    whole (VALUE); a larger one, or one with a dimension unknown until run
    time (a memory bank that grows: one series whatever its size), as STATS,
    and at epoch granularity also as a HISTOGRAM.

    Args:
        path: The variable's path.
        value: Its value now, a numpy array.
        shape: Its static shape (-1 for a dimension unknown until run time).
        dtype: Its dtype's name.
        granularity: `metadata.EPOCH` or `metadata.BATCH`.
        display: Its `display.Display`, or `None`.
        grad: `(mean, max)` of its gradient norm over the steps, or `None`
            (the value before training, which has no gradient).
    """
    value = np.asarray(value)
    whole = value.size <= metadata.MAX_WHOLE_ELEMENTS and -1 not in tuple(shape)
    common = dict(
        shape=value.shape if whole else shape, dtype=dtype, granularity=granularity, display=display
    )
    if whole:
        loggable = value if value.dtype in (np.float32, np.float64) else value.astype(np.float32)
        result = values(metadata.ROLE_LOSS, metadata.VALUE, path, loggable, **common)
    else:
        result = values(metadata.ROLE_LOSS, metadata.STATS, path, stats(value), **common)
        if granularity == metadata.EPOCH:
            result += values(metadata.ROLE_LOSS, metadata.HISTOGRAM, path, histogram(value), **common)
    if grad is not None:
        result += grad_norm(path, *grad, **common)
    return result


def grad_norm(path, mean, maximum, *, role=metadata.ROLE_LOSS, **described):
    """One step of a gradient norm series: its mean and max over the steps (NaN where none).

    `described`: `shape`, `dtype`, `granularity`, `display`, as `values` takes them.
    """
    return values(role, metadata.GRAD_NORM, path, np.array([mean, maximum], np.float32), **described)


def weight_norms(path, row, *, role=metadata.ROLE_MODEL, shape=(), dtype="float32", layer_index=None):
    """One step of a weight's (or weights' as one vector) norms: `row` as `metadata.FIELDS[WEIGHT_NORMS]`."""
    return values(
        role, metadata.WEIGHT_NORMS, path, np.asarray(row, np.float32), shape=shape, dtype=dtype,
        layer_index=layer_index,
    )


def diagnosis(rows):
    """One step of the run's diagnosis: `rows`, `(path, status, cause)` of each diagnosed variable."""
    table = np.array([list(row) for row in rows], dtype=object).reshape(-1, 3)
    return values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS, table)


def steps(captured, skipped):
    """One step of the run's step counts: training steps captured, and skipped for overflow."""
    return values(
        metadata.ROLE_RUN, metadata.STEPS, metadata.RUN_STEPS, np.array([captured, skipped], np.float32)
    )


def values(
    role, kind, path, data, *, shape=(), dtype="", granularity=metadata.EPOCH, display=None,
    layer_index=None,
):
    """Returns one step of a series as `Summary.Value` protos (no TensorFlow needed): the per-kind functions' engine.

    A vector kind gives one scalar value per element or field (see
    `metadata.fields`); HISTOGRAM and DIAGNOSIS give one tensor value.

    Args:
        role: `metadata.ROLE_LOSS`, `ROLE_MODEL` or `ROLE_RUN`.
        kind: One of the kinds of `metadata` (`VALUE`, `STATS`, ...).
        path: The variable's path, e.g. `loss/GaussianNLL/log_var`.
        data: The step's data as the kind defines it (a numpy array): the
            variable for VALUE, the vector of `metadata.FIELDS[kind]` for
            the other vector kinds, the tensor for the tensor kinds.
        shape: Shape of the variable itself. Defaults to `()`.
        dtype: Name of the variable's dtype. Defaults to `""`.
        granularity: `metadata.EPOCH` or `metadata.BATCH`. Defaults to `EPOCH`.
        display: How a loss variable is shown, a `display.Display`, or
            `None` for as stored. Defaults to `None`.
        layer_index: The place of a model weight's layer in the model, or
            `None`. Defaults to `None`.
    """
    shape = tuple(int(d) for d in shape)
    described = (role, kind, path, shape, dtype, granularity)
    extra = (display, layer_index)
    names = metadata.fields(kind, shape)
    protos = _tags_and_metadata(described, names, extra)
    if kind not in metadata.SCALAR_KINDS:
        ((tag, md),) = protos
        return [summary_pb2.Summary.Value(tag=tag, metadata=md, tensor=tensor_util.make_tensor_proto(data))]
    flat = np.asarray(data).ravel()
    scalar = _double if flat.dtype == np.float64 else _float
    if len(names) != flat.size:
        raise ValueError(
            f"A {metadata.PluginData.Kind.Name(kind)} step of {path!r} needs {len(names)} "
            f"numbers; received {flat.size}."
        )
    return [
        summary_pb2.Summary.Value(tag=tag, metadata=md, tensor=scalar(x))
        for (tag, md), x in zip(protos, flat.tolist())
    ]


# Scalar `TensorProto`s as `make_tensor_proto` makes them, at a tenth of its
# cost: a model of 100 weights writes 400 a epoch.
def _float(x):
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[x])


def _double(x):
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[x])


def write(values, step):
    """Writes `Summary.Value`s of one step to the default `tf.summary` writer, in one op.

    One serialized `Summary` per step keeps the cost per epoch to a single
    TensorFlow op, however many variables are logged.

    Returns:
        Whether a default writer took the summary, as `tf.summary.write`.
    """
    import tensorflow as tf

    serialized = summary_pb2.Summary(value=values).SerializeToString()
    return tf.summary.experimental.write_raw_pb(serialized, step=step)


def stats(value):
    """Returns float32[5]: mean, std, min, max and L2 norm of `value` (see `metadata.FIELDS`)."""
    flat = np.asarray(value, dtype=np.float64).ravel()
    if flat.size == 0:
        return np.full(5, np.nan, dtype=np.float32)
    return np.array(
        [flat.mean(), flat.std(), flat.min(), flat.max(), norms.l2_norm(flat)],
        dtype=np.float32,
    )


def histogram(value, bins=metadata.HISTOGRAM_BINS):
    """Returns float32[bins, 3] of (left edge, right edge, count), as TensorBoard's histograms.

    Non-finite elements are left out of the counts; a value without any
    finite element gives a single empty bucket.
    """
    flat = np.asarray(value, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return np.zeros((1, 3), dtype=np.float32)
    low, high = flat.min(), flat.max()
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(flat, bins=bins, range=(low, high))
    return np.stack([edges[:-1], edges[1:], counts], axis=1).astype(np.float32)
