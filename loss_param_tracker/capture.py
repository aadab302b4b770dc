"""Gradient capture: what the callback needs from a training step, for any backend.

A capture sees the real training steps of one model (no second forward pass)
and accumulates, per step, the L2 norm of the gradient of every variable the
tracker follows: the model's weights, as handed to the optimizer, and the
loss's variables, whether the optimizer has them or not. The callback resets
it at each epoch's start and reads it at the end.

`attach(model, ...)` returns the capture of the model's backend, or `None`
with the reason logged once: values are then still logged, gradients are not.
Each backend's implementation (`capture_tf`, `capture_jax`, `capture_torch`)
is the only code that knows how Keras runs a step on that backend; each
subclasses `HookedCapture` as `StepCapture`, says which process writes
(`writes_summaries(model)`) and may read many variables in one device call
(`flat_reader(variables)`). Adding a backend is adding its module and its
entry in `_BACKENDS`.
"""

import abc
import contextlib
import dataclasses
import functools
import importlib
import logging
import math
from typing import NamedTuple

import keras
import numpy as np

from loss_param_tracker.diagnosis import SignHistory
from loss_param_tracker.discovery import Places, variable_key
from loss_param_tracker.snapshot import host_value

logger = logging.getLogger("loss_param_tracker")

ATTRIBUTE = "_loss_param_tracker_capture"  # the model's capture during a fit

_BACKENDS = {"tensorflow": "tf", "jax": "jax", "torch": "torch"}  # module capture_<name>

_NO_SIGNS = SignHistory()


# The steps of each epoch whose curvature a capture measures (the TensorFlow
# and JAX ones): the linearity of the objective in a variable does not change
# from step to step.
PROBE_STEPS = 4
# The largest variable it measures: the weights of a network held by the loss
# would cost a second-order backward pass through the network.
PROBE_MAX_ELEMENTS = 4096
# What the probe keeps of each variable over the steps measured (steps whose
# gradient for it is not zero and whose figures are not NaN), a row each: the
# largest norm of its Hessian-vector product along a fixed direction (0
# before any), its gradient's smallest element (+inf before any), and the
# largest curvature along the direction, signed, element by element: the
# largest d_i (Hd)_i (-inf before any; +inf where not measured, a gathered
# variable's slices). That is negative only where every element curved
# down: one direction's d . Hd < 0 says only that the Hessian is not
# positive, as at a saddle (a normalised weight matrix's is indefinite, and
# descent trains it). Last, its gradient's largest element (-inf before any).
PROBE_ROWS = 4


def probe_start(slots):
    """float32 numpy `[PROBE_ROWS, slots]`: the probe before any step, nothing measured."""
    return np.repeat(np.array([[0.0], [np.inf], [-np.inf], [-np.inf]], np.float32), slots, axis=1)


