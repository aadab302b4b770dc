"""Gradient capture inside the real training step: the TensorFlow backend.

This is the only module that knows how Keras's TensorFlow trainer runs a
step. It hooks instance attributes that the traced step looks up at trace
time, each wrapped with `functools.wraps`:

- `model.train_step`: runs under a small extra `GradientTape` that watches
  only the loss variables the optimizer is not handed, so that their
  gradient comes from the same forward pass, `add_loss` terms included;
- `model.compute_loss`: its result is the training objective; the extra
  tape's gradient of it is taken right there (the backward of the loss
  variables only, no second forward pass). A second tape around it records
  that gradient's own computation, so that the first `PROBE_STEPS` steps of
  an epoch also take its derivative along a fixed direction (a
  Hessian-vector product of the loss variables only, under a `tf.cond` kept
  a function call: the other steps pay one comparison and one call): none
  where the objective is linear in the variable, as in a weight of a loss
  term. Not under a strategy, both tapes also watch the loss variables the
  optimizer is handed, for the probe alone: it checks the fix
  (`make_trainable`), whose descent may have no minimum. An eager step does
  so in an epoch's first `PROBE_STEPS` steps only, and not in one where a
  `tf.py_function` ran (its one backward is the step's);
- `model.optimizer.scale_loss`: the factor by which the optimizer's
  gradients are scaled (mixed precision), to report unscaled norms;
- `model.optimizer.apply`: sees the exact gradients of the step, and adds a
  few ops that accumulate each variable's gradient norm;
- each `keras.losses.Loss`'s `call`: allows variables created on the first
  call only, and, when a custom `train_step` calls the loss object itself
  instead of `compute_loss`, records the gradient that flows into its output.
- under a `MirroredStrategy` or `MultiWorkerMirroredStrategy`, the
  optimizer's `_all_reduce_sum_gradients` instead of `apply`: the norms are
  those of the replicas' summed gradients, which the optimizer applies, and
  the loss variables' gradients are summed in one fused all-reduce.

Nothing of the training computation changes: the hooks call the originals with
the same arguments and only read their tensors. A hook that fails steps aside
for the rest of the fit (the original runs alone) and says why in
`problems()`. `release()` removes the hooks and drops the traced train
function, so a later `fit` runs exactly as without the tracker.
"""

import dataclasses
import functools
import math
import threading
import warnings

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2
from tensorflow.python.eager import context, execute

from loss_param_tracker.capture import (
    PROBE_MAX_ELEMENTS,
    PROBE_ROWS,
    PROBE_STEPS,
    HookedCapture,
    LossVariableCreatedError,
    Unsupported,
    created_every_call,
    probe_start,
)
from loss_param_tracker.discovery import Places, describe, variable_key


@dataclasses.dataclass(eq=False)
class _Step:
    """What the hooks learn of one traced (or eager) training step."""

    graph: object
    tape: tf.GradientTape = None
    watched: list = dataclasses.field(default_factory=list)
    # The small trainable loss variables the optimizer is handed: watched for the curvature probe only.
    probe_only: list = dataclasses.field(default_factory=list)
    in_compute_loss: bool = False
    grads: dict = None  # {key: gradient} of the watched variables, once known
    outputs: list = dataclasses.field(default_factory=list)  # loss outputs called directly
    upstream: dict = dataclasses.field(default_factory=dict)  # {index in outputs: d objective / d output}
    scale: object = None  # the optimizer's loss-scale factor of this step
    outer: tf.GradientTape = None  # records the watched variables' gradient, for its curvature
    outer_recording: bool = False  # until the gradient is taken: never over the step's own backward
    left: bool = False  # the watched variables' gradient is the step's own to take: not observed
    py_function_tapes: set = None  # eager: the py_function tapes TensorFlow kept as the step began
    # Keys of the watched variables whose gradient goes through a custom gradient: not probed.
    custom_gradient: frozenset = frozenset()
    eager_custom_gradient: bool = False  # a custom gradient ran in this eager step


def _eager_custom_gradient_module():
    """TensorFlow's module whose `_eager_mode_decorator` runs a `tf.custom_gradient` function eagerly, or
    `None` where this TensorFlow has none."""
    try:
        from tensorflow.python.ops import custom_gradient
    except ImportError:
        return None
    return custom_gradient if callable(getattr(custom_gradient, "_eager_mode_decorator", None)) else None


_EAGER_CUSTOM_GRADIENT = _eager_custom_gradient_module()


def model_strategy(model):
    """The model's `tf.distribute` strategy, or `None` where it has TensorFlow's default (none).

    Inside a strategy's scope, where many call `fit`, `get_strategy()` is
    that strategy, and so is the model's: being `get_strategy()` does not
    make it the default.
    """
    strategy = model.distribute_strategy
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return None
    return strategy


