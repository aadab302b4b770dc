"""Shared helpers: small models, losses that truly cause each status, and fit."""

import os
import shutil
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite runs on TensorFlow; tests/test_backends.py runs JAX and PyTorch in their own processes.
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from loss_param_tracker import LossParamTracker, LossParamWarning  # noqa: E402
from loss_param_tracker.reader import load  # noqa: E402
from tests.models import ClampedWeight, GaussianNLL, StoppedGradient, make_data, make_model  # noqa: E402, F401


class ScaledMSE(keras.losses.Loss):
    """The seed post's first pattern: a raw tf.Variable created in __init__."""

    def __init__(self, initial=1.0, trainable=True, **kwargs):
        super().__init__(**kwargs)
        self.weight = tf.Variable(initial, dtype=tf.float32, trainable=trainable)

    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.square(self.weight * (y_pred - y_true)))


class AnnealLogVar(keras.callbacks.Callback):
    """Moves a loss's `log_var` from a callback, as annealing schedules do: outside the optimizer."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def on_epoch_end(self, epoch, logs=None):
        self.loss.log_var.assign(self.loss.log_var - 0.1)


class InterruptAt(keras.callbacks.Callback):
    """Ends fit with `error` at the start of an epoch (Ctrl-C, by default) or, `at_end`, at its end
    (a callback after the tracker that fails): either way without on_train_end."""

    def __init__(self, epoch, at_end=False, error=KeyboardInterrupt):
        super().__init__()
        self.epoch, self.at_end, self.error = epoch, at_end, error

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and not self.at_end:
            raise self.error

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch and self.at_end:
            raise self.error


def register(model, loss):
    """Attaches the loss's keras.Variable to the model so fit trains it (what make_trainable does)."""
    model.loss_parameters = [v for v in vars(loss).values() if isinstance(v, keras.Variable)]


def compile_fixed(model, loss, learning_rate=0.05):
    """Compiles `model` with a fresh Adam optimizer and makes the loss's variables train."""
    # Imported here: a test loads a .keras file in a fresh process that
    # imports this module, and needs make_trainable not imported yet.
    from loss_param_tracker import make_trainable

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    make_trainable(model, loss)
    return model


def fit(model, loss, log_dir, epochs=2, tracker=None, **kwargs):
    if not model.compiled:
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    tracker = tracker or LossParamTracker(log_dir=log_dir)
    x, y = kwargs.pop("data", None) or make_data()
    callbacks = kwargs.pop("callbacks", []) + [tracker]
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks, **kwargs)
    return tracker


def load_run(log_dir):
    runs = load(log_dir)
    assert list(runs) == ["train"], f"expected one run 'train', got {list(runs)}"
    return runs["train"]


@pytest.fixture
def log_dir(tmp_path):
    return str(tmp_path / "logs")


