"""Gradient capture inside the real training step: the JAX backend.

Keras's JAX `train_step(state, data)` is a pure function, compiled once per
fit: `jax.value_and_grad` of the model's forward pass and loss over the
trainable variables' values, then `optimizer.stateless_apply`. Every other
variable, a loss's included, is a constant inside it, and all state comes in
and goes out explicitly. So the capture:

- keeps its sums and maxes in the variable of a metric it adds to the model
  for the fit (`_GradientNorms`): Keras threads metric variables through the
  compiled step and back, so the norms accumulate on the device, step after
  step, with no host round-trip, and are read once at the end of the epoch.
  The metric reports nothing (its `result()` is empty), is never reset by
  Keras, and is removed after the fit;
- wraps `model.train_step`, whose traced body adds the step's norms to it;
- reads the gradients the optimizer is handed in `optimizer.stateless_apply`
  (unscaled under mixed precision, with the optimizer's own scale);
- reads `x`, `y`, `y_pred` and `sample_weight` where the step hands them to
  `model.compute_metrics`, and differentiates the loss head alone
  (`model.compute_loss` on that `y_pred`) with respect to the loss variables
  the optimizer is not handed: no second forward pass of the model. A
  gradient that is structurally zero (no differentiable path, e.g. through
  `stop_gradient` or an integer cast) is `no_gradient`, as `None` is on the
  other backends.

`add_loss` terms are not part of that loss head: where the forward pass
returned some, a loss variable the head has no gradient for has an unknown
one (an `add_loss` term may read it), and one it has a gradient for is
logged without their part. Nothing of the training computation
changes: the added operations only read the step's values, and their result
goes only into the metric's variable.
"""

import dataclasses
import inspect
import math

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax.extend.core import Literal, jaxpr_as_fun

from loss_param_tracker.capture import PROBE_MAX_ELEMENTS, PROBE_ROWS, PROBE_STEPS, HookedCapture, probe_start
from loss_param_tracker.discovery import Places, variable_key


class _GradientNorms(keras.metrics.Metric):
    """Carries the capture's sums and maxes, and its curvature probe, through the compiled step; reports nothing."""

    def __init__(self, columns, slots):
        super().__init__(name="loss_param_tracker_gradient_norms", dtype="float32")
        self.sums_and_maxes = self.add_variable(
            shape=(2, columns), initializer="zeros", dtype="float32", name="sums_and_maxes"
        )
        self.probe = self.add_variable(
            shape=(PROBE_ROWS, slots), initializer=lambda shape, dtype=None: probe_start(shape[1]), dtype="float32",
            name="probe",
        )

    def update_state(self, *args, **kwargs):
        pass  # written by the capture only

    def reset_state(self):
        pass  # Keras resets metrics before validation too: the capture resets it at epoch start

    def result(self):
        return {}  # nothing in the logs


@dataclasses.dataclass(eq=False)
class _Step:
    """What the hooks see of one traced training step."""

    grads: list = None
    optimizer_variables: list = None
    head: tuple = None  # (x, y, y_pred, sample_weight) as handed to compute_metrics
    forward_losses: bool = None  # whether the forward pass returned add_loss terms
    curvature: tuple = None  # (the loss head's gradient function, the values it was taken at, their variables)
    custom_gradient: frozenset = frozenset()  # keys of the variables the head reads through a custom_vjp: not probed


def flat_reader(variables):
    """A read of all `variables`, flattened and concatenated as float64: one compiled call and one copy a dtype.

    The values are joined on their device by one compiled concatenation
    per dtype (no conversion there: a float64 on the host holds each
    exactly): 47 variables of the perceptual benchmark in 0.19 ms, where
    a `device_get` of each took 0.48. Fewer than `_JOINED_FROM` variables
    are read one by one (the compiled call alone costs 40 µs, a variable's
    read 13). Where the joined read fails and the variables' own reads
    work (arrays on devices one computation cannot join), they are read
    one by one, for that read and for the rest of the reader's life.
    """
    variables = list(variables)
    joined = len(variables) >= _JOINED_FROM

    def one_by_one():
        return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.device_get(_values(variables))])

    def read():
        nonlocal joined
        if joined:
            try:
                return _read_joined(_values(variables))
            except Exception:  # noqa: BLE001 - below, the variables' own reads tell why
                flat = one_by_one()  # a variable that cannot be read raises here, and the joined read stays
                joined = False
                return flat
        return one_by_one()

    return read


