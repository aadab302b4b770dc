"""The report to look at: sparklines, Markdown for CI pages, a self-contained HTML page, a notebook's table."""

import json
import re
import shutil

import numpy as np
import pytest

from loss_param_tracker import load, render
from tensorboard_plugin.loss_params import summary
from tests.conftest import damaged_copy
from tests.test_browser import SCREENSHOTS, browser  # noqa: F401 (browser: a fixture)
from tests.test_reader import VAR, diagnosis, epochs, loss_values, write_run
from tests.test_report import logs, report  # noqa: F401 (logs: a fixture of a broken and a fixed fit)

FORMATS = ("text", "json", "markdown", "html")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_has_the_same_exit_codes(logs, tmp_path, fmt):  # noqa: F811
    broken_and_fixed = report(str(logs), "--format", fmt)
    fixed = report(str(logs / "fixed"), "--format", fmt)
    shutil.copytree(logs / "fixed", tmp_path / "healthy" / "broken")  # damaged_copy's source run
    damaged = damaged_copy(tmp_path / "healthy", tmp_path / "damaged")  # one run of it fails a checksum
    assert (broken_and_fixed.returncode, fixed.returncode) == (1, 0), broken_and_fixed.stderr
    assert report(str(damaged), "--format", fmt).returncode == 3
    assert report(str(tmp_path / "missing"), "--format", fmt).returncode == 2
    assert "Traceback" not in broken_and_fixed.stderr + fixed.stderr


def test_json_alias(logs):  # noqa: F811
    assert json.loads(report(str(logs), "--json").stdout) == json.loads(report(str(logs), "--format", "json").stdout)


def test_text_shows_each_trajectory_as_a_sparkline(logs):  # noqa: F811
    lines = report(str(logs)).stdout.splitlines()
    broken = next(l for l in lines if "not_updated" in l)
    fixed = next(l for l in lines if "loss/GaussianNLL/log_var" in l and " training " in l)
    assert "▁▁▁" in broken, broken  # never moved: flat
    (spark,) = re.findall(r"[▁▂▃▄▅▆▇█]{3}", fixed)
    assert spark[0] == "▁" and spark[-1] == "█", fixed  # rose from its first epoch to its last


def test_sparkline_columns_gaps_and_flat_series():
    assert render.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert render.sparkline([1.0, float("nan"), 2.0]) == "▁ █"
    assert render.sparkline([3.0, 3.0]) == "▁▁"
    assert render.sparkline([]) == ""
    assert len(render.sparkline(list(range(1000)))) == render.SPARK_WIDTH


def test_markdown_is_a_table_per_run_with_the_fix(logs):  # noqa: F811
    text = report(str(logs), "--format", "markdown").stdout
    assert "## `broken/train`" in text and "## `fixed/train`" in text
    header = "| variable | status | first → last | trend | grad norm | fix |"
    assert text.count(header) == 2
    (broken,) = [l for l in text.splitlines() if "**not_updated**" in l]
    assert broken.startswith("| `loss/GaussianNLL/log_var` |") and "make_trainable(model)" in broken
    assert broken.count("|") == 7, "one cell per column: no | leaks out of a cell"


def test_html_page_is_self_contained_and_shows_every_run(logs, tmp_path, browser):  # noqa: F811
    page_html = report(str(logs), "--format", "html").stdout
    assert "<script" not in page_html and "http" not in page_html.replace("http://www.w3.org/2000/svg", "")
    assert page_html.count("<polyline") >= 2, "each trajectory and gradient norm drawn"
    path = tmp_path / "report.html"
    path.write_text(page_html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1300, "height": 700}, java_script_enabled=False)
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    page.goto(path.as_uri())
    assert page.locator("table.lpt").count() == 2
    rows = page.locator("table.lpt tbody tr")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert any("not_updated" in t and "make_trainable" in t for t in texts), texts
    assert any(t.startswith("loss/GaussianNLL/log_var") and "training" in t for t in texts), texts
    assert page.locator("svg polyline").count() >= 2
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)
    page.close()


