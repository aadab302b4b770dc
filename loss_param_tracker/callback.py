"""The `LossParamTracker` callback: collects every epoch, and delegates.

Discovery (`discovery`), gradient capture and which process writes
(`capture` and its backend modules), snapshots and norms (`snapshot`), the
diagnosis (`diagnosis`), the summaries of each kind
(`tensorboard_plugin.loss_params.summary`) and the run's files (`writer`)
are separate units; this module wires them to Keras's callback hooks and
holds the evidence: what was seen of each variable, and when.
"""

import atexit
import contextlib
import dataclasses
import functools
import gc
import logging
import math
import operator
import os
import re
import sys
import warnings
import weakref
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Optional, Union

import keras
import numpy as np

from loss_param_tracker import capture as capture_lib
from loss_param_tracker import diagnosis as diagnosis_lib
from loss_param_tracker import discovery
from loss_param_tracker import writer as writer_lib
from loss_param_tracker.capture import GradientStats
from loss_param_tracker import snapshot as snapshot_lib
from loss_param_tracker.snapshot import Snapshot, static_shape
from tensorboard_plugin.loss_params import metadata, norms, summary
from tensorboard_plugin.loss_params.display import Display

logger = logging.getLogger("loss_param_tracker")

# On a long first epoch, the tracker looks once after this many training
# steps at the loss variables the optimizer is not handed, and says which
# nothing has moved so far: hours before the epoch's end.
EARLY_STEPS = 200
# A loss variable of at most this many elements goes into Keras's `logs`
# (one key per element): what a progress bar and a CSV file can show.
LOGS_MAX_ELEMENTS = 8
# How many times a fit warns that a loss variable's diagnosis changed (a
# curvature whose sign flips as the model moves), so that the console's last
# word on it is its diagnosis now, without a warning every epoch.
_REPLACED_WARNINGS = 3
# Warnings point at the first frame outside these packages: the user's line
# that called `fit`.
_LIBRARY_FRAMES = ("keras", "tensorflow", "jax", "torch", "loss_param_tracker", "contextlib", "threading")


class LossParamWarning(UserWarning):
    """A loss variable does not train as it should."""


# The trackers with an epoch whose statuses wait for the next epoch's start:
# a fit that an exception ends (Ctrl-C, a callback that raises, a crash)
# has no on_train_end, and its last finished epoch is settled at exit.
_UNSETTLED = weakref.WeakSet()


@atexit.register
def _settle_at_exit():
    """Writes the last finished epoch's statuses of every fit that ended without `on_train_end`."""
    for tracker in list(_UNSETTLED):
        try:
            if tracker._pending is not None:
                tracker._settle()
                tracker._writer.close()
        except Exception:  # noqa: BLE001 - at exit, nothing is left to tell
            logger.debug("LossParamTracker: the last epoch's statuses could not be written at exit", exc_info=True)


def _optimizer_moved_no_weight(records):
    """Whether the optimizer is handed the model's weights and moved none of them: every one that it
    is handed is `not_updated` with the cause `optimizer_no_effect` (a learning rate of 0)."""
    handed = [
        r for r in records
        if r.tracked.role == metadata.ROLE_MODEL and r.observation is not None and r.observation.seen_by_optimizer
        and r.observation.trainable
    ]
    return bool(handed) and all(
        r.diagnosis is not None and r.diagnosis.cause == metadata.OPTIMIZER_NO_EFFECT for r in handed
    )


def _collector_paused(hook):
    """Runs `hook` with Python's cyclic garbage collector paused, as `timeit` does; then as it was.

    An epoch hook makes a few objects per variable (a record, a snapshot)
    and frees most of them on return, by reference counting. Collections in
    between find nothing to free: they only promote the hook's objects
    toward the oldest generation, and in a process holding a framework each
    full collection of it takes a few hundred milliseconds. A thousand
    weights cost a third less an epoch this way. The collector runs again
    as soon as the hook returns, and is left alone where it was off.
    """

    @functools.wraps(hook)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return hook(*args, **kwargs)
        gc.disable()
        try:
            return hook(*args, **kwargs)
        finally:
            gc.enable()

    return paused


@dataclasses.dataclass
class Tracked:
    """A variable the tracker logs: a loss variable, a model weight, or a network's weight.

    Attributes:
        path: Its path, the tag prefix of its series.
        variable: The variable.
        role: `metadata.ROLE_LOSS` or `ROLE_MODEL`.
        owner: What it was found on (a loss class or function name), for warnings.
        fix: The call that fixes it when the optimizer is not handed it,
            where the generic fix does not apply.
        network: For a weight of a network held by the loss, the network's path.
        display: How a loss variable is shown (`LossParamTracker(display=...)`),
            or `None` for as stored.
        layer_index: For a model weight, the place of its layer in the model
            (`discovery.layer_places`).
    """

    path: str
    variable: object
    role: int
    owner: str = None
    fix: str = None
    network: str = None
    display: Display = None
    layer_index: int = None
    key: int = dataclasses.field(init=False)
    shape: tuple = dataclasses.field(init=False)  # static, -1 for a dimension unknown until run time
    dtype: str = dataclasses.field(init=False)

    def __post_init__(self):
        self.key = discovery.variable_key(self.variable)
        # A network held by the loss stands for its weights: no shape or dtype of its own.
        whole = isinstance(self.variable, keras.layers.Layer)
        self.shape = () if whole else static_shape(self.variable)
        self.dtype = "float32" if whole else keras.backend.standardize_dtype(self.variable.dtype)

    @property
    def trainable(self):
        return bool(self.variable.trainable)


class Record(NamedTuple):
    """What one epoch showed of a tracked variable, and its diagnosis.

    `value` is kept for loss variables only; a model weight keeps its norm and
    update ratio, so no copy of the model outlives `_collect`.
    """

    tracked: Tracked
    grads: GradientStats
    diagnosis: diagnosis_lib.Diagnosis
    observation: diagnosis_lib.Observation = None
    value: np.ndarray = None
    norm: float = math.nan
    start_norm: float = math.nan
    update_ratio: float = math.nan

    @property
    def status(self):
        """The status, or `None` where nothing was observed yet that gives one."""
        return self.diagnosis.status if self.diagnosis else None


