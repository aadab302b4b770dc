"""The tab shows what users reason about: displayed values, a vector's elements, layers matched by place.

Real fits write the runs; a real TensorBoard serves them; headless Chromium
reads the page back. The last test draws a card of 64 elements over 10,000
epochs in 20 runs.
"""

import math
import re
import shutil

import keras
import numpy as np
import pytest
from keras import ops

from loss_param_tracker import Display, LossParamTracker
from tensorboard_plugin.loss_params import metadata, summary
from tests.conftest import compile_fixed, fit
from tests.servers import tensorboard
from tests.test_browser import SCREENSHOTS, browser, card, css_string, drawn_whole, hover_last_epoch, open_tab  # noqa: F401
from tests.test_plugin_robustness import diagnosis, write_run

pytestmark = pytest.mark.browser

SCALE = "loss/TemperedMSE/logit_scale"
LOG_VARS = "loss/ThreeTasks/log_vars"
INITIAL_SCALE = 1 / 0.07


class TemperedMSE(keras.losses.Loss):
    """Keeps a scale as its log, as CLIP does: the tab should show the scale."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.logit_scale = keras.Variable(math.log(INITIAL_SCALE), name="logit_scale")

    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred)) * ops.exp(self.logit_scale) / INITIAL_SCALE


class ThreeTasks(keras.losses.Loss):
    """Uncertainty weighting of three outputs: a log-variance each."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_vars = keras.Variable(np.zeros(3, "float32"), name="log_vars")

    def call(self, y_true, y_pred):
        return ops.mean(0.5 * ops.exp(-self.log_vars) * ops.square(y_true - y_pred) + 0.5 * self.log_vars, axis=-1)


def unnamed_model(outputs):
    """Keras names its layers (`dense_12`, ...) anew in every model: different in every run."""
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(outputs)])


def data(outputs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    return x, (x[:, :outputs] * np.array([0.1, 0.3, 1.0][:outputs], "float32")).astype("float32")


@pytest.fixture(scope="module")
def views_logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    runs = {
        "clip": (TemperedMSE, 1, {"logit_scale": Display("exp", label="scale")}),
        "tasks_a": (ThreeTasks, 3, None),
        "tasks_b": (ThreeTasks, 3, None),
    }
    for run, (loss_class, outputs, display) in runs.items():
        loss = loss_class()
        model = compile_fixed(unnamed_model(outputs), loss)
        tracker = LossParamTracker(str(root / run), display=display)
        fit(model, loss, str(root / run), epochs=4, tracker=tracker, data=data(outputs))
    return root


def test_a_displayed_variable_shows_its_value_with_the_stored_one_a_toggle_away(browser, views_logdir):
    with tensorboard(views_logdir) as board:
        page, frame, dialogs, errors = open_tab(browser, board)
        scale = card(frame, SCALE)
        drawn_whole(frame, f'article.card[data-path="{SCALE}"]')
        assert "shown as scale" in scale.locator(".meta").text_content()
        assert scale.locator("h4 > span").first.text_content() == "value: scale"
        # The first epoch moved the scale only a little from 1/0.07 = 14.29.
        shown = float(re.search(r"clip/train(\S+)", hover_first_epoch(page, frame, scale))[1])
        assert shown == pytest.approx(INITIAL_SCALE, rel=0.2), shown
        ticks = y_ticks(scale)
        assert min(ticks) > 5, f"the axis should be in the scale's range: {ticks}"
        page.mouse.move(0, 0)

        scale.locator("input[type=checkbox]").first.check()  # stored value
        scale.locator("h4 > span").first.get_by_text("value as stored: logit_scale").wait_for()
        stored = float(re.search(r"clip/train(\S+)", hover_first_epoch(page, frame, scale))[1])
        assert stored == pytest.approx(math.log(shown), abs=2e-3), (stored, shown)
        assert max(y_ticks(scale)) < 5, "the stored log, 2.66, not the scale"
        assert errors == [] and dialogs == []


def test_a_vectors_elements_have_their_own_shade_and_legend(browser, views_logdir):
    with tensorboard(views_logdir) as board:
        page, frame, dialogs, errors = open_tab(browser, board)
        tasks = card(frame, LOG_VARS)
        drawn_whole(frame, f'article.card[data-path="{LOG_VARS}"]')
        for run in ("tasks_a/train", "tasks_b/train"):
            key = tasks.locator(f'.legend li[data-run="{run}"] .elements .element')
            assert key.all_text_contents() == ["[0]", "[1]", "[2]"]
            legend = key.evaluate_all("es => es.map(e => getComputedStyle(e.querySelector('.swatch')).backgroundColor)")
            lines = tasks.locator(f'[data-chart="value"] path[data-run="{run}"]').evaluate_all(
                "ps => ps.map(p => [p.dataset.element, getComputedStyle(p).stroke])")
            assert [e for e, _ in lines] == ["0", "1", "2"]
            assert len(set(legend)) == 3 and [c for _, c in lines] == legend, (legend, lines)
        run_colors = tasks.locator(".legend li > .swatch").evaluate_all(
            "ss => ss.map(s => getComputedStyle(s).backgroundColor)")
        assert len(set(run_colors)) == 2, "each run keeps its own colour family"
        tooltip = hover_last_epoch(page, frame, tasks)
        for e in range(3):
            assert f"tasks_a/train [{e}]" in tooltip, tooltip
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "loss_params_elements.png"))
        assert errors == [] and dialogs == []


