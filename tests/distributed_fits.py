"""Real fits under several devices or workers: `python tests/distributed_fits.py MODE OUT_DIR [...]`.

Devices are configured before TensorFlow or JAX starts, so
`tests/test_distributed.py` runs each mode in fresh processes and asserts on
`OUT_DIR/<name>.json` and the event files under `OUT_DIR`:

- `mirrored OUT_DIR`: `tf.distribute.MirroredStrategy` over 2 logical CPU
  devices, and the same fits on one device, on the same global batches;
- `worker OUT_DIR INDEX`: one of 2 `MultiWorkerMirroredStrategy` workers
  (`TF_CONFIG` comes from the parent), one CPU device each;
- `jax OUT_DIR`: `keras.distribution.DataParallel` over 2 host devices
  (`XLA_FLAGS=--xla_force_host_platform_device_count=2`), and on one.
"""

import json
import os
import sys
import warnings

MODE, OUT = sys.argv[1], sys.argv[2]
os.environ["KERAS_BACKEND"] = "jax" if MODE == "jax" else "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if MODE == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    sys.modules["tensorflow"] = None

import keras  # noqa: E402
from keras import ops  # noqa: E402

from loss_param_tracker import LossParamTracker, LossParamWarning, load, make_trainable  # noqa: E402
from tests.models import make_data  # noqa: E402

keras.config.disable_traceback_filtering()
EPOCHS, BATCH = 3, 32


class GaussianNLL(keras.losses.Loss):
    """Gaussian negative log-likelihood with a learned log-variance, per sample.

    Per sample, as Keras's own losses: Keras 3.15 under a tf.distribute
    strategy trains a loss that returns its batch mean twice as fast as on
    one device (the value is not divided by the replicas' count).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_var = keras.Variable(0.0, name="log_var")

    def call(self, y_true, y_pred):
        return 0.5 * ops.exp(-self.log_var) * ops.square(y_true - y_pred) + 0.5 * self.log_var


class MeanNLL(GaussianNLL):
    """GaussianNLL that returns its batch mean, a scalar, as many published losses do."""

    def call(self, y_true, y_pred):
        return ops.mean(super().call(y_true, y_pred))


class Temperature(keras.losses.Loss):
    """The seed post's first pattern: a raw tf.Variable, created outside any strategy's scope."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import tensorflow as tf

        self.temperature = tf.Variable(1.0, name="temperature")

    def call(self, y_true, y_pred):
        return ops.square(y_true - y_pred) / self.temperature + ops.log(self.temperature)


def dataset():
    """The data as a tf.data pipeline of global batches, sharded by element across workers."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices(make_data()).batch(BATCH).with_options(options)


def fit(log_dir, loss, fix=False, scope=None, data=None, warned=None, fit_scope=None):
    """Builds and compiles a small model in `scope`, and fits it in `fit_scope` (none by default: as
    Keras's guide does); returns its tracker's diagnosis and the model.

    `warned`, a list, receives the text of every `LossParamWarning`; without it they are ignored.
    """
    import contextlib

    with scope or contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="hidden"), keras.layers.Dense(1, name="out")],
            name="net",
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss() if isinstance(loss, type) else loss)
    if fix:
        make_trainable(model)
    tracker = LossParamTracker(log_dir)
    with fit_scope or contextlib.nullcontext(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always" if warned is not None else "ignore", LossParamWarning)
        if data is None:
            model.fit(*make_data(), epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[tracker])
        else:  # MultiWorkerMirroredStrategy takes a dataset
            model.fit(data, epochs=EPOCHS, verbose=0, callbacks=[tracker])
    if warned is not None:
        warned += [str(w.message) for w in caught if w.category is LossParamWarning]
    return tracker.diagnosis, model


def norms(log_dir):
    """The gradient norms logged per epoch: `{path: [[mean, max], ...]}`, and the global one."""
    if not os.path.isdir(os.path.join(log_dir, "train")):
        return None
    run = load(log_dir)["train"]
    result = {"run/global": run.grad_norm[1].tolist()}
    for path, variable in run.variables.items():
        if variable.role == "loss":
            result[path] = variable.grad_norm.tolist()
        else:
            result[path] = variable.norms[:, 1:3].tolist()
    return result


def event_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs if "tfevents" in f)


def mirrored():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}
    for name, loss, fix in (("broken", GaussianNLL, False), ("fixed", GaussianNLL, True)):
        # "inside": `fit` called inside the strategy's scope too, where TensorFlow's
        # current strategy is the model's.
        for where, scope, fit_scope in (
            ("one", None, None),
            ("mirrored", strategy.scope(), None),
            ("inside", strategy.scope(), strategy.scope()),
        ):
            log_dir = os.path.join(OUT, f"{name}_{where}")
            diagnosis = fit(log_dir, loss, fix, scope, fit_scope=fit_scope)[0]
            result[f"{name}_{where}"] = {"diagnosis": diagnosis, "norms": norms(log_dir)}
    # A raw tf.Variable on the loss, replaced by make_trainable under the strategy.
    log_dir = os.path.join(OUT, "raw_mirrored")
    loss = Temperature()
    result["raw_mirrored"] = {"diagnosis": fit(log_dir, loss, True, strategy.scope())[0]}
    result["raw_mirrored"]["temperature"] = float(ops.convert_to_numpy(loss.temperature))
    # A loss that returns its batch mean, on one device and on two replicas; and one that returns
    # per-sample values, on two.
    for name, loss, scope in (
        ("scalar_one", MeanNLL, None),
        ("scalar_mirrored", MeanNLL, strategy.scope()),
        ("per_sample_mirrored", GaussianNLL, strategy.scope()),
    ):
        warned = []
        log_dir = os.path.join(OUT, name)
        result[name] = {"diagnosis": fit(log_dir, loss, True, scope, warned=warned)[0], "warned": warned}
        result[name]["norms"] = norms(log_dir)
    result["event_files"] = event_files(OUT)
    return "mirrored", result


def worker(index):
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    log_dir = os.path.join(OUT, "logs")
    diagnosis, _ = fit(log_dir, GaussianNLL, False, strategy.scope(), dataset())
    return f"worker{index}", {"diagnosis": diagnosis, "norms": norms(log_dir) if index == 0 else None}


def single_worker():
    """The same fit on one device, for the workers' comparison."""
    log_dir = os.path.join(OUT, "one")
    return "one", {"diagnosis": fit(log_dir, GaussianNLL, data=dataset())[0], "norms": norms(log_dir)}


def jax_data_parallel():
    import jax

    result = {"devices": len(jax.devices())}
    for where in ("one", "data_parallel"):
        if where == "data_parallel":
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
        for name, fix in (("broken", False), ("fixed", True)):
            log_dir = os.path.join(OUT, f"{name}_{where}")
            diagnosis, model = fit(log_dir, GaussianNLL, fix)
            result[f"{name}_{where}"] = {"diagnosis": diagnosis, "norms": norms(log_dir)}
            result[f"{name}_{where}"]["kernel_devices"] = len(model.weights[0].value.sharding.device_set)
    result["event_files"] = event_files(OUT)
    return "jax", result


def main():
    if MODE == "mirrored":
        name, result = mirrored()
    elif MODE == "worker":
        name, result = worker(int(sys.argv[3]))
    elif MODE == "one":
        name, result = single_worker()
    else:
        name, result = jax_data_parallel()
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
