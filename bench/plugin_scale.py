"""How the "Loss Params" tab scales: routes and drawing over a large log directory.

Writes RUNS runs x EPOCHS epochs x VARIABLES variables through the plugin's
summary API (three quarters loss variables, one quarter model weights, plus
the run-level series and an `epoch_loss` scalar in each run), then for each
loader (`--load_fast=true`, the Rust data server, and `false`, the Python
multiplexer) starts the real `tensorboard` and measures:

- load: seconds until every run's last epoch is served;
- each route's latency (p50/p95 over repeated requests), beside the built-in
  Scalars plugin's routes on the same log directory, the peer;
- in headless Chromium, opening the tab cold: when its first view's data
  (the run listing and the series of the cards in view, reduced to their
  charts' pixel columns: exact extremes) has arrived, when the cards in view
  and the model panel are drawn from it, every selected run's line in each,
  and when they are complete (every epoch read, for the tooltip).

Targets with the Rust loader: first view with exact extremes drawn <= 1 s,
every card in view complete <= 1.5 s, routes no slower than Scalars'.

    python bench/plugin_scale.py              # 20 runs x 2000 epochs x 40 variables
    python bench/plugin_scale.py --runs 4 --epochs 200   # a quick look
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import statistics
import sys
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.servers import tensorboard  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PREFIX = "/data/plugin/loss_params"
# The pixel columns a card's first view asks for (about its chart's width).
COLUMNS = 400


def write_run(args):
    """Writes one run with the plugin's summary API, as the callback would."""
    log_dir, run, epochs, variables = args
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from tensorboard_plugin.loss_params import metadata, summary

    n_loss = variables * 3 // 4
    n_model = variables - n_loss
    loss_paths = [f"loss/Multi/s_{i}" for i in range(n_loss)]
    model_paths = [f"model/net/dense_{i // 2}/{('kernel', 'bias')[i % 2]}" for i in range(n_model)]
    rng = np.random.default_rng(run)
    writer = tf.summary.create_file_writer(os.path.join(log_dir, f"run_{run:02d}", "train"))
    with writer.as_default():
        for epoch in range(epochs):
            decay = np.exp(-epoch / (epochs / 4))
            values = []
            for path in loss_paths:
                values += summary.values(metadata.ROLE_LOSS, metadata.VALUE, path,
                                         np.float32(rng.normal() * decay + 1), dtype="float32")
                values += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, path,
                                         np.float32([decay, 2 * decay]))
            for path in model_paths:
                norms = np.float32([3 + epoch / epochs, decay, 2 * decay, 0.01 * decay])
                values += summary.values(metadata.ROLE_MODEL, metadata.WEIGHT_NORMS, path,
                                         norms, shape=(8, 8), dtype="float32")
            values += summary.values(metadata.ROLE_RUN, metadata.WEIGHT_NORMS, metadata.RUN_MODEL,
                                     np.float32([10 + epoch / epochs, decay, 2 * decay, 0.01 * decay]))
            values += summary.values(metadata.ROLE_RUN, metadata.GRAD_NORM, metadata.RUN_GRAD_NORM,
                                     np.float32([decay, 2 * decay]))
            rows = np.array([[p, "training"] for p in loss_paths + model_paths], dtype=object)
            values += summary.values(metadata.ROLE_RUN, metadata.DIAGNOSIS,
                                     metadata.RUN_DIAGNOSIS, rows)
            summary.write(values, epoch)
            tf.summary.scalar("epoch_loss", float(decay), step=epoch)
    writer.close()


def write_logdir(log_dir, runs, epochs, variables):
    marker = os.path.join(log_dir, f".complete-v3-{runs}x{epochs}x{variables}")
    if os.path.exists(marker):
        print(f"Reusing {log_dir}")
        return
    start = time.perf_counter()
    jobs = [(log_dir, run, epochs, variables) for run in range(runs)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context) as pool:
        list(pool.map(write_run, jobs))
    open(marker, "w").close()
    print(f"Wrote {runs} runs x {epochs} epochs x {variables} variables in "
          f"{time.perf_counter() - start:.0f} s")


def latencies(board, routes, repeats):
    """p50 and p95 in ms of requests on each route: `routes[name]()` gives the URL, or
    `(URL, form)` for a POST."""
    result = {}
    for name, url in routes.items():
        times = []
        for _ in range(repeats):
            request = url()
            route, form = request if isinstance(request, tuple) else (request, None)
            start = time.perf_counter()
            status, _ = board.get(route, timeout=120, form=form)
            times.append((time.perf_counter() - start) * 1000)
            assert status == 200, f"{name}: {status}"
        times.sort()
        result[name] = (statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))])
    return result


