"""Training overhead of LossParamTracker against plain fit and keras.callbacks.TensorBoard.

Time (the default mode). TensorFlow runs on `--threads` intra-op and inter-op
threads (1 by default), so the process CPU time of a run measures the work it
does and depends little on what else the shared machine runs. In one process,
after a warm-up, every repeat runs each variant once (plain fit, keras
TensorBoard by default and with histogram_freq=1, LossParamTracker), in an
order rotated per repeat, on a fresh model with the same seed. A run's process
CPU time (`time.process_time`, all its threads) and wall time
(`time.perf_counter`) cover epochs 2..N (epoch 1 traces the step): a clock
first in the callback list starts at epoch 2's beginning and stops at
on_train_end, so the other callbacks' per-epoch work is inside and their
on_train_end is not. Ratios are paired: a variant's time over the same
repeat's plain fit. Printed per workload and variant: the median CPU ms per
step; the median paired CPU-time ratio and, beside it, the wall-time one, each
with a 90% bootstrap interval of the median (2000 resamples of the paired
ratios); the extra CPU ms per step, the median of the paired differences;
and the variant's fastest epoch over plain fit's in CPU time (every timed
epoch of every repeat, a 90% bootstrap interval over repeats): a neighbour's
load only ever adds time, so on a busy machine this is the steadiest figure.
Workloads: an MLP 2x256, a deep net of 24 Dense + LayerNormalization blocks
(98 weights), a small convnet, and a perceptual loss holding a frozen network.

Memory (`--memory`). A 58.7M-parameter MLP trains for 3 epochs on 512 x 1024,
batch 128, with plain fit, LossParamTracker and keras TensorBoard, each run in
a fresh subprocess so that allocator state does not carry over from one to the
next; a thread samples the RSS every 20 ms from the start of fit to its end.
Printed per variant: the median peak RSS and its difference from plain fit's,
in MB and as a fraction of the model's float32 size; and, since whole-fit peaks
of fresh processes scatter by about 100 MB here, the most that one call of the
variant's own epoch hooks raised the RSS above where it was just before.

Backends (`--backend jax|torch`). The same workloads and pairing on Keras's
JAX or PyTorch backend, in a process where TensorFlow cannot be imported (as
on a machine without it: the tracker writes its own event file), against
plain fit only (keras TensorBoard needs TensorFlow); with `--with-tensorflow`,
TensorFlow is imported first and keras TensorBoard is timed too (both then
write through `tf.summary`). XLA's CPU client or torch runs on `--threads`
threads.

Operations (`--ops`). The operations of one traced TensorFlow training step,
plain fit against the tracker's, on every workload, with its loss variable
left to the tracker to find and after `make_trainable`: a figure that no
neighbour's load moves, where the timings scatter. With `--backend jax`, the
compiled step's instructions and XLA's own cost analysis of it (floating-point
operations, bytes accessed), plain fit against the tracker's, also without its
curvature probe (the step every step but an epoch's first few runs: XLA
counts both branches of the probe's condition) and after `make_trainable`.

Steps (`--steps`). The training step alone (TensorFlow's traced one, JAX's
compiled one on its state, PyTorch's in Python), plain fit's against the
tracker's (its loss variable left to it, and after `make_trainable`): each
variant's step is built `--instances` times (3) by a short fit, the
variants' order rotated per round (two builds of the same code differ
by tens of microseconds a step, JAX's compiled deep step by up to 437),
then the train functions are called
in one process in blocks, each instance of each variant for
`STEP_BLOCK` steps, each step waited for, their order rotated per block,
so that a neighbour's load falls on all alike; a block's figure of a
variant is the mean over its instances (the spread of plain fit's
instances about their mean is printed), and the paired per-block differences of
CPU time give the tracker's extra microseconds a step with a 90% bootstrap
interval over resamples of the blocks and of each variant's instances (the
builds' differences are part of a figure over few builds), a few percent
of the step wide, where whole fits' ratios span 10 to 60%. Beside it, the tracker's epoch hooks (CPU, the median over epochs
2..4 of a short fit), plain fit's epoch timed right after the blocks, and
the fit's overhead they make together: the extra of a step times the
workload's steps, plus the hooks, plus the probe's part of an epoch's
first `PROBE_STEPS` steps, over that epoch (and, as a bound, over the
blocks' plain steps alone, without Keras's per-step work in Python). Those
first steps are timed in blocks of their own, plain fit's against the
tracker's, each block after a restart of the tracker's accumulators (its
probe then measures, as at an epoch's start); the probe's part is their
extra less `PROBE_STEPS` times the extra of a later step. The run stops if the timed step was not the tracker's (its accumulators
must have counted every timed step). With the loss variable left to the
tracker, more variants in the same blocks: on TensorFlow and JAX the
tracker's step without its curvature probe (the condition every step
runs), on TensorFlow plain fit's step that also takes the loss
variable's gradient and its norm and nothing else
(`observe_gradient_alone`), the floor of observing a gradient that the
optimizer is not handed and so Keras does not compute, and on PyTorch
plain fit's step that also takes every gradient's norm in one fused
kernel and nothing else (`observe_norms_alone`), the least code that
observes what the tracker observes of a step there.

Strategy (`--strategy mirrored`). The TensorFlow variants, each built and
compiled under a `tf.distribute.MirroredStrategy` over 2 logical CPU devices,
against plain fit under the same strategy.

    python bench/overhead.py [--backend tensorflow|jax|torch [--with-tensorflow]] [--workload mlp|deep|convnet|perceptual|all]
                             [--repeats 10] [--epochs 4] [--threads 1] [--strategy mirrored]
    python bench/overhead.py --memory [--repeats 3]
    python bench/overhead.py --scale [--repeats 3] [--backend ...]
    python bench/overhead.py --ops [--backend jax]
    python bench/overhead.py --steps [--backend ...] [--workload ...] [--repeats 200] [--instances 3]

Scale (`--scale`). The epoch hooks' CPU time on a model of 1,000 weights
(500 parallel Dense(1) branches) whose loss holds 200 learned weights,
against keras TensorBoard's hooks on the same fit; the target is 5% of a
1-second epoch (50 ms). 16 epochs a fit: the mean over them holds the full
garbage collections that fall in a hook (one every ten or more epochs, a
few hundred ms each in a process holding a framework); the whole fit's CPU
time per epoch is printed beside plain fit's, with the full collections of
each variant.
"""

