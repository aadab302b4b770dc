"""Multi-task uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

Three regression tasks share one network; each target carries Gaussian noise
of a known, different level sigma_i. The loss weighs each task's squared error
by a learned log-variance s_i = log sigma_i^2, as in the paper's regression
likelihood:

    L = sum_i 0.5 * exp(-s_i) * mse_i + 0.5 * s_i

dL/ds_i = 0.5 * (1 - exp(-s_i) * mse_i) vanishes at s_i* = log(mse_i): each s_i
should end at the log of its task's mean squared residual, which is near
log(sigma_i^2) once the network fits the noise-free part. The common form
without the 0.5 factors has the same fixed point.

    python -m demo.uncertainty [--logdir logs] [--scale 1.0 | --quick]
"""

import keras
import numpy as np

from demo import _common
from loss_param_tracker import Display

NAME = "uncertainty"
SIGMAS = np.array([0.1, 0.3, 1.0], "float32")  # the noise of each task's target
FEATURES = 8
SAMPLES = 4096
EPOCHS = 100
BATCH_SIZE = 128
LEARNING_RATE = 0.01
# The tab shows each task's sigma_i = exp(s_i / 2), next to the known noise.
DISPLAY = {"log_vars": Display("exp", inner_scale=0.5, label="sigma")}


class UncertaintyWeightedMSE(keras.losses.Loss):
    """Per-task squared errors weighted by learned log-variances.

    Written as users usually write it: the log-variances are a variable held
    by the loss, which `fit` does not train unless `make_trainable` registers
    it.

    Args:
        tasks: Number of tasks, the last axis of `y_true` and `y_pred`.
    """

    def __init__(self, tasks, **kwargs):
        super().__init__(**kwargs)
        self.log_vars = keras.Variable(np.zeros(tasks, "float32"), name="log_vars")

    def call(self, y_true, y_pred):
        weighted = 0.5 * keras.ops.exp(-self.log_vars) * keras.ops.square(y_true - y_pred)
        return keras.ops.sum(weighted + 0.5 * self.log_vars, axis=-1)


def make_data(seed=0):
    """Returns `(x, y)`: three linear tasks of x, each with its own noise level."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    weights = rng.normal(size=(FEATURES, len(SIGMAS))) / np.sqrt(FEATURES)
    noise = rng.normal(size=(SAMPLES, len(SIGMAS))) * SIGMAS
    return x, (x @ weights + noise).astype("float32")


def build():
    inputs = keras.Input((FEATURES,))
    shared = keras.layers.Dense(32, activation="relu", name="shared")(inputs)
    outputs = keras.layers.Dense(len(SIGMAS), name="heads")(shared)
    return keras.Model(inputs, outputs, name="multitask"), UncertaintyWeightedMSE(len(SIGMAS))


def run(log_dir="logs", scale=1.0, verbose=2):
    """Trains the broken and the fixed variant, and compares s_i with its fixed point.

    Args:
        log_dir: Parent log directory; runs go to `uncertainty_broken` and
            `uncertainty_fixed` under it.
        scale: Multiplies the number of epochs.
        verbose: Keras's `fit` verbosity; 0 also silences the printed table.

    Returns:
        A dict: `runs` ({variant: run directory name}), `variables`
        ({variant: the tracker's path of s}), `learned` ({variant: s}), `analytic`
        ({"residual": log mean squared residual per task of the fixed model,
        "noise": log sigma_i^2}) and `seconds` ({variant: fit time}).
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
    learned = {v: f.loss.log_vars.numpy().astype(float) for v, f in fitted.items()}
    predictions = fitted["fixed"].model.predict(x, batch_size=1024, verbose=0)
    residual = np.log(np.mean(np.square(y - predictions), axis=0)).astype(float)
    noise = np.log(SIGMAS.astype(float) ** 2)
    if verbose:
        _common.print_table(
            "Learned log-variances s_i against their fixed point",
            ["task", "sigma", "broken s", "fixed s", "log mse(residual)", "log sigma^2"],
            [
                [i, float(sigma), learned["broken"][i], learned["fixed"][i], residual[i], noise[i]]
                for i, sigma in enumerate(SIGMAS)
            ],
        )
    return _common.result(
        NAME,
        fitted,
        {v: "loss/UncertaintyWeightedMSE/log_vars" for v in fitted},
        learned,
        {"residual": residual, "noise": noise},
    )


def main(argv=None):
    _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main()
