"""`make_trainable(model)`: the fix for variables that `fit` does not train.

Importing this module changes nothing in Keras. `make_trainable` touches only
the model it is given, and a `.keras` file saved from such a model names this
module where Keras looks for the classes it needs (see `TrainedLossParameters`).
"""

import contextlib
import functools
import logging
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Optional, Union

import keras

from loss_param_tracker import discovery
from loss_param_tracker.snapshot import host_value

logger = logging.getLogger("loss_param_tracker")

# The model attribute that holds the attached variables. Keras tracks the
# keras.Variables of a list assigned to a model attribute: `fit` trains them
# and weight files save them. A name no user or library picks.
ATTRIBUTE = discovery.ATTACHED_ATTRIBUTE


def make_trainable(
    model: keras.Model,
    loss: Optional[Union[keras.losses.Loss, Callable, Sequence, Mapping]] = None,
    variables: Optional[Iterable] = None,  # keras.Variable, tf.Variable, or a path as the tracker names it
) -> list[keras.Variable]:
    """Hands the optimizer the variables `model.fit` would not train.

    In Keras 3, `fit` only optimizes `model.trainable_variables`. A variable
    held by a `keras.losses.Loss` (directly, in a layer, a `tf.Module` or a
    container it holds), in the closure or arguments of a function loss,
    given to `compile(loss_weights=...)` as a variable, held by a layer as
    a raw `tf.Variable`, or kept by the model where Keras does not track it
    (a namespace of settings, a loss object its `compute_loss` calls, an
    object of the user's own class) is not one of them. This finds them with the same
    discovery as `LossParamTracker` (a `tf.function` is walked as the Python
    function it wraps) and attaches their trainable ones to the model, so
    `fit` trains them with the model's optimizer. The optimizer is handed the
    very variable the loss's code reads: on TensorFlow a raw `tf.Variable` is
    wrapped, not copied, in the `keras.Variable` that Keras trains and
    saves, so code traced before the fix (a `tf.function`, a layer's
    compiled `call`) and a variable held in a tuple or a default argument
    train too. Only under a `tf.distribute` strategy, for a raw variable
    created outside its scope, is it replaced where the code finds it (the
    attribute, list, dict, closure cell or global) by a mirrored
    `keras.Variable`; `LossParamTracker` then checks on the first steps
    that the objective has a gradient for it, and says so when a reader
    kept the old one. A trainable network held by a loss has its weights
    attached. A `compile(loss_weights=...)` variable is attached only when
    passed in `variables`: the objective is linear in it, so an optimizer
    drives it down without bound. On PyTorch, an attached variable whose
    `path` another variable of the model has (two losses' `log_var`s), or
    that PyTorch cannot take as a parameter's name, gets a new one.

    Afterwards `save_weights`/`load_weights` and
    `keras.callbacks.BackupAndRestore` keep the attached variables (call
    `make_trainable` on the fresh model too, before loading), and so do
    `model.save("m.keras")` and `keras.models.load_model(path,
    custom_objects=...)` in a process that has imported `loss_param_tracker`:
    the loaded model's loss holds the learned values, they are attached to the
    loaded model and the optimizer's state for them is restored. Such a file
    cannot be loaded with `compile=False`.

    Call it before the first `fit`; the model may be built or called
    already. Once `fit` has run, the optimizer is built for the variables it
    had: this raises rather than leave new variables untrained (recompile
    with a new optimizer). Calling it again attaches nothing twice.

    Example:

    ```python
    loss = GaussianNLL()
    model.compile(optimizer="adam", loss=loss)
    loss_param_tracker.make_trainable(model)  # or make_trainable(model, loss) before compile
    model.fit(x, y, epochs=20)  # loss.log_var trains
    ```

    Args:
        model: The `keras.Model` to train.
        loss: The loss as given to `compile`: a `keras.losses.Loss`, a
            function, a `functools.partial`, or a list or dict of them.
            Defaults to `None`: the model's compiled loss (none when the
            model is not compiled yet).
        variables: Variables to attach, each a variable or its path as the
            tracker names it (`"loss/GaussianNLL/log_var"`, the path its
            warnings give). With `loss=None`, exactly these are attached;
            with a `loss`, these and the loss's. Defaults to `None`: what
            discovery finds.

    Returns:
        The list of the variables attached to the model, all
        `keras.Variable`s (earlier calls' included).

    Raises:
        TypeError: When `model` is not a `keras.Model`, `loss` is not a loss
            or `variables` not a list of variables and paths; or when a raw
            `tf.Variable` that must be replaced (see above) cannot be where
            it sits (a tuple, or out of reach of the loss and the model).
        ValueError: When there is nothing to look in: no `loss`, no
            `variables`, and the model is neither compiled nor holds
            untracked variables; or when a path names no variable found.
        RuntimeError: When the model's optimizer is already built without
            these variables (fit has run).
    """
    discovery.check_model(model, "make_trainable(model, ...)")
    paths = []
    if isinstance(variables, (list, tuple)):  # a path (a warning's) stands for the variable found there
        paths = [v for v in variables if isinstance(v, str)]
        variables = [v for v in variables if not isinstance(v, str)]
    given = discovery.check_variables(variables, "make_trainable(variables=...)")
    found = _discover(model, loss, exact=loss is None and variables is not None)
    if found.unbuilt:
        names = ", ".join(f"{type(layer).__name__} {layer.name!r}" for layer in found.unbuilt)
        warnings.warn(
            f"make_trainable: the loss holds layers not built yet ({names}): the weights they "
            "create on their first call cannot be attached before it. Call the loss once first, "
            "as in loss(y[:1], model(x[:1])), then make_trainable(model).",
            stacklevel=2,
        )
    given += _at_paths(found, paths)
    wanted = _wanted(found, given, exact=loss is None and variables is not None)
    attached = attached_variables(model)
    known = {discovery.variable_key(v) for v in attached + list(model.trainable_variables)}
    new = []
    for item in wanted:
        variable = item.variable
        if not variable.trainable or discovery.variable_key(variable) in known:
            continue
        known.add(discovery.variable_key(variable))
        new.append(_as_keras_variable(model, item))
    if new:
        _check_optimizer(model, new)
        _attach(model, attached + new)
    return attached + new