import argparse
import contextlib
import functools
import gc
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Callable, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Run as `python bench/overhead.py`, sys.path[0] is bench/: the repo root goes
# first so that this checkout's loss_param_tracker is the one imported.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _early_arguments():
    """`--backend` and `--threads`, which must be known before Keras and its backend are imported."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"], default="tensorflow")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--with-tensorflow", action="store_true")
    return parser.parse_known_args()[0]


EARLY = _early_arguments()
os.environ["KERAS_BACKEND"] = EARLY.backend
if EARLY.backend != "tensorflow" and not EARLY.with_tensorflow:
    sys.modules["tensorflow"] = None  # as without TensorFlow: `import tensorflow` fails
if EARLY.backend == "jax" and EARLY.threads:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={EARLY.threads}"
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from keras import ops  # noqa: E402

from loss_param_tracker import LossParamTracker, LossParamWarning, make_trainable  # noqa: E402
from loss_param_tracker.capture import ATTRIBUTE as CAPTURE  # noqa: E402  (the model's capture during a fit)
from loss_param_tracker.capture import PROBE_STEPS  # noqa: E402
from tests.models import GaussianNLL  # noqa: E402  (the regression loss with a learned log-variance)

BATCH = 128
BOOTSTRAP_RESAMPLES = 2000
MB = 1e6
MEMORY_EPOCHS = 3
# The scale workload (--scale): model weights, and loss variables.
SCALE_WEIGHTS = 1000
SCALE_LOSS_VARIABLES = 200
# --steps: steps a timed block of one variant's instance.
STEP_BLOCK = 10
# --steps: independently built instances of each variant, timed in every block.
STEP_INSTANCES = 3


class TemperatureCE(keras.losses.Loss):
    """Classification loss with a learned temperature."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_temperature = keras.Variable(0.0, name="log_temperature")

    def call(self, y_true, y_pred):
        logits = y_pred / ops.exp(self.log_temperature)
        return ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True))


class Workload(NamedTuple):
    """A training set and a builder of a fresh (model, loss) pair for it."""

    label: str
    build: Callable[[], tuple[keras.Model, keras.losses.Loss]]
    x: np.ndarray
    y: np.ndarray


def regression_data():
    """Returns 20k x 64 standard normal inputs and a noisy linear target."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 64)).astype("float32")
    y = (x[:, :1] * 2 + rng.normal(size=(20_000, 1))).astype("float32")
    return x, y


def mlp_workload():
    """Returns an MLP 2x256 with GaussianNLL on the regression data."""

    def build():
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(1)]
        )
        return model, GaussianNLL()

    return Workload("MLP 2x256, 20k x 64", build, *regression_data())


def deep_workload():
    """Returns 24 blocks of Dense(64) + LayerNormalization (98 weights) with GaussianNLL on the regression data."""

    def build():
        layers = [keras.Input((64,))]
        for _ in range(24):
            layers += [keras.layers.Dense(64, activation="relu"), keras.layers.LayerNormalization()]
        return keras.Sequential(layers + [keras.layers.Dense(1)]), GaussianNLL()

    return Workload("deep 24x(Dense 64 + LayerNorm), 98 weights, 20k x 64", build, *regression_data())


def convnet_workload():
    """Returns a small convnet with TemperatureCE on 4k random 28x28 images."""
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

    return Workload("convnet 28x28, 4k", build, x, y)


class Perceptual(keras.losses.Loss):
    """A perceptual loss: distances in a frozen feature network (40 weights), and a learned weight."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        layers = [keras.Input((64,))]
        for _ in range(20):
            layers.append(keras.layers.Dense(64, activation="tanh"))
        self.features = keras.Sequential(layers, name="features")
        self.features.trainable = False
        self.log_weight = keras.Variable(0.0, name="log_weight")

    def call(self, y_true, y_pred):
        gap = ops.mean(ops.square(self.features(y_true) - self.features(y_pred)))
        return ops.exp(self.log_weight) * gap + ops.square(self.log_weight)


def perceptual_workload():
    """Returns an MLP 2x256 reconstructing its 64 inputs, with a loss that holds a frozen network."""
    x, _ = regression_data()

    def build():
        model = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(64)]
        )
        return model, Perceptual()

    return Workload("perceptual: MLP 2x256, its loss holds a frozen 20-layer network", build, x, x)


WORKLOADS = {
    "mlp": [mlp_workload],
    "deep": [deep_workload],
    "convnet": [convnet_workload],
    "perceptual": [perceptual_workload],
}
WORKLOADS["all"] = WORKLOADS["mlp"] + WORKLOADS["deep"] + WORKLOADS["convnet"] + WORKLOADS["perceptual"]

VARIANTS = {
    "plain fit": lambda d: [],
    "keras TensorBoard": lambda d: [keras.callbacks.TensorBoard(log_dir=d)],
    "keras TensorBoard(histogram_freq=1)": lambda d: [keras.callbacks.TensorBoard(log_dir=d, histogram_freq=1)],
    "LossParamTracker": lambda d: [LossParamTracker(log_dir=d)],
}
MEMORY_VARIANTS = ["plain fit", "LossParamTracker", "keras TensorBoard"]
if EARLY.backend != "tensorflow" and not EARLY.with_tensorflow:  # keras TensorBoard writes through TensorFlow
    VARIANTS = {name: make for name, make in VARIANTS.items() if "TensorBoard" not in name}
elif EARLY.backend != "tensorflow":
    import tensorflow  # noqa: E402, F401 - before any variant: every writer then writes through it


class EpochClock(keras.callbacks.Callback):
    """First in the list: process CPU and wall time from epoch 2's start to on_train_end, and each epoch's CPU.

    `last`, put last in the list, marks the end of the last epoch after every
    callback's on_train_end: the tracker settles the last epoch there, as it
    settles the others at the next epoch's start.
    """

    def __init__(self):
        super().__init__()
        self.marks = []  # process CPU at each epoch's start from epoch 2, and after the last on_train_end
        self.last = keras.callbacks.LambdaCallback(on_train_end=lambda logs: self.marks.append(time.process_time()))

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.start = (time.process_time(), time.perf_counter())
        if epoch >= 1:
            self.marks.append(time.process_time())

    def on_train_end(self, logs=None):
        self.end = (time.process_time(), time.perf_counter())

    @property
    def epochs(self):
        """CPU seconds of each timed epoch, its hooks (every callback's) included."""
        return np.diff(self.marks)


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


def rotated(names, r):
    """Returns names rotated left by r places, so that each repeat starts with another variant."""
    r %= len(names)
    return names[r:] + names[:r]


def median_interval(values, statistic=np.median):
    """Returns the statistic of values (the median) and the 5th and 95th percentiles of its bootstrap distribution.

    Args:
        values: 1-D array of paired ratios or differences, one per repeat.
        statistic: `np.median`, or `np.mean` where rare large values (a
            full garbage collection) are part of the cost.

    Returns:
        (statistic, low, high): the statistic and its 90% bootstrap interval
        from BOOTSTRAP_RESAMPLES resamples with replacement (numpy
        default_rng(0)).
    """
    rng = np.random.default_rng(0)
    resamples = values[rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))]
    low, high = np.percentile(statistic(resamples, axis=1), [5, 95])
    return statistic(values), low, high


