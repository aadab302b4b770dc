"""Writers of the loss_params summaries, one function per kind, and the numpy reductions they log.

As TensorBoard's `summary_v2.scalar` does for Scalars, each function takes
one step of one series and gives its values (`Scalar`s and `Summary.Value`
protos, see below), with the plugin's metadata: `loss_variable` (a loss variable's value, or statistics
and histogram, and gradient norm), `grad_norm`, `weight_norms`,
`diagnosis`, `steps`; `values` is the engine under them. A writer
(`loss_param_tracker.writer`) puts one step's values, `serialize`d, in one
event.

A field of a vector kind is a `Scalar`, not a `Summary.Value`: a model of
1,000 weights logs about 5,000 numbers an epoch, and `serialize` writes a
scalar whose tag's metadata is already in the file as the bytes protobuf
would write for it, at a thirtieth of the cost of building the proto. The
model's weight norms go as one `ScalarBlock`: their bytes are a template
made once, with the numbers put in place by numpy.

TensorFlow is imported inside `write` only: the plugin imports this package
and TensorBoard must start without TensorFlow. The protos are built with
TensorBoard's own pure-Python helpers.
"""

import functools
import json
from typing import NamedTuple

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
    return many_weight_norms([(path, shape, dtype, layer_index)], [row], role=role)


def many_weight_norms(weights, rows, *, role=metadata.ROLE_MODEL):
    """`weight_norms` of many weights at once: a model's thousand weights in one conversion of their numbers.

    Args:
        weights: `[(path, shape, dtype, layer_index)]` of each weight.
        rows: Each weight's row, as `metadata.FIELDS[WEIGHT_NORMS]`.
        role: The role of all of them.
    """
    return weight_norms_block(weights, rows, role=role).scalars()


def weight_norms_block(weights, rows, *, role=metadata.ROLE_MODEL):
    """`many_weight_norms` as one `ScalarBlock`: what the tracker writes, a thirtieth of the objects."""
    fields = metadata.FIELDS[metadata.WEIGHT_NORMS]
    rows = np.asarray(rows, "<f4")
    if weights and rows.shape != (len(weights), len(fields)):
        raise ValueError(
            f"A WEIGHT_NORMS step of {weights[0][0]!r} needs {len(fields)} numbers a weight, "
            f"{len(weights)} weights; received numbers of shape {rows.shape}."
        )
    protos = []
    for path, shape, dtype, layer_index in weights:
        described = (role, metadata.WEIGHT_NORMS, path, tuple(int(d) for d in shape), dtype, metadata.EPOCH)
        protos += _tags_and_metadata(described, fields, (None, layer_index))
    return ScalarBlock(tuple(protos), rows.tobytes(), 4)


def diagnosis(rows):
    """One step of the run's diagnosis: `rows`, `(path, status, cause)` of each diagnosed variable.

    The table is one string, its rows as JSON (format version 3, see
    `series.diagnosis_table`): TensorBoard's Rust data server hands a string
    tensor over string by string, and a run's 2,000 tables of 40 x 3 strings
    took it 30 ms to serve, the same bytes as 2,000 strings 4 ms.

    Raises:
        ValueError: When a row is not three cells.
    """
    rows = [[str(cell) for cell in row] for row in rows]
    for row in rows:
        if len(row) != 3:
            raise ValueError(f"A diagnosis row is (path, status, cause); received {row!r}.")
    text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS, np.array(text, dtype=object))


def steps(captured, skipped):
    """One step of the run's step counts: training steps captured, and skipped for overflow."""
    return values(
        metadata.ROLE_RUN, metadata.STEPS, metadata.RUN_STEPS, np.array([captured, skipped], np.float32)
    )


