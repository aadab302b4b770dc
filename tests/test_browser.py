"""The "Loss Params" tab in real TensorBoard, driven in a real headless Chromium."""

import os
import pathlib
import re
import shutil

import pytest

from tests.conftest import (
    DASHBOARD_RUNS, NETWORK, NETWORK_LAYERS, NETWORK_RUNS, XSS_RUN, fit, make_data, make_model, GaussianNLL,
)
from tests.servers import tensorboard

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = pathlib.Path(__file__).resolve().parent.parent / "test-artifacts"
LOG_VAR = "loss/GaussianNLL/log_var"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"No Chromium at {CHROMIUM}: `make test` installs Debian's chromium."
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI never skips the browser test
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def live_logdir(tmp_path, dashboard_logdir):
    logdir = tmp_path / "logs"
    shutil.copytree(dashboard_logdir, logdir)
    return logdir


def open_tab(browser, board, routes=()):
    """Opens TensorBoard, clicks the tab, and returns (page, plugin frame, dialogs seen).

    `routes`: `(url pattern, handler)` pairs that intercept the page's requests.
    """
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    for pattern, handler in routes:
        page.route(pattern, handler)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(board.url)
    page.get_by_text("Loss Params", exact=False).first.click()
    frame = page.frame_locator("iframe").first
    frame.locator("article.card").first.wait_for(timeout=30_000)
    return page, frame, dialogs, errors


def points(frame, chart_selector, run, **data):
    """The number of points of the run's raw line(s) in a chart: its path's M/L commands."""
    selector = f'{chart_selector} path[data-run="{css_string(run)}"]:not([data-smoothed])'
    for key, value in data.items():
        selector += f'[data-{key}="{value}"]'
    paths = frame.locator(selector)
    return [len(re.findall(r"[ML]", d)) for d in paths.evaluate_all("ps => ps.map(p => p.getAttribute('d'))")]


def drawn_whole(frame, selector):
    """Waits until the card or panel `selector` is drawn from every epoch, not a sample."""
    frame.locator(f'{selector}[data-sampled="false"]').wait_for(state="attached", timeout=30_000)


