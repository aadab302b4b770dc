"""Statuses and advice only from evidence, and fixes checked to have worked.

Each test is a real fit. What truly happened to a variable is recorded by a
spy callback, independently of the tracker, and every status and warning is
held against it: a variable seen to move, at any time and by anything, is
never `not_updated`, no warning advises `make_trainable` for it, and no
verdict comes before a training step ran.
"""

import collections
import logging
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from loss_param_tracker import LossParamTracker, LossParamWarning, callback, fix, load, make_trainable, report
from tests import models
from tests.conftest import ScaledMSE, make_data, make_model

# How the loss's variable may be moved: by nothing, by the model's optimizer
# (after make_trainable), a second optimizer in a custom train_step, a
# callback before or after the tracker at an epoch's begin or end, an assign
# in the loss.
MOVERS = (
    "nothing",
    "optimizer",
    "second_optimizer",
    "callback_begin_before",
    "callback_begin_after",
    "callback_end_before",
    "callback_end_after",
    "assign_in_loss",
)


class Weighted(keras.losses.Loss):
    """MSE scaled by a learned temperature, with or without a gradient for it."""

    def __init__(self, gradient=True, assign=False, **kwargs):
        super().__init__(**kwargs)
        self.gradient, self.assign = gradient, assign
        self.t = keras.Variable(1.0, name="t")

    def call(self, y_true, y_pred):
        t = self.t if self.gradient else tf.stop_gradient(self.t)
        if self.assign:
            self.t.assign_add(0.01)
        return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1) * t + tf.square(t - 2.0)


class SecondOptimizer(keras.Model):
    """A custom train_step that also steps the loss's variable with an optimizer of its own."""

    def __init__(self, loss, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)
        self.weighted = loss
        self.second = keras.optimizers.SGD(0.05)

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        variables = self.trainable_variables + [self.weighted.t]
        grads = tape.gradient(loss, variables)
        self.optimizer.apply(grads[:-1], self.trainable_variables)
        if grads[-1] is not None:
            self.second.apply([grads[-1]], [self.weighted.t])
        else:
            self.weighted.t.assign_add(0.01)
        return {"loss": loss}


class Move(keras.callbacks.Callback):
    def __init__(self, variable, when):
        super().__init__()
        self.variable, self.when = variable, when

    def on_epoch_begin(self, epoch, logs=None):
        if self.when == "begin":
            self.variable.assign_add(0.1)

    def on_epoch_end(self, epoch, logs=None):
        if self.when == "end":
            self.variable.assign_add(0.1)


class Spy(keras.callbacks.Callback):
    """Records the variable's value at every epoch's begin and end, and the warnings before the first epoch's end.

    Listed first and last, it sees each value before and after every other callback.
    """

    def __init__(self, variable, caught):
        super().__init__()
        self.variable, self.caught = variable, caught
        self.values, self.warned_before_first_epoch_end = [], None

    def _look(self):
        self.values.append(float(self.variable.numpy()))

    def on_train_begin(self, logs=None):
        self._look()

    def on_epoch_begin(self, epoch, logs=None):
        self._look()

    def on_epoch_end(self, epoch, logs=None):
        if self.warned_before_first_epoch_end is None:
            self.warned_before_first_epoch_end = [str(w.message) for w in self.caught]
        self._look()

    def on_train_end(self, logs=None):
        self._look()


