"""Discovery: every container kind, multi-output naming, extras, and what is skipped."""

import argparse
import logging
import types

import keras
import pytest
import tensorflow as tf

from loss_param_tracker.discovery import discover, layer_places, model_weight_paths, variable_key
from tests.conftest import GaussianNLL, ScaledMSE, fit, load_run, make_model


class Scale(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return self.scale * x


class Everything(keras.losses.Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.raw = tf.Variable(1.0)
        self.kv = keras.Variable(2.0, name="kv")
        self.layer = Scale()
        self.inner = GaussianNLL()
        self.in_list = [tf.Variable(3.0), keras.Variable(4.0)]
        self.in_tuple = (tf.Variable(5.0),)
        self.in_dict = {"a": tf.Variable(6.0), "b": [keras.Variable(7.0)]}
        self.alias = self.raw  # the same variable twice: reported once
        self.counter = tf.Variable(0, dtype=tf.int64)
        self._private = keras.Variable(8.0)
        # Settings held in the standard library's namespaces.
        self.config = types.SimpleNamespace(scale=keras.Variable(9.0), name="cfg")
        self.args = argparse.Namespace(margin=tf.Variable(10.0))

    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.square(y_true - y_pred))


def compiled(loss, outputs=1):
    if outputs == 1:
        model = make_model()
    else:
        inputs = keras.Input((4,))
        model = keras.Model(
            inputs, [keras.layers.Dense(1, name=f"y{i}")(inputs) for i in range(outputs)]
        )
    model.compile(optimizer="adam", loss=loss)
    return model


def test_every_container_kind_with_stable_paths(caplog):
    loss = Everything()
    with caplog.at_level(logging.DEBUG, logger="loss_param_tracker"):
        found = discover(compiled(loss))
    paths = [v.path for v in found.variables]
    assert paths == [
        "loss/Everything/raw",
        "loss/Everything/kv",
        "loss/Everything/layer/scale",
        "loss/Everything/inner/log_var",
        "loss/Everything/in_list/0",
        "loss/Everything/in_list/1",
        "loss/Everything/in_tuple/0",
        "loss/Everything/in_dict/a",
        "loss/Everything/in_dict/b/0",
        "loss/Everything/private",
        "loss/Everything/config/scale",
        "loss/Everything/args/margin",
    ], paths
    assert found.variables[0].variable is loss.raw
    assert found.variables[2].variable is loss.layer.scale
    assert [type(x).__name__ for x in found.losses] == ["Everything", "GaussianNLL"]
    assert "loss/Everything/counter" in caplog.text and "int64" in caplog.text


@pytest.mark.parametrize("as_dict", [False, True])
def test_multi_output_losses_are_named_by_output(as_dict):
    losses = [ScaledMSE(), GaussianNLL()]
    model = compiled({"y0": losses[0], "y1": losses[1]} if as_dict else losses, outputs=2)
    assert [v.path for v in discover(model).variables] == [
        "loss/y0/ScaledMSE/weight",
        "loss/y1/GaussianNLL/log_var",
    ]


def test_string_and_function_losses_have_no_variables():
    assert discover(compiled("mse")).variables == []
    assert discover(compiled(keras.losses.mean_squared_error)).variables == []


def test_extra_variables_found_by_the_walk_keep_its_path_others_go_under_extra():
    scale = tf.Variable(1.0, name="closure_scale")
    elsewhere = keras.Variable(2.0, name="elsewhere")

    def loss_fn(y_true, y_pred):
        return scale * tf.reduce_mean(tf.square(y_true - y_pred))

    found = discover(compiled(loss_fn), extra_variables=[scale, elsewhere])
    assert [v.path for v in found.variables] == ["loss/loss_fn/scale", "loss/extra/elsewhere"]
    with pytest.raises(TypeError, match="received float"):
        discover(compiled(loss_fn), extra_variables=[1.0])


class DecayInTheLoss(GaussianNLL):
    """Holds the model's kernels to add their weight decay, as published losses do."""

    def __init__(self, kernels, **kwargs):
        super().__init__(**kwargs)
        self.kernels = list(kernels)

    def call(self, y_true, y_pred):
        return super().call(y_true, y_pred) + 1e-3 * tf.add_n([tf.nn.l2_loss(k) for k in self.kernels])


def test_the_models_own_weights_held_by_the_loss_stay_the_models(log_dir):
    """They were logged as loss variables, and left out of the model's norms."""
    model = make_model()
    loss = DecayInTheLoss([model.get_layer("hidden").kernel, model.get_layer("out").kernel])
    model.compile(optimizer="adam", loss=loss)
    assert [v.path for v in discover(model).variables] == ["loss/DecayInTheLoss/log_var"]
    fit(model, loss, log_dir, epochs=1)
    variables = load_run(log_dir).variables
    assert {p: v.role for p, v in variables.items()} == {
        "loss/DecayInTheLoss/log_var": "loss",
        **{f"model/net/{layer}/{weight}": "model" for layer in ("hidden", "out") for weight in ("kernel", "bias")},
    }


def test_uncompiled_model_is_a_clear_error():
    with pytest.raises(ValueError, match="never compiled.*model.compile"):
        discover(make_model())


def test_model_weight_paths_are_unique_and_exclude_loss_variables():
    model = compiled("mse")
    paths = [p for p, _ in model_weight_paths(model)]
    assert paths == [
        "model/net/hidden/kernel",
        "model/net/hidden/bias",
        "model/net/out/kernel",
        "model/net/out/bias",
    ]
    kernel = model.weights[0]
    assert "model/net/hidden/kernel" not in [
        p for p, _ in model_weight_paths(model, exclude={variable_key(kernel)})
    ]


def test_layers_have_the_same_place_in_every_run_of_one_architecture():
    # Built in one process without names, as a notebook does: Keras numbers them on.
    def unnamed():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
        return [p for p, _ in model_weight_paths(model)]

    first, second = unnamed(), unnamed()
    assert first != second, "Keras gave both models the same names; the test shows nothing"
    assert list(layer_places(first).values()) == list(layer_places(second).values()) == [0, 0, 1, 1]
