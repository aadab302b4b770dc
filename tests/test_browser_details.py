"""Details of the tab seen on real runs, in real Chromium over a real TensorBoard.

Tick labels that tell ticks apart, a gradient the tracker could not observe
said so, a log axis offered where a chart spans decades, badges coloured by
the severity the listing gives, and the displayed values taken from the
server's `shown` (or the stored ones, labelled so, from an older server).
"""

import base64
import json
import math
import re

import numpy as np
import pytest

from tensorboard_plugin.loss_params import metadata, summary
from tensorboard_plugin.loss_params.display import Display
from tests.servers import tensorboard
from tests.test_browser import SCREENSHOTS, browser, card, drawn_whole, hover_last_epoch, open_tab  # noqa: F401
from tests.test_browser_chart import board, draw, tab_page  # noqa: F401 (fixtures)
from tests.test_plugin_robustness import diagnosis, write_run

pytestmark = pytest.mark.browser

EPOCHS = 30
UNSEEN = "loss/Custom/unseen"  # near 100, moving by 0.01; gradient_unknown, its gradient NaN
DEAD = "loss/Custom/dead"  # no_gradient, its gradient NaN
WIDE = "loss/Custom/wide"  # a gradient norm over five decades; shown through a display
NARROW = "loss/Custom/narrow"  # near 0.3433, moving by 1e-6; a gradient norm within a factor of 2
STILL = "loss/Custom/still"  # not_updated, its gradient not observed (a step the capture cannot see)
NAN_LOSS = "loss/Custom/x_nan_loss"  # last in order; non_finite for the loss's NaN (loss_non_finite), its gradient not observed
RUN = "custom/train"
NOT_OBSERVED = "gradient not observed"
RUNS = re.compile(r"/loss_params/runs$")
MULTIRUN = re.compile(r"/loss_params/series_multirun\?")
SEVERITIES = {"training": "good", "not_updated": "bad", "no_gradient": "bad", "non_finite": "bad",
              "zero_gradient": "warn", "no_minimum": "bad", "frozen": "info"}


def stored(path, epoch):
    """The value `path` stores at `epoch`."""
    if path == UNSEEN:
        return 100 + 0.01 * math.sin(epoch / 3)
    if path == NARROW:
        return 0.3433 + 1e-6 * epoch / EPOCHS
    if path == WIDE:
        return -1 + epoch / EPOCHS
    return 1.0


@pytest.fixture(scope="module")
def details_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("details")
    rows = diagnosis([[UNSEEN, "training", "gradient_unknown"], [DEAD, "no_gradient", ""],
                      [WIDE, "training", ""], [NARROW, "training", ""],
                      [STILL, "not_updated", "not_in_optimizer_gradient_unknown"],
                      [NAN_LOSS, "non_finite", "loss_non_finite"]])
    gradients = {
        UNSEEN: lambda e: [math.nan, math.nan],
        STILL: lambda e: [math.nan, math.nan],
        NAN_LOSS: lambda e: [math.nan, math.nan],
        DEAD: lambda e: [math.nan, math.nan],
        WIDE: lambda e: [10 ** (-5 * e / (EPOCHS - 1)), 2 * 10 ** (-5 * e / (EPOCHS - 1))],
        NARROW: lambda e: [1 - e / (2 * EPOCHS), 1.0],
    }
    epochs = []
    for e in range(EPOCHS):
        values = []
        for path, gradient in gradients.items():
            display = Display("exp", label="scale") if path == WIDE else None
            values += summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, np.float32(stored(path, e)),
                                     dtype="float32", display=display)
            values += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, path, np.float32(gradient(e)))
        epochs.append(values + rows)
    write_run(logdir / "custom" / "train", epochs)
    return logdir


@pytest.fixture(scope="module")
def details_board(details_logdir):
    with tensorboard(details_logdir) as board:
        board.wait_for(lambda: [r["last_step"] for r in board.get_json("/data/plugin/loss_params/runs")["runs"]]
                       == [EPOCHS - 1])
        yield board


def y_ticks(locator, chart="value"):
    return locator.locator(f'[data-chart="{chart}"] .axes text[text-anchor="end"]').all_text_contents()


def with_severities(route):
    """Answers /runs with a severity per status, as the server gives them."""
    body = route.fetch().json()
    for name, text in body["statuses"].items():
        text.setdefault("severity", SEVERITIES[name])
    route.fulfill(json=body)


