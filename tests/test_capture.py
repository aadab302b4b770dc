"""The capture's promises on real fits: it never fails a step, says what it could not see, and cleans up."""

import logging
import math
import shutil
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from loss_param_tracker import LossParamTracker, LossParamWarning, capture_tf, make_trainable
from loss_param_tracker import capture as capture_lib
from tests.conftest import GaussianNLL, InterruptAt, fit, load_run, make_data, make_model
from tests.models import (
    EntropyBonusCE,
    assert_no_minimum_said,
    assert_settles_without_no_minimum_again,
    cvar_fit,
    adaptive_task_weight_fit,
    dropped_term_fit,
    dual_weight_fit,
    flagged_fit,
    gathered_fit,
    kinked_concave_fit,
    learned_smoothing_fit,
    penalized_fit,
    projected_term_fit,
    proxy_anchor_fit,
    reversed_temperature_fit,
    running_normalized_fit,
    term_weights_fit,
    warmed_up_fit,
)
from tensorboard_plugin.loss_params import metadata


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "loss_param_tracker"]


def test_overflowed_steps_are_counted_apart_and_left_out_of_the_norms(log_dir, caplog):
    loss = GaussianNLL()
    model = make_model()
    # A scale near float32's limit: the first steps' scaled gradients overflow,
    # and the optimizer halves the scale and skips them.
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01), initial_scale=2.0**127)
    model.compile(optimizer=optimizer, loss=loss)
    make_trainable(model, loss)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        tracker = fit(model, loss, log_dir, epochs=2)  # 4 steps an epoch
    assert not [w for w in caught if w.category is LossParamWarning], [str(w.message) for w in caught]
    run = load_run(log_dir)
    _, counts = run.step_counts
    assert counts[:, 0].sum() + counts[:, 1].sum() == 8, counts
    assert counts[0, 1] > 0, f"no step overflowed: {counts}"
    assert counts[-1, 0] > 0, f"no step applied: {counts}"
    _, global_norm = run.grad_norm
    assert np.isfinite(global_norm[counts[:, 0] > 0]).all(), global_norm
    assert set(tracker.diagnosis.values()) == {"training"}, tracker.diagnosis


def test_a_gathered_variables_gradient_norm_is_its_dense_gradients(log_dir, caplog):
    """An `Embedding` and a loss's `take(centers, labels)`, rows read several times (see `models.gathered_fit`).

    Their gradients are slices, a row per read. Their norms were the slices'
    (a row's reads not summed: a third of the centres' true norm here), and
    the curvature probe stepped aside for the fit.
    """
    with caplog.at_level(logging.WARNING):
        one = gathered_fit(log_dir)
    np.testing.assert_allclose(one["logged"], one["expected"], rtol=1e-5)
    assert one["diagnosis"]["loss/GatheredCenters/centers"] == "not_updated"
    assert messages(caplog) == []


def test_the_weights_of_a_penalty_and_of_a_bonus_are_unbounded_and_linear(log_dir):
    assert term_weights_fit(log_dir) == {
        "loss/TermWeights/penalty": ["unbounded"] * 2, "loss/TermWeights/bonus": ["linear"] * 2
    }


def test_a_terms_weight_is_unbounded_where_the_term_reads_another_loss_variable(log_dir):
    """The probe took one product along both variables: the weight's row held the cross term, and
    the weight, linear alone, read as curved (`not_in_optimizer`, and make_trainable advised)."""
    assert projected_term_fit(log_dir) == {
        "loss/ProjectedTerm/weight": ["unbounded"] * 2, "loss/ProjectedTerm/projections": ["not_in_optimizer"] * 2
    }


def test_a_variable_the_objective_curves_down_in_is_concave_not_advised_to_train_plainly(log_dir):
    """AUC-M's dual variable curves the objective down: make_trainable was advised, and descent
    drove it off without end. A log-scale the objective curves up in is still `not_in_optimizer`."""
    assert dual_weight_fit(log_dir) == {
        "loss/DualWeight/dual": ["concave"] * 2, "loss/DualWeight/log_scale": ["not_in_optimizer"] * 2
    }


