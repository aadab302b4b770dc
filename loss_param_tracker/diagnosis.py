"""The diagnosis: pure rules from what was observed of a variable to its status.

The statuses, their precedence, meanings, fixes and severities are part of the
summary format: one table, `tensorboard_plugin.loss_params.metadata.STATUS_TABLE`.
This module holds the rules that pick one.
"""

import dataclasses
import functools
import math
from typing import NamedTuple, Optional

from tensorboard_plugin.loss_params import norms
from tensorboard_plugin.loss_params.metadata import (
    CONCAVE,
    ASSIGNMENT_DROPPED,
    CONSTANT_IN_STEP,
    FIX_NOT_HANDED,
    FIX_NOT_REACHED,
    FROZEN,
    GRADIENT_UNKNOWN,
    HELD_BY_CONSTRAINT,
    LINEAR,
    LOSS_NON_FINITE,
    MOVED_WITHOUT_GRADIENT,
    NO_GRADIENT,
    NO_MINIMUM,
    NON_FINITE,
    NOT_IN_OPTIMIZER,
    NOT_IN_OPTIMIZER_GRADIENT_UNKNOWN,
    NOT_READ,
    NOT_UPDATED,
    OPTIMIZER_NO_EFFECT,
    OUTSIDE_OPTIMIZER,
    TRAINING,
    UNBOUNDED,
    ZERO_GRADIENT,
    advice,
    for_path,
)


class Observation(NamedTuple):
    """What one epoch showed of one variable.

    Attributes:
        trainable: The variable's `trainable` flag.
        seen_by_optimizer: Whether the optimizer was handed the variable in the
            training steps (or, before any step, whether it is among
            `model.trainable_variables`).
        value_finite: Whether every element of its value is finite.
        value_changed: Whether its value changed this epoch: during its
            steps, or (for a variable the optimizer is not handed) since the
            previous epoch's end, by anything; `None` when unknown.
        steps: Training steps that ran this epoch: the evidence that nothing
            moved a variable whose value did not change.
        has_gradient: Whether the training objective has a gradient for it;
            `None` when unknown (no captured step, or a step whose objective
            could not be observed).
        grad_norm_mean: Mean L2 norm of its gradient over the steps.
        grad_norm_max: Max L2 norm of its gradient over the steps.
        moved_before: Whether its value was seen to change earlier in the fit.
        attached: Whether `make_trainable` handed it to the optimizer.
        read_by_step: Whether the training step reads it at all; `None`
            where unknown.
        linear: Whether the objective was seen to be linear in it (its
            gradient did not depend on it at any step).
        concave: Whether the objective was seen to curve down in it at
            every step the probe measured in its last epoch (negative
            curvature along the probe's direction, in every element), as
            the model stands now: descent moves it away from its
            value, faster while the loss keeps curving down, to a minimum
            only where the loss turns up farther on.
        no_minimum: Whether descent on it, where the optimizer is handed it,
            was seen to have no minimum to reach: the objective linear in it
            at every step measured, its gradient of one sign in the probe's
            last epoch, or it is a `compile(loss_weights=...)` variable.
        unbounded: Whether descent on it has no minimum: the objective was
            seen to be linear in it with a gradient that never pointed down
            (a weight of a loss term), or it is a `compile(loss_weights=...)`
            variable.
        constant_in_step: Whether the compiled training step holds it as a
            constant (JAX, for a variable outside the model's state): a
            change of its value never reaches training.
        assignment_dropped: Whether the loss assigns it in the training step
            and the step drops the assignment (JAX, a variable that is not
            one of the model's non-trainable ones).
        constrained: Whether it has a `constraint`, which the optimizer
            applies after each update.
        loss_finite: Whether the training loss Keras logged for the epoch
            (the mean of its steps') is finite; `None` where none was logged
            or it is not the loss's to say (a model weight).
    """

    trainable: bool
    seen_by_optimizer: bool
    value_finite: bool = True
    value_changed: bool = None
    steps: int = 0
    has_gradient: bool = None
    grad_norm_mean: float = math.nan
    grad_norm_max: float = math.nan
    moved_before: bool = False
    attached: bool = False
    read_by_step: bool = None
    unbounded: bool = False
    no_minimum: bool = False
    linear: bool = False
    concave: bool = False
    constant_in_step: bool = False
    assignment_dropped: bool = False
    constrained: bool = False
    loss_finite: Optional[bool] = None