def test_a_layer_picked_by_place_shows_it_in_every_run_whatever_its_name(browser, views_logdir):
    with tensorboard(views_logdir) as board:
        page, frame, dialogs, errors = open_tab(browser, board)
        weights = frame.locator("aside.weights")
        drawn_whole(frame, 'aside.weights[data-layer=""]')
        option = weights.locator('select option[value="place:1"]')
        label = option.text_content()
        assert re.fullmatch(r"#1 model/sequential(_\d+)?/dense_\d+ \(\+2 other names\)", label), label
        weights.locator("select").select_option("place:1")
        drawn_whole(frame, 'aside.weights[data-layer="place:1"]')
        drawn = weights.locator('[data-chart="norm"] path[data-run]').evaluate_all("ps => ps.map(p => p.dataset.run)")
        assert sorted(drawn) == ["clip/train", "tasks_a/train", "tasks_b/train"]
        assert "no such layer" not in weights.locator(".note").text_content()
        assert errors == [] and dialogs == []


def test_a_card_of_64_elements_over_10_000_epochs_in_20_runs_draws(browser, tmp_path):
    path, epochs = "loss/Centers/offsets", 10_000
    rows = diagnosis([[path, "training", ""]])
    phase = np.arange(64, dtype=np.float32)
    one = tmp_path / "run_00" / "train"
    write_run(one, [
        summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, np.sin(phase + e / 500).astype(np.float32),
                       shape=(64,), dtype="float32") + rows
        for e in range(epochs)
    ])
    for run in range(1, 20):  # the same events under 20 names: the tab reads and draws each
        shutil.copytree(one, tmp_path / f"run_{run:02d}" / "train")
    with tensorboard(tmp_path, "--load_fast=true") as board:
        runs = lambda: board.get_json("/data/plugin/loss_params/runs")["runs"]  # noqa: E731
        board.wait_for(lambda: [r["last_step"] for r in runs()] == [epochs - 1] * 20, timeout=300, interval=1)
        page, frame, dialogs, errors = open_tab(browser, board)
        big = card(frame, path)
        frame.locator(f'article.card[data-path="{path}"] [data-chart="value"] path[data-run]').nth(20 * 64 - 1).wait_for(
            state="attached", timeout=120_000)
        plot_width = big.locator('[data-chart="value"] svg rect').first.evaluate("r => r.width.baseVal.value")
        drawn = big.locator('[data-chart="value"] path[data-run]').evaluate_all(
            "ps => ps.map(p => (p.getAttribute('d').match(/[ML]/g) || []).length)")
        assert len(drawn) == 20 * 64 and 0 < max(drawn) <= 4 * plot_width, (len(drawn), max(drawn), plot_width)
        assert big.get_attribute("data-error") is None
        # 12.8 M values are not loaded whole: the exact reduction stays, and the tooltip names drawn epochs.
        assert "more than the tab loads" in big.locator(".note").text_content()
        tooltip = hover_last_epoch(page, frame, big)
        hovered = re.match(r"epoch (\d+)run_00/train \[0\](\S+?)run_00", tooltip)
        assert hovered, tooltip
        epoch, value = int(hovered[1]), float(hovered[2])
        assert epoch > epochs - 100 and value == pytest.approx(math.sin(epoch / 500), abs=1e-3), tooltip
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "loss_params_64x10000x20.png"))
        assert errors == [] and dialogs == []


def hover_first_epoch(page, frame, card_locator):
    box = card_locator.locator('[data-chart="value"] svg rect').first.bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    tooltip = frame.locator("body > .tooltip")
    tooltip.get_by_text("epoch 0").wait_for()
    return tooltip.text_content()


def y_ticks(card_locator):
    return [float(t) for t in card_locator.locator('[data-chart="value"] .axes text[text-anchor="end"]').all_text_contents()]


def test_cards_far_below_the_view_cost_nothing_until_they_come_near(browser, tmp_path):
    paths = [f"loss/Many/v{i:02d}" for i in range(40)]
    rows = diagnosis([[path, "training", ""] for path in paths])
    write_run(tmp_path / "many" / "train", [
        [value for path in paths
         for value in summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, np.float32(e), dtype="float32")] + rows
        for e in range(3)
    ])
    read = []
    with tensorboard(tmp_path) as board:
        board.wait_for(lambda: board.get_json("/data/plugin/loss_params/runs")["runs"])
        page, frame, dialogs, errors = open_tab(
            browser, board, [("**/series_multirun?*", lambda route: (read.append(route.request.url), route.continue_()))])
        first, last = card(frame, paths[0]), card(frame, paths[-1])
        drawn_whole(frame, f'article.card[data-path="{paths[0]}"]')
        assert first.locator(".legend li").count() == 1
        assert last.locator(".legend li").count() == 0, "far below: not described"
        assert not any("v39" in url for url in read), "nor read"
        last.scroll_into_view_if_needed()
        drawn_whole(frame, f'article.card[data-path="{paths[-1]}"]')
        assert last.locator(".legend li .badge").text_content() == "training"
        assert errors == [] and dialogs == []
