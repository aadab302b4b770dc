"""The diagnosis rules on their own: one observation per status, and their precedence."""

import math

import pytest

from loss_param_tracker.diagnosis import Diagnosis, Observation, SignHistory, combine, diagnose, warning_message
from tensorboard_plugin.loss_params import metadata

pytestmark = pytest.mark.unit

HEALTHY = dict(
    trainable=True,
    seen_by_optimizer=True,
    value_finite=True,
    value_changed=True,
    steps=10,
    has_gradient=True,
    grad_norm_mean=0.5,
    grad_norm_max=1.0,
)


def observe(**changes):
    return Observation(**{**HEALTHY, **changes})


NOT_MOVED = {"value_changed": False}
NO_GRADIENT = {"has_gradient": False, "grad_norm_mean": math.nan, "grad_norm_max": math.nan}
ZERO = {"grad_norm_mean": 0.0, "grad_norm_max": 0.0}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, ("training", "")),
        ({"trainable": False}, ("frozen", "")),
        ({"value_finite": False}, ("non_finite", "")),
        ({"grad_norm_mean": math.nan, "grad_norm_max": math.nan}, ("non_finite", "")),
        ({"grad_norm_mean": math.inf}, ("non_finite", "")),
        ({**NO_GRADIENT, **NOT_MOVED}, ("no_gradient", "")),
        # The Keras trap: a loss variable the optimizer is not handed.
        ({"seen_by_optimizer": False, **NOT_MOVED}, ("not_updated", "not_in_optimizer")),
        # The optimizer has it and its gradient, and it did not move (learning rate 0).
        (NOT_MOVED, ("not_updated", "optimizer_no_effect")),
        # ... and where it has a constraint, which sets it back after each update.
        ({**NOT_MOVED, "constrained": True}, ("not_updated", "held_by_constraint")),
        # A constraint that holds nothing back: it moves.
        ({"constrained": True}, ("training", "")),
        ({**ZERO, **NOT_MOVED}, ("zero_gradient", "")),
        # A zero gradient at every step, and it moved (a second optimizer, decay, momentum): said so.
        (ZERO, ("zero_gradient", "moved_without_gradient")),
        # It moves, but not through model.optimizer (a second optimizer, an assign).
        ({"seen_by_optimizer": False}, ("training", "outside_optimizer")),
        ({"seen_by_optimizer": False, **NO_GRADIENT}, ("training", "outside_optimizer")),
        # A gradient that could not be observed is unknown, never no_gradient.
        ({"has_gradient": None, "grad_norm_mean": math.nan, "grad_norm_max": math.nan}, ("training", "gradient_unknown")),
        # ... and where nothing moved it, the fix is offered on a condition: the gradient is unknown.
        ({"has_gradient": None, "seen_by_optimizer": False, **NOT_MOVED},
         ("not_updated", "not_in_optimizer_gradient_unknown")),
        # Moved at some time in the fit (a callback at an epoch's end), not this epoch.
        ({"seen_by_optimizer": False, "moved_before": True, **NOT_MOVED}, ("training", "outside_optimizer")),
        # make_trainable attached it, and a custom train_step hands the optimizer a list of its own.
        ({"seen_by_optimizer": False, "attached": True, **NOT_MOVED}, ("not_updated", "fix_not_handed")),
        ({"seen_by_optimizer": False, "attached": True, "has_gradient": None, **NOT_MOVED},
         ("not_updated", "fix_not_handed")),
        # make_trainable attached it, and the objective has no gradient for it.
        ({**NO_GRADIENT, **NOT_MOVED, "attached": True, "read_by_step": False}, ("no_gradient", "fix_not_reached")),
        # ... and where the step reads it, or may: its own no_gradient (a stop_gradient, numpy).
        ({**NO_GRADIENT, **NOT_MOVED, "attached": True, "read_by_step": True}, ("no_gradient", "")),
        ({**NO_GRADIENT, **NOT_MOVED, "attached": True}, ("no_gradient", "")),
        # No step reads it, and nothing attached it: a copy or a counter kept beside the model, or
        # a variable the loss's code no longer reaches.
        ({**NO_GRADIENT, **NOT_MOVED, "read_by_step": False}, ("no_gradient", "not_read")),
        ({**NO_GRADIENT, **NOT_MOVED, "read_by_step": True}, ("no_gradient", "")),
        ({"attached": True}, ("training", "")),
        # Descent on it has no minimum (a weight of a loss term): its not_updated has its own cause.
        ({"seen_by_optimizer": False, "unbounded": True, **NOT_MOVED}, ("not_updated", "unbounded")),
        ({"seen_by_optimizer": False, "linear": True, **NOT_MOVED}, ("not_updated", "linear")),
        # The objective curves down in it (a min-max loss's dual variable): not at a minimum.
        ({"seen_by_optimizer": False, "concave": True, **NOT_MOVED}, ("not_updated", "concave")),
        # ... a fact of a variable nothing trains: once moved, or attached, its status is what it does.
        ({"seen_by_optimizer": False, "concave": True, "moved_before": True, **NOT_MOVED}, ("training", "outside_optimizer")),
        ({"seen_by_optimizer": False, "concave": True, "attached": True, **NOT_MOVED}, ("not_updated", "fix_not_handed")),
        ({"concave": True}, ("training", "")),
        # JAX's compiled step holds it as a constant: its moves (a callback's) never reach training.
        ({"seen_by_optimizer": False, "constant_in_step": True}, ("not_updated", "constant_in_compiled_step")),
        # Descent trains it and has no minimum to reach (the probe's check of the fix): unless moved by
        # something else, or the loss is NaN, which says more.
        ({"no_minimum": True}, ("no_minimum", "")),
        ({"no_minimum": True, "seen_by_optimizer": False}, ("training", "outside_optimizer")),
        ({"no_minimum": True, "loss_finite": False}, ("non_finite", "loss_non_finite")),
        ({"no_minimum": True, "has_gradient": None}, ("training", "gradient_unknown")),
        # The loss assigns it and JAX's step drops that: frozen or not, moved by the optimizer or not.
        ({"assignment_dropped": True}, ("not_updated", "assignment_dropped")),
        ({"trainable": False, "assignment_dropped": True, **NOT_MOVED}, ("not_updated", "assignment_dropped")),
        ({"trainable": False, "constant_in_step": True, "moved_before": True, **NOT_MOVED},
         ("not_updated", "constant_in_compiled_step")),
        ({"trainable": False, "constant_in_step": True, **NOT_MOVED}, ("frozen", "")),
        ({"seen_by_optimizer": False, "constant_in_step": True, **NOT_MOVED}, ("not_updated", "not_in_optimizer")),
        # It moves, its value and gradient finite, but the epoch's loss was NaN: never "training".
        ({"loss_finite": False}, ("non_finite", "loss_non_finite")),
        ({"loss_finite": False, "attached": True}, ("non_finite", "loss_non_finite")),
        ({"loss_finite": False, "seen_by_optimizer": False}, ("non_finite", "loss_non_finite")),
        ({"loss_finite": False, "has_gradient": None, "grad_norm_mean": math.nan, "grad_norm_max": math.nan},
         ("non_finite", "loss_non_finite")),
        ({"loss_finite": True}, ("training", "")),
        # ... and a NaN loss takes no other status's place: the fix still is the fix.
        ({"loss_finite": False, "seen_by_optimizer": False, **NOT_MOVED}, ("not_updated", "not_in_optimizer")),
        ({"loss_finite": False, **NO_GRADIENT, **NOT_MOVED}, ("no_gradient", "")),
        ({"loss_finite": False, "trainable": False}, ("frozen", "")),
    ],
)
def test_each_status_and_cause(changes, expected):
    assert diagnose(observe(**changes)) == Diagnosis(*expected)


