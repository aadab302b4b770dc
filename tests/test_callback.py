"""LossParamTracker in real `model.fit` runs, read back from the event files."""

import gc
import glob
import logging
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from loss_param_tracker import LossParamTracker, LossParamWarning, LossVariableCreatedError
from loss_param_tracker.reader import load
from loss_param_tracker.report import main as report_main
from tests.conftest import (
    ClampedWeight,
    GaussianNLL,
    InterruptAt,
    ScaledMSE,
    StoppedGradient,
    fit,
    load_run,
    make_data,
    make_model,
    register,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL_WEIGHTS = [
    "model/net/hidden/kernel",
    "model/net/hidden/bias",
    "model/net/out/kernel",
    "model/net/out/bias",
]


def test_seed_pattern_is_said_before_the_first_batch_and_warned_once_an_epoch_showed_it(log_dir, caplog):
    loss = ScaledMSE()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    tracker = LossParamTracker(log_dir=log_dir)
    tracker.set_model(model)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, "loss_param_tracker"):
        warnings.simplefilter("always")
        tracker.on_train_begin()
    assert not [w for w in caught if w.category is LossParamWarning], "a verdict before any step"
    assert "'loss/ScaledMSE/weight' is not handed to model.optimizer; the tracker will check" in caplog.text
    assert model.optimizer.iterations.numpy() == 0

    seen = []  # (epoch, LossParamWarnings so far) at each epoch's start, after the tracker's

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((epoch, len([w for w in caught if w.category is LossParamWarning])))

    tracker = LossParamTracker(log_dir=log_dir)
    x, y = make_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[tracker, Count()])
    assert seen == [(0, 0), (1, 1), (2, 1)], "warned once, when the first epoch's steps showed it"
    (message,) = [str(w.message) for w in caught if w.category is LossParamWarning]
    assert re.search(r"loss/ScaledMSE/weight.*\[not_updated\].*make_trainable\(model\)", message), message
    run = load_run(log_dir)
    weight = run.variables["loss/ScaledMSE/weight"]
    assert weight.steps.tolist() == [0, 1, 2]
    assert weight.value.tolist() == [1.0, 1.0, 1.0], "the seed's parameter must not move"
    assert weight.status.tolist() == ["not_updated"] * 3
    assert np.all(weight.grad_norm > 0), weight.grad_norm


def test_exact_tag_set_of_one_run(log_dir):
    loss = GaussianNLL()
    with pytest.warns(LossParamWarning):
        fit(make_model(), loss, log_dir, epochs=1)
    runs = load(log_dir)
    (event_dir,) = {os.path.dirname(p) for p in glob.glob(f"{log_dir}/**/events.*", recursive=True)}
    assert event_dir == os.path.join(log_dir, "train")
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(event_dir)
    acc.Reload()
    norms = ("norm", "grad_norm_mean", "grad_norm_max", "update_ratio")
    assert sorted(acc.Tags()["tensors"]) == sorted(
        ["loss/GaussianNLL/log_var/value", "loss/GaussianNLL/log_var/batch_value"]
        + ["loss/GaussianNLL/log_var/grad_norm/mean", "loss/GaussianNLL/log_var/grad_norm/max"]
        + [f"{p}/norms/{field}" for p in MODEL_WEIGHTS for field in norms]
        + [f"run/model/norms/{field}" for field in norms]
        + ["run/global/grad_norm/mean", "run/global/grad_norm/max", "run/diagnosis"]
        + ["run/steps/captured", "run/steps/skipped"]
    )
    assert list(runs["train"].variables) == ["loss/GaussianNLL/log_var"] + sorted(MODEL_WEIGHTS)


