"""`loss-param-tracker report LOG_DIR`: the diagnosis of every run, in a terminal.

Prints, per run, each loss variable's path, shape, status, first -> last
value (the L2 norm for large tensors; "first" is the value before training
where the log holds it, else the first epoch's), last gradient norm and the
fix for anything broken. A run that cannot be read whole (a damaged event
file, summaries that break the format, an unexpected error) is never
half-reported: it is left out and named on stderr, "run NAME skipped:
REASON", and the other runs are reported. A variable whose own series cannot
be read (its shape changed during the run) is named in its run's block, with
the reason, and the run's other variables are reported.
A run whose event file ends in a record cut short (a crash, a full disk, a
file still being written) is reported up to that record, and named on stderr,
"run NAME incomplete: NOTE"; that alone does not change the exit code.

`--format` picks what is printed: `text` (the default: aligned columns, each
variable's trajectory as a one-line sparkline), `json` (`{"runs": {run:
report}, "skipped": {run: reason}, "incomplete": {run: note}}`; `--json` is
its alias), `markdown` (a table per run, for a CI job summary or a pull
request comment) or `html` (one self-contained page with each loss variable's
trajectory and gradient norm drawn in inline SVG, for a CI artifact). The
exit code is the same in every format.

Exit codes, so that it can gate a CI job:

- 0: every run was read and no loss variable is broken.
- 1: a loss variable is `not_updated`, `no_gradient`, `non_finite` or
  `no_minimum` in a run that was read. Wins over 3: it is a finding, whatever
  else could not be read.
- 2: nothing to report: LOG_DIR does not exist, is a file, or holds no
  loss_params summaries (and no run that could not be read).
- 3: a run or a variable could not be read, or reading failed unexpectedly,
  and no run that was read shows a broken loss variable. Never 0 when
  something was not read.
"""

import argparse
import json
import math
import sys
import types
import warnings

import numpy as np

from loss_param_tracker import render
from loss_param_tracker.reader import (
    IncompleteRunWarning,
    NoSummariesError,
    SkippedRunWarning,
    UnreadableVariableWarning,
    load,
)
from tensorboard_plugin.loss_params import metadata

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_NOTHING = 2
EXIT_UNREADABLE = 3

_EXIT_CODES = """\
exit codes:
  0  every run was read and no loss variable is broken
  1  a loss variable is not_updated, no_gradient, non_finite or no_minimum (wins over 3)
  2  nothing to report: LOG_DIR is missing, a file, or holds no loss_params summaries
  3  a run or a variable could not be read (named) and none read shows a broken variable"""


def summarize(runs):
    """Returns `{run: {"variables": [row], "model_weights": {status: count}}}` of loaded runs."""
    result = {}
    for name, run in runs.items():
        rows = [_row(v) for v in run.loss_variables.values()]
        weights = {}
        for variable in run.variables.values():
            if variable.role == "model" and variable.last_status:
                weights[variable.last_status] = weights.get(variable.last_status, 0) + 1
        result[name] = {
            "variables": rows,
            "model_weights": dict(sorted(weights.items())),
            "unreadable": dict(run.unreadable),
        }
    return result


_L2 = metadata.FIELDS[metadata.STATS].index("l2")


