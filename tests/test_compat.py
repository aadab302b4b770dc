"""The compatibility matrix: the ways users run fit, each trained with and without the tracker.

Each row trains a loss with a learned parameter as usually written (the
optimizer is not handed it) and fixed with `make_trainable`, and asserts:
`fit` completes; the statuses; the logged gradient norm of the loss variable
in the first step equals the gradient of the training objective computed
independently (unscaled); and the final weights are bit-identical with and
without the tracker.
"""

import contextlib
import dataclasses
import logging
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from loss_param_tracker import LossParamTracker, LossParamWarning, make_trainable
from tests.conftest import AnnealLogVar, GaussianNLL, load_run, make_model
from tests.models import LazyNLL

# One batch per epoch: the first epoch's logged gradient is the first step's. Four
# epochs: gradient accumulation over 2 steps updates in every other epoch.
N = 32


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(N, 1))).astype("float32")
    return x, y


def default_objective(model, loss, x, y, sample_weight=None):
    return model.compute_loss(x, y, model(x, training=True), sample_weight)


def direct_objective(model, loss, x, y, sample_weight=None):
    return model.loss(y, model(x, training=True))


class CustomStep(keras.Sequential):
    """A custom train_step with its own tape; `objective` is how it computes its loss."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.objective(x, y, self(x, training=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return {"loss": loss}


class DirectLossModel(CustomStep):
    """Calls the compiled loss object itself."""

    def objective(self, x, y, y_pred):
        return self.loss(y, y_pred)


class ComputeLossModel(CustomStep):
    """Calls self.compute_loss."""

    def objective(self, x, y, y_pred):
        return self.compute_loss(x=x, y=y, y_pred=y_pred)


class SecondOptimizerModel(keras.Sequential):
    """GradNorm's shape: the loss's parameter is trained by an optimizer of its own."""

    def train_step(self, data):
        x, y = data
        weight = self.loss.log_var
        with tf.GradientTape(persistent=True) as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        if not hasattr(self, "loss_optimizer"):
            self.loss_optimizer = keras.optimizers.SGD(0.1)
        self.loss_optimizer.apply([tape.gradient(loss, weight)], [weight])
        return {"loss": loss}


class Penalty(keras.layers.Layer):
    """Adds a term on the loss's parameter in the forward pass (add_loss)."""

    def __init__(self, loss, **kwargs):
        super().__init__(**kwargs)
        self._loss = loss

    def call(self, x):
        self.add_loss(0.5 * tf.square(self._loss.log_var.value - 1.0))
        return x


class LazyProjection(keras.losses.Loss):
    """Holds a Dense that is built on the loss's first call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.projection = keras.layers.Dense(1, kernel_initializer="ones", name="projection")

    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.square(self.projection(y_pred) - y_true))


class MemoryBuffer(GaussianNLL):
    """Creates a non-trainable buffer once, on first use, as cross-batch-memory losses do."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.memory = None

    def call(self, y_true, y_pred):
        if self.memory is None:
            self.memory = tf.Variable(tf.zeros([N, 1]), trainable=False, name="memory")
        self.memory.assign(y_pred)
        return super().call(y_true, y_pred)


def two_outputs(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, {"a": keras.layers.Dense(1, name="a")(hidden), "b": keras.layers.Dense(1, name="b")(hidden)})


def with_penalty(loss):
    model = make_model()
    return keras.Sequential([Penalty(loss), *model.layers], name="net")


@dataclasses.dataclass
class Row:
    """One way of running fit, and what the tracker must say of it."""

    compile: dict = dataclasses.field(default_factory=dict)
    optimizer: object = lambda: keras.optimizers.Adam(0.01)
    model: object = lambda loss: make_model()
    loss: object = GaussianNLL
    path: str = "loss/GaussianNLL/log_var"
    variable: object = lambda loss: loss.log_var
    objective: object = default_objective
    fit: dict = dataclasses.field(default_factory=dict)
    callbacks: object = lambda loss: []
    policy: str = None
    build_optimizer: bool = False
    broken: tuple = ("not_updated", "not_in_optimizer")
    fixed: tuple = ("training", "")
    rtol: float = 1e-4


def sequential(cls):
    return lambda loss: cls(make_model().layers, name="net")


