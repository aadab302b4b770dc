"""How the "Loss Params" tab scales: routes and drawing over a large log directory.

Writes RUNS runs x EPOCHS epochs x VARIABLES variables through the plugin's
summary API (three quarters loss variables, one quarter model weights, plus
the run-level series and an `epoch_loss` scalar in each run; `--scale`: 2
runs x 1,000 epochs of 200 loss variables and 1,000 model weights), and as
plain scalars a copy of what the tab's first view draws. Then for each
loader (`--load_fast=true`, the Rust data server, and `false`, the Python
multiplexer) starts the real `tensorboard` and measures:

- load: seconds until every run's last epoch is served;
- each route's latency (p50/p95 over repeated requests), beside the built-in
  Scalars plugin's routes on the same log directory, the peer;
- in headless Chromium, opening the tab cold: when its first view's data
  (the run listing and the series of the cards in view, reduced to their
  charts' pixel columns: exact extremes) has arrived, when the cards in view
  and the model panel are drawn from it, every selected run's line in each,
  and when they are complete (every epoch read, for the tooltip);
- TensorBoard's own Time Series tab opened cold on the scalar copies: as
  many charts of as many runs (filtered by tag), until each has drawn every
  run's line (its SVG renderer, whose lines can be seen drawn), beside the
  tab's first view.

Targets: with the Rust loader, first view with exact extremes drawn <= 0.8 s,
every card in view complete <= 1.2 s, routes no slower than Scalars' and
`/diagnosis` within twice `/series`; with the Python loader, first view
drawn <= 3 s.

    python bench/plugin_scale.py              # 20 runs x 2000 epochs x 40 variables
    python bench/plugin_scale.py --scale      # 2 runs x 1000 epochs x (200 + 1000) variables
    python bench/plugin_scale.py --runs 4 --epochs 200   # a quick look
"""

import argparse
import concurrent.futures
import math
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.servers import tensorboard  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLUGIN = "loss_params"
PREFIX = f"/data/plugin/{PLUGIN}"
# The pixel columns a card's first view asks for (about its chart's width).
COLUMNS = 400
# The window the tab and Time Series are opened in, and the loss variables'
# cards the tab shows in it: the first in the order of paths.
WINDOW = {"width": 1500, "height": 1000}
CARDS_IN_VIEW = 4
# The scalar copies of the first view's charts, for Time Series: a value and
# a gradient norm chart per card in view, and the model panel's three.
COPIES = "timeseries/"
MODEL_CHARTS = ("norm", "grad_norm_mean", "update_ratio")


def loss_paths(n_loss):
    """The loss variables' paths, in the order of the tab's cards."""
    return sorted(f"loss/Multi/s_{i}" for i in range(n_loss))


def write_run(args):
    """Writes one run with the plugin's summary API, as the callback would, and the scalar copies."""
    log_dir, run, epochs, n_loss, n_model = args
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from tensorboard_plugin.loss_params import metadata, summary

    paths = loss_paths(n_loss)
    copied = paths[:CARDS_IN_VIEW]
    model_paths = [f"model/net/dense_{i // 2}/{('kernel', 'bias')[i % 2]}" for i in range(n_model)]
    rng = np.random.default_rng(run)
    writer = tf.summary.create_file_writer(os.path.join(log_dir, f"run_{run:02d}", "train"))
    with writer.as_default():
        for epoch in range(epochs):
            decay = np.exp(-epoch / (epochs / 4))
            values = []
            for path in paths:
                value = np.float32(rng.normal() * decay + 1)
                values += summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, value, dtype="float32")
                values += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, path,
                                         np.float32([decay, 2 * decay]))
                if path in copied:
                    tf.summary.scalar(f"{COPIES}{path}/value", value, step=epoch)
                    tf.summary.scalar(f"{COPIES}{path}/grad_norm", decay, step=epoch)
            for path in model_paths:
                norms = np.float32([3 + epoch / epochs, decay, 2 * decay, 0.01 * decay])
                values += summary.values(metadata.ROLE_MODEL, metadata.WEIGHT_NORMS, path,
                                         norms, shape=(8, 8), dtype="float32")
            model = np.float32([10 + epoch / epochs, decay, 2 * decay, 0.01 * decay])
            values += summary.values(metadata.ROLE_RUN, metadata.WEIGHT_NORMS, metadata.RUN_MODEL, model)
            for field in MODEL_CHARTS:
                index = metadata.FIELDS[metadata.WEIGHT_NORMS].index(field)
                tf.summary.scalar(f"{COPIES}model/{field}", model[index], step=epoch)
            values += summary.values(metadata.ROLE_RUN, metadata.GRAD_NORM, metadata.RUN_GRAD_NORM,
                                     np.float32([decay, 2 * decay]))
            values += summary.diagnosis([(p, "training", "") for p in paths + model_paths])
            summary.write(values, epoch)
            tf.summary.scalar("epoch_loss", float(decay), step=epoch)
    writer.close()


