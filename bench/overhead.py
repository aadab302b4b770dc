"""Training overhead of LossParamTracker against plain fit and keras.callbacks.TensorBoard.

In one process, after a warm-up, every repeat runs each variant once, in an
order rotated per repeat, on a fresh model with the same seed. A variant's
time is the wall time of epochs 2..N of its fit (epoch 1 traces the step).
Printed per variant: the median of paired ratios (the repeat's time over the
same repeat's plain fit) with the 25-75% range, and the peak RSS sampled while
it ran. Single repeats on a shared machine scatter widely; only the paired
medians mean anything.

    python bench/overhead.py [--repeats 8] [--epochs 4]
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402

from loss_param_tracker import LossParamTracker, LossParamWarning  # noqa: E402


class GaussianNLL(keras.losses.Loss):
    """Regression loss with a learned log-variance."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")

    def call(self, y_true, y_pred):
        return tf.reduce_mean(0.5 * tf.exp(-self.log_var) * tf.square(y_true - y_pred) + 0.5 * self.log_var)


class TemperatureCE(keras.losses.Loss):
    """Classification loss with a learned temperature."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_temperature = keras.Variable(0.0, name="log_temperature")

    def call(self, y_true, y_pred):
        logits = y_pred / tf.exp(self.log_temperature)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(tf.reshape(y_true, [-1]), tf.int32), logits)
        )


def mlp_workload():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 64)).astype("float32")
    y = (x[:, :1] * 2 + rng.normal(size=(20_000, 1))).astype("float32")

    def build():
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(1)]
        )
        return model, GaussianNLL()

    return "MLP 2x256, 20k x 64", build, x, y


def convnet_workload():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4_096, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=(4_096, 1)).astype("int32")

    def build():
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Conv2D(16, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(10),
            ]
        )
        return model, TemperatureCE()

    return "convnet 28x28, 4k", build, x, y


VARIANTS = {
    "plain fit": lambda d: [],
    "keras TensorBoard": lambda d: [keras.callbacks.TensorBoard(log_dir=d)],
    "keras TensorBoard(histogram_freq=1)": lambda d: [keras.callbacks.TensorBoard(log_dir=d, histogram_freq=1)],
    "LossParamTracker": lambda d: [LossParamTracker(log_dir=d)],
}


class EpochClock(keras.callbacks.Callback):
    """First in the list: times from epoch 2's start to the end of the last epoch's callbacks."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.start = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()


class PeakRSS:
    """Samples the process's RSS in a thread while a variant runs."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._stop.wait(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_once(workload, variant, epochs, log_root):
    _, build, x, y = workload
    keras.utils.set_random_seed(0)
    model, loss = build()
    model.compile(optimizer="adam", loss=loss)
    clock = EpochClock()
    log_dir = tempfile.mkdtemp(dir=log_root)
    with PeakRSS() as rss:
        model.fit(x, y, epochs=epochs, batch_size=128, verbose=0, callbacks=[clock] + VARIANTS[variant](log_dir))
    keras.backend.clear_session()
    return (clock.end - clock.start) / (epochs - 1), rss.peak


def bench(workload, repeats, epochs, log_root):
    names = list(VARIANTS)
    for name in names:  # warm-up: imports, first traces, file systems
        run_once(workload, name, 2, log_root)
    times = {name: [] for name in names}
    peaks = {name: 0 for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            seconds, peak = run_once(workload, name, epochs, log_root)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)
    print(f"\n{workload[0]}, batch 128, {repeats} repeats, epochs 2..{epochs} timed")
    print(f"  {'variant':38s} {'epoch s':>8s} {'ratio':>6s}  {'25-75%':>13s}  {'peak RSS':>9s}")
    for name in names:
        ratios = [t / p for t, p in zip(times[name], times["plain fit"])]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        print(
            f"  {name:38s} {statistics.median(times[name]):8.3f} {statistics.median(ratios):6.3f}"
            f"  {q1:6.3f}-{q3:6.3f}  {peaks[name] / 2**20:7.0f} MB"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workload", choices=["mlp", "convnet", "all"], default="all")
    args = parser.parse_args()
    # The benchmark's losses hold untrained parameters on purpose.
    warnings.simplefilter("ignore", LossParamWarning)
    workloads = {"mlp": [mlp_workload], "convnet": [convnet_workload]}.get(args.workload, [mlp_workload, convnet_workload])
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as log_root:
        for make in workloads:
            bench(make(), args.repeats, args.epochs, log_root)


if __name__ == "__main__":
    main()