def _row(variable):
    """The report's row of a loss variable: its first value is the one before training, if logged."""
    initial = variable.initial
    if variable.value is not None:
        measure, epochs = "value", variable.value
        trajectory = epochs if epochs.ndim == 1 else np.sqrt(np.sum(np.square(epochs.reshape(len(epochs), -1)), 1))
    elif variable.stats is not None:
        measure, epochs = "l2 norm", variable.stats[:, _L2]
        initial = None if initial is None else initial[_L2]
    elif variable.norms is not None:  # a network the loss holds: the norm of all its weights
        measure, epochs, initial = "norm", variable.norms[:, 0], None
    else:
        measure, epochs, trajectory = "value", np.zeros(0), np.zeros(0)
    if measure != "value":
        trajectory = epochs
    first = initial if initial is not None else (epochs[0] if len(epochs) else None)
    last = epochs[-1] if len(epochs) else None
    status = variable.last_status or "unknown"
    cause = variable.last_cause
    if variable.grad_norm is not None:
        grads = variable.grad_norm[:, 0]
    elif variable.norms is not None:  # a network: the norm of all its weights' gradients
        grads = variable.norms[:, 1]
    else:
        grads = np.zeros(0)
    grad = grads[-1] if len(grads) else None
    row = {
        "path": variable.path,
        "shape": list(variable.shape),
        "status": status,
        "cause": cause,
        "measure": measure,
        "first": _plain(first),
        "last": _plain(last),
        "grad_norm": _plain(grad),
        "epochs": len(variable.steps),
        "hint": metadata.for_path(_hint(status, cause, network=measure == "norm"), variable.path),
        # Per epoch: the value (the L2 norm of a vector), and the mean gradient norm.
        "trajectory": [_plain(v) for v in trajectory],
        "grad_trajectory": [_plain(g) for g in grads],
    }
    if variable.display is not None and measure == "value" and len(epochs):
        # What the user reasons about, beside what the loss stores.
        display = variable.display
        row["shown"] = {
            "label": display.label,
            "first": _plain(display.apply(first)),
            "last": _plain(display.apply(last)),
        }
    return row


def _hint(status, cause, network):
    """The fix of a row: a network's own where nothing trains it (see `metadata.NETWORK_FIX`)."""
    if network and cause in metadata.ATTACHED_BY_THE_FIX:
        return metadata.NETWORK_FIX
    return metadata.advice(status, cause)[1]


def exit_code(summary, skipped=None):
    """The exit code of a report (see the module's docstring).

    Args:
        summary: What `summarize` returns, of the runs that were read.
        skipped: `{run: reason}` of the runs that could not be read.
    """
    failing = [
        row for run in summary.values() for row in run["variables"] if row["status"] in metadata.WARNED_STATUSES
    ]
    if failing:
        return EXIT_BROKEN
    unreadable = any(run.get("unreadable") for run in summary.values())
    return EXIT_UNREADABLE if skipped or unreadable else EXIT_OK


def render_text(summary):
    """The report as text: a block per run, its columns aligned across all runs, a sparkline a variable."""
    cells = {name: [_cells(row) for row in run["variables"]] for name, run in summary.items()}
    every = [row for rows in cells.values() for row in rows]
    widths = [max((len(row[i]) for row in every), default=0) for i in range(4)]
    lines = []
    for name, run in summary.items():
        lines.append(f"run {render.printable(name)}")
        if not run["variables"] and not run["unreadable"]:
            lines.append("  (no loss variables)")
        for row, (path, shape, status, change) in zip(run["variables"], cells[name]):
            lines.append(
                f"  {path:<{widths[0]}}  {shape:>{widths[1]}}  {status:<{widths[2]}}  "
                f"{change:<{widths[3]}}  {render.sparkline(row['trajectory'])}"
                f"   grad norm {render.gradient(row)}"
            )
            if row["cause"] in _SAID:
                lines.append(f"      {metadata.advice(row['status'], row['cause'])[0]}")
            if row["hint"]:
                lines.append(f"      fix: {row['hint']}")
        for path, reason in run["unreadable"].items():
            lines.append(f"  {render.printable(path)}  not readable: {render.printable(reason)}")
        if run["model_weights"]:
            counts = ", ".join(f"{n} {status}" for status, n in run["model_weights"].items())
            lines.append(f"  model weights: {counts}")
    return "\n".join(lines)