_JOINED_FROM = 8


def _values(variables):
    return [getattr(v, "value", v) for v in variables]


@jax.jit
def _joined(values):
    """The values flattened and concatenated, one array per dtype, in the order of the dtypes' first values."""
    parts = {}
    for value in values:
        parts.setdefault(value.dtype, []).append(jnp.ravel(value))
    return tuple(jnp.concatenate(group) for group in parts.values())


def _read_joined(values):
    parts = [np.asarray(part, np.float64) for part in jax.device_get(_joined(values))]
    if len(parts) == 1:
        return parts[0]
    # Each dtype's elements back to the variables' order.
    ranges, start = {}, 0
    for value in values:
        ranges.setdefault(value.dtype, []).append(np.arange(start, start + value.size))
        start += value.size
    flat = np.empty(start, np.float64)
    flat[np.concatenate([np.concatenate(group) for group in ranges.values()])] = np.concatenate(parts)
    return flat


def writes_summaries(model):
    """Whether this process writes: of a multi-process JAX fit, process 0 only."""
    return jax.process_index() == 0


class StepCapture(HookedCapture):
    """Accumulates gradient norms of the loss's variables and the model's weights (JAX)."""

    _HOOKED = (
        ("model", "train_step"),
        ("model", "stateless_call"),
        ("model", "compute_metrics"),
        ("optimizer", "stateless_apply"),
    )
    _APPLY = "model.optimizer.stateless_apply"

    def __init__(self, model, loss_variables, losses, rediscover, places=Places()):
        super().__init__(model, loss_variables, losses, rediscover, places)
        self._metric = None
        self._step = None
        self._traced = {}  # {key: the value the compiled step holds} of loss variables outside its state
        self._assigned = set()  # keys of the loss variables the loss assigns, whose assignments the step drops
        self._reads = {}  # {key: whether the loss head's trace reads it}, see `_note_reads`
        self._optimizer_keys = []

    def _install(self):
        model = self._model
        self._optimizer_keys = [variable_key(v) for v in model.trainable_variables]
        self._build_slots(self._optimizer_keys)
        self._metric = _GradientNorms(len(self._slots) + 3, len(self._slots))
        model._metrics.append(self._metric)
        self._hook(model, "train_step", "train_step", self._train_step)
        self._hook(model, "stateless_call", "stateless_call", self._stateless_call)
        self._hook(model, "compute_metrics", "compute_metrics", self._compute_metrics)
        self._hook(self._optimizer, "stateless_apply", "optimizer.stateless_apply", self._stateless_apply)

    def _restore(self):
        if self._metric is not None and self._metric in self._model._metrics:
            self._model._metrics.remove(self._metric)
        super()._restore()

    def _zero_accumulators(self):
        if self._metric is not None:  # numpy values: one transfer each, where jax.numpy ran an op each
            self._metric.sums_and_maxes.assign(np.zeros(self._metric.sums_and_maxes.shape, np.float32))
            self._metric.probe.assign(probe_start(len(self._slots)))

    def _accumulated(self):
        return keras.ops.convert_to_numpy(self._metric.sums_and_maxes.value)

    def _probed(self):
        return None if self._metric is None else keras.ops.convert_to_numpy(self._metric.probe.value)

    # Hooks -------------------------------------------------------------

    def _train_step(self, original, state, data):
        step = self._step = _Step()
        try:
            logs, new_state = original(state, data)
        finally:
            self._step = None
        with self._guard("train_step"):
            new_state = self._accumulate(step, state, new_state)
        return logs, new_state

    def _stateless_call(self, original, *args, **kwargs):
        result = original(*args, **kwargs)
        if self._step is not None and self._step.forward_losses is None and kwargs.get("return_losses"):
            self._step.forward_losses = bool(result[2])
        return result

    def _compute_metrics(self, original, x, y, y_pred, sample_weight=None):
        if self._step is not None and self._step.head is None:
            self._step.head = (x, y, y_pred, sample_weight)
        return original(x, y, y_pred, sample_weight)

    def _stateless_apply(self, original, optimizer_variables, grads, trainable_variables):
        if self._step is not None and self._step.grads is None:
            self._step.grads = list(grads)
            self._step.optimizer_variables = optimizer_variables
        return original(optimizer_variables, grads, trainable_variables)

    def traced_value(self, key):
        return self._traced.get(key)

    def assignment_dropped(self, key):
        return key in self._assigned

    def _read_by_step(self, key):
        return self._reads.get(key)

    def _note_reads(self, step, forward, variables):
        """Keeps whether the loss head reads each of `variables`, the inputs of its trace `forward`.

        One it reads is read by the step. One it does not is read by no
        step where nothing else could read it: a variable of the loss's
        where the forward pass adds no `add_loss` terms (a Python branch
        decided when the step was traced can skip the code that reads it).
        """
        used = {v for eqn in forward.jaxpr.eqns for v in eqn.invars if not isinstance(v, Literal)}
        used.update(v for v in forward.jaxpr.outvars if not isinstance(v, Literal))
        for variable, var in zip(variables, forward.jaxpr.invars):
            key = variable_key(variable)
            if var in used:
                self._reads[key] = True
            elif not step.forward_losses and key not in self._places.on_the_model:
                self._reads[key] = False

    def _note_assigned(self, scope, before):
        """Keeps the loss variables the loss assigned in `scope` that Keras's step does not keep.

        The step runs the loss in a `StatelessScope` and keeps what it
        assigned to the model's non-trainable and metrics variables only:
        an assign to any other variable is dropped, at every step.
        """
        kept = {id(v) for v in (*self._model.non_trainable_variables, *self._model.metrics_variables)}
        self._assigned.update(
            variable_key(v)
            for v, value in zip(self._loss_variables, before)
            if id(v) not in kept and scope.get_current_value(v) is not value
        )

    # The step's accumulation -------------------------------------------

    def _accumulate(self, step, state, new_state):
        """Returns `new_state` with this step's norms added to the metric's variable (traced ops)."""
        if step.grads is None or len(step.grads) != len(self._optimizer_keys):
            return new_state
        optimizer_keys = dict.fromkeys(self._optimizer_keys, True)
        with self._guard("traced values"):  # a loss variable outside the model's state: a constant of this trace
            in_state = {variable_key(v) for v in self._model.variables}
            self._traced.update({
                variable_key(v): np.asarray(v.value) for v in self._loss_variables if variable_key(v) not in in_state
            })
        loss = None  # unknown, unless the loss head can be differentiated
        if "loss head" not in self._off:
            with self._guard("loss head"):
                loss = self._loss_gradients(step, state, new_state)
        head = loss or {}  # the probe measures those the optimizer is handed too
        if loss is not None:
            # A loss variable the optimizer is handed gets an array, zeros
            # where it has no gradient: the loss head's structure tells.
            optimizer_keys.update({k: _has(g) for k, g in loss.items() if k in optimizer_keys and _has(g) is not None})
            loss = {k: g for k, g in loss.items() if k not in optimizer_keys}
        self._note_step(optimizer_keys, None if loss is None else {k: _has(g) for k, g in loss.items()})
        self._blind = self._blind and "loss head" not in self._off  # that hook says why itself
        if loss and any(_has(g) is None for g in loss.values()):  # add_loss terms or a forward that may read it
            self._blind_why = self._blind_why or (_FORWARD_LOSSES if step.forward_losses else _FORWARD_READS)
            self._blind = True

        # Squared norms first, one square root for all: each operation added
        # to the compiled step costs a few microseconds on the CPU.
        inverse = self._inverse_scale(step.optimizer_variables)
        own = [(key, grad) for key, grad in (loss or {}).items() if _has(grad)]
        squares = _squared_norms(
            [*step.grads, *(grad for _, grad in own)],
            [inverse] * len(step.grads) + [None] * len(own),
            [self._slots[key] for key in [*self._optimizer_keys, *(key for key, _ in own)]],
            len(self._slots),
        )
        in_optimizer = np.array([key in optimizer_keys for key in self._slots])
        global_square = jnp.sum(jnp.where(in_optimizer, squares, 0.0), keepdims=True)
        row = jnp.concatenate([jnp.sqrt(jnp.concatenate([squares, global_square])), jnp.array([1.0, 0.0])])
        if self._skips_overflow:
            # The optimizer skips a step whose gradients overflowed: so do the
            # norms, and the step counts as skipped.
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in step.grads]))
            row = jnp.where(finite, row, np.eye(len(self._slots) + 3, dtype=np.float32)[-1])

        trainable, non_trainable, optimizer_variables, metrics = new_state
        places = [id(v) for v in self._model.metrics_variables]
        index = places.index(id(self._metric.sums_and_maxes))
        before = metrics[index]
        metrics = list(metrics)
        metrics[index] = jnp.stack([before[0] + row, jnp.maximum(before[1], row)])
        if head and step.curvature is not None and "curvature" not in self._off:
            with self._guard("curvature"):
                at = places.index(id(self._metric.probe))
                captured = before[0][len(self._slots) + 1]  # this epoch's steps before this one
                metrics[at] = self._probe_curvature(step, head, captured, metrics[at])
        return trainable, non_trainable, optimizer_variables, metrics

    def _probe_curvature(self, step, loss, captured, probe):
        """`probe` (float32 `[PROBE_ROWS, slots]`) with, in an epoch's first `PROBE_STEPS` steps, each
        watched variable's largest curvature, smallest gradient element and largest signed curvature
        (see the TensorFlow capture's).

        The curvature is the norm of the loss head's Hessian-vector product
        along a fixed direction in one variable, the others held: its
        gradient's derivative, by `jax.jvp`, one per variable (`vmap`),
        under a `lax.cond` that the other steps pass by.
        """
        grad, values, variables = step.curvature
        probed = {variable_key(v) for v in self._probe_variables()}
        picked = [
            i for i, v in enumerate(variables)
            if variable_key(v) in loss
            and variable_key(v) in probed
            and _has(loss[variable_key(v)])
            and math.prod(v.shape) <= PROBE_MAX_ELEMENTS
            and variable_key(v) not in step.custom_gradient
        ]
        if not picked:
            return probe
        slots = np.array([self._slots[variable_key(variables[i])] for i in picked])

        def measure(probe):
            # Row k of each tangent moves the k-th picked variable alone: one
            # product for all would add the cross terms, and a term's weight
            # `w * f(theta)` would read as curved through `theta`.
            directions = [_direction(value) for value in values]
            tangents = tuple(
                jnp.stack([directions[i] if i == j else jnp.zeros_like(value) for j in picked])
                for i, value in enumerate(values)
            )
            gradients, products = jax.vmap(lambda *tangent: jax.jvp(grad, tuple(values), tangent))(*tangents)
            gradients = [jnp.asarray(gradients[i][0], jnp.float32) for i in picked]  # the same in every row
            own = [jnp.asarray(products[i][k], jnp.float32) for k, i in enumerate(picked)]
            measured = jnp.stack([
                jnp.stack([jnp.linalg.norm(p) for p in own]),
                jnp.stack([jnp.min(g) for g in gradients]),
                # The curvature along the direction, signed, element by element: the largest d_i (Hd)_i.
                jnp.stack([jnp.max(jnp.asarray(directions[i], jnp.float32) * p) for i, p in zip(picked, own)]),
                jnp.stack([jnp.max(g) for g in gradients]),
            ])
            kept = probe[:, slots]
            folded = jnp.stack([
                jnp.maximum(kept[0], measured[0]), jnp.minimum(kept[1], measured[1]), jnp.maximum(kept[2], measured[2]),
                jnp.maximum(kept[3], measured[3]),
            ])
            # A zero gradient measures nothing, nor does a step whose figures are NaN or overflowed.
            seen = jnp.stack([jnp.any(g != 0) for g in gradients]) & jnp.all(jnp.isfinite(measured), axis=0)
            return probe.at[:, slots].set(jnp.where(seen, folded, kept))

        return jax.lax.cond(captured < PROBE_STEPS, measure, lambda probe: probe, probe)

    def _inverse_scale(self, optimizer_variables):
        """1 / the optimizer's loss scale in this step, or `None` for an optimizer that does not scale."""
        one = jnp.ones((), jnp.float32)
        mapping = list(zip(self._optimizer.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping):
            scale = self._optimizer.scale_loss(one)
        return None if scale is one else 1.0 / jnp.asarray(scale, jnp.float32)

    def _loss_gradients(self, step, state, new_state):
        """`{key: gradient, None or False}` of the trainable loss variables, `None` if the loss head was not seen.

        `False` for a variable whose gradient is structurally zero, or that
        the loss reads as a Python or numpy value (no gradient); `None` for
        one whose head gradient is zero where the forward pass may read it,
        which the head leaves out: where it had `add_loss` terms, or for a
        variable found on the model's layers.
        """
        variables = [v for v in self._loss_variables if v.trainable]
        if step.head is None:
            return None if variables else {}
        model = self._model
        x, y, y_pred, sample_weight = step.head
        # The loss sees the trainable values the step started with, and the
        # non-trainable ones its forward pass left (a step counter a layer
        # advances), as in Keras's own `compute_loss_and_updates`.
        trainable, _, _, metrics = state
        non_trainable = new_state[1]
        mapping = [
            *zip(model.trainable_variables, trainable),
            *zip(model.non_trainable_variables, non_trainable),
            *zip(model.metrics_variables, metrics),
        ]
        keys = {variable_key(v) for v in variables}
        mapping = [(v, value) for v, value in mapping if variable_key(v) not in keys]
        kwargs = {"training": True} if "training" in inspect.signature(model.compute_loss).parameters else {}

        # A variable the optimizer is handed takes its value from the state.
        current = dict(zip(map(variable_key, model.trainable_variables), trainable))
        values = [current[variable_key(v)] if variable_key(v) in current else v.value for v in variables]

        def head(traced):
            """The loss of the values of the variables at indices `traced` (the others as they are)."""

            def loss_of(chosen):
                given = list(values)
                for i, value in zip(traced, chosen):
                    given[i] = value
                with keras.StatelessScope(state_mapping=mapping + list(zip(variables, given))) as scope:
                    before = [scope.get_current_value(v) for v in self._loss_variables]
                    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, **kwargs)
                self._note_assigned(scope, before)
                return jnp.asarray(loss, jnp.float32)

            return loss_of

        if not variables:  # nothing to differentiate: one trace of the loss all the same, for what it assigns
            jax.make_jaxpr(head([]))([])
            return {}

        # The loss's Python runs once, here: the gradients, the probe's
        # product, the search for gradients with no path to the loss and for
        # custom gradients all evaluate this one trace (a loss with Python
        # state, a call counter, sees one call more a trace of the step, not
        # three).
        traced = list(range(len(variables)))
        try:
            forward = jax.make_jaxpr(head(traced))(values)
        except _CONCRETE as error:
            # The loss reads some variable as a Python or numpy value
            # (float(), np.asarray, an `if` on it): no gradient reaches it,
            # and handed to the optimizer it would fail the step as here.
            concrete = _read_concretely(head, values, traced)
            if not concrete:
                raise error
            traced = [i for i in traced if i not in concrete]
            forward = jax.make_jaxpr(head(traced))([values[i] for i in traced]) if traced else None
        result = {variable_key(v): False for v in variables}  # read as a value: no gradient
        self._reads.update({variable_key(v): True for i, v in enumerate(variables) if i not in traced})  # as values
        if forward is None:
            return result
        self._note_reads(step, forward, [variables[i] for i in traced])
        chosen = [values[i] for i in traced]
        closed = jax.make_jaxpr(jax.grad(lambda chosen: jaxpr_as_fun(forward)(*chosen)[0]))(chosen)
        grad = jaxpr_as_fun(closed)
        grads = grad(*chosen)  # those the optimizer has are left unused, and compiled away
        step.curvature = (grad, chosen, [variables[i] for i in traced])
        step.custom_gradient = frozenset(variable_key(variables[traced[i]]) for i in _through_custom_vjp(forward.jaxpr))
        graph = closed.jaxpr
        for i, g, out in zip(traced, grads, graph.outvars):
            key = variable_key(variables[i])
            if not _symbolic_zero(graph, out):
                result[key] = g
            elif step.forward_losses or key in self._places.on_the_model:
                result[key] = None
        return result