def test_tick_labels_tell_ticks_apart_on_linear_and_log_axes(tab_page):  # noqa: F811 (the fixture)
    labels = {}
    for name, (centre, move) in {"near_100": (100, 0.01), "near_0.3433": (0.3433, 1e-6)}.items():
        for log in (False, True):
            chart = draw(tab_page, f"""() => {{
                const x = Array.from({{length: 50}}, (_, i) => i);
                const y = x.map((i) => {centre} + {move} * Math.sin(i / 5));
                return {{lines: [{{x, y, color: '#1f77b4'}}], logY: {str(log).lower()}, label: 't',
                         yTitle: 'value', tooltip: () => []}};
            }}""")
            ticks = chart["yTicks"]
            labels[name, log] = ticks
            assert len(ticks) >= 2 and len(set(ticks)) == len(ticks), (name, log, ticks)
            assert all(abs(float(t) - centre) <= 2 * move for t in ticks), (name, log, ticks)
            # The y title stays clear of the longer labels.
            title = chart["titleBoxes"][1]
            for box in chart["tickBoxes"][:len(ticks)]:
                assert title[2] <= box[0], f"the y title overlaps a tick label: {title} {box}"
    SCREENSHOTS.mkdir(exist_ok=True)
    tab_page.locator("body > .chart-host").first.screenshot(path=str(SCREENSHOTS / "ticks_chart.png"))
    print(labels)


def test_tick_labels_are_distinct_over_many_ranges(tab_page):  # noqa: F811 (the fixture)
    # numeric.js alone: ranges from 1e-9 to 1e9 wide, centred from 0 to 1e8,
    # as wide as float32 values can differ (1e-7 of the centre) or wider, on
    # linear and log axes; every axis's labels differ, and read back within
    # half a gap of their tick.
    clashes = tab_page.evaluate("""async () => {
        const {niceTicks, logTicks, tickLabels} = await import('./static/numeric.js');
        const clashes = [];
        for (const centre of [0, 1e-6, 0.3433, 1, 99.99, 100, 12345.678, 1e8]) {
            for (let e = -9; e <= 9; e++) {
                if (10 ** e < centre * 1e-7) continue;
                const lo = centre - 10 ** e / 2;
                const hi = centre + 10 ** e / 2;
                const axes = [niceTicks(lo, hi)];
                if (lo > 0) axes.push(logTicks(lo, hi, 140).ticks);
                for (const ticks of axes) {
                    const labels = tickLabels(ticks);
                    const gap = Math.min(...ticks.slice(1).map((t, i) => t - ticks[i]));
                    const off = labels.some((l, i) => Math.abs(Number(l) - ticks[i]) > gap / 2);
                    if (new Set(labels).size !== labels.length || off) clashes.push([lo, hi, ticks, labels]);
                }
            }
        }
        return clashes;
    }""")
    assert clashes == []


def test_a_real_card_near_100_and_one_near_0_3433_have_distinct_ticks(browser, details_board):  # noqa: F811
    page, frame, dialogs, errors = open_tab(browser, details_board)
    for path in (UNSEEN, NARROW):
        one = card(frame, path)
        one.scroll_into_view_if_needed()
        drawn_whole(frame, f'article.card[data-path="{path}"]')
        ticks = y_ticks(one)
        assert len(ticks) >= 2 and len(set(ticks)) == len(ticks), (path, ticks)
    card(frame, UNSEEN).scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "ticks.png"))
    assert errors == [] and dialogs == []


def test_a_gradient_not_observed_says_so_and_no_gradient_keeps_its_sentence(browser, details_board):  # noqa: F811
    page, frame, dialogs, errors = open_tab(browser, details_board, [(RUNS, with_severities)])
    unseen = card(frame, UNSEEN)
    drawn_whole(frame, f'article.card[data-path="{UNSEEN}"]')
    empty = unseen.locator('[data-chart="grad_norm"] text.empty')
    assert empty.text_content() == NOT_OBSERVED
    # Wrapped to the chart's width.
    chart_box = unseen.locator('[data-chart="grad_norm"] svg').bounding_box()
    text_box = empty.bounding_box()
    assert chart_box["x"] <= text_box["x"] and text_box["x"] + text_box["width"] <= chart_box["x"] + chart_box["width"]
    # training with a cause is worth a line of help; plain training is not.
    assert "could not be observed" in unseen.locator(".help").text_content()
    assert card(frame, NARROW).locator(".help").text_content() == ""

    dead = card(frame, DEAD)
    dead.scroll_into_view_if_needed()
    drawn_whole(frame, f'article.card[data-path="{DEAD}"]')
    assert dead.locator('[data-chart="grad_norm"] text.empty').text_content() == "No gradient reached this variable"
    assert "No gradient reached" not in unseen.text_content()

    # not_updated, whose status says "has a gradient": its cause says it was not observed.
    still = card(frame, STILL)
    still.scroll_into_view_if_needed()
    drawn_whole(frame, f'article.card[data-path="{STILL}"]')
    assert still.locator('[data-chart="grad_norm"] text.empty').text_content() == NOT_OBSERVED
    assert "could not be observed" in still.locator(".help").text_content()

    # non_finite for the loss's NaN, its own values finite: its cause's sentence, not its status's.
    nan_loss = card(frame, NAN_LOSS)
    nan_loss.scroll_into_view_if_needed()
    drawn_whole(frame, f'article.card[data-path="{NAN_LOSS}"]')
    said = nan_loss.locator('[data-chart="grad_norm"] text.empty').text_content()
    assert said.startswith(f"{NOT_OBSERVED} (non_finite: Its value moves and is finite"), said

    unseen.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    SCREENSHOTS.mkdir(exist_ok=True)
    unseen.screenshot(path=str(SCREENSHOTS / "gradient_not_observed.png"))
    assert errors == [] and dialogs == []