class CenterLoss(keras.losses.Loss):
    """MSE plus a pull of 100 learned centres towards 1: a loss variable logged as statistics."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.centers = keras.Variable(np.zeros((10, 10), "float32"), name="centers")

    def call(self, y_true, y_pred):
        pull = tf.reduce_mean(tf.square(self.centers - 1.0))
        return tf.reduce_mean(tf.square(y_true - y_pred)) + pull


# A run name that is also HTML: the dashboard must show it as text.
XSS_RUN = "<img src=x onerror=alert(1)>"

# Runs of the dashboard's log directory: epochs, and the latest status of each loss variable.
DASHBOARD_RUNS = {
    "broken/train": (12, {"loss/GaussianNLL/log_var": "not_updated"}),
    # More epochs than either loader keeps of a third-party plugin by default (10 and 100).
    "fixed/train": (150, {"loss/GaussianNLL/log_var": "training"}),
    f"{XSS_RUN}/train": (12, {"loss/StoppedGradient/weight": "no_gradient"}),
    "centers/train": (12, {"loss/CenterLoss/centers": "training"}),
    "plain/train": (12, {}),
}


@pytest.fixture(scope="session")
def dashboard_logdir(tmp_path_factory):
    """A log directory written by real fits: each kind of run the dashboard shows."""
    from loss_param_tracker import make_trainable

    root = tmp_path_factory.mktemp("dashboard")
    losses = {
        "broken": (GaussianNLL(), False),
        "fixed": (GaussianNLL(), True),
        XSS_RUN: (StoppedGradient(), True),
        "centers": (CenterLoss(), True),
        "plain": ("mse", False),
    }
    for name, (loss, fix) in losses.items():
        model = make_model()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        if fix:
            make_trainable(model, loss)
        epochs = DASHBOARD_RUNS[f"{name}/train"][0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LossParamWarning)  # the broken runs warn, as they should
            fit(model, loss, str(root / name), epochs=epochs, data=make_data(n=64))
    return str(root)


def damaged_copy(source, target):
    """`source` plus two copies of its `broken` run: one cut short, one with a broken record."""
    shutil.copytree(source, target)
    for name in ("truncated", "corrupt"):
        shutil.copytree(target / "broken", target / name)
    (event,) = (target / "truncated" / "train").iterdir()
    data = event.read_bytes()
    event.write_bytes(data[: len(data) // 2])
    (event,) = (target / "corrupt" / "train").iterdir()
    data = bytearray(event.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # breaks a record's checksum
    event.write_bytes(bytes(data))
    return target


# A perceptual loss that holds a network (VGG16's 13 convolutions) and a learned
# weight: the network is logged as a group, its weights one by one beside it.
NETWORK = "loss/Perceptual/features"
NETWORK_LAYERS = [
    f"block{block}_conv{i}" for block, convs in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, convs + 1)
]
# Runs of the network's log directory: epochs, and the latest status of each loss variable.
NETWORK_RUNS = {
    "vgg_frozen/train": (8, {NETWORK: "frozen", "loss/Perceptual/weight": "training"}),
    "vgg_tuned/train": (8, {NETWORK: "training", "loss/Perceptual/weight": "training"}),
}


@pytest.fixture(scope="session")
def network_logdir(tmp_path_factory):
    """A log directory of two runs whose loss holds a network, frozen in one, trained in the other.

    Written with the summary API, as the callback writes a network: one loss
    series of all its weights' norms, a model series per weight under its
    path, one diagnosis row for the whole network.
    """
    from tensorboard_plugin.loss_params import metadata, summary

    root = tmp_path_factory.mktemp("network")
    channels = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    shapes = {}
    for layer, inputs, outputs in zip(NETWORK_LAYERS, [3] + channels[:-1], channels):
        shapes[f"{NETWORK}/{layer}/kernel"] = (3, 3, inputs, outputs)
        shapes[f"{NETWORK}/{layer}/bias"] = (outputs,)
    model = [f"model/net/{layer}/{w}" for layer in ("hidden", "out") for w in ("kernel", "bias")]
    for run, (epochs, statuses) in NETWORK_RUNS.items():
        tuned = statuses[NETWORK] == "training"
        rng = np.random.default_rng(0)  # the same pretrained network in both runs
        start = {path: rng.uniform(5, 20) for path in shapes}
        with tf.summary.create_file_writer(str(root / run)).as_default():
            for epoch in range(epochs):
                decay = np.exp(-epoch / 4)
                growth = epoch / (5 if tuned else 10)
                values = summary.values(metadata.ROLE_LOSS, metadata.VALUE, "loss/Perceptual/weight",
                                        np.float32(1 + growth), dtype="float32")
                values += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, "loss/Perceptual/weight",
                                         np.float32([decay, 2 * decay]) / (2 if tuned else 1))
                norms = []
                for path, shape in shapes.items():
                    norm = start[path] * (1 + 0.02 * epoch) if tuned else start[path]
                    grad = decay * start[path] / 10 if tuned else np.nan  # frozen: no gradient
                    norms.append([norm, grad, 2 * grad, 0.02 if tuned else 0.0])
                    values += summary.values(metadata.ROLE_MODEL, metadata.WEIGHT_NORMS, path,
                                             np.float32(norms[-1]), shape=shape, dtype="float32")
                rss = np.sqrt(np.sum(np.square(norms), axis=0))
                values += summary.values(metadata.ROLE_LOSS, metadata.WEIGHT_NORMS, NETWORK,
                                         np.float32([*rss[:3], 0.02 if tuned else 0.0]), dtype="float32")
                for path in model:
                    values += summary.values(metadata.ROLE_MODEL, metadata.WEIGHT_NORMS, path,
                                             np.float32([2 + growth / 2, decay, 2 * decay, 0.05 * decay]),
                                             shape=(4, 8), dtype="float32")
                values += summary.values(metadata.ROLE_RUN, metadata.WEIGHT_NORMS, metadata.RUN_MODEL,
                                         np.float32([4 + growth, decay, 2 * decay, 0.05 * decay]))
                values += summary.values(metadata.ROLE_RUN, metadata.GRAD_NORM, metadata.RUN_GRAD_NORM,
                                         np.float32([decay, 2 * decay]))
                rows = [[path, status, ""] for path, status in statuses.items()]
                rows += [[path, "training", ""] for path in model]
                values += summary.values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS,
                                         np.array(rows, dtype=object))
                summary.write(values, epoch)
    return str(root)
