"""Small models, data and losses that truly cause each status, on any Keras backend.

Written with `keras.ops` and free of TensorFlow, so that the test process
(through `tests/conftest.py`) and the fresh processes that run fits on JAX,
PyTorch or several devices (`tests/backend_fits.py`,
`tests/distributed_fits.py`) share one definition of each.
"""

import logging
import math
import os
import warnings

import keras
import numpy as np
from keras import ops


class GaussianNLL(keras.losses.Loss):
    """Gaussian negative log-likelihood with a learned log-variance (keras.Variable)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")

    def call(self, y_true, y_pred):
        return ops.mean(0.5 * ops.exp(-self.log_var) * ops.square(y_true - y_pred) + 0.5 * self.log_var)


class SometimesNLL(keras.losses.Loss):
    """A Gaussian NLL whose log-variance only the calls of every other run of `run` calls read.

    An eager step (PyTorch, `run_eagerly=True`) runs the loss at every step,
    so its steps differ: the log-variance has a gradient in runs of steps and
    none between them. A traced step fixes the branch when traced: there
    `run=None` reads it every call.
    """

    def __init__(self, run=None, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")
        self.run = run
        self.reads = []  # per call, whether it read the log-variance

    def call(self, y_true, y_pred):
        reads = self.run is None or len(self.reads) // self.run % 2 == 0
        self.reads.append(reads)
        squared = ops.square(y_true - ops.cast(y_pred, "float32"))
        if reads:
            return ops.mean(0.5 * ops.exp(-self.log_var) * squared + 0.5 * self.log_var)
        return ops.mean(0.5 * squared)


class StoppedGradient(keras.losses.Loss):
    """Reads its parameter through stop_gradient: the loss has no gradient for it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weight = keras.Variable(2.0, name="weight")

    def call(self, y_true, y_pred):
        return ops.stop_gradient(self.weight) * ops.mean(ops.square(y_true - y_pred))


class ClampedWeight(keras.losses.Loss):
    """Clamps its parameter from below, far from its value: the gradient is exactly zero."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weight = keras.Variable(-1.0, name="weight")

    def call(self, y_true, y_pred):
        return ops.maximum(self.weight, 1.0) * ops.mean(ops.square(y_true - y_pred))


def make_data(n=256, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x @ rng.normal(size=(features, 1)) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def make_model(features=4, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ],
        name="net",
    )


class TermWeights(keras.losses.Loss):
    """An MSE plus two terms, each weighted by a learned weight the objective is linear in: a penalty
    (its gradient positive: descent has no minimum) and a bonus (negative: descent raises it)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.penalty = keras.Variable(0.5, name="penalty")
        self.bonus = keras.Variable(0.1, name="bonus")

    def call(self, y_true, y_pred):
        spread = ops.mean(ops.log1p(ops.square(y_pred)), axis=-1)
        return ops.mean(ops.square(y_true - y_pred), axis=-1) + (self.penalty - self.bonus) * spread


def causes_left_to_the_tracker(log_dir, loss, paths):
    """Two epochs of `loss`, its variables left to the tracker: `{path: causes}` of those at `paths`."""
    from loss_param_tracker import LossParamTracker, load

    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(*make_data(), epochs=2, batch_size=64, verbose=0, callbacks=[LossParamTracker(log_dir)])
    variables = load(log_dir)["train"].variables
    return {path: variables[path].cause.tolist() for path in paths}


def term_weights_fit(log_dir):
    """`causes_left_to_the_tracker` of `TermWeights`' two weights."""
    return causes_left_to_the_tracker(log_dir, TermWeights(), ("loss/TermWeights/penalty", "loss/TermWeights/bonus"))


class ProjectedTerm(keras.losses.Loss):
    """An MSE plus a term weighted by a learned weight, the term reading a second learned variable
    (a sliced-Wasserstein term's projections): the objective is linear in the weight alone, but
    not in the two together."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weight = keras.Variable(0.5, name="weight")
        self.projections = keras.Variable([[0.3], [-1.2], [0.8]], name="projections")

    def call(self, y_true, y_pred):
        projected = ops.matmul(y_pred, ops.transpose(self.projections))
        return ops.mean(ops.square(y_true - y_pred), axis=-1) + self.weight * ops.mean(ops.square(projected), axis=-1)


def projected_term_fit(log_dir):
    """`causes_left_to_the_tracker` of `ProjectedTerm`'s two variables."""
    paths = ("loss/ProjectedTerm/weight", "loss/ProjectedTerm/projections")
    return causes_left_to_the_tracker(log_dir, ProjectedTerm(), paths)


def overflowing_fit(log_dir, attach=True):
    """Three epochs of five steps under mixed_float16, targets near 1,000: the loss-scaled gradients
    overflow in every step of the first two epochs, which the optimizer skips. Returns the
    log-variance's statuses and the `[captured, skipped]` steps of each epoch."""
    from loss_param_tracker import LossParamTracker, load, make_trainable

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (1000.0 * (x @ np.float32([1, -2, 0.5, 3]) + 0.3 * rng.normal(size=512))).astype("float32")[:, None]
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=GaussianNLL())
        if attach:
            make_trainable(model)
        callbacks = [LossParamTracker(log_dir)]
        model.fit(x, y, steps_per_epoch=5, epochs=3, batch_size=32, verbose=0, callbacks=callbacks)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    run = load(log_dir)["train"]
    return run.variables["loss/GaussianNLL/log_var"].status.tolist(), run.step_counts[1].tolist()


def skipped_epochs_said_nothing(statuses, steps, expected):
    """Whether `overflowing_fit`'s epochs whose 5 steps were all skipped have no status and the
    others `expected`, with at least one of each (the loss scale's course differs between Keras
    versions: the first epoch all skipped, the next ones partly or not at all)."""
    skipped = [captured == 0 and count == 5 for captured, count in steps]
    return (
        skipped[0] and not skipped[-1]
        and statuses == ["" if all_skipped else expected for all_skipped in skipped]
    )