class SignHistory(NamedTuple):
    """How a variable's gradient, as the curvature probe saw it epoch by epoch, kept or turned its sign.

    Descent on a variable the objective is linear in has no minimum while
    its gradient keeps one sign; but a hinge's threshold or a quantile level
    (CVaR's value-at-risk) at its kink sees a few steps on one side of it
    as often as not. An epoch whose probed steps turned the gradient's sign
    is evidence of a minimum there, so each asks one more epoch of one sign
    (at most 3, 12 probed steps) before descent is said to have none again.
    A sign that flips from one epoch to the next with no such epoch between
    is the model's doing as often (a label-smoothing epsilon rises, then
    falls without end): it only starts the count again.

    Attributes:
        last: The sign of the last epoch measured: 1 or -1, 0 for both
            signs in it, `None` before any.
        run: Epochs of that one sign in a row, the last included.
        turns: Epochs of both signs in the fit.
    """

    last: Optional[int] = None
    run: int = 0
    turns: int = 0

    def then(self, grad_min, grad_max):
        """The history after an epoch whose probed gradient elements lay in `[grad_min, grad_max]` (NaN: not
        measured, the history unchanged)."""
        sign = (grad_max > 0) - (grad_min < 0) if grad_max > 0 or grad_min < 0 else None
        if sign is None:  # not measured, or exactly 0: says nothing of a sign
            return self
        if sign == 0:
            return SignHistory(0, 0, self.turns + 1)
        if sign == self.last:
            return SignHistory(sign, self.run + 1, self.turns)
        return SignHistory(sign, 1, self.turns)

    @property
    def held(self):
        """Whether the last epochs kept one sign long enough to outweigh the turns seen."""
        return self.last in (1, -1) and self.run >= 1 + min(self.turns, 2)


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """A variable's status, and its cause where the status has several (see `metadata.CAUSES`)."""

    status: str
    cause: str = ""


# One shared instance per (status, cause): a thousand weights' diagnoses are
# a few objects, not a thousand more for the garbage collector to follow.
_diagnosis = functools.cache(Diagnosis)


def combine(observations):
    """One `Observation` of several variables taken as one (a network's weights).

    Trainable when any is, and then seen by the optimizer when every trainable
    one is; finite when all are; changed when any changed; a gradient when
    any has one; gradient norms as the norm of all the gradients together.
    """
    trainable = [o for o in observations if o.trainable] or list(observations)
    changed = [o.value_changed for o in observations]
    gradients = [o.has_gradient for o in trainable]
    return Observation(
        trainable=any(o.trainable for o in observations),
        seen_by_optimizer=all(o.seen_by_optimizer for o in trainable),
        value_finite=all(o.value_finite for o in observations),
        value_changed=True if any(changed) else (None if None in changed else False),
        steps=max((o.steps for o in observations), default=0),
        has_gradient=True if any(gradients) else (None if None in gradients else False),
        grad_norm_mean=norms.root_sum_square([o.grad_norm_mean for o in trainable]),
        grad_norm_max=norms.root_sum_square([o.grad_norm_max for o in trainable]),
        moved_before=any(o.moved_before for o in observations),
        attached=any(o.attached for o in trainable),
    )