attached_variables = discovery.attached_variables


def _discover(model, loss, exact):
    compiled = getattr(model, "compiled", False)
    if loss is not None:
        named = _named(model, loss)
        weights = discovery.compiled_loss_weights(model) if compiled else None
        return discovery.discover(model, losses=named, loss_weights=weights)
    if compiled:
        return discovery.discover(model)
    found = discovery.discover(model, losses=[])
    if not exact and not found.variables:
        raise ValueError(
            f"make_trainable(model) found nothing to attach: {type(model).__name__} is not "
            "compiled, so it has no loss to look in. Call it after model.compile(...), or "
            "pass the loss: make_trainable(model, loss)."
        )
    return found


def _at_paths(found, paths):
    """The variables `found` at `paths`; raises a ValueError naming the paths there are, for one that is not."""
    by_path = {item.path: item.variable for item in found.everything()}
    missing = [path for path in paths if path not in by_path]
    if missing:
        raise ValueError(
            f"Received: make_trainable(variables={missing!r}). No variable the optimizer is not "
            f"handed has that path; those found: {sorted(by_path)}."
        )
    return [by_path[path] for path in paths]


def _wanted(found, given, exact):
    """The `LossVariable`s to attach: what was found, or exactly the `given` variables.

    Loss weights are attached only when given: descent on a variable the
    objective is linear in has no minimum.
    """
    everything = found.everything()
    by_key = {discovery.variable_key(item.variable): item for item in everything}
    extra = [
        by_key.get(discovery.variable_key(v)) or discovery.LossVariable(discovery._weight_name(v), v)
        for v in given
    ]
    if exact:
        return extra
    given_keys = {discovery.variable_key(v) for v in given}
    items = []
    for item in everything:
        if discovery.is_loss_weight(item.path) and discovery.variable_key(item.variable) not in given_keys:
            logger.info(
                "make_trainable: %s is left as it is: the objective is linear in a "
                "compile(loss_weights=...) variable, so an optimizer would drive it down "
                "without bound. Pass it in variables=[...] to attach it all the same.",
                item.path,
            )
        else:
            items.append(item)
    keys = {discovery.variable_key(item.variable) for item in items}
    return items + [item for item in extra if discovery.variable_key(item.variable) not in keys]


