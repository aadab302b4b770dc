"""make_trainable: the seed post's patterns train after it, and weight files and .keras files keep them."""

import argparse
import logging
import os
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from loss_param_tracker import LossParamTracker, LossParamWarning, make_trainable
from loss_param_tracker.fix import attached_variables
from tests.conftest import GaussianNLL, ScaledMSE, compile_fixed, fit, load_run, make_data, make_model
from tests.models import constrained_fit, held_on_the_model_fit
from loss_param_tracker import discovery

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WeightedError(keras.layers.Layer):
    """The seed post's second pattern: a Layer that holds the weight."""

    def __init__(self, initial=1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(initial), name="custom_weight"
        )

    def call(self, error):
        return self.weight * error


class LayerLoss(keras.losses.Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weighted_error = WeightedError()

    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.square(self.weighted_error(y_pred - y_true)))


def current(loss):
    variable = loss.weight if hasattr(loss, "weight") else loss.weighted_error.weight
    return float(variable.numpy())


@pytest.mark.parametrize("make_loss, path", [
    (ScaledMSE, "loss/ScaledMSE/weight"),
    (LayerLoss, "loss/LayerLoss/weighted_error/custom_weight"),
])
@pytest.mark.parametrize("fixed", [False, True])
def test_seed_patterns(make_loss, path, fixed, log_dir, recwarn):
    loss = make_loss()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    if fixed:
        attached = make_trainable(model, loss)
        assert len(attached) == 1
    tracker = fit(model, loss, log_dir, epochs=3)
    assert tracker.diagnosis[path] == ("training" if fixed else "not_updated")
    values = load_run(log_dir).variables[path].value
    if fixed:
        assert current(loss) != 1.0 and len(set(values.tolist())) == 3, values
    else:
        assert current(loss) == 1.0 and values.tolist() == [1.0, 1.0, 1.0]
    warned = [w for w in recwarn if w.category is LossParamWarning]
    assert bool(warned) is not fixed


@pytest.mark.parametrize("raw", [False, True], ids=["keras_variable", "raw_tf_variable"])
def test_a_variables_constraint_holds_after_the_fix_and_is_named_once_it_holds(raw, log_dir):
    """A raw `tf.Variable(constraint=...)` was wrapped without its constraint: descent took `c` to
    -0.24 through the bound of 0.5 its code sets. Held there, the cause named the learning rate."""
    one = constrained_fit(log_dir, raw=raw)
    assert one["c"][2:] == [0.5] * 3, one
    assert one["cause"] == ["", "", "", "held_by_constraint", "held_by_constraint"], one


