"""Every route under arbitrary queries and paths: an answer in time, never a 5xx, never a stray file.

Hypothesis builds the requests: known and unknown parameter names, repeated
parameters, real run names and variable paths, any unicode (lone surrogates
and undecodable bytes included, percent-encoded as a browser or a hostile
client sends them), NUL, texts of up to 10,000 characters, numbers of every
size, and path-traversal attempts on `/static`. The routes are the plugin's
own (`get_plugin_apps()`) and the parameters those its `http_api.md` names,
so a new route is fuzzed, and must be documented, with no edit here. The log
directory holds good runs written with the summary API beside damaged ones.
The examples are derandomized, so CI tests the same requests every time.
"""

import datetime
import json
import os
import pathlib
import re
import shutil
import threading
import time
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tensorboard.plugins import base_plugin

from tensorboard_plugin.loss_params import metadata, plugin, summary
from tests.conftest import NETWORK, NETWORK_LAYERS, NETWORK_RUNS, damaged_copy
from tests.test_plugin import LOG_VAR, PREFIX, _reject, make_client
from tests.test_plugin_robustness import DAMAGED, HEALTHY, NOT_SCALARS, raw_value, write_run

# Seconds a request may take, however hostile: the largest query here is a few hundred kB.
BOUND = 5
FUZZ = settings(derandomize=True, database=None, deadline=datetime.timedelta(seconds=BOUND))

CENTERS = "loss/CenterLoss/centers"  # 100 elements: logged as statistics
SIGMA = "loss/GaussianNLL/log_σ"  # a legal attribute name beyond Latin-1, in the CSV's file name
MODEL_WEIGHTS = [f"model/net/{layer}/{w}" for layer in ("hidden", "out") for w in ("kernel", "bias")]
# Runs written with the summary API: {run: {loss variable: its status}}. damaged_copy
# makes `truncated/train` and `corrupt/train` of `broken/train`.
GOOD = {"broken/train": {LOG_VAR: "not_updated", CENTERS: "training"}, "σ/train": {SIGMA: "training"}}

# {run in the log directory: the variables worth asking it for}.
VARIABLES_OF = {
    **{run: [LOG_VAR, CENTERS, *MODEL_WEIGHTS] for run in ("broken/train", "truncated/train", "corrupt/train")},
    "σ/train": [SIGMA, *MODEL_WEIGHTS],
    **{run: [NETWORK, "loss/Perceptual/weight", f"{NETWORK}/{NETWORK_LAYERS[0]}/kernel", *MODEL_WEIGHTS]
       for run in NETWORK_RUNS},
    **{run: [LOG_VAR, "loss/L/x"] for run in [*DAMAGED, *NOT_SCALARS]},
}
# Names no run has, beside the real ones: a prefix, a suffix, a case, a lookalike.
NO_SUCH = ["", "broken", "broken/train/", "/broken/train", "Broken/train", "nope/train", "run", "run/model",
           "loss", "loss/GaussianNLL", "model/net", "σ/train\x00", "broken\\train", "../broken/train"]
RUNS = [*VARIABLES_OF, *NO_SUCH]
VARIABLES = sorted({v for paths in VARIABLES_OF.values() for v in paths}) + NO_SUCH
LAYERS = ["", "model/net/hidden", "model/net/out", NETWORK, f"{NETWORK}/{NETWORK_LAYERS[0]}", *NO_SUCH]
# Every route the plugin serves, from the plugin itself: a new route is fuzzed as it is added.
APPS = plugin.LossParamsPlugin(base_plugin.TBContext()).get_plugin_apps()
ROUTES = [route.lstrip("/") for route in APPS if not route.endswith("/*")]
# The routes that serve a path rather than a query: each has its own test below.
PATH_ROUTES = {"/static/*"}
STATIC = {path.name: path.read_bytes() for path in pathlib.Path(plugin.STATIC_DIR).iterdir()}
# The query parameters http_api.md names in its routes' headings (`?run=RUN&variable=PATH[&samples=N]...`).
HTTP_API = (pathlib.Path(plugin.__file__).parent / "http_api.md").read_text()
HEADINGS = re.findall(r"^## `(/[^`?]*)\??([^`]*)`", HTTP_API, re.MULTILINE)