def values(
    role, kind, path, data, *, shape=(), dtype="", granularity=metadata.EPOCH, display=None,
    layer_index=None,
):
    """Returns one step of a series (no TensorFlow needed): the per-kind functions' engine.

    A vector kind gives one `Scalar` per element or field (see
    `metadata.fields`); HISTOGRAM and DIAGNOSIS give one tensor
    `Summary.Value`. `serialize` writes either.

    Args:
        role: `metadata.ROLE_LOSS`, `ROLE_MODEL` or `ROLE_RUN`.
        kind: One of the kinds of `metadata` (`VALUE`, `STATS`, ...).
        path: The variable's path, e.g. `loss/GaussianNLL/log_var`.
        data: The step's data as the kind defines it (a numpy array): the
            variable for VALUE, the vector of `metadata.FIELDS[kind]` for
            the other vector kinds, the tensor for the tensor kinds (or its
            `TensorProto`, made already).
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
        tensor = data if isinstance(data, tensor_pb2.TensorProto) else tensor_util.make_tensor_proto(data)
        return [summary_pb2.Summary.Value(tag=tag, metadata=md, tensor=tensor)]
    flat = np.asarray(data).ravel()
    if len(names) != flat.size:
        raise ValueError(
            f"A {metadata.PluginData.Kind.Name(kind)} step of {path!r} needs {len(names)} "
            f"numbers; received {flat.size}."
        )
    flat = flat.astype("<f8" if flat.dtype == np.float64 else "<f4", copy=False)
    return _scalars(protos, flat.tobytes(), 0, flat.itemsize)


def _scalars(protos, raw, at, size):
    """A `Scalar` per `(tag, metadata)` of `protos`, their numbers the `size`-byte ones of `raw` from `at`."""
    return [Scalar(tag, md, raw[at + i * size : at + (i + 1) * size]) for i, (tag, md) in enumerate(protos)]


class Scalar(NamedTuple):
    """One field of a vector kind's step, as `values` gives it: written as a scalar `Summary.Value`.

    Attributes:
        tag: The field's tag.
        shared_metadata: The series' `SummaryMetadata`, shared by every
            step of the series: read it, never edit it (`metadata` and
            `proto()` give copies).
        raw: The number's little-endian bytes: 4 for float32, 8 for float64.
    """

    tag: str
    shared_metadata: summary_pb2.SummaryMetadata
    raw: bytes

    @property
    def metadata(self):
        """A copy of the series' `SummaryMetadata`, as a `Summary.Value` holds one."""
        copy = summary_pb2.SummaryMetadata()
        copy.CopyFrom(self.shared_metadata)
        return copy

    @property
    def number(self):
        return float(np.frombuffer(self.raw, "<f4" if len(self.raw) == 4 else "<f8")[0])

    @property
    def tensor(self):
        """The scalar `TensorProto`, as `make_tensor_proto` makes it."""
        if len(self.raw) == 4:
            return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[self.number])
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[self.number])

    def proto(self):
        """The `Summary.Value`, with (a copy of) its metadata."""
        return summary_pb2.Summary.Value(tag=self.tag, metadata=self.shared_metadata, tensor=self.tensor)


class ScalarBlock(NamedTuple):
    """Many `Scalar`s of one width as one value: a model's weight norms, made and written at once.

    Attributes:
        protos: `((tag, SummaryMetadata), ...)` of each scalar, shared as
            `Scalar.shared_metadata` is.
        raw: Their numbers' little-endian bytes, in that order.
        size: Each number's width in bytes: 4 for float32, 8 for float64.
    """

    protos: tuple
    raw: bytes
    size: int

    def scalars(self):
        return _scalars(self.protos, self.raw, 0, self.size)


def serialize(values, written=None):
    """One step's values (`Scalar`s, `ScalarBlock`s and `Summary.Value`s) as a serialized `Summary`, in their order.

    Args:
        values: What the functions above return, concatenated.
        written: The set of tags whose metadata the event file already
            holds, or `None` to write every value's metadata. A value of a
            tag not in it is written with its metadata and its tag added;
            a `Summary.Value` of a tag in it loses its metadata (in place).
    """
    parts = []
    for value in values:
        if isinstance(value, ScalarBlock):
            if not value.protos:
                continue
            tags = tuple(tag for tag, _ in value.protos)
            if written is not None and written.issuperset(tags):
                parts.append(_fill(_template(tags, value.size), value.raw))
            else:
                parts.append(serialize(value.scalars(), written))
            continue
        if written is not None and value.tag in written:
            if isinstance(value, Scalar):
                parts.append(_frame(value.tag, len(value.raw)) + value.raw)
                continue
            value.ClearField("metadata")
        elif written is not None:
            written.add(value.tag)
        proto = value.proto() if isinstance(value, Scalar) else value
        parts.append(summary_pb2.Summary(value=[proto]).SerializeToString())
    # Serialized messages concatenated are their merge: a Summary of all the values.
    return b"".join(parts)


@functools.lru_cache(maxsize=1 << 14)
def _frame(tag, size):
    """The bytes of a `Summary` holding a scalar `Summary.Value` of `tag` (no metadata), but its number's.

    Taken from protobuf's own serialization of that value at 0: the number
    is the last field written, and its bytes are the number's.
    """
    zero = Scalar(tag, None, bytes(size))
    serialized = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, tensor=zero.tensor)]).SerializeToString()
    if not serialized.endswith(zero.raw):
        raise AssertionError(f"protobuf wrote a scalar of {tag!r} in an unexpected layout")
    return serialized[:-size]


@functools.lru_cache(maxsize=8)
def _template(tags, size):
    """`(bytes, where)`: the `_frame`s of `tags` with `size` zero bytes after each, and where those bytes are."""
    frames = [_frame(tag, size) for tag in tags]
    ends = np.cumsum([len(frame) + size for frame in frames], dtype=np.int64)
    where = (ends[:, None] - size + np.arange(size)).ravel()
    return b"".join(frame + bytes(size) for frame in frames), where


def _fill(template, raw):
    """The template's bytes with `raw`'s bytes where its numbers go."""
    serialized, where = template
    filled = np.frombuffer(serialized, np.uint8).copy()
    filled[where] = np.frombuffer(raw, np.uint8)
    return filled.tobytes()


def write(values, step):
    """Writes one step's values to the default `tf.summary` writer, in one op.

    One serialized `Summary` per step keeps the cost per epoch to a single
    TensorFlow op, however many variables are logged.

    Returns:
        Whether a default writer took the summary, as `tf.summary.write`.
    """
    return write_serialized(serialize(values), step)


def write_serialized(serialized, step):
    """Writes a serialized `Summary` (`serialize`) to the default `tf.summary` writer: `write`'s op."""
    import tensorflow as tf

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