class DualWeight(keras.losses.Loss):
    """An MSE weighted by a learned log-scale (uncertainty weighting's: the objective curves up in
    it), plus a min-max term as AUC-M's, `dual * spread - dual**2`: the objective curves down in its
    dual variable, which the method maximises."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dual = keras.Variable(0.5, name="dual")
        self.log_scale = keras.Variable(0.0, name="log_scale")

    def call(self, y_true, y_pred):
        error = ops.mean(ops.square(y_true - y_pred), axis=-1)
        spread = ops.mean(ops.log1p(ops.square(y_pred)), axis=-1)
        return ops.exp(-self.log_scale) * error + self.log_scale + self.dual * spread - ops.square(self.dual)


def dual_weight_fit(log_dir):
    """`causes_left_to_the_tracker` of `DualWeight`'s two variables."""
    return causes_left_to_the_tracker(log_dir, DualWeight(), ("loss/DualWeight/dual", "loss/DualWeight/log_scale"))


class ProxyAnchor(keras.losses.Loss):
    """Proxy-Anchor's loss (Kim et al. 2020), reduced from tjddus9597/Proxy-Anchor-CVPR2020,
    code/losses.py (`Proxy_Anchor`: one learned proxy a class, cosine similarities of the
    normalised embeddings and proxies, margin 0.1, scale 32). The loss reads the proxies through
    their norm: scale-invariant, its Hessian in them indefinite, and descent trains them."""

    def __init__(self, classes=4, size=8, seed=0, **kwargs):
        super().__init__(**kwargs)
        rng = np.random.default_rng(seed)
        proxies = rng.normal(size=(classes, size)) * np.sqrt(2.0 / classes)  # kaiming_normal, fan_out
        self.proxies = keras.Variable(proxies.astype("float32"), name="proxies")
        self.classes = classes

    def call(self, y_true, y_pred):
        def normalised(v):
            return v / ops.sqrt(ops.sum(ops.square(v), axis=-1, keepdims=True) + 1e-12)

        cos = ops.matmul(normalised(y_pred), ops.transpose(normalised(self.proxies)))
        positive = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), self.classes)
        pulled = ops.sum(positive * ops.exp(-32.0 * (cos - 0.1)), axis=0)
        pushed = ops.sum((1.0 - positive) * ops.exp(32.0 * (cos + 0.1)), axis=0)
        present = ops.sum(ops.cast(ops.sum(positive, axis=0) > 0, "float32"))
        return ops.sum(ops.log1p(pulled)) / present + ops.sum(ops.log1p(pushed)) / self.classes


def proxy_anchor_fit(log_dir):
    """Two epochs of `ProxyAnchor` on 4 clustered classes, an embedding net of 8 outputs, its
    proxies left to the tracker: their causes. Along the probe's one direction the objective
    curved down in them at every step of epoch 0 (d . Hd < 0), which read as `concave`."""
    from loss_param_tracker import LossParamTracker, load

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 6)) * 2.0
    labels = rng.integers(0, 4, size=512)
    x = (centers[labels] + rng.normal(size=(512, 6))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8)])
    init = np.random.default_rng(1000)
    model.set_weights([
        (init.normal(size=w.shape) * np.sqrt(2.0 / sum(w.shape)) if w.ndim == 2 else np.zeros(w.shape)).astype("float32")
        for w in model.get_weights()
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=ProxyAnchor())
    model.fit(
        x, labels.astype("float32"), epochs=2, batch_size=64, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir)]
    )
    return load(log_dir)["train"].variables["loss/ProxyAnchor/proxies"].cause.tolist()


class KinkedConcave(keras.losses.Loss):
    """`mse * (1 - w^2) + 0.01 |w - b|^1.5`, with `b` 1 on a batch whose targets average above 0 and
    0 on the others: concave in `w` (= 1), falling without end as `|w|` grows, except that at
    the kink (`b` = 1) its second derivative is infinite and the probe's product NaN."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.w = keras.Variable(1.0, name="w")

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred))
        kink = ops.cast(ops.mean(y_true) > 0, "float32")
        return mse * (1.0 - ops.square(self.w)) + 0.01 * ops.power(ops.abs(self.w - kink), 1.5)


def kinked_concave_fit(log_dir):
    """Two epochs of `KinkedConcave`, `w` left to the tracker, the first of each epoch's 4 probed
    steps at the kink: `w`'s causes. The NaN product of that step was folded into the probe's
    maxima on TensorFlow and JAX, and every later step's curvature read NaN: `not_in_optimizer`."""
    from loss_param_tracker import LossParamTracker, load

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (x @ np.float32([1, -2, 0.5, 3]))[:, None].astype("float32")
    y[:64], y[64:256] = np.abs(y[:64]), -np.abs(y[64:256])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    init = np.random.default_rng(1)
    model.set_weights([(init.normal(size=w.shape) * 0.3).astype("float32") for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss=KinkedConcave())
    model.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir)])
    return load(log_dir)["train"].variables["loss/KinkedConcave/w"].cause.tolist()


