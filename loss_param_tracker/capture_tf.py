"""Gradient capture inside the real training step (TensorFlow backend).

This is the only module that knows how Keras's TensorFlow trainer runs a step.
It hooks three instance attributes, which the traced `train_step` looks up at
trace time:

- `model.compute_loss`: runs under a small extra `GradientTape` that watches
  only the loss variables the optimizer is not handed, so their gradients come
  from the same forward pass (the backward of the loss head only, no second
  forward pass);
- `model.optimizer.apply`: sees the exact gradients of the step, and adds a
  few ops that accumulate each variable's gradient norm (sum and max over the
  steps) into variables of this module;
- each `keras.losses.Loss`'s `call`: fails fast when it creates a variable.

Nothing of the training computation changes: the hooks call the originals with
the same arguments and only read their tensors. The hooks stay installed for
the model's lifetime, because a traced train function keeps them and Keras may
retrace it (a last partial batch) in a later `fit`.
"""

import dataclasses

import keras
import tensorflow as tf

from loss_param_tracker.discovery import variable_key

_ATTRIBUTE = "_loss_param_tracker_capture"


class LossVariableCreatedError(RuntimeError):
    """A `keras.losses.Loss` created a variable inside `call`."""


@dataclasses.dataclass(frozen=True)
class GradientStats:
    """Gradient statistics of one variable over the steps since the last reset.

    Attributes:
        steps: Number of captured training steps.
        has_gradient: Whether the loss has a gradient for it; `None` before
            the first traced step.
        seen_by_optimizer: Whether the optimizer was handed the variable.
        mean: Mean L2 norm of the gradient (NaN when none or non-finite).
        max: Max L2 norm of the gradient.
    """

    steps: int
    has_gradient: bool = None
    seen_by_optimizer: bool = False
    mean: float = float("nan")
    max: float = float("nan")