class SubModelStep(keras.Model):
    """A VQ-VAE trainer's shape (keras-io's vq_vae.py): a custom train_step that differentiates and
    applies the trainable variables of the model it wraps, not its own."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x):
        return self.inner(x)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        variables = self.inner.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return {"loss": loss}


def test_a_fix_the_custom_step_never_hands_to_the_optimizer_is_said_so_not_advised_again(log_dir, recwarn):
    """The tracker said not_in_optimizer again, and advised the make_trainable call just made."""
    loss = GaussianNLL()
    model = SubModelStep(make_model())
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    make_trainable(model, loss)
    run = load_run(fit(model, loss, log_dir).log_dir)
    log_var = run.variables["loss/GaussianNLL/log_var"]
    assert list(zip(log_var.status, log_var.cause)) == [("not_updated", "fix_not_handed")] * 2
    said = [str(w.message) for w in recwarn if w.category is LossParamWarning]
    assert len(said) == 1 and "self.trainable_variables" in said[0] and "make_trainable(" not in said[0], said


def test_an_attached_variable_something_else_moves_is_not_said_to_be_reached_by_the_fix(log_dir, caplog):
    """The steps never hand it to the optimizer, and a callback assigns it: it moves, `training`
    (`outside_optimizer`), but not by the fix, which the INFO line said it had reached."""
    loss = GaussianNLL()
    model = SubModelStep(make_model())
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    make_trainable(model, loss)
    nudge = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: loss.log_var.assign_add(0.1))
    with caplog.at_level(logging.INFO, logger="loss_param_tracker"):
        fit(model, loss, log_dir, callbacks=[nudge])
    log_var = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert log_var.cause.tolist() == ["outside_optimizer"] * 2, log_var.cause
    assert "fix reached" not in caplog.text


class SettingsHeldWeighting(keras.Model):
    """Uncertainty weighting in a model's own `compute_loss` (as in public multi-task code), its
    log-variances kept in a settings namespace on the model, where Keras tracks no variable."""

    def __init__(self, holder=types.SimpleNamespace):
        super().__init__()
        self.hidden, self.out = keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)
        self.cfg = holder(log_vars=keras.Variable(np.zeros(2, "float32"), name="log_vars"))

    def call(self, x):
        return self.out(self.hidden(x))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        per_task = keras.ops.mean(keras.ops.square(y - y_pred), axis=0)
        return keras.ops.sum(keras.ops.exp(-self.cfg.log_vars) * per_task + self.cfg.log_vars)


@pytest.mark.parametrize("holder", [types.SimpleNamespace, argparse.Namespace])
@pytest.mark.parametrize("fixed", [False, True])
def test_a_variable_in_a_namespace_on_the_model_is_found_and_fixed(fixed, holder, log_dir):
    """Keras tracks no variable in a namespace of settings: read in the model's `compute_loss`, it
    never trained, and the tracker said nothing of it. Found now, it is `not_in_optimizer`, and
    make_trainable trains it: the noisier task's log-variance rises above the other's, which falls."""
    x, y = make_data(n=256)
    y = np.concatenate([y, y + np.random.default_rng(1).normal(size=y.shape).astype("float32")], axis=1)
    keras.utils.set_random_seed(0)
    model = SettingsHeldWeighting(holder)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    if fixed:
        assert [v.name for v in make_trainable(model)] == ["log_vars"]
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[LossParamTracker(log_dir)])
    (path,) = [p for p in load_run(log_dir).variables if p.endswith("cfg/log_vars")]
    variable = load_run(log_dir).variables[path]
    log_vars = keras.ops.convert_to_numpy(model.cfg.log_vars)
    if fixed:
        assert variable.status.tolist() == ["training"] * 3, variable.status
        assert log_vars[0] < 0 and log_vars[1] > log_vars[0] + 0.3, log_vars
    else:
        assert variable.cause.tolist() == ["not_in_optimizer"] * 3, variable.cause
        assert (log_vars == 0).all()


def test_before_compile_idempotent_and_dict_losses(log_dir):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs), "b": keras.layers.Dense(1, name="b")(inputs)})
    losses = {"a": GaussianNLL(), "b": ScaledMSE()}
    first = make_trainable(model, losses)
    assert make_trainable(model, losses) == first, "a second call attaches nothing new"
    assert len(model.trainable_variables) == 4 + 2
    wrapper = next(v for v in first if discovery.variable_key(v) == discovery.variable_key(losses["b"].weight))
    assert wrapper.value is losses["b"].weight, "the optimizer is handed the very tf.Variable the loss reads"
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses)
    x, y = make_data()
    tracker = LossParamTracker(log_dir)
    model.fit(x, {"a": y, "b": y}, epochs=2, verbose=0, callbacks=[tracker])
    assert tracker.diagnosis["loss/a/GaussianNLL/log_var"] == "training"
    assert tracker.diagnosis["loss/b/ScaledMSE/weight"] == "training"


def test_after_fit_it_raises_with_what_to_do(log_dir, recwarn):
    loss = GaussianNLL()
    model = make_model()
    fit(model, loss, log_dir, epochs=1)
    with pytest.raises(RuntimeError, match="already built.*before the first fit.*recompile"):
        make_trainable(model, loss)
    compile_fixed(model, loss)
    tracker = fit(model, loss, log_dir, epochs=1)
    assert tracker.diagnosis["loss/GaussianNLL/log_var"] == "training"


@pytest.mark.parametrize("model, loss, received", [
    ("not a model", None, "received str"),
    (None, "mse", "received str"),
    (None, [GaussianNLL(), len], "received builtin_function_or_method"),
])
def test_bad_arguments_are_type_errors(model, loss, received):
    with pytest.raises(TypeError, match=received):
        make_trainable(model if model is not None else make_model(), loss)


def test_a_path_stands_for_the_variable_found_there():
    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    with pytest.raises(ValueError, match=r"variables=\['loss/Nope/w'\].*found: \['loss/GaussianNLL/log_var'\]"):
        make_trainable(model, variables=["loss/Nope/w"])
    assert make_trainable(model, variables=["loss/GaussianNLL/log_var"]) == [loss.log_var]
    assert make_trainable(model) == [loss.log_var], "nothing twice"


def test_save_weights_and_load_weights_keep_the_parameters(tmp_path, log_dir):
    loss = GaussianNLL()
    model = make_model()
    compile_fixed(model, loss)
    fit(model, loss, log_dir, epochs=2)
    learned = float(loss.log_var.numpy())
    model.save_weights(tmp_path / "w.weights.h5")

    fresh_loss = GaussianNLL()
    fresh = make_model(seed=9)
    make_trainable(fresh, fresh_loss)
    fresh.load_weights(tmp_path / "w.weights.h5")
    assert float(fresh_loss.log_var.numpy()) == learned != 0.0


def test_backup_and_restore_resumes_parameters_and_epoch_axis(tmp_path, log_dir):
    class StopAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    def run(callbacks):
        loss = GaussianNLL()
        model = make_model()
        compile_fixed(model, loss)
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        x, y = make_data()
        model.fit(x, y, epochs=4, verbose=0, callbacks=[backup, LossParamTracker(log_dir)] + callbacks)
        return loss

    with pytest.raises(KeyboardInterrupt):
        run([StopAt()])
    interrupted = load_run(log_dir).variables["loss/GaussianNLL/log_var"].value[-1]
    resumed = run([])
    variable = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert variable.steps.tolist() == [0, 1, 2, 3], "no overlap, no gap"
    assert variable.value[1] == interrupted, "the resumed run started from the backed-up value"
    assert float(resumed.log_var.numpy()) == variable.value[-1]


CUSTOM_OBJECTS = {"GaussianNLL": GaussianNLL, "ScaledMSE": ScaledMSE, "LayerLoss": LayerLoss}


def parameter(loss):
    """The one trainable parameter of the loss, wherever the loss keeps it."""
    if isinstance(loss, GaussianNLL):
        return loss.log_var
    return loss.weight if isinstance(loss, ScaledMSE) else loss.weighted_error.weight


def assert_same_optimizer_state(loaded, model):
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for restored, saved in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path, strict=True)


@pytest.mark.parametrize("make_loss, path", [
    (GaussianNLL, "loss/GaussianNLL/log_var"),  # a keras.Variable on the loss
    (ScaledMSE, "loss/ScaledMSE/weight"),  # the seed's raw tf.Variable
    (LayerLoss, "loss/LayerLoss/weighted_error/custom_weight"),  # a Layer held by the loss
])
def test_save_and_load_model_restore_the_parameters_and_training_goes_on(make_loss, path, tmp_path, log_dir):
    loss = make_loss()
    model = make_model()
    compile_fixed(model, loss)
    fit(model, loss, log_dir, epochs=2)
    learned = parameter(loss).numpy()
    assert learned != 1.0 and learned != 0.0
    model.save(tmp_path / "m.keras")

    loaded = keras.models.load_model(tmp_path / "m.keras", custom_objects=CUSTOM_OBJECTS)
    assert type(loaded.loss) is make_loss and loaded.loss is not loss
    variable = parameter(loaded.loss)
    assert discovery.is_variable(variable)
    np.testing.assert_array_equal(variable.numpy(), learned)
    keys = [discovery.variable_key(v) for v in attached_variables(loaded)]
    assert keys == [discovery.variable_key(variable)], "attached to the loaded model"
    assert discovery.variable_key(variable) in {discovery.variable_key(v) for v in loaded.trainable_variables}
    assert_same_optimizer_state(loaded, model)  # the optimizer's moments for it included
    assert make_trainable(loaded) == attached_variables(loaded), "calling it again is harmless"

    resumed_dir = str(tmp_path / "resumed")
    tracker = fit(loaded, loaded.loss, resumed_dir, epochs=2)
    assert tracker.diagnosis[path] == "training"
    values = load_run(resumed_dir).variables[path].value
    assert len(set(values.tolist())) == 2 and learned not in values.tolist(), values
    assert int(loaded.optimizer.iterations.numpy()) == 2 * int(model.optimizer.iterations.numpy())


def test_save_and_load_model_with_dict_and_list_losses(tmp_path):
    x, y = make_data()
    inputs = keras.Input((4,))
    dict_model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs), "b": keras.layers.Dense(1, name="b")(inputs)})
    dict_model.compile(optimizer=keras.optimizers.Adam(0.05), loss={"a": GaussianNLL(), "b": ScaledMSE()})
    make_trainable(dict_model)
    dict_model.fit(x, {"a": y, "b": y}, epochs=2, verbose=0)
    list_model = keras.Model(inputs, [keras.layers.Dense(1, name="p")(inputs), keras.layers.Dense(1, name="q")(inputs)])
    losses = [GaussianNLL(), LayerLoss()]
    list_model.compile(optimizer=keras.optimizers.Adam(0.05), loss=losses)
    make_trainable(list_model, losses[1])  # attached in another order than discovery's
    make_trainable(list_model, losses)
    list_model.fit(x, [y, y], epochs=2, verbose=0)

    for model in dict_model, list_model:
        model.save(tmp_path / "m.keras")
        loaded = keras.models.load_model(tmp_path / "m.keras", custom_objects=CUSTOM_OBJECTS)
        assert [v.name for v in attached_variables(loaded)] == [v.name for v in attached_variables(model)]
        for restored, learned in zip(attached_variables(loaded), attached_variables(model)):
            np.testing.assert_array_equal(restored.numpy(), learned.numpy())
        assert_same_optimizer_state(loaded, model)
    assert parameter(loaded.loss[1]) is attached_variables(loaded)[0]


def test_load_model_in_a_fresh_process(tmp_path, log_dir):
    loss = ScaledMSE()
    model = make_model()
    compile_fixed(model, loss)
    fit(model, loss, log_dir, epochs=2)
    model.save(tmp_path / "m.keras")
    script = textwrap.dedent(f"""
        import keras, numpy as np
        from tests.conftest import ScaledMSE
        path = {str(tmp_path / "m.keras")!r}
        try:
            keras.models.load_model(path, custom_objects={{"ScaledMSE": ScaledMSE}})
        except TypeError as error:
            print("without the import:", error)
        from loss_param_tracker import make_trainable
        loaded = keras.models.load_model(path, custom_objects={{"ScaledMSE": ScaledMSE}})
        np.save({str(tmp_path / "weight.npy")!r}, loaded.loss.weight.numpy())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "without the import:" in done.stdout
    assert "TrainedLossParameters" in done.stdout and "import loss_param_tracker" in done.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "weight.npy"), loss.weight.numpy())