def flat_reader(variables):
    """A read of all `variables`, flattened and concatenated as float64: one op per device.

    The op is `_ReadVariablesOp`, TensorFlow's read of many resource
    variables at once, run eagerly: a thousand variables in 2 ms, where a
    `ReadVariableOp` each takes 17 ms and a `tf.function` over them seconds
    to trace. Where it fails, the variables are read one bare
    `ReadVariableOp` each: for that read where a variable's read failed,
    for the rest of the reader's life in a TensorFlow without the op or
    whose eager internals differ.
    """
    resources = [(v.handle, v.dtype) for v in (v.value if isinstance(v, keras.Variable) else v for v in variables)]
    by_device = {}  # {device: ([position in variables], [handle], [dtype enum])}
    for position, (handle, dtype) in enumerate(resources):
        positions, handles, dtypes = by_device.setdefault(handle.device, ([], [], []))
        positions.append(position)
        handles.append(handle)
        dtypes.append(dtype.as_datatype_enum)
    together = True

    def read_together():
        values = [None] * len(resources)
        for positions, handles, dtypes in by_device.values():
            attributes = ("N", len(handles), "dtypes", dtypes)
            read = execute.execute("_ReadVariablesOp", len(handles), handles, attributes, context.context())
            for position, value in zip(positions, read):
                values[position] = value._numpy()  # a view: the concatenation copies
        return values

    def read():
        nonlocal together
        if together:
            try:
                return np.concatenate(read_together(), axis=None, dtype=np.float64)
            except tf.errors.NotFoundError:  # no such op in this TensorFlow
                together = False
            except tf.errors.OpError:  # one variable's read: the bare reads say which
                pass
            except Exception:  # noqa: BLE001 - TensorFlow's eager internals differ: the bare reads from now on
                together = False
        values = [tf.raw_ops.ReadVariableOp(resource=h, dtype=d).numpy() for h, d in resources]
        return np.concatenate(values, axis=None, dtype=np.float64)

    return read


def writes_summaries(model):
    """Whether this process writes: under a multi-worker strategy, the chief only."""
    return bool(model.distribute_strategy.extended.should_save_summary)


