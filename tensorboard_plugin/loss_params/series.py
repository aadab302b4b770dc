"""Reads loss_params series through a TensorBoard `DataProvider`.

The plugin's routes and `loss_param_tracker.load` both read through here, so
the dashboard, notebooks and the report see the same data. Works on either
loader: the Python event multiplexer's `MultiplexerDataProvider` or the Rust
data server's gRPC provider. Needs no TensorFlow.
"""

import dataclasses
import functools
import json
import logging
import math
import operator

import numpy as np
from tensorboard.compat.proto import types_pb2
from tensorboard.data import provider as tb_provider
from tensorboard.util import tensor_util

from tensorboard_plugin.loss_params import metadata
from tensorboard_plugin.loss_params.display import Display

logger = logging.getLogger("loss_param_tracker")

# Ask the provider for every point it holds. What it holds is set at load
# time by `--samples_per_plugin` (the plugin's loader makes that "all").
ALL_POINTS = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Series:
    """One series of one run: whose it is, what it holds, and the tags it is stored in.

    A vector kind is stored as one scalar series per element or field; a
    `Series` stands for the whole vector, and `read` reassembles it.

    Attributes:
        tag: The series' tag without a field, e.g. `loss/GaussianNLL/log_var/grad_norm`.
        path: The variable's path, e.g. `loss/GaussianNLL/log_var`.
        role: `metadata.ROLE_LOSS`, `ROLE_MODEL` or `ROLE_RUN` (named by
            `metadata.ROLE_NAMES`).
        kind: One of `metadata.VALUE`, `STATS`, ... (`metadata.PluginData` kinds).
        shape: The variable's shape.
        dtype: The variable's dtype name.
        max_step: The last step written.
        parts: `((field, tag), ...)`: the stored tags, in the kind's field order.
        granularity: `metadata.EPOCH`, or `metadata.BATCH` for a batch series
            (listed only on request, see `list_series`).
        shapes: `((field, shape), ...)`: the variable's shape each stored tag
            names, in the order of `parts`. TensorBoard keeps a tag's metadata
            from its first write, so they differ from `shape` where the
            variable changed shape during the run.
        display: How the variable is shown, a `display.Display`, or `None`
            for as stored (also where the recorded display cannot be read).
        layer_index: For a model weight, the place of its layer in the
            model (see `plugin_data.proto`), or `None` (logs of older versions).
        display_problem: Why the recorded display cannot be applied (a newer
            tracker's function), or `""`.
    """

    tag: str
    path: str
    role: int
    kind: int
    shape: tuple
    dtype: str
    max_step: int
    parts: tuple
    granularity: int = metadata.EPOCH
    shapes: tuple = ()
    display: Display = None
    layer_index: int = None
    display_problem: str = ""

    @property
    def scalar(self):
        return self.kind in metadata.SCALAR_KINDS


def list_series(
    data_provider, ctx, experiment_id, runs=None, *, batch=False, invalid=None, newer=None
):
    """Lists the epoch series of every run (batch series on request), from metadata only.

    No data is read. A tag whose metadata cannot be parsed, or names a shape
    no variable can have (see `_shape_problem`), is logged and skipped, so
    one bad tag never hides the rest. A tag of a newer tracker (a newer
    version of the format, or a role, kind or granularity this version does
    not know) is left out, and logged once per process: the rest of its run
    reads as ever. Batch series are skipped unless asked for.

    Args:
        data_provider: A `tensorboard.data.provider.DataProvider`.
        ctx: The request context.
        experiment_id: The experiment id (empty for a local logdir).
        runs: Run names to list, or `None` for all runs.
        batch: Also list the batch series (`update_freq`, and the values the
            callback writes before training), under their own tags
            (`.../batch_value`). Defaults to `False`: the plugin shows epochs.
        invalid: A dict that, when given, receives `{run: {tag: reason}}` for
            each tag skipped for its metadata, in place of the log line (for
            readers that refuse a run with such a tag).
        newer: A dict that, when given, receives `{run: {tag: what}}` for
            each tag of a newer tracker left out, in place of the log line
            (for readers that warn in their own way).

    Returns:
        `{run: {tag: Series}}`, runs and tags sorted.
    """
    kwargs = dict(
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=None if runs is None else tb_provider.RunTagFilter(runs=runs),
    )
    parsed = {}  # run -> logical tag -> [(field, tag, data, max_step)]
    for listing in (data_provider.list_scalars(ctx, **kwargs), data_provider.list_tensors(ctx, **kwargs)):
        for run, tags in listing.items():
            for tag, time_series in tags.items():
                data = _parse(run, tag, time_series.plugin_content, batch, invalid, newer)
                if data is not None:
                    key = metadata.tag(data.path, data.kind, data.granularity)
                    parsed.setdefault(run, {}).setdefault(key, []).append(
                        (data.field, tag, data, int(time_series.max_step))
                    )
    listing = {
        run: {key: _series(key, parsed[run][key]) for key in sorted(parsed[run])}
        for run in sorted(parsed)
    }
    if newer is None:
        for run, tags in listing.items():
            for one in tags.values():
                if one.display_problem:
                    _say_once(
                        (one.path, one.display_problem),
                        "Showing %r of run %r as stored: %s.",
                        one.path, run, one.display_problem,
                    )
    return listing