def test_normalised_proxies_whose_objective_curves_down_along_one_direction_are_not_concave(log_dir):
    """Proxy-Anchor's proxies: d . Hd < 0 along the probe's direction in epoch 0 read as `concave`,
    and the fix said not to train them by descent, which trains them (the Hessian is indefinite)."""
    assert proxy_anchor_fit(log_dir) == ["not_in_optimizer"] * 2


def test_a_probed_step_whose_product_is_nan_measures_nothing(log_dir):
    """A step at the kink of |w - b|^1.5 has a NaN product: it went into the probe's maxima, which
    stayed NaN, and the concave `w` read `not_in_optimizer`, make_trainable advised."""
    assert kinked_concave_fit(log_dir) == ["concave"] * 2


def test_the_curvatures_sign_is_the_last_epochs_as_the_model_moves(tmp_path):
    """A task weight `x^2 mse + log x^2`: the objective curves up in `x` while the mse is above 1 and
    down once the model brings it under. Folded over the fit, epoch 0's upward curvature kept it
    `not_in_optimizer` to the end, with make_trainable advised, which leaves the model's error over
    ten times higher."""
    left = adaptive_task_weight_fit(str(tmp_path / "left"))
    assert left["causes"] == ["not_in_optimizer"] * 3 + ["concave"]
    assert left["mse"] < 0.1
    # The truth, by the fix the first epochs advise: x driven towards 0, the loss below zero, and
    # the model's mse many times the one it reaches with x left as it is.
    trained = adaptive_task_weight_fit(str(tmp_path / "trained"), trained=True)
    assert trained["loss"] < 0 and trained["mse"] > 10 * left["mse"]


def test_a_warning_that_replaces_an_earlier_one_says_so(tmp_path):
    """The console's second warning of the same variable names the one it replaces."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossParamWarning)
        adaptive_task_weight_fit(str(tmp_path))
    said = [str(w.message) for w in caught if issubclass(w.category, LossParamWarning)]
    mine = [m for m in said if "loss/AdaptiveTaskWeight/x" in m]
    assert len(mine) == 2 and "[not_updated]" in mine[0] and "curved down" in mine[1], said
    assert "replace the warning of epoch 0 (not_updated, not_in_optimizer) and its fix" in mine[1]


def test_a_diagnosis_that_changes_back_is_warned_again_a_few_times_a_fit(tmp_path):
    """The task's mse goes back above 1 at each warm restart (epochs 4 and 8), and `x` curves up again:
    `not_in_optimizer` in epoch 4 replaces epoch 3's `concave`, whose warning had been the console's
    last word. A warning comes at each change of cause, the third saying that later ones are not
    warned; the log keeps every epoch's."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossParamWarning)
        causes = adaptive_task_weight_fit(str(tmp_path), epochs=12, restart_every=4)["causes"]
    mine = [str(w.message) for w in caught if "loss/AdaptiveTaskWeight/x" in str(w.message)]
    changed = [epoch for epoch in range(1, len(causes)) if causes[epoch] != causes[epoch - 1]]
    assert causes[:5] == ["not_in_optimizer"] * 3 + ["concave", "not_in_optimizer"] and len(changed) > 3, causes
    said = [0, *changed][:4]  # the epochs warned
    assert [("curved down" in m) for m in mine] == [causes[epoch] == "concave" for epoch in said], (causes, mine)
    assert "replace the warning of epoch 3 (not_updated, concave) and its fix" in mine[2]
    assert "replace the warning of epoch 4 (not_updated, not_in_optimizer)" in mine[3]
    assert "changed 3 times in this fit: later changes are not warned" in mine[3]
    assert not any("later changes" in m for m in mine[:3]), mine