def instance_interval(variant, plain, paired=np.subtract):
    """The median over blocks of `paired(variant, plain)`, each the mean over its instances, and the 5th
    and 95th percentiles of it over resamples of the blocks and of each variant's instances.

    Args:
        variant, plain: `[block, instance]` CPU seconds a step of each built instance in each block.
        paired: `np.subtract` (the extra) or `np.divide` (the ratio).

    Resampling the blocks alone is the run's noise; resampling the
    instances too adds the builds' (two builds of the same step differ),
    which a figure over these few builds carries. One instance each: the
    blocks' alone.
    """
    rng = np.random.default_rng(0)
    blocks, count = plain.shape
    resampled = np.empty(BOOTSTRAP_RESAMPLES)
    for r in range(BOOTSTRAP_RESAMPLES):
        picked = rng.integers(0, blocks, blocks)
        ours = variant[picked][:, rng.integers(0, count, count)].mean(axis=1)
        theirs = plain[picked][:, rng.integers(0, count, count)].mean(axis=1)
        resampled[r] = np.median(paired(ours, theirs))
    low, high = np.percentile(resampled, [5, 95])
    return np.median(paired(variant.mean(axis=1), plain.mean(axis=1))), low, high


def paired_figures(variant, plain):
    """The printed extra µs a step and step ratio of `variant` over `plain` (see `instance_interval`)."""
    extra = "{:.1f} [{:.1f}, {:.1f}]".format(*(1e6 * v for v in instance_interval(variant, plain)))
    ratio = "{:.4f} [{:.4f}, {:.4f}]".format(*instance_interval(variant, plain, np.divide))
    return extra, ratio


def fastest_ratio(variant, plain):
    """The variant's fastest epoch over plain fit's (CPU), and the 5th and 95th percentiles of it over resampled repeats.

    Args:
        variant, plain: `[repeat, epoch]` CPU seconds of each timed epoch.
    """
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(plain), size=(BOOTSTRAP_RESAMPLES, len(plain)))
    ratios = [variant[pick].min() / plain[pick].min() for pick in picks]
    low, high = np.percentile(ratios, [5, 95])
    return variant.min() / plain.min(), low, high


def compiled(workload, trained=False):
    """A fresh `(model, loss)` of the workload, seeded, compiled with Adam (under `STRATEGY` if set).

    `trained`: `make_trainable` after, so that the loss variables are the optimizer's.
    """
    keras.utils.set_random_seed(0)
    with STRATEGY.scope() if STRATEGY is not None else contextlib.nullcontext():
        model, loss = workload.build()
        model.compile(optimizer="adam", loss=loss)
    if trained:
        make_trainable(model, loss)
    return model, loss


def run_once(workload, variant, epochs, log_root):
    """Fits a fresh model with one variant's callbacks.

    Returns:
        (cpu, wall): process CPU seconds and wall seconds per epoch over epochs 2..epochs.
    """
    model, _ = compiled(workload)
    clock = EpochClock()
    log_dir = tempfile.mkdtemp(dir=log_root)
    callbacks = [clock] + VARIANTS[variant](log_dir) + [clock.last]
    model.fit(workload.x, workload.y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=callbacks)
    keras.backend.clear_session()
    cpu, wall = (end - start for end, start in zip(clock.end, clock.start))
    return cpu / (epochs - 1), wall / (epochs - 1), clock.epochs


def bench(workload, repeats, epochs, log_root):
    """Times every variant on one workload and prints the paired CPU and wall ratios against plain fit."""
    names = list(VARIANTS)
    for name in names:  # warm-up: imports, first traces, file systems
        run_once(workload, name, 2, log_root)
    cpu = {name: [] for name in names}
    wall = {name: [] for name in names}
    each = {name: [] for name in names}  # [repeat][epoch] CPU seconds
    for r in range(repeats):
        for name in rotated(names, r):
            seconds_cpu, seconds_wall, per_epoch = run_once(workload, name, epochs, log_root)
            cpu[name].append(seconds_cpu)
            wall[name].append(seconds_wall)
            each[name].append(per_epoch)
    cpu = {name: np.array(seconds) for name, seconds in cpu.items()}
    wall = {name: np.array(seconds) for name, seconds in wall.items()}
    each = {name: np.array(seconds) for name, seconds in each.items()}
    steps = math.ceil(len(workload.x) / BATCH)

    def interval(values):
        return "{:.3f} [{:.3f}, {:.3f}]".format(*median_interval(values))

    print(f"\n{workload.label}, batch {BATCH} ({steps} steps/epoch), {repeats} repeats, epochs 2..{epochs} timed")
    print(
        f"  {'variant':36s} {'CPU ms/step':>11s}  {'CPU ratio [90% CI]':>22s}  {'wall ratio [90% CI]':>22s}"
        f"  {'extra CPU ms/step':>17s}  {'fastest epochs [90% CI]':>23s}"
    )
    for name in names:
        row = f"  {name:36s} {np.median(cpu[name]) / steps * 1e3:11.3f}"
        if name == "plain fit":
            print(f"{row}  {'(baseline)':>22s}")
            continue
        ratio_cpu = interval(cpu[name] / cpu["plain fit"])
        ratio_wall = interval(wall[name] / wall["plain fit"])
        extra = np.median(cpu[name] - cpu["plain fit"]) / steps * 1e3
        fastest = "{:.3f} [{:.3f}, {:.3f}]".format(*fastest_ratio(each[name], each["plain fit"]))
        print(f"{row}  {ratio_cpu:>22s}  {ratio_wall:>22s}  {extra:17.3f}  {fastest:>23s}")
    print(
        "  (fastest epochs: the variant's fastest epoch over plain fit's, in CPU time, with a 90% bootstrap "
        "interval over repeats; a neighbour's load only ever adds time, so this is the steadiest figure on a busy machine)"
    )


def big_model():
    """Returns an MLP of 58.7M parameters over 1024 inputs."""
    return keras.Sequential(
        [keras.Input((1024,))]
        + [keras.layers.Dense(4096) for _ in range(4)]
        + [keras.layers.Dense(1024), keras.layers.Dense(1)]
    )