def write_summary_run(directory, statuses, epochs=4):
    """Writes a run through the summary API, as the callback does: loss variables, weights, diagnosis."""
    rng = np.random.default_rng(0)
    with tf.summary.create_file_writer(str(directory)).as_default():
        for epoch in range(epochs):
            values = []
            for path in statuses:
                if path == CENTERS:
                    kind, data, shape = metadata.STATS, summary.stats(rng.normal(size=(10, 10))), (10, 10)
                else:
                    kind, data, shape = metadata.VALUE, np.float32(epoch / 3), ()
                values += summary.values(metadata.ROLE_LOSS, kind, path, data, shape=shape, dtype="float32")
                # No gradient seen in the first epoch: NaNs, which JSON lacks, as Infinity below.
                grad = np.float32([np.nan, np.nan] if epoch == 0 else [1 / epoch, 2 / epoch])
                values += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, path, grad)
            norms = np.float32([2 + epoch, 1, 2, np.inf if epoch == 1 else 0.01])
            for path in MODEL_WEIGHTS:
                values += summary.values(metadata.ROLE_MODEL, metadata.WEIGHT_NORMS, path, norms, shape=(4, 8),
                                         dtype="float32")
            values += summary.values(metadata.ROLE_RUN, metadata.WEIGHT_NORMS, metadata.RUN_MODEL, norms)
            values += summary.values(metadata.ROLE_RUN, metadata.GRAD_NORM, metadata.RUN_GRAD_NORM, norms[1:3])
            rows = [[p, s, ""] for p, s in statuses.items()] + [[p, "training", ""] for p in MODEL_WEIGHTS]
            values += summary.values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS,
                                     np.array(rows, dtype=object))
            summary.write(values, epoch)


@pytest.fixture(scope="module")
def client(tmp_path_factory, network_logdir):
    """Good runs (the network's and GOOD), `broken`'s damaged copies, and the robustness tests' damaged runs."""
    source = tmp_path_factory.mktemp("fuzz") / "good"
    shutil.copytree(network_logdir, source)
    for run, statuses in GOOD.items():
        write_summary_run(source / run, statuses)
    logdir = damaged_copy(source, source.parent / "logs")
    for run, (epochs, _, _) in DAMAGED.items():
        write_run(logdir / run, epochs)
    for run, tensor in NOT_SCALARS.items():
        write_run(logdir / run, [[raw_value(f"{LOG_VAR}/value", metadata.VALUE, LOG_VAR, tensor)] + HEALTHY] * 3)
    return make_client(str(logdir))


def _encode(text):
    """Percent-encodes `text` as UTF-8; a lone surrogate becomes bytes that are not UTF-8."""
    return urllib.parse.quote(text, safe="", errors="surrogatepass")


# Any code point, lone surrogates too (Hypothesis's text leaves them out), NUL among them.
CHARS = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr), st.just("\x00"))
TEXT = st.text(CHARS, max_size=40)
LONG_TEXT = st.builds(lambda piece, n: (piece * n)[:n], st.text(CHARS, min_size=1, max_size=4),
                      st.integers(1_000, 10_000))
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    # Around the 4,300 digits past which int() refuses a text, up to 5,000.
    st.integers(4_290, 5_000).map(lambda n: "9" * n),
    st.floats().map(repr),
    st.sampled_from(["0", "-1", "+5", " 5", "5 ", "1e3", "0x10", "٣", "²", "00000000000000001", "100000",
                     "100001", str(2**31 - 1), str(2**31), "1" * 4301, "-" + "1" * 4300]),
)
# What no encoder makes: broken escapes, separators, escapes of escapes.
RAW = st.sampled_from(["%", "%zz", "%0", "%ff%fe", "%00", "%c3%28", "%ed%a0%80", "%252e", "+", "%2B", "=",
                       "==", ";", "&", "#", "%26", "%3D", "\\"])
