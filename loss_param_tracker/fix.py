"""`make_trainable(model, loss)`: the fix for loss variables that `fit` does not train.

Importing this module also teaches `keras.Model` to save and load them with
the whole model (`model.save`, `keras.models.load_model`): see `_install_load_hook`.
"""

import functools
import inspect
import types

import keras

from loss_param_tracker import discovery

# The model attribute that holds the loss's variables. Keras tracks the
# keras.Variables of a list assigned to a model attribute: `fit` trains them
# and weight files save them.
ATTRIBUTE = "loss_parameters"

# The key of the model's compile config that lists the attached variables, by
# discovery path, in the order of `model.loss_parameters`. It names what the
# loading process must import: without this module's hook, Keras's `compile()`
# rejects the key with a TypeError that says so, rather than dropping the values.
CONFIG_KEY = "loss_param_tracker.make_trainable"


def make_trainable(model, loss=None):
    """Registers the loss's trainable variables with the model, so `model.fit` trains them.

    In Keras 3, `fit` only optimizes `model.trainable_variables`; a variable
    held by a `keras.losses.Loss` is not one of them. This finds the loss's
    variables with the same discovery as `LossParamTracker`, and attaches
    them to the model (a list in the attribute `loss_parameters`). A raw `tf.Variable` held
    by the loss is replaced, on the loss, by a `keras.Variable` with the same
    value, name and `trainable` flag, since Keras trains and saves only those.
    Afterwards `model.save_weights`/`load_weights` and
    `keras.callbacks.BackupAndRestore` keep the loss's parameters, and so do
    `model.save("m.keras")` and `keras.models.load_model(path,
    custom_objects=...)`, in a process that has imported `make_trainable`:
    the loaded model's loss holds the learned values, they are attached to the
    loaded model (no second call needed) and the optimizer's state for them
    is restored, so `fit` goes on training them. Such a file cannot be loaded
    with `compile=False`.

    Call it before the first `fit`: before or after `compile`. Once `fit` has
    run, the optimizer is built for the variables it had; this raises rather
    than leave new variables untrained (recompile with a new optimizer).
    Calling it again attaches nothing twice.

    Example:

    ```python
    loss = GaussianNLL()
    model.compile(optimizer="adam", loss=loss)
    loss_param_tracker.make_trainable(model, loss)
    model.fit(x, y, epochs=20)  # loss.log_var trains
    model.save("m.keras")
    loaded = keras.models.load_model("m.keras", custom_objects={"GaussianNLL": GaussianNLL})
    loaded.loss.log_var  # the learned value; loaded.fit trains it further
    ```

    Args:
        model: The `keras.Model` to train.
        loss: The loss as given to `compile`: a `keras.losses.Loss`, or a
            list or dict of them. Defaults to `None`: the model's compiled
            loss.

    Returns:
        The list of the loss's variables attached to the model, all
        `keras.Variable`s (earlier calls' included).

    Raises:
        TypeError: When `model` is not a `keras.Model` or `loss` is not a
            loss, a list or a dict of losses; or when a raw `tf.Variable` sits
            in a tuple, where it cannot be replaced.
        ValueError: When `loss` is `None` and the model is not compiled.
        RuntimeError: When the model's optimizer is already built without
            these variables (fit has run).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "make_trainable(model, loss) takes a keras.Model as `model`; received "
            f"{type(model).__name__}: {_short(model)}."
        )
    named = discovery.compiled_losses(model) if loss is None else _named(model, loss)
    found = discovery.discover(model, losses=named)
    attached = list(getattr(model, ATTRIBUTE, None) or [])
    known = {discovery.variable_key(v) for v in attached}
    registered = {discovery.variable_key(v) for v in model.trainable_variables}
    new = []
    for found_variable in found.variables:
        variable = found_variable.variable
        if not variable.trainable or discovery.variable_key(variable) in known | registered:
            continue
        new.append(_as_keras_variable(found_variable))
    if not new:
        return attached
    _check_optimizer(model, new)
    if attached:
        getattr(model, ATTRIBUTE).extend(new)
    else:
        setattr(model, ATTRIBUTE, list(new))
    model.train_function = None  # the next fit traces a step that trains them
    return attached + new


def _named(model, loss):
    container = isinstance(loss, (dict, list, tuple))
    items = loss.values() if isinstance(loss, dict) else loss if container else [loss]
    for item in items:
        # Beside a Loss, compile takes names and functions for other outputs:
        # they hold no variables.
        other_output = container and (
            item is None or isinstance(item, (str, types.FunctionType, functools.partial))
        )
        if not (isinstance(item, keras.losses.Loss) or other_output):
            raise TypeError(
                "make_trainable(model, loss) takes a keras.losses.Loss, or a list or dict "
                f"of them, as `loss`; received {type(item).__name__}: {_short(item)}. "
                "Pass the loss object you gave to model.compile."
            )
    return discovery.named_losses(model, loss)


def _as_keras_variable(found):
    variable = found.variable
    if isinstance(variable, keras.Variable):
        return variable
    if isinstance(found.container, tuple) or found.container is None:
        raise TypeError(
            f"{found.path} is a tf.Variable that make_trainable cannot replace with a "
            "keras.Variable where it sits (a tuple). Hold it in a list or an attribute, "
            "or create it as keras.Variable(...) in the loss's __init__."
        )
    replacement = keras.Variable(
        variable.numpy(),
        dtype=variable.dtype.name,
        trainable=variable.trainable,
        name=variable.name.split(":")[0],
    )
    if isinstance(found.container, (list, dict)):
        found.container[found.key] = replacement
    else:
        setattr(found.container, found.key, replacement)
    return replacement


def _check_optimizer(model, new):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not optimizer.built:
        return
    raise RuntimeError(
        f"model.optimizer is already built (model.fit has run), so it cannot train the "
        f"{len(new)} new variable(s) of the loss. Call make_trainable(model, loss) before "
        "the first fit, or recompile with a fresh optimizer after it: "
        "model.compile(optimizer=keras.optimizers.Adam(...), loss=loss)."
    )


def _short(obj):
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _saved_paths(model, attached):
    """Returns the discovery path of each attached variable, for the compile config.

    Raises:
        ValueError: When a variable is not on the compiled loss, so that
            `load_model` could not find it again.
    """
    paths = {discovery.variable_key(f.variable): f.path for f in discovery.discover(model).variables}
    lost = [v.name for v in attached if discovery.variable_key(v) not in paths]
    if lost:
        raise ValueError(
            f"model.{ATTRIBUTE} holds variable(s) {lost} that the compiled loss does not "
            "hold, so keras.models.load_model could not restore them. Attach the "
            "variables of the loss the model is compiled with: make_trainable(model)."
        )
    return [paths[discovery.variable_key(v)] for v in attached]


def _reattach(model, paths):
    """Attaches the loaded model's loss variables found at `paths`, in that order.

    Raises:
        ValueError: When the loss has no variable at one of the paths.
    """
    found = list(discovery.discover(model).variables)
    variables, missing = [], []
    for path in paths:
        match = next((f for f in found if f.path == path), None)
        if match is None:
            missing.append(path)
            continue
        found.remove(match)  # a path met twice names two variables, in order
        variables.append(_as_keras_variable(match))
    if missing:
        raise ValueError(
            f"The saved model trained loss variable(s) {missing}, which the loss "
            f"re-created by load_model does not have (its variables: "
            f"{[f.path for f in discovery.discover(model).variables]}). Load it with "
            "the loss class it was saved with."
        )
    setattr(model, ATTRIBUTE, variables)


def _install_load_hook():
    """Makes `model.save` and `keras.models.load_model` keep the attached loss variables.

    The variables attached by `make_trainable` are saved as the model's own
    variables, and the optimizer's state covers them. `load_model` rebuilds the
    model and its loss from their configs, compiles it, builds the optimizer
    for `model.trainable_variables` and only then loads the saved values: so
    the loss variables must be attached between compiling and building the
    optimizer, or the model's and the optimizer's variables no longer match
    the file. No Keras hook runs there, hence these two wrappers of
    `keras.Model` methods. They act only on models that `make_trainable`
    touched: the first writes the variables' paths into the compile config,
    the second finds them again on the re-created loss and attaches them.
    """
    keras_get_compile_config = inspect.unwrap(keras.Model.get_compile_config)
    keras_compile_from_config = inspect.unwrap(keras.Model.compile_from_config)

    @functools.wraps(keras_get_compile_config)
    def get_compile_config(self):
        config = keras_get_compile_config(self)
        attached = getattr(self, ATTRIBUTE, None)
        if config and attached:
            config[CONFIG_KEY] = _saved_paths(self, attached)
        return config

    @functools.wraps(keras_compile_from_config)
    def compile_from_config(self, config):
        config = dict(config)
        paths = config.pop(CONFIG_KEY, None)
        if not paths or type(self).compile is not keras.Model.compile:
            # Unmarked, or a custom `compile` that Keras does not call: Keras's own way.
            return keras_compile_from_config(self, config)
        # Keras's compile_from_config, with the attachment before the optimizer's build.
        self.compile(**keras.saving.deserialize_keras_object(config))
        _reattach(self, paths)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    keras.Model.get_compile_config = get_compile_config
    keras.Model.compile_from_config = compile_from_config


_install_load_hook()