def test_a_notebook_shows_load_as_a_table_with_trajectories(logs):  # noqa: F811
    runs = load(logs)
    shown = runs._repr_html_()
    assert shown.count('<table class="lpt">') == 2 and "<svg" in shown and "not_updated" in shown
    one = runs["fixed/train"]._repr_html_()
    assert one.count('<table class="lpt">') == 1 and "fixed/train" in one


def test_names_are_escaped_and_unreadable_variables_named(tmp_path):
    values = [np.arange(3)] * 2 + [np.arange(5)] * 2  # a shape change: the variable is not readable
    write_run(tmp_path, "<b>run</b>", epochs(values))
    with pytest.warns(UserWarning):
        runs = load(tmp_path)
    shown = runs._repr_html_()
    assert "<b>run</b>" not in shown and "&lt;b&gt;run&lt;/b&gt;" in shown
    assert "not readable" in shown and VAR in shown
    markdown = report(str(tmp_path), "--format", "markdown")
    assert markdown.returncode == 3 and f"| `{VAR}` | not readable |" in markdown.stdout


def test_infinities_and_nans_are_said_as_such_in_every_format(tmp_path):
    grown = [(0, loss_values(VAR, 1.0) + diagnosis({VAR: "training"})),
             (1, loss_values(VAR, np.inf, grad=(np.nan, np.nan)) + diagnosis({VAR: "non_finite"}))]
    write_run(tmp_path, "blown", grown)
    # A NaN gradient norm is one no step showed: unknown, for a variable not said non_finite.
    write_run(tmp_path, "unseen", [(e, loss_values(VAR, 1.0, grad=(np.nan, np.nan)) + diagnosis({VAR: "training"}))
                                   for e in range(2)])
    text = report(str(tmp_path)).stdout
    blown, unseen = text.split("run unseen")
    assert "value 1 -> inf" in blown and "grad norm nan" in blown, text
    assert "grad norm unknown" in unseen, text
    rows = {run: body["variables"][0] for run, body in json.loads(report(str(tmp_path), "--json").stdout)["runs"].items()}
    assert (rows["blown"]["last"], rows["blown"]["grad_norm"]) == ("Infinity", "NaN")
    assert rows["blown"]["trajectory"] == [1.0, "Infinity"] and rows["blown"]["grad_trajectory"] == [np.float32(0.1).item(), "NaN"]
    markdown = report(str(tmp_path), "--format", "markdown").stdout
    assert "value 1 -> inf" in markdown and "| nan |" in markdown and "| unknown |" in markdown, markdown
    page = report(str(tmp_path), "--format", "html").stdout
    assert "value 1 -&gt; inf" in page and "<br>nan</td>" in page and "<br>unknown</td>" in page


def test_a_finite_variable_non_finite_for_the_losss_nan_has_its_unseen_gradient_unknown(tmp_path):
    said = summary.diagnosis([(VAR, "non_finite", "loss_non_finite")])
    write_run(tmp_path, "nan_loss", [(e, loss_values(VAR, 1.0 + e, grad=(np.nan, np.nan)) + said) for e in range(2)])
    completed = report(str(tmp_path))
    assert completed.returncode == 1
    assert "non_finite" in completed.stdout and "grad norm unknown" in completed.stdout, completed.stdout
    assert "the training loss Keras logged for the epoch is NaN or Inf" in completed.stdout, completed.stdout


def test_a_path_with_backticks_is_one_code_span_in_markdown(tmp_path):
    odd = "loss/Odd`s/w``x"
    write_run(tmp_path, "run", epochs([1.0, 2.0], path=odd))
    markdown = report(str(tmp_path), "--format", "markdown").stdout
    assert f"| ```{odd}``` | training |" in markdown, markdown
    assert render.printable("a\nb\x1bβ") == "a\\nb\\x1bβ"
