"""The diagnosis: pure rules from what was observed of a variable to its status.

The statuses, their precedence and their explanations are part of the summary
format and live in `tensorboard_plugin.loss_params.metadata`.
"""

import dataclasses
import math

from tensorboard_plugin.loss_params.metadata import (
    FIXES,
    FROZEN,
    NO_GRADIENT,
    NON_FINITE,
    NOT_UPDATED,
    TRAINING,
    ZERO_GRADIENT,
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
        has_gradient: Whether the loss has a gradient for it; `None` when no
            step was captured.
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


def diagnose(obs):
    """Returns the status of a variable: the first of the statuses that apply.

    Precedence: frozen, non_finite, no_gradient, not_updated, zero_gradient,
    training.
    """
    if not obs.trainable:
        return FROZEN
    captured = obs.steps > 0 and obs.has_gradient is not None
    gradient_finite = not (
        captured and obs.has_gradient and not math.isfinite(obs.grad_norm_mean)
    )
    if not obs.value_finite or not gradient_finite:
        return NON_FINITE
    if captured and not obs.has_gradient:
        return NO_GRADIENT
    nonzero = captured and obs.grad_norm_max > 0
    if not obs.seen_by_optimizer or (nonzero and obs.value_changed is False):
        return NOT_UPDATED
    if captured and obs.grad_norm_max == 0:
        return ZERO_GRADIENT
    return TRAINING


def warning_message(path, status, loss_name=None):
    """The console line for a variable whose status is worth a warning."""
    where = f" (on {loss_name})" if loss_name else ""
    what = "Loss variable" if path.startswith("loss/") else "Model weight"
    reason = {
        NOT_UPDATED: "is trainable but the optimizer does not update it: model.fit "
        "only trains model.trainable_variables, and a variable held by a loss is "
        "not one of them",
        NO_GRADIENT: "has no gradient: the loss does not depend on it differentiably",
        NON_FINITE: "has a NaN or Inf value or gradient",
    }[status]
    return f"{what} '{path}'{where} {reason} [{status}]. Fix: {FIXES[status]}"