class StepCapture(HookedCapture):
    """Accumulates gradient norms of the loss's variables and the model's weights (TensorFlow)."""

    _HOOKED = (("model", "train_step"), ("model", "compute_loss"), ("optimizer", "apply"), ("optimizer", "scale_loss"))

    def __init__(self, model, loss_variables, losses, rediscover, places=Places()):
        super().__init__(model, loss_variables, losses, rediscover, places)
        self._accumulator = None  # (sums, maxes), each float32[slots + 3]: see `_build_accumulator`
        self._starts = None  # (accumulator, probe) as `reset` sets them
        self._probe = None  # float32[PROBE_ROWS, slots]: see `_probe_curvature`
        self._read_all = None  # the accumulator and the probe in one read (`flat_reader`), without a strategy
        self._reads = None  # {key} of the variables the traced step reads; None when not traced
        self._local = threading.local()  # a strategy traces its replicas in threads
        self._own_custom_gradient = False  # the capture calls a custom gradient of its own (`_observe_output`)
        self._calls = {}  # {id(loss): [calls, the call that created variables]}
        self._strategy = model_strategy(model)
        self._eager_steps = 0  # eager steps begun since `reset`: only the probe's first ones tape for it

    @property
    def _step(self):
        """The state of the step this thread traces or runs (one per replica under a strategy)."""
        return getattr(self._local, "step", None)

    @_step.setter
    def _step(self, step):
        self._local.step = step

    @classmethod
    def _check_supported(cls, model):
        super()._check_supported(model)
        strategy = model_strategy(model)
        if strategy is None:
            return
        if not isinstance(strategy, _STRATEGIES):
            raise Unsupported(f"under {type(strategy).__name__}")
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        if not callable(getattr(optimizer, "_all_reduce_sum_gradients", None)):
            raise Unsupported(
                f"{type(optimizer).__name__} reduces its gradients across replicas where the "
                "capture cannot see them"
            )

    def _zero_accumulators(self):
        self._eager_steps = 0
        if self._accumulator is not None:
            # The values made once: building them eagerly each epoch took 2 ms.
            zeros, probe = self._starts
            for variable in self._accumulator:
                variable.assign(zeros)
            self._probe.assign(probe)

    def _accumulated(self):
        return _norms_back(np.stack([variable.numpy() for variable in self._accumulator]))

    def _probed(self):
        return None if self._probe is None else self._probe.numpy()

    def _fetch(self):
        if self._read_all is None:  # under a strategy: each variable's first replica
            return super()._fetch()
        flat = self._read_all()
        width = len(self._slots) + 3
        return _norms_back(flat[: 2 * width].reshape(2, width)), flat[2 * width :].reshape(PROBE_ROWS, -1)

    def _read_by_step(self, key):
        return None if self._reads is None else key in self._reads

    # Hooks -------------------------------------------------------------

    def _install(self):
        model, optimizer = self._model, self._optimizer
        self._hook(model, "train_step", "train_step", self._train_step)
        self._hook(model, "compute_loss", "compute_loss", self._compute_loss)
        self._hook(optimizer, "scale_loss", "optimizer.scale_loss", self._scale_loss)
        self._hook(optimizer, "apply", "optimizer.apply", self._apply)
        for loss in self._losses:
            self._hook(loss, "call", "Loss.call", functools.partial(self._loss_call, loss))
        if _EAGER_CUSTOM_GRADIENT is not None:
            self._hook(_EAGER_CUSTOM_GRADIENT, "_eager_mode_decorator", "eager custom gradient", self._custom_gradient)
        if self._strategy is not None:
            # Under a strategy the optimizer sums the replicas' gradients in its
            # update step: the norms are those of the sums, which it applies.
            # Replicas trace in parallel threads: the slots are fixed first.
            inner = getattr(optimizer, "inner_optimizer", optimizer)
            self._hook(inner, "_all_reduce_sum_gradients", "optimizer all-reduce", self._all_reduced)
            self._build_slots([variable_key(v) for v in model.trainable_variables])
            self._build_accumulator()

    def _train_step(self, original, *args, **kwargs):
        step = None
        with self._guard("train_step"):
            step = self._begin_step()
        if step is None:
            return original(*args, **kwargs)
        self._step = step
        try:
            outputs = original(*args, **kwargs)
            with self._guard("train_step"):
                self._note_reads()
            return outputs
        finally:
            self._step = None
            if step.tape is not None:
                step.tape.__exit__(None, None, None)
            if step.outer is not None:
                self._stop_outer(step, keep=False)

    def _note_reads(self):
        """Keeps which variables the step being traced reads (TensorFlow's record of its function graph).

        A function traced earlier (a layer's `tf.function` call) is recorded
        with the variables it captured then: a variable replaced since is
        not read by the step.
        """
        watched = getattr(tf.compat.v1.get_default_graph(), "_watched_variables", None)
        if watched is not None and not tf.executing_eagerly():
            self._reads = {variable_key(v) for v in watched}

    def _begin_step(self):
        """Returns the step's state, its tape recording when some loss variable needs one."""
        self._refresh_loss_variables()
        step = _Step(graph=_graph_key())
        step.watched = self._unregistered_loss_variables()
        eager = tf.executing_eagerly()
        self._eager_steps += eager
        # An eager step that the probe will not measure needs no tape for the probe alone.
        probing = not eager or self._eager_steps <= PROBE_STEPS
        if "curvature" not in self._off and self._strategy is None and probing:
            # The fix's check: the probe measures those the optimizer is handed too.
            watched = {variable_key(v) for v in step.watched}
            step.probe_only = [
                v for v in self._probe_variables() if variable_key(v) not in watched and _probed_size(v)
            ]
        if (step.watched or step.probe_only) and eager:
            step.py_function_tapes = _py_function_tapes()
        if step.watched or step.probe_only:
            variables = [_tf_variable(v) for v in step.watched + step.probe_only]
            tapes = []
            try:
                count = 1 if "curvature" in self._off else 2
                for index in range(count):
                    # The outer tape is asked once a probed variable (`_probe_curvature`).
                    tape = tf.GradientTape(watch_accessed_variables=False, persistent=count == 2 and index == 0)
                    tape.__enter__()
                    tapes.append(tape)
                    tape.watch(variables)
            except BaseException:
                for tape in reversed(tapes):
                    tape.__exit__(None, None, None)
                raise
            step.tape = tapes[-1]
            step.outer = tapes[0] if len(tapes) == 2 else None
            step.outer_recording = step.outer is not None
        return step

    def _stop_outer(self, step, keep):
        """Stops the outer tape's recording: kept for the curvature when `keep`, else dropped.

        Stopped before the step differentiates its own objective: a tape
        recording there would record Keras's (or a custom step's) backward.
        """
        if step.outer_recording:
            step.outer.__exit__(None, None, None)
            step.outer_recording = False
        if not keep:
            step.outer = None

    def _compute_loss(self, original, *args, **kwargs):
        step = self._step
        training = kwargs.get("training", args[4] if len(args) > 4 else True)
        # The first objective of a step is the one its tape differentiates.
        if step is None or step.grads is not None or step.left or training is False or step.graph != _graph_key():
            return original(*args, **kwargs)
        step.in_compute_loss = True
        try:
            objective = original(*args, **kwargs)
        finally:
            step.in_compute_loss = False
        if step.tape is not None:
            with self._guard("compute_loss"):
                # Inside the tape's context: a non-persistent tape stops
                # recording here, so the rest of the step is not taped.
                self._take_gradients(step, [objective])
            self._stop_outer(step, keep=step.grads is not None)
        else:
            step.grads = {}
        return objective

    def _take_gradients(self, step, targets, output_gradients=None):
        """Sets `step.grads`: the gradients of `targets` for the watched variables, from the step's tape.

        Except where that backward pass would go through an op whose
        gradient runs once a step (see `_ONE_BACKWARD`): the gradient is the
        training step's to take, and the watched variables' is not observed.
        """
        watched = step.watched + step.probe_only
        paths = None if tf.executing_eagerly() else _Paths(targets, [_tf_variable(v) for v in watched])
        kept = range(len(watched))
        if paths is not None and paths.through_runs_once:
            # One the optimizer is handed whose gradient goes through a py_function is not probed;
            # only a watched one's makes the gradient the step's own to take.
            first = len(step.watched)
            kept = [i for i in kept if i < first or not paths.through_runs_once >> i & 1]
            step.probe_only = [watched[i] for i in kept if i >= first]
            if not paths.through_runs_once & (1 << first) - 1:
                paths.runs_once = None
        once = _one_backward(step, paths)
        if step.eager_custom_gradient:
            step.custom_gradient = frozenset(variable_key(v) for v in watched)
        elif paths is not None:
            step.custom_gradient = frozenset(
                variable_key(watched[i]) for i in kept if paths.through_custom_gradient >> i & 1
            )
        watched = [watched[i] for i in kept]
        if once is not None and not step.watched:
            # Only the probe's: an eager step's py_function ran, whose one backward is the step's. The
            # variables the optimizer is handed are not probed in it; no gradient is unknown.
            step.tape.__exit__(None, None, None)
            step.tape, step.probe_only, step.grads = None, [], {}
            return
        if once is None:
            grads = step.tape.gradient(targets, [_tf_variable(v) for v in watched], output_gradients=output_gradients)
            step.grads = {variable_key(v): g for v, g in zip(watched, grads)}
            return
        step.tape.__exit__(None, None, None)
        step.tape, step.left = None, True
        self._blind_why = (
            f"{once}, and TensorFlow computes a py_function's gradient once a step: the tracker "
            "leaves it to the training step, so the gradients of the loss variables the "
            "optimizer is not handed are unknown"
        )

    def _custom_gradient(self, original, *args, **kwargs):
        """A `tf.custom_gradient` function called eagerly: in an eager step, its variables are not probed
        (no graph says which of them its gradient reaches)."""
        with self._guard("eager custom gradient"):
            step = self._step
            if step is not None and not self._own_custom_gradient:
                step.eager_custom_gradient = True
        return original(*args, **kwargs)

    def _scale_loss(self, original, loss):
        scaled = original(loss)
        step = self._step
        if step is not None and scaled is not loss:  # an optimizer that scales
            with self._guard("optimizer.scale_loss"):
                # The factor itself: scaling is a multiplication, exact for 1.
                step.scale = original(tf.constant(1.0, tf.float32))
        return scaled

    def _loss_call(self, loss, original, *args, **kwargs):
        with tf.variable_creator_scope(self._creation_guard(loss)):
            output = original(*args, **kwargs)
        with self._guard("Loss.call"):
            self._check_reduction(loss, output)
        step = self._step
        if step is None or step.in_compute_loss or step.tape is None:
            return output
        # A custom step that calls the loss object: its objective's gradient
        # comes after the step's own backward, which no second tape may record.
        self._stop_outer(step, keep=False)
        with self._guard("Loss.call"):
            output = self._observe_output(step, output)
        return output

    def _check_reduction(self, loss, output):
        """Notes a loss that returns a scalar under a strategy of several replicas.

        Keras 3 divides a loss by the number of replicas only when it
        returns per-sample values (`losses.loss.reduce_values`): a scalar is
        left whole, and the replicas' gradients are summed.
        """
        replicas = self._strategy.num_replicas_in_sync if self._strategy is not None else 1
        if replicas < 2 or getattr(output, "shape", None) is None or output.shape.rank != 0:
            return
        name = describe(getattr(loss, "fn", None) or loss)
        self._notes[name] = (
            f"{name} returns a scalar (its batch mean) under {type(self._strategy).__name__} "
            f"with {replicas} replicas. Keras 3 divides a loss by the number of replicas only "
            "when it returns per-sample values, so the optimizer receives the sum of the "
            f"{replicas} replicas' gradients: {replicas} times the gradient of the batch mean "
            f"(with SGD, {replicas} times the step one device takes; Adam mostly cancels the "
            "factor). Fix: return per-sample values (one loss per example, e.g. "
            "tf.reduce_mean(..., axis=-1)) and let Keras reduce them."
        )

    def _creation_guard(self, loss):
        """A variable creator that lets a loss create variables in its first creating call only."""
        state = self._calls.setdefault(id(loss), [0, None])
        state[0] += 1
        call = state[0]

        def creator(next_creator, **kwargs):
            if state[1] in (None, call):
                state[1] = call
                self._stale = self._created = True
                return next_creator(**kwargs)
            message = created_every_call(loss, kwargs.get("name"))
            if not tf.executing_eagerly():
                raise LossVariableCreatedError(message)
            if call == state[1] + 1:  # eager steps survive it; say it once
                warnings.warn(message, stacklevel=2)
            return next_creator(**kwargs)

        return creator

    def _observe_output(self, step, output):
        """Returns `output` unchanged, through an identity whose gradient is recorded."""
        if not (tf.is_tensor(output) and output.dtype.is_floating):
            return output
        index = len(step.outputs)
        step.outputs.append(output)

        @tf.custom_gradient
        def identity(x):
            def grad(upstream):
                step.upstream[index] = upstream
                return upstream

            return tf.identity(x), grad

        self._own_custom_gradient = True  # the identity's gradient is the derivative
        try:
            return identity(output)
        finally:
            self._own_custom_gradient = False

    def _apply(self, original, grads, trainable_variables=None):
        if self._strategy is None:
            with self._guard("optimizer.apply"):
                self._record_step(grads, trainable_variables)
        return original(grads, trainable_variables)

    def _all_reduced(self, original, grads_and_vars):
        reduced = original(grads_and_vars)
        with self._guard("optimizer all-reduce"):
            pairs = list(reduced)
            self._record_step([g for g, _ in pairs], [v for _, v in pairs], reduced=True)
        return reduced

    # The step's accumulation -------------------------------------------

    def _record_step(self, grads, variables, reduced=False):
        """Adds this step's gradient norms to the accumulator (ops in the step's graph).

        `reduced`: the gradients are the replicas' sum, as the optimizer
        applies them under a strategy: unscaled already, and only finite ones
        get there under a loss-scaling optimizer.
        """
        if variables is None:
            variables = self._optimizer.trainable_variables
        step = self._step if self._step is not None and self._step.graph == _graph_key() else None
        by_key = {variable_key(v): g for v, g in zip(variables, list(grads))}
        optimizer_keys = {k: g is not None for k, g in by_key.items()}
        if self._slots is None:
            # The first trace ran the loss: a layer it holds, or is, may have
            # built its weights in it (a Loss's own creations are noted by
            # its hook; a function's or a layer's by looking again).
            before = {variable_key(v) for v in self._loss_variables}
            self._stale = True
            self._build_slots(list(by_key))
            self._created = self._created or bool({variable_key(v) for v in self._loss_variables} - before)
            self._build_accumulator()
        loss_grads = self._loss_gradients(step)
        if loss_grads:  # the probe's own of the variables the optimizer is handed stay in `step.grads`
            loss_grads = {k: g for k, g in loss_grads.items() if k not in optimizer_keys}
        if reduced and loss_grads:
            loss_grads = _all_reduce(loss_grads)
        self._note_step(
            optimizer_keys,
            None if loss_grads is None else {k: g is not None for k, g in loss_grads.items()},
            eager=tf.executing_eagerly(),
        )
        by_key.update({k: g for k, g in (loss_grads or {}).items() if k not in optimizer_keys})

        # The optimizer's gradients carry the loss scale; the tape's do not.
        # Unscaled before squaring: a scaled square can overflow float32.
        scale = step.scale if step is not None and not reduced else None
        inverse = None if scale is None else 1.0 / tf.cast(scale, tf.float32)
        grads_in_slots = [None] * len(self._slots)
        scaled = [False] * len(self._slots)
        for key, index in self._slots.items():
            grads_in_slots[index] = by_key.get(key)
            scaled[index] = key in optimizer_keys
        # The norms over the square root of 2 (`_norms_back` multiplies them
        # back), and one more captured step (sqrt(1) = 1, sqrt(0) = 0).
        row = tf.sqrt(_halves_row(grads_in_slots, scaled, inverse))
        if self._skips_overflow and not reduced:
            # The optimizer skips a step whose gradients overflowed: so do the
            # norms, and the step counts as skipped.
            skipped = tf.one_hot(len(self._slots) + 2, len(self._slots) + 3)
            row = tf.where(_all_finite(grads), row, skipped)
        sums, maxes = self._accumulator
        captured = sums.read_value()[len(self._slots) + 1] if step is not None and step.outer is not None else None
        sums.assign_add(row)
        maxes.assign(tf.maximum(maxes.read_value(), row))
        if captured is not None and step.grads and not reduced:
            with self._guard("curvature"):
                self._probe_curvature(step, captured=captured)

    def _probe_curvature(self, step, captured):
        """In an epoch's first `PROBE_STEPS` steps, keeps per watched variable its largest curvature
        (the norm of its own Hessian-vector product), its gradient's smallest element and its largest
        signed curvature along the product's direction (`_bend`) in those steps.

        The outer tape recorded the gradient's computation: its gradient of
        a variable's gradient along a fixed, generic direction in that
        variable alone is that product, `None` (no curvature) where the
        gradient does not depend on the variable itself. A
        step whose gradient for a variable is zero (a term not read yet, a
        branch not taken) measures nothing of it. A variable whose gradient
        goes through a custom gradient is not probed (`_has_custom_gradient`).
        """
        probed = {variable_key(v) for v in self._probe_variables()}
        pairs = [
            (v, step.grads[variable_key(v)])
            for v in step.watched + step.probe_only
            if variable_key(v) in probed
            and step.grads.get(variable_key(v)) is not None
            and _probed_size(v)
            and variable_key(v) not in step.custom_gradient
        ]
        outer, step.outer = step.outer, None
        if not pairs:
            return
        variables = [_tf_variable(v) for v, _ in pairs]
        grads = [g for _, g in pairs]  # the tensors the outer tape saw computed
        indices = [[self._slots[variable_key(v)]] for v, _ in pairs]

        def measure():
            # All of it in the branch: the other steps run one comparison.
            # A gathered variable's gradient is slices: the product along a
            # direction is the slices' values' along the direction's same rows.
            directions = [_rows_of(tf.cast(_direction(v), g.dtype), g) for v, g in zip(variables, grads)]
            targets = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads]
            # Each variable's own curvature, the others held: one product for
            # all would add the cross terms, and a term's weight `w * f(theta)`
            # would read as curved through `theta`.
            products = [
                outer.gradient(target, variable, output_gradients=direction)
                for target, variable, direction in zip(targets, variables, directions)
            ]
            dense = [tf.cast(_dense(g), tf.float32) for g in grads]
            curvature = [tf.constant(0.0) if p is None else tf.norm(tf.cast(_dense(p), tf.float32)) for p in products]
            bends = [_bend(d, g, p) for d, g, p in zip(directions, grads, products)]
            measured = tf.stack([
                tf.stack(curvature), tf.stack([tf.reduce_min(g) for g in dense]), tf.stack(bends),
                tf.stack([tf.reduce_max(g) for g in dense]),
            ])
            # A zero gradient measures nothing, nor does a step whose figures are NaN or overflowed
            # (the bend's +inf is "not measured", which the fold keeps).
            seen = tf.stack([tf.reduce_any(tf.not_equal(g, 0.0)) for g in dense]) & tf.reduce_all(
                tf.math.is_finite(measured[:2]), axis=0
            ) & tf.logical_not(tf.math.is_nan(measured[2]))
            before = self._probe.read_value()
            kept = tf.gather(before, [i for (i,) in indices], axis=1)
            folded = tf.stack([
                tf.maximum(kept[0], measured[0]), tf.minimum(kept[1], measured[1]), tf.maximum(kept[2], measured[2]),
                tf.maximum(kept[3], measured[3]),
            ])
            updated = tf.where(seen, folded, kept)  # a variable this step did not measure: as it was
            by_slot = tf.tensor_scatter_nd_update(tf.transpose(before), indices, tf.transpose(updated))
            self._probe.assign(tf.transpose(by_slot))
            return tf.constant(True)

        graph = tf.compat.v1.get_default_graph()
        before = len(graph.get_operations())
        tf.cond(captured < PROBE_STEPS, measure, lambda: tf.constant(False))
        _keep_functional(graph.get_operations()[before:])

    def _loss_gradients(self, step):
        """`{key: grad}` of the watched loss variables, or `None` when the objective was not seen."""
        if step is None:
            return None
        if step.grads is not None:
            return step.grads
        pairs = [(o, step.upstream[i]) for i, o in enumerate(step.outputs) if i in step.upstream]
        if not pairs:
            return None
        outputs, upstream = zip(*pairs)
        self._take_gradients(step, list(outputs), list(upstream))  # the tape is spent
        return step.grads

    def _build_accumulator(self):
        # Two rows, each a variable: the sums and the maxes over the steps of
        # [the slots' gradient norms, the global norm, captured steps, skipped
        # steps]. Created outside the traced function, as Keras builds its
        # optimizer. Under a strategy each replica adds to its own copy,
        # without any communication, and a read takes the first replica's:
        # every replica sums the same reduced gradients.
        with tf.init_scope(), (self._strategy or tf.distribute.get_strategy()).scope():
            self._starts = (tf.zeros([len(self._slots) + 3]), tf.constant(probe_start(len(self._slots))))
            self._accumulator = tuple(
                _replica_local(self._starts[0], f"lpt_grad_norm_{row}") for row in ("sums", "maxes")
            )
            self._probe = _replica_local(self._starts[1], "lpt_curvature")
        if self._strategy is None:
            self._read_all = flat_reader([*self._accumulator, self._probe])


