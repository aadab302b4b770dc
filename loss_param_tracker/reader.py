"""`load(log_dir)`: the logged series as numpy arrays, for notebooks and the report.

Reads the event files through TensorBoard's own loading code (the event
multiplexer), the same summaries the plugin reads. Needs no TensorFlow.

The dashboard shows whatever part of a run it can read; `load` hands over a
run only when all of it could be read as the format defines it. A run is
skipped, named in `Runs.skipped` with the reason and warned about
(`SkippedRunWarning`), when one of its event files fails a checksum, when a diagnosis or a run-level vector has an unexpected shape, and on
any unexpected error while reading it. A variable whose own series cannot be
read (it changed shape during the run, so its epochs cannot be aligned in
one array; its values disagree with the shape its metadata gives) costs only
itself: the run is kept, and the variable is named in `Run.unreadable` with
the reason (`UnreadableVariableWarning`). What a newer tracker writes and
this version does not know is never a reason to skip a run: an unknown
status or cause is kept as it is, a series of an unknown role, kind or
granularity (or of a newer version of the format) is left out, and a
display that cannot be applied shows the value as stored; each is warned
about once (`NewerTrackerWarning`). An event file whose last record is cut
short (a crash, a full disk, a file still being written) is read up to that
record: the run is kept, and named in `Runs.incomplete`
(`IncompleteRunWarning`).
"""

import dataclasses
import os
import struct
import warnings
from typing import Optional, Union

import numpy as np
from tensorboard import context
from tensorboard.backend.event_processing import (
    data_provider,
    event_file_loader,
    io_wrapper,
    plugin_event_multiplexer,
)
from tensorboard.compat import tf as tb_tf  # TensorFlow when installed, else TensorBoard's stub
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from loss_param_tracker.writer import RECORD_FRAMING, RECORD_LENGTH
from tensorboard_plugin.loss_params import metadata, series
from tensorboard_plugin.loss_params.display import Display


class NoSummariesError(ValueError):
    """The log directory holds no loss_params summaries."""


class DamagedRunError(ValueError):
    """A run's event files or summaries cannot be read as the format defines them."""


class SkippedRunWarning(UserWarning):
    """`load` skipped a run it could not read (the message says which and why)."""


class IncompleteRunWarning(UserWarning):
    """`load` read a run whose event file ends in a record cut short, up to that record."""


class UnreadableVariableWarning(UserWarning):
    """`load` kept a run without one of its variables, whose series could not be read."""


class NewerTrackerWarning(UserWarning):
    """A run holds what a newer tracker writes and this version does not know; the run is read.

    An unknown status or cause is kept as it is; a series of an unknown
    role, kind or granularity is left out; an unknown display shows the
    value as stored. The message says which.
    """


class Runs(dict):
    """`{run name: Run}` of a log directory, sorted by run name, as `load` returns it.

    Attributes:
        skipped: `{run name: reason}` of the runs that could not be read and
            are left out, sorted by run name; empty when every run was read.
        incomplete: `{run name: note}` of the runs read up to an event file's
            last record, which was cut short (a crash, a full disk, a file
            still being written).
    """

    def __init__(self, runs=(), skipped=None, incomplete=None):
        super().__init__(runs)
        self.skipped = dict(skipped or {})
        self.incomplete = dict(incomplete or {})

    def _repr_html_(self):
        """A notebook shows `load("logs")` as a table per run, each loss variable with its trajectory."""
        from loss_param_tracker import render, report  # the report reads through this module

        return render.html_table(report.summarize(self)) + "".join(
            f"<p>Run <code>{render.html.escape(run)}</code> skipped: {render.html.escape(reason)}</p>"
            for run, reason in self.skipped.items()
        )