class LossParamTracker(keras.callbacks.Callback):
    """Logs the loss's trainable variables next to the model's weights, and diagnoses them.

    In Keras 3, `model.fit` only optimizes `model.trainable_variables`: a
    variable held by a `keras.losses.Loss` (a learned weight, a temperature,
    per-task log-variances) silently never trains. This callback finds the
    loss's variables and, every epoch, writes TF summaries under
    `log_dir/train` of:

    - each loss variable's value (the whole tensor up to 64 elements, else
      mean/std/min/max/L2 and a histogram) and its gradient norm (mean and max
      over the epoch's real training steps);
    - every model weight's L2 norm, gradient norm and update/weight ratio;
    - the global gradient norm and the status of every variable.

    Statuses (`tracker.diagnosis`, `{path: status}` for the last epoch; the
    names, meanings and fixes are `loss_param_tracker.STATUSES`, the rows of
    `tensorboard_plugin.loss_params.metadata.STATUS_TABLE`), only from what
    was observed: a variable seen to move at any
    time, by anything (the optimizer, a second optimizer, a callback at an
    epoch's begin or end, an assign in the loss), is never `not_updated`,
    and each status comes with the fix for its cause. Before the first step
    the tracker only says, at INFO level, which loss variables the optimizer
    is not handed. An epoch's statuses are settled, warned about (once per
    variable and fit) and written once every callback's `on_epoch_end` has
    run, at the next epoch's start or at the end of `fit`; on a first epoch
    longer than `EARLY_STEPS` steps, a loss variable that nothing has moved
    by then is warned about at that step. A variable `make_trainable`
    attached is checked on the first steps: when the objective has no
    gradient for it, the fix did not reach the code that reads it, and the
    warning says so.

    Gradients are taken inside the real training steps (the default
    `train_step` or a custom one that calls `compute_loss` or the compiled
    loss object), unscaled under mixed precision, with no second forward pass
    and no retracing per epoch. Training itself is unchanged, and nothing the
    tracker fails at stops it: a part that cannot work steps aside and says
    so. It works on every Keras 3 backend (TensorFlow, JAX, PyTorch), and
    writes its event files without TensorFlow where TensorFlow is not
    installed. Under `MirroredStrategy` and `MultiWorkerMirroredStrategy` the
    norms are those of the all-reduced gradients, and only the chief writes;
    under other `tf.distribute` strategies values are logged and gradients
    are not. A variable a loss creates on its first call is found after the
    first step.

    Example:

    ```python
    tracker = LossParamTracker(log_dir="logs/run1")
    model.compile(optimizer="adam", loss=GaussianNLL())
    model.fit(x, y, epochs=20, callbacks=[tracker])
    tracker.diagnosis  # {"loss/GaussianNLL/log_var": "not_updated", ...}
    ```

    Then `tensorboard --logdir logs`, tab "Loss Params", or
    `python -m loss_param_tracker report logs`.

    Args:
        log_dir: Directory of the run; summaries go to `log_dir/train`, as
            with `keras.callbacks.TensorBoard`. Defaults to `"logs"`.
        update_freq: `"epoch"`, `"batch"` or an integer N. With `"batch"` or
            N, loss variables' values and gradient norms are also written
            every N training batches (step = global batch index, tags with a
            `batch_` suffix); this reads the device each time, which slows
            training. Defaults to `"epoch"`.
        variables: Extra variables to track as loss variables, for those
            discovery cannot see (closure variables of a plain-function
            loss). Defaults to `None`.
        display: How to show loss variables stored as a reparametrised
            latent: `{name: how}`, `name` a variable's path or its last
            components (`"logit_scale"` matches `loss/CLIPLoss/logit_scale`),
            `how` one of `"exp"`, `"softplus"`, `"sigmoid"` or a
            `loss_param_tracker.Display` (with scales, an offset and a
            label). Recorded with the summaries: the tab and `load()` show
            the value users reason about (CLIP's scale, 14.3, not its log,
            2.66), the stored one a toggle away. Training is unchanged.
            Defaults to `None`.
        add_to_logs: Whether to add, at each epoch's end, each loss variable
            of at most `LOGS_MAX_ELEMENTS` elements to Keras's `logs`, as
            Python floats of its displayed value (NaN where not finite), as
            `LearningRateScheduler` adds `learning_rate`: `history.history`,
            the progress bar, `CSVLogger`, `EarlyStopping(monitor=...)`,
            `keras.callbacks.TensorBoard` and experiment trackers' callbacks
            get them. Keys are the variable's path without `loss/`, the
            display's label in place of its name, `/i` per element
            (`"GaussianNLL/log_var"`, `"CLIPLoss/scale"`,
            `"Uncertainty/log_vars/0"`; other characters than letters,
            digits and `_ . / -` become `_`): a `/` that Keras's metric
            names do not have. Keras calls callbacks in list order (the progress bar
            and `History` last): list the tracker before the callbacks that
            should see them. Defaults to `True`.

    Raises:
        ValueError: When `update_freq` is not `"epoch"`, `"batch"` or a
            positive integer, `log_dir` cannot be written, or `display` is
            not a dict of names to displays.
        TypeError: When `variables` holds something that is not a variable.
    """

    def __init__(
        self,
        log_dir: Union[str, os.PathLike] = "logs",
        update_freq: Union[str, int] = "epoch",
        variables: Optional[Iterable] = None,
        display: Optional[Mapping[str, Union[str, Display]]] = None,
        add_to_logs: bool = True,
    ):
        super().__init__()
        if update_freq == "batch":
            update_freq = 1
        valid_int = isinstance(update_freq, int) and not isinstance(update_freq, bool)
        if update_freq != "epoch" and not (valid_int and update_freq > 0):
            raise ValueError(
                f"Received: update_freq={update_freq!r}. Expected 'epoch', 'batch' "
                "or a positive integer (write every N batches)."
            )
        if not isinstance(log_dir, (str, os.PathLike)):
            raise ValueError(
                f"Received: log_dir={log_dir!r} ({type(log_dir).__name__}). "
                "Expected a directory path, e.g. 'logs/run1'."
            )
        self.log_dir = os.fspath(log_dir)
        self._writer = writer_lib.RunWriter(self.log_dir)
        self.update_freq = update_freq
        self._extra_variables = discovery.check_variables(variables)
        self.display = _check_display(display)
        if not isinstance(add_to_logs, bool):
            raise ValueError(f"Received: add_to_logs={add_to_logs!r}. Expected True or False.")
        self.add_to_logs = add_to_logs
        self.diagnosis: dict[str, str] = {}
        self._last_step = None
        # A run per model this tracker trains: [a weak reference to the model, its RunWriter, its last
        # epoch's step and batch step].
        self._runs = []
        self._batch_step = 0
        self._capture = None
        if update_freq != "epoch":
            # Only then: a batch hook makes Keras wait for every step and
            # convert its logs, which costs a plain fit about a third.
            self.on_train_batch_end = self._on_train_batch_end

    # Hooks ---------------------------------------------------------------

    def set_model(self, model):
        # Keras 3 only: a tf_keras (Keras 2) fit is told so before it starts.
        discovery.check_model(model, "LossParamTracker")
        super().set_model(model)

    @_collector_paused
    def on_train_begin(self, logs=None):
        if getattr(self, "_pending", None) is not None:  # the last fit ended by an exception
            with self._survive("settling the interrupted fit's last epoch"):
                self._settle()
        # Allow instances to be re-used across fit() calls: each fit warns
        # and reports its failures afresh.
        self._warned = set()
        self._warned_loss = {}  # {path: (epoch, Diagnosis)} of a loss variable's last warning
        self._replaced = {}  # {path: how many times a loss variable's warning was replaced by another}
        self._failed = set()
        self._display_checked = False
        self._pick_run()
        self._loss_tracked = []
        # Loss variables made on the loss's first call (a layer's build(), the loss's own code),
        # which make_trainable before fit may not find.
        self._created_keys = set()
        self._networks = {}  # path -> Network; their weights are in _network_tracked
        self._network_tracked = []
        self._model_tracked = None
        self._epoch_offset = None
        self._batch_sums = None
        self._start = {}  # {key: Snapshot} at the epoch's start
        # {key: Snapshot} at the last epoch's end of the variables the optimizer
        # is handed and the frozen ones: the next epoch's start (`_epoch_start`).
        self._ends = {}
        self._steps = 0  # training steps of the current epoch
        self._loss_finite = None  # whether the epoch's logged loss is finite; None: not logged
        self._epochs = 0  # epochs begun in this fit
        self._last = {}  # {key: Snapshot}: the last look at each variable the optimizer is not handed
        self._moved = set()  # keys seen to move in this fit, by anything
        self._moved_now = set()  # keys seen to move since the last epoch's end
        self._pending = None  # (step, records) of an epoch whose statuses wait for every on_epoch_end
        self._reader = None  # reads the small variables together (snapshot.BatchReader)
        # `_registered()` as walked in this hook, or for `on_epoch_begin`, which
        # settles the last epoch, at that epoch's end. Hooks set it to None.
        self._registered_keys = None
        self._state_keys = None  # the keys of the model's variables, where `_constant_in_step` asks
        self._variable_keys = {}  # {id: (variable, discovery.variable_key)} of the model's variables
        # One writer per run, as keras.callbacks.TensorBoard: under several
        # workers the chief; the others diagnose alike and write nothing.
        self._writes = capture_lib.writes_summaries(self.model)
        found = self._discover()
        self._created_keys |= found.built_on_call
        self._track_loss_variables(found.variables)
        self._track_networks(found.networks)
        self._capture = capture_lib.attach(
            self.model,
            found.all_variables(),
            found.losses,
            lambda: self._discover().all_variables(),
            found.places(),
        )
        if self._writes:
            self._writer.make_dir()
        with self._survive("writing summaries"):
            self._write_initial()
        if not self._loss_tracked and not self._networks:
            logger.info(
                "LossParamTracker: the compiled loss has no variables; logging the "
                "model's weights only. Pass variables=[...] for a variable the walk "
                "cannot reach (held by a library's object, or read through a module the "
                "loss's code imports)."
            )
        with self._survive("looking at the loss variables"):
            self._look()
            self._say_unregistered()

    def _pick_run(self):
        """Logs the model's fits in its run: another model than the last's gets a run of its own.

        One tracker passed to the fits of several models (a loop over
        settings with one callback list) logged them all in one run, where a
        variable of the same path in two models was one series: the last
        model's status hid the first's.
        """
        if self._runs:
            self._runs[-1][2:] = [self._last_step, self._batch_step]
        run = next((run for run in self._runs if run[0]() is self.model), None)
        if run is None:
            writer = self._writer
            if self._runs:
                train_dir = os.path.join(self.log_dir, f"model_{len(self._runs) + 1}")
                try:
                    writer = writer_lib.RunWriter(train_dir)
                except ValueError as error:  # never stops the fit: the one run it has, as before
                    logger.warning("LossParamTracker: %s; this fit is logged in %s.", error, writer.train_dir)
                else:
                    logger.warning(
                        "LossParamTracker: this fit trains another model than this tracker's last "
                        "one; it is logged in a run of its own, %s, so that their variables are not "
                        "read as one.", writer.train_dir,
                    )
            run = [weakref.ref(self.model), writer, None, 0]
        else:
            self._runs.remove(run)
        self._runs.append(run)  # the current one last
        self._writer, self._last_step, self._batch_step = run[1:]

    @_collector_paused
    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch_offset is None:
            earlier = None
            if self._last_step is None and epoch == 0:
                # This tracker's first fit, from epoch 0: another's epochs may
                # be there. (A fit from a later epoch, `initial_epoch` or a
                # restored backup, writes its epochs again, as numbered.)
                with self._survive("reading the log directory's last epoch"):
                    earlier = self._writer.last_epoch()
            last = self._last_step if earlier is None else earlier
            behind = -1 if last is None else last - epoch
            self._epoch_offset = max(0, behind + 1)
            if earlier is not None and self._epoch_offset:
                logger.warning(
                    "LossParamTracker: %s already holds epochs 0 to %d of an earlier fit; this "
                    "fit's epoch %d is logged as %d, after them, so that neither is read mixed "
                    "with the other. Give each run its own log_dir to keep them apart.",
                    self._writer.train_dir, earlier, epoch, epoch + self._epoch_offset,
                )
        self._batch_sums = None
        self._steps = 0
        self._epochs += 1
        with self._survive("starting the epoch"):
            if self._capture is not None:
                self._capture.reset()
            self._start = self._epoch_start()
        self._settle(self._start)

    def on_train_batch_begin(self, batch, logs=None):
        # Counting costs no device read: Keras keeps dispatching steps
        # asynchronously, which only batch *end* hooks prevent.
        self._steps += 1
        if self._steps == EARLY_STEPS + 1 and self._epochs == 1:
            self._registered_keys = None
            with self._survive("looking at the loss variables"):
                self._look_early()

    def _on_train_batch_end(self, batch, logs=None):
        self._batch_step += 1
        if self._batch_step % self.update_freq == 0:
            with self._survive("writing batch summaries"):
                self._write_batch(self._batch_step)

    @_collector_paused
    def on_epoch_end(self, epoch, logs=None):
        self._registered_keys = None
        step = epoch + self._epoch_offset
        self._last_step = step
        records = None
        self._loss_finite = _finite(logs, "loss")
        with self._capture_held():
            with self._survive("diagnosing the epoch"):
                self._discover_created()
                self._warn_unmatched_display()
                records = self._collect()
                self._warn_capture_problems(trained=bool(logs))
            if records is None:
                return
            self._pending = (step, records)
            _UNSETTLED.add(self)
            if self.add_to_logs and logs is not None:
                with self._survive("adding the loss variables to logs"):
                    self._add_to_logs(records, logs)
            with self._survive("writing summaries"):
                # A network's weights are logged one by one, and diagnosed as one.
                self._write_epoch(step, records + self._network_records(records))

    @_collector_paused
    def on_train_end(self, logs=None):
        self._registered_keys = None
        last = self._pending
        self._settle()
        with self._survive("comparing the values the fit leaves with the last epoch's"):
            self._say_set_after_last_epoch(last)
        if self._capture is not None:
            with self._survive("removing the gradient capture"):
                self._capture.release()
            self._capture = None
        with self._survive("closing the summary writer"):
            self._writer.close()

    # Collection --------------------------------------------------------

    def _discover(self):
        return discovery.discover(self.model, self._extra_variables)

    def _track_loss_variables(self, found):
        known = {t.key for t in self._loss_tracked}
        self._loss_tracked += [
            Tracked(
                v.path, v.variable, metadata.ROLE_LOSS, v.owner_name, _fix(v),
                display=self._display_of(v.path),
            )
            for v in found
            if discovery.variable_key(v.variable) not in known
        ]

    def _display_of(self, path):
        """The display a loss variable's path matches (the longest name wins), or `None`."""
        names = [name for name in self.display if _names(name, path)]
        if not names:
            return None
        return self.display[max(names, key=len)].named(path.rsplit("/", 1)[-1])

    def _track_networks(self, networks):
        for network in networks:
            if network.path in self._networks:
                continue
            self._networks[network.path] = network
            self._network_tracked += [
                Tracked(path, weight, metadata.ROLE_MODEL, network.owner_name, network=network.path)
                for path, weight in network.weights
            ]

    def _discover_created(self):
        """Tracks the variables a loss created on its first call, from this epoch on."""
        if self._capture is None or not self._capture.created_variables():
            return
        before = len(self._loss_tracked)
        self._track_loss_variables(self._discover().variables)
        created = {t.key for t in self._loss_tracked[before:]}
        self._created_keys |= created
        if self._model_tracked is not None:
            self._model_tracked = [t for t in self._model_tracked if t.key not in created]

    def _all_tracked(self):
        if self._model_tracked is None and self.model.weights:
            exclude = {t.key for t in self._loss_tracked + self._network_tracked}
            weights = discovery.model_weight_paths(self.model, exclude)
            places = discovery.layer_places([path for path, _ in weights])
            self._model_tracked = [
                Tracked(path, variable, metadata.ROLE_MODEL, layer_index=places[path])
                for path, variable in weights
            ]
        return self._loss_tracked + self._network_tracked + (self._model_tracked or [])

    def _capture_held(self):
        """A context in which the capture's accumulators are read once (`Capture.held`): a hook's."""
        return contextlib.nullcontext() if self._capture is None else self._capture.held()

    def _gradient_stats(self, tracked):
        if self._capture is None:
            return {t.key: GradientStats(steps=0) for t in tracked}
        return self._capture.read([t.key for t in tracked])

    def _collect(self):
        """Returns a `Record` for every tracked variable; a model weight is read once, in chunks.

        A variable that cannot be read or summarised is named once and left
        out: it never costs the others their records.
        """
        tracked = self._all_tracked()
        grads = self._gradient_stats(tracked)
        applied = self._applied_steps()
        registered = self._registered()
        attached = {discovery.variable_key(v) for v in discovery.attached_variables(self.model)}
        ends, changes = self._snapshots(tracked, since=self._start)
        self._ends = {t.key: ends[t.key] for t in tracked if t.key in ends and (t.key in registered or not t.trainable)}
        records = self._each(
            [t for t in tracked if t.key in ends],
            lambda t: self._record(
                t, ends[t.key], changes.get(t.key), grads[t.key], t.key in registered, t.key in attached, applied
            ),
        )
        self._moved_now = set()
        return records

    def _applied_steps(self):
        """The epoch's training steps that the optimizer applied: those it skipped moved nothing.

        A loss-scaling optimizer skips a step whose scaled gradients
        overflowed (and lowers the scale): an epoch of skipped steps is no
        evidence that a variable does not train, so its variables get no
        status, and the console says why.
        """
        if self._capture is None or not self._steps:
            return self._steps
        counts = self._capture.read_global()[0]
        if counts.captured or not counts.skipped:  # `_steps` counts batch hooks: steps_per_execution at a time
            return self._steps
        if "all skipped" not in self._warned:
            self._warned.add("all skipped")
            logger.warning(
                "LossParamTracker: the optimizer skipped all %d training steps of an epoch: their "
                "loss-scaled gradients overflowed, and a LossScaleOptimizer then lowers the scale and "
                "tries again. Nothing trained, so no variable gets a status for the epoch. If it "
                "lasts, scale the targets or the loss down.",
                counts.skipped,
            )
        return 0

    def _record(self, t, end, change, stats, registered, attached, applied):
        """`t`'s `Record` from its `end` snapshot and its `change` since the epoch's start (`None`: to compute).

        `applied`: the epoch's training steps the optimizer applied (`_applied_steps`).
        """
        start = self._start.get(t.key)
        if change is None and start is not None:
            # A loss variable logs its value, not an update ratio (a growing one has none).
            ratio = math.nan if t.role == metadata.ROLE_LOSS else start.update_ratio(end)
            change = snapshot_lib.Change(start.changed(end), ratio)
        changed = None if change is None else change.changed
        trainable = t.trainable
        if not registered and trainable:
            looked = t.key in self._last
            self._note_look(t.key, end)
            if t.key in self._moved_now or changed:
                changed = True
            elif start is None and not looked:
                changed = None  # first seen now (created by the loss's first call): unknown
        elif changed and not trainable and t.role == metadata.ROLE_LOSS:
            # A frozen one that a callback set: JAX's compiled step may hold its earlier value for
            # the rest of the fit (`_constant_in_step`), in the epochs where it does not move too.
            self._moved.add(t.key)
        # Keras multiplies the loss by a loss weight: descent on it has no minimum.
        loss_weight = discovery.is_loss_weight(t.path)
        observation = diagnosis_lib.Observation(
            trainable=trainable,
            seen_by_optimizer=stats.seen_by_optimizer if stats.steps else registered,
            value_finite=end.finite,
            value_changed=changed,
            steps=applied,
            has_gradient=stats.has_gradient,
            grad_norm_mean=stats.mean,
            grad_norm_max=stats.max,
            moved_before=t.key in self._moved,
            attached=attached,
            read_by_step=stats.read_by_step,
            unbounded=stats.unbounded or loss_weight,
            no_minimum=stats.descends_without_minimum or loss_weight,
            linear=stats.linear,
            concave=stats.concave,
            constant_in_step=self._constant_in_step(t),
            assignment_dropped=t.role == metadata.ROLE_LOSS and self._capture is not None
            and self._capture.assignment_dropped(t.key),
            constrained=getattr(t.variable, "constraint", None) is not None,
            loss_finite=self._loss_finite if t.role == metadata.ROLE_LOSS else None,
        )
        diagnosis = diagnosis_lib.diagnose(observation)
        if t.role == metadata.ROLE_LOSS:
            return Record(t, stats, diagnosis, observation, value=_value(t, end))
        if start is None:
            return Record(t, stats, diagnosis, observation, norm=end.norm)
        return Record(
            t,
            stats,
            diagnosis,
            observation,
            norm=end.norm,
            start_norm=start.norm,
            update_ratio=change.update_ratio,
        )

    def _network_records(self, records):
        """One `Record` per network, from its weights' records: one status, norms of all."""
        members = {}
        for r in records:
            if r.tracked.network is not None:
                members.setdefault(r.tracked.network, []).append(r)
        result = []
        for path, network in self._networks.items():
            rs = members.get(path, [])
            if not rs:
                continue
            # Held by the loss: the epoch's logged loss is the network's to answer for too.
            observation = diagnosis_lib.combine([r.observation for r in rs])._replace(loss_finite=self._loss_finite)
            tracked = Tracked(path, network.layer, metadata.ROLE_LOSS, network.owner_name)
            stats = GradientStats(
                steps=observation.steps,
                mean=observation.grad_norm_mean,
                max=observation.grad_norm_max,
            )
            combined = _combined_norms(rs)
            result.append(
                Record(tracked, stats, diagnosis_lib.diagnose(observation), observation, value=combined)
            )
        return result

    def _add_to_logs(self, records, logs):
        """Adds the small loss variables' displayed values to the epoch's `logs`, as Python floats."""
        for key, value in _log_entries(records):
            if key in logs and ("logs", key) not in self._warned:
                self._warned.add(("logs", key))
                logger.warning(
                    "LossParamTracker: logs already hold %r (a metric?); the loss variable of "
                    "that name is left out of logs.",
                    key,
                )
            elif key not in logs:
                logs[key] = value

    # Writing -----------------------------------------------------------

    def _write_epoch(self, step, records):
        weights = [r for r in records if r.tracked.role == metadata.ROLE_MODEL]
        rows = [_norms_row(r) for r in weights]
        values, logged = self._weight_values(weights, rows)
        others = [r for r in records if r.tracked.role != metadata.ROLE_MODEL]
        values += [value for each in self._each(others, self._epoch_values, operator.attrgetter("tracked")) for value in each]
        whole = [i for i in logged if weights[i].tracked.network is None]
        if whole:
            # The whole model's norms, for the dashboard's model panel: one
            # series to read instead of one per weight.
            combined = norms.combine_weight_norms([rows[i] for i in whole], [weights[i].start_norm for i in whole])
            values += summary.weight_norms(metadata.RUN_MODEL, combined, role=metadata.ROLE_RUN)
        if self._capture is not None:
            counts, mean, maximum = self._capture.read_global()
            values += summary.grad_norm(metadata.RUN_GRAD_NORM, mean, maximum, role=metadata.ROLE_RUN)
            values += summary.steps(counts.captured, counts.skipped)
        self._write(values, step)

    def _weight_values(self, records, rows):
        """`(values, indices of the records logged)` of model weights' norms (and of a network's, one by one).

        `rows`: each record's `_norms_row`. All at once; one by one after a
        failure, leaving out what fails.
        """
        if not records:
            return [], []
        try:
            block = summary.weight_norms_block(
                [(r.tracked.path, r.tracked.shape, r.tracked.dtype, r.tracked.layer_index) for r in records], rows
            )
            return [block], range(len(records))
        except Exception:  # noqa: BLE001 - again one by one, to lose only what fails
            each = self._each(
                range(len(records)), lambda i: (i, self._epoch_values(records[i])), lambda i: records[i].tracked
            )
            return [value for _, values in each for value in values], [i for i, _ in each]

    def _epoch_values(self, r):
        t = r.tracked
        if t.path in self._networks:
            return summary.weight_norms(t.path, r.value, role=metadata.ROLE_LOSS)
        if t.role == metadata.ROLE_LOSS:
            return _loss_variable_values(t, r.value, (r.grads.mean, r.grads.max))
        return summary.weight_norms(t.path, _norms_row(r), shape=t.shape, dtype=t.dtype, layer_index=t.layer_index)

    def _write_diagnosis(self, step, records):
        rows = [(r.tracked.path, r.diagnosis.status, r.diagnosis.cause) for r in records if r.diagnosis]
        self._write(summary.diagnosis(rows), step)

    def _write_initial(self):
        """Writes the loss variables' values before this fit trains them, as a batch step.

        The step is the global batch index where the fit starts (0 for the
        first), so `load()` and the report can show the value before training.
        """
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            self._batch_step = max(self._batch_step, int(snapshot_lib.host_value(optimizer.iterations)))
        values = []
        for t in self._loss_tracked:
            with self._survive_variable(t):
                values += _loss_variable_values(t, snapshot_lib.host_value(t.variable), None, metadata.BATCH)
        if values:
            self._write(values, self._batch_step)

    def _write_batch(self, step):
        """Writes loss variables' values and the gradient norms since the last batch write."""
        self.model  # noqa: B018 - on JAX, Keras's `model` property brings the step's state back
        grads = self._gradient_stats(self._loss_tracked)
        previous, self._batch_sums = self._batch_sums or {}, {
            key: (s.steps, 0.0 if math.isnan(s.mean) else s.mean * s.steps) for key, s in grads.items()
        }
        values = []
        for t in self._loss_tracked:
            steps, total = self._batch_sums[t.key]
            before_steps, before_total = previous.get(t.key, (0, 0.0))
            count = steps - before_steps
            stats = grads[t.key]
            mean = (total - before_total) / count if count > 0 and stats.has_gradient else math.nan
            with self._survive_variable(t):
                value = snapshot_lib.host_value(t.variable)
                values += _loss_variable_values(t, value, (mean, stats.max), metadata.BATCH)
        self._write(values, step)

    def _write(self, values, step):
        if self._writes:
            self._writer.write(values, step)

    # Console -----------------------------------------------------------

    def _say_unregistered(self):
        """Says, at INFO level and before any step, which loss variables the optimizer is not handed.

        That is a fact; whether they train is not known yet: something else
        may move them (a second optimizer, a callback, an assign in the loss).
        """
        registered = self._registered()
        for t in self._loss_tracked:
            if t.trainable and t.key not in registered:
                logger.info(
                    "LossParamTracker: loss variable '%s' is not handed to model.optimizer; "
                    "the tracker will check whether anything updates it.",
                    t.path,
                )

    # Evidence ------------------------------------------------------------

    def _registered(self):
        """The keys of `model.trainable_variables`, walked once a hook (a thousand layers take 5 ms)."""
        if self._registered_keys is None:
            keys, registered = self._variable_keys, set()
            for v in self.model.trainable_variables:
                if id(v) not in keys:
                    keys[id(v)] = (v, discovery.variable_key(v))
                registered.add(keys[id(v)][1])
            self._registered_keys = registered
        return self._registered_keys

    def _constant_in_step(self, t):
        """Whether JAX's compiled step holds `t` as a constant: a loss variable outside the model's state.

        Keras threads the model's variables through the compiled step; any
        other it reads as the value it had when the step was traced, so a
        callback's assign never reaches training (without `jit_compile`, the
        step reads it anew).
        """
        model = self.model
        if t.role != metadata.ROLE_LOSS or keras.backend.backend() != "jax" or self._capture is None:
            return False
        if model.run_eagerly or not model.jit_compile:
            return False
        if self._state_keys is None:
            self._state_keys = {discovery.variable_key(v) for v in model.variables}
        if t.key in self._state_keys:
            return False
        # What the step holds, against what the variable holds now: a value
        # assigned before the step was traced is the one it trains with.
        traced = self._capture.traced_value(t.key)
        return traced is not None and not np.array_equal(traced, snapshot_lib.host_value(t.variable))

    def _unregistered(self):
        """The trainable variables the optimizer is not handed (a frozen one's movement changes no status)."""
        registered = self._registered()
        return [t for t in self._all_tracked() if t.trainable and t.key not in registered]

    def _snapshots(self, tracked, since=None):
        """`{key: Snapshot}` of `tracked`: the small variables read together, the others alone.

        A variable that cannot be read is named once and left out.

        Returns:
            `(snapshots, {key: snapshot.Change})`: with the changes since
            `since` (`{key: Snapshot}` taken earlier) that the reads
            computed in bulk; the others are `Snapshot.changed` and
            `update_ratio`'s to compute.
        """
        if self._reader is None:
            self._reader = snapshot_lib.BatchReader(capture_lib.flat_reader)
        earlier = {i: since[t.key] for i, t in enumerate(tracked) if t.key in since} if since else {}
        together, changes = self._reader.snapshots([t.variable for t in tracked], earlier)
        snapshots = {}
        for index, t in enumerate(tracked):
            if index in together:
                snapshots[t.key] = together[index]
                continue
            with self._survive_variable(t):
                snapshots[t.key] = Snapshot.of(t.variable)
        return snapshots, {tracked[index].key: change for index, change in changes.items()}

    def _epoch_start(self):
        """`{key: Snapshot}` of every tracked variable at the epoch's start.

        A variable the optimizer is handed, or a frozen one, starts where the
        last epoch's end read it: one read an epoch instead of two (a
        thousand weights cost 15 ms a read on TensorFlow). Whatever moves it
        in between (a later callback) counts in this epoch's change and
        update ratio. The trainable variables the optimizer is not handed
        are read now: whether they move, and when, is what the diagnosis is
        about (`_look`).
        """
        ends, self._ends = self._ends, {}
        tracked = self._all_tracked()
        start, _ = self._snapshots([t for t in tracked if t.key not in ends])
        start.update((t.key, ends[t.key]) for t in tracked if t.key in ends)
        return start

    def _note_look(self, key, snapshot):
        """Keeps `snapshot` as the last look at a variable; notes whether it moved since the one before."""
        before = self._last.get(key)
        if before is not None and before.changed(snapshot):
            self._moved.add(key)
            self._moved_now.add(key)
        self._last[key] = snapshot

    def _look(self, taken=None):
        """Looks at every variable the optimizer is not handed, noting which moved since the last look.

        `taken`: `{key: Snapshot}` taken just now (the epoch's start), used
        instead of reading those variables again. (On JAX, reading
        `self.model` brings the step's state back first.)
        """
        taken = taken or {}
        unregistered = self._unregistered()
        snapshots, _ = self._snapshots([t for t in unregistered if t.key not in taken])
        for t in unregistered:
            snapshot = taken.get(t.key) or snapshots.get(t.key)
            if snapshot is not None:
                self._note_look(t.key, snapshot)
        return unregistered

    def _look_early(self):
        """Warns about the loss variables that nothing moved in the first `EARLY_STEPS` steps.

        The observation, not yet the status: a callback may still move them at
        the epoch's end.
        """
        unregistered = {t.key: t for t in self._look()}
        steps = EARLY_STEPS * (getattr(self.model, "steps_per_execution", 1) or 1)
        looked = [t for t in self._loss_tracked if t.key in unregistered and t.trainable]
        grads = self._gradient_stats(looked)
        for t in looked:
            stats = grads[t.key]
            # A weight of a loss term is not to be trained by descent, nor
            # plainly one the objective curves down in: its status, with
            # what to check, comes at the epoch's end.
            if t.key in self._moved or not stats.has_gradient or stats.unbounded or stats.concave:
                continue
            self._warn_text(
                t.path,
                f"Loss variable '{t.path}'{_on(t.owner)}: after {steps} training steps "
                "nothing has changed its value, though the objective has a gradient for it and "
                "model.optimizer is not handed it. Unless something moves it at the epoch's end "
                "(a callback), it does not train; the status comes at the epoch's end. "
                f"If it is meant to train: {t.fix or metadata.STATUS[metadata.NOT_UPDATED].fix}",
            )

    def _settle(self, taken=None):
        """Diagnoses the pending epoch for good, warns, and writes its statuses.

        Runs once every callback's `on_epoch_end` has run (at the next
        epoch's start, or the end of fit), so that a variable a callback
        moves at the end of an epoch is seen to move in that epoch.
        `taken`: the snapshots of the next epoch's start, if taken.
        """
        if self._pending is None:
            return
        step, records = self._pending
        self._pending = None
        _UNSETTLED.discard(self)
        with self._survive("diagnosing the epoch"):
            self._look(taken)
            records = [self._recheck(r) for r in records]
            records += self._network_records(records)
            diagnosed = [r for r in records if r.tracked.network is None]
            self.diagnosis = {r.tracked.path: r.status for r in diagnosed if r.diagnosis}
            self._warn(diagnosed, step)
            self._say_fix_reached(diagnosed)
            with self._survive("writing summaries"):
                self._write_diagnosis(step, diagnosed)

    def _say_set_after_last_epoch(self, last):
        """Says which loss variables hold, as the fit ends, another value than the last epoch logged.

        Set after it: by a callback's `on_train_end` that runs before the
        tracker's (`EarlyStopping(restore_best_weights=True)` restores the
        best epoch's weights, make_trainable's attached loss variables among
        them), or by Keras as the fit ends (an optimizer with `use_ema=True`
        puts in the moving averages). The log keeps the last epoch's; the
        console says what the model holds.
        """
        if last is None:
            return
        for r in last[1]:
            if r.tracked.role != metadata.ROLE_LOSS or r.tracked.network is not None or r.value is None:
                continue
            now = np.asarray(snapshot_lib.host_value(r.tracked.variable))
            logged = np.asarray(r.value)
            if now.shape != logged.shape or np.array_equal(now.astype(logged.dtype), logged, equal_nan=True):
                continue
            shown = f"{now.item():.6g}" if now.size == 1 else f"L2 norm {np.linalg.norm(now):.6g}"
            was = f"{logged.item():.6g}" if logged.size == 1 else f"L2 norm {np.linalg.norm(logged):.6g}"
            logger.warning(
                "LossParamTracker: as the fit ends, '%s' holds %s, not the %s its last epoch logged: it "
                "was set after that epoch (EarlyStopping(restore_best_weights=True) restores the best "
                "epoch's weights; an optimizer with use_ema=True puts in their moving averages). load() "
                "and the report show the last epoch's.",
                r.tracked.path, shown, was,
            )

    def _recheck(self, record):
        """The record again, if its variable moved after the epoch's end (a later callback moved it)."""
        if record.observation is None or record.tracked.key not in self._moved_now:
            return record
        observation = record.observation._replace(value_changed=True, moved_before=True)
        return record._replace(diagnosis=diagnosis_lib.diagnose(observation), observation=observation)

    def _say_fix_reached(self, records):
        """Says once, at INFO level, that a variable make_trainable attached gets a gradient and moves:
        `training` with no cause (not moved by something else, nor with its gradient unknown)."""
        for r in records:
            observation = r.observation
            trained = r.diagnosis == diagnosis_lib.Diagnosis(metadata.TRAINING)  # by descent, its gradient seen
            if observation is None or not observation.attached or not trained:
                continue
            if ("fix reached", r.tracked.path) not in self._warned:
                self._warned.add(("fix reached", r.tracked.path))
                logger.info(
                    "LossParamTracker: make_trainable's fix reached '%s': it gets a gradient and moves.",
                    r.tracked.path,
                )

    def _warn(self, records, step):
        # Asked by each loss variable whose fix is make_trainable: one pass over a thousand weights.
        optimizer_idle = functools.cache(lambda: _optimizer_moved_no_weight(records))
        for r in records:
            if r.status in metadata.WARNED_STATUSES and (
                r.tracked.role == metadata.ROLE_LOSS or r.status == metadata.NON_FINITE
            ):
                self._warn_once(r.tracked, r.diagnosis, records, optimizer_idle, step, r.grads)
            elif r.diagnosis is not None and r.tracked.path in self._warned_loss:
                # A status that is not warned (something else now moves it) takes back the last warning's fix.
                self._warn_once(r.tracked, r.diagnosis, records, optimizer_idle, step, r.grads)

    def _warn_once(self, t, diagnosis, records, optimizer_idle, step, stats=None):
        """Warns of `t`'s `diagnosis`, unless the console's last word on it is already that.

        A model weight is warned of each diagnosis once. A loss variable's
        evidence grows over the fit (the probe's, as the model moves; a
        callback that starts to set it), so its diagnosis can change and
        change back: the console warns again whenever it differs from the
        last one warned, a status that is not warned of included (`training`:
        the earlier fix no longer applies), naming the warning it replaces,
        up to `_REPLACED_WARNINGS` times a fit.
        """
        loss = t.role == metadata.ROLE_LOSS
        earlier = self._warned_loss.get(t.path) if loss else None
        if earlier is not None and earlier[1] == diagnosis:
            return  # the console's last word on it stands
        replaced = self._replaced.get(t.path, 0)
        if replaced >= _REPLACED_WARNINGS or (not loss and (t.path, diagnosis) in self._warned):
            return  # said already: a thousand non-finite weights build no message an epoch
        fix = self._own_fix(t, diagnosis, records) if diagnosis.cause in metadata.ATTACHED_BY_THE_FIX else None
        if diagnosis.cause in metadata.ATTACHED_BY_THE_FIX and optimizer_idle():
            fix = (fix or metadata.advice(diagnosis.status, diagnosis.cause)[1]) + (
                " The optimizer moved none of the model's weights this epoch either, though it is handed "
                "them with their gradients (not_updated, optimizer_no_effect): check its learning rate "
                "first (0, or a schedule at 0), or attached, this variable will not move either."
            )
        text = diagnosis_lib.warning_message(t.path, diagnosis, t.owner, fix, weight=t.role == metadata.ROLE_MODEL)
        if diagnosis.cause == metadata.NOT_IN_OPTIMIZER and stats is not None and stats.grad_min >= 0:
            # Which way descent would move it is observed; whether the loss turns back up beyond is not.
            text += (
                f" Observed: at every step the curvature probe measured (the first {capture_lib.PROBE_STEPS} of "
                "each epoch), its gradient was positive in every element: descent would lower it, and no step "
                "showed where the loss turns back up."
            )
        key = (t.path, diagnosis)
        if loss:
            if earlier is not None:
                then, before = earlier
                cause = f", {before.cause}" if before.cause else ""
                text += (
                    f" This epoch's observations replace the warning of epoch {then} ({before.status}{cause}) "
                    "and its fix."
                )
                self._replaced[t.path] = replaced = replaced + 1
                if replaced == _REPLACED_WARNINGS:
                    text += (
                        f" Its diagnosis has now changed {replaced} times in this fit: later changes are not "
                        "warned; the tab, load() and the report show each epoch's."
                    )
            self._warned_loss[t.path] = (step, diagnosis)
            key = (t.path, diagnosis, step)
        self._warn_text(key, text)

    def _own_fix(self, t, diagnosis, records):
        """The call that fixes `t`, where `make_trainable(model)` would not, or would do harm.

        A variable passed as `variables=[...]` has its own (see `_fix`).
        Otherwise `make_trainable(model)` attaches every trainable loss
        variable the optimizer is not handed: where that takes in one whose
        diagnosis does not call for it (something else moves it, descent
        has no minimum for it, or no verdict yet), the fix names this one
        alone, by its path, and says which it would also take.
        """
        if t.fix:
            return t.fix
        if t.path in self._networks:  # trainable=False is the usual fix of a feature extractor
            return metadata.NETWORK_FIX
        if t.key in self._created_keys:  # make_trainable before fit may not find it yet
            generic = metadata.advice(diagnosis.status, diagnosis.cause)[1]
            return (
                "It is created when the loss is first called (in a layer's build(), or by the "
                "loss's own code): where make_trainable before fit finds nothing, call the loss "
                "once first, as in loss(y[:1], model(x[:1])), or create it in __init__. Then: " + generic
            )
        others = [
            f"'{r.tracked.path}' ({r.status}{', ' + r.diagnosis.cause if r.diagnosis.cause else ''})"
            if r.diagnosis else f"'{r.tracked.path}' (no status yet)"
            for r in records
            if r.tracked.path != t.path and _attached_by_make_trainable(r)
            and (r.diagnosis is None or r.diagnosis.cause not in metadata.ATTACHED_BY_THE_FIX)
        ]
        if not others:
            return None
        generic = metadata.advice(diagnosis.status, diagnosis.cause)[1]
        named = generic.replace("make_trainable(model)", f"make_trainable(model, variables=[{t.path!r}])")
        return f"{named} (make_trainable(model) alone would also attach {', '.join(others)}.)"

    def _warn_text(self, key, text):
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(text, LossParamWarning, stacklevel=_user_stacklevel())

    def _each(self, items, fn, tracked_of=lambda item: item):
        """`[fn(item) for item in items]`, leaving out an item whose variable cannot be read or summarised.

        That variable (`tracked_of(item)`) is named once; the others keep
        their results. One guard around the list, and one per item only
        after a failure: a guard costs as much as the work of a weight.
        """
        try:
            return [fn(item) for item in items]
        except Exception:  # noqa: BLE001 - again one by one, to lose only what fails
            pass
        results = []
        for item in items:
            with self._survive_variable(tracked_of(item)):
                results.append(fn(item))
        return results

    def _survive_variable(self, t):
        """Leaves out, and names once, a variable the tracker cannot read or summarise."""
        return self._survive(
            t.path,
            "'%s' cannot be summarised (%s: %s); it is left out, the other variables are "
            "logged and diagnosed.",
        )

    def _warn_unmatched_display(self):
        """Says once per fit which `display` names match no loss variable (a typo, a renamed attribute)."""
        if self._display_checked:
            return
        self._display_checked = True
        paths = [t.path for t in self._loss_tracked]
        for name in self.display:
            if not any(_names(name, path) for path in paths):
                logger.warning(
                    "LossParamTracker: display names %r, which matches no loss variable; "
                    "its loss variables are %s.",
                    name,
                    paths,
                )

    def _warn_capture_problems(self, trained):
        """Says once per fit why gradients are missing, when the capture saw less than the fit ran."""
        if self._capture is None or not trained:
            return
        counts, _, _ = self._capture.read_global()
        problems = self._capture.problems()
        if counts.captured + counts.skipped == 0 and not problems:
            problems = ["no training step passed through its hooks"]
        for problem in problems:
            if problem not in self._warned:
                self._warned.add(problem)
                logger.warning("LossParamTracker: gradients are incomplete: %s.", problem)
        for note in self._capture.notes():
            self._warn_text(note, note)

    @contextlib.contextmanager
    def _survive(self, what, said="%s failed (%s: %s); training goes on."):
        """Logs once per fit, instead of raising, a failure of logging: training goes on.

        `said`: the message, of `what`, the error's type and the error.
        """
        try:
            yield
        except Exception as error:  # noqa: BLE001 - a logger never kills training
            if what not in self._failed:
                self._failed.add(what)
                logger.warning("LossParamTracker: " + said, what, type(error).__name__, error)