def memory_child(variant):
    """Trains big_model once with one variant's callbacks and prints its parameter count and peak RSS as JSON."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 1024)).astype("float32")
    y = rng.normal(size=(512, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = big_model()
    model.compile(optimizer="adam", loss=GaussianNLL())
    hooks = []  # per epoch hook call: its peak RSS over the RSS just before it
    with tempfile.TemporaryDirectory() as log_dir:
        callbacks = VARIANTS[variant](log_dir)
        for callback in callbacks:
            for name in ("on_epoch_begin", "on_epoch_end"):
                setattr(callback, name, measured(getattr(callback, name), hooks))
        with PeakRSS() as rss:
            model.fit(x, y, epochs=MEMORY_EPOCHS, batch_size=BATCH, verbose=0, callbacks=callbacks)
    print(json.dumps({"params": model.count_params(), "peak_rss": rss.peak, "hooks": max(hooks, default=0)}))


def measured(hook, extras):
    """Wraps a callback's hook so that each call appends its peak RSS above the RSS before it."""

    def wrapper(*args, **kwargs):
        before = psutil.Process().memory_info().rss
        with PeakRSS() as rss:
            result = hook(*args, **kwargs)
        extras.append(max(rss.peak, psutil.Process().memory_info().rss) - before)
        return result

    return wrapper


def memory(repeats, threads):
    """Runs each memory variant repeats times, each in a fresh subprocess, and prints the median peak RSS."""
    peaks = {name: [] for name in MEMORY_VARIANTS}
    hooks = {name: [] for name in MEMORY_VARIANTS}
    for r in range(repeats):
        for name in rotated(MEMORY_VARIANTS, r):
            command = [sys.executable, os.path.abspath(__file__), "--threads", str(threads), "--memory-child", name]
            stdout = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
            result = json.loads(stdout.strip().splitlines()[-1])
            peaks[name].append(result["peak_rss"])
            hooks[name].append(result["hooks"])
    model_bytes = result["params"] * 4
    print(
        f"\nMLP 1024-4x4096-1024-1, {result['params']:,} parameters ({model_bytes / MB:.0f} MB float32), "
        f"512 x 1024, batch {BATCH}, {MEMORY_EPOCHS} epochs, {repeats} repeats, fresh process each"
    )
    print(
        f"  {'variant':36s} {'peak RSS':>11s}  {'vs plain fit':>12s}  {'of model size':>13s}"
        f"  {'epoch hooks':>11s}  {'of model size':>13s}"
    )
    base = np.median(peaks["plain fit"])
    for name in MEMORY_VARIANTS:
        peak, hook = np.median(peaks[name]), np.median(hooks[name])
        print(
            f"  {name:36s} {peak / MB:8.0f} MB  {(peak - base) / MB:+9.1f} MB  {(peak - base) / model_bytes:+13.3f}"
            f"  {hook / MB:8.1f} MB  {hook / model_bytes:13.3f}"
        )
    print(
        "  (epoch hooks: the most a variant's on_epoch_begin or on_epoch_end raised the RSS above where it was "
        "just before, median over the fits; whole-fit peaks of fresh processes scatter by about 100 MB here)"
    )


class ManyWeights(keras.losses.Loss):
    """A loss of many learned scalar weights, one per term: the scale workload's 200 loss variables."""

    def __init__(self, count, **kwargs):
        super().__init__(**kwargs)
        self.weights_ = [keras.Variable(1.0, name=f"w_{i}") for i in range(count)]

    def call(self, y_true, y_pred):
        error = ops.mean(ops.square(y_true - y_pred))
        return ops.mean(ops.stack([w * error + ops.square(w - 1.0) for w in self.weights_]))