def test_save_and_load_say_what_cannot_be_restored(tmp_path):
    class Plain(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return tf.reduce_mean(tf.square(y_true - y_pred))

    loss = GaussianNLL()
    model = make_model()
    compile_fixed(model, loss)
    model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="loss/GaussianNLL/log_var.*do not have.*loss class it was saved with"):
        keras.models.load_model(tmp_path / "m.keras", custom_objects={"GaussianNLL": Plain})
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=GaussianNLL())  # the attached log_var is stale
    with pytest.raises(ValueError, match="neither the compiled loss nor the model holds"):
        model.save(tmp_path / "stale.keras")


@pytest.mark.parametrize("where", ["loss", "forward"])
def test_a_loss_parameter_the_model_keeps_out_of_kerass_tracking_is_found_and_fixed(where, tmp_path):
    """A loss object on the model that its `compute_loss` calls, or an object of the user's own class
    whose variable its `call` reads: Keras tracks neither's variables, they never trained, and the
    tracker said nothing. Found now, each is `not_in_optimizer` and make_trainable trains it. Copies
    of the weights kept beside it, which no step reads, are said so, and the fix is named for the
    parameter alone, not make_trainable(model), which would attach them too."""
    left = held_on_the_model_fit(str(tmp_path / "left"), where)
    trained = held_on_the_model_fit(str(tmp_path / "trained"), where, trained=True)
    parameter = "model/held/criterion/log_var" if where == "loss" else "model/held/weighting/log_var"
    assert left["found"][parameter] == (["not_updated"] * 3, ["not_in_optimizer"] * 3)
    assert left["log_var"] == 0
    assert trained["found"][parameter] == (["training"] * 3, [""] * 3)
    assert trained["log_var"] != 0
    if where == "forward":
        averages = [p for p in left["found"] if "/copies/" in p]
        assert len(averages) == 2 and all(left["found"][p] == (["no_gradient"] * 3, ["not_read"] * 3) for p in averages)
        (advice,) = [w for w in left["warnings"] if parameter in w.split("]")[0]]
        assert f"make_trainable(model, variables=['{parameter}'])" in advice, advice
        assert "(make_trainable(model) alone would also attach 'model/held/weighting/copies/0'" in advice, advice