def _attach(model, variables):
    """Sets the model's attached list; the first time, also teaches the model to save it.

    A model that was built (called once, or `build()`) locks its state
    against new variables; like Keras's own `_untrack_variable`, this lifts
    the lock for the one assignment.
    """
    first = getattr(model, ATTRIBUTE, None) is None
    _give_torch_keys(model, variables)
    tracker = getattr(model, "_tracker", None)
    locked = bool(getattr(tracker, "locked", False))
    if locked:
        tracker.unlock()
    try:
        setattr(model, ATTRIBUTE, variables)
    finally:
        if locked:
            tracker.lock()
    if first:
        _keep_in_saved_model(model)
    model.train_function = None  # the next fit traces a step that trains them


def _give_torch_keys(model, variables):
    """On PyTorch, gives each variable a `path` the model's parameter dict can hold as its own key.

    Of `variables`, those the model does not hold yet (`make_trainable`'s,
    and those a loaded model's loss holds). Keras's PyTorch layers register
    their variables in a `torch.nn.ParameterDict` keyed by `Variable.path`,
    and `train_step` clears gradients through it (`zero_grad`). A variable
    made outside any layer has its bare name as its path, so two losses'
    `log_var`s share a key: the dict keeps one, the other's gradient is
    never cleared and adds up step after step. A path with a `.` or named
    like one of the dict's attributes (`keys`, `copy`, `training`) fails the
    fit instead. Such a path moves under the attached list's name; the
    variable, its value and its name stay as they are.
    """
    if keras.backend.backend() != "torch":
        return
    import torch

    held = model.variables  # the attached list's earlier variables among them
    taken = {variable.path for variable in held}
    ids = {id(variable) for variable in held}
    for variable in [v for v in variables if id(v) not in ids]:
        path = variable.path
        if path in taken or "." in path or hasattr(torch.nn.ParameterDict(), path):
            variable._path = discovery._unique(f"{ATTRIBUTE}/{path.replace('.', '_')}", taken)
        taken.add(variable.path)


def _named(model, loss):
    container = isinstance(loss, (dict, list, tuple))
    items = loss.values() if isinstance(loss, dict) else loss if container else [loss]
    for item in items:
        # Beside a loss, compile takes names (and None) for other outputs:
        # they hold no variables.
        other_output = container and (item is None or isinstance(item, str))
        if not (_is_loss(item) or other_output):
            raise TypeError(
                "make_trainable(model, loss) takes a keras.losses.Loss, a loss function or "
                f"functools.partial, or a list or dict of them, as `loss`; received "
                f"{type(item).__name__}: {discovery.short_repr(item)}. Pass the loss you gave to "
                "model.compile, or leave it out to use the compiled one."
            )
    return discovery.named_losses(model, loss)


def _distribution_scope(model):
    """The scope of the model's `tf.distribute` strategy (TensorFlow), else one that does nothing."""
    strategy = getattr(model, "distribute_strategy", None) if keras.backend.backend() == "tensorflow" else None
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _is_loss(obj):
    if isinstance(obj, (keras.losses.Loss, types.FunctionType, types.MethodType, functools.partial)):
        return True
    if discovery.traced_function(obj) is not None:  # a tf.function
        return True
    # A callable object of the user's own class (a loss that is not a Loss).
    return callable(obj) and discovery._is_users_object(obj)


def _as_keras_variable(model, found):
    variable = found.variable
    if isinstance(variable, keras.Variable):
        return variable
    if _can_wrap(model, variable):
        # The keras.Variable holds the very tf.Variable the code reads: the
        # optimizer's updates reach every reader, traced ones included.
        return _constrained_as(variable, keras.Variable(
            variable,
            dtype=keras.backend.standardize_dtype(variable.dtype),
            trainable=variable.trainable,
            name=_keras_name(variable),
        ))
    if found.slot is None:
        raise TypeError(
            f"{found.path} is a raw tf.Variable that make_trainable cannot replace with a "
            "keras.Variable: it is out of reach of the loss and the model (or a default "
            "argument). Create it as keras.Variable(...) instead, then pass it: "
            "make_trainable(model, variables=[...])."
        )
    # Created where the model's variables are: under its tf.distribute
    # strategy, a mirrored variable the optimizer can update.
    with _distribution_scope(model):
        replacement = _constrained_as(variable, keras.Variable(
            host_value(variable),
            dtype=keras.backend.standardize_dtype(variable.dtype),
            trainable=variable.trainable,
            name=_keras_name(variable),
        ))
    try:
        found.slot.set(replacement)
    except TypeError as error:
        raise TypeError(
            f"{found.path} is a raw tf.Variable that make_trainable cannot replace with a "
            f"keras.Variable where it sits: {error}. Hold it in a list or an attribute, "
            "or create it as keras.Variable(...)."
        ) from None
    return replacement