def test_each_status_from_a_loss_that_causes_it(log_dir):
    cases = {
        "training": (GaussianNLL(), True),
        "not_updated": (GaussianNLL(), False),
        "no_gradient": (StoppedGradient(), True),
        "zero_gradient": (ClampedWeight(), True),
        "frozen": (ScaledMSE(trainable=False), False),
    }
    for expected, (loss, registered) in cases.items():
        model = make_model()
        if registered:
            register(model, loss)
        path = os.path.join(log_dir, expected)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker = fit(model, loss, path, epochs=2)
        (loss_path,) = [p for p in tracker.diagnosis if p.startswith("loss/")]
        assert tracker.diagnosis[loss_path] == expected, (expected, tracker.diagnosis)
        assert all(tracker.diagnosis[p] == "training" for p in MODEL_WEIGHTS), tracker.diagnosis
        warned = [str(w.message) for w in caught if w.category is LossParamWarning]
        should_warn = expected in ("not_updated", "no_gradient")
        assert bool(warned) == should_warn, (expected, warned)
        assert len(warned) <= 1, f"warned more than once: {warned}"
        run = load_run(path)
        assert run.variables[loss_path].status.tolist() == [expected, expected]


class Constrained(keras.losses.Loss):
    """A Gaussian NLL whose log-variance the optimizer should train, plus a penalty weighted by a
    Lagrange multiplier that `DualAscent` raises at each step: something else moves it, rightly."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")
        self.multiplier = keras.Variable(1.0, name="multiplier")

    def call(self, y_true, y_pred):
        nll = 0.5 * keras.ops.exp(-self.log_var) * keras.ops.square(y_true - y_pred) + 0.5 * self.log_var
        return keras.ops.mean(nll) + self.multiplier * keras.ops.mean(keras.ops.square(y_pred))


class DualAscent(keras.callbacks.Callback):
    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def on_train_batch_end(self, batch, logs=None):
        self.loss.multiplier.assign_add(0.01)


def test_the_fix_names_its_variable_where_make_trainable_alone_would_attach_one_moved_elsewhere(log_dir):
    """make_trainable(model) alone would hand the multiplier to the optimizer too, whose descent
    on it works against the dual ascent: the warning's call names the log-variance alone, and
    following it trains the log-variance and leaves the multiplier to its ascent."""

    def train(path, fix=None):
        loss = Constrained()
        model = make_model()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        if fix:
            exec(fix, {"loss_param_tracker": __import__("loss_param_tracker"), "model": model})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker = fit(model, loss, os.path.join(log_dir, path), epochs=2, callbacks=[DualAscent(loss)])
        warned = [str(w.message) for w in caught if w.category is LossParamWarning]
        return model, loss, tracker, warned

    _, _, tracker, (warned,) = train("broken")
    assert tracker.diagnosis["loss/Constrained/multiplier"] == "training"
    assert "[not_updated]" in warned and "'loss/Constrained/log_var'" in warned
    assert "would also attach 'loss/Constrained/multiplier' (training, outside_optimizer)" in warned, warned
    (call,) = re.findall(r"loss_param_tracker\.make_trainable\(model, variables=\[[^]]*\]\)", warned)
    model, loss, tracker, warned = train("fixed", call)
    assert warned == []
    assert tracker.diagnosis["loss/Constrained/log_var"] == "training" and float(loss.log_var.numpy()) != 0.0
    assert tracker.diagnosis["loss/Constrained/multiplier"] == "training"
    assert all(v is not loss.multiplier for v in model.trainable_variables), "the multiplier was attached"
    np.testing.assert_allclose(float(loss.multiplier.numpy()), 1.0 + 0.01 * 2 * 4)  # its ascent alone: 4 steps an epoch


class OwnObjective(keras.Sequential):
    """A train_step that computes its own loss: the compiled loss's variable is never read in it."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(y - self(x, training=True)))
        self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
        return {"loss": loss}


def test_a_variable_whose_gradient_could_not_be_observed_is_offered_the_fix_on_a_condition(log_dir):
    loss = GaussianNLL()
    model = OwnObjective(make_model().layers, name="net")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(model, loss, log_dir, epochs=2)
    (warned,) = [str(w.message) for w in caught if w.category is LossParamWarning]
    variable = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert variable.cause.tolist() == ["not_in_optimizer_gradient_unknown"] * 2
    assert np.isnan(variable.grad_norm).all()
    assert "whether the objective has a gradient for it could not be observed" in warned
    assert "If the training step's loss reads it and it is meant to train" in warned, warned