def test_a_chart_over_more_than_three_decades_starts_on_a_log_axis_until_the_user_chooses(
        browser, details_board):  # noqa: F811
    page, frame, dialogs, errors = open_tab(browser, details_board)
    wide, narrow = card(frame, WIDE), card(frame, NARROW)
    for one, path in ((wide, WIDE), (narrow, NARROW)):
        one.scroll_into_view_if_needed()
        drawn_whole(frame, f'article.card[data-path="{path}"]')
    log_toggle = lambda one: one.locator("h4", has_text="gradient norm").locator("input[type=checkbox]")  # noqa: E731
    assert log_toggle(wide).is_checked(), "five decades: a log axis"
    assert not log_toggle(narrow).is_checked(), "within a factor of 2: linear"
    assert y_ticks(wide, "grad_norm") == ["1e-5", "1e-4", "0.001", "0.01", "0.1", "1"]
    wide.scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(exist_ok=True)
    wide.screenshot(path=str(SCREENSHOTS / "log_by_default.png"))

    # The user's choice wins over the suggestion, through redraws.
    log_toggle(wide).uncheck()
    log_toggle(narrow).check()
    frame.locator('input[aria-label="Smoothing"]').evaluate(
        "slider => { slider.value = '0.3'; slider.dispatchEvent(new Event('input')); }")
    wide.locator('[data-chart="grad_norm"] path[data-smoothed]').wait_for(state="attached")
    narrow.locator('[data-chart="grad_norm"] path[data-smoothed]').wait_for(state="attached")
    assert not log_toggle(wide).is_checked() and log_toggle(narrow).is_checked()
    assert "1e-5" not in y_ticks(wide, "grad_norm")
    assert errors == [] and dialogs == []


def test_badges_take_their_class_from_the_listings_severity(browser, details_board):  # noqa: F811
    def newer(route):
        # A newer tracker's status, which this listing does not name.
        body = route.fetch().json()
        for text in body["statuses"].values():
            text.pop("severity", None)
        body["statuses"]["training"]["severity"] = "good"
        body["statuses"]["no_gradient"]["severity"] = "bad"
        for variable in body["runs"][0]["variables"]:
            if variable["path"] == NARROW:
                variable["status"] = "diverging"
        route.fulfill(json=body)

    page, frame, dialogs, errors = open_tab(browser, details_board, [(RUNS, newer)])
    badge = lambda path: card(frame, path).locator(f'.legend li[data-run="{RUN}"] .badge')  # noqa: E731
    drawn_whole(frame, f'article.card[data-path="{UNSEEN}"]')
    assert badge(UNSEEN).get_attribute("class") == "badge severity-good"
    assert badge(DEAD).get_attribute("class") == "badge severity-bad"
    assert badge(DEAD).get_attribute("data-status") == "no_gradient"
    assert badge(NARROW).get_attribute("class") == "badge severity-unknown"
    assert badge(NARROW).text_content() == "diverging"
    colour = lambda path: badge(path).evaluate("b => getComputedStyle(b).color")  # noqa: E731
    assert colour(UNSEEN) == "rgb(19, 115, 51)" and colour(DEAD) == "rgb(197, 34, 31)"
    assert colour(NARROW) == "rgb(66, 66, 66)"
    SCREENSHOTS.mkdir(exist_ok=True)
    card(frame, DEAD).screenshot(path=str(SCREENSHOTS / "severity_badges.png"))
    assert errors == [] and dialogs == []


