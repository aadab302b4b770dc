"""The "Loss Params" TensorBoard plugin: JSON routes and the static frontend.

Every route reads through `context.data_provider`, so the plugin works on the
Python loader and on the Rust data server alike. The routes are documented,
with an example each, in `http_api.md` next to this file.
"""

import csv
import functools
import io
import json
import logging
import math
import os
import threading
import typing
import urllib.parse

import numpy as np
from tensorboard import context as tb_context
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider as tb_provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tensorboard_plugin.loss_params import metadata
from tensorboard_plugin.loss_params import series as series_lib

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
_MIME_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

_KIND_NAMES = {
    metadata.VALUE: "value",
    metadata.STATS: "stats",
    metadata.GRAD_NORM: "grad_norm",
    metadata.WEIGHT_NORMS: "norms",
}
_DIAGNOSIS_TAG = metadata.tag(metadata.RUN_DIAGNOSIS, metadata.DIAGNOSIS)
_GLOBAL_GRAD_NORM_TAG = metadata.tag(metadata.RUN_GRAD_NORM, metadata.GRAD_NORM)
_MODEL_TAG = metadata.tag(metadata.RUN_MODEL, metadata.WEIGHT_NORMS)
_NON_FINITE_JSON = {math.inf: "Infinity", -math.inf: "-Infinity"}
# The most characters of an error message an answer names a skipped run with.
_MAX_REASON = 300

logger = logging.getLogger("loss_param_tracker")