def test_non_finite_parameter_is_logged_and_training_goes_on(log_dir):
    class NaNWeight(keras.losses.Loss):
        def __init__(self):
            super().__init__()
            self.weight = keras.Variable(float("nan"), name="weight")

        def call(self, y_true, y_pred):
            return self.weight * tf.reduce_mean(tf.square(y_true - y_pred))

    model = make_model()
    loss = NaNWeight()
    register(model, loss)
    with pytest.warns(LossParamWarning, match=r"loss/NaNWeight/weight.*\[non_finite\]"):
        tracker = fit(model, loss, log_dir, epochs=3)
    assert tracker.diagnosis["loss/NaNWeight/weight"] == "non_finite"
    variable = load_run(log_dir).variables["loss/NaNWeight/weight"]
    assert variable.steps.tolist() == [0, 1, 2], "training must go on through all epochs"
    assert np.isnan(variable.value).all()


def test_gradient_norm_equals_the_analytic_gradient_of_a_linear_model(log_dir):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    w0 = np.array([[0.5], [-1.0], [2.0]], dtype="float32")
    s0 = 1.5
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, use_bias=False, name="linear")], name="lin"
    )
    model.layers[0].kernel.assign(w0)
    loss = ScaledMSE(initial=s0)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
    tracker = LossParamTracker(log_dir=log_dir)
    with pytest.warns(LossParamWarning):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[tracker])

    residual = x @ w0 - y  # L = mean(s^2 r^2)
    grad_w = (2 * s0**2 * x * residual).mean(axis=0)
    grad_s = (2 * s0 * residual**2).mean()
    run = load_run(log_dir)
    kernel = run.variables["model/lin/linear/kernel"]
    np.testing.assert_allclose(kernel.norms[0, 1:3], [np.linalg.norm(grad_w)] * 2, rtol=1e-5)
    np.testing.assert_allclose(run.variables["loss/ScaledMSE/weight"].grad_norm[0], [abs(grad_s)] * 2, rtol=1e-5)
    steps, global_norm = run.grad_norm
    np.testing.assert_allclose(global_norm[0], [np.linalg.norm(grad_w)] * 2, rtol=1e-5)
    np.testing.assert_allclose(kernel.norms[0, 0], np.linalg.norm(model.layers[0].kernel.numpy()), rtol=1e-6)
    update = model.layers[0].kernel.numpy() - w0
    np.testing.assert_allclose(kernel.norms[0, 3], np.linalg.norm(update) / np.linalg.norm(w0), rtol=1e-4)


class ShiftedNLL(keras.losses.Loss):
    """Loss variables of one shape, which the optimizer is not handed: a per-output log-variance and 8 shifts."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(np.linspace(-0.5, 0.5, 4), dtype="float32", name="log_var")
        self.shifts = [keras.Variable(np.full(4, 0.1 * i), dtype="float32", name=f"shift_{i}") for i in range(8)]

    def call(self, y_true, y_pred):
        error = y_true - y_pred - sum(shift * (i + 1) for i, shift in enumerate(self.shifts))
        return keras.ops.mean(keras.ops.exp(-self.log_var) * keras.ops.square(error) + self.log_var, axis=-1)


@pytest.mark.parametrize("scaled", [False, True], ids=["float32", "loss-scaled"])
def test_gradient_norms_of_weights_of_one_shape_are_each_their_own(log_dir, scaled):
    """Small gradients of one shape are reduced together: each weight's norm is still its own gradient's."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 4)).astype("float32")
    keras.utils.set_random_seed(2)
    layers = [keras.layers.Dense(4, activation="tanh", name=f"d{i}") for i in range(8)]
    model = keras.Sequential([keras.Input((4,)), *layers], name="stack")
    for layer in model.layers:
        layer.bias.assign(rng.normal(size=4).astype("float32"))
    loss = ShiftedNLL()
    with tf.GradientTape() as tape:
        objective = loss(y, model(x))
    loss_variables = [loss.log_var, *loss.shifts]
    expected = [float(np.linalg.norm(g)) for g in tape.gradient(objective, model.trainable_variables + loss_variables)]
    optimizer = keras.optimizers.SGD(0.01)
    if scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=1024.0)
    model.compile(optimizer=optimizer, loss=loss)
    with pytest.warns(LossParamWarning):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[LossParamTracker(log_dir=log_dir)])

    run = load_run(log_dir)
    weights = [run.variables[f"model/{v.path}"].norms[0, 1] for v in model.trainable_variables]
    paths = ["loss/ShiftedNLL/log_var"] + [f"loss/ShiftedNLL/shifts/{i}" for i in range(8)]
    own = [run.variables[path].grad_norm[0, 0] for path in paths]
    np.testing.assert_allclose(weights + own, expected, rtol=1e-5)
    _, global_norm = run.grad_norm
    np.testing.assert_allclose(global_norm[0, 0], np.linalg.norm(expected[: len(weights)]), rtol=1e-5)