ROWS = {
    "defaults": Row(),
    "jit_compile": Row(compile={"jit_compile": True}),
    "run_eagerly": Row(compile={"run_eagerly": True}),
    "steps_per_execution": Row(compile={"steps_per_execution": 2}),
    "gradient_accumulation": Row(optimizer=lambda: keras.optimizers.Adam(0.01, gradient_accumulation_steps=2)),
    "global_clipnorm": Row(optimizer=lambda: keras.optimizers.Adam(0.01, global_clipnorm=1e-3)),
    "use_ema": Row(optimizer=lambda: keras.optimizers.Adam(0.01, use_ema=True)),
    "loss_scale_optimizer": Row(optimizer=lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01))),
    # Built before fit: its dynamic scale exists from the first trace on.
    "loss_scale_optimizer_built": Row(
        optimizer=lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01)),
        build_optimizer=True,
    ),
    "mixed_float16": Row(policy="mixed_float16", rtol=1e-2),
    "custom_step_calls_loss": Row(model=sequential(DirectLossModel), objective=direct_objective),
    "custom_step_calls_compute_loss": Row(model=sequential(ComputeLossModel)),
    "add_loss": Row(model=with_penalty),
    "lazy_layer": Row(
        loss=LazyProjection,
        path="loss/LazyProjection/projection/kernel",
        variable=lambda loss: loss.projection.kernel,
        fixed=None,  # nothing to attach before its first call
    ),
    "lazy_buffer": Row(loss=MemoryBuffer, path="loss/MemoryBuffer/log_var"),
    "second_optimizer": Row(
        model=sequential(SecondOptimizerModel),
        broken=("training", "outside_optimizer"),
        fixed=None,
    ),
    "callback_assigns": Row(
        callbacks=lambda loss: [AnnealLogVar(loss)],
        broken=("training", "outside_optimizer"),
    ),
    "learning_rate_zero": Row(optimizer=lambda: keras.optimizers.SGD(0.0), broken=None, fixed=("not_updated", "optimizer_no_effect")),
    "dict_losses_with_loss_weights": Row(
        model=lambda loss: two_outputs(),
        loss=lambda: {"a": GaussianNLL(), "b": "mse"},
        path="loss/a/GaussianNLL/log_var",
        variable=lambda loss: loss["a"].log_var,
        compile={"loss_weights": {"a": 0.3, "b": 2.0}},
        fit={"y": "two"},
    ),
    "sample_weight": Row(fit={"sample_weight": np.linspace(0.1, 2.0, N).astype("float32")}),
    # Evaluation at each epoch's end runs the compiled loss, and its hooks, outside any training step.
    "validation_data": Row(fit={"validation_data": tuple(2.0 * a for a in data())}),
}


@contextlib.contextmanager
def built(row, optimizer):
    """Yields the row's loss, model (compiled with `optimizer`) and data, seeded, under its dtype policy."""
    previous = keras.mixed_precision.dtype_policy()
    if row.policy:
        keras.mixed_precision.set_dtype_policy(row.policy)
    try:
        keras.utils.set_random_seed(0)
        loss = row.loss()
        model = row.model(loss)
        model.compile(optimizer=optimizer, loss=loss, **row.compile)
        x, y = data()
        if row.fit.get("y") == "two":
            y = {"a": y, "b": 2 * y}
        yield loss, model, x, y
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def train(row, fixed, log_dir=None):
    """Trains the row once; returns (final weights, tracker)."""
    optimizer = row.optimizer()
    with built(row, optimizer) as (loss, model, x, y):
        if fixed:
            make_trainable(model, loss)
        if row.build_optimizer:
            optimizer.build(model.trainable_variables)
        kwargs = {k: v for k, v in row.fit.items() if k != "y"}
        tracker = LossParamTracker(log_dir) if log_dir else None
        callbacks = row.callbacks(loss) + ([tracker] if tracker else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LossParamWarning)
            history = model.fit(x, y, epochs=4, batch_size=N, shuffle=False, verbose=0, callbacks=callbacks, **kwargs)
        assert len(history.history["loss"]) == 4, "fit must complete"
        final = [np.array(w.numpy()) for w in model.weights] + [np.array(row.variable(loss).numpy())]
        return final, tracker