def _check_display(display):
    """`{name: Display}` of the `display` argument; raises a ValueError that shows what was received."""
    if display is None:
        return {}
    if not isinstance(display, dict):
        raise ValueError(
            f"Received: display={display!r} ({type(display).__name__}). Expected a dict of "
            "variable names to displays, e.g. display={'logit_scale': 'exp'}."
        )
    checked = {}
    for name, how in display.items():
        if not isinstance(name, str) or not name.strip("/"):
            raise ValueError(
                f"Received: display key {name!r}. Expected a loss variable's name or path, "
                "e.g. 'logit_scale' or 'loss/CLIPLoss/logit_scale'."
            )
        try:
            checked[name.strip("/")] = Display.of(how)
        except ValueError as error:
            raise ValueError(f"display[{name!r}]: {error}") from None
    return checked


def _user_stacklevel():
    """The `stacklevel` that makes `warnings.warn`, called by this module's caller, name the user's line.

    That is the first frame outside Keras, the frameworks and this package:
    the line that called `fit`, so that Python's warning filters, IDEs and
    `pytest.warns` see the user's code.
    """
    frame, level = sys._getframe(2), 2  # the frame that calls warnings.warn is level 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _LIBRARY_FRAMES:
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 2


def _log_entries(records):
    """`[(key, float)]` of the loss variables of at most `LOGS_MAX_ELEMENTS` elements, displayed values."""
    entries = []
    for r in records:
        t = r.tracked
        if t.role != metadata.ROLE_LOSS or t.network is not None or r.value is None:
            continue
        if np.size(r.value) > LOGS_MAX_ELEMENTS:
            continue
        path = t.path[len(discovery.LOSS_PREFIX) + 1 :] if t.path.startswith(discovery.LOSS_PREFIX + "/") else t.path
        value = np.asarray(r.value, np.float64)
        if t.display is not None:
            path = f"{path.rsplit('/', 1)[0]}/{t.display.label}" if "/" in path else t.display.label
            value = np.asarray(t.display.apply(value), np.float64)
        # Letters, digits, _ . / - and spaces only: what experiment trackers
        # (MLflow's metric names) accept.
        path = re.sub(r"[^\w./ -]+", "_", path).strip("_")
        if value.ndim == 0:
            entries.append((path, float(value)))
        else:
            entries += [(f"{path}/{i}", float(x)) for i, x in enumerate(value.ravel())]
    return entries