def test_tracking_does_not_change_training(log_dir):
    def train(callbacks):
        model = make_model(seed=3)
        loss = GaussianNLL()
        register(model, loss)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        x, y = make_data(n=200)
        model.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)
        return [w.numpy() for w in model.weights] + [loss.log_var.numpy()]

    plain = train([])
    tracked = train([LossParamTracker(log_dir=log_dir)])
    for a, b in zip(plain, tracked):
        np.testing.assert_array_equal(a, b)
    assert float(plain[-1]) != 0.0, "the registered log_var should have trained"


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_the_user_had_it(log_dir, enabled):
    """The tracker pauses Python's collector during its own hooks only: every other hook, and the steps, see it as set."""
    seen = set()

    class Interrupted(LossParamTracker):
        def _settle(self, *args):
            raise KeyboardInterrupt

    class Look(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.add(gc.isenabled())

        def on_train_batch_end(self, batch, logs=None):
            seen.add(gc.isenabled())

        def on_epoch_end(self, epoch, logs=None):
            seen.add(gc.isenabled())

    (gc.enable if enabled else gc.disable)()
    try:
        fit(make_model(), GaussianNLL(), log_dir, epochs=2, callbacks=[Look()])
        # Ctrl-C in the middle of the tracker's own hook leaves it as it was too.
        with pytest.raises(KeyboardInterrupt):
            fit(make_model(), GaussianNLL(), log_dir, epochs=3, tracker=Interrupted(log_dir))
        assert gc.isenabled() == enabled and seen == {enabled}
    finally:
        gc.enable()


def test_a_model_whose_only_weights_are_the_loss_variables_is_logged_every_epoch(log_dir):
    """No model weight to log (the learned noise of a fixed predictor): the loss variable's epochs are all there."""
    from loss_param_tracker import make_trainable

    model = keras.Sequential([keras.Input((1,)), keras.layers.Identity()])
    loss = GaussianNLL()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    make_trainable(model)
    x = np.random.default_rng(0).normal(size=(256, 1)).astype("float32")
    tracker = fit(model, loss, log_dir, epochs=3, data=(x, x + 2.0))
    assert tracker.diagnosis == {"loss/GaussianNLL/log_var": "training"}
    log_var = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert log_var.steps.tolist() == [0, 1, 2] and log_var.value[-1] > 0.0, "it learns the noise's log-variance, log 4"


def test_steps_continue_across_fits_and_initial_epoch(log_dir):
    loss = GaussianNLL()
    model = make_model()
    register(model, loss)
    tracker = LossParamTracker(log_dir=log_dir)
    x, y = make_data()
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])  # epochs 0..1 again
    model.fit(x, y, initial_epoch=4, epochs=6, verbose=0, callbacks=[tracker])
    variable = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert variable.steps.tolist() == [0, 1, 2, 3, 4, 5]
    assert len(set(variable.value.tolist())) == 6, "log_var trains in every fit"