class AdaptiveTaskWeight(keras.losses.Loss):
    """An adaptive task weight from public multi-task code: `lam * mse + log(lam)`, `lam = x^2 + 1e-8`.

    In `x` (= 1) the objective curves up while the task's mse is above 1
    and down once the model brings it under (its second derivative is
    `2 mse - 2`). Descent on `x` has no minimum: it drives `x` to 0, the
    loss below zero (to `log(1e-8)`), and the task's weight with it.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.x = keras.Variable(1.0, name="x")

    def call(self, y_true, y_pred):
        weight = ops.square(self.x) + 1e-8
        return weight * ops.mean(ops.square(y_true - y_pred), axis=-1) + ops.log(weight)


def adaptive_task_weight_fit(log_dir, trained=False, epochs=4, restart_every=None):
    """`epochs` (4) of `AdaptiveTaskWeight` on a linear task whose mse starts near 15 and falls under
    1 in epoch 2: `x`'s causes, the model's mse after the fit, and the fit's last loss.

    `trained`: `make_trainable` first (what `not_in_optimizer`'s fix says).
    `restart_every`: every that many epochs, a callback before the tracker
    sets the model's weights back to their initial values (a warm restart):
    the task's mse is near 15 again.
    """
    from loss_param_tracker import LossParamTracker, load, make_trainable

    class Restart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.initial = self.model.get_weights()

        def on_epoch_begin(self, epoch, logs=None):
            if restart_every and epoch and epoch % restart_every == 0:
                self.model.set_weights(self.initial)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 4)).astype("float32")
    y = (x @ np.float32([1, -2, 0.5, 3]) + 0.1 * rng.normal(size=1024))[:, None].astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=AdaptiveTaskWeight())
    if trained:
        make_trainable(model)
    history = model.fit(
        x, y, epochs=epochs, batch_size=32, shuffle=False, verbose=0, callbacks=[Restart(), LossParamTracker(log_dir)]
    )
    mse = float(np.mean(np.square(model.predict(x, verbose=0) - y)))
    causes = load(log_dir)["train"].variables["loss/AdaptiveTaskWeight/x"].cause.tolist()
    return {"causes": causes, "mse": mse, "loss": history.history["loss"][-1]}


class LogVariance(keras.losses.Loss):
    """MSE plus log(v): descent drives v through zero, where the log is NaN.

    With `learn_log`, the same loss in the form the fix names: v = exp(s).
    """

    def __init__(self, learn_log=False, **kwargs):
        super().__init__(**kwargs)
        self.learn_log = learn_log
        self.v = keras.Variable(0.0 if learn_log else 1.0, name="v")

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
        if self.learn_log:
            return mse / ops.exp(self.v) + self.v
        return mse + ops.log(self.v)


def log_variance_fit(log_dir, learn_log=False):
    """Four epochs of `LogVariance` after `make_trainable`: each epoch's loss, and v's statuses and causes."""
    from loss_param_tracker import LossParamTracker, load, make_trainable

    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=LogVariance(learn_log))
    make_trainable(model)
    history = model.fit(*make_data(), epochs=4, batch_size=16, verbose=0, callbacks=[LossParamTracker(log_dir)])
    v = load(log_dir)["train"].variables["loss/LogVariance/v"]
    return {"loss": history.history["loss"], "status": v.status.tolist(), "cause": v.cause.tolist()}


class AtLeast(keras.constraints.Constraint):
    def __init__(self, bound):
        self.bound = bound

    def __call__(self, w):
        return ops.maximum(w, self.bound)


def constrained_fit(log_dir, raw=False):
    """Five epochs of `mse + c**2` after `make_trainable`, `c` from 2 held at >= 0.5 by its constraint:
    `c` at each epoch's end, and its statuses and causes.

    `raw`: `c` is a `tf.Variable(constraint=...)` (TensorFlow), which `make_trainable` wraps.
    """
    from loss_param_tracker import LossParamTracker, load, make_trainable

    if raw:
        import tensorflow as tf

        c = tf.Variable(2.0, name="c", constraint=lambda value: tf.clip_by_value(value, 0.5, np.inf))
    else:
        c = keras.Variable(2.0, name="c")
        c.constraint = AtLeast(0.5)

    def loss(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred)) + ops.square(c)

    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=loss)
    (attached,) = make_trainable(model)
    seen = []
    values = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(float(attached.numpy())))
    model.fit(*make_data(), epochs=5, batch_size=32, verbose=0, callbacks=[values, LossParamTracker(log_dir)])
    variable = load(log_dir)["train"].variables["loss/loss/c"]
    return {"c": seen, "status": variable.status.tolist(), "cause": variable.cause.tolist()}


def deprecations(logs, loss=None):
    """The DeprecationWarnings of a plain fit and of the same fit tracked: `{variant: ["where: message"]}`.

    `loss` makes the fit's loss (`GaussianNLL` by default).
    """
    from loss_param_tracker import LossParamTracker

    found = {}
    for variant in ("plain", "tracked"):
        model = make_model()
        model.compile(optimizer="adam", loss=(loss or GaussianNLL)())
        callbacks = [LossParamTracker(f"{logs}/deprecations")] if variant == "tracked" else []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(*make_data(), epochs=2, batch_size=64, verbose=0, callbacks=callbacks)
        found[variant] = [
            f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, DeprecationWarning)
        ]
    return found


class WarmedUpNLL(keras.losses.Loss):
    """A mean squared error, and an uncertainty-weighting term in `log_var` (convex in it) switched on
    after the first 4 calls: a warm-up, in whose steps its gradient is zero."""

    def __init__(self, warm_up=4, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")
        self.calls = keras.Variable(0, dtype="int32", trainable=False, name="calls")
        self.warm_up = warm_up

    def call(self, y_true, y_pred):
        self.calls.assign_add(1)
        squared = ops.square(y_true - y_pred)
        weighted = 0.5 * ops.exp(-self.log_var) * squared + 0.5 * self.log_var
        return ops.mean(squared + ops.where(self.calls > self.warm_up, weighted, 0.0), axis=-1)


def warmed_up_fit(log_dir):
    """Two epochs of 8 steps of `WarmedUpNLL` left to the tracker (TensorFlow): the causes of `log_var`."""
    from loss_param_tracker import LossParamTracker, load

    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=WarmedUpNLL())
    model.fit(*make_data(), epochs=2, batch_size=32, verbose=0, callbacks=[LossParamTracker(log_dir)])
    return load(log_dir)["train"].variables["loss/WarmedUpNLL/log_var"].cause.tolist()


class StepCounter(keras.layers.Layer):
    """Counts the training steps in an int32 weight of the model, as a warm-up schedule keeps them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.count = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False, name="count")

    def call(self, x, training=False):
        if training:
            self.count.assign_add(1)
        return x


