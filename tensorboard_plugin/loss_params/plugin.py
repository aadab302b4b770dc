"""The "Loss Params" TensorBoard plugin: its routes and the static frontend.

Every route validates its query, calls an `*_impl` that returns its body,
and answers with `http_util.Respond`. The layers run one way: an `*_impl`
gets data from `cache.py` (which reads through `context.data_provider`, so
the plugin works on the Python loader and on the Rust data server alike,
and never builds a body) and hands it to the builders in `bodies.py`. The
routes are documented, with an example each, in `http_api.md` next to this
file; `get_plugin_apps` is the one list of them (the fuzz tests take it).
"""

import os
import urllib.parse
import zlib

from tensorboard import context as tb_context
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tensorboard_plugin.loss_params import bodies, cache, metadata
from tensorboard_plugin.loss_params import series as series_lib

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
# The widest chart `columns` may ask for: wider than any screen.
MAX_COLUMNS = 100_000
_MIME_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class LossParamsPlugin(base_plugin.TBPlugin):
    """Serves the loss variables' series, the model's weights and the diagnosis."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        """Instantiates the plugin from TensorBoard's `TBContext`."""
        self._runs = cache.RunCache(context.data_provider)
        self._static = _read_static_files(STATIC_DIR)

    def get_plugin_apps(self):
        """`{route: WSGI app}`: every route the plugin serves, under `/data/plugin/loss_params`."""
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
        """False: TensorBoard activates the tab by data (see `data_plugin_names`)."""
        return False

    def data_plugin_names(self):
        """The summaries' plugin name: the tab shows where there are any."""
        return (metadata.PLUGIN_NAME,)

    def frontend_metadata(self):
        """The tab: `static/index.js` in an iframe."""
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
        samples, columns = _reduction(request)
        floats = _floats(request)
        if output == "csv" and columns:
            raise errors.InvalidArgumentError(
                "Query parameter 'columns' is for charts: a CSV always has every epoch read "
                f"(all of them, or a 'samples'); leave it out. Received columns={columns}."
            )
        if output == "csv" and floats != bodies.JSON:
            raise errors.InvalidArgumentError(
                "Query parameter 'floats' is for JSON: a CSV always writes its numbers in decimal; "
                f"leave it out. Received floats={floats!r}."
            )
        ctx, experiment = _context(request)
        body = self.series_impl(ctx, experiment, run, path, samples, columns, floats)
        if output == "csv":
            return http_util.Respond(
                request,
                bodies.series_csv(body),
                "text/csv",
                headers=[("Content-Disposition", _attachment(f"{run}_{path}", ".csv"))],
            )
        return _respond_json(request, body, floats)

    @wrappers.Request.application
    def _serve_series_multirun(self, request):
        path = _required(request, "variable")
        runs = _runs(request)
        samples, columns = _reduction(request)
        floats = _floats(request)
        ctx, experiment = _context(request)
        return _respond_json(
            request, self.series_multirun_impl(ctx, experiment, runs, path, samples, columns, floats), floats
        )

    @wrappers.Request.application
    def _serve_weights(self, request):
        run = _required(request, "run")
        layer = _layer(request)
        samples, columns = _reduction(request)
        floats = _floats(request)
        ctx, experiment = _context(request)
        return _respond_json(
            request, self.weights_impl(ctx, experiment, run, layer, samples, columns, floats), floats
        )

    @wrappers.Request.application
    def _serve_weights_multirun(self, request):
        runs = _runs(request)
        layer = _layer(request)
        samples, columns = _reduction(request)
        floats = _floats(request)
        ctx, experiment = _context(request)
        return _respond_json(
            request, self.weights_multirun_impl(ctx, experiment, runs, layer, samples, columns, floats), floats
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

        Cheap to poll: see `cache.RunCache.listed`. A run that cannot be
        read is left out of `runs` and named in `skipped`, with the reason.
        """
        return bodies.runs_body(self._runs.listed(ctx, experiment))

    def series_impl(self, ctx, experiment, run, path, samples=None, columns=None, floats=bodies.JSON):
        """Returns the epoch series of one variable of one run (see `_series_bodies`)."""
        mine = self._series_of(ctx, experiment, run, path)
        if not mine:  # listed before this variable was written?
            self._runs.forget(run)
            mine = self._series_of(ctx, experiment, run, path)
        if not mine:
            raise errors.NotFoundError(f"Run {run!r} has no variable {path!r}.")
        return _only(run, *self._series_bodies(ctx, experiment, path, {run: mine}, samples, columns, floats))

    def series_multirun_impl(
        self, ctx, experiment, runs, path, samples=None, columns=None, floats=bodies.JSON
    ):
        """Returns the series of one variable in several runs, read at once.

        Runs without the variable, or gone, are left out of the answer; runs
        that cannot be read are left out and named in `skipped`.
        """
        wanted = _found(runs, lambda run: self._series_of(ctx, experiment, run, path))
        mine = {r: m for r, m in wanted.items() if m}
        built, skipped = self._series_bodies(ctx, experiment, path, mine, samples, columns, floats)
        return bodies.series_multirun_body(path, built, skipped)

    def _series_bodies(self, ctx, experiment, path, series, samples, columns, floats):
        """`({run: body}, {run: reason})` of `series` (`{run: {tag: Series}}` of one variable).

        With `samples`, each series is a sample of at most that many epochs
        (the last among them), taken by the provider: a quick first view of
        a long run. With `columns`, every epoch is read, and the body keeps
        those a chart that wide needs to draw it exactly. `floats` is how
        the bodies write their floats (`bodies.FLOAT_ENCODINGS`). See
        `_bodies` for the runs left out.
        """
        return self._bodies(
            ctx,
            experiment,
            series,
            {run: mine.values() for run, mine in series.items()},
            lambda run, mine, data: bodies.series_body(run, path, mine, data, samples, columns, floats),
            downsample=samples or series_lib.ALL_POINTS,
        )

    def weights_impl(self, ctx, experiment, run, layer="", samples=None, columns=None, floats=bodies.JSON):
        """Returns the norms of one run's model weights: all as one vector, or one layer's.

        `layer` is a layer's path, `""` for the whole model, or an `int`:
        the layer at that place in the model (see `bodies.weights_members`).
        """
        members = self._weights_of(ctx, experiment, run, layer)
        return _only(run, *self._weights_bodies(ctx, experiment, {run: members}, samples, columns, floats))

    def weights_multirun_impl(
        self, ctx, experiment, runs, layer="", samples=None, columns=None, floats=bodies.JSON
    ):
        """`weights_impl` of several runs in one read.

        Runs without the layer, or gone, are left out; runs that cannot be
        read are left out and named in `skipped`.
        """
        members = _found(runs, lambda run: self._weights_of(ctx, experiment, run, layer))
        built, skipped = self._weights_bodies(ctx, experiment, members, samples, columns, floats)
        return bodies.weights_multirun_body(layer, built, skipped)

    def _weights_bodies(self, ctx, experiment, members, samples, columns, floats):
        """`({run: body}, {run: reason})` of `members` (`{run: bodies.Weights}`), as `_series_bodies`."""
        return self._bodies(
            ctx,
            experiment,
            members,
            {run: weights.series for run, weights in members.items()},
            lambda run, weights, data: bodies.weights_body(run, weights, data, samples, columns, floats),
            downsample=samples or series_lib.ALL_POINTS,
        )

    def diagnosis_impl(self, ctx, experiment, run):
        """Returns where each variable's status changed in one run (decoded once per write: see the cache)."""
        tags = self._runs.tags_of(ctx, experiment, run)
        read = self._runs.diagnosis(ctx, experiment, run, tags)
        built = {one: bodies.diagnosis_body(one, tags, decoded) for one, decoded in read.data.items()}
        return _only(run, built, read.skipped)

    def _bodies(self, ctx, experiment, members, wanted, build, downsample=series_lib.ALL_POINTS):
        """Reads `wanted` (`{run: [Series]}`) and builds each run's body: `({run: body}, {run: reason})`.

        `build(run, members[run], data)` builds a run's body from its data
        as read. Runs gone are left out of both; runs the read skipped, or
        whose data `build` refuses (it does not match its metadata), are
        named with the reason.
        """
        read = self._runs.read(ctx, experiment, wanted, downsample)
        built, skipped = {}, dict(read.skipped)
        for run, mine in members.items():
            if run in skipped or run in read.gone:
                continue
            try:
                built[run] = build(run, mine, read.data.get(run, {}))
            except Exception as error:  # noqa: BLE001 - one bad run must not fail the rest
                skipped[run] = cache.reason(run, error)
        return built, skipped

    def _series_of(self, ctx, experiment, run, path):
        """`{tag: Series}` of variable `path` of `run` (see `bodies.variable_series`)."""
        return bodies.variable_series(self._runs.tags_of(ctx, experiment, run), path)

    def _weights_of(self, ctx, experiment, run, layer):
        """The `bodies.Weights` of `run` for `layer`, a path or a place (see `weights_impl`)."""
        tags = self._runs.tags_of(ctx, experiment, run)
        if isinstance(layer, int):
            return bodies.weights_members(run, tags, "", place=layer)
        return bodies.weights_members(run, tags, layer)


def _only(run, found, skipped):
    """The body of a single-run route: a run gone, or that cannot be read, is a 404 that says so."""
    if run in skipped:
        raise errors.NotFoundError(f"Run {run!r} cannot be read: {skipped[run]}")
    if run not in found:
        raise errors.NotFoundError(f"No run {run!r} with loss_params data.")
    return found[run]


def _found(runs, lookup):
    """`{run: lookup(run)}` of the runs that `lookup` finds (a NotFoundError leaves one out)."""
    found = {}
    for run in runs:
        try:
            found[run] = lookup(run)
        except errors.NotFoundError:
            continue
    return found


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
    """`{name: (content, mimetype)}` of the files of `directory` that the tab loads (`_MIME_TYPES`)."""
    files = {}
    for name in sorted(os.listdir(directory)):
        mimetype = _MIME_TYPES.get(os.path.splitext(name)[1])
        if mimetype:
            with open(os.path.join(directory, name), "rb") as f:
                files[name] = (f.read(), mimetype)
    return files


def _context(request):
    """`(RequestContext, experiment id)` of a request."""
    return tb_context.from_environ(request.environ), plugin_util.experiment_id(request.environ)


def _runs(request):
    """The runs of a multirun route: `run`, given once per run, at least once."""
    runs = [r for r in request.args.getlist("run") if r]
    if not runs:
        raise errors.InvalidArgumentError(
            "Missing query parameter 'run': pass it once per run, ?run=a&run=b (see http_api.md)."
        )
    return runs


def _layer(request):
    """The layer `/weights` shows: `layer`, a path (`""` for the whole model), or `place`, an int.

    `place` matches layers across runs by their place in the model (see
    `bodies.weights_members`); it cannot be given with `layer`.
    """
    layer = request.args.get("layer", "")
    place = _positive_int(request, "place", 2**31 - 1, "a layer's place in the model", least=0)
    if place is None:
        return layer
    if layer:
        raise errors.InvalidArgumentError(
            "Query parameters 'layer' and 'place' exclude each other: pass one, or neither for "
            f"the whole model; received layer={layer!r} and place={place}."
        )
    return place


def _reduction(request):
    """The optional `samples` and `columns` parameters, `(int or None, int or None)`: one at most.

    `samples` is TensorBoard's sample of the epochs; `columns` keeps every
    epoch's extremes per pixel column of a chart that wide (see http_api.md).
    """
    samples = _positive_int(
        request, "samples", series_lib.ALL_POINTS, "at most that many epochs per series"
    )
    columns = _positive_int(request, "columns", MAX_COLUMNS, "the width in pixels of the chart drawn")
    if samples and columns:
        raise errors.InvalidArgumentError(
            "Query parameters 'samples' and 'columns' exclude each other: pass one, or neither for "
            f"every epoch; received samples={samples} and columns={columns}."
        )
    return samples, columns


def _floats(request):
    """The optional `floats` parameter: how a body writes its arrays of floats, `json` (the default) or `base64`."""
    floats = request.args.get("floats", bodies.JSON)
    if floats not in bodies.FLOAT_ENCODINGS:
        shown = floats if len(floats) <= 20 else f"{floats[:20]}… ({len(floats)} characters)"
        raise errors.InvalidArgumentError(
            f"Query parameter 'floats' must be 'json' (numbers, the default) or 'base64' (each array "
            f"of floats as the base64 of its float32 bytes); received {shown!r}."
        )
    return floats


def _positive_int(request, name, most, meaning, least=1):
    """The optional query parameter `name`: an int from `least` (1) up to `most`, or None when left out.

    Its length is checked before `int()`, which refuses a text of over
    4,300 digits with a ValueError (a 500) and takes long on shorter ones.
    """
    text = request.args.get(name)
    if text is None:
        return None
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(most))
    if not digits or not least <= int(text) <= most:
        shown = text if len(text) <= 20 else f"{text[:20]}… ({len(text)} characters)"
        kind = "a positive integer" if least == 1 else f"an integer from {least}"
        left_out = "" if least == 0 else ", or left out for every epoch"
        raise errors.InvalidArgumentError(
            f"Query parameter {name!r} must be {kind} up to {most} ({meaning}){left_out}; "
            f"received {shown!r}."
        )
    return int(text)


def _required(request, name):
    """The query parameter `name`, which must be given and not empty."""
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(
            f"Missing query parameter {name!r}: pass ?{name}=... (see the plugin's http_api.md)."
        )
    return value


def _respond_json(request, body, floats=bodies.JSON):
    """Answers `body` (or its `_json` text) as strict, compact JSON.

    TensorBoard gzips it. A body of base64 floats (`floats`) is mostly
    random bytes, whose repeats deflate searches for in vain: it is gzipped
    here with Huffman coding alone, as small within 3% in a third of the
    time (5 ms for a card of 20 runs x 2,000 epochs, rather than 18).
    """
    text = body if isinstance(body, str) else bodies.json_text(body)
    if floats == bodies.BASE64:
        return http_util.Respond(request, _huffman_gzip(text.encode()), "application/json", content_encoding="gzip")
    return http_util.Respond(request, text, "application/json")


def _huffman_gzip(data):
    """`data` gzipped with Huffman coding only (no search for repeats); TensorBoard unzips it for a client that asks."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 8, zlib.Z_HUFFMAN_ONLY)
    return compressor.compress(data) + compressor.flush()