@dataclasses.dataclass
class Variable:
    """The epoch series of one tracked variable.

    Every array has one row per logged epoch, aligned with `steps` (a row is
    NaN where one of the variable's series lacks that epoch); a field the
    variable does not have is `None`.

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
        initial: The loss variable before training: float[*shape] (a
            `value`) or float[5] (a `stats` row), from its batch series at
            the smallest batch step (the callback writes it when `fit`
            begins, and every N batches with `update_freq`); `None` where
            there is no batch series, as in logs of older versions.
        display: How the variable is shown, a `loss_param_tracker.Display`
            (`LossParamTracker(display=...)`), or `None` for as stored.
    """

    path: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    steps: Optional[np.ndarray] = None
    value: Optional[np.ndarray] = None
    stats: Optional[np.ndarray] = None
    grad_norm: Optional[np.ndarray] = None
    norms: Optional[np.ndarray] = None
    status: Optional[np.ndarray] = None
    cause: Optional[np.ndarray] = None
    initial: Optional[np.ndarray] = None
    display: Optional[Display] = None

    @property
    def shown(self) -> Optional[np.ndarray]:
        """`value` as the display shows it (CLIP's scale for its `logit_scale`); `value` without one."""
        return _shown(self.display, self.value)

    @property
    def shown_initial(self) -> Optional[np.ndarray]:
        """`initial` as the display shows it, for a `value`; `initial` without a display."""
        return _shown(self.display, self.initial) if self.value is not None else self.initial

    @property
    def last_status(self) -> Optional[str]:
        """The latest status: the last epoch's, or where it has none yet the latest epoch's that has.

        A run still training writes an epoch's diagnosis at the next epoch's
        start, after that epoch's values: read then, its last epoch has none.
        """
        at = self._last_diagnosed()
        return None if at is None else str(self.status[at])

    @property
    def last_cause(self) -> str:
        """The cause of `last_status`, `""` where it has none."""
        at = self._last_diagnosed()
        return "" if at is None or self.cause is None else str(self.cause[at])

    def _last_diagnosed(self):
        if self.status is None or not len(self.status):
            return None
        diagnosed = np.flatnonzero(self.status != "")
        return int(diagnosed[-1]) if len(diagnosed) else len(self.status) - 1


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
        unreadable: `{path: reason}` of the variables whose series could not
            be read, left out of `variables`.
    """

    name: str
    variables: dict[str, Variable]
    grad_norm: Optional[tuple[np.ndarray, np.ndarray]] = None
    model_norms: Optional[tuple[np.ndarray, np.ndarray]] = None
    step_counts: Optional[tuple[np.ndarray, np.ndarray]] = None
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def loss_variables(self) -> dict[str, Variable]:
        return {p: v for p, v in self.variables.items() if v.role == _LOSS}

    def _repr_html_(self):
        """A notebook shows a run as the table of its loss variables, with their trajectories."""
        from loss_param_tracker import render, report  # the report reads through this module

        return render.html_table(report.summarize({self.name: self}))


def load(log_dir: Union[str, os.PathLike]) -> Runs:
    """Loads every run under `log_dir` that holds loss_params summaries.

    A run that cannot be read whole (see the module's docstring) is left out,
    named with the reason in the result's `skipped`, and warned about with a
    `SkippedRunWarning`; the other runs are read all the same.

    Example:

    ```python
    runs = loss_param_tracker.load("logs")
    var = runs["run1/train"].variables["loss/GaussianNLL/log_var"]
    var.steps, var.value[:, ...], var.status
    runs.skipped          # {run: reason} of the runs that could not be read
    ```

    Args:
        log_dir: The directory given to `LossParamTracker(log_dir=...)`, or a
            parent of several.

    Returns:
        `Runs`: `{run name: Run}`, sorted by run name, with `skipped`.

    Raises:
        FileNotFoundError: When `log_dir` does not exist.
        NotADirectoryError: When it is a file.
        NoSummariesError: When it holds no loss_params summaries (an empty
            directory, or event files of other tools only) and no run was
            skipped.
    """
    log_dir = os.fspath(log_dir)
    if not os.path.exists(log_dir):
        raise FileNotFoundError(
            f"Log directory {log_dir!r} does not exist. Pass the log_dir given to "
            "LossParamTracker(log_dir=...)."
        )
    if not os.path.isdir(log_dir):
        raise NotADirectoryError(
            f"Log directory {log_dir!r} is a file, not a directory. Pass the log_dir given "
            "to LossParamTracker(log_dir=...), which holds the event files in train/."
        )
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(log_dir)
    skipped, incomplete = {}, {}
    for run, path in sorted(multiplexer.RunPaths().items()):
        try:
            note = _check_event_files(path)
            if note:
                incomplete[run] = note
            multiplexer.GetAccumulator(run).Reload()
        except Exception as error:  # noqa: BLE001 - one run must not hide the rest
            skipped[run] = _reason(error)
    provider = data_provider.MultiplexerDataProvider(multiplexer, log_dir)
    ctx = context.RequestContext()
    invalid, newer = {}, {}
    listing = series.list_series(provider, ctx, "", batch=True, invalid=invalid, newer=newer)
    _warn_newer(newer, listing)
    runs, unfinished = {}, []
    for run in sorted((listing.keys() | invalid.keys()) - skipped.keys()):
        try:
            if run in invalid:
                tag, reason = min(invalid[run].items())
                raise DamagedRunError(f"tag {tag!r}: {reason}")
            if any(s.granularity == metadata.EPOCH for s in listing[run].values()):
                runs[run] = _read_run(provider, ctx, run, listing[run], run in incomplete)
            else:  # the values a fit starts from, and no epoch's end yet
                unfinished.append(run)
        except Exception as error:  # noqa: BLE001 - one run must not hide the rest
            skipped[run] = _reason(error)
    if not runs and not skipped and unfinished:
        raise NoSummariesError(
            f"No epoch has finished under {log_dir!r}: its runs ({', '.join(unfinished)}) hold "
            "the values their fit started from, and the fit is still in its first epoch or "
            "ended there (interrupted?)."
        )
    if not runs and not skipped:
        raise NoSummariesError(
            f"No loss_params summaries under {log_dir!r}. Train with "
            "callbacks=[LossParamTracker(log_dir=...)] and pass that directory."
        )
    skipped = dict(sorted(skipped.items()))
    for run, reason in skipped.items():
        warnings.warn(f"Run {run!r} skipped: {reason}", SkippedRunWarning, stacklevel=2)
    incomplete = {run: note for run, note in sorted(incomplete.items()) if run in runs}
    for run, note in incomplete.items():
        warnings.warn(f"Run {run!r} is incomplete: {note}", IncompleteRunWarning, stacklevel=2)
    for run in runs.values():
        for path, reason in run.unreadable.items():
            warnings.warn(
                f"Run {run.name!r}: variable {path!r} left out: {reason}",
                UnreadableVariableWarning,
                stacklevel=2,
            )
    return Runs(sorted(runs.items()), skipped, incomplete)


# Reading a run -----------------------------------------------------------

_LOSS = metadata.ROLE_NAMES[metadata.ROLE_LOSS]  # a `Variable`'s role, by name

# The kinds that hold a variable's value, whose fields follow its shape.
_VALUE_KINDS = (metadata.VALUE, metadata.STATS)


def _read_run(provider, ctx, run, tags, incomplete=False):
    """Reads one run's epoch series, and each loss variable's first batch write, into a `Run`.

    In an `incomplete` run (an event file cut short) the last epoch may be
    partly written: epochs after the last diagnosis, which the callback
    writes last, are left out.
    """
    epoch = [
        s for s in tags.values() if s.granularity == metadata.EPOCH and s.kind != metadata.HISTOGRAM
    ]
    batch = [
        s
        for s in tags.values()
        if s.granularity == metadata.BATCH and s.role == metadata.ROLE_LOSS and s.kind in _VALUE_KINDS
    ]
    try:
        data = series.read(provider, ctx, "", {run: epoch + batch}, by_field=True).get(run, {})
    except ValueError as error:  # a scalar series that holds a vector
        raise DamagedRunError(f"its scalar series cannot be read ({error})") from error
    if incomplete:
        data = _up_to_last_diagnosis(data, epoch)
    variables, statuses, run_series = {}, None, {}
    for one in epoch:
        if one.tag not in data:
            continue
        if one.kind == metadata.DIAGNOSIS:
            statuses = _diagnoses(*data[one.tag])
        elif one.role == metadata.ROLE_RUN:
            run_series[one.kind] = _vector(one, data[one.tag])
        else:
            variables.setdefault(one.path, []).append(one)
    initial = _initial_writes((s, data[s.tag]) for s in batch if s.tag in data and s.path in variables)
    read, unreadable = {}, {}
    for path, mine in variables.items():
        try:
            read[path] = _variable(path, mine, data, initial.get(path))
        except DamagedRunError as error:  # one variable's series: the rest of the run stands
            unreadable[path] = str(error)
    if statuses is not None:
        _set_statuses(read, *statuses)
        _warn_unknown_statuses(run, statuses[1])
    ordered = dict(sorted(read.items(), key=lambda item: (item[1].role != _LOSS, item[0])))
    return Run(
        run,
        ordered,
        run_series.get(metadata.GRAD_NORM),
        run_series.get(metadata.WEIGHT_NORMS),
        run_series.get(metadata.STEPS),
        dict(sorted(unreadable.items())),
    )


def _up_to_last_diagnosis(data, epoch):
    """`data` with the epoch series cut after the last step that has a diagnosis."""
    diagnosis = [s.tag for s in epoch if s.kind == metadata.DIAGNOSIS and s.tag in data]
    if not diagnosis:
        return data
    last = data[diagnosis[0]][0][-1]

    def cut(steps, values):
        keep = steps <= last
        return steps[keep], (values[keep] if isinstance(values, np.ndarray) else
                             [v for v, k in zip(values, keep) if k])

    tags = {s.tag for s in epoch}
    result = dict(data)
    for tag in tags & data.keys():
        columns = data[tag]
        if isinstance(columns, dict):
            result[tag] = {field: cut(*pair) for field, pair in columns.items()}
        else:
            result[tag] = cut(*columns)
    return result


def _initial_writes(batch):
    """Cuts each variable's batch series, given as `(Series, columns)` pairs, to its smallest step.

    Returns `{path: (Series, columns)}`. Where a variable has two batch
    series (it changed between `value` and `stats`), the one written first.
    """
    first = {}
    for one, columns in batch:
        step = min(steps[0] for steps, _ in columns.values() if len(steps))
        cut = {
            field: (steps[:1], values[:1])
            for field, (steps, values) in columns.items()
            if len(steps) and steps[0] == step
        }
        if one.path not in first or step < first[one.path][2]:
            first[one.path] = (one, cut, step)
    return {path: (one, cut) for path, (one, cut, _) in first.items()}


def _variable(path, mine, data, initial):
    """A `Variable` of its epoch series (`mine`) and its first batch write, checked and aligned."""
    _check_shape(path, mine, data, initial)
    first = mine[0]
    display = next((one.display for one in mine if one.kind in _VALUE_KINDS), None)
    variable = Variable(path, metadata.ROLE_NAMES[first.role], first.shape, first.dtype, display=display)
    assembled = {}
    for one in mine:
        if one.kind in metadata.SCALAR_KINDS:  # histograms are for the dashboard
            assembled[metadata.KIND_NAMES[one.kind]] = (one, _vector(one, data[one.tag]))
    variable.steps = np.unique(
        np.concatenate([steps for _, (steps, _) in assembled.values()] or [np.zeros(0, np.int64)])
    )
    for field, (one, (steps, values)) in assembled.items():
        aligned = np.full((len(variable.steps), values.shape[1]), np.nan)
        aligned[np.searchsorted(variable.steps, steps)] = values
        if one.kind == metadata.VALUE:
            aligned = aligned.reshape((len(variable.steps),) + one.shape)
        setattr(variable, field, aligned)
    if initial is not None:
        one, cut = initial
        row = series.assemble(one, cut)[1][0]
        variable.initial = row.reshape(one.shape) if one.kind == metadata.VALUE else row
    return variable


def _shown(display, values):
    return values if display is None or values is None else display.apply(values)


def _vector(one, columns):
    """Assembles a vector series after checking each step holds its kind's fields, and only those."""
    for fields, steps in _layouts(columns):
        _check_fields(one, fields, _when(steps))
    return series.assemble(one, columns)


def _check_fields(one, fields, where):
    """Raises `DamagedRunError` unless `fields` are a whole vector of the series' kind.

    For VALUE, the elements of some shape: `_check_shape` compares it with
    the shape the metadata gives.
    """
    if one.kind == metadata.VALUE:
        if fields not in ({""}, {str(i) for i in range(len(fields))}):
            present = ", ".join(sorted(fields, key=_element))
            raise DamagedRunError(f"series {one.tag!r} lacks elements {where}: it has {present}")
        return
    expected = frozenset(metadata.fields(one.kind, one.shape))
    if fields != expected:
        missing, unknown = sorted(expected - fields), sorted(fields - expected)
        said = " and ".join(
            text
            for text in (
                missing and f"lacks {', '.join(missing)}",
                unknown and f"has the unknown field(s) {', '.join(unknown)}",
            )
            if text
        )
        raise DamagedRunError(f"series {one.tag!r} {said} {where}")


def _check_shape(path, mine, data, initial):
    """Raises `DamagedRunError` unless every value of the variable has the one shape its metadata gives.

    The values are its `value` (one scalar series per element) or `stats`
    series: a variable re-created with another shape during the run writes
    other elements (or statistics in place of elements) from then on, which
    no single array of epochs can hold.
    """
    layouts = []  # (Series, fields, where), in the order they were written
    if initial is not None:
        one, cut = initial
        step = next(iter(cut.values()))[0][0]
        layouts += [(one, fields, f"at batch step {step}") for fields, _ in _layouts(cut)]
    by_epoch = [
        (steps[0], one, fields, _when(steps))
        for one in mine
        if one.kind in _VALUE_KINDS
        for fields, steps in _layouts(data[one.tag])
    ]
    layouts += [(one, fields, where) for _, one, fields, where in sorted(by_epoch, key=lambda x: x[0])]
    for one, fields, where in layouts:
        _check_fields(one, fields, where)
    if len({(one.kind, fields) for one, fields, _ in layouts}) > 1:
        described = ", ".join(f"{_describe(one, fields)} {where}" for one, fields, where in layouts)
        raise DamagedRunError(
            f"variable {path!r} changed shape during the run: {described}; its values "
            "cannot be aligned in one array (log the re-created variable to another log_dir)"
        )
    for one, fields, _ in layouts:
        shapes = {one.shape, *(shape for _, shape in one.shapes)}
        expected = {frozenset(metadata.fields(one.kind, shape)) for shape in shapes}
        if expected != {fields}:
            raise DamagedRunError(
                f"variable {path!r} has shape {_shapes(shapes)} in its metadata, but "
                f"{len(fields)} {'elements' if one.kind == metadata.VALUE else 'statistics'} "
                "are logged each epoch"
            )


def _layouts(columns):
    """`[(fields, steps)]`: the steps at which each set of a vector's fields was written, by first step."""
    fields = list(columns)
    steps = np.unique(np.concatenate([s for s, _ in columns.values()] or [np.zeros(0, np.int64)]))
    present = np.zeros((len(steps), len(fields)), bool)
    for i, (own, _) in enumerate(columns.values()):
        present[np.searchsorted(steps, own), i] = True
    rows, inverse = np.unique(present, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    layouts = [
        (frozenset(f for f, here in zip(fields, row) if here), steps[inverse == k])
        for k, row in enumerate(rows)
    ]
    return sorted(layouts, key=lambda layout: layout[1][0])


def _describe(one, fields):
    """How a layout of a variable's value reads: its shape, where the metadata knows it."""
    for _, shape in one.shapes:
        if frozenset(metadata.fields(one.kind, shape)) == fields:
            text = f"shape {shape}"
            return f"{text} (logged as statistics)" if one.kind == metadata.STATS else text
    return f"{len(fields)} elements"


def _diagnoses(steps, values):
    """`(steps, [{path: (status, cause)}])` of the diagnosis series, checked."""
    for step, value in zip(steps.tolist(), values):
        try:
            series.diagnosis_table(value)
        except ValueError as error:
            raise DamagedRunError(f"its diagnosis at epoch {step}: {error}") from None
    return steps, series.diagnoses(values)


def _warn_newer(newer, listing):
    """Warns once per run and unknown name about series left out and displays not applied."""
    for run in sorted(newer):
        for what in sorted(set(newer[run].values())):
            tags = sorted(tag for tag, w in newer[run].items() if w == what)
            warnings.warn(
                f"Run {run!r}: left out {len(tags)} series ({tags[0]!r}...) whose metadata "
                f"names {what}, which a newer loss-param-tracker writes; upgrade to read them.",
                NewerTrackerWarning,
                stacklevel=3,
            )
    problems = {
        (run, one.path): one.display_problem
        for run, tags in listing.items()
        for one in tags.values()
        if one.display_problem
    }
    for (run, path), problem in sorted(problems.items()):
        warnings.warn(
            f"Run {run!r}: {path!r} is shown as stored: {problem}.", NewerTrackerWarning, stacklevel=3
        )


def _warn_unknown_statuses(run, per_step):
    """Warns once per run and name about statuses and causes this version does not know.

    A newer tracker may write them: they are kept as they are, never a reason
    to skip the run.
    """
    unknown = set()
    for rows in per_step:
        for status, cause in rows.values():
            if status not in metadata.STATUSES:
                unknown.add(f"status {status!r}")
            if cause and cause not in metadata.CAUSES:
                unknown.add(f"cause {cause!r}")
    for name in sorted(unknown):
        warnings.warn(
            f"Run {run!r}: its diagnosis names the {name}, which this version of "
            "loss-param-tracker does not know (a newer version wrote it); it is kept as it is.",
            NewerTrackerWarning,
            stacklevel=4,
        )


def _set_statuses(variables, steps, per_step):
    by_step = dict(zip(steps.tolist(), per_step))
    for variable in variables.values():
        if variable.steps is None:
            continue
        rows = [by_step.get(s, {}).get(variable.path, ("", "")) for s in variable.steps.tolist()]
        variable.status = np.array([status for status, _ in rows], dtype=object)
        variable.cause = np.array([cause for _, cause in rows], dtype=object)


# Event files -------------------------------------------------------------


def _check_event_files(run_dir):
    """Returns what is missing from the end of the run's event files (`None` if nothing).

    TensorBoard's loader stops quietly at the first record it cannot read,
    as it must for a file still being written; the epochs after it would be
    missing without a word. A last record cut short (a crash, a full disk, a
    file being written) leaves the records before it readable: they are read,
    and the returned note says what was left out.

    Raises:
        DamagedRunError: When a record fails its checksum or a file cannot be opened.
    """
    notes = []
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if io_wrapper.IsSummaryEventsFile(path):
            notes.append(_check_event_file(path))
    return "; ".join(n for n in notes if n) or None


def _check_event_file(path):
    """Checks every whole record of an event file; returns a note when its end is cut short.

    Raises:
        DamagedRunError: When a record fails its checksum or the file cannot be opened.
    """
    name = os.path.basename(path)
    note = None
    try:
        # The records' lengths must lead exactly to the end of the file: the
        # record reader takes a file cut inside a record's header for one
        # that ends there.
        size = os.path.getsize(path)
        offset = records = 0
        with open(path, "rb") as file:
            while offset < size:
                file.seek(offset)
                header = file.read(RECORD_LENGTH.size + 4)
                length, crc = header[: RECORD_LENGTH.size], header[RECORD_LENGTH.size :]
                whole = len(header) == RECORD_LENGTH.size + 4
                if whole and struct.unpack("<I", crc)[0] != masked_crc32c(length):
                    # A length that fails its own checksum is damage, not a cut.
                    raise tb_tf.errors.DataLossError(None, None, f"the length of record {records} is damaged")
                end = offset + RECORD_FRAMING + RECORD_LENGTH.unpack(length)[0] if whole else size + 1
                if end > size:
                    note = (
                        f"event file {name} ends inside a record (at byte {offset} of {size}): cut "
                        "short by a crash or a full disk, or still being written; the records "
                        "before it are read"
                    )
                    break
                offset = end
                records += 1
        # Each whole record's checksums, with the reader TensorBoard's loader uses.
        iterator = event_file_loader._make_tf_record_iterator(path)  # noqa: SLF001
        for _ in zip(range(records), iterator):
            pass
    except tb_tf.errors.DataLossError as error:
        raise DamagedRunError(
            f"event file {name} has a damaged record (its checksum does not match)"
        ) from error
    except OSError as error:
        raise DamagedRunError(f"event file {name} cannot be read ({error.strerror or error})") from error
    except tb_tf.errors.OpError as error:
        raise DamagedRunError(f"event file {name} cannot be read ({error.message})") from error
    return note


# Text --------------------------------------------------------------------


def _reason(error):
    """One line that says why a run could not be read."""
    if isinstance(error, DamagedRunError):
        text = str(error)
    else:
        text = f"unexpected error while reading it: {type(error).__name__}: {error}"
    return " ".join(text.split())


def _when(steps):
    """`"at epochs 0-4, 7"`, the ranges of sorted steps (the first ones, where there are many)."""
    steps = [int(s) for s in steps]
    ranges, start = [], 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or steps[i] != steps[i - 1] + 1:
            first, last = steps[start], steps[i - 1]
            ranges.append(f"{first}" if first == last else f"{first}-{last}")
            start = i
    shown = ", ".join(ranges[:6]) + (", ..." if len(ranges) > 6 else "")
    return f"at epoch{'s' if len(steps) > 1 else ''} {shown}"


def _element(field):
    return int(field) if field.isdigit() else -1


def _shapes(shapes):
    return " and ".join(str(shape) for shape in sorted(shapes))
