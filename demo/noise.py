"""A learned noise model: Gaussian negative log-likelihood with a learned log-variance.

A network regresses a noisy 1-D curve, y = sin(2x) + 0.3x + sigma * eps. The
loss is the Gaussian NLL with one learned log-variance s, held by the loss as
a raw `tf.Variable` created in `__init__`, the first pattern of the seed
post (`make_trainable` swaps it for a `keras.Variable` Keras can train):

    L = 0.5 * exp(-s) * (y - f(x))^2 + 0.5 * s

dL/ds = 0.5 * (1 - exp(-s) * mse) vanishes at s* = log(mse): s should end at
the log of the mean squared residual of the trained network, near
log(sigma^2).

(Barron's adaptive robust loss, with a learned shape and scale, was the other
candidate: its likelihood needs a tabulated partition function log Z(alpha),
and its learned shape has no closed-form answer to print next to it.)

    python -m demo.noise [--logdir logs] [--scale 1.0 | --quick]
"""

import keras
import numpy as np
import tensorflow as tf

from demo import _common
from loss_param_tracker import Display

NAME = "noise"
SIGMA = 0.3  # the target's noise
SAMPLES = 4096
EPOCHS = 150
BATCH_SIZE = 128
LEARNING_RATE = 0.01
# The tab shows sigma = exp(s / 2), the learned noise, next to its log-variance.
DISPLAY = {"log_var": Display("exp", inner_scale=0.5, label="sigma")}


class GaussianNLL(keras.losses.Loss):
    """Gaussian negative log-likelihood with a learned log-variance (a raw `tf.Variable`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_var = tf.Variable(0.0, name="log_var")

    def call(self, y_true, y_pred):
        squared = keras.ops.square(y_true - y_pred)
        nll = 0.5 * keras.ops.exp(-self.log_var) * squared + 0.5 * self.log_var
        return keras.ops.mean(nll, axis=-1)


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(SAMPLES, 1)).astype("float32")
    y = np.sin(2 * x) + 0.3 * x + SIGMA * rng.normal(size=x.shape)
    return x, y.astype("float32")


def build():
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(64, activation="tanh"),
            keras.layers.Dense(1),
        ],
        name="regressor",
    )
    return model, GaussianNLL()


def run(log_dir="logs", scale=1.0, verbose=2):
    """Trains the broken and the fixed variant, and compares s with its fixed point.

    Args:
        log_dir: Parent log directory; runs go to `noise_broken` and
            `noise_fixed` under it.
        scale: Multiplies the number of epochs.
        verbose: Keras's `fit` verbosity; 0 also silences the printed table.

    Returns:
        A dict: `runs` ({variant: run directory name}), `variables`
        ({variant: the tracker's path of s}), `learned` ({variant: s}), `analytic`
        ({"residual": log mean squared residual of the fixed model,
        "noise": log sigma^2}) and `seconds` ({variant: fit time}).
    """
    x, y = make_data()
    epochs = _common.epochs_for(EPOCHS, scale)
    fitted = {
        variant: _common.fit_run(
            build, x, y, log_dir, f"{NAME}_{variant}", fix=variant == "fixed", epochs=epochs,
            batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, verbose=verbose,
            display=DISPLAY,
        )
        for variant in ("broken", "fixed")
    }
    learned = {v: float(f.loss.log_var.numpy()) for v, f in fitted.items()}
    predictions = fitted["fixed"].model.predict(x, batch_size=1024, verbose=0)
    residual = float(np.log(np.mean(np.square(y - predictions))))
    noise = float(np.log(SIGMA**2))
    if verbose:
        _common.print_table(
            "Learned log-variance s against its fixed point",
            ["broken s", "fixed s", "log mse(residual)", "log sigma^2"],
            [[learned["broken"], learned["fixed"], residual, noise]],
        )
    return _common.result(
        NAME,
        fitted,
        {v: "loss/GaussianNLL/log_var" for v in fitted},
        learned,
        {"residual": residual, "noise": noise},
    )


def main(argv=None):
    _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main()
