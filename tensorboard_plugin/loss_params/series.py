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
    """One tag of one run: whose series it is and what its tensors hold.

    Attributes:
        tag: The tag, e.g. `loss/GaussianNLL/log_var/value`.
        path: The variable's path, e.g. `loss/GaussianNLL/log_var`.
        role: `"loss"`, `"model"` or `"run"`.
        kind: One of `metadata.VALUE`, `STATS`, ... (`metadata.PluginData` kinds).
        shape: The variable's shape.
        dtype: The variable's dtype name.
        max_step: The last step written.
    """

    tag: str
    path: str
    role: str
    kind: int
    shape: tuple
    dtype: str
    max_step: int


def list_series(data_provider, ctx, experiment_id, runs=None):
    """Lists the epoch series of every run, from metadata only (no tensors read).

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
    listing = data_provider.list_tensors(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=None if runs is None else tb_provider.RunTagFilter(runs=runs),
    )
    result = {}
    for run in sorted(listing):
        series = {}
        for tag, time_series in sorted(listing[run].items()):
            parsed = _parse(run, tag, time_series)
            if parsed is not None:
                series[tag] = parsed
        if series:
            result[run] = series
    return result


def read(data_provider, ctx, experiment_id, runs, tags, downsample=ALL_POINTS):
    """Reads some tags of some runs.

    Args:
        data_provider, ctx, experiment_id: As for `list_series`.
        runs: The runs' names.
        tags: The tags to read (a run that lacks one of them is fine).
        downsample: How many points per tag at most; the last point is always
            among them. Defaults to all.

    Returns:
        `{run: {tag: (steps, values)}}`: `steps` int64[n] sorted, `values` a
        list of numpy arrays, one per step (where a step was written twice,
        after a resume from a checkpoint, the later write wins). A tag without
        data is left out.
    """
    data = data_provider.read_tensors(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        downsample=downsample,
        run_tag_filter=tb_provider.RunTagFilter(runs=list(runs), tags=list(tags)),
    )
    return {
        run: {tag: _by_step(points) for tag, points in by_tag.items() if points}
        for run, by_tag in data.items()
    }


def stack(values):
    """Stacks per-step tensors into one float64 array with a leading step axis."""
    return np.stack([np.asarray(v, dtype=np.float64) for v in values]) if values else None


def statuses(values):
    """Decodes diagnosis tensors: one `{path: status}` dict per step."""
    return [
        {_text(row[0]): _text(row[1]) for row in np.asarray(v).reshape(-1, 2)} for v in values
    ]


def _parse(run, tag, time_series):
    try:
        data = metadata.parse_plugin_metadata(time_series.plugin_content)
    except Exception as error:  # noqa: BLE001 - one bad tag must not hide the rest
        logger.warning("Skipping tag %r of run %r: %s", tag, run, error)
        return None
    if data is None or data.granularity != metadata.EPOCH or data.role not in ROLE_NAMES:
        return None
    return Series(
        tag=tag,
        path=data.path,
        role=ROLE_NAMES[data.role],
        kind=data.kind,
        shape=tuple(data.shape),
        dtype=data.dtype,
        max_step=int(time_series.max_step),
    )


def _by_step(points):
    by_step = {}
    for point in points:
        by_step[int(point.step)] = point.numpy
    steps = sorted(by_step)
    return np.array(steps, dtype=np.int64), [by_step[s] for s in steps]


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
