"""Where real losses keep their parameters: each pattern, broken and then fixed as the warning says.

For each pattern a real fit without the fix: the variable's status, a warning
whose advice is a `make_trainable(...)` call, and `report`'s exit code 1. Then
that very call (parsed from the warning, evaluated) on a fresh model, a real
fit: `training`, the value moved, exit code 0.
"""

import functools
import logging
import re
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from loss_param_tracker import LossParamTracker, LossParamWarning, discovery, load, make_trainable, report
from loss_param_tracker.discovery import discover
from loss_param_tracker.fix import attached_variables
from tests.conftest import make_data, make_model, load_run


class Robust(tf.Module):
    """The shape of Barron's adaptive robust loss in TensorFlow 2: a tf.Module of latents."""

    def __init__(self):
        super().__init__(name="robust")
        self.latent_alpha = tf.Variable(0.0, name="latent_alpha")  # alpha = 2 sigmoid(latent)
        self.latent_scale = tf.Variable(0.0, name="latent_scale")  # scale = softplus(latent)

    def __call__(self, x):
        alpha = 2.0 * tf.sigmoid(self.latent_alpha)
        scale = tf.nn.softplus(self.latent_scale) + 1e-3
        b = tf.abs(alpha - 2.0) + 1e-5
        z = x / scale
        return b / alpha * (tf.pow(z * z / b + 1.0, alpha / 2.0) - 1.0) + tf.math.log(scale)


class Adaptive(keras.losses.Loss):
    """A Keras loss that wraps the tf.Module."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.robust = Robust()

    def call(self, y_true, y_pred):
        return tf.reduce_mean(self.robust(y_true - y_pred))


def closure_loss():
    robust = Robust()

    def loss(y_true, y_pred):
        return tf.reduce_mean(robust(y_true - y_pred))

    return loss


def scaled_error(y_true, y_pred, scale):
    return tf.reduce_mean(tf.square(y_true - y_pred)) * scale + tf.square(scale - 3.0)


class Config:
    """A plain object of the user's own: the loss keeps its temperature there."""

    def __init__(self):
        self.temperature = tf.Variable(1.0, name="temperature")