# Why a loss variable's gradient is unknown where the forward pass adds terms.
_FORWARD_LOSSES = (
    "the forward pass adds add_loss terms, which the tracker does not differentiate: a loss "
    "variable the loss head has no gradient for may have one in them, so its gradient is unknown"
)


# Why the gradient of a variable found on the model is unknown where the loss head has none.
_FORWARD_READS = (
    "a variable found on the model's layers may be read by its forward pass, which the tracker "
    "does not differentiate on JAX: where the loss head has no gradient for it, its gradient is unknown"
)


# What JAX raises where a traced value is used as a concrete one.
_CONCRETE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)


def _read_concretely(head, values, indices):
    """The `indices` of the variables that differentiating `head` needs the values of (a `_CONCRETE`
    error), found by halves: a network's weights beside one such variable cost a few traces, not one each."""
    try:
        jax.make_jaxpr(jax.grad(head(indices)))([values[i] for i in indices])
    except _CONCRETE:
        if len(indices) == 1:
            return list(indices)
        half = len(indices) // 2
        return _read_concretely(head, values, indices[:half]) + _read_concretely(head, values, indices[half:])
    return []


# The primitives of a function whose gradient its code gives (`jax.custom_vjp`, `jax.custom_gradient`,
# `keras.ops.custom_gradient`): a gradient reversal's is minus the derivative. A `custom_jvp` gives
# the derivative itself (`jax.nn.relu`'s, `softmax`'s), and is probed through.
_CUSTOM_VJP = frozenset({"custom_vjp_call", "custom_vjp_call_jaxpr"})