def draw_times(board, runs, repeats):
    """Opens the tab cold in Chromium, `repeats` times.

    Returns the times of each open, in s from navigation, of: the first view's data
    arrived (the run listing and the reductions the cards in view and the model
    panel draw first), those drawn, and every epoch drawn (the cards complete).
    """
    from playwright.sync_api import sync_playwright

    # Every card in view, and the model panel, hold a line per run; with
    # `complete`, drawn from every epoch.
    drawn = """(complete) => {
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
            // The first view's requests: the first listing (the page polls
            // it) and the samples.
            data: Math.max(...performance.getEntriesByType('resource')
                .filter((e, i, all) => /[?&]columns=/.test(e.name) ||
                        e === all.find(f => /\\/runs$/.test(f.name)))
                .map(e => e.responseEnd)),
        };
    }""" % runs
    first_data, first_drawn, complete = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        for _ in range(repeats):
            page = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()
            page.goto(f"{board.url}/data/plugin_entry.html?name=loss_params")
            first = page.wait_for_function(drawn, arg=False, polling="raf", timeout=120_000).json_value()
            every = page.wait_for_function(drawn, arg=True, polling="raf", timeout=120_000).json_value()
            first_data.append(first["data"] / 1000)
            first_drawn.append(first["now"] / 1000)
            complete.append(every["now"] / 1000)
            page.context.close()
        browser.close()
    return first_data, first_drawn, complete


def measure(log_dir, load_fast, runs, epochs, variables, repeats):
    names = [f"run_{r:02d}/train" for r in range(runs)]
    paths = [f"loss/Multi/s_{i}" for i in range(variables * 3 // 4)]
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

        run = lambda: rng.choice(names)  # noqa: E731
        routes = {
            "loss_params /runs": lambda: f"{PREFIX}/runs",
            "scalars /tags (peer)": lambda: "/data/plugin/scalars/tags",
            "loss_params /series": q(f"{PREFIX}/series", run=run, variable=lambda: rng.choice(paths)),
            "loss_params /weights": q(f"{PREFIX}/weights", run=run),
            "loss_params /diagnosis": q(f"{PREFIX}/diagnosis", run=run),
            "scalars /scalars (peer)": q("/data/plugin/scalars/scalars", run=run, tag="epoch_loss"),
            f"loss_params /series_multirun x{runs}": lambda: f"{PREFIX}/series_multirun?" + urllib.parse.urlencode(
                [("variable", rng.choice(paths))] + [("run", n) for n in names]),
            f"scalars /scalars_multirun x{runs} (peer)": lambda: (
                "/data/plugin/scalars/scalars_multirun", [("tag", "epoch_loss")] + [("runs", n) for n in names]),
            f"loss_params /series_multirun x{runs} columns={COLUMNS}": lambda: f"{PREFIX}/series_multirun?" + urllib.parse.urlencode(
                [("variable", rng.choice(paths)), ("columns", COLUMNS)] + [("run", n) for n in names]),
            # As many epochs as Scalars keeps of a tag (3 series each, to its 1).
            f"loss_params /series_multirun x{runs} samples=1000": lambda: f"{PREFIX}/series_multirun?" + urllib.parse.urlencode(
                [("variable", rng.choice(paths)), ("samples", 1000)] + [("run", n) for n in names]),
            f"loss_params /weights_multirun x{runs}": lambda: f"{PREFIX}/weights_multirun?" + urllib.parse.urlencode(
                [("run", n) for n in names]),
            f"loss_params /weights_multirun x{runs} columns={COLUMNS}": lambda: f"{PREFIX}/weights_multirun?" + urllib.parse.urlencode(
                [("columns", COLUMNS)] + [("run", n) for n in names]),
        }
        route_times = latencies(board, routes, repeats * 10)
        tab = draw_times(board, runs, repeats) if os.path.exists(CHROMIUM) else None
    return load, route_times, tab


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--variables", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loaders", default="true,false", help="--load_fast values to measure")
    parser.add_argument("--log-dir", default=os.path.join("/tmp", "loss_params_scale"))
    args = parser.parse_args()
    log_dir = os.path.join(args.log_dir, f"{args.runs}x{args.epochs}x{args.variables}")
    write_logdir(log_dir, args.runs, args.epochs, args.variables)
    for load_fast in args.loaders.split(","):
        load, route_times, tab = measure(
            log_dir, load_fast, args.runs, args.epochs, args.variables, args.repeats
        )
        print(f"\n--load_fast={load_fast}: all {args.runs} runs served after {load:.1f} s")
        for name, (p50, p95) in route_times.items():
            print(f"  {name:42s} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms")
        multirun_peer = f"scalars /scalars_multirun x{args.runs} (peer)"
        for ours, peer in [("loss_params /runs", "scalars /tags (peer)"),
                           ("loss_params /series", "scalars /scalars (peer)"),
                           (f"loss_params /series_multirun x{args.runs}", multirun_peer),
                           (f"loss_params /series_multirun x{args.runs} samples=1000", multirun_peer),
                           (f"loss_params /series_multirun x{args.runs} columns={COLUMNS}", multirun_peer)]:
            print(f"  {ours} p50 / {peer} p50: {route_times[ours][0] / route_times[peer][0]:.2f}")
        if tab is not None:
            data, drawn, complete = (statistics.median(times) for times in tab)
            print(f"  tab opened cold (median of {args.repeats}): first view's data {data:.2f} s, "
                  f"first view drawn (exact extremes) {drawn:.2f} s, complete {complete:.2f} s")
            for name, times in zip(("data", "drawn", "complete"), tab):
                print(f"    each open, {name:8s}: {' '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
