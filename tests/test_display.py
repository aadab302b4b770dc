"""How a loss variable is shown: `Display`, the callback's `display=`, and what readers give back."""

import json
import logging
import math

import numpy as np
import pytest

from loss_param_tracker import Display, LossParamTracker
from loss_param_tracker import report
from tensorboard_plugin.loss_params import metadata, plugin_data_pb2
from tests.conftest import CenterLoss, GaussianNLL, compile_fixed, fit, load_run, make_model


@pytest.mark.parametrize(
    "display, stored, shown",
    [
        (Display("exp"), [0.0, math.log(14.3), 800.0], [1.0, 14.3, math.inf]),
        (Display("exp", inner_scale=0.5), [math.log(0.09)], [0.3]),
        (Display("softplus"), [0.0, -800.0, 800.0, 2.0], [math.log(2), 0.0, 800.0, math.log1p(math.e**2)]),
        (Display("sigmoid"), [0.0, -800.0, 800.0, 1.0], [0.5, 0.0, 1.0, 1 / (1 + math.e**-1)]),
        (Display("sigmoid", scale=1.998, offset=0.001), [0.0, -800.0], [1.0, 0.001]),
        (Display("softplus", shift=1.0, scale=2.0, offset=-1.0), [-1.0], [2 * math.log(2) - 1]),
    ],
)
def test_display_maps_the_stored_value_onto_the_shown_one(display, stored, shown):
    np.testing.assert_allclose(display.apply(stored), shown, rtol=1e-12, atol=1e-300)


def test_display_keeps_nan_and_is_monotone():
    stored = np.linspace(-50, 50, 1001)
    for fn in ("exp", "softplus", "sigmoid"):
        for inner in (1.0, -2.0):
            shown = Display(fn, inner_scale=inner).apply(stored)
            steps = np.diff(shown)
            assert (steps >= 0).all() or (steps <= 0).all(), f"{fn} x{inner} is not monotone"
    assert math.isnan(Display("sigmoid").apply(math.nan))


def test_display_label_names_the_formula_over_the_variable():
    assert Display("exp").named("logit_scale").label == "exp(logit_scale)"
    assert Display("exp", inner_scale=0.5).named("s").label == "exp(0.5*s)"
    assert (
        Display("sigmoid", scale=1.998, offset=0.001).named("latent_alpha").label
        == "1.998*sigmoid(latent_alpha) + 0.001"
    )
    assert Display("exp", label="scale").named("logit_scale").label == "scale"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fn": "log"}, r"Received: fn='log'\. Expected one of exp, softplus, sigmoid"),
        ({"fn": "exp", "scale": 0}, "A scale of 0"),
        ({"fn": "exp", "inner_scale": math.nan}, "inner_scale=nan. Expected a finite number"),
        ({"fn": "exp", "offset": "1"}, "offset='1'. Expected a finite number"),
    ],
)
def test_display_refuses_what_it_cannot_show(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Display(**kwargs)


@pytest.mark.parametrize(
    "display, match",
    [
        (["exp"], r"Received: display=\['exp'\] \(list\)\. Expected a dict"),
        ({"log_var": "log"}, r"display\['log_var'\]: Received: fn='log'"),
        ({"log_var": 2.0}, r"display\['log_var'\]: Received: 2\.0 \(float\)"),
        ({"": "exp"}, "Received: display key ''"),
    ],
)
def test_tracker_refuses_a_bad_display_before_training(display, match, log_dir):
    with pytest.raises(ValueError, match=match):
        LossParamTracker(log_dir=log_dir, display=display)


def test_a_displayed_variable_trains_the_same_and_reads_back_shown(log_dir):
    # The same fit with and without a display: training is unchanged, and the
    # run records how its variable is shown.
    def trained(display, where):
        loss = GaussianNLL()
        model = compile_fixed(make_model(), loss, learning_rate=0.05)
        fit(model, loss, where, epochs=3, tracker=LossParamTracker(log_dir=where, display=display))
        return float(loss.log_var.numpy()), load_run(where).variables["loss/GaussianNLL/log_var"]

    plain_value, plain = trained(None, log_dir + "/plain")
    shown_value, variable = trained({"log_var": Display("exp", inner_scale=0.5, label="sigma")}, log_dir + "/sigma")
    assert shown_value == plain_value, "a display changed training"
    assert plain.display is None
    assert variable.display == Display("exp", inner_scale=0.5, label="sigma")
    np.testing.assert_allclose(variable.shown, np.exp(0.5 * variable.value))
    np.testing.assert_allclose(variable.shown_initial, 1.0)  # log_var starts at 0
    np.testing.assert_allclose(variable.value, plain.value)


def test_report_shows_the_displayed_value_beside_the_stored_one(log_dir, capsys):
    loss = GaussianNLL()
    model = compile_fixed(make_model(), loss)
    fit(model, loss, log_dir, epochs=2, tracker=LossParamTracker(log_dir=log_dir, display={"log_var": "exp"}))
    last = float(np.exp(loss.log_var.numpy()))
    assert report.main(["report", log_dir]) == 0
    text = capsys.readouterr().out
    assert "value 0 -> " in text and f"(exp(log_var) 1 -> {last:.4g})" in text, text
    assert report.main(["report", log_dir, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["runs"]["train"]["variables"][0]
    assert row["shown"]["label"] == "exp(log_var)"
    assert row["shown"]["last"] == pytest.approx(last, rel=1e-6)


def test_display_is_recorded_on_the_value_series_of_large_variables_too(log_dir):
    loss = CenterLoss()
    model = compile_fixed(make_model(), loss)
    fit(model, loss, log_dir, epochs=1, tracker=LossParamTracker(log_dir=log_dir, display={"centers": "softplus"}))
    variable = load_run(log_dir).variables["loss/CenterLoss/centers"]
    assert variable.display == Display("softplus", label="softplus(centers)")
    assert variable.shown is None  # a stats variable has no value to map; its quantiles are the tab's


def test_a_display_that_matches_no_variable_is_named_once(log_dir, caplog):
    loss = GaussianNLL()
    model = compile_fixed(make_model(), loss)
    with caplog.at_level(logging.WARNING, logger="loss_param_tracker"):
        fit(model, loss, log_dir, epochs=2, tracker=LossParamTracker(log_dir=log_dir, display={"log_scale": "exp"}))
    said = [r.getMessage() for r in caplog.records if "matches no loss variable" in r.getMessage()]
    assert said == [
        "LossParamTracker: display names 'log_scale', which matches no loss variable; "
        "its loss variables are ['loss/GaussianNLL/log_var']."
    ]


def test_a_display_leaves_the_format_version_alone():
    # Older readers ignore the new field and read the series as stored.
    content = metadata.create_summary_metadata(
        metadata.ROLE_LOSS, metadata.VALUE, "loss/L/x", display=Display("exp").to_proto()
    ).plugin_data.content
    data = metadata.parse_plugin_metadata(content)
    assert data.version == metadata.PROTO_VERSION == 3
    assert Display.from_proto(data.display) == Display("exp")
    assert Display.from_proto(plugin_data_pb2.Display()) is None
