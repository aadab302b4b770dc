"""Gradient capture: what the callback needs from a training step, for any backend.

A capture sees the real training steps of one model (no second forward pass)
and accumulates, per step, the L2 norm of the gradient of every variable the
tracker follows: the model's weights, as handed to the optimizer, and the
loss's variables, whether the optimizer has them or not. The callback resets
it at each epoch's start and reads it at the end.

`attach(model, ...)` returns the capture of the model's backend, or `None`
with the reason logged once: values are then still logged, gradients are not.
Each backend's implementation (`capture_tf`) is the only code that knows how
Keras runs a step on that backend; it implements `Capture`.
"""

import abc
import dataclasses
import logging
import math

import keras

logger = logging.getLogger("loss_param_tracker")


@dataclasses.dataclass(frozen=True)
class GradientStats:
    """Gradient statistics of one variable over the steps since the last reset.

    Attributes:
        steps: Number of captured training steps.
        has_gradient: Whether the training objective has a gradient for it:
            `True`, `False`, or `None` when it could not be observed (no
            captured step, or a step whose objective the capture cannot see).
        seen_by_optimizer: Whether the optimizer was handed the variable.
        mean: Mean L2 norm of the gradient (NaN when none or unknown).
        max: Max L2 norm of the gradient.
    """

    steps: int
    has_gradient: bool = None
    seen_by_optimizer: bool = False
    mean: float = math.nan
    max: float = math.nan


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

    @abc.abstractmethod
    def problems(self):
        """Returns `[str]`: why some part of the capture is off or blind, for the console."""

    @abc.abstractmethod
    def release(self):
        """Removes the hooks; the next `fit` traces the step afresh, as without the tracker."""


def attach(model, loss_variables, losses, rediscover):
    """Returns the capture of `model` for its backend, or `None` with the reason logged.

    Args:
        model: The compiled `keras.Model`.
        loss_variables: The loss's variables, from `discovery.discover`.
        losses: The `keras.losses.Loss` instances to guard against creating
            a variable at every call.
        rediscover: Callable returning the loss's variables anew, for
            variables a loss creates on its first call.
    """
    try:
        if keras.backend.backend() != "tensorflow":
            raise Unsupported(f"not yet on the {keras.backend.backend()} backend")
        from loss_param_tracker import capture_tf

        return capture_tf.StepCapture.attach(model, loss_variables, losses, rediscover)
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