def read(data_provider, ctx, experiment_id, wanted, downsample=ALL_POINTS, *, by_field=False):
    """Reads series of some runs: one provider call for the scalar series, one for the tensors.

    Args:
        data_provider, ctx, experiment_id: As for `list_series`.
        wanted: `{run: [Series]}`, the series to read, as `list_series` gave them.
        downsample: How many points per tag at most; the last point is always
            among them. Defaults to all.
        by_field: Give each vector kind as stored, `{field: (steps, values)}`
            with one entry per stored tag (`values` float64[n]), in place of
            the assembled array: for readers that check the fields agree
            before they `assemble` them. Defaults to `False`.

    Returns:
        `{run: {tag: (steps, values)}}`, `tag` being `Series.tag`. `steps` is
        int64[n], sorted. For a vector kind `values` is float64[n, fields]
        (NaN where a field lacks a step, see `assemble`); for a tensor kind, a
        list of numpy arrays, one per step. Where a step was written twice
        (after a resume from a checkpoint), the later write wins. A series
        without data is left out.
    """
    wanted = {run: list(series) for run, series in wanted.items() if series}
    result = {}
    for scalar in (True, False):
        tags = {tag for series in wanted.values() for s in series if s.scalar == scalar for _, tag in s.parts}
        if not tags:
            continue
        run_tag_filter = tb_provider.RunTagFilter(runs=list(wanted), tags=sorted(tags))
        if scalar:
            data = _read_scalars(data_provider, ctx, experiment_id, run_tag_filter, downsample)
        else:
            data = _read_tensors(data_provider, ctx, experiment_id, run_tag_filter, downsample)
        for run, series in wanted.items():
            points = data.get(run, {})
            for s in series:
                if s.scalar != scalar:
                    continue
                if scalar:
                    columns = {field: points.get(tag, _NO_POINTS) for field, tag in s.parts}
                    found = any(len(steps) for steps, _ in columns.values())
                    one = columns if by_field else assemble(s, columns)
                else:
                    one = points.get(s.tag, _NO_TENSORS)
                    found = len(one[0]) > 0
                if found:
                    result.setdefault(run, {})[s.tag] = one
    return result


_NO_POINTS = (np.zeros(0, np.int64), np.zeros(0, np.float64))
_NO_TENSORS = (np.zeros(0, np.int64), [])


def _read_scalars(data_provider, ctx, experiment_id, run_tag_filter, downsample):
    """`{run: {tag: (steps, values)}}` of scalar series: int64 and float64 arrays, steps sorted.

    A provider's `read_scalars` hands over a Python object per point, and
    building them costs more than the read: from the Rust data server, whose
    gRPC answer already holds each series as packed arrays, seven times the
    read itself (190 ms against 25 ms for a card of 20 runs x 2,000 epochs);
    from the Python loader, which decodes each point's tensor with
    `make_ndarray`, seven times the direct read of its events. So the
    arrays are taken from TensorBoard's `GrpcDataProvider`'s answer as they
    come (`_scalar_data_arrays`), and the points of the
    `MultiplexerDataProvider`'s events decoded at once (`_scalars`): see
    `_fast_read`. Any other provider is read through `read_scalars`.
    """
    fast = _fast_read(data_provider, experiment_id, run_tag_filter, downsample, scalar=True)
    if fast is not None:
        return fast
    data = _provider_read(data_provider.read_scalars, ctx, experiment_id, run_tag_filter, downsample)
    return {
        run: {tag: _by_step(points, scalar=True) for tag, points in tags.items()}
        for run, tags in data.items()
    }