class CountedWarmUpNLL(keras.losses.Loss):
    """Weights its error by a learned log-variance once the model's step count passes `warm_up`."""

    def __init__(self, count, warm_up, **kwargs):
        super().__init__(**kwargs)
        self.count, self.warm_up = count, warm_up
        self.log_var = keras.Variable(0.0, name="log_var")

    def call(self, y_true, y_pred):
        squared = ops.mean(ops.square(y_true - y_pred), axis=-1)
        weighted = 0.5 * ops.exp(-self.log_var) * squared + 0.5 * self.log_var
        return ops.where(self.count > self.warm_up, weighted, 0.5 * squared)


def counted_warm_up_fit(log_dir):
    """Two epochs of 8 steps, the term on from the 8th step (the model's counter advanced by its forward
    pass): the logged statuses and gradient norms of `log_var`."""
    from loss_param_tracker import LossParamTracker, load

    keras.utils.set_random_seed(0)
    counter = StepCounter()
    model = keras.Sequential([keras.Input((4,)), counter, keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CountedWarmUpNLL(counter.count, warm_up=7))
    model.fit(*make_data(), epochs=2, batch_size=32, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir)])
    variable = load(log_dir)["train"].variables["loss/CountedWarmUpNLL/log_var"]
    return {"status": variable.status.tolist(), "grad_norm": variable.grad_norm.tolist()}


class AssignedWeight(keras.losses.Loss):
    """An MSE times a weight that a callback sets at each epoch's start (an annealing schedule)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weight = keras.Variable(1.0, name="weight", trainable=False)

    def call(self, y_true, y_pred):
        return self.weight * ops.mean(ops.square(y_true - y_pred), axis=-1)


class _Schedule(keras.callbacks.Callback):
    def __init__(self, variable, values):
        super().__init__()
        self.variable, self.values = variable, values

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(self.values[epoch])


def assigned_weight_fit(log_dir, in_state, schedule=(1.0, 0.0, 2.0)):
    """Three epochs of `AssignedWeight` set to `schedule`'s values; `in_state`: the weight assigned to
    the model first. The losses per epoch and the weight's logged statuses and causes."""
    from loss_param_tracker import LossParamTracker, load

    keras.utils.set_random_seed(0)
    loss = AssignedWeight()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    if in_state:  # what the fix says: the compiled step then reads it at every step
        model.loss_weight = loss.weight
    callbacks = [LossParamTracker(log_dir), _Schedule(loss.weight, schedule)]
    history = model.fit(*make_data(), epochs=3, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)
    variable = load(log_dir)["train"].variables["loss/AssignedWeight/weight"]
    return {"loss": history.history["loss"], "status": variable.status.tolist(), "cause": variable.cause.tolist()}


class LazyNLL(keras.layers.Layer):
    """A layer used as the loss, or in one, that builds its log-variance on its first call."""

    def build(self, *shapes):
        self.log_var = self.add_weight(shape=(), initializer="zeros", name="log_var")

    def call(self, y_true, y_pred):
        squared = keras.ops.square(y_true - y_pred)
        return keras.ops.mean(0.5 * keras.ops.exp(-self.log_var) * squared + 0.5 * self.log_var, axis=-1)


class DroppedTerm(keras.losses.Loss):
    """A mean squared error plus `(s - 1)^2` while `active`: a term that a callback drops after epoch 0."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.s = keras.Variable(0.0, name="s")
        self.active = True

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred))
        return mse + ops.square(self.s - 1.0) if self.active else mse


class _DropAfterFirstEpoch(keras.callbacks.Callback):
    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def on_epoch_begin(self, epoch, logs=None):
        self.loss.active = epoch == 0


def dropped_term_fit(log_dir, **compile_kwargs):
    """Three epochs of an eager step (PyTorch, or `run_eagerly=True`) whose loss reads `s` in epoch 0's
    steps only: its statuses. Epoch 1 counted epoch 0's last step's gradient as its own."""
    from loss_param_tracker import LossParamTracker, load

    loss = DroppedTerm()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, **compile_kwargs)
    callbacks = [_DropAfterFirstEpoch(loss), LossParamTracker(log_dir)]
    model.fit(*make_data(), epochs=3, batch_size=64, shuffle=False, verbose=0, callbacks=callbacks)
    return load(log_dir)["train"].variables["loss/DroppedTerm/s"].status.tolist()


class Unread(keras.losses.Loss):
    """A mean squared error that holds a variable its `call` never reads; `penalized_fit`'s layer does."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.s = keras.Variable(0.0, name="s")

    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)


class _Penalty(keras.layers.Layer):
    """Adds `(s - 1)^2` with `add_loss`; holds `s` in a closure, so that it is not the layer's weight."""

    def __init__(self, read, **kwargs):
        super().__init__(**kwargs)
        self._read = read

    def call(self, x):
        self.add_loss(ops.square(self._read() - 1.0))
        return x


def penalized_fit(log_dir):
    """A loss variable read only in an `add_loss` term of the model: one full-batch step, learning
    rate 0. Returns its cause and logged gradient norm; the true norm is |2 (s - 1)| = 2 at s = 0."""
    from loss_param_tracker import LossParamTracker, load

    loss = Unread()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(_Penalty(lambda: loss.s)(inputs)), name="penalized")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    x, y = make_data(n=32)
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logging.getLogger("loss_param_tracker").addHandler(handler)
    try:
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[LossParamTracker(log_dir)])
    finally:
        logging.getLogger("loss_param_tracker").removeHandler(handler)
    variable = load(log_dir)["train"].variables["loss/Unread/s"]
    incomplete = [m for m in said if "gradients are incomplete" in m]
    return {"cause": str(variable.cause[0]), "grad_norm": float(variable.grad_norm[0, 0]), "incomplete": incomplete}


