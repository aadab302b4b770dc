"""A CLIP-style contrastive loss with a learned temperature.

Two small encoders embed the two views of each pair (two noisy linear images
of one latent vector) on the unit sphere; the loss is the symmetric in-batch
InfoNCE of CLIP (Radford et al. 2021), whose logits are the cosine
similarities times a learned scale, stored as its log, `logit_scale`, starting
at log(1/0.07), and clamped at 100, as in CLIP.

The scale's fixed point, for given embeddings, solves
dL/dt = mean(softmax-weighted similarity - positive similarity) = 0: the loss
is convex in t, and the views' noise keeps t* finite. The demo solves it for
the trained encoders, on batches of the training size, and compares.

Three runs: the loss as written (`not_updated`), after `make_trainable`
(`training`), and with the scale computed in numpy (`no_gradient`, see
`NumpyScaleContrastiveLoss`).

    python -m demo.contrastive [--logdir logs] [--scale 1.0 | --quick]
"""

import keras
import numpy as np
import tensorflow as tf

from demo import _common
from loss_param_tracker import Display

NAME = "contrastive"
LATENT = 8
VIEW = 16
EMBEDDING = 16
NOISE = 0.4  # the views' noise, relative to the signal: keeps t* finite, well below 100
SAMPLES = 4096
EPOCHS = 80
BATCH_SIZE = 128
LEARNING_RATE = 0.01
INITIAL_SCALE = 1 / 0.07  # CLIP's initial temperature, 0.07
MAX_SCALE = 100.0  # CLIP clamps the scale so the logits cannot blow up
# The tab shows the scale, 14.3 -> 53.9, not the log the loss stores.
DISPLAY = {"logit_scale": Display("exp", label="scale")}