def _finite(logs, key):
    """Whether `logs[key]` is a finite number; `None` where it is absent or not a number."""
    try:
        return math.isfinite(float((logs or {})[key]))
    except Exception:  # noqa: BLE001 - absent, or what Keras could not make a float (a tensor of several)
        return None


def _on(owner):
    return f" (on {owner})" if owner else ""


def _names(name, path):
    """Whether `name` is `path` or its last components: `logit_scale` names `loss/CLIP/logit_scale`."""
    return path == name or path.endswith("/" + name)


def _loss_variable_values(t, value, grad, granularity=metadata.EPOCH):
    """The summary values of a loss variable: `grad` is `(mean, max)`, or `None` before training."""
    return summary.loss_variable(
        t.path, value, shape=t.shape, dtype=t.dtype, granularity=granularity, display=t.display, grad=grad
    )


def _value(t, end):
    """A loss variable's value: from its snapshot where that holds it whole, else read."""
    if end.fingerprint[0] is None and -1 not in t.shape and end.sample.size == math.prod(t.shape):
        return end.sample.reshape(t.shape).astype(np.float64 if t.dtype == "float64" else np.float32)
    return snapshot_lib.host_value(t.variable)


def _norms_row(record):
    """A model weight's `metadata.FIELDS[WEIGHT_NORMS]` row."""
    return [record.norm, record.grads.mean, record.grads.max, record.update_ratio]


def _combined_norms(weights):
    """The `metadata.FIELDS[WEIGHT_NORMS]` row of weights' `Record`s as one vector (see `norms`)."""
    rows = [_norms_row(r) for r in weights]
    return norms.combine_weight_norms(rows, start_norms=[r.start_norm for r in weights])


def _attached_by_make_trainable(record):
    """Whether `make_trainable(model)` would attach the record's variable: a trainable loss variable
    the optimizer is not handed, but a `loss_weights` one or one passed as `variables=[...]`."""
    observation, t = record.observation, record.tracked
    return (
        t.role == metadata.ROLE_LOSS and observation is not None and observation.trainable
        and not observation.seen_by_optimizer and not discovery.is_loss_weight(t.path) and t.fix is None
    )


def _fix(found):
    """The call that fixes a loss variable's case, where the generic fix does not name it."""
    if found.path.startswith(f"{discovery.LOSS_PREFIX}/extra/"):  # given as variables=[...]
        name = found.path.rsplit("/", 1)[-1]
        return (
            f"Call loss_param_tracker.make_trainable(model, variables=[{name}]) before fit, "
            "so that the optimizer trains it (a raw tf.Variable out of reach of the loss "
            "must be created as keras.Variable)."
        )
    return None