class GatheredCenters(keras.losses.Loss):
    """Pulls each prediction to its label's centre: `take(centers, labels)` reads a row per sample.

    The labels are `y_true`'s first column. On TensorFlow the gradient of a
    gathered variable is slices, a row for each read; elsewhere it is dense.
    """

    def __init__(self, rows, **kwargs):
        super().__init__(**kwargs)
        self.centers = keras.Variable(np.linspace(-1.0, 1.0, rows, dtype="float32"), name="centers")

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true[:, 0], "int32")
        return ops.mean(ops.square(y_pred[:, 0] - ops.take(self.centers, labels)))


def gathered_fit(log_dir):
    """One full-batch step of an `Embedding` into `GatheredCenters`, each row read several times.

    Returns the gradient norms logged of the embedding and of the centres,
    the norms of their dense gradients (the optimizer's: each row's reads
    summed) computed here, and the diagnosis. A learning rate of 0: the
    gradients are those at the initial values.
    """
    from loss_param_tracker import LossParamTracker, load

    n, rows = 16, 5
    index, labels = np.arange(n) % 3, np.arange(n) % 4  # rows 0 to 3 read 4 to 6 times each
    table = np.linspace(0.5, -0.5, rows)
    model = keras.Sequential(
        [keras.Input((1,), dtype="int32"), keras.layers.Embedding(rows, 1, name="embedding"), keras.layers.Flatten()],
        name="gathered",
    )
    model.get_layer("embedding").embeddings.assign(table.reshape(rows, 1).astype("float32"))
    loss = GatheredCenters(rows)
    centers = np.asarray(loss.centers.numpy(), np.float64)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    tracker = LossParamTracker(log_dir)
    x, y = index.reshape(n, 1).astype("int32"), labels.reshape(n, 1).astype("float32")
    model.fit(x, y, epochs=1, batch_size=n, verbose=0, callbacks=[tracker])
    residual = table[index] - centers[labels]
    embedding_grad, centers_grad = np.zeros(rows), np.zeros(rows)
    np.add.at(embedding_grad, index, 2.0 * residual / n)
    np.add.at(centers_grad, labels, -2.0 * residual / n)
    run = load(log_dir)["train"]
    return {
        "logged": [
            float(run.variables["model/gathered/embedding/embeddings"].norms[0, 1]),
            float(run.variables["loss/GatheredCenters/centers"].grad_norm[0, 0]),
        ],
        "expected": [float(np.linalg.norm(embedding_grad)), float(np.linalg.norm(centers_grad))],
        "diagnosis": tracker.diagnosis,
    }


@ops.custom_gradient
def reverse_gradient(x):
    """The identity, whose gradient is minus the upstream one (a gradient reversal layer)."""

    def grad(*args, upstream=None):
        return -(args[0] if upstream is None else upstream)

    return ops.multiply(x, 1.0), grad


