"""Real fits on one Keras backend, without TensorFlow: `python tests/backend_fits.py OUT_DIR`.

Keras picks its backend at import, so `tests/test_backends.py` runs this once
per backend (`KERAS_BACKEND=jax|torch`) in a fresh process, and asserts on
what it writes: `OUT_DIR/results.json` and the runs under `OUT_DIR/logs`.
TensorFlow is made unimportable first, as on a machine without it.
"""

import json
import logging
import os
import sys
import warnings

sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError, find_spec gives None
sys.modules["tf_keras"] = None

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from loss_param_tracker import LossParamTracker, LossParamWarning, load, make_trainable  # noqa: E402
from tests.models import (  # noqa: E402
    adaptive_task_weight_fit,
    ClampedWeight,
    GaussianNLL,
    LazyNLL,
    SometimesNLL,
    StoppedGradient,
    assigned_weight_fit,
    constrained_fit,
    counted_warm_up_fit,
    cvar_fit,
    deprecations,
    dropped_term_fit,
    flagged_fit,
    gathered_fit,
    held_on_the_model_fit,
    learned_smoothing_fit,
    kinked_concave_fit,
    log_variance_fit,
    penalized_fit,
    DualWeight,
    dual_weight_fit,
    overflowing_fit,
    projected_term_fit,
    proxy_anchor_fit,
    reversed_temperature_fit,
    running_normalized_fit,
    scanned,
    term_weights_fit,
    twin_nll_fit,
    two_log_variances_fit,
    make_data,
    make_model,
)


class FrozenWeight(keras.losses.Loss):
    """A weight that is not trainable on purpose."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weight = keras.Variable(0.5, name="weight", trainable=False)

    def call(self, y_true, y_pred):
        return self.weight * ops.mean(ops.square(y_true - y_pred))


class NumpyWeight(keras.losses.Loss):
    """Reads its weight through numpy: a constant to the step (and a traced value to JAX's loss head)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.weight = keras.Variable(2.0, name="weight")

    def call(self, y_true, y_pred):
        return float(np.asarray(self.weight)) * ops.mean(ops.square(y_true - y_pred))


def fit(model, loss, log_dir=None, fix=False, epochs=3, batch_size=32, optimizer=None):
    """Compiles and fits; returns `(tracker or None, warnings' texts, history)`."""
    model.compile(optimizer=optimizer or keras.optimizers.Adam(0.01), loss=loss)
    if fix:
        make_trainable(model, loss)
    tracker = LossParamTracker(log_dir) if log_dir else None
    x, y = make_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            x, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0,
            callbacks=[tracker] if tracker else [],
        )
    said = [str(w.message) for w in caught if w.category is LossParamWarning]
    return tracker, said, history.history


def foreign_backward(logs):
    """PyTorch: the logged gradient norm of a loss variable left to the tracker, in a fit alone and
    in one beside a callback that runs `torch.autograd.grad` through the loss at each batch's start
    (writing no `.grad`), with that callback's own norms: `{fit: [mean, max]}`."""
    import torch

    x, y = make_data()
    result = {}
    for probed in (False, True):
        loss = GaussianNLL()
        model = make_model()
        seen = []

        def probe(batch, logs, loss=loss, model=model, seen=seen):
            part = slice(batch * 64, (batch + 1) * 64)
            value = ops.mean(loss(y[part], model(x[part])))
            seen.append(float(torch.autograd.grad(value, [loss.log_var.value])[0].abs()))

        callbacks = [keras.callbacks.LambdaCallback(on_train_batch_begin=probe)] if probed else []
        log_dir = os.path.join(logs, f"foreign_backward_{probed}")
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
        model.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir), *callbacks])
        result["probed" if probed else "alone"] = load(log_dir)["train"].variables["loss/GaussianNLL/log_var"].grad_norm[0].tolist()
        if probed:
            result["callback"] = [float(np.mean(seen)), float(np.max(seen))]
    return result



