"""chart.js in real Chromium, in the tab's own document served by a real TensorBoard.

Synthetic series are built in the page and drawn with drawChart; the tests
read the SVG back: the points a path keeps, its gaps, the axes' ticks and
titles, the time a card of 12.8 M points takes, and the colours of
TensorBoard's light and dark themes.
"""

import re

import numpy as np
import pytest

from tensorboard_plugin.loss_params import metadata, summary
from tests.servers import tensorboard
from tests.test_browser import SCREENSHOTS, browser, card, hover_last_epoch, open_tab  # noqa: F401 (browser: a fixture)
from tests.test_plugin_robustness import diagnosis, write_run

pytestmark = pytest.mark.browser

PATH = "loss/Temperature/log_t"
EPOCHS = 30
POINT = re.compile(r"([ML])(-?[\d.]+),(-?[\d.]+)")
LIGHT = {"background": "rgb(255, 255, 255)", "text": "rgb(97, 97, 97)"}
DARK = {"background": "rgb(48, 48, 48)", "text": "rgba(255, 255, 255, 0.6)"}

# Draws the chart whose spec the function BUILD returns, into a host `width`
# pixels wide, and reads the SVG back. BUILD is spliced in as source: the
# tab's Content-Security-Policy forbids eval.
DRAW = """async (width) => {
    const {drawChart} = await import('./static/chart.js');
    const host = document.createElement('div');
    host.className = 'chart-host';
    host.style.width = `${width}px`;
    document.body.prepend(host);
    const spec = (BUILD)();
    const started = performance.now();
    drawChart(host, spec);
    const drawn = performance.now();
    // Until the frame after: the SVG laid out and painted.
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)));
    const svg = host.querySelector('svg');
    const all = (selector) => [...svg.querySelectorAll(selector)];
    const axis = svg.querySelector('.axis');
    const box = (node) => { const r = node.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    return {
        paths: all('path[stroke]:not([stroke="none"])').map((p) => p.getAttribute('d')),
        ticks: all('.axes text:not(.title)').map((t) => t.textContent),
        yTicks: all('.axes text[text-anchor="end"]').map((t) => t.textContent),
        tickBoxes: all('.axes text:not(.title)').map(box),
        titles: all('.axes text.title').map((t) => t.textContent),
        titleBoxes: all('.axes text.title').map(box),
        minor: all('.grid.minor').length,
        plot: {w: Number(svg.querySelector('rect').getAttribute('width')), h: Number(axis.getAttribute('y1'))},
        drawMs: drawn - started,
        paintMs: performance.now() - drawn,
    };
}"""


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A real TensorBoard over one small run, for the tab's page and its theme."""
    logdir = tmp_path_factory.mktemp("chart")
    rows = diagnosis([[PATH, "training", ""]])
    write_run(logdir / "warm" / "train", [
        summary.values(metadata.ROLE_LOSS, metadata.VALUE, PATH, np.float32(np.log(1 + e)), dtype="float32")
        + summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, PATH, np.float32([1 / (1 + e), 2 / (1 + e)]))
        + rows
        for e in range(EPOCHS)
    ])
    with tensorboard(logdir) as board:
        board.wait_for(lambda: board.get_json("/data/plugin/loss_params/runs")["runs"])
        yield board


