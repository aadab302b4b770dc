"""The diagnosis rules on their own: one observation per status, and their precedence."""

import math

import pytest

from loss_param_tracker.diagnosis import Observation, diagnose, warning_message

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


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, "training"),
        ({"trainable": False}, "frozen"),
        ({"value_finite": False}, "non_finite"),
        ({"grad_norm_mean": math.nan, "grad_norm_max": math.nan}, "non_finite"),
        ({"grad_norm_mean": math.inf}, "non_finite"),
        ({"has_gradient": False, "grad_norm_mean": math.nan, "grad_norm_max": math.nan}, "no_gradient"),
        ({"seen_by_optimizer": False, "value_changed": False}, "not_updated"),
        ({"value_changed": False}, "not_updated"),
        ({"grad_norm_mean": 0.0, "grad_norm_max": 0.0, "value_changed": False}, "zero_gradient"),
        ({"grad_norm_mean": 0.0, "grad_norm_max": 0.0}, "zero_gradient"),
        # Before any step: only what is known before training counts.
        ({"steps": 0, "has_gradient": None, "value_changed": None}, "training"),
        ({"steps": 0, "has_gradient": None, "seen_by_optimizer": False}, "not_updated"),
    ],
)
def test_each_status(changes, expected):
    assert diagnose(observe(**changes)) == expected


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"trainable": False, "value_finite": False}, "frozen"),
        ({"value_finite": False, "has_gradient": False}, "non_finite"),
        ({"has_gradient": False, "seen_by_optimizer": False}, "no_gradient"),
        ({"seen_by_optimizer": False, "grad_norm_max": 0.0, "grad_norm_mean": 0.0}, "not_updated"),
    ],
)
def test_precedence(changes, expected):
    assert diagnose(observe(**changes)) == expected


def test_warning_names_variable_status_and_fix():
    message = warning_message("loss/ScaledMSE/weight", "not_updated", "ScaledMSE")
    assert "loss/ScaledMSE/weight" in message
    assert "[not_updated]" in message
    assert "make_trainable(model, loss)" in message