def test_a_loss_variable_that_a_callback_starts_to_set_takes_back_its_warning(log_dir):
    """GECO's Lagrange multiplier (from public VAE code), which a callback steps once a warm-up is
    over: until then nothing moves it and the console advises make_trainable; once the callback moves
    it, it is `training` (`outside_optimizer`), and the console says so, taking that advice back,
    which would have had descent fight the callback."""

    class Multiplied(keras.losses.Loss):
        def __init__(self):
            super().__init__()
            self.log_multiplier = keras.Variable(0.0, name="log_multiplier")

        def call(self, y_true, y_pred):
            return tf.exp(self.log_multiplier) * tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)

    loss = Multiplied()
    step = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: epoch >= 1 and loss.log_multiplier.assign_add(0.1)
    )
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossParamWarning)
        fit(model, loss, log_dir, epochs=3, callbacks=[step])
    mine = [str(w.message) for w in caught if "loss/Multiplied/log_multiplier" in str(w.message)]
    assert load_run(log_dir).variables["loss/Multiplied/log_multiplier"].cause.tolist() == [
        "not_in_optimizer", "outside_optimizer", "outside_optimizer"
    ]
    assert len(mine) == 2 and "[not_updated]" in mine[0] and "make_trainable" in mine[0], mine
    # Its gradient, exp(log_multiplier) * mse, is positive at every step: observed, and said.
    assert "its gradient was positive in every element: descent would lower it" in mine[0], mine
    assert "[training]" in mine[1] and "Fix:" not in mine[1], mine
    assert "replace the warning of epoch 0 (not_updated, not_in_optimizer) and its fix" in mine[1]


def test_a_log_variance_whose_gradient_pointed_down_is_not_said_to_fall(log_dir):
    """A Gaussian NLL's log-variance: its gradient, (1 - error / variance) / 2, pointed down while
    the model's error was large, so the warning does not say that descent would lower it."""
    loss = GaussianNLL()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossParamWarning)
        fit(make_model(), loss, log_dir, epochs=2)
    (message,) = [str(w.message) for w in caught if w.category is LossParamWarning]
    assert "[not_updated]" in message and "make_trainable" in message
    assert "gradient was positive" not in message, message


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_a_temperature_read_through_a_gradient_reversal_is_not_probed(tmp_path, run_eagerly):
    """CTKD's temperature (from public distillation code) is read through a gradient reversal
    (`keras.ops.custom_gradient`): the step's gradient for it is minus the loss's. Taped again for
    the curvature, the reversal's forward would take that gradient too, not its derivative: the
    probe read the loss's own curvature (`concave` in the first epochs), not that of the objective
    descent follows, and advised against what the method does. Not probed, it is
    `not_in_optimizer`; handed to the optimizer, it rises and settles, and the model is as good.
    An eager step has no graph to look at: the step in which a custom gradient ran probes nothing."""
    eager = capture_tf._EAGER_CUSTOM_GRADIENT._eager_mode_decorator
    left = reversed_temperature_fit(str(tmp_path / "left"), run_eagerly=run_eagerly)
    trained = reversed_temperature_fit(str(tmp_path / "trained"), trained=True, run_eagerly=run_eagerly)
    assert capture_tf._EAGER_CUSTOM_GRADIENT._eager_mode_decorator is eager  # the hook is gone with the fit
    assert left["causes"] == ["not_in_optimizer"] * 6, left
    moves = np.diff([1.0, *trained["values"]])
    assert (moves > 0).all() and moves[-1] < moves[0] / 2, trained["values"]
    assert trained["accuracy"] > left["accuracy"] - 0.02, (left, trained)


def test_a_term_switched_on_after_the_curvature_probes_steps_is_not_unbounded(log_dir):
    """The probe's steps saw the term's zero gradient (the warm-up), which it took for a linear
    objective whose gradient never pointed down: `unbounded`, and make_trainable not advised."""
    assert warmed_up_fit(log_dir) == ["not_in_optimizer"] * 2


def test_a_loss_variable_read_only_in_an_add_loss_term_has_its_gradient(log_dir):
    assert penalized_fit(log_dir) == {"cause": "not_in_optimizer", "grad_norm": 2.0, "incomplete": []}


def test_an_eager_epoch_whose_steps_do_not_read_a_variable_has_no_gradient_for_it(log_dir):
    """Epoch 0's last step's gradient counted as epoch 1's: it was said zero_gradient."""
    assert dropped_term_fit(log_dir, run_eagerly=True) == ["not_updated", "no_gradient", "no_gradient"]