class GradientStats(NamedTuple):
    """Gradient statistics of one variable over the steps since the last reset.

    Attributes:
        steps: Number of captured training steps.
        has_gradient: Whether the training objective has a gradient for it:
            `True`, `False`, or `None` when it could not be observed (no
            captured step, or a step whose objective the capture cannot see).
        seen_by_optimizer: Whether the optimizer was handed the variable.
        mean: Mean L2 norm of the gradient (NaN when none or unknown).
        max: Max L2 norm of the gradient.
        curvature: For a loss variable the optimizer is not handed, the
            largest norm over the steps of the gradient's derivative along
            a fixed direction (a Hessian-vector product): 0 where the
            objective is linear in it. NaN where the backend does not
            measure it.
        grad_min: For such a variable, the smallest element of its gradient
            over the steps (NaN where not measured).
        bend: For such a variable, the largest curvature of the objective
            along the fixed direction, signed, element by element, over the
            steps of the last epoch the probe measured it: negative where
            every element curved down at every one of them (NaN where not
            measured).
        read_by_step: Whether the training step reads the variable at all;
            `None` where unknown (an eager step, a backend without the
            record).
        grad_min_now: The smallest element of its gradient over the steps
            of the last epoch the probe measured it (NaN where not measured).
        grad_max_now: Its largest element, the same way.
        sign_held: Whether the probe's gradient kept one sign over enough
            of its last epochs to outweigh the turns it made in the fit
            (`diagnosis.SignHistory`).

    The probe's curvature and smallest gradient element are over every step
    measured in the fit so far, not the epoch's only: a term read only after
    a warm-up, or a gradient whose sign changes, is judged on all of it. Its
    signed curvature is the last measured epoch's: where the variable stands
    as the model has moved (see `_probe_fit`).
    """

    steps: int
    has_gradient: bool = None
    seen_by_optimizer: bool = False
    mean: float = math.nan
    max: float = math.nan
    curvature: float = math.nan
    grad_min: float = math.nan
    bend: float = math.nan
    read_by_step: bool = None
    grad_min_now: float = math.nan
    grad_max_now: float = math.nan
    sign_held: bool = True

    @property
    def linear(self):
        """Whether the objective was seen to be linear in it: a gradient, and no curvature at any step."""
        return self.curvature == 0 and self.has_gradient is True and self.max > 0

    @property
    def unbounded(self):
        """Whether descent on it has no minimum: linear, and no gradient element ever negative."""
        return self.linear and self.grad_min >= 0

    @property
    def descends_without_minimum(self):
        """Whether descent was seen to move it with no minimum to reach: linear in it at every step
        measured, its gradient of one sign in the probe's last epoch (never negative, or never
        positive), and in as many epochs before as its turns ask (`sign_held`). Descent on both a
        model and a variable the objective is linear in has no minimum, only saddles (its Hessian
        has a zero on its diagonal); but a hinge's margin or threshold, linear between kinks, has
        its minimum at one, where its gradient turns."""
        return self.linear and (self.grad_min_now >= 0 or self.grad_max_now <= 0) and self.sign_held

    @property
    def concave(self):
        """Whether the objective was seen to curve down in it: a gradient, and negative curvature in every
        element at every step measured in the probe's last epoch."""
        return self.bend < 0 and self.has_gradient is True and self.max > 0


@dataclasses.dataclass(frozen=True)
class StepCounts:
    """The training steps of an epoch, as the capture saw them.

    Attributes:
        captured: Steps whose gradients were captured.
        skipped: Steps the optimizer skipped because their (loss-scaled)
            gradients overflowed; left out of every norm.
    """

    captured: int = 0
    skipped: int = 0


class LossVariableCreatedError(RuntimeError):
    """A `keras.losses.Loss` creates a new variable at every call."""


class Unsupported(Exception):
    """The capture cannot work on this model; the message says why."""


# Hooks whose results inform advice or a note, not the gradients: one that steps aside says so in
# its own warning, and the gradients are not called incomplete for it. PyTorch's look at what
# `zero_grad` clears (`capture_torch`) is the second.
CLEARING = "gradient clearing"
_ADVISORY_HOOKS = ("curvature", CLEARING)


class Capture(abc.ABC):
    """The gradient capture of one model; one implementation per Keras backend.

    Every hook it runs inside the training step steps aside when it cannot
    work (the original runs alone) and says so in `problems`; it never fails
    a step.
    """

    @abc.abstractmethod
    def reset(self):
        """Zeroes the accumulators (start of an epoch)."""

    @abc.abstractmethod
    def read(self, keys):
        """Returns `{key: GradientStats}` for the given `discovery.variable_key`s."""

    @abc.abstractmethod
    def read_global(self):
        """Returns `(StepCounts, mean, max)` of the global norm of the optimizer's gradients."""

    @abc.abstractmethod
    def created_variables(self):
        """Whether a loss created variables since the last call (then discover again)."""

    def traced_value(self, key):
        """The value a compiled step holds of a variable outside the model's state, or `None`
        where no such step holds it (only JAX's does: its step takes such a variable as a constant)."""
        return None

    def assignment_dropped(self, key):
        """Whether the loss assigns the variable in the training step, and the step drops the assignment
        (only JAX's does: it keeps those of the model's non-trainable variables alone)."""
        return False

    def held(self):
        """A context in which the accumulators are read from the device at most once.

        For a callback hook, where no step runs: its `read` and
        `read_global` calls then share one read.
        """
        return contextlib.nullcontext()

    @abc.abstractmethod
    def problems(self):
        """Returns `[str]`: why some part of the capture is off or blind, for the console."""

    def notes(self):
        """Returns `[str]`: what the steps showed about the training itself, for the console."""
        return []

    @abc.abstractmethod
    def release(self):
        """Removes the hooks; the next `fit` traces the step afresh, as without the tracker."""