def test_one_tracker_passed_to_two_models_logs_a_run_for_each(log_dir, caplog):
    """A tracker in one callback list for several models (a loop over settings) logged them in one
    run: a variable of the same path in both was one series, and the fixed model's `training` hid
    the broken one's `not_updated` (the report exited 0)."""
    tracker = LossParamTracker(log_dir=log_dir)
    x, y = make_data()
    broken, fixed = make_model(), make_model()
    broken.compile(optimizer="adam", loss=GaussianNLL())
    loss = GaussianNLL()
    register(fixed, loss)
    fixed.compile(optimizer="adam", loss=loss)
    with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
        broken.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
        fixed.fit(x, y, epochs=2, verbose=0, callbacks=[tracker])
        broken.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])  # its own run again, after its epochs
    runs = load(log_dir)
    path = "loss/GaussianNLL/log_var"
    assert sorted(runs) == ["model_2/train", "train"]
    assert runs["train"].variables[path].status.tolist() == ["not_updated"] * 3
    assert runs["model_2/train"].variables[path].status.tolist() == ["training"] * 2
    said = [r.getMessage() for r in caplog.records if "another model" in r.getMessage()]
    assert len(said) == 1 and os.path.join(log_dir, "model_2", "train") in said[0], said
    assert report_main(["report", log_dir]) == 1


def test_a_new_tracker_on_a_log_dir_logs_its_epochs_after_those_there(log_dir, caplog):
    """A second tracker numbered its epochs from 0 again: load() read the two fits mixed, epoch by
    epoch (the later file's values at the shared epochs, the earlier's after), and said nothing. A fit
    from a later epoch keeps its numbering (see test_plugin's resumed run, which writes epochs again)."""
    loss = GaussianNLL()
    model = make_model()
    register(model, loss)
    model.compile(optimizer="adam", loss=loss)
    values = []
    ends = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: values.append(float(loss.log_var.numpy())))
    x, y = make_data()
    model.fit(x, y, epochs=3, verbose=0, callbacks=[LossParamTracker(log_dir=log_dir), ends])
    with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[LossParamTracker(log_dir=log_dir), ends])
        model.fit(x, y, initial_epoch=5, epochs=6, verbose=0, callbacks=[LossParamTracker(log_dir=log_dir), ends])
    variable = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert variable.steps.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(variable.value.ravel(), values, rtol=1e-6)
    (said,) = [r.getMessage() for r in caplog.records if "already holds" in r.getMessage()]
    assert "epochs 0 to 2 of an earlier fit; this fit's epoch 0 is logged as 3" in said, said


def test_update_freq_batch_writes_every_n_batches(log_dir):
    from tensorboard.backend.event_processing import event_accumulator

    loss = GaussianNLL()
    model = make_model()
    register(model, loss)
    tracker = LossParamTracker(log_dir=log_dir, update_freq=2)
    fit(model, loss, log_dir, epochs=2, tracker=tracker)  # 4 batches an epoch
    acc = event_accumulator.EventAccumulator(os.path.join(log_dir, "train"), size_guidance={"tensors": 0})
    acc.Reload()
    events = acc.Tensors("loss/GaussianNLL/log_var/batch_value")
    assert [e.step for e in events] == [0, 2, 4, 6, 8], "step 0: the value before training"
    grads = acc.Tensors("loss/GaussianNLL/log_var/batch_grad_norm/mean")
    assert [e.step for e in grads] == [2, 4, 6, 8]
    assert all(np.isfinite(tf.make_ndarray(e.tensor_proto)).all() for e in grads)
    with pytest.raises(ValueError, match="Received: update_freq=0"):
        LossParamTracker(log_dir=log_dir, update_freq=0)