FORMATS = st.sampled_from(["csv", "json", "base64", "junk", "CSV", "", "csv\x00", "json ", "BASE64"])
KNOWN_NAMES = sorted({name for _, query in HEADINGS for name in re.findall(r"(\w+)=", query)})
NAMES = st.one_of(
    st.sampled_from(KNOWN_NAMES + ["Run", "run[]", "run ", "samples[]", "experiment", "_"]).map(_encode),
    TEXT.map(_encode),
    RAW,
)
VALUES = st.one_of(
    st.sampled_from(RUNS + VARIABLES + LAYERS + sorted(STATIC)).map(_encode),
    TEXT.map(_encode),
    LONG_TEXT.map(_encode),
    NUMBERS.map(_encode),
    st.binary(max_size=64).map(urllib.parse.quote_from_bytes),
    FORMATS.map(_encode),
    RAW,
)
PIECES = st.one_of(
    st.builds("{}={}".format, st.sampled_from(KNOWN_NAMES), VALUES),  # so that the routes read them
    st.builds("{}={}".format, NAMES, VALUES),
    NAMES,  # a name alone, without `=`
)


@st.composite
def plausible_queries(draw):
    """A run, one of its variables, maybe a layer and a valid or hostile option, and a few of anything.

    Missing parameters are left to test_routes_answer_any_query; these reach the reads.
    """
    run = draw(st.sampled_from(list(VARIABLES_OF)))
    variable = draw(st.sampled_from(VARIABLES_OF[run]))
    pieces = [f"run={_encode(_hostile(draw, run))}", f"variable={_encode(_hostile(draw, variable))}"]
    pieces += [f"run={_encode(r)}" for r in draw(st.lists(st.sampled_from(RUNS), max_size=4))]
    options = [("layer", st.sampled_from(LAYERS)), ("samples", st.one_of(st.integers(1, 10).map(str), NUMBERS)),
               ("columns", st.one_of(st.integers(1, 10).map(str), NUMBERS)),
               ("format", st.one_of(st.sampled_from(["json", "csv"]), FORMATS)),
               ("floats", st.one_of(st.sampled_from(["json", "base64"]), FORMATS))]
    pieces += [f"{name}={_encode(draw(values))}" for name, values in options if draw(st.booleans())]
    pieces += draw(st.lists(PIECES, max_size=2))
    return "&".join(draw(st.permutations(pieces)))