# Operations whose gradient can run once a step: TensorFlow keeps a
# py_function's forward tape for its one backward pass (`script_ops`'
# `tape_cache`), and a second pass through it fails the step when it runs
# ("KeyError: b'pyfunc_7'"), after tracing, where no guard can catch it.
_ONE_BACKWARD = frozenset({"EagerPyFunc"})


class _Paths:
    """The ops on a path from a variable's read to one of `targets`, in the targets' graph: only along
    those does a backward pass for the variables run. One walk of the graph, each op once.

    Attributes:
        runs_once: An op on some variable's path that holds a `_ONE_BACKWARD` op (itself, or a
            function it calls: a `tf.function`, a `tf.cond`'s branch), or `None`.
        through_runs_once: Bits (`1 << index` in `variables`) of the variables whose path passes
            such an op.
        through_custom_gradient: Bits (`1 << index` in `variables`) of the variables whose path
            passes an op with a custom gradient (`_has_custom_gradient`).
    """

    def __init__(self, targets, variables):
        self.runs_once, self.through_custom_gradient, self.through_runs_once = None, 0, 0
        graph = getattr(targets[0], "graph", None)
        if graph is None or not all(hasattr(t, "op") for t in targets):
            return
        captured = {id(external): internal for external, internal in getattr(graph, "captures", ())}
        bits = {}  # {handle placeholder: bits of the variables read through it}
        for index, variable in enumerate(variables):
            if id(variable.handle) in captured:
                op = captured[id(variable.handle)].op
                bits[op] = bits.get(op, 0) | 1 << index
        # {op: bits} of the variables that reach it, through a custom gradient, through a runs-once op.
        reach, hidden, once = {}, {}, {}
        stack = [(t.op, False) for t in targets]  # (op, its inputs done)
        while stack:
            op, done = stack.pop()
            if not done:
                if op not in reach:
                    reach[op] = None  # entered: a DAG never comes back to it before it is done
                    stack.append((op, True))
                    stack.extend((t.op, False) for t in op.inputs if t.op not in reach)
                continue
            found, concealed, spent = bits.get(op, 0), 0, 0
            for tensor in op.inputs:  # (an input still entered would be a cycle: none in a function's graph)
                found |= reach[tensor.op] or 0
                concealed |= hidden.get(tensor.op, 0)
                spent |= once.get(tensor.op, 0)
            if found and op not in bits:  # on a path (a read's placeholder is not)
                if _holds(op, graph, _runs_once):
                    self.runs_once = self.runs_once or op
                    spent |= found
                if _holds(op, graph, _has_custom_gradient):
                    concealed |= found
            reach[op], hidden[op], once[op] = found, concealed, spent
        for target in targets:
            self.through_custom_gradient |= hidden[target.op]
            self.through_runs_once |= once[target.op]