def hooked_dual(logs):
    """PyTorch: `DualWeight` left to the tracker, its dual variable carrying the user's own tensor hook:
    the gradients that hook saw (one a step, as without the tracker) and the two variables' causes.
    The probe leaves a variable someone else hooked alone: their hook would see its gradients."""
    seen = []
    loss = DualWeight()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    loss.dual.value.register_hook(lambda grad: seen.append(float(grad)))
    log_dir = os.path.join(logs, "hooked_dual")
    model.fit(*make_data(), epochs=2, batch_size=64, shuffle=False, verbose=0, callbacks=[LossParamTracker(log_dir)])
    variables = load(log_dir)["train"].variables
    return {
        "hook_calls": len(seen),
        "causes": {name: variables[f"loss/DualWeight/{name}"].cause.tolist() for name in ("dual", "log_scale")},
    }



class ManyTermWeights(keras.losses.Loss):
    """An MSE plus 12 terms, each weighted by a learned weight the objective is linear in."""

    def __init__(self, count=12, **kwargs):
        super().__init__(**kwargs)
        self.weights_ = [keras.Variable(0.5, name=f"w_{i}") for i in range(count)]

    def call(self, y_true, y_pred):
        error = ops.mean(ops.square(y_true - y_pred), axis=-1)
        terms = [w * ops.mean(ops.log1p(ops.square(y_pred + 0.1 * i)), axis=-1) for i, w in enumerate(self.weights_)]
        return error + sum(terms)


def many_term_weights(logs):
    """PyTorch: `ManyTermWeights` left to the tracker, more variables than its probe takes in a step:
    each weight's causes over two epochs of 4 steps."""
    from tests.models import causes_left_to_the_tracker

    paths = [f"loss/ManyTermWeights/weights_/{i}" for i in range(12)]
    return causes_left_to_the_tracker(os.path.join(logs, "many_term_weights"), ManyTermWeights(), paths)



class DualBesideEmpty(DualWeight):
    """`DualWeight` holding an empty learned variable too (a per-class vector of zero classes)."""

    def __init__(self, **kwargs):
        self.unused = keras.Variable(np.zeros((0,), "float32"), name="unused")  # first: probed before the dual
        super().__init__(**kwargs)

    def call(self, y_true, y_pred):
        return super().call(y_true, y_pred) + ops.sum(self.unused)


def empty_beside_dual(logs):
    """PyTorch: the dual variable's causes, beside an empty loss variable, both left to the tracker."""
    from tests.models import causes_left_to_the_tracker

    log_dir = os.path.join(logs, "empty_beside_dual")
    return causes_left_to_the_tracker(log_dir, DualBesideEmpty(), ["loss/DualBesideEmpty/dual"])["loss/DualBesideEmpty/dual"]


def once_differentiable(logs):
    """PyTorch: a loss through a custom autograd Function whose backward cannot be differentiated
    again (`once_differentiable`, as a compiled kernel's), its scale left to the tracker, with and
    without the tracker: the weights, the logged losses, and what the tracker said."""
    import torch
    from torch.autograd.function import once_differentiable as once

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    class ScaledSquare(keras.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.log_scale = keras.Variable(0.0, name="log_scale")

        def call(self, y_true, y_pred):
            error = Square.apply(y_true - y_pred) * ops.exp(-Square.apply(self.log_scale.value))
            return ops.mean(error, axis=-1) + self.log_scale

    runs = []
    records = logging.getLogger("loss_param_tracker")
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    records.addHandler(handler)
    try:
        for log_dir in (None, os.path.join(logs, "once_differentiable")):
            model = make_model()
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss=ScaledSquare())
            callbacks = [LossParamTracker(log_dir)] if log_dir else []
            history = model.fit(*make_data(), epochs=2, batch_size=64, shuffle=False, verbose=0, callbacks=callbacks)
            runs.append(([np.asarray(w) for w in model.get_weights()], history.history["loss"]))
    finally:
        records.removeHandler(handler)
    (plain, plain_loss), (tracked, tracked_loss) = runs
    return {
        "max_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(plain, tracked)),
        "losses": [plain_loss, tracked_loss],
        "said": said,
        "cause": load(os.path.join(logs, "once_differentiable"))["train"].variables[
            "loss/ScaledSquare/log_scale"
        ].cause.tolist(),
    }