def _constrained_as(variable, attached):
    """`attached` with the raw `variable`'s `constraint=`, which Keras's optimizer applies after each update as TensorFlow's did."""
    constraint = getattr(variable, "constraint", None)
    if constraint is not None and not isinstance(constraint, keras.constraints.Constraint):
        constraint = _Constraint(constraint)  # Keras 3.13 takes no other callable
    attached.constraint = constraint
    return attached


class _Constraint(keras.constraints.Constraint):
    """A `tf.Variable`'s constraint function as a Keras `Constraint`."""

    def __init__(self, function):
        self.function = function

    def __call__(self, w):
        return self.function(w)


def _keras_name(variable):
    """The variable's name as keras.Variable takes it: no `:0`, no `/` of the scope it was made in."""
    return variable.name.split(":")[0].rsplit("/", 1)[-1]


def _can_wrap(model, variable):
    """Whether a raw `tf.Variable` can be trained as it is: no strategy, or one of the strategy's."""
    tf = sys.modules.get("tensorflow")
    if tf is None or keras.backend.backend() != "tensorflow":
        return False
    if isinstance(variable, tf.distribute.DistributedValues):
        return True
    from loss_param_tracker.capture_tf import model_strategy

    return getattr(model, "distribute_strategy", None) is None or model_strategy(model) is None


def _check_optimizer(model, new):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not optimizer.built:
        return
    raise RuntimeError(
        f"model.optimizer is already built (model.fit has run), so it cannot train the "
        f"{len(new)} new variable(s). Call make_trainable(model) before the first fit, or "
        "recompile with a fresh optimizer after it: "
        "model.compile(optimizer=keras.optimizers.Adam(...), loss=loss)."
    )


# Saving and loading ------------------------------------------------------
#
# `load_model` rebuilds the model, compiles it (deserializing the compile
# config) and builds the optimizer for `model.trainable_variables` in one
# Keras method, `compile_from_config`, then loads the saved values. The
# attached variables must be attached between compiling and that build, or
# the model's and the optimizer's variables no longer match the file.
#
# So a fixed model saves its loss in the compile config wrapped in a
# registered `TrainedLossParameters` (the paths of the attached variables
# beside the loss's own config). Loading it deserializes the loss and marks
# it pending; the loaded model, recognised by `model.loss is` that loss,
# attaches the variables the first time its trainable variables are read,
# which is that build. A process that has not imported this module gets
# Keras's "Could not locate class 'TrainedLossParameters' ... make sure they
# are all imported", with this module's name in the config it shows.


def _keep_in_saved_model(model):
    """Makes `model.get_compile_config()` (on this model only) record the attached variables."""
    keras_get_compile_config = model.get_compile_config

    @functools.wraps(keras_get_compile_config)
    def get_compile_config():
        config = keras_get_compile_config()
        attached = attached_variables(model)
        if config and attached and "loss" in config:
            config = dict(config)
            wrapped = TrainedLossParameters(config["loss"], _saved_paths(model, attached))
            config["loss"] = keras.saving.serialize_keras_object(wrapped)
        return config

    # A plain function attribute: not tracked by Keras, not saved.
    object.__setattr__(model, "get_compile_config", get_compile_config)


@keras.saving.register_keras_serializable(package="loss_param_tracker")
class TrainedLossParameters:
    """The compile config's loss of a model fixed by `make_trainable`, as saved.

    Holds the loss's own serialized config and the discovery paths of the
    attached variables, in order. Deserialized, it is the loss itself.
    """

    def __init__(self, loss, paths):
        self.loss = loss
        self.paths = list(paths)

    def get_config(self):
        return {
            "loss": self.loss,
            "paths": self.paths,
            "note": "saved by loss_param_tracker.make_trainable: import loss_param_tracker "
            "before keras.models.load_model",
        }

    @classmethod
    def from_config(cls, config):
        loss = keras.saving.deserialize_keras_object(config["loss"])
        _Pending.add(loss, config["paths"])
        return loss


