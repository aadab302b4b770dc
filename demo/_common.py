"""What the demos share: one tracked fit, the command line and the printed table."""

import argparse
import dataclasses
import os
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from loss_param_tracker import LossParamTracker, make_trainable  # noqa: E402

# --quick: about a fifth of the epochs, enough for the loss parameters to reach
# their fixed points roughly (the tests use it).
QUICK_SCALE = 0.2


@dataclasses.dataclass
class Fitted:
    """One trained variant: the model, its loss, the tracker and the wall time of `fit`."""

    model: keras.Model
    loss: keras.losses.Loss
    tracker: LossParamTracker
    seconds: float


def epochs_for(epochs, scale):
    return max(1, round(epochs * scale))


def fit_run(
    build, x, y, log_dir, name, *, fix, epochs, batch_size, learning_rate, verbose, seed=0, display=None
):
    """Trains a fresh model and loss from `build()`, tracked in `log_dir/name`.

    Args:
        build: Returns `(model, loss)`, both new.
        x: The inputs.
        y: The targets.
        log_dir: The parent log directory.
        name: The run's name, `<demo>_<variant>`.
        fix: Whether to call `make_trainable(model, loss)` before `fit`.
        epochs: Number of epochs.
        batch_size: Batch size.
        learning_rate: Adam's learning rate.
        verbose: Keras's `verbose` for `fit` (0, 1 or 2); non-zero also prints a header.
        seed: Seeds Python, numpy and TensorFlow before building, so every
            variant starts from the same weights and sees the same batches.
        display: The tracker's `display`: how the loss's latent parameters
            are shown (the value the demo's answer speaks of).

    Returns:
        A `Fitted`.
    """
    keras.utils.set_random_seed(seed)
    model, loss = build()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    if fix:
        make_trainable(model, loss)
    run_dir = os.path.join(log_dir, name)
    # A second run into the same folder would add an event file whose steps
    # restart at 0 beside the old one; start each demo run clean instead.
    shutil.rmtree(run_dir, ignore_errors=True)
    tracker = LossParamTracker(log_dir=run_dir, display=display)
    if verbose:
        print(f"\n== {name} ({'make_trainable' if fix else 'loss as written'})", flush=True)
    start = time.perf_counter()
    data = batches(x, y, batch_size, seed)  # shuffles itself: shuffle=False keeps Keras quiet
    model.fit(data, epochs=epochs, shuffle=False, verbose=verbose, callbacks=[tracker])
    return Fitted(model, loss, tracker, time.perf_counter() - start)


def batches(x, y, batch_size, seed):
    """A dataset of `(x, y)` batches, shuffled anew every epoch, reproducibly.

    Not `fit(x, y, shuffle=True)`: once `keras.utils.set_random_seed` has run,
    Keras 3.15 with TensorFlow 2.21 shuffles numpy arrays into the same order
    every epoch, so every epoch sees the same batches; for in-batch negatives
    (the contrastive demo) that means the same negatives forever.
    """
    x = tuple(x) if isinstance(x, list) else x  # tf.data reads a list as one tensor
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def print_table(title, header, rows):
    """Prints a small aligned table: floats with 4 decimals."""
    cells = [
        [f"{c:.4f}" if isinstance(c, float) else str(c) for c in row]
        for row in [header, *rows]
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for row in cells:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)))


def parser(description):
    """The options every demo takes: --logdir, --scale, --quick, --verbose."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--logdir", default="logs", help="parent log directory (default ./logs)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the number of epochs")
    p.add_argument("--quick", action="store_true", help=f"same as --scale {QUICK_SCALE}")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras fit verbosity")
    return p


def parse(description, argv=None):
    args = parser(description).parse_args(argv)
    if args.quick:
        args.scale = QUICK_SCALE
    if args.scale <= 0:
        raise SystemExit(f"--scale must be positive; received {args.scale}")
    return args


def result(name, fitted, variables, learned, analytic, **extra):
    """The dict each demo's `run` returns: run names, tracked paths, learned and analytic values, fit times.

    Args:
        name: The demo's name, the prefix of its runs (`<name>_<variant>`).
        fitted: `{variant: Fitted}`.
        variables: `{variant: the loss variable's tracker path}`.
        learned, analytic: What the demo learned, and the right answers.
        **extra: Further entries (e.g. the initial value).
    """
    return {
        "runs": {v: f"{name}_{v}" for v in fitted},
        "variables": variables,
        "learned": learned,
        "analytic": analytic,
        **extra,
        "seconds": {v: f.seconds for v, f in fitted.items()},
    }


def main(run, doc, argv=None):
    """The command line of one demo: parses the common options and calls `run`."""
    args = parse(doc.splitlines()[0], argv)
    run(args.logdir, args.scale, args.verbose)