def _hostile(draw, real):
    """`real`, or a quarter of the time a text instead of it or after it."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.one_of(TEXT, LONG_TEXT, TEXT.map(real.__add__)))
    return real


def _get(client, path, query=""):
    """GETs `path?query` in a thread, so that a hang fails the test instead of stalling it."""
    answer = {}

    def get():
        try:
            answer["response"] = client.get(path, query_string=query)
        except BaseException as error:  # re-raised below, with the request
            answer["error"] = error

    start = time.monotonic()
    thread = threading.Thread(target=get, daemon=True)
    thread.start()
    thread.join(BOUND)
    elapsed = time.monotonic() - start
    request = f"GET {path}?{query}"
    shown = request if len(request) <= 300 else f"{request[:300]}… ({len(request)} characters)"
    assert not thread.is_alive() and elapsed < BOUND, f"{shown} took {elapsed:.1f} s (bound {BOUND} s)"
    if "error" in answer:
        raise AssertionError(f"{shown} raised, which TensorBoard's server answers with a 500") from answer["error"]
    return answer["response"], shown


def check(client, path, query=""):
    """Asserts what every answer must be; returns the response."""
    response, shown = _get(client, path, query)
    data = response.get_data()
    assert response.status_code in (200, 400, 404), f"{shown} answered {response.status_code}: {data[:1000]!r}"
    if response.status_code != 200:
        return response
    content_type = response.headers.get("Content-Type", "")
    if "/static/" in path:
        assert data in STATIC.values(), f"{shown} served {len(data)} bytes that are no file of static/"
    elif content_type.startswith("text/csv"):
        _check_disposition(response.headers["Content-Disposition"], shown)
    else:
        assert content_type.startswith("application/json"), f"{shown} answered {content_type!r}"
        json.loads(data.decode("utf-8"), parse_constant=_reject)  # strict: no NaN or Infinity literals
    return response


def _check_disposition(header, shown):
    # Header values travel as Latin-1: all ASCII but the RFC 5987 name, which is percent-encoded UTF-8.
    plain, _, extended = header.partition("; filename*=UTF-8''")
    assert plain.isascii() and plain.startswith('attachment; filename="'), f"{shown}: {header!r}"
    assert re.fullmatch(r"([A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})+", extended), f"{shown}: {header!r}"


def test_every_route_is_fuzzed_and_documented_with_its_parameters():
    assert ROUTES, "no route found in get_plugin_apps()"
    assert {route for route in APPS if route.endswith("/*")} == PATH_ROUTES, (
        "a route that serves paths needs its own test, as test_static_serves_its_files_and_nothing_else"
    )
    documented = {route for route, _ in HEADINGS}
    assert {f"/{route}" for route in ROUTES} | {"/static/FILE"} == documented, "http_api.md has a section per route"
    assert {"run", "variable", "layer", "place", "samples", "columns", "format"} <= set(KNOWN_NAMES)


@settings(FUZZ, max_examples=150)
@given(route=st.sampled_from(ROUTES), query=plausible_queries())
@example(route="series", query=f"run={_encode('σ/train')}&variable={_encode(SIGMA)}&format=csv")
@example(route="series", query=f"run=broken%2Ftrain&variable={_encode(CENTERS)}&format=csv&samples=2")
@example(route="weights", query=f"run=vgg_tuned%2Ftrain&layer={_encode(NETWORK)}")
@example(route="series_multirun", query=f"variable={_encode(LOG_VAR)}&run=broken%2Ftrain&run=corrupt%2Ftrain"
                                         "&run=truncated%2Ftrain&run=strings%2Ftrain&run=vector%2Ftrain")
def test_routes_answer_real_runs_under_any_query(client, route, query):
    check(client, f"{PREFIX}/{route}", query)


@settings(FUZZ, max_examples=100)
@given(route=st.sampled_from(ROUTES), query=st.lists(PIECES, max_size=8).map("&".join))
def test_routes_answer_any_query(client, route, query):
    check(client, f"{PREFIX}/{route}", query)


TRAVERSALS = [
    "..%2fplugin.py", "..%2f..%2floader.py", "%2e%2e/plugin.py", "%2e%2e%2fplugin.py", "..%5cplugin.py",
    "..\\plugin.py", "%252e%252e%252fplugin.py", "..%252fplugin.py", "%c0%ae%c0%ae/plugin.py", "....//plugin.py",
    "/etc/passwd", "%2fetc%2fpasswd", "//etc/passwd", "C:\\Windows\\win.ini", "file:///etc/passwd",
    urllib.parse.quote(os.path.join(plugin.STATIC_DIR, "index.js")), urllib.parse.quote(plugin.__file__),
    "./index.js", "static/index.js", "index.js/", "index.js%00", "index.js%00.png", "INDEX.JS", "%20index.js",
    "index.js%20", "index%2ejs", "", "/", "%2f", ".", "..",
]
STATIC_PATHS = st.one_of(
    st.sampled_from(TRAVERSALS),
    st.builds("{}{}".format, st.sampled_from(["", "../", "..%2f", "%2e%2e%2f", "..\\", "./", "%2f", "/", "%252f"]),
              st.sampled_from([*STATIC, "plugin.py", "__init__.py", "static/index.js", "../plugin.py"])),
    TEXT.map(lambda text: urllib.parse.quote(text, safe="/\\.%", errors="surrogatepass")),
)


@settings(FUZZ, max_examples=50)
@given(name=STATIC_PATHS, query=st.lists(PIECES, max_size=2).map("&".join))
@example(name="index.js", query="")
def test_static_serves_its_files_and_nothing_else(client, name, query):
    check(client, f"{PREFIX}/static/{name}", query)