def _through_custom_vjp(jaxpr):
    """The indices of `jaxpr`'s inputs from which a path to its first output passes a `_CUSTOM_VJP` call.

    The probe does not measure those: its product would be the derivative
    of a gradient the code chose, whose intent (ascent, a straight-through
    estimate) the concave and linear causes' advice cannot know. An
    operation that calls a function holding such a call anywhere counts as
    one, for every input it takes.
    """
    reach, hidden = {}, {}  # {var: set of input indices}
    for index, var in enumerate(jaxpr.invars):
        reach[var], hidden[var] = {index}, set()
    for eqn in jaxpr.eqns:
        inputs = [v for v in eqn.invars if not isinstance(v, Literal)]
        reached = set().union(*(reach.get(v, set()) for v in inputs))
        custom = eqn.primitive.name in _CUSTOM_VJP or any(_holds_custom_vjp(j) for j in _inner_jaxprs(eqn))
        through = reached if custom else set().union(*(hidden.get(v, set()) for v in inputs))
        for var in eqn.outvars:
            reach[var], hidden[var] = reached, through
    out = jaxpr.outvars[0]
    return set() if isinstance(out, Literal) else hidden.get(out, set())


def _holds_custom_vjp(jaxpr):
    return any(
        eqn.primitive.name in _CUSTOM_VJP or any(_holds_custom_vjp(j) for j in _inner_jaxprs(eqn)) for eqn in jaxpr.eqns
    )