def _read_tensors(data_provider, ctx, experiment_id, run_tag_filter, downsample):
    """`{run: {tag: (steps, [numpy array per step])}}` of tensor series, steps sorted.

    As `_read_scalars`, from TensorBoard's two providers directly: the
    Python loader's `read_tensors` decodes every point before it takes its
    sample, where `_fast_read` decodes the sample only (the latest diagnosis
    of a run of 2,000 epochs, that `/runs` reads, in 1/2000 of the time).
    """
    fast = _fast_read(data_provider, experiment_id, run_tag_filter, downsample, scalar=False)
    if fast is not None:
        return fast
    data = _provider_read(data_provider.read_tensors, ctx, experiment_id, run_tag_filter, downsample)
    return {run: {tag: _by_step(points) for tag, points in tags.items()} for run, tags in data.items()}


def _provider_read(read, ctx, experiment_id, run_tag_filter, downsample):
    """A data provider's `read_scalars` or `read_tensors` of this plugin's series."""
    return read(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        downsample=downsample,
        run_tag_filter=run_tag_filter,
    )


def _fast_read(data_provider, experiment_id, run_tag_filter, downsample, scalar):
    """The read of `_read_scalars` or `_read_tensors` without a Python object per point, or `None`.

    The points are those the provider's own call gives (the same sample),
    decoded as it decodes them (`make_ndarray`), only sooner (`_scalars`):
    a damaged run raises the same error. `None` where the provider is
    neither of TensorBoard's two, or where getting its points this way
    fails: the provider's own call then reads, and raises its own errors
    (the data server's refusal) as TensorBoard's.
    """
    stub = _grpc_stub(data_provider)
    multiplexer = _multiplexer(data_provider)
    if stub is None and multiplexer is None:
        return None
    try:
        if stub is not None:
            points = _grpc_points(stub, experiment_id, run_tag_filter, downsample, scalar)
        else:
            points = _multiplexer_points(multiplexer, run_tag_filter, downsample, scalar)
    except Exception as error:  # noqa: BLE001 - the provider's own path still works
        if not _is_grpc_error(error):
            _log_slow_path(f"{type(error).__name__}: {error}")
        return None
    decode = _scalars if scalar else _tensors
    return {
        run: {tag: _sorted_by_step(steps, decode(values)) for tag, (steps, values) in tags.items()}
        for run, tags in points.items()
    }


def _grpc_stub(data_provider):
    """The gRPC stub of TensorBoard's Rust data server provider, or `None` for another provider."""
    try:
        from tensorboard.data import grpc_provider
    except ImportError:  # grpcio is a TensorBoard dependency, but a reader may run without it
        return None
    if isinstance(data_provider, grpc_provider.GrpcDataProvider):
        return getattr(data_provider, "_stub", None)
    return None


def _is_grpc_error(error):
    """Whether `error` is the data server's refusal, which the provider's own call reports as TensorBoard's."""
    import grpc

    return isinstance(error, grpc.RpcError)


def _multiplexer(data_provider):
    """The event multiplexer behind the Python loader's provider, or `None` for another provider."""
    from tensorboard.backend.event_processing import data_provider as multiplexer_provider

    if isinstance(data_provider, multiplexer_provider.MultiplexerDataProvider):
        return getattr(data_provider, "_multiplexer", None)
    return None


def _grpc_points(stub, experiment_id, run_tag_filter, downsample, scalar):
    """`{run: {tag: (steps, values)}}` from the data server: scalars as float64 arrays, tensors as `TensorProto`s."""
    from tensorboard.data.proto import data_provider_pb2

    kind = data_provider_pb2.ReadScalarsRequest if scalar else data_provider_pb2.ReadTensorsRequest
    request = kind(experiment_id=experiment_id)
    request.plugin_filter.plugin_name = metadata.PLUGIN_NAME
    request.run_tag_filter.runs.names[:] = sorted(run_tag_filter.runs)
    request.run_tag_filter.tags.names[:] = sorted(run_tag_filter.tags)
    request.downsample.num_points = downsample
    answer = (stub.ReadScalars if scalar else stub.ReadTensors)(request)
    return {
        run.run_name: {
            tag.tag_name: (
                _scalar_data_arrays(tag.data) if scalar else (np.array(tag.data.step, np.int64), list(tag.data.value))
            )
            for tag in run.tags
        }
        for run in answer.runs
    }


