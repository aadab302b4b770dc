"""The report's rows as something to look at: sparklines, Markdown, self-contained HTML.

Pure functions of `report.summarize`'s rows (plain numbers and lists), so the
terminal report, a CI job summary, a CI artifact and a notebook's table all
show the same thing. No TensorFlow, no network: the HTML draws with inline SVG
and needs no script to be read.
"""

import html
import math
import re

from tensorboard_plugin.loss_params import metadata

_BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24

# Statuses that call for a fix, and how the HTML shades them.
_SHADES = {"bad": "#fde8e8", "ok": "#e8f5e9", "info": "#f1f3f4"}


def sparkline(values, width=SPARK_WIDTH):
    """A one-line text chart of `values` (an epoch each): one bar a column, blank where not finite.

    Longer series are cut into `width` columns, each shown by its last epoch.
    A flat series is a row of the lowest bar.
    """
    points = _columns(values, width)
    finite = [v for v in points if v is not None]
    if not finite:
        return " " * len(points)
    low, high = min(finite), max(finite)
    span = high - low
    return "".join(
        " " if v is None else _BARS[0 if span == 0 else min(len(_BARS) - 1, int((v - low) / span * len(_BARS)))]
        for v in points
    )


def svg(values, width=160, height=32, color="#1a73e8"):
    """An inline SVG line of `values` (an epoch each); breaks where not finite, a dot for one epoch."""
    points = [_finite(v) for v in values]
    finite = [v for v in points if v is not None]
    body = ""
    if finite:
        low, high = min(finite), max(finite)
        last = max(len(points) - 1, 1)

        def xy(i, v):
            # A flat series runs through the middle.
            y = height / 2 if high == low else height - 3 - (v - low) / (high - low) * (height - 6)
            return f"{2 + i * (width - 4) / last:.1f},{y:.1f}"

        runs, current = [], []
        for i, v in enumerate(points):
            if v is None:
                runs, current = runs + [current] if current else runs, []
            else:
                current.append(xy(i, v))
        runs += [current] if current else []
        for run in runs:
            if len(run) == 1:
                x, y = run[0].split(",")
                body += f'<circle cx="{x}" cy="{y}" r="1.5" fill="{color}"/>'
            else:
                body += f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(run)}"/>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">{body}</svg>'
    )


def markdown(summary):
    """A Markdown table per run: path, status, first -> last, gradient norm, fix (for a CI job summary)."""
    lines = ["# Loss parameters", ""]
    for name, run in summary.items():
        lines += [f"## {_code(name)}", ""]
        if not run["variables"] and not run["unreadable"]:
            lines += ["No loss variables.", ""]
            continue
        lines += ["| variable | status | first → last | trend | grad norm | fix |", "|---|---|---|---|---|---|"]
        for row in run["variables"]:
            lines.append(
                f"| {_code(row['path'])} | {_status_md(row)} | {_md(change(row))} | "
                f"`{sparkline(row['trajectory'])}` | {gradient(row)} | {_md(row['hint'])} |"
            )
        for path, reason in run["unreadable"].items():
            lines.append(f"| {_code(path)} | not readable | | | | {_md(reason)} |")
        lines += _weights_md(run), ""
    return "\n".join(lines).rstrip() + "\n"


def html_table(summary):
    """An HTML fragment: per run, a table of its loss variables with their trajectories (a notebook's view)."""
    parts = [f"<style>{_CSS}</style>"]
    for name, run in summary.items():
        parts.append(f'<div class="lpt-run"><h3>{html.escape(name)}</h3>')
        if not run["variables"] and not run["unreadable"]:
            parts.append("<p>No loss variables.</p></div>")
            continue
        parts.append(
            '<table class="lpt"><thead><tr><th>variable</th><th>status</th><th>trajectory</th>'
            "<th>gradient norm</th><th>first → last</th><th>fix</th></tr></thead><tbody>"
        )
        for row in run["variables"]:
            parts.append(
                f'<tr class="lpt-{_shade(row["status"])}"><td><code>{html.escape(row["path"])}</code></td>'
                f"<td>{_status_html(row)}</td><td>{svg(row['trajectory'])}</td>"
                f"<td>{svg(row['grad_trajectory'], color='#e8710a')}<br>{html.escape(gradient(row))}</td>"
                f"<td>{html.escape(change(row))}</td><td>{html.escape(row['hint'])}</td></tr>"
            )
        for path, reason in run["unreadable"].items():
            parts.append(
                f'<tr class="lpt-bad"><td><code>{html.escape(path)}</code></td><td>not readable</td>'
                f'<td colspan="4">{html.escape(reason)}</td></tr>'
            )
        parts.append("</tbody></table>")
        weights = run["model_weights"]
        if weights:
            counts = ", ".join(f"{n} {html.escape(s)}" for s, n in weights.items())
            parts.append(f"<p>Model weights: {counts}.</p>")
        parts.append("</div>")
    return "".join(parts)