def _one_backward(step, paths):
    """Why the tracker's own backward pass would spend a py_function's one backward, or `None`.

    `paths`: the `_Paths` from the step's watched variables to its objective.
    """
    if tf.executing_eagerly():  # a py_function that ran under the tapes has its one backward to come
        tapes = _py_function_tapes()
        if step.py_function_tapes is not None and tapes is not None and tapes - step.py_function_tapes:
            return (
                "a tf.py_function ran in the eager step (where the tracker cannot tell whether "
                "the loss variables' gradient goes through it)"
            )
        return None
    op = paths.runs_once if paths is not None else None
    if op is None:
        return None
    called = "" if _runs_once(op) else ", in a function it calls"
    return f"the training objective's gradient for the loss variables goes through {op.name} (a tf.py_function{called})"


def _runs_once(op):
    return op.type in _ONE_BACKWARD


def _has_custom_gradient(op):
    """Whether `op`'s gradient is one its code gives (`tf.custom_gradient`, `keras.ops.custom_gradient`, a
    gradient override), not its derivative: a gradient reversal's is minus it. Taped again for the
    curvature, the forward op's part of the product would be that gradient too, not the derivative."""
    return "_gradient_op_type" in op.node_def.attr


# The attributes naming the functions an op calls: a call, a cond's branches, a loop's.
_FUNCTION_ATTRS = ("f", "then_branch", "else_branch", "cond", "body")