def write_logdir(log_dir, runs, epochs, n_loss, n_model):
    """Writes the log directory, unless a complete one of this version is there (else starts it afresh)."""
    marker = os.path.join(log_dir, f".complete-v6-{runs}x{epochs}x{n_loss}+{n_model}")
    if os.path.exists(marker):
        print(f"Reusing {log_dir}")
        return
    shutil.rmtree(log_dir, ignore_errors=True)
    start = time.perf_counter()
    jobs = [(log_dir, run, epochs, n_loss, n_model) for run in range(runs)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context) as pool:
        list(pool.map(write_run, jobs))
    open(marker, "w").close()
    print(f"Wrote {runs} runs x {epochs} epochs x ({n_loss} loss variables + {n_model} model weights) in "
          f"{time.perf_counter() - start:.0f} s")


def latencies(board, routes, repeats):
    """p50 and p95 in ms of requests on each route: `routes[name]()` gives the URL, or
    `(URL, form)` for a POST, or `None` for no more requests on that route."""
    result = {}
    for name, url in routes.items():
        times = []
        for _ in range(repeats):
            request = url()
            if request is None:
                break
            route, form = request if isinstance(request, tuple) else (request, None)
            start = time.perf_counter()
            status, _ = board.get(route, timeout=120, form=form)
            times.append((time.perf_counter() - start) * 1000)
            assert status == 200, f"{name}: {status}"
        times.sort()
        result[name] = (statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))])
    return result


# Every card in view, and the model panel, hold a line per run (the `%d`);
# with `complete`, drawn from every epoch. Gives the time, the first view's
# data (the first listing, which the page then polls, and the reductions),
# and how many cards were in view.
TAB_DRAWN = """(complete) => {
    const inView = [...document.querySelectorAll('article.card')]
        .filter(c => c.getBoundingClientRect().top < innerHeight);
    const panel = document.querySelector('aside.weights');
    const full = (host) => host && host.querySelectorAll('path[data-run]').length >= %d;
    const done = (root) => !complete || root.dataset.sampled === 'false';
    const cardsDone = inView.length > 0 && inView.every(
        c => full(c.querySelector('[data-chart="value"]')) &&
             full(c.querySelector('[data-chart="grad_norm"]')) && done(c));
    return cardsDone && full(panel.querySelector('[data-chart="norm"]')) && done(panel) && {
        now: performance.now(),
        // For the tab in TensorBoard's page, whose iframe has a time of its own.
        at: performance.timeOrigin + performance.now(),
        data: Math.max(...performance.getEntriesByType('resource')
            .filter((e, i, all) => /[?&]columns=/.test(e.name) ||
                    e === all.find(f => /\\/runs$/.test(f.name)))
            .map(e => e.responseEnd)),
        cards: inView.length,
    };
}"""

# Time Series' scalar cards (`charts` of them, the `%d`), each with a line
# per run (the second) drawn: its SVG renderer's paths, raw and smoothed.
TIMESERIES_DRAWN = """() => {
    const cards = [...document.querySelectorAll('scalar-card')];
    const lines = (card) => [...card.querySelectorAll('.series-view svg path')]
        .filter(p => (p.getAttribute('d') || '').length > 1).length;
    return cards.length === %d && cards.every(c => lines(c) >= %d) && performance.now();
}"""