def test_every_severity_has_its_colours_and_the_help_skips_plain_good_health(tab_page):  # noqa: F811
    # views.js alone, with a listing as the server gives it: no status name is
    # known to the page, each one's colours are its severity's.
    result = tab_page.evaluate("""async () => {
        const views = await import('./static/views.js');
        const listing = {
            statuses: {
                fine: {explanation: 'Fine.', fix: '', severity: 'good'},
                broken: {explanation: 'Broken.', fix: "Mend it: scan(m, '<its path>').", severity: 'bad'},
                odd: {explanation: 'Odd.', fix: '', severity: 'warn'},
                resting: {explanation: 'Resting.', fix: '', severity: 'info'},
            },
            causes: {elsewhere: {explanation: 'Moved elsewhere.', fix: ''}},
        };
        const host = document.createElement('div');
        host.className = 'help';
        document.body.prepend(host);
        views.help(host, [
            {status: 'fine', cause: ''}, {status: 'fine', cause: 'elsewhere'}, {status: 'broken', cause: ''},
            {status: 'odd', cause: ''}, {status: 'resting', cause: ''}, {status: 'newer', cause: ''},
        ], listing, 'loss/L/t');
        const badges = ['good', 'bad', 'warn', 'info', 'unknown', undefined].map((s) => {
            const b = views.badge('x', s);
            document.body.append(b);
            return [b.className, getComputedStyle(b).color, getComputedStyle(b).backgroundColor];
        });
        return {lines: [...host.querySelectorAll('p')].map((p) => [p.querySelector('.badge').className, p.textContent]),
                badges};
    }""")
    assert result["lines"] == [
        ["badge severity-good", "fine Moved elsewhere."],
        ["badge severity-bad", "broken Broken. Fix: Mend it: scan(m, 'loss/L/t')."],
        ["badge severity-warn", "odd Odd."],
        ["badge severity-info", "resting Resting."],
    ]
    classes = [c for c, _, _ in result["badges"]]
    assert classes == ["badge severity-good", "badge severity-bad", "badge severity-warn", "badge severity-info",
                       "badge severity-unknown", "badge severity-unknown"]
    assert len({(fg, bg) for _, fg, bg in result["badges"][:5]}) == 5, result["badges"]


def float32s(text):
    """The values of an array of floats the tab asks for as base64 (`floats=base64`, see http_api.md)."""
    return np.frombuffer(base64.b64decode(text), "<f4")


def packed(values):
    """Values as an array of floats of a `floats=base64` body."""
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode("ascii")


def shown_route(transform):
    """Rewrites the /series_multirun answers: `transform(body)` changes each run's body in place."""
    def handler(route):
        response = route.fetch()
        body = response.json()
        if body.get("variable") == WIDE:
            for run_body in body["runs"].values():
                transform(run_body)
        route.fulfill(response=response, body=json.dumps(body))
    return handler


def test_the_display_shows_the_servers_shown_values_and_the_stored_ones_a_toggle_away(
        browser, details_board):  # noqa: F811
    def plus_100(body):  # unlike any display, so that the values drawn are seen to be the server's
        body["shown"] = {"value": [packed(float32s(element) + 100) for element in body["value"]]}

    page, frame, dialogs, errors = open_tab(browser, details_board, [(MULTIRUN, shown_route(plus_100))])
    wide = card(frame, WIDE)
    wide.scroll_into_view_if_needed()
    drawn_whole(frame, f'article.card[data-path="{WIDE}"]')
    assert wide.locator("h4 > span").first.text_content() == "value: scale"
    last = stored(WIDE, EPOCHS - 1)
    shown = float(re.search(rf"{RUN}(\S+)", hover_last_epoch(page, frame, wide))[1])
    assert shown == pytest.approx(100 + last, abs=1e-2), shown
    assert min(float(t) for t in y_ticks(wide)) > 90
    page.mouse.move(0, 0)

    wide.locator("input[type=checkbox]").first.check()  # stored value
    wide.locator("h4 > span").first.get_by_text("value as stored: wide").wait_for()
    value = float(re.search(rf"{RUN}(\S+)", hover_last_epoch(page, frame, wide))[1])
    assert value == pytest.approx(last, abs=1e-3), value
    assert errors == [] and dialogs == []


def test_from_a_server_without_shown_values_the_card_shows_the_stored_ones_and_says_so(
        browser, details_board):  # noqa: F811
    page, frame, dialogs, errors = open_tab(
        browser, details_board, [(MULTIRUN, shown_route(lambda body: body.pop("shown", None)))])
    wide = card(frame, WIDE)
    wide.scroll_into_view_if_needed()
    drawn_whole(frame, f'article.card[data-path="{WIDE}"]')
    wide.locator("h4 > span").first.get_by_text("value as stored: wide").wait_for()
    assert "sends no values shown as scale" in wide.locator(".note").text_content()
    value = float(re.search(rf"{RUN}(\S+)", hover_last_epoch(page, frame, wide))[1])
    assert value == pytest.approx(stored(WIDE, EPOCHS - 1), abs=1e-3), value
    assert errors == [] and dialogs == []
