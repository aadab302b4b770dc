"""`scan`: the loss over a variable's values on a batch, on TensorFlow (JAX and PyTorch: test_backends)."""

import keras
import numpy as np
import pytest

import loss_param_tracker
from loss_param_tracker import scan
from tests.models import GaussianNLL, assert_scanned, make_data, make_model, scanned


def test_scan_finds_a_log_variances_minimum_and_leaves_the_training_as_it_was():
    assert_scanned(scanned())


def test_scan_takes_the_variable_itself_and_arrays_of_its_shape():
    x, y = make_data(n=64)
    model = make_model()
    loss = GaussianNLL()
    model.compile(optimizer="adam", loss=loss)
    by_path = scan(model, x, y, "loss/GaussianNLL/log_var", [0.0, 1.0])
    by_variable = scan(model, x, y, loss.log_var, [np.zeros(()), np.ones(())])
    np.testing.assert_array_equal(by_path.losses, by_variable.losses)
    assert loss_param_tracker.scan is scan, "the package's name stays the function after its module is imported"


def test_a_loss_that_is_not_finite_at_a_value_reads_nan_there():
    x, y = make_data(n=64)
    model = make_model()
    model.compile(optimizer="adam", loss=GaussianNLL())
    found = scan(model, x, y, "loss/GaussianNLL/log_var", [-1e6, 0.0, 1.0])
    assert np.isnan(found.losses[0]) and np.isfinite(found.losses[1:]).all(), found.losses
    assert found.lowest in (1, 2)
    nowhere = scan(model, x, y, "loss/GaussianNLL/log_var", [-1e6, -2e6])
    assert nowhere.lowest is None and not nowhere.turns_up
    assert str(nowhere).endswith("the loss was not finite at any value"), str(nowhere)


class Hinged(keras.losses.Loss):
    """An MSE weighted by relu(w): it falls to 0 as w falls to 0, and stays there."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.w = keras.Variable(1.0, name="w")

    def call(self, y_true, y_pred):
        return keras.ops.relu(self.w) * keras.ops.mean(keras.ops.square(y_true - y_pred))


def test_a_loss_that_falls_to_a_plateau_does_not_turn_up():
    x, y = make_data(n=64)
    model = make_model()
    model.compile(optimizer="adam", loss=Hinged())
    for values in ([1.0, 0.5, 0.0, -0.5, -1.0], [-1.0, -0.5, 0.0, 0.5, 1.0]):
        found = scan(model, x, y, "loss/Hinged/w", values)
        assert not found.turns_up and "no minimum inside it" in str(found), str(found)
    assert scan(model, x, y, "loss/Hinged/w", [-1.0, 0.5, 1.0]).turns_up is False


def test_bad_input_says_what_was_received_and_what_to_do():
    x, y = make_data(n=16)
    model = make_model()
    with pytest.raises(ValueError, match="not compiled.*model.compile"):
        scan(model, x, y, "loss/GaussianNLL/log_var", [0.0])
    model.compile(optimizer="adam", loss=GaussianNLL())
    with pytest.raises(ValueError, match=r"variable='loss/Nope/t'.*those found: \['loss/GaussianNLL/log_var'\]"):
        scan(model, x, y, "loss/Nope/t", [0.0])
    with pytest.raises(TypeError, match="a variable or its path.*received 3"):
        scan(model, x, y, 3, [0.0])
    with pytest.raises(ValueError, match=r"shape \(2,\) for a variable of shape \(\)"):
        scan(model, x, y, "loss/GaussianNLL/log_var", [[0.0, 1.0]])
    with pytest.raises(ValueError, match="no values"):
        scan(model, x, y, "loss/GaussianNLL/log_var", [])
    with pytest.raises(TypeError, match="keras.Model"):
        scan("model", x, y, "loss/GaussianNLL/log_var", [0.0])
    assert keras.ops.convert_to_numpy(model.loss.log_var) == 0.0
