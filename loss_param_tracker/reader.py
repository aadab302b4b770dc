"""`load(log_dir)`: the logged series as numpy arrays, for notebooks and the report.

Reads the event files through TensorBoard's own loading code (the event
multiplexer), the same summaries the plugin reads. Needs no TensorFlow.
"""

import dataclasses
import os

import numpy as np
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

from tensorboard_plugin.loss_params import metadata, series


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
        cause: str[n], the cause of each epoch's status where it has
            several (see `metadata.CAUSES`), else `""`.
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
    cause: np.ndarray = None

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
        model_norms: `(steps, float[n, 4])` of all the model's weights as one
            vector (norm, grad_norm_mean, grad_norm_max, update_ratio), or `None`.
        step_counts: `(steps, float[n, 2])` of each epoch's training steps
            whose gradients were captured, and of those the optimizer skipped
            for a loss-scale overflow; `None` when not captured.
    """

    name: str
    variables: dict
    grad_norm: tuple = None
    model_norms: tuple = None
    step_counts: tuple = None

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
    provider = data_provider.MultiplexerDataProvider(multiplexer, log_dir)
    ctx = context.RequestContext()
    runs = {}
    for run, tags in series.list_series(provider, ctx, "").items():
        data = series.read(provider, ctx, "", {run: tags.values()}).get(run, {})
        runs[run] = _read_run(run, tags, data)
    if not runs:
        raise NoSummariesError(
            f"No loss_params summaries under {log_dir!r}. Train with "
            "callbacks=[LossParamTracker(log_dir=...)] and pass that directory."
        )
    return runs


def _read_run(run, tags, data):
    variables, statuses, run_series = {}, None, {}
    for tag, one in tags.items():
        if tag not in data:
            continue
        steps, values = data[tag]
        if one.kind == metadata.DIAGNOSIS:
            statuses = (steps, series.diagnoses(values))
        elif one.role == "run":
            run_series[one.kind] = (steps, series.stack(values))
        else:
            variable = variables.setdefault(
                one.path, Variable(one.path, one.role, one.shape, one.dtype)
            )
            _set_field(variable, one.kind, steps, values)
    if statuses is not None:
        _set_statuses(variables, *statuses)
    ordered = dict(sorted(variables.items(), key=lambda item: (item[1].role != "loss", item[0])))
    return Run(
        run,
        ordered,
        run_series.get(metadata.GRAD_NORM),
        run_series.get(metadata.WEIGHT_NORMS),
        run_series.get(metadata.STEPS),
    )


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
    stacked = series.stack(values)
    if kind == metadata.VALUE:
        stacked = stacked.reshape((len(steps),) + variable.shape)
    setattr(variable, field, stacked)


def _set_statuses(variables, steps, per_step):
    for variable in variables.values():
        if variable.steps is None:
            continue
        by_step = dict(zip(steps.tolist(), per_step))
        rows = [by_step.get(s, {}).get(variable.path, ("", "")) for s in variable.steps.tolist()]
        variable.status = np.array([status for status, _ in rows], dtype=object)
        variable.cause = np.array([cause for _, cause in rows], dtype=object)
