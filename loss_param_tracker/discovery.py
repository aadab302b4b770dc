"""Finds the variables that belong to a compiled loss, and names them.

A loss's parameters can live in many places: a `tf.Variable` or
`keras.Variable` attribute, the weights of a `keras.layers.Layer` the loss
holds, a nested `keras.losses.Loss`, or lists, tuples and dicts of these. For a
model compiled with a list or dict of losses, each loss is named by its
output. The path of each variable is stable and readable, e.g.
`loss/GaussianNLL/log_var` or `loss/y2/Uncertainty/log_vars/0`, and serves as
its tag prefix.
"""

import dataclasses
import logging

import keras
import tensorflow as tf

logger = logging.getLogger("loss_param_tracker")

LOSS_PREFIX = "loss"
MODEL_PREFIX = "model"


@dataclasses.dataclass(frozen=True)
class LossVariable:
    """A variable of the compiled loss.

    Attributes:
        path: Stable tag prefix, e.g. `loss/GaussianNLL/log_var`.
        variable: The `tf.Variable` or `keras.Variable` itself.
        owner: The `keras.losses.Loss` (or other object) it was found on,
            `None` for variables passed by the user.
        container: The object, list or dict that holds the variable directly
            (`None` inside a layer or for variables passed by the user).
        key: Its attribute name, index or key in `container`.
    """

    path: str
    variable: object
    owner: object = None
    container: object = None
    key: object = None


def is_variable(obj):
    return isinstance(obj, (tf.Variable, keras.Variable))


def check_variables(variables):
    """Returns `variables` as a list, or raises a TypeError naming what is not a variable."""
    variables = list(variables or [])
    for variable in variables:
        if not is_variable(variable):
            raise TypeError(
                "LossParamTracker(variables=...) takes tf.Variable or keras.Variable "
                f"objects; received {type(variable).__name__}: {variable!r}."
            )
    return variables


def is_float_variable(variable):
    return tf.as_dtype(variable.dtype).is_floating


def variable_key(variable):
    """Identity of a variable, shared by a `keras.Variable` and its backing `tf.Variable`."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return id(variable)


def compiled_losses(model):
    """Returns `[(output_name or None, loss)]` for the loss `model` was compiled with.

    Raises:
        ValueError: When the model has not been compiled.
    """
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"LossParamTracker needs a compiled model; received {type(model).__name__} "
            "that was never compiled. Call model.compile(optimizer=..., loss=...) "
            "before model.fit."
        )
    return named_losses(model, model.loss)


@dataclasses.dataclass(frozen=True)
class Discovered:
    """What discovery found on a compiled model.

    Attributes:
        variables: The loss's float variables, as `LossVariable`s, in the
            order found.
        losses: Every `keras.losses.Loss` instance walked, nested ones
            included.
    """

    variables: list
    losses: list


def named_losses(model, loss):
    """Returns `[(output_name or None, loss)]` for a loss given as `compile` takes it."""
    names = list(getattr(model, "output_names", None) or [])
    if isinstance(loss, dict):
        return list(loss.items())
    if isinstance(loss, (list, tuple)):
        if len(loss) == 1:
            return [(None, loss[0])]
        return [(names[i] if i < len(names) else str(i), item) for i, item in enumerate(loss)]
    return [(None, loss)]


def discover(model, extra_variables=(), losses=None):
    """Finds the float variables of `model`'s compiled loss, each with its path.

    Variables reachable along several paths are reported once, under the first.
    `extra_variables` (those discovery cannot see, such as closure variables
    of a plain-function loss) are added as `loss/extra/<name>`. Paths are
    unique: a second variable of the same name gets `<name>_2`, and so on.
    Non-float variables (step counters) are skipped, with the reason in the
    debug log.

    Args:
        model: The Keras model.
        extra_variables: Variables to add as `loss/extra/<name>`.
        losses: `[(output_name, loss)]` to walk instead of the compiled loss
            (see `named_losses`), for a model not compiled yet.

    Raises:
        ValueError: When the model has not been compiled and `losses` is not given.
        TypeError: When `extra_variables` holds something that is not a variable.
    """
    if losses is None:
        losses = compiled_losses(model)
    found, walked = [], []
    seen_variables = set()
    visited = set()
    paths = set()

    def add(path, variable, owner, container=None, key=None):
        identity = variable_key(variable)
        if identity in seen_variables:
            return
        seen_variables.add(identity)
        if not is_float_variable(variable):
            logger.debug(
                "Skipping %s: dtype %s is not a float, it has no gradient.",
                path,
                tf.as_dtype(variable.dtype).name,
            )
            return
        found.append(LossVariable(_unique(path, paths), variable, owner, container, key))

    def walk(obj, path, owner, container=None, key=None):
        if is_variable(obj):
            add(path, obj, owner, container, key)
            return
        if id(obj) in visited:
            return
        if isinstance(obj, keras.layers.Layer):
            visited.add(id(obj))
            for weight in obj.weights:
                add(f"{path}/{_weight_name(weight)}", weight, owner)
        elif isinstance(obj, keras.losses.Loss):
            visited.add(id(obj))
            walked.append(obj)
            for name, value in vars(obj).items():
                walk(value, f"{path}/{name.lstrip('_') or name}", obj, obj, name)
        elif isinstance(obj, dict):
            visited.add(id(obj))
            for name, value in obj.items():
                walk(value, f"{path}/{name}", owner, obj, name)
        elif isinstance(obj, (list, tuple)):
            visited.add(id(obj))
            for index, value in enumerate(obj):
                walk(value, f"{path}/{index}", owner, obj, index)

    for output, loss in losses:
        if isinstance(loss, keras.losses.Loss):
            prefix = "/".join(p for p in (LOSS_PREFIX, output, type(loss).__name__) if p)
            walk(loss, prefix, loss)
    for variable in check_variables(extra_variables):
        add(f"{LOSS_PREFIX}/extra/{_weight_name(variable)}", variable, None)
    return Discovered(found, walked)


def model_weight_paths(model, exclude=()):
    """Returns `[(path, variable)]` for every weight of the model, with unique paths.

    Weights whose `variable_key` is in `exclude` (loss variables attached to
    the model) are left out.
    """
    result = []
    used = set()
    for weight in model.weights:
        if variable_key(weight) in exclude:
            continue
        path = f"{MODEL_PREFIX}/{getattr(weight, 'path', None) or _weight_name(weight)}"
        result.append((_unique(path, used), weight))
    return result


def _unique(path, used):
    """`path`, or `path_2`, `path_3`, ... when taken; adds the result to `used`."""
    unique, n = path, 1
    while unique in used:
        n += 1
        unique = f"{path}_{n}"
    used.add(unique)
    return unique


def _weight_name(variable):
    name = getattr(variable, "name", "") or "variable"
    return name.split(":")[0]
