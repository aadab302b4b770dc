"""Runs every demo into one log directory (default ./logs), and prints the timings.

    python -m demo [--logdir logs] [--scale 1.0 | --quick] [--verbose 2]

Then `tensorboard --logdir logs` (tab "Loss Params") or
`python -m loss_param_tracker report logs`, which exits 1: the broken runs are
meant to be caught.
"""

import importlib
import time

from demo import DEMOS, _common


def run_all(log_dir="logs", scale=1.0, verbose=2):
    """Runs each demo's `run` in turn.

    Args:
        log_dir: Parent log directory of every run.
        scale: Multiplies every demo's number of epochs.
        verbose: Keras's `fit` verbosity; 0 also silences the tables.

    Returns:
        `{demo name: that demo's result dict}`.
    """
    results = {}
    for name in DEMOS:
        results[name] = importlib.import_module(f"demo.{name}").run(log_dir, scale, verbose)
    return results


def main(argv=None):
    args = _common.parse(__doc__.splitlines()[0], argv)
    start = time.perf_counter()
    results = run_all(args.logdir, args.scale, args.verbose)
    rows = [
        [name, run, result["seconds"][variant]]
        for name, result in results.items()
        for variant, run in result["runs"].items()
    ]
    _common.print_table("Training time per run (s)", ["demo", "run", "fit seconds"], rows)
    total = sum(row[2] for row in rows)
    wall = time.perf_counter() - start
    print(f"\nfit total {total:.1f} s, wall {wall:.1f} s; logs in {args.logdir}")
    print(f"  tensorboard --logdir {args.logdir}")
    print(f"  python -m loss_param_tracker report {args.logdir}")


if __name__ == "__main__":
    main()