@pytest.mark.parametrize(
    "changes",
    [
        # Before any step ran, nothing is known of a value that did not move.
        {"steps": 0, "has_gradient": None, "value_changed": None},
        {"steps": 0, "has_gradient": None, "seen_by_optimizer": False, "value_changed": None},
        {"steps": 0, "has_gradient": None, "seen_by_optimizer": False, "value_changed": False},
        {"steps": 0, "value_changed": False},
        # Steps ran, but the value's start is unknown.
        {"value_changed": None, "seen_by_optimizer": False},
    ],
)
def test_no_verdict_before_the_evidence(changes):
    assert diagnose(observe(**changes)) is None


def test_a_value_that_moved_is_never_not_updated():
    # For a variable the optimizer has, this epoch's steps are the evidence
    # (optimizer_no_effect: a learning rate fallen to 0); for one it has not,
    # any movement in the fit, by anything.
    cases = [(True, True, False)] + [(False, now, before) for now, before in ((True, False), (False, True), (True, True))]
    for seen, now, before in cases:
        for gradient in (True, False, None):
            obs = observe(seen_by_optimizer=seen, has_gradient=gradient, value_changed=now, moved_before=before)
            assert diagnose(obs).status != "not_updated", obs


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"trainable": False, "value_finite": False}, "frozen"),
        ({"value_finite": False, "has_gradient": False}, "non_finite"),
        ({"value_finite": False, "seen_by_optimizer": False}, "non_finite"),
        ({**NO_GRADIENT, **NOT_MOVED, "seen_by_optimizer": False}, "no_gradient"),
        # Exactly zero all epoch: the optimizer would not move it either, so
        # make_trainable is not the fix (a clamp is).
        ({**ZERO, **NOT_MOVED, "seen_by_optimizer": False}, "zero_gradient"),
    ],
)
def test_precedence(changes, expected):
    assert diagnose(observe(**changes)).status == expected