def test_an_eager_loss_that_reads_its_variable_in_some_steps_is_said_to_have_its_gradient(log_dir):
    """run_eagerly, 250 samples in batches of 64: the loss reads its log-variance in the three full
    batches, not in the last one. The epoch had its gradient: not `no_gradient`, which only the last
    step showed and whose advice (no numpy, no stop_gradient) would be wrong."""

    class FullBatchesNLL(keras.losses.Loss):
        def __init__(self):
            super().__init__()
            self.log_var = keras.Variable(0.0, name="log_var")

        def call(self, y_true, y_pred):
            squared = tf.square(y_true - y_pred)
            if y_true.shape[0] == 64:
                return tf.reduce_mean(0.5 * tf.exp(-self.log_var) * squared + 0.5 * self.log_var)
            return tf.reduce_mean(0.5 * squared)

    loss = FullBatchesNLL()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, run_eagerly=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = fit(model, loss, log_dir, epochs=2, data=make_data(n=250))
    said = [str(w.message) for w in caught if w.category is LossParamWarning]
    assert tracker.diagnosis["loss/FullBatchesNLL/log_var"] == "not_updated", said
    assert not any("[no_gradient]" in w for w in said), said
    grad_norm = load_run(log_dir).variables["loss/FullBatchesNLL/log_var"].grad_norm
    assert (np.isfinite(grad_norm) & (grad_norm > 0)).all(), grad_norm


def test_a_variable_created_at_every_eager_call_warns_and_training_goes_on(log_dir):
    class CreatesInCall(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return tf.Variable(1.0) * tf.reduce_mean(tf.square(y_true - y_pred))

    model = make_model()
    model.compile(optimizer="adam", loss=CreatesInCall(), run_eagerly=True)
    with pytest.warns(UserWarning, match=r"CreatesInCall\.call creates a new variable .* at every call"):
        history = fit(model, model.loss, log_dir, epochs=2).model.history
    assert len(history.history["loss"]) == 2


def test_a_failing_write_still_warns_and_is_reported_again_in_the_next_fit(log_dir, monkeypatch, caplog):
    from loss_param_tracker import writer

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writer.PythonWriter, "_add", broken)
    loss = GaussianNLL()
    model = make_model()
    tracker = LossParamTracker(log_dir)
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING), pytest.warns(LossParamWarning, match=r"\[not_updated\]"):
            fit(model, loss, log_dir, epochs=2, tracker=tracker)
        failures = [m for m in messages(caplog) if "disk full" in m]
        assert len(failures) == 1, failures