class StepCapture:
    """Accumulates gradient norms of the loss's variables and the model's weights.

    Use `StepCapture.attach(model, loss_variables, losses)`: one capture per
    model and optimizer, shared by every tracker of that model.
    """

    def __init__(self, model, loss_variables, losses):
        self._model = model
        self._optimizer = model.optimizer
        self._loss_variables = list(loss_variables)
        self._losses = list(losses)
        self._slots = None  # {variable_key: index}, fixed at the first traced step
        self._has_gradient = {}
        self._seen = set()
        self._pending = None
        self._sum = self._max = self._steps = None

    @classmethod
    def attach(cls, model, loss_variables, losses):
        """Returns the capture of `model`, installing one when needed.

        A new capture is installed when the model has none, or when its
        optimizer or loss variables changed since (a recompile); the train
        function is then rebuilt so that its next trace runs the hooks.
        """
        capture = model.__dict__.get(_ATTRIBUTE)
        keys = [variable_key(v) for v in loss_variables]
        if (
            capture is not None
            and capture._optimizer is model.optimizer
            and [variable_key(v) for v in capture._loss_variables] == keys
        ):
            return capture
        if capture is not None:
            capture._uninstall()
        capture = cls(model, loss_variables, losses)
        capture._install()
        object.__setattr__(model, _ATTRIBUTE, capture)
        if model.train_function is not None:
            model.make_train_function(force=True)
        return capture

    def reset(self):
        """Zeroes the accumulators (start of an epoch)."""
        if self._sum is not None:
            self._sum.assign(tf.zeros_like(self._sum))
            self._max.assign(tf.zeros_like(self._max))
            self._steps.assign(0)

    def read_all(self, variables):
        """Returns `{key: GradientStats}` for `{key: variable}`, reading the device once."""
        if self._slots is None:
            return {key: GradientStats(steps=0) for key in variables}
        steps = int(self._steps.numpy())
        sums, maxes = self._sum.numpy(), self._max.numpy()
        result = {}
        for key in variables:
            index = self._slots.get(key)
            if index is None:
                result[key] = GradientStats(steps=0)
                continue
            has_gradient = self._has_gradient.get(key)
            captured = steps > 0 and has_gradient
            result[key] = GradientStats(
                steps=steps,
                has_gradient=has_gradient,
                seen_by_optimizer=key in self._seen,
                mean=float(sums[index] / steps) if captured else float("nan"),
                max=float(maxes[index]) if captured else float("nan"),
            )
        return result

    def read_global(self):
        """Returns (steps, mean, max) of the global norm of the optimizer's gradients."""
        if self._slots is None:
            return 0, float("nan"), float("nan")
        steps = int(self._steps.numpy())
        if steps == 0:
            return 0, float("nan"), float("nan")
        return steps, float(self._sum[-1].numpy() / steps), float(self._max[-1].numpy())

    # Hooks -------------------------------------------------------------

    def _install(self):
        model, optimizer = self._model, self._optimizer
        self._originals = [
            (model, "compute_loss", model.__dict__.get("compute_loss")),
            (optimizer, "apply", optimizer.__dict__.get("apply")),
        ]
        original_compute_loss = model.compute_loss
        original_apply = optimizer.apply

        def compute_loss(*args, **kwargs):
            return self._compute_loss(original_compute_loss, args, kwargs)

        def apply(grads, trainable_variables=None):
            self._record_step(grads, trainable_variables)
            return original_apply(grads, trainable_variables)

        object.__setattr__(model, "compute_loss", compute_loss)
        object.__setattr__(optimizer, "apply", apply)
        for loss in self._losses:
            self._originals.append((loss, "call", loss.__dict__.get("call")))
            loss.call = _guard_variable_creation(loss, loss.call)

    def _uninstall(self):
        for obj, name, original in self._originals:
            if original is None:
                obj.__dict__.pop(name, None)
            else:
                object.__setattr__(obj, name, original)

    def _compute_loss(self, original, args, kwargs):
        training = kwargs.get("training", args[4] if len(args) > 4 else True)
        registered = {variable_key(v) for v in self._model.trainable_variables}
        watched = [
            v
            for v in self._loss_variables
            if v.trainable and variable_key(v) not in registered
        ]
        if training is False or not watched:
            return original(*args, **kwargs)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([_tf_variable(v) for v in watched])
            loss = original(*args, **kwargs)
        self._pending = (tape, loss, watched, _graph_key())
        return loss

    def _record_step(self, grads, variables):
        if variables is None:
            variables = self._optimizer.trainable_variables
        grads, variables = list(grads), list(variables)
        by_key = {variable_key(v): g for v, g in zip(variables, grads)}
        optimizer_keys = list(by_key)
        by_key.update(self._pending_gradients())
        if self._slots is None:
            self._build_slots(optimizer_keys)
        self._seen.update(k for k in optimizer_keys if k in self._slots)

        scale = _loss_scale(self._optimizer)
        squares = [None] * len(self._slots)
        for key, index in self._slots.items():
            # Absent: this step computed no gradients for it at all (a custom
            # train_step that skips compute_loss), so nothing is known.
            grad = by_key.get(key)
            self._has_gradient[key] = (grad is not None) if key in by_key else None
            squares[index] = (
                tf.constant(0.0) if grad is None else _squared_norm(grad, scale)
            )
        in_optimizer = [squares[self._slots[k]] for k in optimizer_keys if k in self._slots]
        squares.append(tf.add_n(in_optimizer) if in_optimizer else tf.constant(0.0))
        norms = tf.sqrt(tf.stack(squares))
        self._sum.assign_add(norms)
        self._max.assign(tf.maximum(self._max, norms))
        self._steps.assign_add(1)

    def _pending_gradients(self):
        pending, self._pending = self._pending, None
        if pending is None or pending[3] != _graph_key():
            return {}
        tape, loss, watched, _ = pending
        grads = tape.gradient(loss, [_tf_variable(v) for v in watched])
        return {variable_key(v): g for v, g in zip(watched, grads)}

    def _build_slots(self, optimizer_keys):
        keys = [variable_key(v) for v in self._loss_variables if v.trainable]
        keys += [k for k in optimizer_keys if k not in keys]
        self._slots = {key: index for index, key in enumerate(keys)}
        # One more entry at the end for the global norm. Created outside the
        # traced function, as Keras builds its optimizer.
        with tf.init_scope():
            size = len(keys) + 1
            self._sum = tf.Variable(tf.zeros([size]), trainable=False, name="lpt_grad_norm_sum")
            self._max = tf.Variable(tf.zeros([size]), trainable=False, name="lpt_grad_norm_max")
            self._steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="lpt_steps")


def _guard_variable_creation(loss, call):
    name = type(loss).__name__

    def creator(next_creator, **kwargs):
        raise LossVariableCreatedError(
            f"{name}.call created a variable ({kwargs.get('name') or 'unnamed'}) while "
            "computing the loss. A variable created in Loss.call is a new one at every "
            "call: it never trains, and tf.function rejects it. Create it once in "
            f"{name}.__init__ (e.g. self.weight = keras.Variable(1.0)) and call "
            "loss_param_tracker.make_trainable(model, loss) before fit."
        )

    def guarded_call(*args, **kwargs):
        with tf.variable_creator_scope(creator):
            return call(*args, **kwargs)

    return guarded_call


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _graph_key():
    if tf.executing_eagerly():
        return None
    return id(tf.compat.v1.get_default_graph())


def _loss_scale(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return None


def _squared_norm(grad, scale):
    if isinstance(grad, tf.IndexedSlices):
        grad = grad.values
    square = tf.reduce_sum(tf.square(tf.cast(grad, tf.float32)))
    if scale is not None:
        square = square / tf.square(tf.cast(scale, tf.float32))
    return square