class ReversedTemperature(keras.losses.Loss):
    """Curriculum temperature distillation (CTKD, from public code): cross-entropy plus a distillation
    term at temperature `T`, which the loss reads through a gradient reversal, so that descent on `T`
    ascends the distillation term (the teacher's logits are `y_true[:, :5]`, the labels the rest).

    At first the loss curves down in `T`, so the reversed objective that descent follows curves up;
    once the model has trained at `T = 1` it is the other way round (JAX's product, the derivative
    of the reversed gradient, read `concave` from epoch 2). Handed to the optimizer, `T` rises and
    settles.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.temperature = keras.Variable(1.0, name="temperature")

    def call(self, y_true, y_pred):
        teacher, labels = y_true[:, :5], y_true[:, 5:]
        temperature = reverse_gradient(self.temperature.value)  # the tensor: Keras's torch backend drops a variable
        soft = ops.softmax(teacher / temperature)
        distilled = ops.sum(soft * (ops.log(soft + 1e-8) - ops.log_softmax(y_pred / temperature)), axis=-1)
        cross_entropy = keras.losses.categorical_crossentropy(labels, y_pred, from_logits=True)
        return 0.5 * cross_entropy + 0.5 * distilled * ops.square(temperature)


def reversed_temperature_fit(log_dir, trained=False, epochs=6, run_eagerly=False):
    """`ReversedTemperature` on a 5-class task a linear teacher labels: `T`'s causes, its value after
    each epoch, and the model's accuracy.

    `trained`: `make_trainable` first.
    """
    from loss_param_tracker import LossParamTracker, load, make_trainable

    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 10)).astype("float32")
    teacher = x @ rng.normal(size=(10, 5)).astype("float32")
    labels = teacher.argmax(axis=1)
    y = np.concatenate([teacher, np.eye(5)[labels]], axis=1).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5)])
    loss = ReversedTemperature()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, run_eagerly=run_eagerly)
    if trained:
        make_trainable(model)
    values = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: values.append(float(ops.convert_to_numpy(loss.temperature)))
    )
    model.fit(x, y, epochs=epochs, batch_size=32, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir), record])
    accuracy = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == labels))
    causes = load(log_dir)["train"].variables["loss/ReversedTemperature/temperature"].cause.tolist()
    return {"causes": causes, "values": values, "accuracy": accuracy}


class LossParameters:
    """An object of the user's own class, as a multi-task model keeps its weighting in: Keras
    tracks no variable in it. Its log-variance, and copies of the model's weights (an average
    a callback would keep, created trainable as `keras.Variable`s are by default) that no step reads."""

    def __init__(self, weights=()):
        self.log_var = keras.Variable(0.0, name="log_var")
        self.copies = [keras.Variable(ops.convert_to_numpy(w), name="average") for w in weights]


class HeldOnTheModel(keras.Model):
    """A regression model that keeps its loss's parameter out of Keras's tracking, read where
    `where` says: `"loss"`, a `GaussianNLL` on the model that its `compute_loss` calls; `"forward"`,
    a `LossParameters`' log-variance that scales the output in `call` (the compiled loss
    is the mean squared error)."""

    def __init__(self, where):
        super().__init__(name="held")
        self.where = where
        self.dense = keras.layers.Dense(1, name="dense")
        self.dense.build((None, 4))
        if where == "loss":
            self.criterion = GaussianNLL()
        else:
            self.weighting = LossParameters(self.dense.weights)

    def call(self, x):
        y = self.dense(x)
        return y if self.where == "loss" else y * ops.exp(self.weighting.log_var)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.where == "loss":
            return self.criterion(y, y_pred)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)


def held_on_the_model_fit(log_dir, where, trained=False):
    """`HeldOnTheModel(where)` on `make_data` for 3 epochs, before or after `make_trainable`
    (`trained`): `{path: (statuses, causes)}` of its variables found on the model, the
    log-variance's value, the tracker's warnings and what it logged."""
    from loss_param_tracker import LossParamTracker, load, make_trainable

    x, y = make_data()
    keras.utils.set_random_seed(0)
    model = HeldOnTheModel(where)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=None if where == "loss" else "mse")
    attached = [v.name for v in make_trainable(model)] if trained else []
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("loss_param_tracker").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[LossParamTracker(log_dir)])
    finally:
        logging.getLogger("loss_param_tracker").removeHandler(handler)
    held = model.criterion if where == "loss" else model.weighting
    variables = load(log_dir)["train"].variables
    return {
        "found": {
            p: (v.status.tolist(), v.cause.tolist()) for p, v in variables.items()
            if p.startswith("model/held/criterion") or p.startswith("model/held/weighting")
        },
        "attached": attached,
        "log_var": float(ops.convert_to_numpy(held.log_var)),
        "warnings": [str(w.message) for w in said if "LossParam" in type(w.message).__name__],
        "logged": logged,
    }


class RunningNormalizedNLL(keras.losses.Loss):
    """A Gaussian NLL of the squared error divided by its running mean, warmed up over 50 steps (the
    running loss normaliser of public code, which updates its own statistic): the loss assigns its
    running mean and its step counter itself, and learns a log-variance."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.running_mean = keras.Variable(1.0, name="running_mean")
        self.step = keras.Variable(0.0, name="step")
        self.log_var = keras.Variable(0.0, name="log_var")

    def call(self, y_true, y_pred):
        error = ops.mean(ops.square(y_true - y_pred))
        warm_up = ops.minimum(self.step / 50.0, 1.0)
        normalized = warm_up * error / (ops.stop_gradient(self.running_mean) + 1e-3)
        self.running_mean.assign(0.9 * self.running_mean + 0.1 * ops.stop_gradient(error))
        self.step.assign_add(1.0)
        return 0.5 * ops.exp(-self.log_var) * normalized + 0.5 * self.log_var


def running_normalized_fit(log_dir, on_the_model=False):
    """`RunningNormalizedNLL` on `make_model` for 3 epochs of 8 steps: `{path: causes}` of its
    variables, the step counter's value after the fit, and the tracker's warnings.

    `on_the_model`: its running mean and counter made non-trainable variables of the model
    before fit, as the JAX warning advises.
    """
    from loss_param_tracker import LossParamTracker, load

    x, y = make_data()
    model = make_model()
    loss = RunningNormalizedNLL()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    if on_the_model:
        loss.running_mean.trainable = loss.step.trainable = False
        model.running_mean, model.loss_step = loss.running_mean, loss.step
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[LossParamTracker(log_dir)])
    variables = load(log_dir)["train"].variables
    return {
        "statuses": {p: v.status.tolist() for p, v in variables.items() if p.startswith("loss/")},
        "causes": {p: v.cause.tolist() for p, v in variables.items() if p.startswith("loss/")},
        "step": float(ops.convert_to_numpy(loss.step)),
        "warnings": [str(w.message) for w in said if "LossParam" in type(w.message).__name__],
    }


class LearnedSmoothingCE(keras.losses.Loss):
    """Cross-entropy against labels smoothed by a learned epsilon (as public meta-calibration code
    learns it, there by a meta-optimizer and clamped to [0, 0.5]): the loss is linear in epsilon,
    and descent on it has no minimum. Handed to the model's optimizer, it falls through 0 and the
    loss with it, without end."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = keras.Variable(0.1, name="epsilon")

    def call(self, y_true, logits):
        classes = ops.shape(logits)[-1]
        targets = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes)
        smoothed = (1 - self.epsilon) * targets + self.epsilon / classes
        return -ops.sum(smoothed * ops.log_softmax(logits), axis=-1)


class EntropyBonusCE(keras.losses.Loss):
    """Cross-entropy less a learned weight times the predictions' entropy (an entropy bonus): linear
    in the weight, whose gradient is never positive: descent raises it without end."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bonus = keras.Variable(0.05, name="bonus")

    def call(self, y_true, logits):
        log_p = ops.log_softmax(logits)
        targets = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), ops.shape(logits)[-1])
        entropy = -ops.sum(ops.exp(log_p) * log_p, axis=-1)
        return -ops.sum(targets * log_p, axis=-1) - self.bonus * entropy


