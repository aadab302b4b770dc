"""`loss-param-tracker report LOG_DIR`: the diagnosis of every run, in a terminal.

Exit codes: 0 when every loss variable is fine, 1 when any is `not_updated`,
`no_gradient` or `non_finite` (so it can gate a CI job), 2 on bad input.
"""

import argparse
import json
import math
import sys

import numpy as np

from loss_param_tracker.diagnosis import WARNED_STATUSES
from loss_param_tracker.reader import NoSummariesError, load
from tensorboard_plugin.loss_params import metadata


def summarize(runs):
    """Returns `{run: {"variables": [row], "model_weights": {status: count}}}` of loaded runs."""
    result = {}
    for name, run in runs.items():
        rows = [_row(v) for v in run.loss_variables.values()]
        weights = {}
        for variable in run.variables.values():
            if variable.role == "model" and variable.last_status:
                weights[variable.last_status] = weights.get(variable.last_status, 0) + 1
        result[name] = {"variables": rows, "model_weights": dict(sorted(weights.items()))}
    return result


def _row(variable):
    if variable.value is not None:
        first, last, measure = variable.value[0], variable.value[-1], "value"
    else:
        l2 = variable.stats[:, metadata.FIELDS[metadata.STATS].index("l2")]
        first, last, measure = l2[0], l2[-1], "l2 norm"
    status = variable.last_status or "unknown"
    cause = str(variable.cause[-1]) if variable.cause is not None and len(variable.cause) else ""
    grad = variable.grad_norm[-1][0] if variable.grad_norm is not None else math.nan
    return {
        "path": variable.path,
        "shape": list(variable.shape),
        "status": status,
        "cause": cause,
        "measure": measure,
        "first": _plain(first),
        "last": _plain(last),
        "grad_norm": _plain(grad),
        "epochs": len(variable.steps),
        "hint": metadata.advice(status, cause)[1],
    }


def exit_code(summary):
    failing = [
        row for run in summary.values() for row in run["variables"] if row["status"] in WARNED_STATUSES
    ]
    return 1 if failing else 0


def render(summary):
    lines = []
    for name, run in summary.items():
        lines.append(f"run {name}")
        if not run["variables"]:
            lines.append("  (no loss variables)")
        for row in run["variables"]:
            shape = "x".join(str(d) for d in row["shape"]) or "scalar"
            lines.append(
                f"  {row['path']:40s} {shape:>10s}  {row['status']:13s} "
                f"{row['measure']} {_fmt(row['first'])} -> {_fmt(row['last'])}   "
                f"grad norm {_fmt(row['grad_norm'], missing='unknown')}"
            )
            if row["cause"] in _SAID:
                lines.append(f"      {metadata.advice(row['status'], row['cause'])[0]}")
            if row["hint"]:
                lines.append(f"      fix: {row['hint']}")
        if run["model_weights"]:
            counts = ", ".join(f"{n} {status}" for status, n in run["model_weights"].items())
            lines.append(f"  model weights: {counts}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="loss-param-tracker",
        description="Reads the summaries of LossParamTracker and reports each loss variable.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="the diagnosis of every run under LOG_DIR")
    report.add_argument("log_dir", metavar="LOG_DIR")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        summary = summarize(load(args.log_dir))
    except (FileNotFoundError, NoSummariesError) as error:
        print(f"loss-param-tracker: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"runs": summary}, indent=2) if args.json else render(summary))
    return exit_code(summary)


def _plain(value):
    """A JSON-safe copy: floats and nested lists, NaN and Inf as None."""
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return float(value) if math.isfinite(value) else None
    return [_plain(v) for v in value]


# Causes of a healthy status that the report spells out all the same.
_SAID = (metadata.OUTSIDE_OPTIMIZER, metadata.GRADIENT_UNKNOWN)


def _fmt(value, missing="nan"):
    if isinstance(value, list):
        flat = np.ravel(np.array(value, dtype=object))
        shown = ", ".join(_fmt(v) for v in flat[:4])
        return f"[{shown}{', ...' if flat.size > 4 else ''}]"
    return missing if value is None else f"{value:.4g}"