def _holds(op, graph, kind, depth=0):
    """Whether `op` is of `kind` (a predicate of an op), or calls a function that holds one (within a few levels)."""
    if kind(op):
        return True
    if depth > 4:
        return False
    for attr in _FUNCTION_ATTRS:
        if attr not in op.node_def.attr:
            continue
        function = graph._get_function(op.get_attr(attr).name)  # noqa: SLF001 - the graph's own library
        inner = getattr(function, "graph", None)
        if inner is not None and any(_holds(o, inner, kind, depth + 1) for o in inner.get_operations()):
            return True
    return False


def _py_function_tapes():
    """The keys of the tapes TensorFlow keeps for eager py_functions' one backward, or `None` where unknown."""
    try:
        from tensorflow.python.ops import script_ops
    except ImportError:
        return None
    cache = getattr(script_ops, "tape_cache", None)
    return set(cache) if isinstance(cache, dict) else None


def _keep_functional(operations):
    """Keeps the `If` among `operations` a function call, where TensorFlow would lower it to `Switch` and `Merge`.

    One `Switch` in a graph makes TensorFlow's executor track the deadness
    of every operation of the step, not of the probe's only: measured on one
    CPU thread, 0.15 ms a step on the deep benchmark net (7,000 operations)
    and growing with the graph, where the call costs about 0.04 ms. Where
    this TensorFlow has no such attribute, the `If` is lowered as before.
    """
    for op in operations:
        if op.type in ("If", "StatelessIf"):
            try:
                op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))  # noqa: SLF001
            except Exception:  # noqa: BLE001 - a private attribute: without it the probe only costs more
                return