class HookedCapture(Capture):
    """What every backend's capture shares: its hooks, its slots and the reading of its sums.

    A backend's subclass installs hooks (`_install`, with `_hook`) on instance
    attributes of the model, its optimizer and its losses, and accumulates,
    every step, one row per slot: each tracked variable's gradient norm, the
    global norm of the optimizer's gradients, then 1 for a captured step and
    0 for a skipped one, or the reverse (see `_row_layout`). `_accumulated()`
    returns the sums and maxes of those rows since the last `reset()`.

    Use `attach(model, loss_variables, losses, rediscover, places)`: one
    capture per model, shared by every tracker of that model in a fit.
    """

    def __init__(self, model, loss_variables, losses, rediscover, places=Places()):
        self._model = model
        self._places = places
        self._optimizer = model.optimizer
        self._loss_variables = list(loss_variables)
        self._losses = list(losses)
        self._rediscover = rediscover
        self._skips_overflow = isinstance(self._optimizer, keras.optimizers.LossScaleOptimizer)
        self._slots = None  # {variable_key: index}, fixed at the first captured step
        self._has_gradient = {}  # {key: whether a step of this epoch had its gradient}, see `_note_step`
        self._last_step = {}  # {key: whether the last step noted had its gradient}
        self._inherited = False  # `_has_gradient` is still the last epoch's last step, no step of this one ran
        self._seen = set()
        self._saved = []  # (object, attribute, its own previous value or None)
        self._off = {}  # {hook: why it stepped aside}
        self._unread = None  # why the accumulators could not be read, once they could not
        self._stale = False  # a loss created variables: discover its variables again
        self._created = False  # the same, for the callback (`created_variables`)
        self._blind = False  # a step whose objective no hook saw
        self._blind_why = None  # why, where a hook saw it and left its gradient to the step
        self._probe_seen = {}  # {key: the probe's figures over the fit's epochs so far}
        self._probe_signs = {}  # {key: (epoch, SignHistory before it, after it)}: see `_probe_fit`
        self._epoch = 0  # `reset`s so far: the epoch being run
        self._notes = {}  # {what it is of: what the steps showed about the training}
        self._users = 0
        self._fit = None
        self._held = None  # within `held`: [] until read, then [(accumulated, probed)]

    @classmethod
    def attach(cls, model, loss_variables, losses, rediscover, places=Places()):
        """Returns the capture of `model`, installing one when it has none for this fit.

        Raises:
            Unsupported: When the model's training cannot be hooked.
        """
        # Keras gives each fit its own History callback: it tells a capture
        # shared by the trackers of this fit from one a fit left behind when
        # it was interrupted (no on_train_end), which is replaced.
        fit = getattr(model, "history", None)
        capture = model.__dict__.get(ATTRIBUTE)
        if capture is not None and (capture._fit is not fit or capture._optimizer is not model.optimizer):
            capture._discard()
            capture = None
        if capture is None:
            cls._check_supported(model)
            capture = cls(model, loss_variables, losses, rediscover, places)
            capture._fit = fit
            try:
                capture._install()
                capture._hook(model, "make_train_function", "make_train_function", capture._make_train_function)
                object.__setattr__(model, ATTRIBUTE, capture)
                _retrace(model)
            except BaseException:
                capture._restore()  # no half-hooked model
                raise
        capture._users += 1
        return capture

    @classmethod
    def _check_supported(cls, model):
        """Raises `Unsupported` when the model's training cannot be hooked."""
        if model.optimizer is None:
            raise Unsupported("the model has no optimizer")
        for obj, name in cls._HOOKED:
            target = model.optimizer if obj == "optimizer" else model
            if not callable(getattr(target, name, None)):
                raise Unsupported(f"{type(target).__name__} has no method {name}() to observe")

    _HOOKED = ()  # ("model" | "optimizer", method name) pairs each backend hooks

    def release(self):
        self._users -= 1
        if self._users <= 0:
            self._restore()

    def _discard(self):
        """Removes the hooks of a fit that ended without `on_train_end`, whatever its users."""
        self._users = 0
        self._restore()

    def _make_train_function(self, original, *args, **kwargs):
        """Keras's, after removing the hooks where a later fit asks for it: the fit that installed
        them raised (Ctrl-C, another callback's error), so its `on_train_end` never came."""
        if self._fit is getattr(self._model, "history", None):
            return original(*args, **kwargs)
        self._discard()  # the model's own methods again, and no function traced with the hooks
        return self._model.make_train_function(*args, **kwargs)

    def _restore(self):
        for obj, name, previous in reversed(self._saved):
            if previous is None:
                obj.__dict__.pop(name, None)
            else:
                object.__setattr__(obj, name, previous)
        self._saved = []
        self._model.__dict__.pop(ATTRIBUTE, None)
        _retrace(self._model)

    @abc.abstractmethod
    def _install(self):
        """Installs the backend's hooks with `_hook`."""

    def _hook(self, obj, name, hook, body):
        """Replaces `obj.name` by `body(original, *args, **kwargs)`, or the original once `hook` is off."""
        original = getattr(obj, name)

        @functools.wraps(original)
        def hooked(*args, **kwargs):
            if hook in self._off:
                return original(*args, **kwargs)
            return body(original, *args, **kwargs)

        self._saved.append((obj, name, obj.__dict__.get(name)))
        object.__setattr__(obj, name, hooked)

    @contextlib.contextmanager
    def _guard(self, hook):
        """Runs the tracker's own part of a hook; a failure turns that hook off, never the step."""
        try:
            yield
        except LossVariableCreatedError:
            raise
        except Exception as error:  # noqa: BLE001 - the capture never fails a step
            self._off[hook] = f"{type(error).__name__}: {error}"
            logger.warning(
                "LossParamTracker: the %s hook stepped aside for this fit (%s: %s); "
                "training goes on, values are still logged.",
                hook,
                type(error).__name__,
                error,
            )

    # Slots -------------------------------------------------------------

    def _refresh_loss_variables(self):
        if self._stale:
            self._stale = False
            self._loss_variables = list(self._rediscover())

    def _unregistered_loss_variables(self):
        """The trainable loss variables the optimizer is not handed, whose gradient needs a hook."""
        registered = {variable_key(v) for v in self._model.trainable_variables}
        return [v for v in self._loss_variables if v.trainable and variable_key(v) not in registered]

    def _probe_variables(self):
        """The variables the curvature probe measures: the trainable loss variables, handed to the
        optimizer or not, but a network's weights (the network's one status uses no curvature).

        Where the optimizer is handed one (make_trainable), the probe checks
        the fix: descent on a variable the objective is linear in, its
        gradient never negative, has no minimum (`diagnosis`'s `no_minimum`).
        """
        networks = self._places.in_networks
        return [v for v in self._loss_variables if v.trainable and variable_key(v) not in networks]

    def _build_slots(self, optimizer_keys):
        """Fixes the slots: the trainable loss variables, then the optimizer's."""
        self._refresh_loss_variables()
        keys = [variable_key(v) for v in self._loss_variables if v.trainable]
        keys += [k for k in optimizer_keys if k not in keys]
        self._slots = {key: index for index, key in enumerate(keys)}

    def reset(self):
        # An epoch's steps start as the last one noted: a traced step is noted
        # once, when traced; an eager one (PyTorch, run_eagerly) when it
        # differs. For an eager one that holds only once a step of this epoch
        # ran as that one did (`_step_ran`): a first step that differs
        # replaces it, or a read in the last epoch's last step would count
        # as a gradient in this one.
        self._has_gradient = dict(self._last_step)
        self._inherited = True
        self._epoch += 1
        self._zero_accumulators()

    def _step_ran(self):
        """An eager step ran as the last one noted did."""
        self._inherited = False

    @abc.abstractmethod
    def _zero_accumulators(self):
        """Zeroes the backend's sums and maxes."""

    def _note_step(self, optimizer_keys, loss_keys, eager=False):
        """Records which slots the optimizer was handed and which had a gradient this step.

        A slot had a gradient in the epoch when it had one in any of its
        steps: an eager loss may read a variable in some steps and not in
        others, and its mean norm counts the others as zeros.

        Args:
            optimizer_keys: `{key: whether its gradient exists}` of the
                optimizer's variables.
            loss_keys: The same for the loss variables the optimizer is not
                handed, or `None` when the step's objective was not seen.
            eager: Whether this is a step that ran (not a trace that every
                step of the epoch runs).
        """
        if eager and self._inherited:  # the first step of the epoch: nothing of it ran as the last one
            self._has_gradient = {}
        self._inherited = self._inherited and not eager
        self._blind = loss_keys is None and any(
            variable_key(v) not in optimizer_keys for v in self._loss_variables if v.trainable
        )
        known = dict(loss_keys or {})
        known.update(optimizer_keys)
        self._seen.update(k for k in optimizer_keys if k in self._slots)
        # Absent: this step computed no gradient for it that can be seen.
        self._last_step = {key: known.get(key) for key in self._slots}
        for key, now in self._last_step.items():
            before = self._has_gradient.get(key)
            self._has_gradient[key] = True if now or before else False if False in (now, before) else None

    # Reading -----------------------------------------------------------

    @abc.abstractmethod
    def _accumulated(self):
        """Returns float numpy `[2, slots + 3]`: the sums and the maxes of the rows since `reset`."""

    def _fetch(self):
        """`(_accumulated(), _probed())`: a backend that reads both in one device call overrides it."""
        return self._accumulated(), self._probed()

    @contextlib.contextmanager
    def held(self):
        self._held = []
        try:
            yield
        finally:
            self._held = None

    def read(self, keys):
        if self._slots is None:
            return {key: GradientStats(steps=0) for key in keys}
        sums, maxes, counts, probed = self._read()
        # Python floats: a numpy scalar costs ten times as much to index and divide.
        sums, maxes = sums.tolist(), maxes.tolist()
        probed = None if probed is None else [row.tolist() for row in probed]
        result = {}
        steps, nan = counts.captured, math.nan
        for key in keys:
            index = self._slots.get(key)
            if index is None:
                result[key] = GradientStats(steps=0)
                continue
            has_gradient = self._has_gradient.get(key)
            known = steps > 0 and has_gradient
            seen = self._probe_fit(key, probed, index) if known else None
            # Positional, in the fields' order: a thousand weights an epoch.
            result[key] = GradientStats(
                steps,
                has_gradient if steps else None,
                key in self._seen,
                sums[index] / steps if known else nan,
                maxes[index] if known else nan,
                seen[0] if seen else nan,
                seen[1] if seen else nan,
                seen[2] if seen else nan,
                self._read_by_step(key),
                seen[3] if seen else nan,
                seen[4] if seen else nan,
                self._probe_signs[key][2].held if seen else True,
            )
        return result

    def _probe_fit(self, key, probed, index):
        """The probe's figures of a variable, this epoch's folded in; `None` before any: its largest
        curvature and smallest gradient element over the fit, its signed curvature and smallest and
        largest gradient elements in the last epoch measured.

        Its largest curvature and smallest gradient element are over the fit
        so far: one step with curvature, or with a gradient pointing down,
        shows that the objective is not linear in it, or that descent on it
        has a minimum, whatever the other steps showed. Its signed curvature
        is the last epoch's that measured one: whether the loss curves down
        at the variable's value now, as the model has moved (a task weight
        `x^2 L + log x^2` curves up in x while the task's loss L is above 1
        and down once the model brings it under).
        """
        seen = self._probe_seen.get(key)
        if probed is not None and math.isfinite(probed[1][index]):  # measured this epoch
            now = (probed[0][index], probed[1][index], probed[2][index], probed[1][index], probed[3][index])
            seen = now if seen is None else (max(seen[0], now[0]), min(seen[1], now[1]), *now[2:])
            self._probe_seen[key] = seen
            # An epoch read twice (a long epoch's early look) is folded in once.
            epoch, before, after = self._probe_signs.get(key, (None, _NO_SIGNS, _NO_SIGNS))
            base = before if epoch == self._epoch else after
            self._probe_signs[key] = (self._epoch, base, base.then(now[1], now[4]))
        return seen

    def _read_by_step(self, key):
        """Whether the training step reads the variable of `key`; `None` where the backend cannot tell."""
        return None

    def _probed(self):
        """float numpy `[PROBE_ROWS, slots]`: per slot, the largest curvature, the smallest gradient
        element, the largest signed curvature and the largest gradient element since `reset`; `None`
        where the backend does not measure them."""
        return None

    def read_global(self):
        if self._slots is None:
            return StepCounts(), float("nan"), float("nan")
        sums, maxes, counts, _ = self._read()
        if counts.captured == 0:
            return counts, float("nan"), float("nan")
        return counts, float(sums[-1] / counts.captured), float(maxes[-1])

    def _read(self):
        """(sums, maxes) of the norms, the global one last, the `StepCounts`, and `_probed()`.

        One device read, or none within `held` once read.
        """
        if self._held:
            (sums, maxes), probed = self._held[0]
        else:
            (sums, maxes), probed = fetched = self._fetch_or_nothing()
            if self._held is not None:
                self._held.append(fetched)
        captured, skipped = sums[-2:]
        return sums[:-2], maxes[:-2], StepCounts(int(captured), int(skipped)), probed

    def _fetch_or_nothing(self):
        """`_fetch()`, or where it fails no captured step: the epoch keeps its values, its gradients unknown."""
        try:
            return self._fetch()
        except Exception as error:  # noqa: BLE001 - a failed read never costs the epoch its values
            self._unread = self._unread or f"{type(error).__name__}: {error}"
            return np.zeros((2, len(self._slots) + 3)), None

    def created_variables(self):
        created, self._created = self._created, False
        return created

    def notes(self):
        return list(self._notes.values())

    def problems(self):
        # The curvature probe informs advice, and PyTorch's look at zero_grad a note, not gradients:
        # their own warning says they stepped aside.
        found = [
            f"the {hook} hook stepped aside: {why}"
            for hook, why in self._off.items()
            if hook not in _ADVISORY_HOOKS
        ]
        if self._unread:
            found.append(f"its accumulators could not be read ({self._unread})")
        if self._slots is None and self._APPLY not in self._off:
            found.append(
                f"{self._APPLY} was never called by the training step, so no "
                "step's gradients could be seen (a custom train_step that updates the "
                "weights another way?)"
            )
        if self._blind:
            found.append(
                self._blind_why
                or "the training step computed its loss without model.compute_loss or the "
                "compiled loss object, so the gradients of the loss variables the "
                "optimizer is not handed are unknown"
            )
        return found

    _APPLY = "model.optimizer.apply"  # the hook that sees every step's gradients