def statuses(logs):
    """Each loss's status, and what the warning advises."""
    cases = {
        "broken": (GaussianNLL, False),
        "fixed": (GaussianNLL, True),
        "stopped": (StoppedGradient, True),
        "clamped": (ClampedWeight, True),
        "frozen": (FrozenWeight, False),
        "lazy_layer": (LazyNLL, False),  # a layer as the loss, its weight made in build()
    }
    result = {}
    for name, (cls, fix) in cases.items():
        tracker, said, _ = fit(make_model(), cls(), os.path.join(logs, name), fix=fix)
        result[name] = {"diagnosis": tracker.diagnosis, "warnings": said}
    # A loss the capture cannot differentiate on its own: the model's norms are still taken.
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("loss_param_tracker").addHandler(handler)
    try:
        tracker, _, _ = fit(make_model(), NumpyWeight(), os.path.join(logs, "numpy"))
    finally:
        logging.getLogger("loss_param_tracker").removeHandler(handler)
    kernel = load(os.path.join(logs, "numpy"))["train"].variables["model/net/out/kernel"]
    result["numpy"] = {
        "diagnosis": tracker.diagnosis, "kernel_grad_norms": kernel.norms[:, 1].tolist(), "logged": logged,
    }
    return result


def analytic(logs, policy="float32"):
    """One full-batch step of a linear model: the captured norms, and the analytic ones."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        x, y = make_data()
        w0 = np.linspace(-1.0, 1.0, 4, dtype="float32").reshape(4, 1)
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(w0), name="linear")],
            name="linear_model",
        )
        optimizer = keras.optimizers.SGD(0.01)
        if policy != "float32":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**10)
        log_dir = os.path.join(logs, f"linear_{policy}")
        tracker, _, _ = fit(model, GaussianNLL(), log_dir, epochs=1, batch_size=len(x), optimizer=optimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    run = load(log_dir)["train"]
    residual = x.astype(np.float64) @ w0 - y
    return {
        "diagnosis": tracker.diagnosis,
        "kernel": float(run.variables["model/linear_model/linear/kernel"].norms[0, 1]),
        "kernel_expected": float(np.linalg.norm(x.T @ residual / len(x))),
        "log_var": float(run.variables["loss/GaussianNLL/log_var"].grad_norm[0, 0]),
        "log_var_expected": float(abs(np.mean(-0.5 * residual**2 + 0.5))),
    }


class CountsTraces(keras.Sequential):
    """Counts how often its train_step body runs in Python: once per trace when compiled."""

    traces = 0

    def train_step(self, *args, **kwargs):
        type(self).traces += 1
        return super().train_step(*args, **kwargs)


def identical(logs):
    """The same seeded fit with and without the tracker: every weight, loss value and trace."""
    runs = []
    for log_dir in (None, os.path.join(logs, "identical")):
        loss = GaussianNLL()
        model = CountsTraces(make_model(seed=3).layers, name="net")
        CountsTraces.traces = 0
        _, _, history = fit(model, loss, log_dir, fix=True, epochs=4)
        weights = [np.asarray(w.numpy()) for w in model.weights]
        runs.append((weights, float(loss.log_var.numpy()), history["loss"], CountsTraces.traces))
    (plain, plain_var, plain_loss, plain_traces), (tracked, tracked_var, tracked_loss, tracked_traces) = runs
    return {
        "max_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(plain, tracked)),
        "log_var": [plain_var, tracked_var],
        "loss": [plain_loss, tracked_loss],
        "traces": [plain_traces, tracked_traces],
    }


class Distillation(keras.losses.Loss):
    """Knowledge distillation with a learned temperature: its softened distributions feed the loss head too."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_t = keras.Variable(np.log(4.0).astype("float32"), name="log_t")

    def call(self, y_true, y_pred):
        t = ops.exp(self.log_t)
        teacher = ops.softmax(y_true / t, axis=-1)
        student = ops.log_softmax(y_pred / t, axis=-1)
        return ops.sum(teacher * (ops.log(teacher + 1e-9) - student), axis=-1) * t * t