def plugin_frame(page):
    """The tab's iframe in TensorBoard's page, once TensorBoard has made it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        frame = next((f for f in page.frames if "plugin_entry" in f.url), None)
        if frame is not None:
            return frame
        page.wait_for_timeout(10)
    raise TimeoutError("TensorBoard's page made no iframe for the tab")


def draw_times(board, runs, repeats):
    """Opens the tab, the tab in TensorBoard's page, and Time Series on the scalar copies, cold, in turns.

    Each `repeats` times, in Chromium. Returns lists of the times of each
    open, in s from navigation: the tab's first view's data arrived (the run
    listing and the reductions the cards in view and the model panel draw
    first), those drawn, and every epoch drawn (the cards complete); the
    same first view drawn with the tab opened in TensorBoard's page (its app
    loaded first, the tab in an iframe), as Time Series is; Time Series'
    charts drawn, as many as the tab's first view (in a window tall enough
    to show them all: it draws only the cards in view). Also the numbers of
    cards the tab had in view.
    """
    from playwright.sync_api import sync_playwright

    charts = 2 * CARDS_IN_VIEW + len(MODEL_CHARTS)
    timeseries_url = f"{board.url}/?" + urllib.parse.urlencode(
        {"tagFilter": f"^{COPIES}", "forceSVG": "true"}) + "#timeseries"
    times = {"data": [], "drawn": [], "complete": [], "in_tensorboard": [], "timeseries": []}
    cards = set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )

        def open_page(url, window):
            page = browser.new_context(viewport=window).new_page()
            page.goto(url)
            return page

        for _ in range(repeats):
            page = open_page(f"{board.url}/data/plugin_entry.html?name={PLUGIN}", WINDOW)
            tab = TAB_DRAWN % runs
            first = page.wait_for_function(tab, arg=False, polling="raf", timeout=120_000).json_value()
            every = page.wait_for_function(tab, arg=True, polling="raf", timeout=120_000).json_value()
            times["data"].append(first["data"] / 1000)
            times["drawn"].append(first["now"] / 1000)
            times["complete"].append(every["now"] / 1000)
            cards.add(first["cards"])
            page.context.close()
            page = open_page(f"{board.url}/#{PLUGIN}", WINDOW)
            drawn = plugin_frame(page).wait_for_function(tab, arg=False, polling="raf", timeout=120_000).json_value()
            times["in_tensorboard"].append((drawn["at"] - page.evaluate("performance.timeOrigin")) / 1000)
            page.context.close()
            # Time Series' cards are 460 px tall, two a row in this width.
            page = open_page(timeseries_url, {"width": WINDOW["width"], "height": 300 + 480 * math.ceil(charts / 2)})
            drawn = page.wait_for_function(TIMESERIES_DRAWN % (charts, runs), polling="raf", timeout=120_000)
            times["timeseries"].append(drawn.json_value() / 1000)
            page.context.close()
        browser.close()
    return times, cards


def measure(log_dir, load_fast, runs, epochs, n_loss, repeats):
    """Starts `tensorboard` on `log_dir` with `--load_fast=load_fast`: (load time, route latencies, tab times)."""
    names = [f"run_{r:02d}/train" for r in range(runs)]
    paths = loss_paths(n_loss)
    rng = random.Random(0)
    with tensorboard(log_dir, f"--load_fast={load_fast}") as board:
        start = time.perf_counter()

        def loaded():
            listing = board.get_json(f"{PREFIX}/runs")["runs"]
            return len(listing) == runs and all(r["last_step"] == epochs - 1 for r in listing)

        board.wait_for(loaded, timeout=1800, interval=1)
        load = time.perf_counter() - start
        # Scalars' own data must be loaded too before it is timed. It keeps a
        # sample of 1000 points per tag, the last one among them.
        scalars = "/data/plugin/scalars/scalars?"
        board.wait_for(lambda: board.get_json(
            scalars + urllib.parse.urlencode({"run": names[-1], "tag": "epoch_loss"}))[-1][1]
            == epochs - 1, timeout=600, interval=1)

        def q(route, **args):
            return lambda: f"{route}?{urllib.parse.urlencode({k: v() if callable(v) else v for k, v in args.items()})}"

        def multirun(route, *query):
            return lambda: f"{PREFIX}/{route}?" + urllib.parse.urlencode(
                [(k, v() if callable(v) else v) for k, v in query] + [("run", n) for n in names])

        run = lambda: rng.choice(names)  # noqa: E731
        unasked = iter(names)  # the runs whose /diagnosis was not asked for yet

        def first_of_a_run():
            one = next(unasked, None)
            return None if one is None else f"{PREFIX}/diagnosis?" + urllib.parse.urlencode({"run": one})
        path = lambda: rng.choice(paths)  # noqa: E731
        routes = {
            "loss_params /runs": lambda: f"{PREFIX}/runs",
            "scalars /tags (peer)": lambda: "/data/plugin/scalars/tags",
            "loss_params /series": q(f"{PREFIX}/series", run=run, variable=path),
            "loss_params /weights": q(f"{PREFIX}/weights", run=run),
            # A run's first /diagnosis reads, decodes and encodes its whole
            # diagnosis; a later one, until the run writes, is kept: timed
            # apart (a random run of 20 gave a p50 that flipped between them).
            "loss_params /diagnosis, a run's first": first_of_a_run,
            "loss_params /diagnosis, kept": q(f"{PREFIX}/diagnosis", run=names[0]),
            "scalars /scalars (peer)": q("/data/plugin/scalars/scalars", run=run, tag="epoch_loss"),
            f"loss_params /series_multirun x{runs}": multirun("series_multirun", ("variable", path)),
            f"scalars /scalars_multirun x{runs} (peer)": lambda: (
                "/data/plugin/scalars/scalars_multirun", [("tag", "epoch_loss")] + [("runs", n) for n in names]),
            f"loss_params /series_multirun x{runs} columns={COLUMNS}": multirun(
                "series_multirun", ("variable", path), ("columns", COLUMNS)),
            # What the tab reads first: the floats as bytes.
            f"loss_params /series_multirun x{runs} columns={COLUMNS} floats=base64": multirun(
                "series_multirun", ("variable", path), ("columns", COLUMNS), ("floats", "base64")),
            # As many epochs as Scalars keeps of a tag (3 series each, to its 1).
            f"loss_params /series_multirun x{runs} samples=1000": multirun(
                "series_multirun", ("variable", path), ("samples", 1000)),
            f"loss_params /weights_multirun x{runs}": multirun("weights_multirun"),
            f"loss_params /weights_multirun x{runs} columns={COLUMNS}": multirun(
                "weights_multirun", ("columns", COLUMNS)),
            f"loss_params /weights_multirun x{runs} floats=base64": multirun(
                "weights_multirun", ("floats", "base64")),
        }
        route_times = latencies(board, routes, repeats * 10)
        tab = draw_times(board, runs, repeats) if os.path.exists(CHROMIUM) else None
    return load, route_times, tab


def report(load_fast, runs, load, route_times, tab):
    """Prints one loader's figures."""
    print(f"\n--load_fast={load_fast}: all {runs} runs served after {load:.1f} s")
    for name, (p50, p95) in route_times.items():
        print(f"  {name:55s} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms")
    multirun_peer = f"scalars /scalars_multirun x{runs} (peer)"
    for ours, peer in [("loss_params /runs", "scalars /tags (peer)"),
                       ("loss_params /series", "scalars /scalars (peer)"),
                       ("loss_params /diagnosis, a run's first", "loss_params /series"),
                       ("loss_params /diagnosis, kept", "loss_params /series"),
                       (f"loss_params /series_multirun x{runs}", multirun_peer),
                       (f"loss_params /series_multirun x{runs} samples=1000", multirun_peer),
                       (f"loss_params /series_multirun x{runs} columns={COLUMNS}", multirun_peer),
                       (f"loss_params /series_multirun x{runs} columns={COLUMNS} floats=base64", multirun_peer)]:
        print(f"  {ours} p50 / {peer} p50: {route_times[ours][0] / route_times[peer][0]:.2f}")
    if tab is None:
        return
    times, cards = tab
    median = {name: statistics.median(values) for name, values in times.items()}
    repeats = len(times["drawn"])
    print(f"  tab opened cold (median of {repeats}; {'/'.join(map(str, sorted(cards)))} cards in view and "
          f"the model panel): first view's data {median['data']:.2f} s, first view drawn (exact extremes) "
          f"{median['drawn']:.2f} s, complete {median['complete']:.2f} s")
    charts = 2 * CARDS_IN_VIEW + len(MODEL_CHARTS)
    ours, theirs = median["in_tensorboard"], median["timeseries"]
    print(f"  in TensorBoard's page, as Time Series: the tab's first view drawn after {ours:.2f} s; Time Series "
          f"on the scalar copies ({charts} charts of {runs} runs) drawn after {theirs:.2f} s: the tab is "
          + (f"{theirs / ours:.1f} times as fast" if ours < theirs else f"{ours / theirs:.1f} times as slow"))
    for name, values in times.items():
        print(f"    each open, {name:14s}: {' '.join(f'{t:.2f}' for t in values)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--variables", type=int, default=40,
                        help="three quarters loss variables, one quarter model weights")
    parser.add_argument("--scale", action="store_true",
                        help="the scale workload: 2 runs x 1000 epochs of 200 loss variables and 1000 model weights")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loaders", default="true,false", help="--load_fast values to measure")
    parser.add_argument("--log-dir", default=os.path.join("/tmp", "loss_params_scale"))
    args = parser.parse_args()
    if args.scale:
        runs, epochs, n_loss, n_model = 2, 1000, 200, 1000
    else:
        runs, epochs, n_loss = args.runs, args.epochs, args.variables * 3 // 4
        n_model = args.variables - n_loss
    log_dir = os.path.join(args.log_dir, f"{runs}x{epochs}x{n_loss}+{n_model}")
    write_logdir(log_dir, runs, epochs, n_loss, n_model)
    for load_fast in args.loaders.split(","):
        report(load_fast, runs, *measure(log_dir, load_fast, runs, epochs, n_loss, args.repeats))


if __name__ == "__main__":
    main()