def scale_model():
    """Returns 500 parallel Dense(1) branches over 8 inputs, averaged: 1,000 weights, a cheap step.

    (Averaged, not summed: a sum of 500 branches diverges to NaN within a
    few epochs, and the hooks would time non-finite weights.)
    """
    inputs = keras.Input((8,))
    branches = [keras.layers.Dense(1, name=f"branch_{i}")(inputs) for i in range(SCALE_WEIGHTS // 2)]
    return keras.Model(inputs, keras.layers.Average()(branches))


class HookClock(keras.callbacks.Callback):
    """Wraps a callback: the process CPU time of its epoch hooks (begin and end), per epoch."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.per_epoch, self._spent = inner, [], 0.0
        for name in ("set_model", "set_params", "on_train_begin", "on_train_end", "on_train_batch_begin"):
            setattr(self, name, getattr(inner, name))

    def on_epoch_begin(self, epoch, logs=None):
        start = time.process_time()
        self.inner.on_epoch_begin(epoch, logs)
        self._spent = time.process_time() - start

    def on_epoch_end(self, epoch, logs=None):
        start = time.process_time()
        self.inner.on_epoch_end(epoch, logs)
        self.per_epoch.append(self._spent + time.process_time() - start)


class FitClock(keras.callbacks.Callback):
    """The fit's process CPU time over epochs 2..N, and the full garbage collections in them.

    Put first among the callbacks. A full (oldest-generation) collection
    takes a few hundred milliseconds in a process holding a framework; how
    often one comes depends on how many objects the hooks leave to be
    promoted, so its cost shows in the mean of the hooks (where it falls in
    a hook) and in the fit's time (where it falls in a step).
    """

    def __init__(self):
        super().__init__()
        self.cpu, self.collections, self._start, self._at = 0.0, [], None, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self._start = time.process_time()
            gc.callbacks.append(self._collected)

    def on_train_end(self, logs=None):
        if self._start is not None:
            self.cpu = time.process_time() - self._start
            gc.callbacks.remove(self._collected)

    def _collected(self, phase, info):
        if info["generation"] != 2:
            return
        if phase == "start":
            self._at = time.process_time()
        elif self._at is not None:
            self.collections.append(time.process_time() - self._at)


def scale(repeats, epochs):
    """Times the epoch hooks of each variant on a model of 1,000 weights whose loss holds 200 variables.

    A fresh model per repeat; each variant's hooks are timed alone (CPU),
    epochs 2..N, and printed as ms per epoch, median and mean (the mean
    holds the full garbage collections that fall in a hook), as a share of
    a 1-second epoch, beside keras TensorBoard's hooks on the same fit; and
    the whole fit's CPU time per epoch, beside plain fit's.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = rng.normal(size=(256, 1)).astype("float32")
    names = list(VARIANTS)
    spent = {name: [] for name in names}
    fits = {name: [] for name in names}  # CPU s per epoch over epochs 2..N, per repeat
    collections = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as log_root:
        for r in range(repeats):
            for name in rotated(names, r):
                keras.utils.set_random_seed(0)
                model = scale_model()
                model.compile(optimizer="sgd", loss=ManyWeights(SCALE_LOSS_VARIABLES))
                make_trainable(model)
                clocks = [HookClock(c) for c in VARIANTS[name](tempfile.mkdtemp(dir=log_root))]
                fit_clock = FitClock()
                model.fit(x, y, epochs=epochs, batch_size=len(x), verbose=0, callbacks=[fit_clock] + clocks)
                if clocks:
                    spent[name] += [sum(c.per_epoch[e] for c in clocks) for e in range(1, epochs)]
                fits[name].append(fit_clock.cpu / (epochs - 1))
                collections[name] += fit_clock.collections
                keras.backend.clear_session()
    print(
        f"\nscale: {len(scale_model().weights):,} model weights, {SCALE_LOSS_VARIABLES} loss variables "
        f"(attached), one step an epoch, {repeats} repeats x epochs 2..{epochs}"
    )
    print(
        f"  {'variant':36s} {'epoch hooks, CPU ms: median [90% CI]':>37s} {'mean [90% CI]':>22s}  {'of a 1 s epoch':>14s}"
        f"  {'fit CPU ms/epoch':>16s}  full collections"
    )
    for name in names:
        fit = np.median(fits[name]) * 1e3
        gcs = collections[name]
        collected = f"{len(gcs)} x {np.mean(gcs) * 1e3:.0f} ms" if gcs else "0"
        if not spent[name]:
            print(f"  {name:36s} {'':>37s} {'':>22s}  {'':>14s}  {fit:16.1f}  {collected}")
            continue
        hooks = np.array(spent[name]) * 1e3
        median, low, high = median_interval(hooks)
        mean, mean_low, mean_high = median_interval(hooks, np.mean)
        print(
            f"  {name:36s} {f'{median:.1f} [{low:.1f}, {high:.1f}]':>37s} {f'{mean:.1f} [{mean_low:.1f}, {mean_high:.1f}]':>22s}"
            f"  {mean / 1e3:14.1%}  {fit:16.1f}  {collected}"
        )
    print(
        "  (of a 1 s epoch: the mean; fit CPU: the whole fit's per epoch, steps included, median over repeats; "
        "full collections: oldest-generation garbage collections in epochs 2..N of all repeats)"
    )


def traced_ops(workload, variant, trained, log_root):
    """The number of operations in one traced TensorFlow training step of a variant's fit.

    Counted at the end of `model.train_step` (the tracker's hooks wrap it
    and run inside it), before TensorFlow's graph optimizations. `trained`:
    `make_trainable` first, so that the loss variables are the optimizer's.
    """
    import tensorflow as tf

    model, loss = compiled(workload, trained)
    counted, step = [], model.train_step

    def counting(data):
        outputs = step(data)
        if not tf.executing_eagerly():
            counted.append(len(tf.compat.v1.get_default_graph().get_operations()))
        return outputs

    model.train_step = counting
    callbacks = VARIANTS[variant](tempfile.mkdtemp(dir=log_root))
    model.fit(workload.x[: 2 * BATCH], workload.y[: 2 * BATCH], epochs=1, batch_size=BATCH, verbose=0, callbacks=callbacks)
    keras.backend.clear_session()
    return counted[0]


def op_counts():
    """Prints the operations of one traced step, plain fit against the tracker, on every workload.

    A figure no neighbour's load moves: each operation a step runs costs
    about a microsecond on one CPU thread (far more on a busy machine), so
    the ops the tracker adds bound its per-step cost where timings scatter.
    """
    print("\noperations in one traced training step (TensorFlow), before graph optimization")
    print(f"  {'workload':58s} {'plain fit':>9s}  {'tracker':>13s}  {'tracker, after make_trainable':>29s}")
    with tempfile.TemporaryDirectory() as log_root:
        for make in WORKLOADS["all"]:
            workload = make()
            plain, fixed_plain = (traced_ops(workload, "plain fit", trained, log_root) for trained in (False, True))
            tracked, fixed = (traced_ops(workload, "LossParamTracker", trained, log_root) for trained in (False, True))
            print(
                f"  {workload.label[:58]:58s} {plain:9d}  {f'+{tracked - plain}':>13s}  "
                f"{f'+{fixed - fixed_plain} (of {fixed_plain})':>29s}"
            )


def compiled_cost(workload, tracked, trained, log_root, probe=True):
    """XLA's figures of one variant's compiled JAX training step: `(instructions, flops, bytes accessed)`.

    The step is compiled anew, with `jax.jit`, as the fit ends and before the
    tracker's `on_train_end` removes its hooks (so that its capture is in the
    step, as in the fit's own); `probe=False`: the tracker's step without its
    curvature probe. XLA's cost analysis counts both branches of a condition.
    """
    import jax

    model, loss = compiled(workload, trained)
    costs = []

    def cost(logs):  # first in the list: before the tracker's on_train_end
        state = model._get_jax_state(
            trainable_variables=True, non_trainable_variables=True, optimizer_variables=True, metrics_variables=True
        )
        data = (jax.numpy.asarray(workload.x[:BATCH]), jax.numpy.asarray(workload.y[:BATCH]))
        step = jax.jit(model.train_step).lower(state, data).compile()
        analysis = step.cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        instructions = sum(" = " in line for line in step.as_text().splitlines())
        costs.append((instructions, analysis["flops"], analysis["bytes accessed"]))

    callbacks = [keras.callbacks.LambdaCallback(on_train_end=cost)]
    if tracked:
        callbacks += [LossParamTracker(log_dir=tempfile.mkdtemp(dir=log_root)), *([] if probe else [without_probe(model)])]
    model.fit(workload.x[: 2 * BATCH], workload.y[: 2 * BATCH], epochs=1, batch_size=BATCH, verbose=0, callbacks=callbacks)
    keras.backend.clear_session()
    return costs[0]


# The variants of `xla_costs`: `compiled_cost`'s arguments.
XLA_VARIANTS = {
    "plain fit": dict(tracked=False, trained=False),
    "tracker, no probe": dict(tracked=True, trained=False, probe=False),
    "tracker": dict(tracked=True, trained=False),
    "plain fit, fixed": dict(tracked=False, trained=True),
    "tracker, fixed": dict(tracked=True, trained=True),
}


def xla_costs():
    """Prints XLA's figures of the compiled JAX step, plain fit against the tracker's, on every workload.

    Like `op_counts`, figures no neighbour's load moves. The bytes the step
    accesses place what a step's extra time is made of: where the tracker's
    step reads more than plain fit's, at plain fit's own bytes a second
    that read is the time it adds.
    """
    print("\nthe compiled JAX training step, XLA's cost analysis: instructions, MFLOP, MB accessed")
    with tempfile.TemporaryDirectory() as log_root:
        for make in WORKLOADS["all"]:
            workload = make()
            print(f"  {workload.label}")
            costs = {name: compiled_cost(workload, log_root=log_root, **kw) for name, kw in XLA_VARIANTS.items()}
            for name, (instructions, flops, accessed) in costs.items():
                base = costs["plain fit, fixed" if name.endswith("fixed") else "plain fit"]
                extra = "" if name.startswith("plain") else (
                    f"  (+{instructions - base[0]}, {flops / base[1] - 1:+.2%}, {accessed / base[2] - 1:+.2%}:"
                    f" {(accessed - base[2]) / 1e6:+.3f} MB)"
                )
                print(f"    {name:20s} {instructions:6d} {flops / 1e6:10.2f} {accessed / 1e6:9.3f}{extra}")


def observe_gradient_alone(model, loss):
    """Hooks into `model` the least a TensorFlow step can do to observe its loss variables' gradient.

    The optimizer is not handed them, so Keras computes no gradient for them:
    a tape watching them alone around the step, their gradient taken from
    the objective as `compute_loss` returns it, and its squared norm added to
    a variable. The floor of the tracker's step where a loss variable is left
    to it (which also takes the model's gradients' norms, keeps their maxima
    and runs the curvature probe's condition).
    """
    import tensorflow as tf

    variables = [v.value for v in vars(loss).values() if isinstance(v, keras.Variable)]
    total = tf.Variable(0.0, trainable=False)
    tapes = []
    train_step, compute_loss = model.train_step, model.compute_loss

    def step(data):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            tapes.append(tape)
            try:
                return train_step(data)
            finally:
                tapes.pop()

    def objective(*args, **kwargs):
        value = compute_loss(*args, **kwargs)
        if tapes:  # the gradient taken inside the tape's context stops its recording
            total.assign_add(tf.add_n([tf.nn.l2_loss(g) for g in tapes[-1].gradient(value, variables)]))
        return value

    model.train_step, model.compute_loss = step, objective


def observe_norms_alone(model, loss):
    """Hooks into `model` the least a PyTorch step can do to observe what the tracker observes of it.

    Every gradient's norm, in one fused kernel as the tracker's (the
    optimizer's gradients where `optimizer.apply` is handed them, the loss
    variables' by a tensor hook, as the same `backward` computes them),
    added to a tensor on their device: no bookkeeping of which variable
    had a gradient, no loss-scale factor, no maxima, no probe. The least
    code that observes what the tracker's step observes on PyTorch: what
    the kernel and the hook cost.
    """
    import torch

    variables = [v.value for v in vars(loss).values() if isinstance(v, keras.Variable) and v.trainable]
    total = torch.zeros(len(model.trainable_variables) + len(variables))
    pending = [None] * len(variables)
    for i, variable in enumerate(variables):
        variable.register_hook(functools.partial(pending.__setitem__, i))
    apply = model.optimizer.apply

    def hooked(grads, trainable_variables=None):
        with torch.no_grad():
            norms = torch._foreach_norm([*grads, *pending], 2, dtype=torch.float32)
            total.add_(torch.stack(norms))
        return apply(grads, trainable_variables)

    model.optimizer.apply = hooked


def without_probe(model):
    """A callback that leaves the tracker's curvature probe out of `model`'s step: listed after the
    tracker, its on_train_begin runs after the tracker's and before the step is traced."""

    def leave_out(logs):
        vars(model)[CAPTURE]._off["curvature"] = "left out by the benchmark"

    return keras.callbacks.LambdaCallback(on_train_begin=leave_out)


def traced_step(workload, tracked, trained, log_root, alone=False, probe=True):
    """A variant's training step, callable alone, and the tracker's epoch hooks' CPU seconds.

    A fit of 4 epochs of 2 steps builds the step (traces or compiles it, with
    the tracker's hooks where `tracked`) and times the tracker's
    `on_epoch_begin` and `on_epoch_end`; its train function is kept as the
    fit ends. A traced step (TensorFlow) or compiled one (JAX) keeps the
    hooks after the tracker has removed them; on PyTorch the step is
    Python, so the capture is kept attached (one more user) until `close`.
    `trained`: `make_trainable` first. `alone`: plain fit with
    `observe_gradient_alone` (TensorFlow) or `observe_norms_alone`
    (PyTorch). `probe=False`: the tracker's
    step without its curvature probe, as where the probe stepped aside
    (TensorFlow, JAX).

    Returns:
        (step, hooks): `step()` runs one training step on the next batch
        and returns when it is done; `step.captured()` counts the steps the
        tracker's accumulators have counted (`None` for plain fit); `hooks`
        the CPU seconds of the tracker's epoch hooks per epoch over epochs
        2..4 (`None` for plain fit).
    """
    model, loss = compiled(workload, trained)
    if alone:
        (observe_norms_alone if keras.backend.backend() == "torch" else observe_gradient_alone)(model, loss)
    kept, hooks = {}, []

    def keep(logs):  # first in the list: before the tracker's on_train_end removes its hooks
        kept["function"] = model.train_function
        kept["capture"] = vars(model).get(CAPTURE)
        if keras.backend.backend() == "jax":  # the state the compiled step was traced for, its accumulator in it
            kept["metrics"] = list(model.metrics_variables)
            kept["state"] = model._get_jax_state(
                trainable_variables=True, non_trainable_variables=True, optimizer_variables=True, metrics_variables=True
            )
        if kept["capture"] is not None and keras.backend.backend() == "torch":
            kept["capture"]._users += 1  # the tracker's release leaves the hooks installed

    callbacks = [keras.callbacks.LambdaCallback(on_train_end=keep)]
    if tracked:
        tracker = LossParamTracker(log_dir=tempfile.mkdtemp(dir=log_root))
        for name in ("on_epoch_begin", "on_epoch_end"):
            setattr(tracker, name, timed(getattr(tracker, name), hooks))
        callbacks.append(tracker)
        if not probe:
            callbacks.append(without_probe(model))
    model.fit(workload.x[: 2 * BATCH], workload.y[: 2 * BATCH], epochs=4, batch_size=BATCH, verbose=0, callbacks=callbacks)
    batches = [(workload.x[i : i + BATCH], workload.y[i : i + BATCH]) for i in range(0, 8 * BATCH, BATCH)]
    step = STEPS[keras.backend.backend()](model, kept, batches)
    per_epoch = np.array(hooks).reshape(4, 2).sum(axis=1)[1:] if tracked else None
    return step, None if per_epoch is None else float(np.median(per_epoch))


class Step:
    """A variant's kept train function, called one step at a time (`__call__`, a backend's own)."""

    capture = None  # the tracker's capture, `None` for plain fit

    def captured(self):
        """The steps the tracker's accumulators have counted, `None` for plain fit."""
        return None if self.capture is None else self.capture.read_global()[0].captured

    def close(self):
        """Gives back what the timed steps held."""

    def restart(self):
        """Makes the next steps an epoch's first: the tracker's accumulators counted from zero, so that
        its curvature probe measures in the next `PROBE_STEPS` (nothing for plain fit)."""
        if self.capture is not None:
            self.capture.reset()


class TensorFlowStep(Step):
    """The traced train function, on a `tf.data` iterator of the batches."""

    def __init__(self, model, kept, batches):
        import tensorflow as tf

        self.function, self.capture = kept["function"], kept["capture"]
        x, y = (np.concatenate(parts) for parts in zip(*batches))
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True)
        self.iterator = iter(data.repeat())

    def __call__(self):
        self.function(self.iterator)  # a tf.function called eagerly returns once its step has run (on the CPU)


class TorchStep(Step):
    """Keras's train function, in Python, on the batches as torch tensors; the capture kept attached."""

    def __init__(self, model, kept, batches):
        import torch

        self.function, self.capture = kept["function"], kept["capture"]
        self.batches = itertools.cycle([[(torch.as_tensor(x), torch.as_tensor(y))] for x, y in batches])

    def __call__(self):
        self.function(next(self.batches))

    def close(self):
        if self.capture is not None:
            self.capture.release()  # the hooks kept for the timed steps


class JaxStep(Step):
    """The compiled train function on a copy of the model's state, fed back from step to step."""

    def __init__(self, model, kept, batches):
        import jax
        import jax.numpy as jnp

        self.function, self.capture, self.block = kept["function"], kept["capture"], jax.block_until_ready
        self.state = jax.tree.map(jnp.copy, kept["state"])  # the function donates it: the model's own arrays stay
        self.batches = itertools.cycle([tuple(map(jnp.asarray, batch)) for batch in batches])
        self.metric = None
        if self.capture is not None:
            self.metric = [id(v) for v in kept["metrics"]].index(id(self.capture._metric.sums_and_maxes))

    def __call__(self):
        _, self.state = self.function(self.state, self.batches)
        self.block(self.state)  # XLA runs asynchronously: the step's CPU time falls in its own block

    def captured(self):
        return None if self.metric is None else int(self.state[3][self.metric][0][-2])

    def restart(self):
        # The accumulator is in the state the step is fed, not the variable; its step count is what
        # the probe's condition reads (the probe's own figures, kept as they are, cost the same).
        if self.metric is not None:
            import jax.numpy as jnp

            metrics = list(self.state[3])
            metrics[self.metric] = jnp.zeros_like(metrics[self.metric])
            self.state = (*self.state[:3], type(self.state[3])(metrics))


STEPS = {"tensorflow": TensorFlowStep, "torch": TorchStep, "jax": JaxStep}


def timed(hook, seconds):
    """Wraps a callback's hook so that each call appends the process CPU seconds it took."""

    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return hook(*args, **kwargs)
        finally:
            seconds.append(time.process_time() - start)

    return wrapper


def step_costs(workload, blocks, log_root, instances=STEP_INSTANCES):
    """Prints the tracker's extra CPU time per traced step against plain fit's, paired per block, and its epoch hooks."""
    steps = math.ceil(len(workload.x) / BATCH)
    print(
        f"\n{workload.label}: {blocks} blocks of {STEP_BLOCK} steps a variant's instance, {instances} instances "
        f"a variant, {steps} steps an epoch"
    )
    print(
        f"  {'loss variable':22s} {'plain CPU ms/step':>17s}  {'tracker extra us/step [90% CI]':>31s}"
        f"  {'step ratio [90% CI]':>22s}  {'hooks ms/epoch':>14s}  {'plain epoch ms':>14s}  {'fit overhead':>12s}"
        f"  {'bound':>6s}"
    )
    probes = []  # (variant, the extra CPU of an epoch's first PROBE_STEPS steps)
    for trained in (False, True):
        builds = {"plain": {}, "tracker": {}}
        if keras.backend.backend() != "torch" and not trained:  # PyTorch's probe is Python, in an epoch's first steps
            builds["without the probe"] = {"probe": False}
        if keras.backend.backend() == "tensorflow" and not trained:
            builds["gradient alone"] = {"alone": True}
        if keras.backend.backend() == "torch" and not trained:
            builds["norms alone"] = {"alone": True}
        # Each variant built `instances` times, the order rotated per round: two builds of the same
        # code differ by tens of microseconds a step (JAX's compiled deep step by up to 437).
        variants, hook_seconds = {name: [] for name in builds}, []
        for r in range(instances):
            for name in rotated(list(builds), r):
                step, hooks = traced_step(workload, name != "plain", trained, log_root, **builds[name])
                variants[name].append(step)
                if name == "tracker":
                    hook_seconds.append(hooks)
        hooks = float(np.median(hook_seconds))
        runs = [(name, i) for name in variants for i in range(instances)]
        for name, i in runs:  # warm-up
            for _ in range(2 * STEP_BLOCK):
                variants[name][i]()
        before = sum(run.captured() for run in variants["tracker"])
        each = {name: [] for name in variants}  # per block, each instance's CPU seconds a step
        for b in range(blocks):
            block = {run: 0.0 for run in runs}
            for name, i in rotated(runs, b):
                start = time.process_time()
                for _ in range(STEP_BLOCK):
                    variants[name][i]()
                block[name, i] = (time.process_time() - start) / STEP_BLOCK
            for name in variants:
                each[name].append([block[name, i] for i in range(instances)])
        if sum(run.captured() for run in variants["tracker"]) - before < blocks * STEP_BLOCK * instances:
            raise RuntimeError("the tracker's step was not the one timed (a retrace dropped its hooks)")
        # An epoch's first PROBE_STEPS steps, where the probe measures (after make_trainable too: it checks the
        # fix): the same blocks, each after a restart.
        first = {"plain": [], "tracker": []}
        pairs = [(name, i) for name in first for i in range(instances)]
        for b in range(blocks):
            block = {name: 0.0 for name in first}
            for name, i in rotated(pairs, b):
                run = variants[name][i]
                run.restart()
                start = time.process_time()
                for _ in range(PROBE_STEPS):
                    run()
                block[name] += (time.process_time() - start) / instances
            for name, seconds in block.items():
                first[name].append(seconds)
        for run in variants["tracker"]:
            run.close()
        each = {name: np.array(times) for name, times in each.items()}
        cpu = {name: times.mean(axis=1) for name, times in each.items()}  # per block, the instances' mean
        plain_cpu, tracked_cpu = cpu["plain"], cpu["tracker"]
        extra, ratio = paired_figures(each["tracker"], each["plain"])
        variants = None
        keras.backend.clear_session()
        # Plain fit's own epoch right after (its steps and Keras's per-step work in Python), its loss variable untrained.
        epoch = float(np.median(run_once(workload, "plain fit", 4, log_root)[2]))
        step = np.median(plain_cpu)
        # The probe's part of those steps: their extra over the same steps' of the blocks above.
        in_first = np.array(first["tracker"]) - np.array(first["plain"])
        probe = max(np.median(in_first) - PROBE_STEPS * np.median(tracked_cpu - plain_cpu), 0.0)
        label = "after make_trainable" if trained else "left to the tracker"
        probes.append((label, "{:.0f} [{:.0f}, {:.0f}]".format(*(1e6 * v for v in median_interval(in_first)))))
        added = np.median(tracked_cpu - plain_cpu) * steps + hooks + probe
        print(
            f"  {label:22s} {step * 1e3:17.3f}  {extra:>31s}  {ratio:>22s}  {hooks * 1e3:14.2f}  {epoch * 1e3:14.0f}"
            f"  {1 + added / epoch:12.4f}  {1 + added / (step * steps):6.4f}"
        )
        # The same code built again: each of plain fit's instances against their mean, paired per block.
        apart = each["plain"]
        spread = ", ".join(
            "{:+.1f} [{:.1f}, {:.1f}]".format(*(1e6 * v for v in median_interval(column - apart.mean(axis=1))))
            for column in apart.T
        )
        print(f"    plain fit's {instances} instances, each against their mean, us/step: {spread}")
        for name, shown in (
            ("without the probe", "  without the probe"),
            ("gradient alone", "  its gradient alone"),
            ("norms alone", "  the norms alone"),
        ):
            if name not in cpu:
                continue
            other = cpu[name]
            extra, ratio = paired_figures(each[name], each["plain"])
            added = np.median(other - plain_cpu) * steps + (hooks if name == "without the probe" else 0)
            print(
                f"  {shown:22s} {'':17s}  {extra:>31s}  {ratio:>22s}  {'':14s}  {'':14s}"
                f"  {1 + added / epoch:12.4f}  {1 + added / (step * steps):6.4f}"
            )
    breakdown = {
        "tensorflow": "; without the probe: the tracker's step without its curvature probe's condition; its gradient "
        "alone: plain fit's step taking the loss variables' gradient and its norm, nothing else: the floor of observing "
        "a gradient the optimizer is not handed; both timed in the same blocks",
        "jax": "; without the probe: the tracker's step without its curvature probe's condition, timed in the same blocks",
        "torch": "; the norms alone: plain fit's step taking every gradient's norm in one fused kernel, the loss "
        "variables' by a tensor hook, and adding them to a tensor, nothing else: the least code that observes what "
        "the tracker observes of a step; timed in the same blocks",
    }
    for label, figure in probes:
        print(f"  an epoch's first {PROBE_STEPS} steps, {label}, where its probe measures: extra us {figure}")
    print(
        "  (fit overhead: (extra a step x steps + hooks + the probe's extra in an epoch's first steps) / plain fit's "
        "epoch, timed after the blocks; bound: over "
        "the blocks' steps alone instead, leaving out Keras's per-step work in Python, the same with and without the "
        f"tracker{breakdown.get(keras.backend.backend(), '')})"
    )


STRATEGY = None  # the tf.distribute strategy of --strategy mirrored


def set_threads(backend, threads, strategy=None):
    """Pins the backend to `threads` threads (0: its default); returns its name and version.

    With `strategy="mirrored"` (TensorFlow), also splits the CPU into 2
    logical devices and sets `STRATEGY` to a MirroredStrategy over them.
    """
    global STRATEGY
    if backend == "tensorflow":
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        if strategy == "mirrored":
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
            STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            return f"tensorflow {tf.__version__}, MirroredStrategy over 2 logical CPU devices"
        return f"tensorflow {tf.__version__}"
    if backend == "torch":
        import torch

        if threads:
            torch.set_num_threads(threads)
            torch.set_num_interop_threads(threads)
        return f"torch {torch.__version__}"
    import jax  # its threads are set by XLA_FLAGS, before it is imported

    return f"jax {jax.__version__}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="all", help="workload(s) to time (default: all)")
    parser.add_argument("--repeats", type=int, help="repeats per variant (default: 10, or 3 with --memory)")
    parser.add_argument(
        "--epochs", type=int, help="epochs per timed run, epochs 2..N timed (default: 4, or 16 with --scale)"
    )
    parser.add_argument(
        "--backend", choices=["tensorflow", "jax", "torch"], default="tensorflow", help="Keras backend (default: tensorflow)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="the backend's intra-op and inter-op threads; 0 for its default (default: 1)"
    )
    parser.add_argument(
        "--with-tensorflow", action="store_true",
        help="on jax or torch, leave TensorFlow importable (imported first) and time keras TensorBoard too",
    )
    parser.add_argument(
        "--strategy", choices=["mirrored"], help="train under tf.distribute.MirroredStrategy over 2 logical CPU devices"
    )
    parser.add_argument(
        "--memory", action="store_true", help=f"measure the peak RSS of a 58.7M-parameter model's {MEMORY_EPOCHS}-epoch fit instead"
    )
    parser.add_argument("--memory-child", choices=MEMORY_VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--scale", action="store_true",
        help=f"time the epoch hooks on {SCALE_WEIGHTS:,} model weights and {SCALE_LOSS_VARIABLES} loss variables instead",
    )
    parser.add_argument(
        "--ops", action="store_true", help="count the operations the tracker adds to a traced training step instead"
    )
    parser.add_argument(
        "--steps", action="store_true",
        help=f"time the training step alone, plain fit's against the tracker's, in blocks of {STEP_BLOCK} steps",
    )
    parser.add_argument(
        "--instances", type=int, default=STEP_INSTANCES,
        help=f"with --steps: times each variant is built and timed (default: {STEP_INSTANCES})",
    )
    args = parser.parse_args()
    args.epochs = args.epochs or (16 if args.scale else 4)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: epoch 1 is not timed")
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.memory and args.backend != "tensorflow":
        parser.error("--memory measures the TensorFlow backend")
    if args.ops and (args.backend == "torch" or args.strategy):
        parser.error("--ops counts the TensorFlow or JAX backend's step, on one device")
    if args.steps and args.strategy:
        parser.error("--steps times the step on one device")
    if args.strategy and (args.backend != "tensorflow" or args.memory):
        parser.error("--strategy times the TensorFlow backend's fit")
    version = set_threads(args.backend, args.threads, args.strategy)
    # The benchmark's losses hold untrained parameters on purpose.
    warnings.simplefilter("ignore", LossParamWarning)
    if args.memory_child:
        memory_child(args.memory_child)
        return
    print(f"{version}, keras {keras.__version__}, {os.cpu_count()} CPUs, {args.backend} threads {args.threads or 'default'}")
    if args.memory:
        memory(args.repeats or 3, args.threads)
        return
    if args.scale:
        scale(args.repeats or 3, args.epochs)
        return
    if args.ops:
        (xla_costs if args.backend == "jax" else op_counts)()
        return
    if args.steps:
        with tempfile.TemporaryDirectory() as log_root:
            for make in WORKLOADS[args.workload]:
                step_costs(make(), args.repeats or 200, log_root, args.instances)
        return
    with tempfile.TemporaryDirectory() as log_root:
        for make in WORKLOADS[args.workload]:
            bench(make(), args.repeats or 10, args.epochs, log_root)


if __name__ == "__main__":
    main()