def test_multi_output_losses_are_logged_per_output(log_dir):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(1, name="y0")(inputs), keras.layers.Dense(1, name="y1")(inputs)])
    losses = {"y0": GaussianNLL(), "y1": ScaledMSE()}
    model.compile(optimizer="adam", loss=losses)
    x, y = make_data()
    tracker = LossParamTracker(log_dir=log_dir)
    with pytest.warns(LossParamWarning):
        model.fit(x, (y, 2 * y), epochs=1, verbose=0, callbacks=[tracker])
    assert {p: s for p, s in tracker.diagnosis.items() if p.startswith("loss/")} == {
        "loss/y0/GaussianNLL/log_var": "not_updated",
        "loss/y1/ScaledMSE/weight": "not_updated",
    }


def test_variable_created_in_call_stops_before_the_first_step(log_dir):
    class CreatesInCall(keras.losses.Loss):
        def call(self, y_true, y_pred):
            weight = tf.Variable(1.0)
            return weight * tf.reduce_mean(tf.square(y_true - y_pred))

    model = make_model()
    model.compile(optimizer="adam", loss=CreatesInCall())
    with pytest.raises(LossVariableCreatedError, match=r"CreatesInCall\.call creates a new variable.*at every call.*CreatesInCall\.__init__"):
        model.fit(*make_data(), epochs=1, verbose=0, callbacks=[LossParamTracker(log_dir=log_dir)])
    assert model.optimizer.iterations.numpy() == 0


def test_plain_loss_logs_weights_with_one_info_line(log_dir, caplog, recwarn):
    with caplog.at_level(logging.INFO, logger="loss_param_tracker"):
        tracker = fit(make_model(), "mse", log_dir)
    infos = [r for r in caplog.records if "has no variables" in r.getMessage()]
    assert len(infos) == 1
    assert not [w for w in recwarn if w.category is LossParamWarning]
    assert sorted(tracker.diagnosis) == sorted(MODEL_WEIGHTS)
    assert sorted(load_run(log_dir).variables) == sorted(MODEL_WEIGHTS)


def test_variables_out_of_reach_are_tracked_as_extras_with_their_own_fix(log_dir):
    # Held where the walk does not look (a numpy object array), so only
    # variables=[...] makes the tracker see it.
    extra = keras.Variable(1.0, name="scale")
    holder = np.array([extra], dtype=object)

    def loss_fn(y_true, y_pred):
        return holder[0] * tf.reduce_mean(tf.square(y_true - y_pred)) + tf.square(holder[0] - 2.0)

    with pytest.warns(LossParamWarning, match=r"loss/extra/scale.*make_trainable\(model, variables=\[scale\]\)"):
        tracker = fit(make_model(), loss_fn, log_dir, tracker=LossParamTracker(log_dir, variables=[extra]))
    assert tracker.diagnosis["loss/extra/scale"] == "not_updated"


def test_extra_variables_of_one_name_keep_a_path_each(log_dir):
    # Variable names are not unique: two variables can be named "Variable".
    shift, scale = keras.Variable(0.5, name="Variable"), keras.Variable(2.0, name="Variable")
    holder = np.array([shift, scale], dtype=object)

    def loss_fn(y_true, y_pred):
        return holder[1] * tf.reduce_mean(tf.square(y_true - y_pred - holder[0]))

    with pytest.warns(LossParamWarning):
        fit(make_model(), loss_fn, log_dir, tracker=LossParamTracker(log_dir, variables=[shift, scale]))
    variables = load_run(log_dir).loss_variables
    assert sorted(variables) == ["loss/extra/Variable", "loss/extra/Variable_2"], sorted(variables)
    assert [float(variables[p].value[0]) for p in sorted(variables)] == [0.5, 2.0]