def _norms_back(accumulated):
    """The accumulated rows with their norms multiplied back by the square root of 2 (see `_record_step`)."""
    accumulated[:, :-2] *= math.sqrt(2)
    return accumulated


def _replica_local(initial, name):
    """A variable of the capture's: each replica's own, read from the first."""
    return tf.Variable(
        initial,
        trainable=False,
        name=name,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


def _bend(direction, grad, product):
    """The objective's curvature along the probe's `direction` (the one `product` was taken along), signed,
    element by element: the largest `d_i (Hd)_i`, negative only where every element's is (see `capture.PROBE_ROWS`).

    0 where the gradient does not depend on the variable (`product` is
    `None`). A gathered variable's product is along the direction's rows
    that the step read, summed where a row was read twice: not `Hd` for
    any one `d`, so not measured (+inf, which the fold keeps).
    """
    if product is None:
        return tf.constant(0.0)
    if isinstance(grad, tf.IndexedSlices) or isinstance(product, tf.IndexedSlices):
        return tf.constant(float("inf"))
    return tf.reduce_max(tf.cast(direction, tf.float32) * tf.cast(product, tf.float32))


def _probed_size(variable):
    """Whether the variable is small enough to probe: a loss term's weight, not a network's kernel."""
    size = tf.TensorShape(variable.shape).num_elements()
    return size is not None and size <= PROBE_MAX_ELEMENTS


def _direction(variable):
    """A fixed, generic direction in the variable's space: not one (all ones, a basis vector) along
    which a non-zero Hessian could give a zero product by cancellation."""
    size = tf.size(variable)
    return tf.reshape(1.0 + 0.5 * tf.sin(tf.cast(tf.range(size), tf.float32) * 2.3 + 0.7), tf.shape(variable))


_STRATEGIES = (
    tf.distribute.MirroredStrategy,
    tf.distribute.MultiWorkerMirroredStrategy,
    tf.distribute.OneDeviceStrategy,
)


def _all_reduce(grads):
    """`{key: grad}` summed over the replicas, in one fused all-reduce (those that are `None` stay)."""
    present = [(k, g) for k, g in grads.items() if g is not None]
    if not present:
        return grads
    summed = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [g for _, g in present]
    )
    return {**grads, **dict(zip([k for k, _ in present], summed))}


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _graph_key():
    if tf.executing_eagerly():
        return None
    return id(tf.compat.v1.get_default_graph())