def identical_left(logs):
    """The same seeded fit with and without the tracker, its loss variable left to the tracker: the
    weights and each batch's logged loss (on JAX the tracker's loss head is compiled into the step,
    and shares with the step's own loss what XLA finds they share)."""
    rng = np.random.RandomState(3)
    x = rng.randn(256, 4).astype("float32")
    teacher = (x @ rng.randn(4, 5) * 3).astype("float32")
    runs = []
    for log_dir in (None, os.path.join(logs, "identical_left")):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(5)])
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=Distillation())
        batches = []
        record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(float(logs["loss"])))
        callbacks = [record] + ([LossParamTracker(log_dir)] if log_dir else [])
        model.fit(x, teacher, batch_size=32, epochs=2, verbose=0, callbacks=callbacks)
        runs.append(([np.asarray(w) for w in model.get_weights()], batches))
    (plain, plain_losses), (tracked, tracked_losses) = runs
    return {
        "max_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(plain, tracked)),
        "losses": [plain_losses, tracked_losses],
    }


def batch_writes(logs):
    """update_freq=2 on a fixed loss (8 batches an epoch): the values it wrote, by step."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    log_dir = os.path.join(logs, "batches")
    loss = GaussianNLL()
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    make_trainable(model, loss)
    model.fit(*make_data(), epochs=2, batch_size=32, verbose=0, callbacks=[LossParamTracker(log_dir, update_freq=2)])
    acc = event_accumulator.EventAccumulator(os.path.join(log_dir, "train"), size_guidance={"tensors": 0})
    acc.Reload()
    series = {}
    for tag in ("loss/GaussianNLL/log_var/batch_value", "loss/GaussianNLL/log_var/batch_grad_norm/mean"):
        series[tag] = {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}
    return series


class SgdSteps(keras.callbacks.Callback):
    """Each step's gradients, from the update SGD made with them: (before - after) / learning rate."""

    def __init__(self, learning_rate):
        super().__init__()
        self.learning_rate = learning_rate
        self.epochs = []  # per epoch, per step: ([kernel, bias] gradients, [kernel, bias] before it)

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def _weights(self):
        return [ops.convert_to_numpy(w).astype(np.float64) for w in self.model.trainable_weights]

    def on_train_batch_begin(self, batch, logs=None):
        self._before = self._weights()

    def on_train_batch_end(self, batch, logs=None):
        grads = [(b - a) / self.learning_rate for b, a in zip(self._before, self._weights())]
        self.epochs[-1].append((grads, self._before))


def every_step(logs, policy="float32"):
    """Two epochs of 64 steps of a linear model under SGD, each step's gradients known.

    Returns, per epoch, what the tracker logged (the kernel's and the global
    gradient norms' mean and max, the log-variance's, the captured and
    skipped steps) and the same from the steps' own gradients: the
    model's from SGD's updates (a step with no update was skipped), the
    log-variance's analytic, `mean(-r^2 / 2 + 1 / 2)` at its value 0, on
    the steps whose loss read it. Under mixed precision the loss scale
    starts at 2^40 so that the first steps overflow and are skipped.
    """
    keras.mixed_precision.set_global_policy(policy)
    try:
        x, y = make_data()
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="linear")], name="linear_model")
        learning_rate, batch = 0.05, 4
        optimizer = keras.optimizers.SGD(learning_rate)
        if policy != "float32":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**40)
        loss = SometimesNLL(run=40 if keras.backend.backend() == "torch" else None)
        steps = SgdSteps(learning_rate)
        tracker = LossParamTracker(os.path.join(logs, f"every_step_{policy}"))
        model.compile(optimizer=optimizer, loss=loss)
        model.fit(x, y, epochs=2, batch_size=batch, shuffle=False, verbose=0, callbacks=[steps, tracker])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    run = load(tracker.log_dir)["train"]
    kernel = run.variables["model/linear_model/linear/kernel"].norms
    log_var = run.variables["loss/SometimesNLL/log_var"].grad_norm
    reads = iter(loss.reads[-2 * len(steps.epochs[0]) :])  # Keras may call the loss before the steps
    epochs = []
    for epoch, taken in enumerate(steps.epochs):
        kernels, globals_, log_vars, skipped = [], [], [], 0
        for index, ((kernel_grad, bias_grad), (kernel_before, bias_before)) in enumerate(taken):
            read = loss.run is None or next(reads)
            if not (kernel_grad.any() or bias_grad.any()):
                skipped += 1
                continue
            kernels.append(np.linalg.norm(kernel_grad))
            globals_.append(np.sqrt(np.sum(kernel_grad**2) + np.sum(bias_grad**2)))
            rows = slice(index * batch, (index + 1) * batch)
            residual = y[rows] - (x[rows].astype(np.float64) @ kernel_before + bias_before)
            log_vars.append(abs(np.mean(-0.5 * residual**2 + 0.5)) if read else 0.0)
        epochs.append(
            {
                "logged": {
                    "kernel": kernel[epoch, 1:3].tolist(),
                    "global": run.grad_norm[1][epoch].tolist(),
                    "log_var": log_var[epoch].tolist(),
                    "counts": run.step_counts[1][epoch].tolist(),
                },
                "expected": {
                    "kernel": [float(np.mean(kernels)), float(np.max(kernels))],
                    "global": [float(np.mean(globals_)), float(np.max(globals_))],
                    "log_var": [float(np.sum(log_vars) / len(log_vars)), float(np.max(log_vars))],
                    "counts": [len(kernels), skipped],
                },
            }
        )
    return {
        "epochs": epochs,
        "reads": loss.reads[-2 * len(steps.epochs[0]) :] if loss.run else None,
        "diagnosis": tracker.diagnosis,
    }