def main(argv=None):
    """Runs the command line; returns the exit code (see the module's docstring).

    `argv`: the arguments, or `None` when run as the command (the console
    script, `python -m loss_param_tracker`): its process then reads the
    event files without TensorFlow (`_read_without_tensorflow`).
    """
    if argv is None:
        _read_without_tensorflow()
    parser = argparse.ArgumentParser(
        prog="loss-param-tracker",
        description="Reads the summaries of LossParamTracker and reports each loss variable.",
        epilog=(
            "report exits 0 when healthy, 1 on a broken loss variable, 2 when there is "
            "nothing to report, 3 when a run could not be read: see 'report --help'."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report",
        help="the diagnosis of every run under LOG_DIR",
        description=(
            "Reports each loss variable of every run under LOG_DIR: status, first (before "
            "training, where logged) -> last value, last gradient norm, and the fix. A run "
            "that cannot be read is skipped and named on stderr; the others are reported."
        ),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("log_dir", metavar="LOG_DIR")
    report.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default; sparklines), json, markdown (a CI job summary) or html (one self-contained page)",
    )
    report.add_argument("--json", action="store_const", const="json", dest="format", help="the same as --format json")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            # Said below, one line each.
            warnings.simplefilter("ignore", SkippedRunWarning)
            warnings.simplefilter("ignore", IncompleteRunWarning)
            warnings.simplefilter("ignore", UnreadableVariableWarning)
            runs = load(args.log_dir)
    except (FileNotFoundError, NotADirectoryError, NoSummariesError) as error:
        print(f"loss-param-tracker: {error}", file=sys.stderr)
        return EXIT_NOTHING
    except Exception as error:  # noqa: BLE001 - one line that says why, never a traceback
        print(f"loss-param-tracker: could not read {args.log_dir!r}: {_one_line(error)}", file=sys.stderr)
        return EXIT_UNREADABLE
    summary, skipped = {}, dict(runs.skipped)
    for name, run in runs.items():
        try:
            summary.update(summarize({name: run}))
        except Exception as error:  # noqa: BLE001 - one run must not hide the rest
            skipped[name] = f"unexpected error while reporting it: {_one_line(error)}"
    skipped = dict(sorted(skipped.items()))
    for name, reason in skipped.items():
        print(f"run {name} skipped: {reason}", file=sys.stderr)
    for name, note in runs.incomplete.items():
        print(f"run {name} incomplete: {note}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({"runs": summary, "skipped": skipped, "incomplete": runs.incomplete}, indent=2))
    elif args.format == "markdown":
        print(render.markdown(summary), end="")
    elif args.format == "html":
        print(render.html_page(summary, skipped, runs.incomplete), end="")
    elif summary:
        print(render_text(summary))
    return exit_code(summary, skipped)


FORMATS = ("text", "json", "markdown", "html")


def _read_without_tensorflow():
    """Has TensorBoard read the event files through its own file layer in this process, not TensorFlow's.

    TensorBoard's `compat.tf` imports TensorFlow wherever it is installed,
    three of the command's four seconds, for a file system layer that the
    local directory `load` reads does not need; it takes its own stub where
    the module `tensorboard.compat.notf` can be imported, as in its builds
    without TensorFlow. Only in the command's own process, and only where
    nothing has imported TensorFlow (nor could have resolved `compat.tf` to it).
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def _plain(value):
    """A JSON-safe copy: floats and nested lists; NaN and +-Inf as the strings `"NaN"`,
    `"Infinity"`, `"-Infinity"` (as the plugin's routes send them); `None` for no value at all."""
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        value = float(value)
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return [_plain(v) for v in value]


# Causes the report spells out beside the status: a healthy one's, and a finite variable's non_finite.
_SAID = (metadata.OUTSIDE_OPTIMIZER, metadata.GRADIENT_UNKNOWN, metadata.LOSS_NON_FINITE)


def _cells(row):
    """The aligned columns of a row: path, shape, status, and "value first -> last"."""
    shape = "x".join("?" if d == -1 else str(d) for d in row["shape"]) or "scalar"
    shape = "network" if row["measure"] == "norm" else shape
    return render.printable(row["path"]), shape, row["status"], render.change(row)


def _one_line(error):
    return " ".join(f"{type(error).__name__}: {error}".split())