class LossParamsPlugin(base_plugin.TBPlugin):
    """Serves the loss variables' series, the model's weights and the diagnosis."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        """Instantiates the plugin from TensorBoard's `TBContext`."""
        self._data_provider = context.data_provider
        self._static = _read_static_files(STATIC_DIR)
        # {run: {tag: Series}} as last listed. A series' metadata never changes,
        # so the routes of one run reuse it and make a single read from the
        # provider (each provider call costs tens of ms on the Rust loader).
        self._listing = {}
        # {run: ((last diagnosis step, its wall time), the run's `/runs` entry or
        # None, [what `/runs` names as skipped of it])}; see runs_impl.
        self._entries = {}
        self._entries_lock = threading.Lock()

    def get_plugin_apps(self):
        return {
            "/runs": self._serve_runs,
            "/series": self._serve_series,
            "/series_multirun": self._serve_series_multirun,
            "/weights": self._serve_weights,
            "/weights_multirun": self._serve_weights_multirun,
            "/diagnosis": self._serve_diagnosis,
            "/static/*": self._serve_static,
        }

    def is_active(self):
        return False  # Activated by data: see data_plugin_names.

    def data_plugin_names(self):
        return (metadata.PLUGIN_NAME,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/static/index.js", tab_name="Loss Params")

    @wrappers.Request.application
    def _serve_runs(self, request):
        ctx, experiment = _context(request)
        return _respond_json(request, self.runs_impl(ctx, experiment))

    @wrappers.Request.application
    def _serve_series(self, request):
        run = _required(request, "run")
        path = _required(request, "variable")
        output = request.args.get("format", "json")
        if output not in ("json", "csv"):
            raise errors.InvalidArgumentError(
                f"Query parameter 'format' must be 'json' or 'csv'; received {output!r}."
            )
        samples = _samples(request)
        ctx, experiment = _context(request)
        body = self.series_impl(ctx, experiment, run, path, samples)
        if output == "csv":
            return http_util.Respond(
                request,
                _series_csv(body),
                "text/csv",
                headers=[("Content-Disposition", _attachment(f"{run}_{path}", ".csv"))],
            )
        return _respond_json(request, body)

    @wrappers.Request.application
    def _serve_series_multirun(self, request):
        path = _required(request, "variable")
        runs = _runs(request)
        samples = _samples(request)
        ctx, experiment = _context(request)
        return _respond_json(request, self.series_multirun_impl(ctx, experiment, runs, path, samples))

    @wrappers.Request.application
    def _serve_weights(self, request):
        run = _required(request, "run")
        layer = request.args.get("layer", "")
        samples = _samples(request)
        ctx, experiment = _context(request)
        return _respond_json(request, self.weights_impl(ctx, experiment, run, layer, samples))

    @wrappers.Request.application
    def _serve_weights_multirun(self, request):
        runs = _runs(request)
        layer = request.args.get("layer", "")
        samples = _samples(request)
        ctx, experiment = _context(request)
        return _respond_json(
            request, self.weights_multirun_impl(ctx, experiment, runs, layer, samples)
        )

    @wrappers.Request.application
    def _serve_diagnosis(self, request):
        run = _required(request, "run")
        ctx, experiment = _context(request)
        return _respond_json(request, self.diagnosis_impl(ctx, experiment, run))

    @wrappers.Request.application
    def _serve_static(self, request):
        # Only files present in static/ at start-up are served, looked up by
        # exact name: no path from the request ever reaches the file system.
        name = request.path.partition("/static/")[2]
        if name not in self._static:
            raise errors.NotFoundError(f"No static file {name!r}.")
        content, mimetype = self._static[name]
        return http_util.Respond(request, content, mimetype)

    def runs_impl(self, ctx, experiment):
        """Returns the runs, their variables and each variable's latest status.

        The frontend polls this route, so it costs one small provider call
        while nothing is written: the callback writes a diagnosis every
        epoch, and only a run whose diagnosis moved on (a new last step, or a
        new write time, as when a resumed run writes an epoch again) or a new
        run is listed again and has its latest statuses read. A run is listed
        from its first diagnosis on.

        A run that cannot be read (its latest diagnosis is damaged, the
        provider fails on its data) is left out of `runs` and named in
        `skipped`, with the reason, as is each tag left out of a listed run
        for its metadata: one bad run never hides the others.
        """
        heartbeats = self._data_provider.list_tensors(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=tb_provider.RunTagFilter(tags=[_DIAGNOSIS_TAG]),
        )
        last = {
            run: (int(tags[_DIAGNOSIS_TAG].max_step), float(tags[_DIAGNOSIS_TAG].max_wall_time))
            for run, tags in heartbeats.items()
            if _DIAGNOSIS_TAG in tags
        }
        with self._entries_lock:
            changed = [run for run in last if self._entries.get(run, (None,))[0] != last[run]]
            if changed or self._entries.keys() - last.keys():
                self._list_runs(ctx, experiment, changed, last)
            listed = [self._entries[run] for run in sorted(last) if run in self._entries]
        return {
            "runs": [entry for _, entry, _ in listed if entry],
            "skipped": [skip for _, _, skips in listed for skip in skips],
            "statuses": {
                s: {"explanation": metadata.EXPLANATIONS[s], "fix": metadata.FIXES[s]}
                for s in metadata.STATUSES
            },
            "causes": {
                c: {"explanation": explanation, "fix": fix}
                for c, (explanation, fix) in metadata.CAUSES.items()
            },
        }

    def _list_runs(self, ctx, experiment, runs, last):
        """Lists `runs` afresh and reads their latest statuses, for `runs_impl`.

        Runs no longer in `last` (deleted since) are forgotten.
        """
        invalid = {}
        listing, failed = _each_run(
            runs,
            lambda some: series_lib.list_series(
                self._data_provider, ctx, experiment, runs=some, invalid=invalid
            ),
        )
        wanted = {run: [tags[_DIAGNOSIS_TAG]] for run, tags in listing.items() if _DIAGNOSIS_TAG in tags}
        latest = self._read(ctx, experiment, wanted, downsample=1)
        failed.update(latest.skipped)
        entries = {run: entry for run, entry in self._entries.items() if run in last}
        for run in runs:
            reason, entry = failed.get(run), None
            if not reason and run in listing:
                try:
                    entry = _run_entry(run, listing[run], latest.data.get(run, {}), last[run])
                except Exception as error:  # noqa: BLE001 - one bad run must not hide the rest
                    reason = _reason(run, error)
            if reason:
                skips = [{"run": run, "reason": reason}]
            else:
                skips = [
                    {"run": run, "tag": tag, "reason": why}
                    for tag, why in sorted(invalid.get(run, {}).items())
                ]
            entries[run] = (last[run], entry, skips)
        # Copies, not in-place edits: other routes read these from other threads.
        gone = self._entries.keys() - last.keys()
        self._entries = entries
        self._listing = {r: t for r, t in {**self._listing, **listing}.items() if r not in gone}

    def series_impl(self, ctx, experiment, run, path, samples=None):
        """Returns the epoch series of one variable of one run (see `_series_bodies`)."""
        mine = self._series_of(ctx, experiment, run, path)
        if not mine:  # listed before this variable was written?
            self._listing = {r: tags for r, tags in self._listing.items() if r != run}
            mine = self._series_of(ctx, experiment, run, path)
        if not mine:
            raise errors.NotFoundError(f"Run {run!r} has no variable {path!r}.")
        return _only(run, *self._series_bodies(ctx, experiment, path, {run: mine}, samples))

    def series_multirun_impl(self, ctx, experiment, runs, path, samples=None):
        """Returns the series of one variable in several runs, read at once.

        Runs without the variable, or gone, are left out of the answer; runs
        that cannot be read are left out and named in `skipped`.
        """
        wanted = _found(runs, lambda run: self._series_of(ctx, experiment, run, path))
        mine = {r: m for r, m in wanted.items() if m}
        bodies, skipped = self._series_bodies(ctx, experiment, path, mine, samples)
        return {"variable": path, "runs": bodies, "skipped": _named(skipped)}

    def _series_bodies(self, ctx, experiment, path, series, samples):
        """`({run: body}, {run: reason})` of `series` (`{run: {tag: Series}}` of one variable).

        With `samples`, each series is a sample of at most that many epochs
        (the last among them), taken by the provider: a quick first view of
        a long run. See `_read` and `_bodies` for the runs left out.
        """
        wanted = {run: mine.values() for run, mine in series.items()}
        read = self._read(ctx, experiment, wanted, downsample=samples or series_lib.ALL_POINTS)
        return _bodies(
            series, read, lambda run, mine: _series_body(run, path, mine, read.data.get(run, {}), samples)
        )

    def weights_impl(self, ctx, experiment, run, layer="", samples=None):
        """Returns the norms of one run's model weights: all as one vector, or one layer's."""
        members = self._weights_of(ctx, experiment, run, layer)
        return _only(run, *self._weights_bodies(ctx, experiment, {run: members}, layer, samples))

    def weights_multirun_impl(self, ctx, experiment, runs, layer="", samples=None):
        """`weights_impl` of several runs in one read.

        Runs without the layer, or gone, are left out; runs that cannot be
        read are left out and named in `skipped`.
        """
        members = _found(runs, lambda run: self._weights_of(ctx, experiment, run, layer))
        bodies, skipped = self._weights_bodies(ctx, experiment, members, layer, samples)
        return {"layer": layer, "runs": bodies, "skipped": _named(skipped)}

    def _weights_of(self, ctx, experiment, run, layer):
        """The series `/weights` reads of one run for `layer` ('' for the whole model)."""
        tags = self._tags_of(ctx, experiment, run)
        networks = _networks(tags.values())
        held = {s.tag for weights in networks.values() for s in weights}
        weights = [s for s in tags.values() if s.role == "model" and s.kind == metadata.WEIGHT_NORMS]
        layers = sorted({_layer(s.path) for s in weights if s.tag not in held})
        # A weight right under a network's path has no layer apart from the network's own.
        network_layers = {
            network: sorted({_layer(s.path) for s in members} - {network})
            for network, members in networks.items()
        }
        if not layer:
            members = [tags[_MODEL_TAG]] if _MODEL_TAG in tags else []
        elif layer in networks:
            members = [tags[metadata.tag(layer, metadata.WEIGHT_NORMS)]]
        else:
            members = [s for s in weights if _layer(s.path) == layer]
            if not members:
                also = f", its networks {list(networks)} (and their layers)" if networks else ""
                raise errors.NotFoundError(
                    f"Run {run!r} has no layer {layer!r}; its layers are {layers}{also}."
                )
        extra = [tags[_GLOBAL_GRAD_NORM_TAG]] if _GLOBAL_GRAD_NORM_TAG in tags else []
        whole = not layer or layer in networks
        return _Weights(layers, network_layers, members, whole, extra)

    def _weights_bodies(self, ctx, experiment, members, layer, samples):
        """`({run: body}, {run: reason})` of `members` (`{run: _Weights}`), as `_series_bodies`."""
        wanted = {run: weights.members + weights.extra for run, weights in members.items()}
        read = self._read(ctx, experiment, wanted, downsample=samples or series_lib.ALL_POINTS)
        return _bodies(
            members,
            read,
            lambda run, weights: _weights_body(run, layer, weights, read.data.get(run, {}), samples),
        )

    def diagnosis_impl(self, ctx, experiment, run):
        """Returns every variable's status at every epoch of one run."""
        tags = self._tags_of(ctx, experiment, run)
        wanted = {run: [tags[_DIAGNOSIS_TAG]] if _DIAGNOSIS_TAG in tags else []}
        read = self._read(ctx, experiment, wanted, downsample=series_lib.ALL_POINTS)
        bodies, skipped = _bodies(
            {run: tags}, read, lambda run, tags: _diagnosis_body(run, tags, read.data.get(run, {}))
        )
        return _only(run, bodies, skipped)

    def _read(self, ctx, experiment, wanted, downsample):
        """`series_lib.read` of `wanted` (`{run: [Series]}`) that one bad or deleted run never fails.

        Returns a `_Read`: the data, the runs that could not be read (see
        `_each_run`), and the runs gone since they were listed. A run
        deleted while served leaves the provider's runs at its next reload,
        while this plugin still holds its listing: a run read empty is
        listed again, and forgotten when it is no longer there.
        """
        wanted = {run: list(series) for run, series in wanted.items()}
        data, skipped = _each_run(
            wanted,
            lambda some: series_lib.read(
                self._data_provider, ctx, experiment, {run: wanted[run] for run in some}, downsample
            ),
        )
        empty = [run for run, series in wanted.items() if series and run not in data and run not in skipped]
        gone = set()
        if empty:
            listing = series_lib.list_series(self._data_provider, ctx, experiment, runs=empty)
            gone = set(empty) - listing.keys()
            self._listing = {r: t for r, t in {**self._listing, **listing}.items() if r not in gone}
        return _Read(data, skipped, gone)

    def _tags_of(self, ctx, experiment, run):
        if run not in self._listing:
            listing = series_lib.list_series(self._data_provider, ctx, experiment, runs=[run])
            if run not in listing:
                raise errors.NotFoundError(f"No run {run!r} with loss_params data.")
            self._listing = {**self._listing, run: listing[run]}
        return self._listing[run]

    def _series_of(self, ctx, experiment, run, path):
        tags = self._tags_of(ctx, experiment, run)
        return {s.tag: s for s in tags.values() if s.path == path and s.kind in _KIND_NAMES}


class _Weights(typing.NamedTuple):
    """What `/weights` reads of one run for one layer.

    Attributes:
        layers: The model's layers, sorted (not those of the networks its loss holds).
        networks: `{network: its layers}` of the networks its loss holds.
        members: The series that make up the layer.
        whole: Whether `members` is one series of many weights as one vector
            (the model's or a network's), rather than weights to combine.
        extra: The global gradient norm's series, where there is one.
    """

    layers: list
    networks: dict
    members: list
    whole: bool
    extra: list


class _Read(typing.NamedTuple):
    """What `_read` gives.

    Attributes:
        data: `{run: {tag: (steps, values)}}`, as `series_lib.read`.
        skipped: `{run: reason}` of the runs that could not be read.
        gone: The runs that no longer exist.
    """

    data: dict
    skipped: dict
    gone: set


def _each_run(runs, call):
    """`call(runs)`, a dict by run; where it raises, `call([run])` run by run.

    One call for all runs is the quick way (a provider call costs tens of
    ms on the Rust loader); run by run finds the run whose data breaks it
    (the Python loader raises as it converts a damaged run's points, a VALUE
    of strings say) and serves the others.

    Returns:
        The dict, and `{run: reason}` of the runs whose call raised.
    """
    runs = list(runs)
    if not runs:
        return {}, {}
    try:
        return call(runs), {}
    except Exception:  # noqa: BLE001 - found run by run below
        pass
    result, failed = {}, {}
    for run in runs:
        try:
            result.update(call([run]))
        except Exception as error:  # noqa: BLE001 - one bad run must not fail the rest
            failed[run] = _reason(run, error)
    return result, failed


def _bodies(members, read, build):
    """`({run: build(run, members[run])}, {run: reason})` of a `_Read` of `members`.

    Runs gone are left out of both; runs the read skipped, or whose data
    `build` refuses (it does not match its metadata), are named with the
    reason.
    """
    bodies, skipped = {}, dict(read.skipped)
    for run, mine in members.items():
        if run in skipped or run in read.gone:
            continue
        try:
            bodies[run] = build(run, mine)
        except Exception as error:  # noqa: BLE001 - one bad run must not fail the rest
            skipped[run] = _reason(run, error)
    return bodies, skipped


def _only(run, bodies, skipped):
    """The body of a single-run route: a run gone, or that cannot be read, is a 404 that says so."""
    if run in skipped:
        raise errors.NotFoundError(f"Run {run!r} cannot be read: {skipped[run]}")
    if run not in bodies:
        raise errors.NotFoundError(f"No run {run!r} with loss_params data.")
    return bodies[run]


def _named(skipped):
    """`[{"run", "reason"}]` of `{run: reason}`, sorted: the `skipped` of an answer."""
    return [{"run": run, "reason": reason} for run, reason in sorted(skipped.items())]


def _reason(run, error):
    """One line, of bounded length, that says why `run` could not be read; logged too."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 1] + "…"
    _log_once(run, text)
    return text


@functools.lru_cache(maxsize=1024)
def _log_once(run, reason):
    """Logs a run that cannot be read once, not at every poll of the tab."""
    logger.warning("Run %r cannot be read: %s", run, reason)


def _found(runs, lookup):
    """`{run: lookup(run)}` of the runs that `lookup` finds (a NotFoundError leaves one out)."""
    found = {}
    for run in runs:
        try:
            found[run] = lookup(run)
        except errors.NotFoundError:
            continue
    return found


def _series_body(run, path, mine, data, samples):
    first = next(iter(mine.values()))
    steps = _union_steps(data.values())
    body = {
        "run": run,
        "path": path,
        "role": first.role,
        "shape": list(first.shape),
        "dtype": first.dtype,
        "sampled": _sampled(steps, samples),
        "steps": steps.tolist(),
    }
    for tag, one in mine.items():
        if tag not in data:
            continue
        values = _align(steps, *data[tag])
        if one.kind == metadata.VALUE:
            body["value"] = _json_floats(values.reshape(len(steps), -1).T)
        else:
            body[_KIND_NAMES[one.kind]] = _fields(one.kind, values)
    return body


def _run_entry(run, tags, latest, last):
    """The `/runs` entry of a run: `tags` its listing, `latest` its last diagnosis as read."""
    data = latest.get(_DIAGNOSIS_TAG)
    statuses = series_lib.diagnoses(data[1][-1:])[0] if data else {}
    step, wall_time = last
    return {
        "name": run,
        "last_step": step,
        "last_wall_time": wall_time,
        "variables": _variables(tags.values(), statuses),
    }


def _diagnosis_body(run, tags, data):
    """The `/diagnosis` body of a run: `tags` its listing, `data` its diagnosis series as read."""
    steps, values = data.get(_DIAGNOSIS_TAG, (np.zeros(0, np.int64), []))
    per_step = series_lib.statuses(values)
    # A network's weights have no status of their own: the network's row is theirs.
    paths = [v["path"] for v in _variables(tags.values(), {}) if "network" not in v]
    return {
        "run": run,
        "steps": steps.tolist(),
        "statuses": {p: [s.get(p, "") for s in per_step] for p in paths},
    }


def _weights_body(run, layer, weights, data, samples):
    steps = _union_steps(data.values())
    norms = [_align(steps, *data[s.tag]) for s in weights.members if s.tag in data]
    if not norms:  # nothing read: a layer without data (yet)
        combined = np.full((len(steps), len(metadata.FIELDS[metadata.WEIGHT_NORMS])), np.nan)
    elif weights.whole:
        combined = norms[0]
    else:
        combined = _combine(norms)
    body = {
        "run": run,
        "layer": layer,
        "layers": weights.layers,
        "networks": weights.networks,
        "weights": [s.path for s in weights.members if s.role == "model"],
        "sampled": _sampled(steps, samples),
        "steps": steps.tolist(),
        **_fields(metadata.WEIGHT_NORMS, combined),
    }
    if _GLOBAL_GRAD_NORM_TAG in data:
        values = _align(steps, *data[_GLOBAL_GRAD_NORM_TAG])
        body["global_grad_norm"] = _fields(metadata.GRAD_NORM, values)
    return body


def _sampled(steps, samples):
    """Whether a series read with `samples` may lack epochs: it came back full."""
    return bool(samples) and len(steps) >= samples


def _variables(tags, diagnosis):
    """The variables of a run's series, loss variables first, with their latest status and cause.

    A network the loss holds is one loss variable of kind `network`, with the
    count of its weights; those follow the model's own weights, each naming
    its network.
    """
    tags = list(tags)
    networks = _networks(tags)
    member_of = {s.path: network for network, weights in networks.items() for s in weights}
    variables = {}
    for one in tags:
        if one.role == "run" or one.kind not in _KIND_NAMES or one.kind == metadata.GRAD_NORM:
            continue
        variables[one.path] = {
            "path": one.path,
            "role": one.role,
            "shape": list(one.shape),
            "dtype": one.dtype,
            "kind": _KIND_NAMES[one.kind],
            "status": diagnosis.get(one.path, ("", ""))[0],
            "cause": diagnosis.get(one.path, ("", ""))[1],
        }
        if one.path in networks:
            variables[one.path].update(kind="network", weights=len(networks[one.path]))
        elif one.path in member_of:
            variables[one.path]["network"] = member_of[one.path]
    return sorted(
        variables.values(), key=lambda v: (v["role"] != "loss", "network" in v, v["path"])
    )


def _networks(tags):
    """`{path: [its weights' Series]}` of the networks a run's loss holds, by path.

    A network is logged as a whole (a loss series of kind WEIGHT_NORMS at its
    path, e.g. `loss/Perceptual/features`) and weight by weight (model series
    of that kind under its path). A weight under two networks' paths belongs
    to the nearer one.
    """
    networks = {
        s.path: [] for s in tags if s.role == "loss" and s.kind == metadata.WEIGHT_NORMS
    }
    if not networks:
        return networks
    for one in tags:
        if one.role == "model" and one.kind == metadata.WEIGHT_NORMS:
            parts = one.path.split("/")
            for end in range(len(parts) - 1, 0, -1):
                network = "/".join(parts[:end])
                if network in networks:
                    networks[network].append(one)
                    break
    return dict(sorted(networks.items()))


def _layer(path):
    """A weight's layer: its path without the last component."""
    return path.rsplit("/", 1)[0]


def _combine(norms):
    """Combines weights' WEIGHT_NORMS rows ([steps, 4] each) into their layer's.

    Norms and gradient norms combine as root-sum-squares. A weight's ratio is
    its change over its norm at the epoch's start; the layer's is near
    sqrt(sum change^2) / sqrt(sum norm^2), over the weights whose ratio is
    known (not a bias that started at zero).
    """
    stacked = np.stack(norms)  # [weights, steps, 4]
    norm, grad_mean, grad_max, ratio = (stacked[..., i] for i in range(4))
    known = np.isfinite(ratio)
    with np.errstate(divide="ignore", invalid="ignore"):
        update_ratio = np.sqrt(
            np.sum(np.where(known, ratio * norm, 0.0) ** 2, axis=0)
            / np.sum(np.where(known, norm, 0.0) ** 2, axis=0)
        )
    rss = [np.sqrt(np.sum(x**2, axis=0)) for x in (norm, grad_mean, grad_max)]
    return np.stack([*rss, update_ratio], axis=-1)


def _fields(kind, values):
    """`{field: JSON floats}` of a vector kind's [steps, fields] array."""
    return dict(zip(metadata.FIELDS[kind], _json_floats(values.T)))


def _union_steps(data):
    steps = [s for s, _ in data]
    return np.unique(np.concatenate(steps)) if steps else np.zeros(0, np.int64)


def _align(steps, own_steps, values):
    """Stacks `values` on the rows of `steps`; steps this series lacks are NaN."""
    stacked = series_lib.stack(values)
    if np.array_equal(steps, own_steps):
        return stacked
    out = np.full((len(steps),) + stacked.shape[1:], np.nan)
    out[np.searchsorted(steps, own_steps)] = stacked
    return out


def _json_floats(array):
    """A list for JSON, at float32 precision, where NaN and +-Inf (which JSON lacks) become strings.

    The summaries hold float32 values; each is written in the fewest digits
    that read back to the same float32 (`0.1`, not `0.10000000149011612`),
    which halves the text to encode, send and parse.
    """
    array = _shortest_float32(np.asarray(array, dtype=np.float64))
    if np.isfinite(array).all():
        return array.tolist()
    return np.vectorize(_json_float, otypes=[object])(array).tolist()


def _shortest_float32(x):
    """Rounds each value to the fewest significant digits (6 to 9) that give back its float32.

    Nine digits always find a float32 again. The rounding multiplies or
    divides by exact powers of ten, so the double it gives is the nearest to
    that decimal, and JSON writes it in those few digits; below about 1e-13,
    where the powers are no longer exact, it may take up to 17 (still the
    same float32).
    """
    out = x.astype(np.float32).astype(np.float64).ravel()
    target = out.astype(np.float32)
    todo = np.isfinite(out) & (out != 0)
    with np.errstate(over="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(np.abs(np.where(todo, out, 1.0))))
        for digits in range(6, 10):
            index = np.flatnonzero(todo)
            if not len(index):
                break
            shift = digits - 1 - exponent[index]
            up, down = 10.0 ** np.maximum(shift, 0), 10.0 ** np.maximum(-shift, 0)
            rounded = np.round(out[index] * up / down) * down / up
            found = rounded.astype(np.float32) == target[index]
            out[index[found]] = rounded[found]
            todo[index[found]] = False
    return out.reshape(x.shape)


def _json_float(x):
    if math.isnan(x):
        return "NaN"
    return _NON_FINITE_JSON.get(x, x)


def _series_csv(body):
    columns = {"step": body["steps"]}
    for i, element in enumerate(body.get("value", [])):
        columns[f"value[{i}]"] = element
    for kind in ("stats", "grad_norm", "norms"):
        for field, values in body.get(kind, {}).items():
            columns[f"{kind}.{field}"] = values
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values()))
    return out.getvalue()


