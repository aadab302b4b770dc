"""The diagnosis: pure rules from what was observed of a variable to its status.

The statuses, their precedence and their explanations are part of the summary
format and live in `tensorboard_plugin.loss_params.metadata`.
"""

import dataclasses
import math

from tensorboard_plugin.loss_params.metadata import (
    FROZEN,
    GRADIENT_UNKNOWN,
    NO_GRADIENT,
    NON_FINITE,
    NOT_IN_OPTIMIZER,
    NOT_UPDATED,
    OPTIMIZER_NO_EFFECT,
    OUTSIDE_OPTIMIZER,
    TRAINING,
    ZERO_GRADIENT,
    advice,
)

# Statuses the console warns about, once per variable.
WARNED_STATUSES = (NOT_UPDATED, NO_GRADIENT, NON_FINITE)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one epoch showed of one variable.

    Attributes:
        trainable: The variable's `trainable` flag.
        seen_by_optimizer: Whether the optimizer was handed the variable in the
            training steps (or, before any step, whether it is among
            `model.trainable_variables`).
        value_finite: Whether every element of its value is finite.
        value_changed: Whether its value differs from the epoch's start;
            `None` when unknown.
        steps: Training steps whose gradients were captured this epoch.
        has_gradient: Whether the training objective has a gradient for it;
            `None` when unknown (no captured step, or a step whose objective
            could not be observed).
        grad_norm_mean: Mean L2 norm of its gradient over the steps.
        grad_norm_max: Max L2 norm of its gradient over the steps.
    """

    trainable: bool
    seen_by_optimizer: bool
    value_finite: bool = True
    value_changed: bool = None
    steps: int = 0
    has_gradient: bool = None
    grad_norm_mean: float = math.nan
    grad_norm_max: float = math.nan


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """A variable's status, and its cause where the status has several (see `metadata.CAUSES`)."""

    status: str
    cause: str = ""


def diagnose(obs):
    """Returns the `Diagnosis` of a variable from what was observed of it.

    Precedence: frozen, non_finite, no_gradient, not_updated, zero_gradient,
    training; a value that moved without the optimizer is `training` (cause
    `outside_optimizer`) unless non-finite: what is observed to move is never
    `not_updated`.
    """
    if not obs.trainable:
        return Diagnosis(FROZEN)
    known = obs.steps > 0 and obs.has_gradient is not None
    if not obs.value_finite or (known and obs.has_gradient and not math.isfinite(obs.grad_norm_mean)):
        return Diagnosis(NON_FINITE)
    if obs.value_changed and not obs.seen_by_optimizer:
        return Diagnosis(TRAINING, OUTSIDE_OPTIMIZER)
    if known and not obs.has_gradient:
        return Diagnosis(NO_GRADIENT)
    if not obs.seen_by_optimizer:
        return Diagnosis(NOT_UPDATED, NOT_IN_OPTIMIZER)
    zero = known and obs.grad_norm_max == 0
    if obs.value_changed is False and not zero:
        return Diagnosis(NOT_UPDATED, OPTIMIZER_NO_EFFECT)
    if zero:
        return Diagnosis(ZERO_GRADIENT)
    return Diagnosis(TRAINING, "" if known else GRADIENT_UNKNOWN)


def warning_message(path, diagnosis, loss_name=None):
    """The console line for a variable whose status is worth a warning."""
    where = f" (on {loss_name})" if loss_name else ""
    what = "Loss variable" if path.startswith("loss/") else "Model weight"
    explanation, fix = advice(diagnosis.status, diagnosis.cause)
    fix = f" Fix: {fix}" if fix else ""
    return f"{what} '{path}'{where} [{diagnosis.status}]: {explanation}{fix}"
