"""Finds the variables that `model.fit` will not hand the optimizer, and names them.

One principle: every variable reachable from the compiled loss, or from the
model's layers, that is not one of the model's weights. On the loss side that
means its attributes, the weights of the layers it holds, nested losses,
`tf.Module`s (their variables and submodules), plain objects of the user's
own classes, and for a function loss (or `functools.partial`, a bound method,
a built-in loss wrapping a function) its closure cells, the globals its code
names, its default and keyword arguments; lists, tuples and dicts of all of
these; and `compile(loss_weights=...)` given as variables. On the model side,
a raw `tf.Variable` (or a `tf.Module` of them) held by a layer: Keras 3 tracks
`keras.Variable`s and `add_weight` only, so such a variable never trains; and
any variable in what a layer holds beyond Keras's tracking, walked as the
loss is: a namespace (`self.cfg = SimpleNamespace(...)`), a loss object its
`compute_loss` calls, a function, an object of the user's own class.

A Keras model (or a layer of more than `NETWORK_MIN_WEIGHTS` weights) held by
a loss, such as the feature extractor of a perceptual loss, is a `Network`:
one entry for all its weights, so that it does not flood the console.

Each variable gets a stable, readable, unique path, which serves as its tag
prefix: `loss/GaussianNLL/log_var`, `loss/y2/Uncertainty/log_vars/0`,
`loss/adaptive_loss/robust/latent_alpha` (a closure), `loss/loss_weights/y1`,
`model/net/dense/temperature` (a raw variable on a layer).
"""

import argparse
import dataclasses
import functools
import logging
import sys
import types

import keras

logger = logging.getLogger("loss_param_tracker")

LOSS_PREFIX = "loss"
MODEL_PREFIX = "model"
# Where the variables given as compile(loss_weights=...) are found.
LOSS_WEIGHTS_PREFIX = f"{LOSS_PREFIX}/loss_weights"

# A layer held by a loss with more weights than this is logged as one
# network, not weight by weight.
NETWORK_MIN_WEIGHTS = 16

# How deep the walk goes into objects of the user's own classes, and how many
# objects it visits at most: what is reachable from a loss is usually small,
# but a global a loss names may hold anything.
MAX_DEPTH = 12
MAX_OBJECTS = 20_000