def diagnose(obs):
    """Returns the `Diagnosis` of a variable from what was observed of it, or `None`.

    Every status states what was observed: `None` (no verdict) where nothing
    was yet, such as a variable the optimizer is not handed before any
    training step ran. A variable the loss assigns in a step that drops
    the assignment (JAX) is `not_updated` (cause `assignment_dropped`),
    whatever else moves it. A variable seen to move, at any time and by
    anything, while the optimizer is not handed it, is `training` (cause
    `outside_optimizer`) unless non-finite, or unless the compiled step
    never sees its changes (JAX, a variable outside the model's state):
    then it is `not_updated` (cause `constant_in_compiled_step`), frozen or
    not. Precedence otherwise: frozen, non_finite, no_gradient, not_updated,
    zero_gradient, no_minimum, training; except that a gradient exactly
    zero for the whole epoch of a variable nothing moved is `zero_gradient`,
    never `not_updated`: handing it to the optimizer would not move it
    either. A variable that would be `training` (or `no_minimum`) in an
    epoch whose logged loss is NaN or Inf is `non_finite` (cause
    `loss_non_finite`): it moves, but nothing says the training is healthy.
    """
    if obs.assignment_dropped:  # frozen or not, trained or not: what its code does to it never happens
        return _diagnosis(NOT_UPDATED, ASSIGNMENT_DROPPED)
    if obs.constant_in_step and (obs.value_changed or obs.moved_before):
        return _diagnosis(NOT_UPDATED, CONSTANT_IN_STEP)  # frozen or not: its changes never train
    if not obs.trainable:
        return _diagnosis(FROZEN)
    known = obs.has_gradient is not None
    if not obs.value_finite or (known and obs.has_gradient and not math.isfinite(obs.grad_norm_mean)):
        return _diagnosis(NON_FINITE)
    if (obs.value_changed or obs.moved_before) and not obs.seen_by_optimizer:
        return _training(obs, OUTSIDE_OPTIMIZER)
    if known and not obs.has_gradient:
        if obs.read_by_step is False:  # the fix's variable, or one no step reads
            return _diagnosis(NO_GRADIENT, FIX_NOT_REACHED if obs.attached else NOT_READ)
        return _diagnosis(NO_GRADIENT)
    zero = known and obs.grad_norm_max == 0
    if obs.steps == 0 or obs.value_changed is None:
        return _diagnosis(ZERO_GRADIENT) if zero else None
    if zero and not obs.value_changed:  # handing it to an optimizer would not move it either
        return _diagnosis(ZERO_GRADIENT)
    if not obs.seen_by_optimizer:
        if obs.attached:  # make_trainable attached it, and the step hands the optimizer a list of its own
            return _diagnosis(NOT_UPDATED, FIX_NOT_HANDED)
        if obs.unbounded:
            return _diagnosis(NOT_UPDATED, UNBOUNDED)
        if obs.linear:
            return _diagnosis(NOT_UPDATED, LINEAR)
        if obs.concave:
            return _diagnosis(NOT_UPDATED, CONCAVE)
        return _diagnosis(NOT_UPDATED, NOT_IN_OPTIMIZER if known else NOT_IN_OPTIMIZER_GRADIENT_UNKNOWN)
    if obs.value_changed is False:
        return _diagnosis(NOT_UPDATED, HELD_BY_CONSTRAINT if obs.constrained else OPTIMIZER_NO_EFFECT)
    if zero:  # it moved all the same: say so, no dead branch is known
        return _diagnosis(ZERO_GRADIENT, MOVED_WITHOUT_GRADIENT)
    return _training(obs, "" if known else GRADIENT_UNKNOWN)


def _training(obs, cause):
    """`training` with `cause`, unless the epoch's loss was NaN or Inf, or descent trains it and has no
    minimum in it (`no_minimum`: the probe checks what make_trainable attached)."""
    if obs.loss_finite is False:
        return _diagnosis(NON_FINITE, LOSS_NON_FINITE)
    if obs.no_minimum and obs.seen_by_optimizer and not cause:
        return _diagnosis(NO_MINIMUM)
    return _diagnosis(TRAINING, cause)


def warning_message(path, diagnosis, owner=None, fix=None, weight=False):
    """The console line for a variable whose status is worth a warning.

    Args:
        path: The variable's path.
        diagnosis: Its `Diagnosis`.
        owner: What it was found on (a loss class, a function, a layer).
        fix: The call that fixes this variable's case, in place of the
            status's generic fix.
        weight: Whether it is one of the model's weights; a variable found
            on the model that is not (a raw `tf.Variable` Keras does not
            track) is a "Variable".
    """
    where = f" (on {owner})" if owner else ""
    what = "Model weight" if weight else "Variable" if path.startswith("model/") else "Loss variable"
    explanation, generic = advice(diagnosis.status, diagnosis.cause)
    fix = for_path(fix or generic, path)
    fix = f" Fix: {fix}" if fix else ""
    return f"{what} '{path}'{where} [{diagnosis.status}]: {explanation}{fix}"
