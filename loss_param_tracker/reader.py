"""`load(log_dir)`: the logged series as numpy arrays, for notebooks and the report.

Reads the event files through TensorBoard's own loading code (the event
multiplexer), the same summaries the plugin reads. Needs no TensorFlow.
"""

import dataclasses
import logging
import os

import numpy as np
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from tensorboard_plugin.loss_params import metadata

logger = logging.getLogger("loss_param_tracker")

_ROLE_NAMES = {metadata.ROLE_LOSS: "loss", metadata.ROLE_MODEL: "model"}


class NoSummariesError(ValueError):
    """The log directory holds no loss_params summaries."""


@dataclasses.dataclass
class Variable:
    """The epoch series of one tracked variable.

    Every array has one row per logged epoch, aligned with `steps`; a field
    the variable does not have is `None`.

    Attributes:
        path: The variable's path, e.g. `loss/GaussianNLL/log_var`.
        role: `"loss"` or `"model"`.
        shape: Shape of the variable.
        dtype: Name of its dtype.
        steps: int64[n], the epochs.
        value: float[n, *shape], the whole value (loss variables of at most
            64 elements).
        stats: float[n, 5], mean, std, min, max, l2 (larger loss variables).
        grad_norm: float[n, 2], mean and max gradient L2 norm over each epoch.
        norms: float[n, 4], norm, grad_norm_mean, grad_norm_max, update_ratio
            (model weights).
        status: str[n], the diagnosis of each epoch.
    """

    path: str
    role: str
    shape: tuple
    dtype: str
    steps: np.ndarray = None
    value: np.ndarray = None
    stats: np.ndarray = None
    grad_norm: np.ndarray = None
    norms: np.ndarray = None
    status: np.ndarray = None

    @property
    def last_status(self):
        return str(self.status[-1]) if self.status is not None and len(self.status) else None


@dataclasses.dataclass
class Run:
    """One run (a directory of event files) of a log directory.

    Attributes:
        name: The run's path relative to the log directory, e.g. `run1/train`.
        variables: `{path: Variable}`, loss variables first.
        grad_norm: `(steps, float[n, 2])` of the global gradient norm, or `None`.
    """

    name: str
    variables: dict
    grad_norm: tuple = None

    @property
    def loss_variables(self):
        return {p: v for p, v in self.variables.items() if v.role == "loss"}


def load(log_dir):
    """Loads every run under `log_dir` that holds loss_params summaries.

    Example:

    ```python
    runs = loss_param_tracker.load("logs")
    var = runs["run1/train"].variables["loss/GaussianNLL/log_var"]
    var.steps, var.value[:, ...], var.status
    ```

    Args:
        log_dir: The directory given to `LossParamTracker(log_dir=...)`, or a
            parent of several.

    Returns:
        `{run name: Run}`, sorted by run name.

    Raises:
        FileNotFoundError: When `log_dir` does not exist.
        NoSummariesError: When it holds no loss_params summaries (an empty
            directory, or event files of other tools only).
    """
    log_dir = os.fspath(log_dir)
    if not os.path.isdir(log_dir):
        raise FileNotFoundError(
            f"Log directory {log_dir!r} does not exist. Pass the log_dir given to "
            "LossParamTracker(log_dir=...)."
        )
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(log_dir)
    multiplexer.Reload()
    runs = {}
    for run, tags in sorted(multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME).items()):
        runs[run] = _read_run(multiplexer, run, tags)
    if not runs:
        raise NoSummariesError(
            f"No loss_params summaries under {log_dir!r}. Train with "
            "callbacks=[LossParamTracker(log_dir=...)] and pass that directory."
        )
    return runs


def read_series(tensor_events):
    """Returns `(steps, values)` of tensor events: sorted by step, the last write of a step wins."""
    by_step = {}
    for event in tensor_events:
        by_step[event.step] = event.tensor_proto
    steps = sorted(by_step)
    values = [tensor_util.make_ndarray(by_step[s]) for s in steps]
    return np.array(steps, dtype=np.int64), values


def _read_run(multiplexer, run, tags):
    variables, statuses, grad_norm = {}, None, None
    for tag, content in sorted(tags.items()):
        try:
            data = metadata.parse_plugin_metadata(content)
        except Exception as error:  # noqa: BLE001 - one bad tag must not hide the rest
            logger.warning("Skipping tag %r of run %r: %s", tag, run, error)
            continue
        if data is None or data.granularity != metadata.EPOCH:
            continue
        steps, values = read_series(multiplexer.Tensors(run, tag))
        if data.kind == metadata.DIAGNOSIS:
            statuses = (steps, values)
        elif data.role == metadata.ROLE_RUN:
            grad_norm = (steps, _stack(values))
        elif data.role in _ROLE_NAMES:
            variable = variables.setdefault(
                data.path,
                Variable(data.path, _ROLE_NAMES[data.role], tuple(data.shape), data.dtype),
            )
            _set_field(variable, data.kind, steps, values)
    if statuses is not None:
        _set_statuses(variables, *statuses)
    ordered = dict(sorted(variables.items(), key=lambda item: (item[1].role != "loss", item[0])))
    return Run(run, ordered, grad_norm)


_FIELD_OF_KIND = {
    metadata.VALUE: "value",
    metadata.STATS: "stats",
    metadata.GRAD_NORM: "grad_norm",
    metadata.WEIGHT_NORMS: "norms",
}


def _set_field(variable, kind, steps, values):
    field = _FIELD_OF_KIND.get(kind)
    if field is None:
        return  # Histograms are for the dashboard.
    if variable.steps is None or len(steps) > len(variable.steps):
        variable.steps = steps
    setattr(variable, field, _stack(values))


def _set_statuses(variables, steps, values):
    per_step = [
        {row[0].decode(): row[1].decode() for row in np.asarray(v).reshape(-1, 2)} for v in values
    ]
    for variable in variables.values():
        if variable.steps is None:
            continue
        by_step = dict(zip(steps.tolist(), per_step))
        variable.status = np.array(
            [by_step.get(s, {}).get(variable.path, "") for s in variable.steps.tolist()],
            dtype=object,
        )


def _stack(values):
    return np.stack([np.asarray(v, dtype=np.float64) for v in values]) if values else None