def first_step_gradient(row):
    """|d objective / d the loss variable| at the initial weights, computed without Keras's fit."""
    with built(row, keras.optimizers.SGD(0.0)) as (loss, model, x, y):
        sample_weight = row.fit.get("sample_weight")
        default_objective(model, loss, x, y, sample_weight)  # builds what the loss builds lazily
        variable = row.variable(loss)
        watched = variable.value if isinstance(variable, keras.Variable) else variable
        with tf.GradientTape() as tape:
            tape.watch(watched)
            objective = row.objective(model, loss, x, y, sample_weight)
        return float(np.linalg.norm(tape.gradient(objective, watched).numpy()))


@pytest.mark.parametrize("name", list(ROWS))
def test_compatibility(name, tmp_path, caplog):
    row = ROWS[name]
    for fixed, expected in ((False, row.broken), (True, row.fixed)):
        if expected is None:
            continue
        log_dir = str(tmp_path / ("fixed" if fixed else "broken"))
        plain, _ = train(row, fixed)
        with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
            tracked, tracker = train(row, fixed, log_dir)
        for a, b in zip(plain, tracked):
            np.testing.assert_array_equal(a, b, err_msg=f"{name}: the tracker changed training")
        variable = load_run(log_dir).variables[row.path]
        assert (variable.status[-1], variable.cause[-1]) == expected, (name, fixed, tracker.diagnosis)
        logged = variable.grad_norm[0, 0]
        np.testing.assert_allclose(logged, first_step_gradient(row), rtol=row.rtol, err_msg=name)
    said = [r.getMessage() for r in caplog.records if "LossParamTracker" in r.getMessage()]
    # With use_ema, Keras puts the moving averages into the attached loss variable as the fit ends.
    ema = [m for m in said if name == "use_ema" and "as the fit ends" in m and "use_ema=True" in m]
    assert len(ema) == (name == "use_ema"), said
    incomplete = [m for m in said if m not in ema]
    assert not incomplete, incomplete


def lazy_losses():
    """`{form: (the loss, its lazy layer, the variable's path)}`: a layer built on its first call,
    as the loss, in a function, and in a Loss."""
    as_loss = LazyNLL(name="nll")
    held = LazyNLL(name="held")

    def closure(y_true, y_pred):
        return held(y_true, y_pred)

    holder = LazyProjection()
    return {
        "layer_as_the_loss": (as_loss, as_loss, "loss/LazyNLL/log_var"),
        "function_closing_over_it": (closure, held, "loss/closure/held/log_var"),
        "loss_holding_it": (holder, holder.projection, "loss/LazyProjection/projection/kernel"),
    }


@pytest.mark.parametrize("form", ["layer_as_the_loss", "function_closing_over_it", "loss_holding_it"])
def test_a_variable_built_on_the_losss_first_call_is_found_and_its_fix_works(tmp_path, form):
    """A layer used as the loss, or closed over by a function loss, built its weight in fit's first
    step: the tracker found none and said nothing. The fix must also say to build it first:
    make_trainable before fit finds nothing to attach."""

    def run(fixed, log_dir):
        keras.utils.set_random_seed(0)
        loss, layer, path = lazy_losses()[form]
        model = make_model()
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
        x, y = data()
        if fixed:  # what the warning says
            loss(y[:1], model(x[:1]))
            make_trainable(model)
        tracker = LossParamTracker(str(log_dir))
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0, callbacks=[tracker])
        value = keras.ops.convert_to_numpy(layer.weights[0])
        return tracker.diagnosis[path], [str(w.message) for w in said if w.category is LossParamWarning], value

    keras.utils.set_random_seed(0)
    loss, _, _ = lazy_losses()[form]
    model = make_model()
    model.compile(optimizer="adam", loss=loss)
    with pytest.warns(UserWarning, match=r"make_trainable: the loss holds layers not built yet \((LazyNLL|Dense) "):
        assert make_trainable(model) == [], "nothing to attach before the first call"
    status, said, before = run(False, tmp_path / "broken")
    assert status == "not_updated"
    (warned,) = [w for w in said if f"'{lazy_losses()[form][2]}'" in w and "[not_updated]" in w]
    assert "It is created when the loss is first called (in a layer's build(), or by the loss's own code): where make_trainable before fit finds nothing, call the loss once first, as in loss(y[:1], model(x[:1]))" in warned, warned
    status, said, after = run(True, tmp_path / "fixed")
    assert status == "training" and not np.array_equal(before, after) and not said, said