def css_string(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


def hover_last_epoch(page, frame, card_locator):
    """Moves the mouse over the last epoch of a card's value chart; returns the tooltip's text."""
    box = card_locator.locator('[data-chart="value"] svg rect').first.bounding_box()  # the plot's hover area
    page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
    tooltip = frame.locator("body > .tooltip")
    tooltip.wait_for()
    return tooltip.text_content()


def card(frame, path):
    return frame.locator(f'article.card[data-path="{path}"]')


def test_tab_draws_every_epoch_with_statuses(browser, live_logdir):
    with tensorboard(live_logdir) as board:
        page, frame, dialogs, errors = open_tab(browser, board)
        loss_paths = sorted({p for _, s in DASHBOARD_RUNS.values() for p in s})
        frame.locator("article.card").nth(len(loss_paths) - 1).wait_for()
        assert frame.locator("article.card").evaluate_all(
            "cards => cards.map(c => c.dataset.path)") == loss_paths

        # One point per epoch, for every run's line, in the value and gradient charts.
        log_var = card(frame, LOG_VAR)
        drawn_whole(frame, f'article.card[data-path="{LOG_VAR}"]')
        for run in ("fixed/train", "broken/train"):
            epochs = DASHBOARD_RUNS[run][0]
            assert points(log_var, '[data-chart="value"]', run) == [epochs]
            assert points(log_var, '[data-chart="grad_norm"]', run) == [epochs]
            badge = log_var.locator(f'.legend li[data-run="{run}"] .badge')
            assert badge.text_content() == DASHBOARD_RUNS[run][1][LOG_VAR]
        help_text = log_var.locator(".help").text_content()
        assert "make_trainable(model)" in help_text, help_text

        # The large variable: its distribution, a median line in nested bands; its status.
        centers = card(frame, "loss/CenterLoss/centers")
        centers.scroll_into_view_if_needed()
        drawn_whole(frame, 'article.card[data-path="loss/CenterLoss/centers"]')
        assert points(centers, '[data-chart="value"]', "centers/train", series="median") == [12]
        assert centers.locator('[data-chart="value"] path[fill-opacity]').count() == 4, "four quantile bands"
        assert centers.locator(".badge").first.text_content() == "training"

        # The model-weights panel: one line per run, every epoch.
        weights = frame.locator("aside.weights")
        drawn_whole(frame, 'aside.weights[data-layer=""]')
        for run, (epochs, _) in DASHBOARD_RUNS.items():
            assert points(weights, '[data-chart="norm"]', run) == [epochs], run
            assert points(weights, '[data-chart="update_ratio"]', run) == [epochs], run
        fixed_norm = weights.locator('[data-chart="norm"] path[data-run="fixed/train"]')
        whole_model = fixed_norm.get_attribute("d")
        # Layers are listed by their place in the model, with the runs' names for it.
        assert weights.locator('select option[value="place:1"]').text_content() == "#1 model/net/out"
        weights.locator("select").select_option("place:1")
        drawn_whole(frame, 'aside.weights[data-layer="place:1"]')
        assert points(weights, '[data-chart="norm"]', "fixed/train") == [150]
        assert fixed_norm.get_attribute("d") != whole_model, "the layer's norms, not the model's"

        # The run named as HTML shows literally and runs nothing.
        xss = card(frame, "loss/StoppedGradient/weight")
        xss.scroll_into_view_if_needed()
        assert xss.locator(".legend .run-name").text_content() == f"{XSS_RUN}/train"
        assert xss.locator(".badge").first.text_content() == "no_gradient"
        assert frame.locator(".runs").get_by_text(f"{XSS_RUN}/train", exact=True).count() == 1
        assert frame.locator("img").count() == 0
        assert dialogs == []

        # The run whose loss has no variables says so.
        assert 'Run "plain/train" logs no loss variables' in frame.locator(".message").text_content()

        # Hover: a tooltip with the epoch and each run's value.
        page.mouse.move(0, 0)
        log_var.scroll_into_view_if_needed()
        tooltip = hover_last_epoch(page, frame, log_var)
        assert "epoch" in tooltip and "fixed/train" in tooltip

        # Smoothing adds a smoothed line over a faint raw one.
        frame.locator('input[aria-label="Smoothing"]').evaluate(
            "slider => { slider.value = '0.6'; slider.dispatchEvent(new Event('input')); }")
        log_var.locator('[data-chart="value"] path[data-smoothed][data-run="fixed/train"]').wait_for(state="attached")

        SCREENSHOTS.mkdir(exist_ok=True)
        page.mouse.move(0, 0)
        frame.locator("body").evaluate("body => body.ownerDocument.defaultView.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / "loss_params_tab.png"))
        assert errors == []

        # CSV download of one series.
        href = log_var.locator('.legend li[data-run="fixed/train"] a.csv').get_attribute("href")
        frame_url = next(f.url for f in page.frames if "plugin_entry" in f.url)
        response = page.request.get(
            re.sub(r"plugin_entry\.html.*$", "plugin/loss_params/", frame_url) + href[2:]
        )
        assert response.ok and len(response.text().strip().splitlines()) == 1 + 150


def test_a_one_epoch_spike_and_a_nan_are_in_the_first_view(browser, tmp_path):
    # 3,000 epochs, more than a chart has pixel columns: the first view is
    # the series reduced to its width, and a random sample of that many
    # epochs would likely miss the one epoch that matters. The requests for
    # every epoch wait until the first view is checked.
    import numpy as np

    from tensorboard_plugin.loss_params import metadata, summary
    from tests.test_plugin_robustness import diagnosis, write_run

    path, epochs, spike, gap = "loss/L/w", 3_000, 1_234, 2_345
    rows = diagnosis([[path, "training", ""]])
    values = np.sin(np.arange(epochs) / 300).astype(np.float32)
    values[spike], values[gap] = 25.0, np.nan
    write_run(tmp_path / "long" / "train", [
        summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, values[e], dtype="float32") + rows
        for e in range(epochs)
    ])
    held, release = [], []
    hold = lambda route: route.continue_() if release else held.append(route)  # noqa: E731
    with tensorboard(tmp_path) as board:
        board.wait_for(lambda: [r["last_step"] for r in board.get_json("/data/plugin/loss_params/runs")["runs"]]
                       == [epochs - 1])
        page, frame, dialogs, errors = open_tab(browser, board, [(re.compile(r"_multirun\?(?!.*columns=)"), hold)])
        long = card(frame, path)
        frame.locator(f'article.card[data-path="{path}"][data-sampled="true"]').wait_for()
        drawn = points(long, '[data-chart="value"]', "long/train")
        plot_width = long.locator('[data-chart="value"] svg rect').first.evaluate("r => r.width.baseVal.value")
        assert sum(drawn) <= 4 * plot_width < epochs, (drawn, plot_width)
        assert len(drawn) == 1 and "M" in long.locator('[data-chart="value"] path[data-run="long/train"]').get_attribute("d")[1:], (
            "the NaN breaks the line in the first view")
        # The spike is the chart's top: its extent and its drawn point.
        ticks = [float(t) for t in long.locator('[data-chart="value"] .axes text[text-anchor="end"]').all_text_contents()]
        assert max(ticks) >= 20, f"the y axis does not reach the spike: {ticks}"
        assert "extremes of each pixel column" in long.locator(".note").text_content()

        release.append(True)
        for route in held:
            route.continue_()
        drawn_whole(frame, f'article.card[data-path="{path}"]')
        page.mouse.move(0, 0)
        # Every epoch is there for the tooltip: the one under the mouse, with its value.
        tooltip = hover_last_epoch(page, frame, long)
        hovered = re.fullmatch(r"epoch (\d+)long/train(\S+)", tooltip)
        assert hovered and float(hovered[2]) == pytest.approx(float(values[int(hovered[1])]), abs=1e-4), tooltip
        assert "extremes" not in long.locator(".note").text_content()
        assert errors == [] and dialogs == []


def test_tab_refreshes_while_training_writes_and_keeps_the_selection(browser, live_logdir):
    model, loss = make_model(), GaussianNLL()
    data = make_data(n=64)
    fit(model, loss, str(live_logdir / "live"), epochs=2, data=data)
    with tensorboard(live_logdir, "--reload_interval", "1") as board:
        page, frame, dialogs, errors = open_tab(browser, board)
        log_var = card(frame, LOG_VAR)
        log_var.locator('[data-chart="value"] path[data-run="live/train"]').wait_for(state="attached")
        assert points(log_var, '[data-chart="value"]', "live/train") == [2]
        frame.locator('.runs input[data-run="broken/train"]').uncheck()
        log_var.locator('.legend li[data-run="broken/train"]').wait_for(state="detached")

        fit(model, loss, str(live_logdir / "live"), epochs=5, initial_epoch=2, data=data)
        frame.locator('[data-chart="value"] path[data-run="live/train"]').first.wait_for(state="attached")
        page.wait_for_function(
            """() => {
                const frame = document.querySelector('iframe').contentDocument;
                const path = frame.querySelector(
                    'article.card[data-path="loss/GaussianNLL/log_var"] [data-chart="value"] path[data-run="live/train"]');
                return path && (path.getAttribute('d').match(/[ML]/g) || []).length === 5;
            }""",
            timeout=30_000,
        )
        assert not frame.locator('.runs input[data-run="broken/train"]').is_checked()
        assert log_var.locator('.legend li[data-run="broken/train"]').count() == 0
        assert points(log_var, '[data-chart="value"]', "fixed/train") == [150]
        assert errors == []


def test_a_network_is_one_card_and_its_weights_one_click_away(browser, network_logdir):
    with tensorboard(network_logdir) as board:
        page, frame, dialogs, errors = open_tab(browser, board)
        loss_paths = sorted({p for _, s in NETWORK_RUNS.values() for p in s})
        frame.locator("article.card").nth(len(loss_paths) - 1).wait_for()
        drawn_whole(frame, f'article.card[data-path="{NETWORK}"]')
        shown = frame.locator("article.card").evaluate_all("cards => cards.map(c => c.dataset.path)")
        assert shown == loss_paths, "one card for the network, none per weight"

        # The network's card: its size, a status per run, its weight norm and gradient norm.
        network = card(frame, NETWORK)
        assert network.locator(".meta").text_content() == "network · 26 weights"
        assert network.locator("h4 > span").first.text_content() == "weight norm"
        for run, (epochs, statuses) in NETWORK_RUNS.items():
            assert network.locator(f'.legend li[data-run="{run}"] .badge').text_content() == statuses[NETWORK]
            assert points(network, '[data-chart="value"]', run, series="norm") == [epochs]
        assert points(network, '[data-chart="grad_norm"]', "vgg_tuned/train") == [8]
        assert points(network, '[data-chart="grad_norm"]', "vgg_frozen/train") == [0], "frozen: no gradient"
        assert "trainable=False" in network.locator(".help").text_content()
        tooltip = hover_last_epoch(page, frame, network)
        assert "epoch 7" in tooltip and "vgg_frozen/train" in tooltip
        page.mouse.move(0, 0)

        # The model panel shows the model's own weights, the network one entry after its layers.
        weights = frame.locator("aside.weights")
        drawn_whole(frame, 'aside.weights[data-layer=""]')
        assert weights.locator("h2").text_content() == "Model weights"
        menu = weights.locator("select option")
        model_menu = ["", "model/net/hidden", "model/net/out", NETWORK]
        assert menu.evaluate_all("os => os.map(o => o.value)") == model_menu
        norm_axes = weights.locator('[data-chart="norm"] .axes')  # both norms are straight lines: the ticks differ
        whole_model = norm_axes.text_content()

        # One click on the card: the panel shows the network, and its layers are in the menu.
        network.locator("button.show-weights").click()
        drawn_whole(frame, f'aside.weights[data-layer="{NETWORK}"]')
        assert weights.locator("select").input_value() == NETWORK
        assert weights.locator("h2").text_content() == "Network weights"
        network_layers = [f"{NETWORK}/{layer}" for layer in sorted(NETWORK_LAYERS)]
        assert menu.evaluate_all("os => os.map(o => o.value)") == model_menu + network_layers
        assert points(weights, '[data-chart="norm"]', "vgg_tuned/train") == [8]
        assert norm_axes.text_content() != whole_model, "the network's norms, not the model's"
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "loss_params_network.png"))

        layer = f"{NETWORK}/block1_conv1"
        weights.locator("select").select_option(layer)
        drawn_whole(frame, f'aside.weights[data-layer="{layer}"]')
        assert points(weights, '[data-chart="update_ratio"]', "vgg_tuned/train") == [8]
        weights.locator("select").select_option("")
        drawn_whole(frame, 'aside.weights[data-layer=""]')
        assert menu.evaluate_all("os => os.map(o => o.value)") == model_menu, "its layers fold away"
        assert norm_axes.text_content() == whole_model
        assert errors == [] and dialogs == []