@pytest.mark.parametrize(
    "cause, fix",
    [
        ("not_in_optimizer", "make_trainable(model)"),
        ("optimizer_no_effect", "learning rate"),
        ("held_by_constraint", "widen the constraint"),
        ("fix_not_handed", "self.trainable_variables"),
    ],
)
def test_warning_names_variable_status_and_the_fix_of_its_cause(cause, fix):
    message = warning_message("loss/ScaledMSE/weight", Diagnosis("not_updated", cause), "ScaledMSE")
    assert "loss/ScaledMSE/weight" in message
    assert "[not_updated]" in message
    assert fix in message
    other = "learning rate" if cause == "not_in_optimizer" else "make_trainable("
    assert other not in message, message
    if cause == "not_in_optimizer":  # the line to copy names the variable
        assert "scan(model, x[:256], y[:256], 'loss/ScaledMSE/weight', values)" in message, message
        assert "<its path>" not in message


def test_every_status_the_rules_give_is_a_row_of_the_table_and_warned_as_it_says():
    observations = [
        Observation(trainable=False, seen_by_optimizer=False),
        Observation(**{**HEALTHY, "value_finite": False}),
        Observation(**{**HEALTHY, "has_gradient": False}),
        Observation(**{**HEALTHY, "seen_by_optimizer": False, "value_changed": False}),
        Observation(**{**HEALTHY, "grad_norm_max": 0.0, "grad_norm_mean": 0.0}),
        Observation(**{**HEALTHY, "no_minimum": True}),
        Observation(**HEALTHY),
    ]
    given = [diagnose(o).status for o in observations]
    assert given == list(metadata.STATUSES), "one observation per status, in the table's order"
    for observation in observations:
        d = diagnose(observation)
        message = warning_message("loss/L/w", d)
        row = metadata.STATUS[d.status]
        explanation, fix = metadata.advice(d.status, d.cause)
        assert explanation in message and (not fix or fix.replace("'<its path>'", "'loss/L/w'") in message)
        assert (d.status in metadata.WARNED_STATUSES) == row.warned


def test_a_network_combines_its_weights_gradient_norms_as_one_vector():
    a = Observation(**{**HEALTHY, "grad_norm_mean": 3.0, "grad_norm_max": 3.0})
    b = Observation(**{**HEALTHY, "grad_norm_mean": 4.0, "grad_norm_max": math.nan, "has_gradient": None})
    combined = combine([a, b])
    assert combined.grad_norm_mean == 5.0 and combined.grad_norm_max == 3.0
    assert combined.has_gradient and combined.trainable and combined.seen_by_optimizer


def _held(epochs):
    """`SignHistory.held` after each of `epochs`, each `(smallest, largest)` gradient element."""
    history, held = SignHistory(), []
    for low, high in epochs:
        history = history.then(low, high)
        held.append(history.held)
    return held


NAN = math.nan


@pytest.mark.parametrize(
    "epochs, held",
    [
        # One sign throughout: a term's weight.
        ([(1, 2)] * 3, [True] * 3),
        # Rises, then falls without end (a label-smoothing epsilon): the flip starts the count again only.
        ([(-2, -1), (1, 2), (1, 2)], [True, True, True]),
        # Rises to its kink, where epochs of both signs come (a quantile level): each asks one more
        # epoch of one sign, at most 3.
        ([(-2, -1), (-1, 1), (1, 2), (1, 2), (-1, 1), (1, 2), (1, 2), (1, 2)],
         [True, False, False, True, False, False, False, True]),
        # Not measured, or exactly 0: no sign, the history unchanged.
        ([(NAN, NAN), (0, 0), (1, 2)], [False, False, True]),
        ([(-2, -1), (NAN, NAN)], [True, True]),
    ],
)
def test_a_gradient_that_turned_at_a_kink_asks_more_epochs_of_one_sign(epochs, held):
    assert _held(epochs) == held