@pytest.fixture
def tab_page(browser, board):  # noqa: F811 (browser: the imported fixture)
    """The tab's document on its own (no TensorBoard around it), stylesheet loaded."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{board.url}/data/plugin_entry.html?name=loss_params")
    page.locator("article.card").first.wait_for(timeout=30_000)
    yield page
    assert errors == []
    page.close()


def draw(page, build, width=420):
    """Draws the spec that the JavaScript function `build` returns; see DRAW."""
    return page.evaluate(DRAW.replace("BUILD", build), width)


def points(d):
    """The (command, x, y) of each point of an SVG path, in pixels: its coordinates are in tenths (chart.js's `point`)."""
    return [(command, float(x) / 10, float(y) / 10) for command, x, y in POINT.findall(d)]


def test_a_one_epoch_spike_among_10_000_is_drawn_with_at_most_4_points_a_column(tab_page):
    chart = draw(tab_page, """() => {
        const x = Array.from({length: 10000}, (_, i) => i);
        const y = x.map((i) => 0.5 + 0.1 * Math.sin(i / 50));
        y[6789] = 5;
        y[1234] = -3;
        return {lines: [{x, y, color: '#1f77b4'}], label: 'spike', tooltip: () => []};
    }""")
    (d,) = chart["paths"]
    drawn = points(d)
    w, h = chart["plot"]["w"], chart["plot"]["h"]
    assert w <= len(drawn) <= 4 * w, f"{len(drawn)} points for a plot {w} px wide"
    assert [px for _, px, _ in drawn] == sorted(px for _, px, _ in drawn), "points in x order"
    # The extent is [-3, 5]: the spikes are the plot's top and bottom, at their epochs.
    top = min(drawn, key=lambda p: p[2])
    bottom = max(drawn, key=lambda p: p[2])
    assert top[2] == 0 and top[1] == pytest.approx(6789 / 9999 * w, abs=0.1), top
    assert bottom[2] == h and bottom[1] == pytest.approx(1234 / 9999 * w, abs=0.1), bottom
    # The sine's own range, 0.4..0.6 of [-3, 5], is reached too.
    assert min(py for _, _, py in drawn if py > 0) == pytest.approx(h * (5 - 0.6) / 8, abs=0.2)
    assert [c for c, _, _ in drawn].count("M") == 1


def test_a_non_finite_value_breaks_the_line(tab_page):
    chart = draw(tab_page, """() => {
        const x = Array.from({length: 10000}, (_, i) => i);
        const y = x.map((i) => Math.cos(i / 700));
        y[5000] = NaN;
        const z = x.map((i) => i);
        z[3000] = Infinity;
        z[7000] = -Infinity;
        return {lines: [{x, y, color: '#1f77b4'}, {x, y: z, color: '#ff7f0e'}], label: 'gaps', tooltip: () => []};
    }""")
    first, second = chart["paths"]
    assert first.count("M") == 2 and second.count("M") == 3, "one segment more per gap"
    assert len(points(first)) <= 4 * chart["plot"]["w"]


def test_a_card_of_1280_lines_of_10_000_epochs_draws_in_seconds(tab_page):
    # A 64-element variable over 10,000 epochs in 20 runs: 12.8 M points.
    chart = draw(tab_page, """() => {
        const lines = [];
        for (let run = 0; run < 20; run++) {
            const x = Array.from({length: 10000}, (_, i) => i);
            for (let e = 0; e < 64; e++) {
                const y = x.map((i) => Math.sin(i / 300 + e) * (1 + run / 20) + (i % 97 === 0 ? 0.5 : 0));
                lines.push({x, y, color: `hsl(${run * 18}, 70%, 45%)`, attrs: {'data-run': String(run)}});
            }
        }
        const tooltip = (step) => [{color: '#000', label: 'step', value: String(step)}];
        return {lines, label: '12.8 M points', yTitle: 'value', tooltip};
    }""")
    assert len(chart["paths"]) == 1280
    most = max(len(points(d)) for d in chart["paths"])
    assert most <= 4 * chart["plot"]["w"], f"{most} points for a plot {chart['plot']['w']} px wide"
    seconds = (chart["drawMs"] + chart["paintMs"]) / 1000
    SCREENSHOTS.mkdir(exist_ok=True)
    (SCREENSHOTS / "chart_12.8M_timing.txt").write_text(
        f"drawChart {chart['drawMs']:.0f} ms, layout and paint {chart['paintMs']:.0f} ms, "
        f"{most} points in the longest path\n")
    print(f"12.8 M points: drawChart {chart['drawMs']:.0f} ms, then paint {chart['paintMs']:.0f} ms")
    assert seconds < 30, f"{seconds:.1f} s to draw 12.8 M points"

    # The hover still finds every epoch, at once.
    box = tab_page.locator(".chart-host").first.locator("svg rect").bounding_box()
    tab_page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 10)
    tooltip = tab_page.locator("body > .tooltip")
    tooltip.wait_for(timeout=5_000)
    assert re.fullmatch(r"epoch (\d+)step\1", tooltip.text_content()), tooltip.text_content()


@pytest.mark.parametrize("lo, hi, ticks, minor", [
    (0.01, 0.7, ["0.01", "0.1"], True),
    (0.01041, 0.7177, ["0.02", "0.05", "0.1", "0.2", "0.5"], True),
    (2, 7, ["2", "5"], True),
    # Within a factor of 1.5: no 1-2-5 pair inside, linear steps.
    (0.31, 0.44, ["0.35", "0.4"], False),
    # 13 decades: every second one labelled, no minor lines.
    (1e-8, 1e4, ["1e-8", "1e-6", "1e-4", "0.01", "1", "100", "10000"], False),
])
def test_a_log_axis_labels_decades_or_1_2_5_and_never_its_extremes(tab_page, lo, hi, ticks, minor):
    chart = draw(tab_page, f"""() => {{
        const x = Array.from({{length: 200}}, (_, i) => i);
        const y = x.map((i) => {lo} * ({hi} / {lo}) ** (i / 199));
        return {{lines: [{{x, y, color: '#1f77b4'}}], logY: true, label: 'log', tooltip: () => []}};
    }}""")
    assert chart["yTicks"] == ticks
    assert (chart["minor"] > 0) == minor, f"{chart['minor']} minor grid lines"