def test_a_card_of_160_000_points_draws_and_an_unreadable_run_is_named(browser, tmp_path):
    # 64 elements over 2,500 epochs: more points than Chromium takes as a
    # function's arguments (Math.min(...xs) throws above about 125,000).
    import numpy as np

    from tensorboard_plugin.loss_params import metadata, summary
    from tests.test_plugin_robustness import diagnosis, write_run

    path, epochs = "loss/Centers/offsets", 2_500
    rows = diagnosis([[path, "training", ""]])
    write_run(tmp_path / "big" / "train", [
        summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, np.sin(np.arange(64, dtype=np.float32) + e / 100),
                       shape=(64,), dtype="float32") + rows
        for e in range(epochs)
    ])
    damaged = f"{XSS_RUN}/damaged"
    write_run(tmp_path / XSS_RUN / "damaged", [diagnosis(["a", "b", "c"])])
    with tensorboard(tmp_path) as board:
        runs = lambda: board.get_json("/data/plugin/loss_params/runs")["runs"]  # noqa: E731
        board.wait_for(lambda: [run["last_step"] for run in runs()] == [epochs - 1])
        page, frame, dialogs, errors = open_tab(browser, board)
        big = card(frame, path)
        drawn_whole(frame, f'article.card[data-path="{path}"]')
        # 64 lines, each drawn from its pixel columns' extremes, not from every point.
        drawn = points(big, '[data-chart="value"]', "big/train")
        plot_width = big.locator('[data-chart="value"] svg rect').first.evaluate("r => r.width.baseVal.value")
        assert len(drawn) == 64 and max(drawn) <= 4 * plot_width < epochs, (drawn, plot_width)
        assert big.get_attribute("data-error") is None
        tooltip = hover_last_epoch(page, frame, big)
        hovered = re.match(r"epoch (\d+)big/train \[0\]", tooltip)
        assert hovered and int(hovered[1]) > epochs - 20, f"not an epoch at the chart's end: {tooltip}"
        page.mouse.move(0, 0)

        note = frame.locator(".message .skipped")
        assert note.locator(f'li[data-run="{css_string(damaged)}"] .run-name').text_content() == damaged
        assert "diagnosis has shape (3,)" in note.text_content()
        assert frame.locator("img").count() == 0 and dialogs == []
        assert errors == []


def test_tab_with_no_runs_says_what_to_do(browser, tmp_path):
    (tmp_path / "empty").mkdir()
    with tensorboard(tmp_path / "empty") as board:
        page = browser.new_page()
        page.goto(f"{board.url}/data/plugin_entry.html?name=loss_params")
        message = page.locator(".message")
        message.get_by_text("No loss parameters logged yet").wait_for(timeout=30_000)
        assert "LossParamTracker(log_dir=" in message.text_content()