def created_every_call(loss, name):
    """The message for a loss that creates a new variable at every call."""
    cls = type(loss).__name__
    return (
        f"{cls}.call creates a new variable ({name or 'unnamed'}) at every call: such a "
        "variable never trains, and a compiled step rejects it. Create it once, in "
        f"{cls}.__init__ (e.g. self.weight = keras.Variable(1.0)) or lazily under "
        "`if self.weight is None:`, and call loss_param_tracker.make_trainable(model) "
        "before fit."
    )


def _retrace(model):
    """Makes the next step trace anew: the cached train function holds the hooks, or not."""
    if model.train_function is not None:
        model.make_train_function(force=True)


def _backend_module():
    """The module `capture_<x>` of the running Keras backend, or `None` where there is none."""
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        return None
    return importlib.import_module(f"loss_param_tracker.capture_{_BACKENDS[backend]}")


def writes_summaries(model):
    """Whether this process writes the run's summaries: the chief, as each backend's module says.

    As `keras.callbacks.TensorBoard`, one writer per run: the other
    processes of a multi-worker fit diagnose alike and write nothing.
    """
    module = _backend_module()
    return True if module is None else module.writes_summaries(model)


def flat_reader(variables):
    """A callable giving `variables`' elements, flattened and concatenated, as a float64 numpy array.

    Each backend's module reads them in one device call where it can
    (`flat_reader` there); elsewhere they are read one by one.
    """
    module = _backend_module()
    if module is not None and hasattr(module, "flat_reader"):
        return module.flat_reader(variables)
    return lambda: np.concatenate([np.ravel(host_value(v)).astype(np.float64) for v in variables])


def attach(model, loss_variables, losses, rediscover, places=Places()):
    """Returns the capture of `model` for its backend, or `None` with the reason logged.

    Args:
        model: The compiled `keras.Model`.
        loss_variables: The loss's variables, from `discovery.discover`.
        losses: The `keras.losses.Loss` instances to guard against creating
            a variable at every call.
        rediscover: Callable returning the loss's variables anew, for
            variables a loss creates on its first call.
        places: Where discovery found them (`discovery.Places`).
    """
    try:
        module = _backend_module()
        if module is None:
            raise Unsupported(f"not on the {keras.backend.backend()} backend")
        return module.StepCapture.attach(model, loss_variables, losses, rediscover, places)
    except Unsupported as reason:
        logger.warning(
            "LossParamTracker: gradients are not captured (%s); values and weight norms "
            "are still logged.",
            reason,
        )
    except Exception as error:  # noqa: BLE001 - a logger never stops a fit
        logger.warning(
            "LossParamTracker: the gradient capture could not be attached (%s: %s); "
            "values and weight norms are still logged.",
            type(error).__name__,
            error,
        )
    return None