class _Pending:
    """Losses deserialized by `load_model` whose model must attach their variables.

    While one is pending, `keras.Model.trainable_variables` is a property
    that attaches them on the model whose `loss` it is, then removes itself.
    """

    _lock = threading.Lock()
    _losses = []  # [(loss, paths, thread)]
    _previous = None

    @classmethod
    def add(cls, loss, paths):
        with cls._lock:
            if not cls._losses:
                cls._previous = keras.Model.__dict__.get("trainable_variables")
                keras.Model.trainable_variables = property(cls._trainable_variables)
            cls._losses.append((loss, paths, threading.get_ident()))

    @classmethod
    def _take(cls, model):
        with cls._lock:
            match = next((entry for entry in cls._losses if _is_loss_of(model, *entry)), None)
            if match is None:
                return None
            cls._losses.remove(match)
            if not cls._losses:
                if cls._previous is None:
                    del keras.Model.trainable_variables
                else:
                    keras.Model.trainable_variables = cls._previous
            return match[1]

    @staticmethod
    def _trainable_variables(model):
        paths = _Pending._take(model)
        if paths is not None:
            _reattach(model, paths)
        previous = _Pending._previous
        if previous is not None and "trainable_variables" in keras.Model.__dict__:
            return previous.__get__(model)
        return super(keras.Model, model).trainable_variables


def _is_loss_of(model, loss, paths, thread):
    """Whether `model` is the one being loaded with `loss`: compiled with it, in this thread.

    A loss given by name (`"mse"`) or none at all (`add_loss` terms only) has
    no identity: the model compiled with it in the thread that deserialized it,
    between that and building its optimizer, is the one.
    """
    if thread != threading.get_ident() or not getattr(model, "compiled", False):
        return False
    leaves = _leaves(loss)
    return _leaves(model.loss) == leaves if leaves else model.loss == loss


def _leaves(loss):
    """The identities of the loss objects in `loss`, a loss or a list or dict of them.

    Keras keeps a list or dict given to `compile` as a tracked copy: the
    losses in it are the same objects.
    """
    if isinstance(loss, dict):
        return [id(v) for v in loss.values() if v is not None and not isinstance(v, str)]
    if isinstance(loss, (list, tuple)):
        return [id(v) for v in loss if v is not None and not isinstance(v, str)]
    return [] if loss is None or isinstance(loss, str) else [id(loss)]


def _saved_paths(model, attached):
    """Returns the discovery path of each attached variable, for the compile config.

    Raises:
        ValueError: When a variable is not on the compiled loss or the model,
            or is a loss weight (saved as a number), so that `load_model`
            could not restore it.
    """
    paths = {discovery.variable_key(f.variable): f.path for f in discovery.discover(model).everything()}
    lost = [v.name for v in attached if discovery.variable_key(v) not in paths]
    if lost:
        raise ValueError(
            f"make_trainable attached variable(s) {lost} that neither the compiled loss nor "
            "the model holds, so keras.models.load_model could not restore them. Attach "
            "the variables of the loss the model is compiled with: make_trainable(model)."
        )
    saved = [paths[discovery.variable_key(v)] for v in attached]
    weights = [p for p in saved if discovery.is_loss_weight(p)]
    if weights:
        raise ValueError(
            f"make_trainable attached compile(loss_weights=...) variable(s) {weights}, and "
            "Keras saves loss_weights as numbers, so keras.models.load_model could not "
            "restore them. Save the weights instead: model.save_weights(path), then on a "
            "fresh model make_trainable(model) and model.load_weights(path); or keep the "
            "learned weight in the loss."
        )
    return saved


def _reattach(model, paths):
    """Attaches the loaded model's variables found at `paths`, in that order.

    Raises:
        ValueError: When the loss has no variable at one of the paths.
    """
    by_path = {item.path: item for item in discovery.discover(model).everything()}
    missing = [path for path in paths if path not in by_path]
    if missing:
        raise ValueError(
            f"The saved model trained variable(s) {missing}, which the loss and model "
            f"re-created by load_model do not have (found: {sorted(by_path)}). Load it "
            "with the loss class it was saved with."
        )
    _attach(model, [_as_keras_variable(model, by_path[path]) for path in paths])