class ContrastiveLoss(keras.losses.Loss):
    """Symmetric in-batch InfoNCE of CLIP, with a learned logit scale held by the loss.

    `y_pred` is the two views' unit embeddings side by side, `[a, b]`; the
    positive of `a[i]` is `b[i]`, every other `b[j]` of the batch a
    negative. `y_true` is ignored.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.logit_scale = keras.Variable(
            np.log(INITIAL_SCALE), dtype="float32", name="logit_scale"
        )

    def scale(self):
        return keras.ops.minimum(keras.ops.exp(self.logit_scale), MAX_SCALE)

    def call(self, y_true, y_pred):
        a, b = keras.ops.split(y_pred, 2, axis=-1)
        logits = self.scale() * keras.ops.matmul(a, keras.ops.transpose(b))
        labels = keras.ops.arange(keras.ops.shape(logits)[0])
        return 0.5 * (
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            + keras.losses.sparse_categorical_crossentropy(
                labels, keras.ops.transpose(logits), from_logits=True
            )
        )


class NumpyScaleContrastiveLoss(ContrastiveLoss):
    """The same loss, its scale computed with numpy as in a numpy reference implementation.

    `np.exp(self.logit_scale)` fails inside the traced train step ("numpy()
    is only available when eager execution is enabled"); wrapping it in
    `tf.numpy_function` makes it run, and cuts the gradient: the loss does
    not depend on `logit_scale` differentiably (`no_gradient`), even with
    `make_trainable`.
    """

    def scale(self):
        def clamped_exp(logit_scale):
            return np.minimum(np.exp(logit_scale), MAX_SCALE).astype(np.float32)

        scale = tf.numpy_function(clamped_exp, [self.logit_scale], tf.float32, stateful=False)
        return tf.reshape(scale, [])  # numpy_function's output has no static shape


def make_data(seed=0):
    """Returns `([view_a, view_b], dummy targets)`: two noisy linear views of one latent."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(SAMPLES, LATENT))

    def view():
        mixing = rng.normal(size=(LATENT, VIEW)) / np.sqrt(LATENT)
        return (latent @ mixing + NOISE * rng.normal(size=(SAMPLES, VIEW))).astype("float32")

    return [view(), view()], np.zeros((SAMPLES, 1), "float32")


def encoder(name):
    return keras.Sequential(
        [
            keras.Input((VIEW,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(EMBEDDING),
            keras.layers.UnitNormalization(),
        ],
        name=name,
    )


def builder(loss_class):
    def build():
        view_a, view_b = keras.Input((VIEW,), name="view_a"), keras.Input((VIEW,), name="view_b")
        a, b = encoder("encoder_a")(view_a), encoder("encoder_b")(view_b)
        embeddings = keras.layers.Concatenate()([a, b])
        return keras.Model([view_a, view_b], embeddings, name="dual_encoder"), loss_class()

    return build


def optimal_scale(embeddings, batch_size=BATCH_SIZE, shuffles=4, seed=0):
    """The scale t that minimises the mean InfoNCE of fixed embeddings over random batches.

    The loss is convex in t, so its derivative, mean(expected similarity under
    the softmax - positive similarity), is increasing: bisect it on log t.

    Args:
        embeddings: `[n, 2 * d]`, the model's output for the training pairs.
        batch_size: The training batch size: the number of negatives matters.
        shuffles: Random batchings averaged over.
        seed: Seed of the batchings.

    Returns:
        t*, clamped to `[1, MAX_SCALE]`.
    """
    a, b = np.split(embeddings.astype(np.float32), 2, axis=-1)
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(shuffles):
        order = rng.permutation(len(a))
        for start in range(0, len(a) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            batches.append(a[index] @ b[index].T)
    similarities = np.stack(batches)  # [batches, batch, batch]
    positive = np.mean(np.diagonal(similarities, axis1=1, axis2=2))

    def derivative(t):
        expected = 0.0
        for axis in (2, 1):  # a -> b rows, then b -> a columns
            logits = t * similarities
            weights = np.exp(logits - logits.max(axis=axis, keepdims=True))
            weights /= weights.sum(axis=axis, keepdims=True)
            expected += 0.5 * np.mean(np.sum(weights * similarities, axis=axis))
        return expected - positive

    low, high = 0.0, np.log(MAX_SCALE)
    if derivative(np.exp(high)) < 0:
        return MAX_SCALE
    for _ in range(20):  # brackets log t* to 4.6 / 2**20
        middle = 0.5 * (low + high)
        low, high = (middle, high) if derivative(np.exp(middle)) < 0 else (low, middle)
    return float(np.exp(0.5 * (low + high)))


def run(log_dir="logs", scale=1.0, verbose=2):
    """Trains the broken, the fixed and the numpy variant, and compares the learned scale with t*.

    Args:
        log_dir: Parent log directory; runs go to `contrastive_broken`,
            `contrastive_fixed` and `contrastive_numpy` under it.
        scale: Multiplies the number of epochs.
        verbose: Keras's `fit` verbosity; 0 also silences the printed table.

    Returns:
        A dict: `runs` ({variant: run directory name}), `variables`
        ({variant: the tracker's path of `logit_scale`}), `learned`
        ({variant: the scale, exp(logit_scale) clamped}), `analytic`
        ({variant: t* of that variant's trained encoders}), `initial` (the
        initial scale) and `seconds` ({variant: fit time}).
    """
    x, y = make_data()
    epochs = _common.epochs_for(EPOCHS, scale)
    variants = {
        "broken": (ContrastiveLoss, False),
        "fixed": (ContrastiveLoss, True),
        "numpy": (NumpyScaleContrastiveLoss, True),
    }
    fitted = {
        variant: _common.fit_run(
            builder(loss_class), x, y, log_dir, f"{NAME}_{variant}", fix=fix, epochs=epochs,
            batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, verbose=verbose,
            display=DISPLAY,
        )
        for variant, (loss_class, fix) in variants.items()
    }
    learned = {
        v: float(min(np.exp(f.loss.logit_scale.numpy()), MAX_SCALE)) for v, f in fitted.items()
    }
    analytic = {
        v: optimal_scale(f.model.predict(x, batch_size=1024, verbose=0)) for v, f in fitted.items()
    }
    if verbose:
        _common.print_table(
            f"Learned logit scale (temperature 1/scale) against t* of the trained encoders; "
            f"initial {INITIAL_SCALE:.4f}",
            ["run", "scale", "t*", "temperature"],
            [[v, learned[v], analytic[v], 1 / learned[v]] for v in fitted],
        )
    return _common.result(
        NAME,
        fitted,
        {v: f"loss/{type(f.loss).__name__}/logit_scale" for v, f in fitted.items()},
        learned,
        analytic,
        initial=INITIAL_SCALE,
    )


def main(argv=None):
    _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main()