def test_large_variable_is_summarised_under_100kb_per_epoch(log_dir):
    class Centers(keras.losses.Loss):
        def __init__(self):
            super().__init__()
            self.centers = keras.Variable(np.linspace(-1, 1, 10**6, dtype="float32"), name="centers")

        def call(self, y_true, y_pred):
            return tf.reduce_mean(tf.square(y_true - y_pred)) + 1e-6 * tf.reduce_mean(self.centers)

    def event_bytes():
        return sum(os.path.getsize(p) for p in glob.glob(f"{log_dir}/train/events.*"))

    loss = Centers()
    model = make_model()
    tracker = LossParamTracker(log_dir=log_dir)
    with pytest.warns(LossParamWarning):
        fit(model, loss, log_dir, epochs=1, tracker=tracker)
    one = event_bytes()
    fit(model, loss, log_dir, epochs=2, tracker=tracker)
    per_epoch = (event_bytes() - one) / 2
    assert per_epoch < 100_000, f"{per_epoch:.0f} bytes per epoch"
    centers = load_run(log_dir).variables["loss/Centers/centers"]
    assert centers.value is None and centers.shape == (10**6,)
    np.testing.assert_allclose(centers.stats[0], [0, np.std(np.linspace(-1, 1, 10**6)), -1, 1, np.linalg.norm(np.linspace(-1, 1, 10**6))], atol=1e-3)


def test_log_dir_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"log_dir=.*a_file/logs.*is a file"):
        LossParamTracker(log_dir=str(blocker / "logs"))
    with pytest.raises(ValueError, match=r"Received: log_dir=3"):
        LossParamTracker(log_dir=3)


def test_uncompiled_model_is_a_clear_error(log_dir):
    tracker = LossParamTracker(log_dir=log_dir)
    tracker.set_model(make_model())
    with pytest.raises(ValueError, match="never compiled"):
        tracker.on_train_begin()


def test_keyboard_interrupt_keeps_what_was_logged(log_dir):
    loss = GaussianNLL()
    model = make_model()
    register(model, loss)
    model.compile(optimizer="adam", loss=loss)
    with pytest.raises(KeyboardInterrupt):
        model.fit(*make_data(), epochs=5, verbose=0, callbacks=[LossParamTracker(log_dir), InterruptAt(2)])
    assert load_run(log_dir).variables["loss/GaussianNLL/log_var"].steps.tolist() == [0, 1]


def test_the_last_epoch_of_a_fit_an_exception_ended_gets_its_statuses_when_the_tracker_fits_again(log_dir):
    """An epoch's statuses wait for the next epoch's start: a fit that a later callback's exception
    ended left its last finished epoch without any, also after a resumed fit."""
    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    tracker = LossParamTracker(log_dir)
    failing = InterruptAt(1, at_end=True, error=RuntimeError("a callback failed"))
    with pytest.raises(RuntimeError, match="a callback failed"):
        model.fit(*make_data(), epochs=4, verbose=0, callbacks=[tracker, failing])
    model.fit(*make_data(), initial_epoch=2, epochs=3, verbose=0, callbacks=[tracker])
    log_var = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert log_var.steps.tolist() == [0, 1, 2] and log_var.status.tolist() == ["not_updated"] * 3