def _scalar_data_arrays(data):
    """`(steps, values)` of the data server's `ScalarData`: int64 and float64 arrays, read from its wire format.

    Copying a repeated field of a message into numpy goes element by
    element, 60 ns each. Serialized (8 ns an element), the message holds
    each field packed, the steps as varints and the values as float32s,
    which numpy reads at once: a third of the time in all. A message in any
    other form (a field not packed, a schema that differs) is copied field
    by field.
    """
    fields = _packed_fields(data.SerializeToString()) if _SCALAR_DATA_IS_PACKABLE else None
    steps = None if fields is None else _varints(fields.get(_STEP_FIELD, b""))
    if steps is None:
        return np.array(data.step, np.int64), np.array(data.value, np.float64)
    return steps, np.frombuffer(fields.get(_VALUE_FIELD, b""), "<f4").astype(np.float64)


def _scalar_data_fields():
    """The field numbers of `ScalarData`'s `step` and `value`, and whether they are int64 and float as read here."""
    from tensorboard.data.proto import data_provider_pb2

    fields = data_provider_pb2.ScalarData.DESCRIPTOR.fields_by_name
    step, value = fields["step"], fields["value"]
    packable = step.type == step.TYPE_INT64 and value.type == value.TYPE_FLOAT
    return step.number, value.number, packable


_STEP_FIELD, _VALUE_FIELD, _SCALAR_DATA_IS_PACKABLE = _scalar_data_fields()


def _packed_fields(wire):
    """`{field number: its bytes}` of a message of length-delimited fields only (packed ones), or `None`."""
    fields = {}
    at = 0
    while at < len(wire):
        key, at = _varint(wire, at)
        if key & 7 != 2:  # not length-delimited
            return None
        length, at = _varint(wire, at)
        # A packed field may come in several runs: they are one list.
        fields[key >> 3] = fields.get(key >> 3, b"") + wire[at : at + length]
        at += length
    return fields


