"""`scan`: the training loss over a range of one variable's values, the model as it stands.

The tracker's curvature probe sees the loss where a variable stands: whether
it curves down there (`concave`) or not at all (`linear`). Whether the loss
turns up farther on, a minimum descent would settle at, it cannot see; a
loss evaluated at the values farther on can.
"""

import inspect
from typing import NamedTuple, Sequence, Union

import keras
import numpy as np

from loss_param_tracker import discovery


class Scan(NamedTuple):
    """The loss at each value, and where it was lowest.

    Attributes:
        values: The values given, as float64 arrays of the variable's shape.
        losses: The training loss at each, NaN where it was not finite.
        lowest: The index of the lowest loss; `None` where none was finite.
    """

    values: list
    losses: np.ndarray
    lowest: Union[int, None]

    @property
    def turns_up(self):
        """Whether the loss turns up on both sides of its lowest value inside the range: the range's outermost
        finite losses are both above it (by more than float32's rounding: a loss that falls to a plateau at
        the range's end, as one saturating at 0, does not turn up)."""
        finite = np.flatnonzero(np.isfinite(self.losses))
        if self.lowest is None or not finite[0] < self.lowest < finite[-1]:
            return False
        above = self.losses[self.lowest] + 1e-6 * abs(self.losses[self.lowest])
        return bool(self.losses[finite[0]] > above and self.losses[finite[-1]] > above)

    def __str__(self):
        rows = [
            f"{_shown(value):>12s}  {loss:.6g}{'  <- lowest' if i == self.lowest else ''}"
            for i, (value, loss) in enumerate(zip(self.values, self.losses))
        ]
        if self.lowest is None:
            where = "the loss was not finite at any value"
        elif self.turns_up:
            where = "the loss turns up inside the range: a minimum there"
        else:
            where = "the loss is lowest at an end of the range: no minimum inside it"
        return "\n".join([*rows, where])


def scan(
    model: keras.Model,
    x,
    y,
    variable: Union[str, keras.Variable, object],
    values: Sequence,
    sample_weight=None,
) -> Scan:
    """The training loss on `(x, y)` with `variable` set to each of `values`, the model as it stands.

    Where the tracker says a variable's objective curves down (`concave`),
    or that descent drives it one way, this shows whether the loss turns up
    farther on: a minimum there is where descent, once `make_trainable`
    hands it to the optimizer, can settle. The model's predictions are
    computed once (`training=False`), then the loss (`model.compute_loss`:
    the compiled loss and the model's `add_loss` terms) once a value.
    Every variable of the model and of the loss's variables found by the
    tracker's discovery is set back afterwards to the very value it had,
    so a loss that assigns a statistic as it runs leaves no trace.

    Example:

    ```python
    print(loss_param_tracker.scan(model, x[:256], y[:256], "loss/NTXent/log_tau", [-4, -3, -2, -1, 0]))
    ```

    Args:
        model: A compiled `keras.Model`.
        x: Inputs, a batch or a few (the loss is computed on all at once).
        y: Their targets, as `fit` takes them.
        variable: The variable: a `keras.Variable` or `tf.Variable`, or its
            path as the tracker's warnings name it.
        values: The values to try, each a number or an array of the
            variable's shape.
        sample_weight: Optional, as `fit` takes it.

    Returns:
        A `Scan`: `print` it, or read `losses` and `turns_up`.

    Raises:
        TypeError: When `model` is not a `keras.Model`, or `variable` is not
            a variable or a path.
        ValueError: When the model is not compiled, `values` is empty or a
            value does not fit the variable's shape, or no variable the
            tracker finds has the path.
    """
    discovery.check_model(model, "scan(model, ...)")
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"scan(model, ...) received {type(model).__name__}, which is not compiled: the loss it "
            "computes is the compiled one. Call model.compile(...) first."
        )
    found = discovery.discover(model)
    target = _variable(found, variable)
    values = [_value(target, value) for value in values]
    if not values:
        raise ValueError("scan(values=[]) received no values: give the values to try, such as [-2, -1, 0, 1, 2].")
    held = _held(model, found, target)
    saved = [np.array(keras.ops.convert_to_numpy(v.value if isinstance(v, keras.Variable) else v)) for v in held]
    losses = []
    try:
        y_pred = model(x, training=False)
        for value in values:
            target.assign(keras.ops.convert_to_tensor(value, dtype=keras.backend.standardize_dtype(target.dtype)))
            loss = _loss(model, x, y, y_pred, sample_weight)
            losses.append(float(keras.ops.convert_to_numpy(loss)))
    finally:
        for v, value in zip(held, saved):
            v.assign(value)
    losses = np.array(losses, dtype=np.float64)
    losses[~np.isfinite(losses)] = np.nan
    lowest = None if np.isnan(losses).all() else int(np.nanargmin(losses))
    return Scan(values, losses, lowest)


def _loss(model, x, y, y_pred, sample_weight):
    """The training loss as Keras's step computes it; a `compute_loss` override written before Keras
    3.3 gave it `training` is called without it, as Keras's step calls it."""
    if "training" in inspect.signature(model.compute_loss).parameters:
        return model.compute_loss(x, y, y_pred, sample_weight, training=True)
    return model.compute_loss(x, y, y_pred, sample_weight)


def _variable(found, variable):
    if isinstance(variable, str):
        by_path = {item.path: item.variable for item in found.everything()}
        if variable not in by_path:
            raise ValueError(
                f"Received: scan(variable={variable!r}). No variable the tracker finds has that path; "
                f"those found: {sorted(by_path)}."
            )
        return by_path[variable]
    if not discovery.is_variable(variable):
        raise TypeError(
            f"scan(variable=...) takes a variable or its path as the tracker names it; received "
            f"{discovery.short_repr(variable)}."
        )
    return variable


def _value(variable, value):
    shape = tuple(variable.shape)
    array = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(array, shape).copy()
    except ValueError:
        raise ValueError(
            f"scan(values=[...]) received a value of shape {array.shape} for a variable of shape {shape}: "
            "give numbers, or arrays of its shape."
        ) from None


def _held(model, found, target):
    """Every variable a loss computation may assign: the model's, and those the tracker finds."""
    held, keys = [], set()
    for v in [target, *model.variables, *model.metrics_variables, *(item.variable for item in found.everything())]:
        key = discovery.variable_key(v)
        if key not in keys:
            keys.add(key)
            held.append(v)
    return held


def _shown(value):
    """A value as a row shows it: one number where every element is the same."""
    if value.size == 1 or np.all(value == value.flat[0]):
        return f"{float(value.flat[0]):.6g}"
    return np.array2string(value, precision=4)