def _inner_jaxprs(eqn):
    """The jaxprs an equation calls (a `jit`'s, a `cond`'s branches, a loop's body)."""
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            inner = getattr(item, "jaxpr", item)  # a ClosedJaxpr's, or a Jaxpr
            if hasattr(inner, "eqns"):
                yield inner


def _direction(value):
    """A fixed, generic direction in a variable's space (see the TensorFlow capture's `_direction`)."""
    size = math.prod(np.shape(value))
    return jnp.reshape(1.0 + 0.5 * jnp.sin(jnp.arange(size, dtype=jnp.float32) * 2.3 + 0.7), np.shape(value)).astype(
        jnp.result_type(value)
    )


def _has(grad):
    """Whether `_loss_gradients` found a gradient: an array; `False` for none; `None` where it cannot tell."""
    return grad if grad is None or grad is False else True


# A gradient of at most this many elements is reduced with the others of its shape.
_SMALL = 1 << 12


def _squared_norms(grads, inverse_scales, slots, size):
    """float32 `[size]`: the squared L2 norm of `grads[i]`, times `inverse_scales[i]` first (`None`: 1), at `slots[i]`; 0 elsewhere.

    XLA on the CPU runs each reduction as a kernel of its own, a few
    microseconds each, and its compile time grows with the number of
    operations: small gradients of one shape (a deep net's biases and
    normalization scales, a thousand branches' kernels) are stacked and
    reduced together, and the results put in place by one gather.

    The gradients are read behind an optimization barrier: without it XLA
    shares each square with the optimizer's own (Adam's second moment) and
    writes it out whole for both to read, where each would otherwise stay
    inside its own kernel. On the MLP benchmark the step's extra went from
    +0.13 to +0.15 ms to +0.01 to +0.06 (of a 1.2 ms step).
    """
    groups = {}
    for i, grad in enumerate(grads):
        shape = tuple(np.shape(grad))
        # A larger gradient is a group of its own: stacking would copy it.
        key = (shape, jnp.result_type(grad), inverse_scales[i] is None) if math.prod(shape) <= _SMALL else i
        groups.setdefault(key, []).append(i)
    grads = _apart(list(grads))
    parts, order = [], []
    for members in groups.values():
        stacked = jnp.stack([grads[i] for i in members])
        stacked = _scaled(stacked, inverse_scales[members[0]])
        parts.append(jnp.sum(jnp.square(stacked), axis=tuple(range(1, stacked.ndim))))
        order += members
    parts.append(jnp.zeros((1,), jnp.float32))  # where no gradient is
    where = np.full(size, len(order))
    where[[slots[i] for i in order]] = np.arange(len(order))
    return jnp.concatenate(parts)[where]


def _apart(arrays):
    """`arrays` behind `jax.lax.optimization_barrier` (the same values), where this JAX has it."""
    barrier = getattr(jax.lax, "optimization_barrier", None)  # JAX 0.4.30 has none
    return arrays if barrier is None else barrier(arrays)


def _scaled(grad, inverse_scale):
    grad = jnp.asarray(grad, jnp.float32)
    return grad if inverse_scale is None else grad * inverse_scale


def _symbolic_zero(graph, out):
    """Whether `out`, an output of a gradient's jaxpr, is JAX's zero for "no dependence".

    JAX gives an input the loss does not depend on differentiably a zero
    that is a literal, or a literal broadcast to its shape, rather than a
    computed value: that is what this looks for.
    """
    if _zero_literal(out):
        return True
    for eqn in graph.eqns:
        if out in eqn.outvars:
            return eqn.primitive.name == "broadcast_in_dim" and all(_zero_literal(v) for v in eqn.invars)
    return False


def _zero_literal(var):
    """Whether a jaxpr variable is a literal zero (a constant of the trace, not a traced value)."""
    if not isinstance(var, Literal) or isinstance(var.val, jax.core.Tracer):
        return False
    return not np.any(np.asarray(var.val))
