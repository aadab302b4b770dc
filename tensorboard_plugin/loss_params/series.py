"""Reads loss_params series through a TensorBoard `DataProvider`.

The plugin's routes and `loss_param_tracker.load` both read through here, so
the dashboard, notebooks and the report see the same data. Works on either
loader: the Python event multiplexer's `MultiplexerDataProvider` or the Rust
data server's gRPC provider. Needs no TensorFlow.
"""

import dataclasses
import logging

import numpy as np
from tensorboard.data import provider as tb_provider

from tensorboard_plugin.loss_params import metadata

logger = logging.getLogger("loss_param_tracker")

# Ask the provider for every point it holds. What it holds is set at load
# time by `--samples_per_plugin` (the plugin's loader makes that "all").
ALL_POINTS = 2**31 - 1

ROLE_NAMES = {metadata.ROLE_LOSS: "loss", metadata.ROLE_MODEL: "model", metadata.ROLE_RUN: "run"}


@dataclasses.dataclass(frozen=True)
class Series:
    """One series of one run: whose it is, what it holds, and the tags it is stored in.

    A vector kind is stored as one scalar series per element or field; a
    `Series` stands for the whole vector, and `read` reassembles it.

    Attributes:
        tag: The series' tag without a field, e.g. `loss/GaussianNLL/log_var/grad_norm`.
        path: The variable's path, e.g. `loss/GaussianNLL/log_var`.
        role: `"loss"`, `"model"` or `"run"`.
        kind: One of `metadata.VALUE`, `STATS`, ... (`metadata.PluginData` kinds).
        shape: The variable's shape.
        dtype: The variable's dtype name.
        max_step: The last step written.
        parts: `((field, tag), ...)`: the stored tags, in the kind's field order.
    """

    tag: str
    path: str
    role: str
    kind: int
    shape: tuple
    dtype: str
    max_step: int
    parts: tuple

    @property
    def scalar(self):
        return self.kind in metadata.SCALAR_KINDS


def list_series(data_provider, ctx, experiment_id, runs=None):
    """Lists the epoch series of every run, from metadata only (no data read).

    A tag whose metadata cannot be parsed is logged and skipped, so one bad
    tag never hides the rest; so are batch series and series written by a
    newer version of the format.

    Args:
        data_provider: A `tensorboard.data.provider.DataProvider`.
        ctx: The request context.
        experiment_id: The experiment id (empty for a local logdir).
        runs: Run names to list, or `None` for all runs.

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
                data = _parse(run, tag, time_series.plugin_content)
                if data is not None:
                    key = metadata.tag(data.path, data.kind, data.granularity)
                    parsed.setdefault(run, {}).setdefault(key, []).append(
                        (data.field, tag, data, int(time_series.max_step))
                    )
    return {
        run: {key: _series(key, parsed[run][key]) for key in sorted(parsed[run])}
        for run in sorted(parsed)
    }


def read(data_provider, ctx, experiment_id, wanted, downsample=ALL_POINTS):
    """Reads series of some runs: one provider call for the scalar series, one for the tensors.

    Args:
        data_provider, ctx, experiment_id: As for `list_series`.
        wanted: `{run: [Series]}`, the series to read, as `list_series` gave them.
        downsample: How many points per tag at most; the last point is always
            among them. Defaults to all.

    Returns:
        `{run: {tag: (steps, values)}}`, `tag` being `Series.tag`. `steps` is
        int64[n], sorted. For a vector kind `values` is float64[n, fields]
        (NaN where a field lacks a step); for a tensor kind, a list of numpy
        arrays, one per step. Where a step was written twice (after a resume
        from a checkpoint), the later write wins. A series without data is
        left out.
    """
    wanted = {run: list(series) for run, series in wanted.items() if series}
    result = {}
    for scalar in (True, False):
        tags = {tag for series in wanted.values() for s in series if s.scalar == scalar for _, tag in s.parts}
        if not tags:
            continue
        read_kind = data_provider.read_scalars if scalar else data_provider.read_tensors
        data = read_kind(
            ctx,
            experiment_id=experiment_id,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=downsample,
            run_tag_filter=tb_provider.RunTagFilter(runs=list(wanted), tags=sorted(tags)),
        )
        for run, series in wanted.items():
            points = data.get(run, {})
            for s in series:
                if s.scalar != scalar:
                    continue
                assembled = _assemble(s, points) if scalar else _by_step(points.get(s.tag, ()))
                if len(assembled[0]):
                    result.setdefault(run, {})[s.tag] = assembled
    return result


def stack(values):
    """The values of `read` as one float64 array with a leading step axis."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.stack([np.asarray(v, dtype=np.float64) for v in values]) if values else None


def diagnoses(values):
    """Decodes diagnosis tensors: one `{path: (status, cause)}` dict per step.

    Rows are (path, status, cause); the format's version 1 had no cause
    column, read as `""`.
    """
    result = []
    for v in values:
        rows = np.asarray(v)
        rows = rows.reshape(-1, rows.shape[-1] if rows.ndim == 2 else 2)
        cause = (lambda row: _text(row[2])) if rows.shape[1] > 2 else (lambda row: "")
        result.append({_text(row[0]): (_text(row[1]), cause(row)) for row in rows})
    return result


def statuses(values):
    """Decodes diagnosis tensors: one `{path: status}` dict per step."""
    return [{path: status for path, (status, _) in d.items()} for d in diagnoses(values)]


def _parse(run, tag, content):
    try:
        data = metadata.parse_plugin_metadata(content)
    except Exception as error:  # noqa: BLE001 - one bad tag must not hide the rest
        logger.warning("Skipping tag %r of run %r: %s", tag, run, error)
        return None
    if data is None or data.granularity != metadata.EPOCH or data.role not in ROLE_NAMES:
        return None
    return data


def _series(key, parts):
    _, _, data, _ = parts[0]
    shape = tuple(data.shape)
    order = {field: i for i, field in enumerate(metadata.fields(data.kind, shape))}
    stored = sorted((order.get(field, len(order)), field, tag) for field, tag, _, _ in parts)
    return Series(
        tag=key,
        path=data.path,
        role=ROLE_NAMES[data.role],
        kind=data.kind,
        shape=shape,
        dtype=data.dtype,
        max_step=max(step for _, _, _, step in parts),
        parts=tuple((field, tag) for _, field, tag in stored),
    )


def _assemble(series, points):
    """Stacks the scalar series of a vector's fields into float64[steps, fields]."""
    columns = {field: _by_step(points.get(tag, ()), scalar=True) for field, tag in series.parts}
    steps = np.unique(np.concatenate([s for s, _ in columns.values()] or [np.zeros(0, np.int64)]))
    fields = metadata.fields(series.kind, series.shape)
    values = np.full((len(steps), len(fields)), np.nan)
    for i, field in enumerate(fields):
        if field in columns:
            own_steps, own_values = columns[field]
            values[np.searchsorted(steps, own_steps), i] = own_values
    return steps, values


def _by_step(points, scalar=False):
    steps = np.fromiter((p.step for p in points), np.int64, len(points))
    if scalar:
        values = np.fromiter((p.value for p in points), np.float64, len(points))
    else:
        values = [p.numpy for p in points]
    if np.all(steps[1:] > steps[:-1]):
        return steps, values
    # A step written twice (a resume from a checkpoint): keep its last write.
    last = len(steps) - 1 - np.unique(steps[::-1], return_index=True)[1]
    return steps[last], values[last] if scalar else [values[i] for i in last]


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
