"""`make_trainable(model, loss)`: the fix for loss variables that `fit` does not train."""

import keras

from loss_param_tracker import discovery

# The model attribute that holds the loss's variables. Keras tracks the
# keras.Variables of a list assigned to a model attribute: `fit` trains them
# and weight files save them.
ATTRIBUTE = "loss_parameters"


def make_trainable(model, loss=None):
    """Registers the loss's trainable variables with the model, so `model.fit` trains them.

    In Keras 3, `fit` only optimizes `model.trainable_variables`; a variable
    held by a `keras.losses.Loss` is not one of them. This finds the loss's
    variables with the same discovery as `LossParamTracker`, and attaches
    them to the model (a list in the attribute `loss_parameters`). A raw `tf.Variable` held
    by the loss is replaced, on the loss, by a `keras.Variable` with the same
    value, name and `trainable` flag, since Keras trains and saves only those.
    Afterwards `model.save_weights`/`load_weights` and
    `keras.callbacks.BackupAndRestore` keep the loss's parameters.

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
    items = loss.values() if isinstance(loss, dict) else loss if isinstance(loss, (list, tuple)) else [loss]
    for item in items:
        if not isinstance(item, keras.losses.Loss):
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