def learned_smoothing_fit(log_dir, trained=False, tracked=True, epochs=6, loss_class=None, **compile_kwargs):
    """`LearnedSmoothingCE` (or `loss_class`) on a 4-class task for `epochs`, before or after
    `make_trainable` (`trained`), with or without the tracker (`tracked`), compiled with
    `compile_kwargs` too: its variable's statuses and causes, its value and the loss after each epoch,
    and the tracker's warnings."""
    from loss_param_tracker import LossParamTracker, load, make_trainable

    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 8)).astype("float32")
    y = np.argmax(x[:, :4] + 0.5 * rng.normal(size=(320, 4)), axis=-1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
    loss = (loss_class or LearnedSmoothingCE)()
    (variable,) = [v for v in vars(loss).values() if isinstance(v, keras.Variable)]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, **compile_kwargs)
    if trained:
        make_trainable(model)
    values = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: values.append(float(ops.convert_to_numpy(variable)))
    )
    callbacks = [LossParamTracker(log_dir), record] if tracked else [record]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)
    result = {
        "values": values,
        "losses": history.history["loss"],
        "warnings": [str(w.message) for w in said if "LossParam" in type(w.message).__name__],
    }
    if tracked:
        logged = load(log_dir)["train"].variables[f"loss/{type(loss).__name__}/{variable.name}"]
        result.update(statuses=logged.status.tolist(), causes=logged.cause.tolist())
    return result


def assert_no_minimum_said(left, trained, untracked, tolerance=1e-6):
    """What `learned_smoothing_fit` shows on every backend, left to the tracker, trained, and trained
    without the tracker: the probe's check of the fix says what descent did, and changes nothing
    (within `tolerance` of epsilon and the loss)."""
    # Linear in it: left to the tracker, no make_trainable advice (`unbounded` where the gradient never
    # pointed down at the probe's steps: the oldest JAX's first steps).
    assert left["values"] == [np.float32(0.1)] * 6, left
    assert len(set(left["causes"])) == 1 and left["causes"][0] in ("linear", "unbounded"), left["causes"]
    # The truth: handed to the optimizer, epsilon falls through 0 and the loss below it, each epoch.
    values, losses = trained["values"], trained["losses"]
    assert all(b < a for a, b in zip(values[1:], values[2:])) and values[-1] < -0.2, values
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0, losses
    # Its gradient had one sign in each epoch's probed steps from epoch 1 on; in epoch 0 too, where it
    # rose, in TensorFlow's and JAX's. PyTorch's first steps follow another path, where it took both
    # signs: that epoch asks one more of one sign before `no_minimum` (as a hinge's kink does).
    statuses = trained["statuses"]
    assert statuses[2:] == ["no_minimum"] * 4, statuses
    assert statuses[:2] in (["no_minimum"] * 2, ["training"] * 2), statuses
    (said,) = trained["warnings"]
    assert "[no_minimum]" in said and "take it out of the optimizer" in said, said
    difference = np.max(np.abs(np.subtract([*untracked["values"], *untracked["losses"]], [*values, *losses])))
    assert difference <= tolerance, (difference, untracked, trained)


class FlaggedNLL(keras.losses.Loss):
    """The mean squared error, weighted by a learned log-variance once a callback sets a Python flag (a
    warm-up as public code switches a term on): TensorFlow and JAX trace the step with the flag as it
    was, so the compiled step never reads `log_var`; PyTorch runs the loss's Python every step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")
        self.weighted = False

    def call(self, y_true, y_pred):
        squared = ops.mean(ops.square(y_true - y_pred), axis=-1)
        if self.weighted:
            return 0.5 * ops.exp(-self.log_var) * squared + 0.5 * self.log_var
        return squared


def flagged_fit(log_dir, trained=False):
    """`FlaggedNLL` on `make_model` for 4 epochs, its flag set at epoch 2's start, before or after
    `make_trainable`: `log_var`'s causes and statuses, and its value after the fit."""
    from loss_param_tracker import LossParamTracker, load, make_trainable

    model = make_model()
    loss = FlaggedNLL()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    if trained:
        make_trainable(model)
    switch = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: setattr(loss, "weighted", epoch >= 2))
    model.fit(*make_data(), epochs=4, batch_size=32, verbose=0, callbacks=[switch, LossParamTracker(log_dir)])
    logged = load(log_dir)["train"].variables["loss/FlaggedNLL/log_var"]
    return {
        "statuses": logged.status.tolist(),
        "causes": logged.cause.tolist(),
        "log_var": float(ops.convert_to_numpy(loss.log_var)),
    }


def twin_nll_fit(log_dir, names=None):
    """A two-output model, each output under its own `GaussianNLL` (both variables named `log_var`, or
    `names`), fixed by `make_trainable`: 3 epochs of SGD. Returns the two log-variances, their paths and
    statuses. On PyTorch, Keras keys a model's parameters by `Variable.path`: two that share one left the
    first's gradient uncleared, adding up step after step; `keys` or a `.` failed the fit."""
    from loss_param_tracker import LossParamTracker, load, make_trainable

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(1, name="a")(hidden), keras.layers.Dense(1, name="b")(hidden)])
    losses = [GaussianNLL(name="first"), GaussianNLL(name="second")]
    for loss, name in zip(losses, names or ()):
        loss.log_var = keras.Variable(0.0, name=name)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=losses)
    make_trainable(model)
    x, y = make_data()
    model.fit(
        x, [y, 3 * y], epochs=3, batch_size=32, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir)]
    )
    run = load(log_dir)["train"]
    # Saved and loaded, the loss's variables are attached again: another epoch trains them as well.
    model.save(os.path.join(log_dir, "twin.keras"))
    loaded = keras.models.load_model(os.path.join(log_dir, "twin.keras"), custom_objects={"GaussianNLL": GaussianNLL})
    loaded.fit(x, [y, 3 * y], epochs=1, batch_size=32, shuffle=False, verbose=0)
    return {
        "values": [float(keras.ops.convert_to_numpy(loss.log_var.value)) for loss in losses],
        "loaded": [float(keras.ops.convert_to_numpy(loss.log_var.value)) for loss in loaded.loss],
        "paths": [loss.log_var.path for loss in losses],
        "statuses": {path: v.status.tolist() for path, v in run.variables.items() if path.startswith("loss/")},
    }