def fit_warned(model, log_dir, epochs=2):
    """A real fit with a tracker; returns the tracker and the texts of its warnings."""
    x, y = make_data()
    tracker = LossParamTracker(str(log_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[tracker])
    return tracker, [str(w.message) for w in caught if w.category is LossParamWarning]


def fit_case(mover, gradient, log_dir, epochs=3):
    """One real fit of the combination; returns (tracker, warnings, spy)."""
    keras.utils.set_random_seed(0)
    loss = Weighted(gradient=gradient, assign=mover == "assign_in_loss")
    if mover == "second_optimizer":
        model = SecondOptimizer(loss)
    else:
        model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    if mover == "optimizer":
        make_trainable(model)
    tracker = LossParamTracker(log_dir)
    callbacks = [tracker]
    if mover.startswith("callback"):
        _, when, order = mover.split("_")
        callbacks.insert(0 if order == "before" else 1, Move(loss.t, when))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spy = Spy(loss.t, caught)
        x, y = make_data()
        last = Spy(loss.t, caught)
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[spy, *callbacks, last])
    spy.values += last.values
    messages = [str(w.message) for w in caught if w.category is LossParamWarning]
    return tracker, messages, spy


@settings(max_examples=24, deadline=None, derandomize=True)
@given(mover=st.sampled_from(MOVERS), gradient=st.booleans(), epochs=st.sampled_from([1, 3]))
def test_every_status_and_warning_agrees_with_what_was_observed(tmp_path_factory, mover, gradient, epochs):
    log_dir = str(tmp_path_factory.mktemp("fit"))
    tracker, messages, spy = fit_case(mover, gradient, log_dir, epochs)
    path = "loss/Weighted/t"
    moved = len(set(spy.values)) > 1
    status = tracker.diagnosis.get(path)
    about = [m for m in messages if f"'{path}'" in m]
    case = f"{mover}, gradient={gradient}, epochs={epochs}: values {spy.values}, status {status}, warnings {about}"
    if mover == "optimizer":
        assert status == ("training" if gradient else "no_gradient"), case
    elif moved:
        assert status == "training", case
        assert not any("make_trainable" in m for m in about), case
    else:
        assert status == ("not_updated" if gradient else "no_gradient"), case
    assert status != "not_updated" or not moved, case
    assert not [m for m in spy.warned_before_first_epoch_end if "not_updated" in m], case
    if status == "not_updated":
        assert any("[not_updated]" in m and "make_trainable(model)" in m for m in about), case
    # What was logged says the same.
    assert load(log_dir)["train"].variables[path].status.tolist()[-1] == status, case


def test_the_first_verdict_waits_for_a_callback_that_moves_the_variable_after_the_tracker(tmp_path):
    """One epoch; a callback listed after the tracker moves it at the epoch's end: training, no warning."""
    tracker, messages, spy = fit_case("callback_end_after", True, str(tmp_path), epochs=1)
    assert spy.values[-1] != spy.values[0]
    assert tracker.diagnosis["loss/Weighted/t"] == "training"
    assert not messages, messages


def test_a_long_first_epoch_is_looked_at_after_a_bounded_number_of_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(callback, "EARLY_STEPS", 3)
    seen = {}

    class At(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.setdefault(batch, len([w for w in caught if w.category is LossParamWarning]))

    model, loss = make_model(), Weighted()
    model.compile(optimizer="adam", loss=loss)
    x, y = make_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[LossParamTracker(str(tmp_path)), At()])
    assert seen[2] == 0 and seen[3] == 1, f"said at the fourth step's start, not before: {seen}"
    early, settled = [str(w.message) for w in caught if w.category is LossParamWarning]
    assert "after 3 training steps nothing has changed its value" in early, early
    assert "the status comes at the epoch's end" in early
    assert "[not_updated]" in settled and "[not_updated]" not in early