class ScaledSquares(keras.losses.Loss):
    """20 times the summed squared error: a float16 layer's gradient elements in the hundreds."""

    def call(self, y_true, y_pred):
        return 20.0 * ops.sum(ops.square(y_true - ops.cast(y_pred, "float32")))


def float16_norm(logs):
    """One step of a float16 Dense(256) whose kernel's gradient norm (about 105,000) is above float16's
    largest number (65,504), each of its elements finite: the logged norm, and the one computed in float64."""
    x = np.ones((4, 256), "float16")
    y = np.zeros((4, 256), "float32")
    kernel = np.full((256, 256), 0.01, "float16")
    model = keras.Sequential(
        [keras.Input((256,), dtype="float16"), keras.layers.Dense(256, use_bias=False, dtype="float16", name="half")],
        name="half_model",
    )
    model.layers[0].kernel.assign(kernel)
    tracker = LossParamTracker(os.path.join(logs, "float16"))
    model.compile(optimizer=keras.optimizers.SGD(1e-7), loss=ScaledSquares())
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[tracker])
    y_pred = x.astype(np.float64) @ kernel.astype(np.float64)
    expected = np.linalg.norm(x.T.astype(np.float64) @ (40.0 * (y_pred - y)))
    logged = load(tracker.log_dir)["train"].variables["model/half_model/half/kernel"].norms[0]
    return {"logged": float(logged[1]), "expected": float(expected), "diagnosis": tracker.diagnosis}


def reports(logs):
    """The report's exit code on a broken run and on a fixed one."""
    from loss_param_tracker import report

    return {case: report.main(["report", os.path.join(logs, case)]) for case in ("broken", "fixed")}