class TwoLogVariances(keras.Model):
    """Uncertainty weighting of two outputs on a Model subclass, its log-variances made by `add_weight`
    under `names`: two of one name share a `Variable.path`."""

    def __init__(self, names, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)
        self.s = [self.add_weight(shape=(), initializer="zeros", name=name) for name in names]

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        errors = ops.mean(ops.square(y - y_pred), axis=0)
        return sum(ops.exp(-s) * errors[i] + s for i, s in enumerate(self.s))


def two_log_variances_fit(log_dir, names):
    """3 epochs of SGD of `TwoLogVariances`: returns the tracker's warnings and the log-variances."""
    from loss_param_tracker import LossParamTracker, LossParamWarning

    keras.utils.set_random_seed(0)
    model = TwoLogVariances(names)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    x, y = make_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.concatenate([y, 3 * y], axis=1), epochs=3, batch_size=32, shuffle=False, verbose=0,
                  callbacks=[LossParamTracker(log_dir)])
    return {
        "warnings": [str(w.message) for w in caught if w.category is LossParamWarning],
        "values": [float(ops.convert_to_numpy(s.value)) for s in model.s],
    }


class CVaR(keras.losses.Loss):
    """Conditional value-at-risk of the squared error at level `alpha`: `var + relu(e - var) / alpha`,
    with the value-at-risk `var` learned (Rockafellar and Uryasev; public CVaR code learns it with the
    model). Linear in `var` between kinks; its minimum is the (1 - alpha) quantile of the errors."""

    def __init__(self, alpha=0.1, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.var = keras.Variable(1.0, name="var")

    def call(self, y_true, y_pred):
        errors = ops.mean(ops.square(y_true - y_pred), axis=-1)
        return self.var + ops.relu(errors - self.var) / self.alpha


def cvar_fit(log_dir, epochs=40):
    """40 epochs of Adam on `CVaR`, fixed by `make_trainable`, heavy-tailed noise: the value-at-risk rises
    to the errors' 0.9 quantile and its steps' gradients then take both signs. Returns its statuses,
    its value and the quantile at the end."""
    from loss_param_tracker import LossParamTracker, load, make_trainable

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 1.5], "float32") + 0.8 * rng.standard_t(3, 512).astype("float32"))[:, None]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    loss = CVaR()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    make_trainable(model)
    model.fit(x, y, epochs=epochs, batch_size=64, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir)])
    errors = np.mean(np.square(y - ops.convert_to_numpy(model(x))), axis=-1)
    return {
        "statuses": load(log_dir)["train"].variables["loss/CVaR/var"].status.tolist(),
        "var": float(ops.convert_to_numpy(loss.var.value)),
        "quantile": float(np.quantile(errors, 0.9)),
    }


def assert_settles_without_no_minimum_again(cvar):
    """The value-at-risk reads `no_minimum` while it rises (linear, one sign), and once its gradient has
    turned at the quantile, never again: it read so in 3 to 7 of the last 27 epochs, whenever an epoch's
    4 probed steps fell on one side of it, and the advice was to take it out of the optimizer."""
    statuses = cvar["statuses"]
    assert statuses[0] == "no_minimum", statuses
    settled = statuses.index("training")
    assert settled < 25 and set(statuses[settled:]) == {"training"}, statuses
    assert abs(cvar["var"] - cvar["quantile"]) < 0.3 * cvar["quantile"], cvar



def scanned():
    """`scan` on any backend: a fitted Gaussian NLL's log-variance, then a loss that assigns a statistic
    as it runs scanned between two epochs.

    Returns the log-variance's scan (values, losses, lowest, turns_up) with the model's mean squared
    error by numpy (the minimum of `0.5 exp(-s) mse + 0.5 s` is at `s = log mse`), a term weight's
    scan (the objective linear in it), and whether `RunningNormalizedNLL`'s fit of 1 + 1 epochs with
    a scan between them ended bit for bit where the same fit without the scan ends.
    """
    from loss_param_tracker import scan

    x, y = make_data()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=GaussianNLL())
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    found = scan(model, x[:128], y[:128], "loss/GaussianNLL/log_var", np.linspace(-6.0, 2.0, 17))
    mse = float(np.mean(np.square(y[:128] - ops.convert_to_numpy(model(x[:128], training=False)))))

    weights = make_model()
    weights.compile(optimizer="adam", loss=TermWeights())
    term = scan(weights, x, y, "loss/TermWeights/penalty", [-1.0, 0.0, 1.0, 2.0])

    ends = []
    for scanning in (False, True):
        model = make_model()
        loss = RunningNormalizedNLL()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
        if scanning:
            scan(model, x[:64], y[:64], loss.log_var, [-1.0, 0.0, 1.0])
        model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
        ends.append([ops.convert_to_numpy(v) for v in [*model.variables, loss.running_mean, loss.step, loss.log_var]])
    return {
        "values": [float(v) for v in found.values],
        "losses": found.losses.tolist(),
        "lowest": found.lowest,
        "turns_up": found.turns_up,
        "log_mse": math.log(mse),
        "term_lowest": term.lowest,
        "term_turns_up": term.turns_up,
        "identical": all(np.array_equal(a, b) for a, b in zip(*ends)),
        "printed": str(found),
    }


def assert_scanned(result):
    """The log-variance's loss is lowest at the grid point nearest `log mse` and turns up inside the
    range; the term weight's is lowest at the range's end; a scan between epochs changes no training."""
    nearest = int(np.argmin(np.abs(np.array(result["values"]) - result["log_mse"])))
    assert result["turns_up"] and abs(result["lowest"] - nearest) <= 1, result
    assert result["term_lowest"] == 0 and not result["term_turns_up"], result
    assert result["identical"], "a scan between two epochs changed the training"
    assert "<- lowest" in result["printed"] and "a minimum there" in result["printed"], result["printed"]