def _halves_row(grads, scaled, inverse_scale):
    """float32 `[len(grads) + 3]`: half the squared norm of each of `grads` (0 for `None`), half the
    squared global norm of those `scaled` (the optimizer's), then 1 and 0.

    Each op costs about a microsecond a step on a CPU thread, as much as
    reading a few thousand elements: a gradient alone takes one `L2Loss`,
    and `_GROUPED` or more small gradients of one shape and dtype (a deep
    net's biases and normalization scales) are stacked and reduced
    together, four ops for all of them (and two to put them in order).
    `scaled` ones are multiplied by `inverse_scale` (when not `None`) first.
    """
    shared = {}
    for index, grad in enumerate(grads):
        if isinstance(grad, tf.Tensor) and grad.shape.is_fully_defined() and grad.shape.num_elements() <= _SMALL:
            shared.setdefault((tuple(grad.shape), grad.dtype, scaled[index]), []).append(index)
    groups = [members for members in shared.values() if len(members) >= _GROUPED]
    grouped = {index for members in groups for index in members}
    alone = [index for index in range(len(grads)) if index not in grouped]
    halves = {index: _half_squared_norm(grads[index], inverse_scale if scaled[index] else None) for index in alone}
    in_global = [halves[index] for index in alone if scaled[index]]
    columns, order = [], []
    for members in groups:
        stacked = tf.stack([grads[index] for index in members])
        stacked = _unscaled(stacked, inverse_scale if scaled[members[0]] else None)
        column = 0.5 * tf.reduce_sum(tf.square(stacked), axis=list(range(1, stacked.shape.rank)))
        columns.append(column)
        order += members
        if scaled[members[0]]:
            in_global.append(tf.reduce_sum(column))
    global_half = tf.add_n(in_global) if in_global else tf.constant(0.0)
    head = tf.stack([halves[index] for index in alone] + [global_half, tf.constant(1.0), tf.constant(0.0)])
    if not columns:
        return head  # `alone` is every index, in order
    # [alone..., global, 1, 0, grouped...] to [each index in order..., global, 1, 0]
    position = {index: at for at, index in enumerate(alone)}
    position.update({index: len(alone) + 3 + at for at, index in enumerate(order)})
    taken = [position[index] for index in range(len(grads))] + [len(alone), len(alone) + 1, len(alone) + 2]
    return tf.gather(tf.concat([head, *columns], 0), taken)


def _unscaled(grad, inverse_scale):
    """`grad` in float32, times `inverse_scale` when given."""
    if grad.dtype != tf.float32:
        grad = tf.cast(grad, tf.float32)
    return grad if inverse_scale is None else grad * inverse_scale


# A gradient of at most this many elements is reduced with the others of its
# shape, when there are at least `_GROUPED` of them: stacking a larger one
# would cost more than the op it saves, and a smaller group more ops than
# its members' own.
_SMALL = 1 << 10
_GROUPED = 8


def _half_squared_norm(grad, inverse_scale=None):
    """Half the squared L2 norm of `grad` in float32 (one op), times `inverse_scale` first when given.

    The gradient of a gathered variable (an `Embedding`, a loss's
    `take(centers, labels)`) is slices, a row for each time a row was read:
    its norm is that of their sums by row, the gradient the optimizer
    applies, not of the slices (which a row read twice would count twice).
    """
    if grad is None:
        return tf.constant(0.0)
    if isinstance(grad, tf.IndexedSlices):
        rows, position = tf.unique(grad.indices)
        grad = tf.math.unsorted_segment_sum(grad.values, position, tf.shape(rows)[0])
    return tf.nn.l2_loss(_unscaled(grad, inverse_scale))


def _dense(grad):
    """`grad` as a tensor: slices summed into the variable's shape (for the small variables probed)."""
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _rows_of(direction, grad):
    """`direction`'s rows that `grad`'s slices are of, or all of it for a dense `grad`."""
    return tf.gather(direction, grad.indices) if isinstance(grad, tf.IndexedSlices) else direction


def _all_finite(grads):
    checks = [
        tf.reduce_all(tf.math.is_finite(g.values if isinstance(g, tf.IndexedSlices) else g))
        for g in grads
        if g is not None
    ]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)