def test_an_axis_of_float32_values_keeps_the_ticks_its_ends_round_to(tab_page):
    # 0.3433 and 0.343301 as float32 (what floats=base64 sends): 0.34330001473..., 0.34330099821...
    chart = draw(tab_page, """() => {
        const x = Array.from({length: 101}, (_, i) => i);
        const y = x.map((i) => Math.fround(0.3433 + 1e-6 * i / 100));
        return {lines: [{x, y, color: '#1f77b4'}], label: 'narrow', tooltip: () => []};
    }""")
    assert chart["yTicks"] == ["0.3433", "0.3433005", "0.343301"]
    log = draw(tab_page, """() => {
        const x = Array.from({length: 101}, (_, i) => i);
        return {lines: [{x, y: x.map((i) => Math.fround(10 ** (-3 + 2 * i / 100))), color: '#1f77b4'}],
                logY: true, label: 'decades', tooltip: () => []};
    }""")
    assert log["yTicks"] == ["0.001", "0.01", "0.1"]


def test_axes_are_titled_epoch_and_by_y_title_and_clear_of_the_labels(tab_page):
    build = """() => {
        const x = Array.from({length: 500}, (_, i) => i);
        return {lines: [{x, y: x.map((i) => -0.001234 * i), color: '#1f77b4'}], label: 't', %s tooltip: () => []};
    }"""
    titled = draw(tab_page, build % "yTitle: 'gradient norm',")
    assert titled["titles"] == ["epoch", "gradient norm"]
    for title in titled["titleBoxes"]:
        for tick, label in zip(titled["tickBoxes"], titled["ticks"]):
            apart = title[2] <= tick[0] or tick[2] <= title[0] or title[3] <= tick[1] or tick[3] <= title[1]
            assert apart, f"a title overlaps the tick label {label!r}: {title} {tick}"
    assert draw(tab_page, build % "")["titles"] == ["epoch"], "no y title without yTitle"


def colours(frame):
    """The tab's background, a chart's text colour and the theme attribute, as computed."""
    return frame.locator("body").evaluate("""(body) => {
        const style = (node) => getComputedStyle(node);
        return {background: style(body).backgroundColor,
                text: style(body.querySelector('.chart text')).fill,
                theme: body.ownerDocument.documentElement.dataset.theme};
    }""")


def test_the_tab_follows_tensorboards_dark_theme_and_back(browser, board):  # noqa: F811 (browser: the fixture)
    page, frame, dialogs, errors = open_tab(browser, board)
    frame.locator(".chart text").first.wait_for()
    frame.locator("body").evaluate("async () => (await import('./static/chart.js')).followTheme()")
    frame.locator("html[data-theme='light']").wait_for(state="attached")
    assert colours(frame) == {**LIGHT, "theme": "light"}

    theme_menu = page.get_by_role("button", name="Menu for changing light or dark theme")
    theme_menu.click()
    page.get_by_role("menuitem", name="Dark").click()
    assert "dark-mode" in page.locator("body").get_attribute("class"), "TensorBoard's own dark class"
    frame.locator("html[data-theme='dark']").wait_for(state="attached")
    assert colours(frame) == {**DARK, "theme": "dark"}
    tab_card = card(frame, PATH)
    hover_last_epoch(page, frame, tab_card)
    tooltip = frame.locator("body > .tooltip").evaluate("(box) => getComputedStyle(box).backgroundColor")
    assert tooltip == "rgba(66, 66, 66, 0.96)"
    SCREENSHOTS.mkdir(exist_ok=True)
    tab_card.screenshot(path=str(SCREENSHOTS / "chart_dark.png"))
    page.screenshot(path=str(SCREENSHOTS / "loss_params_tab_dark.png"))

    theme_menu.click()
    page.get_by_role("menuitem", name="Light").click()
    frame.locator("html[data-theme='light']").wait_for(state="attached")
    assert colours(frame) == {**LIGHT, "theme": "light"}
    hover_last_epoch(page, frame, tab_card)
    tab_card.screenshot(path=str(SCREENSHOTS / "chart_light.png"))
    assert errors == [] and dialogs == []


def test_out_of_tensorboard_the_tab_follows_the_browsers_colour_scheme(browser, board):  # noqa: F811
    page = browser.new_page(color_scheme="dark")
    page.goto(f"{board.url}/data/plugin_entry.html?name=loss_params")
    page.locator(".chart text").first.wait_for(timeout=30_000)
    page.evaluate("async () => (await import('./static/chart.js')).followTheme()")
    assert colours(page)["theme"] == "dark"
    assert colours(page)["background"] == DARK["background"]
    page.emulate_media(color_scheme="light")
    page.locator("html[data-theme='light']").wait_for(state="attached")
    assert colours(page) == {**LIGHT, "theme": "light"}
    page.close()