# Objects of these packages are walked only where they hold variables by
# design (losses, layers, modules): not their internals.
# (The standard library's, `sys.stdlib_module_names`, neither.)
_LIBRARIES = frozenset(
    {"keras", "tensorflow", "tf_keras", "numpy", "jax", "jaxlib", "torch", "tensorboard",
     "loss_param_tracker"}
)


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where a variable sits: an attribute, a list index, a dict key or a closure cell.

    `make_trainable` uses it to replace a raw `tf.Variable` with a
    `keras.Variable` where the code that uses it will find it.
    """

    container: object
    key: object

    def set(self, value):
        """Puts `value` in the slot, without letting a Keras layer track it there.

        Raises:
            TypeError: When the slot is in a tuple, which cannot be changed.
        """
        container = self.container
        if isinstance(container, types.CellType):
            container.cell_contents = value
        elif isinstance(container, (list, dict)):
            container[self.key] = value
        elif isinstance(container, tuple):
            raise TypeError("it sits in a tuple, which cannot be changed")
        elif isinstance(container, keras.layers.Layer):
            # The variable is attached to the model by make_trainable; tracked
            # by the layer as well, it would change the layer's saved weights.
            object.__setattr__(container, self.key, value)
        else:
            setattr(container, self.key, value)


@dataclasses.dataclass(frozen=True)
class LossVariable:
    """A variable the optimizer will not be handed, found on the loss or the model.

    Attributes:
        path: Stable tag prefix, e.g. `loss/GaussianNLL/log_var`.
        variable: The `tf.Variable` or `keras.Variable` itself.
        owner: The loss, function or layer it was found on; `None` for
            variables passed by the user.
        slot: Where it sits (`None` inside a layer's weights or for
            variables passed by the user).
    """

    path: str
    variable: object
    owner: object = None
    slot: Slot = None

    @property
    def owner_name(self):
        return describe(self.owner)


@dataclasses.dataclass(frozen=True)
class Network:
    """A network held by a loss (a perceptual loss's feature extractor).

    Attributes:
        path: Its path, e.g. `loss/Perceptual/features`.
        layer: The `keras.Model` or layer.
        owner: The loss it was found on.
        weights: `[(path, variable)]` of its float weights,
            `<path>/<weight path>`.
    """

    path: str
    layer: object
    owner: object
    weights: list

    @property
    def owner_name(self):
        return describe(self.owner)


@dataclasses.dataclass(frozen=True)
class Discovered:
    """What discovery found on a compiled model.

    Attributes:
        variables: The float variables the optimizer will not be handed, as
            `LossVariable`s, in the order found: the loss's, the
            `loss_weights`', the model's raw ones, then the extras.
        losses: Every `keras.losses.Loss` instance walked, nested ones
            included.
        networks: The `Network`s held by the loss.
        unbuilt: The layers the loss holds (or is) that are not built yet
            and build weights of their own: those come on the loss's first call.
        built_on_call: The keys of the variables found on such layers, built
            or not: created when the layer is first called.
    """

    variables: list
    losses: list
    networks: list = dataclasses.field(default_factory=list)
    unbuilt: list = dataclasses.field(default_factory=list)
    built_on_call: frozenset = frozenset()

    def everything(self):
        """Every `LossVariable` found: the `variables`, then the networks' weights."""
        return list(self.variables) + [
            LossVariable(path, weight, network.owner)
            for network in self.networks
            for path, weight in network.weights
        ]

    def all_variables(self):
        """Every variable found: the `variables`' and the networks' weights."""
        return [found.variable for found in self.everything()]

    def places(self):
        """`Places`: the keys of the variables found on the model's layers, and of the networks' weights."""
        return Places(
            on_the_model=frozenset(
                variable_key(f.variable) for f in self.variables if f.path.startswith(f"{MODEL_PREFIX}/")
            ),
            in_networks=frozenset(variable_key(w) for network in self.networks for _, w in network.weights),
        )


@dataclasses.dataclass(frozen=True)
class Places:
    """Where discovery found variables, by key: what a gradient capture treats apart.

    Attributes:
        on_the_model: Those found on the model's layers, not on the loss: its
            forward pass may read them.
        in_networks: The weights of networks the loss holds: one status for
            all of a network's, which no curvature informs.
    """

    on_the_model: frozenset = frozenset()
    in_networks: frozenset = frozenset()


def is_variable(obj):
    if isinstance(obj, keras.Variable):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(obj, tf.Variable)


def check_variables(variables, what="LossParamTracker(variables=...)"):
    """Returns `variables` as a list, or raises a TypeError naming what is not a variable."""
    if variables is not None and (is_variable(variables) or not _iterable(variables)):
        raise TypeError(
            f"{what} takes a list of tf.Variable or keras.Variable objects; received "
            f"{type(variables).__name__}: {variables!r}. Wrap a single variable in a list."
        )
    variables = list(variables or [])
    for variable in variables:
        if not is_variable(variable):
            raise TypeError(
                f"{what} takes tf.Variable or keras.Variable objects; "
                f"received {type(variable).__name__}: {variable!r}."
            )
    return variables


def is_float_variable(variable):
    return "float" in keras.backend.standardize_dtype(variable.dtype)


def check_model(model, what):
    """Raises a TypeError saying what `what` takes when `model` is not a Keras 3 `keras.Model`.

    A tf_keras (Keras 2) model, which `tf.keras` gives under
    `TF_USE_LEGACY_KERAS=1`, is named as such: its training has none of the
    hooks the tracker reads.
    """
    if isinstance(model, keras.Model):
        return
    module = type(model).__module__ or ""
    if module.split(".")[0] in ("tf_keras", "keras") or module.startswith("tensorflow.python.keras"):
        raise TypeError(
            f"{what} takes a Keras 3 model; received {type(model).__name__} from {module}, a "
            "tf_keras (Keras 2) model, as tf.keras gives when TF_USE_LEGACY_KERAS=1. "
            "loss-param-tracker needs Keras 3: build the model with `import keras` "
            "(keras>=3) and leave TF_USE_LEGACY_KERAS unset."
        )
    raise TypeError(f"{what} takes a keras.Model; received {type(model).__name__}: {short_repr(model)}.")


def short_repr(obj):
    """`repr(obj)`, cut to 80 characters for an error message."""
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def variable_key(variable):
    """Identity of a variable, shared by a `keras.Variable` and its backing `tf.Variable`.

    On TensorFlow a `keras.Variable` wraps a `tf.Variable` that the training
    step handles; elsewhere its value is an array (JAX: a new one at every
    assignment), so the `keras.Variable` itself is the identity.
    """
    if isinstance(variable, keras.Variable) and keras.backend.backend() == "tensorflow":
        variable = variable.value
    return id(variable)


def is_loss_weight(path):
    """Whether a discovery path names a `compile(loss_weights=...)` variable, which Keras multiplies the loss by."""
    return path.startswith(LOSS_WEIGHTS_PREFIX)


def traced_function(obj):
    """The Python function a `tf.function` wraps, or `None` when `obj` is not one."""
    if not type(obj).__module__.startswith("tensorflow."):
        return None
    wrapped = getattr(obj, "python_function", None)
    return wrapped if callable(wrapped) else None


def describe(owner):
    """A short name for where a variable was found: a class or function name."""
    if owner is None:
        return None
    if traced_function(owner) is not None:
        return describe(traced_function(owner))
    if isinstance(owner, functools.partial):
        return describe(owner.func)
    if isinstance(owner, (types.FunctionType, types.MethodType)):
        return owner.__name__
    return type(owner).__name__


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


def compiled_loss_weights(model):
    """The `loss_weights` given to `compile`, or `None`."""
    compile_loss = getattr(model, "_compile_loss", None)
    return getattr(compile_loss, "_user_loss_weights", None)


def discover(model, extra_variables=(), losses=None, loss_weights=None, model_side=True):
    """Finds the float variables the optimizer of `model` will not be handed, each with its path.

    Variables reachable along several paths are reported once, under the
    first. The layers the model is built of are not walked, and their
    weights are the model's wherever the loss holds them (a list of kernels
    to decay). A loss variable attached to the model (by `make_trainable` or
    by hand) is still found, as a loss variable. `extra_variables` that the
    walk does not reach are added as `loss/extra/<name>`. Paths are unique:
    a second variable of the same name gets `<name>_2`, and so on. Non-float variables (step counters) are
    skipped, with the reason in the debug log.

    Args:
        model: The Keras model.
        extra_variables: Variables to add as `loss/extra/<name>` where the
            walk does not find them.
        losses: `[(output_name, loss)]` to walk instead of the compiled loss
            (see `named_losses`), for a model not compiled yet.
        loss_weights: The `loss_weights` to walk with `losses`; by default
            those of `compile`.
        model_side: Whether to look for raw variables on the model's layers.

    Raises:
        ValueError: When the model has not been compiled and `losses` is not given.
        TypeError: When `extra_variables` holds something that is not a variable.
    """
    extra_variables = check_variables(extra_variables)
    if losses is None:
        losses = compiled_losses(model)
        loss_weights = compiled_loss_weights(model)
    walk = _Walk(model)
    for output, loss in losses:
        if loss is not None and not isinstance(loss, str):
            prefix = "/".join(p for p in (LOSS_PREFIX, output, _label(loss)) if p)
            walk.visit(loss, prefix, loss)
    if loss_weights is not None:
        named = named_losses(model, loss_weights)
        for output, weight in named:
            path = "/".join(p for p in (LOSS_WEIGHTS_PREFIX, output) if p)
            walk.visit(weight, path, None, Slot(loss_weights, output) if len(named) > 1 else None)
    if model_side:
        for layer, path in _layer_paths(model):
            walk.visit_raw(layer, f"{MODEL_PREFIX}/{path}")
    for variable in extra_variables:
        walk.add(f"{LOSS_PREFIX}/extra/{_weight_name(variable)}", variable, None)
    return Discovered(walk.found, walk.losses, walk.networks, walk.unbuilt, frozenset(walk.built_on_call))


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


def layer_places(paths):
    """`{path: place}` of model weights' paths in the model's order: the place of each one's layer.

    A layer's place counts the layers in the order their first weight comes
    in `model.weights`, from 0. Runs of one architecture give each layer the
    same place, where Keras's auto-generated names differ (`dense` in one
    run, `dense_17` in the next, in one process): readers match layers
    across runs by it.
    """
    places = {}
    result = {}
    for path in paths:
        layer = path.rsplit("/", 1)[0]
        result[path] = places.setdefault(layer, len(places))
    return result


class _Walk:
    """One walk over the objects reachable from a model's loss and layers."""

    def __init__(self, model):
        self.found, self.losses, self.networks, self.unbuilt = [], [], [], []
        self.built_on_call = set()
        self._seen_variables = set()
        self._visited = set()
        self._paths = set()
        self._objects = 0
        self._raw = False  # within `visit_raw`: a weight of the model found there is not raw
        # The model's own layers and weights are the optimizer's already.
        layers = _model_layers(model)
        self._model_layers = {id(layer) for layer in layers}
        # Tracked by Keras, so not raw; what make_trainable attached stays found.
        attached = getattr(model, ATTACHED_ATTRIBUTE, None) or ()
        self._model_weights = {variable_key(w) for w in model.weights} - {
            variable_key(v) for v in attached
        }
        # Those of the layers the model is built of, not the ones attached to it.
        self._layer_weights = {variable_key(w) for layer in layers[1:] for w in layer.weights}

    def add(self, path, variable, owner, slot=None):
        identity = variable_key(variable)
        if identity in self._seen_variables or identity in self._layer_weights:
            return  # a weight of the model's layers is the model's, wherever else the loss holds it
        if self._raw and identity in self._model_weights:
            return
        self._seen_variables.add(identity)
        if not is_float_variable(variable):
            logger.debug(
                "Skipping %s: dtype %s is not a float, it has no gradient.",
                path,
                keras.backend.standardize_dtype(variable.dtype),
            )
            return
        self.found.append(LossVariable(_unique(path, self._paths), variable, owner, slot))

    def visit(self, obj, path, owner, slot=None, depth=0):
        """Walks everything reachable from `obj`, a part of the loss."""
        if is_variable(obj):
            self.add(path, obj, owner, slot)
            return
        wrapped = traced_function(obj)
        if wrapped is not None:  # a tf.function: walked as the Python function it wraps
            self.visit(wrapped, path, owner, None, depth)
            return
        walkable = isinstance(
            obj,
            (keras.layers.Layer, keras.losses.Loss, functools.partial, types.MethodType,
             types.FunctionType, dict, list, tuple),
        ) or _is_module(obj) or _is_users_object(obj) or isinstance(obj, _NAMESPACES)
        if not walkable or id(obj) in self._model_layers or not self._enter(obj, depth):
            return  # one of the model's own layers: its weights are the model's, its raw ones `visit_raw`'s
        if isinstance(obj, keras.layers.Layer):
            self._visit_layer(obj, path, owner, depth)
        elif isinstance(obj, keras.losses.Loss):
            self.losses.append(obj)
            self._visit_attributes(obj, path, obj, depth)
        elif isinstance(obj, functools.partial):
            self.visit(obj.func, path, owner, None, depth + 1)
            for index, value in enumerate(obj.args):
                self.visit(value, f"{path}/{index}", owner, Slot(obj.args, index), depth + 1)
            for name, value in obj.keywords.items():
                self.visit(value, f"{path}/{name}", owner, Slot(obj.keywords, name), depth + 1)
        elif isinstance(obj, types.MethodType):
            self.visit(obj.__self__, path, owner, None, depth + 1)
        elif isinstance(obj, types.FunctionType):
            self._visit_function(obj, path, owner, depth)
        elif isinstance(obj, (dict, list, tuple)):
            self._visit_container(obj, path, owner, depth)
        else:  # a tf.Module, an object of the user's own class, a namespace of settings
            self._visit_attributes(obj, path, owner, depth)

    def visit_raw(self, layer, path):
        """Walks a model layer's attributes for the variables Keras does not track there.

        Keras tracks the layers, weights, metrics and optimizers assigned
        to a layer; a raw variable, or one held by something else the model
        keeps (a loss object, a function, a namespace of settings, an object
        of the user's own class), is not among `model.trainable_variables`,
        though the model's own `compute_loss` or `train_step` may read it.
        Such holders are walked as the loss is, their variables found as
        the model's raw ones.
        """
        if self._enter(layer, 0):
            self._raw = True
            try:
                self._raw_attributes(layer, path)
            finally:
                self._raw = False

    def _raw_attributes(self, layer, path):
        for name, value in _attributes(layer):
            if name not in _KERAS_TRACKING and not _keras_own(value):
                self.visit(value, f"{path}/{_attribute(name)}", layer, Slot(layer, name), 1)

    def _enter(self, obj, depth):
        """Whether to walk into `obj`: not seen yet, not too deep, budget left."""
        if id(obj) in self._visited or depth > MAX_DEPTH or self._objects >= MAX_OBJECTS:
            return False
        self._visited.add(id(obj))
        self._objects += 1
        if self._objects == MAX_OBJECTS:
            logger.warning(
                "LossParamTracker: stopped looking for loss variables after %d objects; "
                "pass the ones it missed with variables=[...].",
                MAX_OBJECTS,
            )
        return True

    def _visit_layer(self, layer, path, owner, depth):
        builds = type(layer).build is not keras.layers.Layer.build  # its weights come from its build()
        if builds and not layer.built:
            self.unbuilt.append(layer)
        if builds:
            self.built_on_call.update(variable_key(w) for w in layer.weights)
        weights = [w for w in layer.weights if variable_key(w) not in self._layer_weights]
        if isinstance(layer, keras.Model) or len(weights) > NETWORK_MIN_WEIGHTS:
            self._add_network(layer, path, owner, weights)
            return
        for weight in weights:
            self.add(f"{path}/{_weight_name(weight)}", weight, owner)
        self._raw_attributes(layer, path)

    def _add_network(self, layer, path, owner, weights):
        path = _unique(path, self._paths)
        members, used = [], set()
        for weight in weights:
            identity = variable_key(weight)
            if identity in self._seen_variables or not is_float_variable(weight):
                continue
            self._seen_variables.add(identity)
            name = getattr(weight, "path", None) or _weight_name(weight)
            members.append((_unique(f"{path}/{name}", used), weight))
        if members:
            self.networks.append(Network(path, layer, owner, members))

    def _visit_attributes(self, obj, path, owner, depth):
        for name, value in _attributes(obj):
            self.visit(value, f"{path}/{_attribute(name)}", owner, Slot(obj, name), depth + 1)

    def _visit_container(self, obj, path, owner, depth):
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in list(items):
            if self._objects >= MAX_OBJECTS:
                return
            self.visit(value, f"{path}/{key}", owner, Slot(obj, key), depth + 1)

    def _visit_function(self, function, path, owner, depth):
        """Closure cells, the globals its code names, and its default arguments."""
        if not _is_users(function):
            return
        code = function.__code__
        for name, cell in zip(code.co_freevars, function.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # not assigned yet
                continue
            self.visit(value, f"{path}/{name}", owner, Slot(cell, None), depth + 1)
        names = function.__globals__
        for name in _global_names(code):
            if name in names and not isinstance(names[name], (type, types.ModuleType)):
                self.visit(names[name], f"{path}/{name}", owner, Slot(names, name), depth + 1)
        parameters = code.co_varnames[: code.co_argcount]
        defaults = function.__defaults__ or ()
        for name, value in zip(parameters[len(parameters) - len(defaults) :], defaults):
            self.visit(value, f"{path}/{name}", owner, None, depth + 1)
        for name, value in (function.__kwdefaults__ or {}).items():
            self.visit(value, f"{path}/{name}", owner, Slot(function.__kwdefaults__, name), depth + 1)
        wrapped = getattr(function, "__wrapped__", None)
        if wrapped is not None:
            self.visit(wrapped, path, owner, None, depth + 1)


# The attribute of a model that holds what make_trainable attached (see fix.py).
ATTACHED_ATTRIBUTE = "_loss_param_tracker_attached"


def attached_variables(model):
    """The variables `make_trainable` attached to `model`, in order (a new list)."""
    return list(getattr(model, ATTACHED_ATTRIBUTE, None) or [])


# What Keras tracks on a layer besides its layers: their variables are the model's or its
# optimizer's, never a loss's.
_KERAS_TRACKED = (keras.metrics.Metric, keras.optimizers.Optimizer)


def _keras_own(obj):
    """Whether `obj`, held by a model layer, is Keras's to train or keep: a metric, an optimizer,
    or a loss of Keras's own (`compile`'s), whose user loss is walked as the compiled one."""
    return isinstance(obj, _KERAS_TRACKED) or (isinstance(obj, keras.losses.Loss) and not _is_users(type(obj)))


# A layer's own lists of what Keras tracks, and make_trainable's: not raw.
_KERAS_TRACKING = frozenset(
    {"_trainable_variables", "_non_trainable_variables", "_layers", "_metrics",
     "_seed_generators", ATTACHED_ATTRIBUTE}
)


def _layer_paths(model, prefix=""):
    """`[(layer, path)]` of the model and the layers it is built of, depth first.

    The path is the chain of layer names from the model (`net/block/dense`):
    stable where `Layer.path` is not (it depends on the name scope the layer
    was built in, which differs in a model rebuilt by `load_model`).
    """
    path = f"{prefix}/{model.name}" if prefix else model.name
    result = [(model, path)]
    flatten = getattr(model, "_flatten_layers", None)
    children = flatten(include_self=False, recursive=False) if flatten else []
    for child in children:
        result += _layer_paths(child, path)
    return result


def _model_layers(model):
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=True))
    return [model, *getattr(model, "layers", [])]


