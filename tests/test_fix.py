"""make_trainable: the seed post's patterns train after it, and weight files keep them."""

import keras
import pytest
import tensorflow as tf

from loss_param_tracker import LossParamTracker, LossParamWarning, make_trainable
from tests.conftest import GaussianNLL, ScaledMSE, fit, load_run, make_data, make_model


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


def test_before_compile_idempotent_and_dict_losses(log_dir):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(inputs), "b": keras.layers.Dense(1, name="b")(inputs)})
    losses = {"a": GaussianNLL(), "b": ScaledMSE()}
    first = make_trainable(model, losses)
    assert make_trainable(model, losses) == first, "a second call attaches nothing new"
    assert len(model.trainable_variables) == 4 + 2
    assert isinstance(losses["b"].weight, keras.Variable), "the raw tf.Variable was replaced on the loss"
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
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    make_trainable(model, loss)
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


def test_save_weights_and_load_weights_keep_the_parameters(tmp_path, log_dir):
    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    make_trainable(model, loss)
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
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
        make_trainable(model, loss)
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