def _varint(wire, at):
    """The varint at `at` of `wire`, and where it ends."""
    value = shift = 0
    while True:
        byte = wire[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _varints(wire):
    """int64 of the varints that make up `wire`, decoded at once; `None` where the last one is cut short."""
    data = np.frombuffer(wire, np.uint8)
    if not len(data):
        return np.zeros(0, np.int64)
    if data[-1] >= 0x80:
        return None
    ends = np.flatnonzero(data < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    # Each byte holds 7 bits of its varint, the first the lowest.
    shifts = (np.arange(len(data)) - np.repeat(starts, ends - starts + 1)).astype(np.uint64) * np.uint64(7)
    bits = (data & 0x7F).astype(np.uint64) << shifts
    return np.bitwise_or.reduceat(bits, starts).view(np.int64)


def _multiplexer_points(multiplexer, run_tag_filter, downsample, scalar):
    """`{run: {tag: (steps, TensorProtos)}}` from the Python loader: the provider's selection and sample."""
    from tensorboard.backend.event_processing import data_provider as multiplexer_provider
    from tensorboard.compat.proto import summary_pb2

    data_class = summary_pb2.DATA_CLASS_SCALAR if scalar else summary_pb2.DATA_CLASS_TENSOR
    points = {}
    for run in run_tag_filter.runs:
        for tag in run_tag_filter.tags:
            try:
                summary_metadata = multiplexer.SummaryMetadata(run, tag)
            except KeyError:  # a run or tag it does not hold: the provider leaves it out too
                continue
            if (
                summary_metadata.data_class != data_class
                or summary_metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME
            ):
                continue
            events = multiplexer_provider._downsample(multiplexer.Tensors(run, tag), downsample)
            steps = np.fromiter(map(operator.attrgetter("step"), events), np.int64, len(events))
            points.setdefault(run, {})[tag] = (steps, list(map(operator.attrgetter("tensor_proto"), events)))
    return points


# A `TensorProto`'s first bytes where it is a float32 scalar: field 1 (dtype)
# DT_FLOAT, then field 5 (float_val) packed, 4 bytes long.
_FLOAT32_SCALAR = np.frombuffer(bytes([0x08, types_pb2.DT_FLOAT, 0x2A, 0x04]), np.uint8)


def _scalars(values):
    """float64 values of scalar points: an array as it is, or `TensorProto`s decoded as `_scalar` does.

    A summary's float32 scalar is a `TensorProto` of two fields, its dtype
    and its one value, whose wire format is always the same 8 bytes: the
    `_FLOAT32_SCALAR` header, then the float32, little-endian. Where every
    point is so, the values are read from the points' bytes at once, in a
    seventh of the time of `_scalar`; else point by point.
    """
    if isinstance(values, np.ndarray):
        return values
    wire = b"".join([tensor.SerializeToString() for tensor in values])
    if len(wire) == 8 * len(values):
        rows = np.frombuffer(wire, np.uint8).reshape(len(values), 8)
        if (rows[:, :4] == _FLOAT32_SCALAR).all():
            return rows[:, 4:].copy().view("<f4").ravel().astype(np.float64)
    return np.fromiter(map(_scalar, values), np.float64, len(values))


def _scalar(tensor):
    """`make_ndarray(tensor).item()` of a `TensorProto`, as the Python loader's `read_scalars` gives a point.

    A float32 or float64 scalar, as summaries hold, is read from its one
    value directly, in a fifth of the time.
    """
    if not tensor.tensor_content and not tensor.tensor_shape.dim:
        if tensor.dtype == types_pb2.DT_FLOAT and len(tensor.float_val) == 1:
            return tensor.float_val[0]
        if tensor.dtype == types_pb2.DT_DOUBLE and len(tensor.double_val) == 1:
            return tensor.double_val[0]
    return tensor_util.make_ndarray(tensor).item()


def _tensors(tensors):
    """`_tensor` of each `TensorProto`; a table of strings whose bytes are the one before's is not decoded again.

    A run's diagnosis is the same table epoch after epoch while no status
    changes: such a table is the same array as the step before's, made
    read-only. Comparing the bytes of a run's 2,000 tables takes 2 ms where
    decoding their strings takes 22, and `status_changes` skips a repeated
    array.
    """
    decoded, last_wire, last = [], None, None
    for tensor in tensors:
        if tensor.dtype != types_pb2.DT_STRING:
            decoded.append(_tensor(tensor))
            continue
        wire = tensor.SerializeToString()
        if wire != last_wire:
            last_wire, last = wire, _tensor(tensor)
            last.flags.writeable = False
        decoded.append(last)
    return decoded


def _tensor(tensor):
    """`make_ndarray(tensor)` of a `TensorProto`; a table of strings (a diagnosis) taken from its values directly.

    `make_ndarray` looks its dtype up through TensorBoard's stub of
    TensorFlow's: a run's 2,000 diagnoses of 40 x 3 strings took 34 ms,
    where a string tensor with one value per element, taken from its
    `string_val` as it stands, is the same array in 22.
    """
    if tensor.dtype == types_pb2.DT_STRING and not tensor.tensor_content:
        shape = [dim.size for dim in tensor.tensor_shape.dim]
        if len(tensor.string_val) == math.prod(shape):
            return np.array(tensor.string_val, dtype=object).reshape(shape)
    return tensor_util.make_ndarray(tensor)


@functools.lru_cache(maxsize=1)
def _log_slow_path(reason):
    logger.warning("Reading point by point, the slower way: %s", reason)


def assemble(series, columns):
    """Stacks the scalar series of a vector's fields into `(steps, float64[steps, fields])`.

    Args:
        series: The `Series`.
        columns: `{field: (steps, values)}`, as `read(..., by_field=True)` gives it.

    Returns:
        `steps`, the union of the fields' steps, and the values in the order
        of `metadata.fields(series.kind, series.shape)`: NaN where a field
        lacks a step; a column whose field is not among these (the element
        of another shape) is left out.
    """
    steps = union_of_steps([s for s, _ in columns.values()])
    fields = metadata.fields(series.kind, series.shape)
    values = np.full((len(steps), len(fields)), np.nan)
    for i, field in enumerate(fields):
        if field in columns:
            own_steps, own_values = columns[field]
            values[np.searchsorted(steps, own_steps), i] = own_values
    return steps, values


def union_of_steps(arrays):
    """The sorted union of some step arrays: the first itself where all are the same, as they usually are."""
    if not arrays:
        return np.zeros(0, np.int64)
    first = arrays[0]
    if np.all(first[1:] > first[:-1]) and all(np.array_equal(a, first) for a in arrays[1:]):
        return first
    return np.unique(np.concatenate(arrays))


def stack(values):
    """The values of `read` as one float64 array with a leading step axis."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.stack([np.asarray(v, dtype=np.float64) for v in values]) if values else None


def diagnoses(values):
    """Decodes diagnosis tensors: one `{path: (status, cause)}` dict per step.

    Rows are (path, status, cause); the format's version 1 had no cause
    column, read as `""`.

    Raises:
        ValueError: When a tensor is not a table of 2 or 3 columns: the
            event file does not follow the format, and no row can be trusted.
    """
    result = []
    for v in values:
        rows = diagnosis_table(v)
        cause = (lambda row: _text(row[2])) if rows.shape[1] > 2 else (lambda row: "")
        result.append({_text(row[0]): (_text(row[1]), cause(row)) for row in rows})
    return result


def statuses(values):
    """Decodes diagnosis tensors: one `{path: status}` dict per step."""
    return [{path: status for path, (status, _) in d.items()} for d in diagnoses(values)]


def status_changes(values):
    """Decodes diagnosis tensors by variable, as changes: `{path: [(index, status), ...]}`.

    What `statuses` gives, turned around and kept only where it changes:
    each path of any step, in the order first seen, with its status from
    the step at `index` of `values` on, first where it has a row, then at
    each step where its status differs from the step before's: `""` where
    a step has no row for it. A run's statuses rarely change: 2,000 epochs
    of 40 variables are 40 short lists, not 80,000 words. A step whose
    table is the step before's array (see `_tensors`) is not read again.

    Raises:
        ValueError: As `diagnoses`.
    """
    changes, now, before = {}, {}, None
    for index, value in enumerate(values):
        table = diagnosis_table(value)
        if table is before:
            continue
        before = table
        rows = dict(zip(map(_text, table[:, 0].tolist()), map(_text, table[:, 1].tolist())))  # a path twice: its last row
        for path, status in now.items():
            if status and path not in rows:  # its row is gone
                now[path] = ""
                changes[path].append((index, ""))
        for path, status in rows.items():
            if now.get(path) != status:
                now[path] = status
                changes.setdefault(path, []).append((index, status))
    return changes


def diagnosis_table(value):
    """A diagnosis tensor as a table of 2 or 3 columns (path, status, cause), checked.

    Format version 3 writes the table as one string, its rows as JSON
    (`summary.diagnosis`); versions 1 and 2 as a string tensor of 2 or 3
    columns. The same JSON text gives the same read-only array, decoded
    once: a run's tables repeat while no status changes.

    Raises:
        ValueError: When it is neither: the event file does not follow the
            format, and no row can be trusted.
    """
    rows = np.asarray(value)
    if rows.ndim == 0:
        return _json_table(rows.item())
    if rows.ndim != 2 or rows.shape[1] not in (2, 3):
        raise ValueError(f"a diagnosis has shape {rows.shape}; expected a JSON string or a (variables, 3) table")
    return rows


@functools.lru_cache(maxsize=64)
def _json_table(text):
    """`diagnosis_table` of a version 3 diagnosis, its JSON `text` (bytes or str)."""
    try:
        rows = json.loads(text)
    except (TypeError, ValueError) as error:  # not text; UnicodeDecodeError is a ValueError
        raise ValueError(f"a diagnosis is not JSON ({error})") from None
    if not isinstance(rows, list) or not all(
        isinstance(row, list) and len(row) == 3 and all(isinstance(cell, str) for cell in row) for row in rows
    ):
        raise ValueError("a diagnosis is not a list of [path, status, cause] rows of strings")
    table = np.array(rows, dtype=object).reshape(len(rows), 3)
    table.flags.writeable = False
    return table


_KINDS = frozenset(metadata.PluginData.Kind.values()) - {metadata.PluginData.KIND_UNSPECIFIED}
_GRANULARITIES = frozenset(metadata.PluginData.Granularity.values())
_MAX_RANK = 64  # numpy's NPY_MAXDIMS


def _parse(run, tag, content, batch, invalid, newer):
    """The tag's metadata, or `None` for a tag to skip (see `list_series`)."""
    try:
        data = metadata.parse_plugin_metadata(content)
    except Exception as error:  # noqa: BLE001 - one bad tag must not hide the rest
        return _skip(run, tag, f"its metadata cannot be parsed: {error}", invalid)
    unknown = _newer_than_this_version(content, data)
    if unknown:
        return _leave_out(run, tag, unknown, newer)
    problem = _shape_problem(data)
    if problem:
        return _skip(run, tag, f"its metadata names {problem}", invalid)
    if data.granularity != metadata.EPOCH and not batch:
        return None
    return data


def _shape_problem(data):
    """What is wrong with the shape a tag's metadata declares, or `""`.

    Readers size arrays by that shape (a VALUE has a column per element), so
    a damaged or hostile one, (100000, 100000) say, must be refused before
    anything is allocated: a VALUE holds at most `MAX_WHOLE_ELEMENTS`
    elements, the callback's own limit, and no variable has more dimensions
    than numpy allows.
    """
    shape = list(data.shape)
    # -1: a dimension unknown until run time (a memory bank that grows),
    # logged as statistics, never as a VALUE.
    unknown = -1 in shape and data.kind == metadata.VALUE
    if len(shape) > _MAX_RANK or any(d < -1 for d in shape) or unknown:
        return f"an impossible shape of {len(shape)} dimensions, {shape[:8]}"
    size = math.prod(shape)
    if data.kind == metadata.VALUE and size > metadata.MAX_WHOLE_ELEMENTS:
        return (
            f"a VALUE of shape {tuple(shape)}, {size} elements; "
            f"a VALUE holds at most {metadata.MAX_WHOLE_ELEMENTS}"
        )
    return ""


def _newer_than_this_version(content, data):
    """What of a tag's metadata only a newer tracker writes, or `""`.

    Protobuf keeps an enum value it does not know: a role, kind or
    granularity added after this version reads as a number.
    """
    if data is None:
        return f"version {metadata.PluginData.FromString(content).version} of the format"
    if data.role not in metadata.ROLE_NAMES:
        return f"an unknown role, {data.role}"
    if data.kind not in _KINDS:
        return f"an unknown kind, {data.kind}"
    if data.granularity not in _GRANULARITIES:
        return f"an unknown granularity, {data.granularity}"
    return ""


def _leave_out(run, tag, what, newer):
    if newer is not None:
        newer.setdefault(run, {})[tag] = what
    else:
        _say_once(
            (run, what),
            "Leaving out tag %r of run %r: its metadata names %s, which a newer "
            "loss-param-tracker writes; upgrade to read it. (Said once per run and %s.)",
            tag, run, what, what,
        )
    return None


_SAID = set()  # what this process has logged once


def _say_once(key, message, *args):
    if key not in _SAID:
        _SAID.add(key)
        logger.warning(message, *args)


def _skip(run, tag, reason, invalid):
    if invalid is None:
        logger.warning("Skipping tag %r of run %r: %s", tag, run, reason)
    else:
        invalid.setdefault(run, {})[tag] = reason
    return None


def _series(key, parts):
    _, _, data, _ = parts[0]
    shape = tuple(data.shape)
    order = {field: i for i, field in enumerate(metadata.fields(data.kind, shape))}
    stored = sorted((order.get(field, len(order)), field, tag) for field, tag, _, _ in parts)
    shapes = {field: tuple(one.shape) for field, _, one, _ in parts}
    return Series(
        tag=key,
        path=data.path,
        role=data.role,
        kind=data.kind,
        shape=shape,
        dtype=data.dtype,
        max_step=max(step for _, _, _, step in parts),
        parts=tuple((field, tag) for _, field, tag in stored),
        granularity=data.granularity,
        shapes=tuple((field, shapes[field]) for _, field, _ in stored),
        layer_index=data.layer_index if data.HasField("layer_index") else None,
        **_display(data),
    )


def _display(data):
    """The series' `display` and `display_problem`: one this version cannot apply is read as stored."""
    if not data.HasField("display"):
        return {}
    try:
        return {"display": Display.from_proto(data.display)}
    except ValueError as error:
        return {"display_problem": f"its display cannot be applied ({error}); a newer tracker wrote it"}


def _by_step(points, scalar=False):
    steps = np.fromiter((p.step for p in points), np.int64, len(points))
    if scalar:
        values = np.fromiter((p.value for p in points), np.float64, len(points))
    else:
        values = [p.numpy for p in points]
    return _sorted_by_step(steps, values)


def _sorted_by_step(steps, values):
    """`(steps, values)` sorted by step; of a step written twice (a resume from a checkpoint), its last write."""
    if np.all(steps[1:] > steps[:-1]):
        return steps, values
    last = len(steps) - 1 - np.unique(steps[::-1], return_index=True)[1]
    return steps[last], values[last] if isinstance(values, np.ndarray) else [values[i] for i in last]


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