def test_the_last_epoch_of_a_process_an_exception_ended_gets_its_statuses_at_exit(log_dir):
    script = f"""
import sys
sys.path.insert(0, {ROOT!r})
from loss_param_tracker import LossParamTracker
from tests.conftest import GaussianNLL, InterruptAt, make_data, make_model
model = make_model()
model.compile(optimizer="adam", loss=GaussianNLL())
failing = InterruptAt(1, at_end=True, error=RuntimeError("a callback failed"))
model.fit(*make_data(), epochs=4, verbose=0, callbacks=[LossParamTracker({log_dir!r}), failing])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "a callback failed" in result.stderr, result.stderr[-2000:]
    log_var = load_run(log_dir).variables["loss/GaussianNLL/log_var"]
    assert log_var.steps.tolist() == [0, 1] and log_var.status.tolist() == ["not_updated"] * 2


def test_a_logging_failure_never_kills_training(log_dir, monkeypatch, caplog):
    from loss_param_tracker import writer

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writer.PythonWriter, "_add", broken)
    model = make_model()
    with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
        history = fit(model, "mse", log_dir, epochs=3).model.history
    assert len(history.history["loss"]) == 3
    failures = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert len(failures) == 1, "one warning, not one per epoch"


def test_bad_variables_argument_fails_at_construction(log_dir):
    with pytest.raises(TypeError, match="received str: 'log_var'"):
        LossParamTracker(log_dir=log_dir, variables=["log_var"])


def test_a_large_weight_is_followed_through_chunks_and_a_sample(monkeypatch):
    from loss_param_tracker import snapshot

    monkeypatch.setattr(snapshot, "CHUNK_SIZE", 1000)
    monkeypatch.setattr(snapshot, "SAMPLE_SIZE", 64)
    value = np.random.default_rng(0).normal(size=(300, 7)).astype("float32")  # 3 chunks
    variable = keras.Variable(value)
    start = snapshot.Snapshot.of(variable)
    flat = value.ravel().astype(np.float64)
    np.testing.assert_array_equal(start.sample, flat[:: 2100 // 64][:64])
    np.testing.assert_allclose(start.fingerprint, (flat.sum(), flat @ flat), rtol=1e-12)
    assert start.finite and not start.changed(snapshot.Snapshot.of(variable))

    variable.assign(value * 1.1)
    later = snapshot.Snapshot.of(variable)
    assert start.changed(later)
    np.testing.assert_allclose(start.update_ratio(later), 0.1, rtol=1e-5)
    one = value.copy()
    one[150, 3] += 1.0  # an element the sample does not hold: the fingerprint sees it
    variable.assign(one)
    assert start.changed(snapshot.Snapshot.of(variable))
    one[299, 6] = np.nan
    variable.assign(one)
    assert not snapshot.Snapshot.of(variable).finite


def test_a_second_models_run_that_cannot_be_made_logs_in_the_first_and_training_goes_on(log_dir, caplog):
    tracker = LossParamTracker(log_dir=log_dir)
    x, y = make_data()
    first, second = make_model(), make_model()
    for model in (first, second):
        model.compile(optimizer="adam", loss=GaussianNLL())
    first.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])
    open(os.path.join(log_dir, "model_2"), "w").close()  # a file where its directory would go
    with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
        second.fit(x, y, epochs=1, verbose=0, callbacks=[tracker])
    said = [r.getMessage() for r in caplog.records if "this fit is logged in" in r.getMessage()]
    assert len(said) == 1 and "model_2" in said[0], said
    assert load_run(log_dir).variables["loss/GaussianNLL/log_var"].steps.tolist() == [0, 1]


@pytest.mark.parametrize("first", [True, False], ids=["callback_first", "tracker_first"])
def test_a_value_a_callback_sets_as_the_fit_ends_is_said_where_the_tracker_sees_it(first, tmp_path, caplog):
    """EarlyStopping(restore_best_weights=True) restores the best epoch's weights in its on_train_end,
    an attached loss variable among them: the report's last value was the last epoch's, with no word
    that the model holds another. Said where that callback runs before the tracker's on_train_end."""
    from loss_param_tracker import make_trainable

    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    make_trainable(model)
    restore = keras.callbacks.LambdaCallback(on_train_end=lambda logs: loss.log_var.assign(1.5))
    tracker = LossParamTracker(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
        model.fit(*make_data(), epochs=2, batch_size=64, verbose=0,
                  callbacks=[restore, tracker] if first else [tracker, restore])
    said = [r.getMessage() for r in caplog.records if "as the fit ends" in r.getMessage()]
    last = float(load(str(tmp_path))["train"].variables["loss/GaussianNLL/log_var"].value[-1])
    assert last != 1.5
    if first:
        assert said == [
            f"LossParamTracker: as the fit ends, 'loss/GaussianNLL/log_var' holds 1.5, not the {last:.6g} its last "
            "epoch logged: it was set after that epoch (EarlyStopping(restore_best_weights=True) restores the best "
            "epoch's weights; an optimizer with use_ema=True puts in their moving averages). load() and the report "
            "show the last epoch's."
        ]
    else:  # the tracker's on_train_end ran first: nothing to see yet
        assert said == []