def main(out_dir):
    logs = os.path.join(out_dir, "logs")
    results = {
        "backend": keras.backend.backend(),
        "tensorflow_imported": sys.modules.get("tensorflow") is not None,
        "statuses": statuses(logs),
        "analytic": analytic(logs),
        "mixed_float16": analytic(logs, "mixed_float16"),
        "identical": identical(logs),
        "identical_left": identical_left(logs),
        "batches": batch_writes(logs),
        "every_step": every_step(logs),
        "every_step_mixed_float16": every_step(logs, "mixed_float16"),
        "float16_norm": float16_norm(logs),
        "gathered": gathered_fit(os.path.join(logs, "gathered")),
        "penalized": penalized_fit(os.path.join(logs, "penalized")),
        "term_weights": term_weights_fit(os.path.join(logs, "term_weights")),
        "projected_term": projected_term_fit(os.path.join(logs, "projected_term")),
        "dual_weight": dual_weight_fit(os.path.join(logs, "dual_weight")),
        "proxy_anchor": proxy_anchor_fit(os.path.join(logs, "proxy_anchor")),
        "kinked_concave": kinked_concave_fit(os.path.join(logs, "kinked_concave")),
        "adaptive_task_weight": {
            how: adaptive_task_weight_fit(os.path.join(logs, f"adaptive_task_weight_{how}"), trained=how == "trained")
            for how in ("left", "trained")
        },
        "flagged": {
            how: flagged_fit(os.path.join(logs, f"flagged_{how}"), trained=how == "trained") for how in ("left", "trained")
        },
        "learned_smoothing": {
            how: learned_smoothing_fit(
                os.path.join(logs, f"learned_smoothing_{how}"), trained=how != "left", tracked=how != "untracked"
            )
            for how in ("left", "trained", "untracked")
        },
        "running_normalized": {
            where: running_normalized_fit(os.path.join(logs, f"running_normalized_{where}"), where == "on_the_model")
            for where in ("on_the_loss", "on_the_model")
        },
        "held_on_the_model": {
            f"{where}_{how}": held_on_the_model_fit(
                os.path.join(logs, f"held_{where}_{how}"), where, trained=how == "trained"
            )
            for where in ("loss", "forward")
            for how in ("left", "trained")
        },
        "reversed_temperature": {
            how: reversed_temperature_fit(os.path.join(logs, f"reversed_temperature_{how}"), trained=how == "trained")
            for how in ("left", "trained")
        },
        "overflow": {
            attach: overflowing_fit(os.path.join(logs, f"overflow_{attach}"), attach=attach) for attach in (True, False)
        },
        "twin_nll": {
            how: twin_nll_fit(os.path.join(logs, f"twin_nll_{how}"), names)
            for how, names in (("shared", None), ("distinct", ("first", "second")), ("torch_keys", ("keys", "a.b")))
        },
        "cvar": cvar_fit(os.path.join(logs, "cvar")),
        "scanned": scanned(),
        "constrained": constrained_fit(os.path.join(logs, "constrained")),
        "counted_warm_up": counted_warm_up_fit(os.path.join(logs, "counted_warm_up")),
        "deprecations": deprecations(logs),
        "log_variance": log_variance_fit(os.path.join(logs, "log_variance")),
        "assigned_weight": {
            where: assigned_weight_fit(os.path.join(logs, f"assigned_{where}"), in_state=where == "in_state")
            for where in ("on_the_loss", "in_state")
        },
        # Set once, at epoch 1's start, and left: the compiled step still holds the old value in epoch 2.
        "assigned_once": assigned_weight_fit(os.path.join(logs, "assigned_once"), in_state=False, schedule=(1.0, 0.0, 0.0)),
        # Set once, at epoch 0's start, after the tracker's look and before the step is traced.
        "assigned_before_trace": assigned_weight_fit(
            os.path.join(logs, "assigned_before_trace"), in_state=False, schedule=(0.0, 0.0, 0.0)
        ),
        "dropped_term": dropped_term_fit(os.path.join(logs, "dropped_term")) if keras.backend.backend() == "torch" else None,
        "foreign_backward": foreign_backward(logs) if keras.backend.backend() == "torch" else None,
        "hooked_dual": hooked_dual(logs) if keras.backend.backend() == "torch" else None,
        "many_term_weights": many_term_weights(logs) if keras.backend.backend() == "torch" else None,
        "empty_beside_dual": empty_beside_dual(logs) if keras.backend.backend() == "torch" else None,
        "once_differentiable": once_differentiable(logs) if keras.backend.backend() == "torch" else None,
        "two_log_variances": {
            how: two_log_variances_fit(os.path.join(logs, f"two_log_variances_{how}"), names)
            for how, names in (("shared", ("log_var", "log_var")), ("distinct", ("log_var", "other")))
        },
    }
    results["report"] = reports(logs)
    results["tensorflow_imported"] |= sys.modules.get("tensorflow") is not None
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