class Contrastive(keras.losses.Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.config = Config()

    def call(self, y_true, y_pred):
        t = self.config.temperature
        return tf.reduce_mean(tf.square(y_true - y_pred)) / t + tf.square(t - 2.0)


class Scaled(keras.layers.Layer):
    """Old code: a raw tf.Variable on a layer, used in an add_loss term."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.temperature = tf.Variable(1.0, name="temperature")

    def call(self, x):
        self.add_loss(tf.square(self.temperature - 3.0))
        return x * self.temperature


def scaled_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, name="out"), Scaled(name="scaled")], name="net"
    )


def two_outputs():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    return keras.Model(
        inputs, {"a": keras.layers.Dense(1, name="a")(inputs), "b": keras.layers.Dense(1, name="b")(inputs)}
    )


# name: (make the model, compile's arguments, the path, the variable to watch)
PATTERNS = {
    "tf.Module in a loss": (
        make_model,
        lambda: dict(loss=Adaptive()),
        "loss/Adaptive/robust/latent_alpha",
        lambda m: m.loss.robust.latent_alpha,
    ),
    "closure of a function loss": (
        make_model,
        lambda: dict(loss=closure_loss()),
        "loss/loss/robust/latent_scale",
        lambda m: _cell(m.loss, "robust").latent_scale,
    ),
    "functools.partial argument": (
        make_model,
        lambda: dict(loss=functools.partial(scaled_error, scale=tf.Variable(1.0, name="scale"))),
        "loss/scaled_error/scale",
        lambda m: m.loss.keywords["scale"],
    ),
    "object of the user's class": (
        make_model,
        lambda: dict(loss=Contrastive()),
        "loss/Contrastive/config/temperature",
        lambda m: m.loss.config.temperature,
    ),
    "raw tf.Variable on a layer": (
        scaled_model,
        lambda: dict(loss="mse"),
        "model/net/scaled/temperature",
        lambda m: m.get_layer("scaled").temperature,
    ),
}


def _cell(function, name):
    return function.__closure__[function.__code__.co_freevars.index(name)].cell_contents


def _fit(model, log_dir, epochs=3):
    x, y = make_data()
    if model.name != "net" and isinstance(model.output, dict):
        y = {"a": y, "b": y}
    tracker = LossParamTracker(log_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[tracker])
    return tracker, [str(w.message) for w in caught if w.category is LossParamWarning]


@pytest.mark.parametrize("name", list(PATTERNS))
def test_pattern_is_found_warned_and_fixed_by_the_advised_call(name, tmp_path):
    make, compile_args, path, watched = PATTERNS[name]
    model = make()
    model.compile(optimizer=keras.optimizers.Adam(0.05), **compile_args())
    broken = str(tmp_path / "broken")
    tracker, warned = _fit(model, broken)
    assert tracker.diagnosis[path] == "not_updated", tracker.diagnosis
    assert float(watched(model).numpy()) in (0.0, 1.0), "untrained"
    (message,) = [w for w in warned if f"'{path}'" in w]
    call = re.search(r"make_trainable\([^)]*\)", message).group(0)
    assert report.main(["report", broken]) == 1

    model = make()
    model.compile(optimizer=keras.optimizers.Adam(0.05), **compile_args())
    eval(call, {"make_trainable": make_trainable, "model": model})  # the advice, as given
    assert len(attached_variables(model)) >= 1
    before = float(watched(model).numpy())
    fixed = str(tmp_path / "fixed")
    tracker, warned = _fit(model, fixed)
    assert tracker.diagnosis[path] == "training", tracker.diagnosis
    assert not warned, warned
    trained = {discovery.variable_key(v) for v in model.trainable_variables}
    assert discovery.variable_key(watched(model)) in trained, "the optimizer trains the variable the code reads"
    assert float(watched(model).numpy()) != before
    values = load_run(fixed).variables[path]
    assert values.initial == before and len(set(values.value.tolist())) == 3
    assert report.main(["report", fixed]) == 0


def test_a_loss_weight_nothing_moves_is_not_updated_without_the_advice_that_would_break_it(tmp_path, caplog):
    # Keras multiplies the loss by it: descent on it has no minimum.
    def make():
        model = two_outputs()
        weight = keras.Variable(1.0, name="wa")
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss={"a": "mse", "b": "mse"}, loss_weights={"a": weight, "b": 1.0})
        return model, weight

    model, weight = make()
    tracker, warned = _fit(model, str(tmp_path / "still"))
    assert tracker.diagnosis["loss/loss_weights/a"] == "not_updated"
    (message,) = [w for w in warned if "loss/loss_weights/a" in w]
    assert "linear" in message and "make_trainable" not in message.split("Fix:")[1], message
    with caplog.at_level(logging.INFO, "loss_param_tracker"):
        assert make_trainable(model) == [], "a loss weight is attached only when given"
    assert "loss/loss_weights/a is left as it is" in caplog.text

    # Set by a callback each epoch, as Keras's issue tracker advises: training, no warning.
    model, weight = make()

    class Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            weight.assign(1.0 / (epoch + 1))

    x, y = make_data()
    tracker = LossParamTracker(str(tmp_path / "scheduled"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, {"a": y, "b": y}, epochs=3, batch_size=64, verbose=0, callbacks=[Schedule(), tracker])
    assert tracker.diagnosis["loss/loss_weights/a"] == "training"
    assert not [w for w in caught if w.category is LossParamWarning], [str(w.message) for w in caught]


def test_a_non_trainable_loss_weight_annealed_by_a_callback_is_frozen_and_plotted(tmp_path):
    weight = keras.Variable(1.0, trainable=False, name="wa")

    class Anneal(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weight.assign(weight * 0.5)

    model = two_outputs()
    model.compile(optimizer="adam", loss={"a": "mse", "b": "mse"}, loss_weights={"a": weight, "b": 1.0})
    x, y = make_data()
    tracker = LossParamTracker(str(tmp_path))
    model.fit(x, {"a": y, "b": y}, epochs=3, verbose=0, callbacks=[Anneal(), tracker])
    assert tracker.diagnosis["loss/loss_weights/a"] == "frozen"
    assert load_run(str(tmp_path)).variables["loss/loss_weights/a"].value.tolist() == [0.5, 0.25, 0.125]


class Perceptual(keras.losses.Loss):
    """A perceptual loss: a feature network (frozen or not) and a learned weight."""

    def __init__(self, tune=False, **kwargs):
        super().__init__(**kwargs)
        keras.utils.set_random_seed(1)
        inputs = keras.Input((1,))
        h = inputs
        for i in range(12):
            h = keras.layers.Dense(4, activation="tanh", name=f"f{i}")(h)
        self.features = keras.Model(inputs, h, name="features")
        self.features.trainable = tune
        self.weight = keras.Variable(1.0, name="weight")

    def call(self, y_true, y_pred):
        gap = tf.reduce_mean(tf.square(self.features(y_true) - self.features(y_pred)))
        return self.weight * gap + tf.square(self.weight - 2.0) + tf.reduce_mean(tf.square(y_true - y_pred))


@pytest.mark.parametrize("tune", [False, True])
def test_a_network_held_by_a_loss_is_one_line_and_one_status(tune, tmp_path):
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=Perceptual(tune))
    tracker, warned = _fit(model, str(tmp_path / "broken"), epochs=2)
    network = "loss/Perceptual/features"
    assert tracker.diagnosis[network] == ("not_updated" if tune else "frozen")
    assert not [p for p in tracker.diagnosis if p.startswith(network + "/")], "no line per weight"
    assert len([w for w in warned if network in w]) == (1 if tune else 0), warned
    if tune:  # a feature extractor trained with the model shrinks the features the loss compares
        (said,) = [w for w in warned if network in w]
        assert "Fix: If it is a fixed feature extractor (a perceptual or style loss's network), set its trainable=False" in said
        printed = report.render_text(report.summarize(load(str(tmp_path / "broken"))))
        assert re.search(rf"{network}\s+network\s+not_updated", printed) and "set its trainable=False" in printed, printed
    run = load_run(str(tmp_path / "broken"))
    assert run.variables[network].role == "loss" and run.variables[network].norms.shape == (2, 4)
    weights = [p for p, v in run.variables.items() if p.startswith(network + "/")]
    assert len(weights) == 24 and all(run.variables[p].role == "model" for p in weights)

    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=Perceptual(tune))
    make_trainable(model)
    tracker, warned = _fit(model, str(tmp_path / "fixed"), epochs=2)
    assert tracker.diagnosis[network] == ("training" if tune else "frozen") and not warned
    assert tracker.diagnosis["loss/Perceptual/weight"] == "training"


def test_walk_survives_cycles_and_reports_each_variable_once():
    class Cyclic(keras.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = keras.Variable(1.0, name="scale")
            self.me = self
            self.ring = [self, {"back": None}]
            self.ring[1]["back"] = self.ring
            self.node = Config()
            self.node.parent = self
            self.node.alias = self.scale

        def call(self, y_true, y_pred):
            return self.scale * tf.reduce_mean(tf.square(y_true - y_pred))

    model = make_model()
    model.compile(optimizer="adam", loss=Cyclic())
    found = discover(model)
    assert [v.path for v in found.variables] == [
        "loss/Cyclic/scale",
        "loss/Cyclic/node/temperature",
    ]


def test_a_layer_of_the_model_held_by_the_loss_stays_the_models():
    model = make_model()

    class Tied(keras.losses.Loss):
        def __init__(self, layer, **kwargs):
            super().__init__(**kwargs)
            self.layer = layer  # shares the model's output layer

        def call(self, y_true, y_pred):
            return tf.reduce_mean(tf.square(y_true - y_pred)) + 0.0 * tf.reduce_sum(self.layer.kernel)

    model.compile(optimizer="adam", loss=Tied(model.get_layer("out")))
    assert discover(model).variables == [] and discover(model).networks == []


def test_importing_changes_nothing_in_keras_and_unfixed_models_are_untouched(tmp_path):
    script = textwrap.dedent(
        f"""
        import keras
        from keras.src.trainers.trainer import Trainer
        before = {{n: keras.Model.__dict__.get(n) for n in ("get_compile_config", "compile_from_config", "trainable_variables")}}
        import loss_param_tracker, loss_param_tracker.fix
        after = {{n: keras.Model.__dict__.get(n) for n in before}}
        assert before == after, (before, after)
        assert keras.Model.get_compile_config is Trainer.get_compile_config
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.loss_parameters = 1  # a user attribute of the old generic name
        model.compile(optimizer="adam", loss="mse")
        model.save({str(tmp_path / "plain.keras")!r})
        assert "get_compile_config" not in vars(model)
        keras.models.load_model({str(tmp_path / "plain.keras")!r})
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_make_trainable_with_exact_variables_and_clear_errors():
    loss = Adaptive()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    alpha = loss.robust.latent_alpha
    attached = make_trainable(model, variables=[alpha])
    assert [v.value for v in attached] == [alpha] and loss.robust.latent_alpha is alpha
    trained = {discovery.variable_key(v) for v in model.trainable_variables}
    assert discovery.variable_key(loss.robust.latent_scale) not in trained, "exactly the variables given"
    # A raw variable out of reach of the loss: the optimizer is handed that very variable.
    loose = tf.Variable(1.0)
    other = make_model()
    other.compile(optimizer="adam", loss="mse")
    assert [v.value for v in make_trainable(other, variables=[loose])] == [loose]
    with pytest.raises(TypeError, match="takes a list of .*received ResourceVariable"):
        make_trainable(model, variables=tf.Variable(1.0))
    with pytest.raises(ValueError, match="not compiled.*make_trainable\\(model, loss\\)"):
        make_trainable(make_model())
    # In a tuple (a partial's arguments): no slot to replace it in, none needed.
    in_tuple = make_model()
    scale = tf.Variable(1.0)
    in_tuple.compile(optimizer=keras.optimizers.Adam(0.05), loss=functools.partial(scaled_error, scale))
    make_trainable(in_tuple)
    x, y = make_data()
    in_tuple.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert float(scale.numpy()) != 1.0, "the variable in the tuple trains"
    # A plain-function loss given to make_trainable before compile.
    loss_fn = closure_loss()
    early = make_model()
    assert len(make_trainable(early, loss_fn)) == 2


def test_save_and_load_model_of_the_new_patterns(tmp_path):
    x, y = make_data()
    # A raw variable on a layer, and a tf.Module in a loss: restored, attached, trained on.
    for model, custom in (
        (scaled_model(), {"Scaled": Scaled}),
        (make_model(), {"Adaptive": Adaptive}),
    ):
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=Adaptive() if "Adaptive" in custom else "mse")
        make_trainable(model)
        model.fit(x, y, epochs=2, verbose=0)
        model.save(tmp_path / "m.keras")
        loaded = keras.models.load_model(tmp_path / "m.keras", custom_objects=custom)
        learned, restored = attached_variables(model), attached_variables(loaded)
        assert [v.name for v in restored] == [v.name for v in learned] and learned
        for a, b in zip(restored, learned):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    # Keras saves loss_weights as numbers: saving says so rather than lose the learned weight.
    model = two_outputs()
    weight = keras.Variable(1.0)
    model.compile(optimizer="adam", loss={"a": "mse", "b": "mse"}, loss_weights={"a": weight, "b": 1.0})
    make_trainable(model, variables=[weight])
    with pytest.raises(ValueError, match="loss/loss_weights/a.*saves loss_weights as numbers.*save_weights"):
        model.save(tmp_path / "lw.keras")