def _attachment(name, extension):
    """A `Content-Disposition` that downloads `name` + `extension`, per RFC 6266.

    Header values travel as Latin-1, so a run or variable named `log_σ` (a
    legal attribute name) cannot be put there as is: an ASCII `filename`
    serves old clients, and `filename*` (RFC 5987) gives the name in UTF-8.
    """
    filename = "".join(c if c.isalnum() else "_" for c in name) + extension
    fallback = "".join(c if c.isascii() else "_" for c in filename)
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _read_static_files(directory):
    files = {}
    for name in sorted(os.listdir(directory)):
        mimetype = _MIME_TYPES.get(os.path.splitext(name)[1])
        if mimetype:
            with open(os.path.join(directory, name), "rb") as f:
                files[name] = (f.read(), mimetype)
    return files


def _context(request):
    return tb_context.from_environ(request.environ), plugin_util.experiment_id(request.environ)


def _runs(request):
    runs = [r for r in request.args.getlist("run") if r]
    if not runs:
        raise errors.InvalidArgumentError(
            "Missing query parameter 'run': pass it once per run, ?run=a&run=b (see http_api.md)."
        )
    return runs


def _samples(request):
    """The optional `samples` parameter: a positive int, or None for every epoch.

    Its length is checked before `int()`, which refuses a text of over
    4,300 digits with a ValueError (a 500) and takes long on shorter ones.
    """
    text = request.args.get("samples")
    if text is None:
        return None
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(series_lib.ALL_POINTS))
    if not digits or not 1 <= int(text) <= series_lib.ALL_POINTS:
        shown = text if len(text) <= 20 else f"{text[:20]}… ({len(text)} characters)"
        raise errors.InvalidArgumentError(
            f"Query parameter 'samples' must be a positive integer up to {series_lib.ALL_POINTS} "
            f"(at most that many epochs per series), or left out for every epoch; received {shown!r}."
        )
    return int(text)


def _required(request, name):
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(
            f"Missing query parameter {name!r}: pass ?{name}=... (see the plugin's http_api.md)."
        )
    return value


def _respond_json(request, body):
    return http_util.Respond(
        request, json.dumps(body, allow_nan=False, separators=(",", ":")), "application/json"
    )