def test_a_log_dir_removed_while_training_is_created_again(log_dir, caplog):
    class RemoveLogDir(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                shutil.rmtree(log_dir)

    loss = GaussianNLL()
    model = make_model()
    make_trainable(model, loss)
    model.compile(optimizer="adam", loss=loss)
    with caplog.at_level(logging.WARNING):
        model.fit(*make_data(), epochs=4, verbose=0, callbacks=[RemoveLogDir(), LossParamTracker(log_dir)])
    removed = [m for m in messages(caplog) if "was removed during training" in m]
    assert len(removed) == 1, messages(caplog)
    assert load_run(log_dir).variables["loss/GaussianNLL/log_var"].steps.tolist() == [2, 3]


class ManualUpdate(keras.Sequential):
    """A custom train_step that never calls the optimizer: plain SGD by hand."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        for variable, grad in zip(self.trainable_variables, tape.gradient(loss, self.trainable_variables)):
            variable.assign_sub(0.01 * grad)
        return {"loss": loss}


def test_a_step_the_capture_cannot_see_is_said_once_and_gradients_are_unknown(log_dir, caplog):
    model = ManualUpdate(make_model().layers, name="net")
    with caplog.at_level(logging.WARNING):
        tracker = fit(model, "mse", log_dir, epochs=2)
    unseen = [m for m in messages(caplog) if "optimizer.apply was never called" in m]
    assert len(unseen) == 1, messages(caplog)
    kernel = load_run(log_dir).variables["model/net/hidden/kernel"]
    assert np.isnan(kernel.norms[:, 1]).all(), "no gradient was seen, none may be logged"
    assert tracker.diagnosis["model/net/hidden/kernel"] == "training", "its value moves"


def test_accumulators_that_cannot_be_read_cost_each_epoch_only_its_gradients(log_dir, monkeypatch, caplog):
    """A failed read of the capture lost the whole epoch: no value, no diagnosis logged."""

    def unreadable(self):
        raise RuntimeError("read bug")

    monkeypatch.setattr(capture_tf.StepCapture, "_fetch", unreadable)
    with caplog.at_level(logging.WARNING):
        tracker = fit(make_model(), GaussianNLL(), log_dir, epochs=2)
    said = [m for m in messages(caplog) if "its accumulators could not be read (RuntimeError: read bug)" in m]
    assert len(said) == 1, messages(caplog)
    run = load_run(log_dir)
    assert run.variables["loss/GaussianNLL/log_var"].steps.tolist() == [0, 1]
    assert np.isnan(run.variables["model/net/hidden/kernel"].norms[:, 1]).all(), "no gradient read, none logged"
    assert tracker.diagnosis["loss/GaussianNLL/log_var"] == "not_updated", "it did not move in the epochs' steps"
    assert tracker.diagnosis["model/net/hidden/kernel"] == "training"


def test_a_failing_hook_steps_aside_and_training_is_unchanged(log_dir, monkeypatch, caplog):
    def train(callbacks):
        loss = GaussianNLL()
        model = make_model(seed=3)
        make_trainable(model, loss)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        model.fit(*make_data(), epochs=2, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)
        return [w.numpy() for w in model.weights]

    def broken(*args):
        raise RuntimeError("capture bug")

    monkeypatch.setattr(capture_tf, "_half_squared_norm", broken)
    plain = train([])
    with caplog.at_level(logging.WARNING):
        tracked = train([LossParamTracker(log_dir)])
    for a, b in zip(plain, tracked):
        np.testing.assert_array_equal(a, b)
    aside = [m for m in messages(caplog) if "optimizer.apply hook stepped aside" in m and "capture bug" in m]
    assert len(aside) == 2, messages(caplog)  # once when it happens, once in the epoch's report
    assert load_run(log_dir).variables["loss/GaussianNLL/log_var"].steps.tolist() == [0, 1]


def test_the_hooks_are_removed_after_fit(log_dir):
    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    with pytest.warns(LossParamWarning):
        fit(model, loss, log_dir, epochs=1)
    assert not {"train_step", "compute_loss", "_loss_param_tracker_capture"} & set(vars(model))
    assert not {"apply", "scale_loss"} & set(vars(model.optimizer))
    assert "call" not in vars(loss)
    before = model.optimizer.iterations.numpy()
    model.fit(*make_data(), epochs=1, verbose=0)  # traces anew, without the hooks
    assert model.optimizer.iterations.numpy() > before


def test_hooks_left_by_an_interrupted_fit_are_replaced_and_removed(log_dir):
    loss = GaussianNLL()
    model = make_model()
    make_trainable(model, loss)
    model.compile(optimizer="adam", loss=loss)
    with pytest.raises(KeyboardInterrupt):
        model.fit(*make_data(), epochs=3, verbose=0, callbacks=[LossParamTracker(log_dir), InterruptAt(1)])
    assert "_loss_param_tracker_capture" in vars(model), "no on_train_end: the hooks are still there"
    tracker = LossParamTracker(log_dir)
    model.fit(*make_data(), epochs=1, verbose=0, callbacks=[tracker])
    assert tracker.diagnosis["loss/GaussianNLL/log_var"] == "training"
    assert not {"train_step", "compute_loss", "make_train_function", "_loss_param_tracker_capture"} & set(vars(model))
    assert "apply" not in vars(model.optimizer)


def test_a_plain_fit_after_an_interrupted_one_runs_without_the_hooks(log_dir):
    """Keras skips on_train_end when fit raises: the next fit's start removes what it left."""
    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    with pytest.raises(KeyboardInterrupt):
        model.fit(*make_data(), epochs=3, verbose=0, callbacks=[LossParamTracker(log_dir), InterruptAt(1)])
    assert {"train_step", "make_train_function", "_loss_param_tracker_capture"} <= set(vars(model))
    model.fit(*make_data(), epochs=1, verbose=0)
    assert not {"train_step", "compute_loss", "make_train_function", "_loss_param_tracker_capture"} & set(vars(model))
    assert "apply" not in vars(model.optimizer) and "call" not in vars(loss)


def test_hooks_that_cannot_all_be_attached_leave_none_behind(log_dir, monkeypatch, caplog):
    hook = capture_tf.StepCapture._hook

    def failing(self, obj, name, label, body):
        if label == "Loss.call":
            raise AttributeError("read-only call")
        return hook(self, obj, name, label, body)

    monkeypatch.setattr(capture_tf.StepCapture, "_hook", failing)
    loss = GaussianNLL()
    model = make_model()
    make_trainable(model, loss)
    with caplog.at_level(logging.WARNING):
        tracker = fit(model, loss, log_dir, epochs=2)
    assert any("could not be attached" in m and "read-only call" in m for m in messages(caplog)), messages(caplog)
    assert not {"train_step", "compute_loss", "_loss_param_tracker_capture"} & set(vars(model))
    assert not {"apply", "scale_loss"} & set(vars(model.optimizer))
    assert tracker.diagnosis["loss/GaussianNLL/log_var"] == "training", "values are still logged and diagnosed"


def test_the_batched_read_gives_each_variables_own_elements_with_or_without_its_op(monkeypatch):
    rng = np.random.default_rng(0)
    variables = [
        keras.Variable(rng.normal(size=(3, 4)).astype("float32")),
        keras.Variable(np.float32(np.nan)),
        keras.Variable(rng.normal(size=5).astype("float16"), dtype="float16"),
        keras.Variable(np.arange(4), dtype="int32", trainable=False),
        tf.Variable(rng.normal(size=(2, 2))),  # a bare float64 TensorFlow variable
    ]
    expected = np.concatenate([np.ravel(keras.ops.convert_to_numpy(v)).astype(np.float64) for v in variables])
    read = capture_tf.flat_reader(variables)
    np.testing.assert_array_equal(read(), expected)
    variables[0].assign(np.zeros((3, 4), "float32"))
    expected[:12] = 0
    np.testing.assert_array_equal(read(), expected, err_msg="a read is of the value now, not a copy kept")

    tried = []

    def unregistered(op_name, *args, **kwargs):
        tried.append(op_name)
        raise tf.errors.NotFoundError(None, None, f"'{op_name}' is neither a type of a primitive operation")

    monkeypatch.setattr(capture_tf.execute, "execute", unregistered)
    read = capture_tf.flat_reader(variables)
    np.testing.assert_array_equal(read(), expected)
    np.testing.assert_array_equal(read(), expected)
    assert tried == ["_ReadVariablesOp"], "a TensorFlow without the op is asked once"

    def moved(*args, **kwargs):  # an eager API that is not where it was
        tried.append("moved")
        raise TypeError("execute() got an unexpected keyword argument")

    monkeypatch.setattr(capture_tf.execute, "execute", moved)
    read = capture_tf.flat_reader(variables)
    np.testing.assert_array_equal(read(), expected)
    np.testing.assert_array_equal(read(), expected)
    assert tried.count("moved") == 1, "nor is a TensorFlow whose eager internals differ"


def test_an_epochs_end_reads_the_accumulators_once_and_reads_them_current(log_dir, monkeypatch):
    fetched = []
    fetch = capture_tf.StepCapture._fetch

    def counted(self):
        fetched.append(None)
        return fetch(self)

    monkeypatch.setattr(capture_tf.StepCapture, "_fetch", counted)
    before, after = [], []

    class Before(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            before.append(len(fetched))

    class After(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            capture = vars(self.model)[capture_lib.ATTRIBUTE]
            # Outside the tracker's hook: a read of its own, of the same steps.
            after.append((len(fetched), capture.read_global()))

    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    make_trainable(model, loss)
    tracker = LossParamTracker(log_dir=log_dir)
    model.fit(*make_data(), epochs=3, batch_size=64, verbose=0, callbacks=[Before(), tracker, After()])
    assert [count - begun for begun, (count, _) in zip(before, after)] == [1, 1, 1], (before, after)
    _, global_norm = load_run(log_dir).grad_norm
    np.testing.assert_allclose(global_norm, [[mean, maximum] for _, (_, mean, maximum) in after], rtol=1e-6)


def test_the_curvature_probes_condition_stays_a_call_and_still_measures(log_dir):
    # Lowered to Switch and Merge, the condition would make TensorFlow's
    # executor track the deadness of every operation of the step.
    conditions, curvature = [], []
    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    step = model.train_step

    def traced(data):
        outputs = step(data)
        if not tf.executing_eagerly():
            graph = tf.compat.v1.get_default_graph()
            conditions.extend(op for op in graph.get_operations() if op.type in ("If", "StatelessIf"))
        return outputs

    model.train_step = traced

    class Read(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            capture = vars(self.model)[capture_lib.ATTRIBUTE]
            measured = [s.curvature for s in capture.read(list(capture._slots)).values() if not math.isnan(s.curvature)]
            curvature.extend(measured)  # the log-variance's only: the probe measures no other

    model.fit(*make_data(), epochs=2, batch_size=64, verbose=0, callbacks=[LossParamTracker(log_dir=log_dir), Read()])
    lowered = {("/" in op.name, op.get_attr("_lower_using_switch_merge")) for op in conditions}
    # Each trace's probe is kept a call; the optimizer's own conditions (in its
    # name scope, in the first trace) are left alone.
    assert lowered == {(False, False), (True, True)}, [(op.name, op.get_attr("_lower_using_switch_merge")) for op in conditions]
    # The log-variance's objective is not linear in it: 0.5 * exp(-s) * mse has curvature.
    assert len(curvature) == 2 and all(c > 0 for c in curvature), curvature


def _nll(s, v):
    return 0.5 * tf.exp(-v) * s + 0.5 * v


@tf.function
def _nll_in_a_function(s, v):
    return tf.py_function(_nll, [s, v], Tout=tf.float32)


class PyFunctionNLL(keras.losses.Loss):
    """A loss computed in `tf.py_function`, its learned log-variance among the inputs (`"through"`,
    and `"nested"`: in a `tf.function` the loss calls), or not (`"model_output_only"`)."""

    def __init__(self, form, **kwargs):
        super().__init__(**kwargs)
        self.form = form
        self.log_var = tf.Variable(0.0, name="log_var")

    def call(self, y_true, y_pred):
        squared = tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)
        if self.form == "model_output_only":  # the py_function sees the model's output only
            squared = tf.py_function(lambda s: s * 1.0, [squared], Tout=tf.float32)
            squared.set_shape([None])
            return _nll(squared, self.log_var)
        if self.form == "nested":
            out = _nll_in_a_function(squared, tf.convert_to_tensor(self.log_var))
        else:
            out = tf.py_function(_nll, [squared, self.log_var], Tout=tf.float32)
        out.set_shape([None])
        return out


@pytest.mark.parametrize("form", ["through", "through_eagerly", "nested", "model_output_only"])
def test_a_py_function_between_a_loss_variable_and_the_loss_is_differentiated_once(log_dir, caplog, form):
    """TensorFlow keeps a py_function's tape for one backward: the tracker's own gradient
    through it failed the step when it ran, out of fit ("KeyError: b'pyfunc_7'"); eagerly,
    or in a tf.function the loss calls, too. Through a tf.function, without the check, the
    curvature probe took the product it could not take for zero: `unbounded`."""
    through = form != "model_output_only"

    def train(callbacks):
        keras.utils.set_random_seed(0)
        model = make_model(seed=3)
        loss = PyFunctionNLL("through" if form == "through_eagerly" else form)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, run_eagerly=form == "through_eagerly")
        history = model.fit(*make_data(), epochs=2, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)
        return history.history["loss"], [w.numpy() for w in model.weights]

    plain_loss, plain = train([])
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        tracker = LossParamTracker(log_dir)
        tracked_loss, tracked = train([tracker])
    assert tracked_loss == plain_loss
    for a, b in zip(plain, tracked):
        np.testing.assert_array_equal(a, b)
    path = "loss/PyFunctionNLL/log_var"
    variable = load_run(log_dir).variables[path]
    grad = variable.grad_norm[:, 0]
    said = [m for m in messages(caplog) if "a tf.py_function" in m]
    if through:
        assert tracker.diagnosis[path] == "not_updated" and np.isnan(grad).all()
        assert variable.cause.tolist() == ["not_in_optimizer_gradient_unknown"] * 2
        assert len(said) == 1 and ("py_function_nll" in said[0] or "eager step" in said[0]), messages(caplog)
    else:  # no backward of the tracker's goes through it: the gradient is observed
        assert variable.last_cause == "not_in_optimizer" and (grad > 0).all()
        assert not said, messages(caplog)


def test_where_grappler_rewrites_the_tracked_step_apart_the_weights_differ_in_the_last_bits_only(log_dir):
    """A loss that sorts a projection by one loss variable and weights it by another (a
    sliced-Wasserstein term): the tracker's ops change Grappler's arithmetic rewrites of the step's
    own, and the weights differ from a plain fit's in their last bits (see the README)."""
    x, y = make_data()

    def trained(tracked):
        keras.utils.set_random_seed(0)
        weight = keras.Variable(10.0, name="weight")
        projections = keras.Variable(np.random.default_rng(1).normal(size=(3, 1)).astype("float32"), name="theta")

        def loss(y_true, y_pred):
            projected = keras.ops.sort(keras.ops.transpose(keras.ops.matmul(y_pred, keras.ops.transpose(projections))))
            return keras.ops.mean(keras.ops.abs(y_true - y_pred)) + weight * keras.ops.mean(projected**2)

        model = make_model()
        model.compile(optimizer="rmsprop", loss=loss)
        callbacks = [LossParamTracker(log_dir)] if tracked else []
        model.fit(x, y, epochs=6, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)
        return [w.numpy() for w in model.weights]

    for plain, tracked in zip(trained(False), trained(True)):  # 1.5e-8 apart at most, in this TensorFlow
        np.testing.assert_allclose(tracked, plain, rtol=1e-6, atol=1e-7)


def test_a_loss_that_assigns_its_own_statistics_keeps_them_on_tensorflow(tmp_path):
    """TensorFlow's step applies the loss's own assigns (JAX's drops them: `test_backends`)."""
    left = running_normalized_fit(str(tmp_path / "left"))
    assert left["step"] == 24
    assert left["causes"]["loss/RunningNormalizedNLL/running_mean"] == ["outside_optimizer"] * 3
    assert left["causes"]["loss/RunningNormalizedNLL/step"] == ["outside_optimizer"] * 3
    assert not any("JAX's step keeps" in w for w in left["warnings"]), left["warnings"]


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_a_fix_descent_has_no_minimum_for_is_said_so(tmp_path, run_eagerly):
    """The probe measures what make_trainable attached too, traced or eager: a learned label-smoothing
    epsilon (linear in the loss) runs off once the optimizer has it, and reads `no_minimum`, not
    `training` (an eager step read `training`). The probe's tape changes nothing of the training."""
    left = learned_smoothing_fit(str(tmp_path / "left"), run_eagerly=run_eagerly)
    trained = learned_smoothing_fit(str(tmp_path / "trained"), trained=True, run_eagerly=run_eagerly)
    untracked = learned_smoothing_fit(str(tmp_path / "untracked"), trained=True, tracked=False, run_eagerly=run_eagerly)
    # TensorFlow's multithreaded CPU kernels differ from run to run by up to some 2e-3 here, tracker or not.
    assert_no_minimum_said(left, trained, untracked, tolerance=2e-2)


def test_a_term_a_python_flag_switches_on_after_the_trace_is_read_by_no_step(tmp_path):
    """The compiled step keeps the branch it was traced with: `log_var` is read in no step, before
    the fix and after, and the causes say so (a branch decided when the step was traced)."""
    left = flagged_fit(str(tmp_path / "left"))
    trained = flagged_fit(str(tmp_path / "trained"), trained=True)
    assert left["causes"] == ["not_read"] * 4 and trained["causes"] == ["fix_not_reached"] * 4, (left, trained)
    assert trained["log_var"] == 0
    assert "decided when the step was traced" in metadata.advice("no_gradient", "fix_not_reached")[0]


def test_a_fix_descent_raises_without_minimum_is_said_so(tmp_path):
    """An entropy bonus's weight: the gradient never positive, descent raises it without end."""
    trained = learned_smoothing_fit(str(tmp_path / "bonus"), trained=True, loss_class=EntropyBonusCE)
    assert all(b > a + 0.05 for a, b in zip(trained["values"], trained["values"][1:])), trained["values"]
    assert trained["statuses"] == ["no_minimum"] * 6, trained["statuses"]


def test_a_learned_value_at_risk_is_not_said_to_have_no_minimum_once_it_settled(tmp_path):
    assert_settles_without_no_minimum_again(cvar_fit(str(tmp_path)))