def _global_names(code):
    """Names a code object (and the functions nested in it) reads as globals."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += [n for n in _global_names(const) if n not in names]
    return names


def _is_module(obj):
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(obj, tf.Module) and not isinstance(obj, keras.layers.Layer)


def _is_users(obj):
    """Whether `obj` (a class or function) comes from the user's code, not a library's."""
    package = (getattr(obj, "__module__", None) or "").split(".")[0]
    return package not in _LIBRARIES and package not in sys.stdlib_module_names


# The standard library's plain holders of attributes: a loss's settings
# (`self.config = SimpleNamespace(...)`, the `argparse` arguments) may hold its variables.
_NAMESPACES = (types.SimpleNamespace, argparse.Namespace)


def _is_users_object(obj):
    """An instance of a class of the user's own code, with attributes to walk."""
    return (
        hasattr(obj, "__dict__")
        and not isinstance(obj, (type, types.ModuleType))
        and _is_users(type(obj))
    )


def _iterable(obj):
    return isinstance(obj, (list, tuple, set, frozenset)) or (
        hasattr(obj, "__iter__") and not isinstance(obj, (str, bytes, dict))
    )


def _label(loss):
    """The path component of a compiled loss: its class or function name."""
    if isinstance(loss, (types.FunctionType, functools.partial)) or traced_function(loss) is not None:
        return describe(loss)
    if isinstance(loss, types.MethodType):
        return describe(loss.__self__)
    return type(loss).__name__


def _attributes(obj):
    """`(name, value)` of an object's attributes, less TensorFlow's tracking bookkeeping.

    (A `tf.Module` or a layer on TensorFlow keeps a dict of its tracked
    attributes under `_self_...` names: the same variables again, named by
    the bookkeeping, not by the user.)
    """
    return [(n, v) for n, v in list(vars(obj).items()) if not n.startswith("_self_")]


def _attribute(name):
    return name.lstrip("_") or name


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