def html_page(summary, skipped=None, incomplete=None):
    """One self-contained HTML file: no script, no network, inline SVG (for a CI artifact)."""
    notes = "".join(
        f"<li>Run <code>{html.escape(run)}</code> {what}: {html.escape(reason)}</li>"
        for what, named in (("skipped", skipped or {}), ("incomplete", incomplete or {}))
        for run, reason in named.items()
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Loss parameters</title></head><body style=\"font-family:sans-serif\"><h1>Loss parameters</h1>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + html_table(summary)
        + "</body></html>\n"
    )


def change(row):
    """"value first -> last", with the displayed values beside where the variable has a display."""
    text = f"{row['measure']} {fmt(row['first'])} -> {fmt(row['last'])}"
    if "shown" in row:
        shown = row["shown"]
        text += f" ({shown['label']} {fmt(shown['first'])} -> {fmt(shown['last'])})"
    return text


def fmt(value, missing="nan"):
    """A number of the rows as text: 4 significant digits, `nan`, `inf`; `missing` for no value."""
    if isinstance(value, list):
        flat = _flatten(value)
        shown = ", ".join(fmt(v) for v in flat[:4])
        return f"[{shown}{', ...' if len(flat) > 4 else ''}]"
    return missing if value is None else f"{float(value):.4g}"


def gradient(row):
    """A row's last gradient norm as text: `unknown` where it was not observed.

    The logs hold NaN for a gradient no step showed; a NaN or infinite one
    is shown as such for a variable said `non_finite` for its own values
    (not for the loss's: `loss_non_finite`).
    """
    value = row["grad_norm"]
    own = row["status"] == metadata.NON_FINITE and row.get("cause") != metadata.LOSS_NON_FINITE
    if value is None or (value == "NaN" and not own):
        return "unknown"
    return fmt(value)


def _finite(value):
    """A number of the rows as a float, `None` where it is missing or not finite (a gap in a chart)."""
    value = None if value is None else float(value)  # float("NaN"), float("Infinity") as the rows hold them
    return value if value is not None and math.isfinite(value) else None


def _columns(values, width):
    points = [_finite(v) for v in values]
    if len(points) <= width:
        return points
    return [points[min(len(points) - 1, (k + 1) * len(points) // width - 1)] for k in range(width)]


def _flatten(value):
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _shade(status):
    if status in (metadata.NOT_UPDATED, metadata.NO_GRADIENT, metadata.NON_FINITE):
        return "bad"
    return "ok" if status == metadata.TRAINING else "info"


def _status_md(row):
    status = f"**{row['status']}**" if _shade(row["status"]) == "bad" else row["status"]
    return f"{status} ({row['cause']})" if row["cause"] else status


def _status_html(row):
    status = html.escape(row["status"])
    return f"{status}<br><small>{html.escape(row['cause'])}</small>" if row["cause"] else status


def _weights_md(run):
    weights = run["model_weights"]
    if not weights:
        return ""
    return "\nModel weights: " + ", ".join(f"{n} {s}" for s, n in weights.items()) + "."


def _md(text):
    """Text safe in a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def printable(text):
    """`text` on one line of a terminal: its control characters written as escapes (`\\n`), the rest as is."""
    return re.sub("[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(text))


def _code(text):
    """`text` as a Markdown code span safe in a table cell: fenced by more backticks than it holds in a row."""
    text = _md(text)
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_CSS = (
    ".lpt{border-collapse:collapse;font:13px sans-serif}"
    ".lpt th,.lpt td{border:1px solid #dadce0;padding:4px 8px;text-align:left;vertical-align:middle}"
    + "".join(f".lpt-{name}{{background:{color}}}" for name, color in _SHADES.items())
)