def test_a_weight_of_a_loss_term_gets_no_advice_to_train_it_by_descent(tmp_path):
    """Dynamic Weight Averaging's weights before its callback first sets them (from the third epoch)."""

    class Averaged(keras.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.weights = tf.Variable([0.5, 0.5], name="task_weights")

        def call(self, y_true, y_pred):
            return self.weights[0] * tf.reduce_mean(tf.square(y_true - y_pred)) + self.weights[1] * tf.reduce_mean(
                tf.abs(y_true - y_pred)
            )

    model = make_model()
    model.compile(optimizer="adam", loss=Averaged())
    _, (message,) = fit_warned(model, tmp_path)
    assert "[not_updated]" in message and "linear in it" in message and "make_trainable" not in message, message
    row = load(str(tmp_path))["train"].variables["loss/Averaged/weights"]
    assert row.cause.tolist() == ["unbounded", "unbounded"]


class Traced(keras.layers.Layer):
    """Older CRF layers: a raw tf.Variable read in a tf.function `call`, and an add_loss term."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.transitions = tf.Variable(1.0, name="transitions")

    @tf.function
    def call(self, x):
        self.add_loss(tf.square(self.transitions - 3.0))
        return x * self.transitions


def traced_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1), Traced(name="crf")], name="net")
    model(np.zeros((2, 4), "float32"))  # traced before the fix, as summary() or a first call does
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return model


def test_the_fix_reaches_code_traced_before_it_and_is_checked(tmp_path, caplog):
    model = traced_model()
    (attached,) = make_trainable(model)
    assert attached.value is model.get_layer("crf").transitions, "the very variable the traced code reads"
    x, y = make_data()
    tracker = LossParamTracker(str(tmp_path))
    with caplog.at_level(logging.INFO, "loss_param_tracker"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[tracker])
    assert float(model.get_layer("crf").transitions.numpy()) != 1.0
    assert tracker.diagnosis["model/net/crf/transitions"] == "training"
    assert "make_trainable's fix reached 'model/net/crf/transitions'" in caplog.text
    assert not [w for w in caught if w.category is LossParamWarning]


def test_a_fix_that_did_not_reach_the_code_is_said_with_the_variable(tmp_path, monkeypatch):
    # Where a replacement is unavoidable (a raw variable outside a strategy's
    # scope), a reader traced before it keeps the old variable.
    monkeypatch.setattr(fix, "_can_wrap", lambda model, variable: False)
    model = traced_model()
    make_trainable(model)
    tracker, (message,) = fit_warned(model, tmp_path)
    assert tracker.diagnosis["model/net/crf/transitions"] == "no_gradient"
    assert "'model/net/crf/transitions'" in message and "make_trainable handed it to the optimizer" in message
    assert "reads another variable" in message, message
    assert report.main(["report", str(tmp_path)]) == 1


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)


def test_make_trainable_on_a_built_model_and_a_tf_function_loss(tmp_path):
    class Scale(tf.Module):
        def __init__(self):
            super().__init__()
            self.log_scale = tf.Variable(0.0, name="log_scale")

    scale = Scale()

    @tf.function
    def robust(y_true, y_pred):
        s = tf.exp(scale.log_scale)
        return tf.reduce_mean(tf.square(y_true - y_pred)) / s + scale.log_scale

    model = Subclassed()
    model(np.zeros((2, 4), "float32"))
    model.summary(print_fn=lambda *args, **kwargs: None)  # built and locked
    attached = make_trainable(model, robust)
    assert [v.value for v in attached] == [scale.log_scale]
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=robust)
    x, y = make_data()
    tracker = LossParamTracker(str(tmp_path))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[tracker])
    assert tracker.diagnosis["loss/robust/scale/log_scale"] == "training"
    assert float(scale.log_scale.numpy()) != 0.0


def test_a_variable_the_loss_creates_on_its_first_call_gets_no_verdict_before_it_was_seen_twice(tmp_path):
    class Lazy(keras.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.c = None

        def call(self, y_true, y_pred):
            if self.c is None:
                self.c = tf.Variable(0.0, name="c")
            self.c.assign_add(0.01)  # an assign in the loss moves it every step
            return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1) + 1e-3 * self.c

    model, loss = make_model(), Lazy()
    model.compile(optimizer="adam", loss=loss)
    x, y = make_data()
    tracker = LossParamTracker(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[tracker])
        assert "loss/Lazy/c" not in tracker.diagnosis, "found after the first epoch: nothing known yet"
        model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[tracker])
    assert tracker.diagnosis["loss/Lazy/c"] == "training"
    assert not [w for w in caught if w.category is LossParamWarning], [str(w.message) for w in caught]


def test_a_weight_the_objective_falls_with_is_not_advised_to_train_plainly(tmp_path):
    """An entropy bonus's weight: linear, its gradient negative. Descent would raise it without end."""

    class Bonus(keras.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.beta = keras.Variable(0.1, name="beta")

        def call(self, y_true, y_pred):
            spread = tf.reduce_mean(tf.math.log1p(tf.square(y_pred)), axis=-1)
            return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1) - self.beta * spread

    model = make_model()
    model.compile(optimizer="adam", loss=Bonus())
    _, (message,) = fit_warned(model, tmp_path)
    assert "linear in it" in message and "gradient reversal" in message and "bonus term" in message, message
    assert load(str(tmp_path))["train"].variables["loss/Bonus/beta"].cause.tolist() == ["linear", "linear"]


def test_a_fixed_variable_that_moves_while_the_loss_is_nan_is_never_said_to_train(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = models.log_variance_fit(str(tmp_path / "log_v"))
    finite = np.isfinite(fit["loss"])
    assert finite[0] and not finite[-1], fit["loss"]
    expected = [("training", "") if f else ("non_finite", "loss_non_finite") for f in finite]
    assert list(zip(fit["status"], fit["cause"])) == expected
    assert np.isfinite(load(str(tmp_path / "log_v"))["train"].variables["loss/LogVariance/v"].value).all(), (
        "the variable itself stays finite: only the loss says it"
    )
    (message,) = {str(w.message) for w in caught if w.category is LossParamWarning}
    assert "'loss/LogVariance/v'" in message and "[non_finite]" in message and "loss Keras logged" in message
    assert "its log, with exp()" in message, message
    assert report.main(["report", str(tmp_path / "log_v")]) == 1

    # The form the fix names trains, and is said to.
    fit = models.log_variance_fit(str(tmp_path / "log_s"), learn_log=True)
    assert np.isfinite(fit["loss"]).all()
    assert fit["status"] == ["training"] * 4
    assert report.main(["report", str(tmp_path / "log_s")]) == 0


def test_a_network_the_loss_holds_is_never_said_to_train_while_the_loss_is_nan(tmp_path):
    class Critic(keras.losses.Loss):
        """A learned critic's penalty beside mse + log(v): v goes through zero after the fix."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.critic = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(1)], name="critic")
            self.v = keras.Variable(1.0, name="v")

        def call(self, y_true, y_pred):
            penalty = 0.01 * tf.reduce_mean(tf.square(self.critic(y_pred)), axis=-1)
            return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1) + penalty + tf.math.log(self.v)

    model, loss = make_model(), Critic()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    x, y = make_data()
    loss(y[:2], model(x[:2]))  # the critic is built by the loss's first call
    make_trainable(model)
    tracker = LossParamTracker(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossParamWarning)
        history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[tracker])
    finite = np.isfinite(history.history["loss"])
    assert finite[0] and not finite[-1], history.history["loss"]
    statuses = load(str(tmp_path))["train"].variables
    expected = ["training" if f else "non_finite" for f in finite]
    assert statuses["loss/Critic/critic"].status.tolist() == expected, sorted(statuses)
    assert statuses["loss/Critic/v"].status.tolist() == expected


@pytest.mark.parametrize("loss", [models.GaussianNLL, ScaledMSE], ids=["keras_variable", "raw_tf_variable"])
def test_the_tracker_adds_no_deprecation_warning_to_a_fit(tmp_path, loss):
    """Keras's and TensorFlow's variables hand numpy an __array__ without numpy 2's copy keyword
    (see test_backends.py)."""
    found = models.deprecations(str(tmp_path), loss)
    assert not collections.Counter(found["tracked"]) - collections.Counter(found["plain"]), found


def test_make_trainable_takes_a_raw_variable_created_in_a_name_scope():
    class Scaled(keras.layers.Layer):
        def build(self, input_shape):
            self.s = tf.Variable(1.0, name="s")  # named "scaled/s:0" inside Keras's build scope

        def call(self, x):
            self.add_loss(tf.square(self.s - 2.0))
            return x * self.s

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1), Scaled(name="scaled")])
    model.compile(optimizer="adam", loss="mse")
    assert "/" in model.get_layer("scaled").s.name
    (attached,) = make_trainable(model)
    assert attached.value is model.get_layer("scaled").s and attached.name == "s"


class CrossBatchMemory(keras.losses.Loss):
    """A memory bank created on the first call with a dimension unknown until run time, beside a learned weight."""

    def __init__(self, keep=100, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")
        self.memory = None
        self.keep = keep  # the rows kept of the bank: more than a fit adds, and it grows all along

    def call(self, y_true, y_pred):
        if self.memory is None:
            self.memory = tf.Variable(
                tf.zeros([0, 1]), shape=tf.TensorShape([None, 1]), trainable=False, name="memory"
            )
        self.memory.assign(tf.concat([self.memory[-self.keep :], tf.stop_gradient(y_pred)], 0))
        error = tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)
        return tf.exp(-self.log_var) * error + self.log_var + 0.0 * tf.reduce_mean(self.memory)


@pytest.mark.parametrize("keep", [100, 100_000], ids=["settles", "grows"])
def test_a_variable_of_unknown_shape_costs_no_other_variable_its_status(tmp_path, keep, caplog):
    model = make_model()
    model.compile(optimizer="adam", loss=CrossBatchMemory(keep))
    tracker, _ = fit_warned(model, tmp_path)
    assert "cannot be summarised" not in caplog.text
    assert tracker.diagnosis["loss/CrossBatchMemory/log_var"] == "not_updated"
    assert tracker.diagnosis["loss/CrossBatchMemory/memory"] == "frozen"
    assert any(p.startswith("model/") for p in tracker.diagnosis), "the model's weights keep theirs"
    run = load(str(tmp_path))["train"]
    memory = run.variables["loss/CrossBatchMemory/memory"]
    assert memory.shape == (-1, 1) and memory.stats.shape == (2, 5), "a growing bank is logged as statistics"
    if keep > 100:
        assert memory.stats[1, 0] != memory.stats[0, 0], "its statistics change as it grows"
    assert not run.unreadable
    assert report.main(["report", str(tmp_path)]) == 1, "a finding: log_var does not train"


def test_a_variable_the_tracker_cannot_read_is_named_once_and_the_others_go_on(tmp_path, caplog, monkeypatch):
    snapshot = callback.Snapshot.of

    def fails_for_log_var(variable):
        if "log_var" in variable.name:
            raise TypeError("unsupported operand type(s) for *: 'int' and 'NoneType'")
        return snapshot(variable)

    monkeypatch.setattr(callback.Snapshot, "of", staticmethod(fails_for_log_var))
    read_together = callback.capture_lib.flat_reader

    def fails_with_log_var(variables):  # the batched read fails: each variable is then read alone
        if any("log_var" in v.name for v in variables):
            return lambda: fails_for_log_var(next(v for v in variables if "log_var" in v.name))
        return read_together(variables)

    monkeypatch.setattr(callback.capture_lib, "flat_reader", fails_with_log_var)
    model, loss = make_model(), CrossBatchMemory()
    model.compile(optimizer="adam", loss=loss)
    x, y = make_data()
    tracker = LossParamTracker(str(tmp_path))
    with caplog.at_level(logging.WARNING, "loss_param_tracker"):
        model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[tracker])
    said = [r.getMessage() for r in caplog.records if "'loss/CrossBatchMemory/log_var' cannot be summarised" in r.getMessage()]
    assert len(said) == 1 and "TypeError" in said[0], caplog.text
    assert "loss/CrossBatchMemory/log_var" not in tracker.diagnosis
    assert tracker.diagnosis["model/net/out/kernel"] == "training"
    assert load(str(tmp_path))["train"].variables["model/net/out/kernel"].status.tolist() == ["training"] * 3


def test_a_weight_whose_norms_cannot_be_summarised_is_left_out_of_the_models_norms_too(tmp_path, caplog, monkeypatch):
    block = callback.summary.weight_norms_block

    def block_of_many_fails(weights, rows, **kwargs):  # the tracker's block of all; a weight's own still made
        if len(weights) > 1:
            raise ValueError("a block that cannot be made")
        return block(weights, rows, **kwargs)

    weight_norms = callback.summary.weight_norms

    def fails_for_the_hidden_bias(path, row, **kwargs):
        if path == "model/net/hidden/bias":
            raise ValueError("a row that cannot be summarised")
        return weight_norms(path, row, **kwargs)

    monkeypatch.setattr(callback.summary, "weight_norms_block", block_of_many_fails)
    monkeypatch.setattr(callback.summary, "weight_norms", fails_for_the_hidden_bias)
    model = make_model()
    model.compile(optimizer="adam", loss="mse")
    tracker = LossParamTracker(str(tmp_path))
    with caplog.at_level(logging.WARNING, "loss_param_tracker"):
        model.fit(*make_data(), epochs=2, batch_size=64, verbose=0, callbacks=[tracker])
    run = load(str(tmp_path))["train"]
    logged = ["model/net/hidden/kernel", "model/net/out/kernel", "model/net/out/bias"]
    assert sorted(run.variables) == sorted(logged), list(run.variables)
    _, whole = run.model_norms
    own = np.sqrt(sum(run.variables[path].norms[:, 0].astype(np.float64) ** 2 for path in logged))
    np.testing.assert_allclose(whole[:, 0], own, rtol=1e-5, err_msg="the model's norm is of the weights logged")
    assert "model/net/hidden/bias" in caplog.text, caplog.text


@pytest.mark.parametrize("attach", [True, False], ids=["attached", "left"])
def test_an_epoch_whose_steps_the_optimizer_all_skipped_gets_no_status_and_the_console_says_why(
    attach, tmp_path, caplog
):
    """Mixed precision, every step of the first two epochs overflowing: the attached log-variance
    was `optimizer_no_effect` ("check the learning rate"), the one left to the tracker
    `not_in_optimizer_gradient_unknown` (a custom train_step, add_loss, a py_function): neither
    was so. Nothing trained in those epochs; the third trains as usual."""
    with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
        statuses, steps = models.overflowing_fit(str(tmp_path), attach=attach)
    assert models.skipped_epochs_said_nothing(statuses, steps, "training" if attach else "not_updated")
    said = [r.getMessage() for r in caplog.records if "skipped all 5 training steps" in r.getMessage()]
    assert len(said) == 1, caplog.text


@pytest.mark.parametrize("rate", [0.0, 0.01])
def test_the_fix_of_a_variable_left_out_says_when_the_optimizer_moved_no_weight_either(rate, tmp_path):
    """SGD at a learning rate of 0: make_trainable alone was advised, and applied it moved nothing;
    the model's own weights had shown why (optimizer_no_effect) in the same epoch."""
    model = make_model()
    model.compile(optimizer=keras.optimizers.SGD(rate), loss=models.GaussianNLL())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(*make_data(), epochs=1, batch_size=64, verbose=0, callbacks=[LossParamTracker(str(tmp_path))])
    (said,) = [str(w.message) for w in caught if issubclass(w.category, LossParamWarning)]
    assert "[not_updated]" in said and "make_trainable(model)" in said
    assert ("moved none of the model's weights this epoch either" in said) == (rate == 0.0), said
