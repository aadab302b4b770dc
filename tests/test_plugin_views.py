"""What the routes give the tab to show: displays, distributions of large variables, layers matched by place."""

import keras
import numpy as np
import pytest

from loss_param_tracker import Display, LossParamTracker
from tests.conftest import CenterLoss, GaussianNLL, compile_fixed, fit, load
from tests.test_plugin import PREFIX, assert_float32_equal, get_json, make_client


def unnamed_model():
    """A model whose layers Keras names (`dense_4`, `dense_5`, ...): different in every run."""
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])


@pytest.fixture(scope="module")
def views_logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    for run, display in (("sigma", {"log_var": Display("exp", inner_scale=0.5, label="sigma")}), ("plain", None)):
        loss = GaussianNLL()
        model = compile_fixed(unnamed_model(), loss)
        fit(model, loss, str(root / run), epochs=3, tracker=LossParamTracker(str(root / run), display=display))
    loss = CenterLoss()
    model = compile_fixed(unnamed_model(), loss)
    fit(model, loss, str(root / "centers"), epochs=3, tracker=LossParamTracker(str(root / "centers")))
    return str(root)


@pytest.fixture(scope="module")
def client(views_logdir):
    return make_client(views_logdir)


def variables(client):
    return {run["name"]: {v["path"]: v for v in run["variables"]} for run in get_json(client, "runs")["runs"]}


def test_runs_give_each_variables_display(client):
    listed = variables(client)
    assert listed["sigma/train"]["loss/GaussianNLL/log_var"]["display"] == {
        "fn": "exp", "inner_scale": 0.5, "shift": 0.0, "scale": 1.0, "offset": 0.0, "label": "sigma",
    }
    assert "display" not in listed["plain/train"]["loss/GaussianNLL/log_var"]


def test_a_large_variable_has_its_distribution_from_its_histograms(client, views_logdir):
    body = get_json(client, "series", run="centers/train", variable="loss/CenterLoss/centers")
    distribution = body["distribution"]
    assert distribution["basis"] == [0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000]
    quantiles = np.array(distribution["values"], dtype=np.float64)
    assert quantiles.shape == (9, len(body["steps"])) == (9, 3)
    assert (np.diff(quantiles, axis=0) >= 0).all(), "quantiles must rise with their basis"
    stats = load(views_logdir)["centers/train"].variables["loss/CenterLoss/centers"].stats
    # The extremes of the histograms are those of the value.
    assert_float32_equal(quantiles[0], stats[:, 2])
    assert_float32_equal(quantiles[-1], stats[:, 3])


def test_layers_are_matched_across_runs_by_their_place(client):
    listed = variables(client)
    kernels = {
        run: sorted((v["layer_index"], path) for path, v in paths.items() if path.endswith("/kernel"))
        for run, paths in listed.items()
    }
    names = {run: [path for _, path in ks] for run, ks in kernels.items()}
    assert len({tuple(n) for n in names.values()}) == 3, f"Keras gave the runs' layers the same names: {names}"
    assert all([place for place, _ in ks] == [0, 1] for ks in kernels.values()), kernels
    runs = ["sigma/train", "plain/train", "centers/train"]
    body = get_json(client, "weights_multirun", place="1", run=runs)
    assert body["place"] == 1 and set(body["runs"]) == set(runs)
    for run in runs:
        one = body["runs"][run]
        assert one["layer"] == names[run][1].rsplit("/", 1)[0], "each run shows its own layer at that place"
        assert one["places"][one["layer"]] == 1
        assert one["weights"] == sorted(f"{one['layer']}/{w}" for w in ("bias", "kernel"))
        by_name = get_json(client, "weights", run=run, layer=one["layer"])
        assert by_name["norm"] == one["norm"], "a place shows what the layer's name shows"


@pytest.mark.parametrize(
    "query, message",
    [
        ({"run": "plain/train", "place": "-1"}, "'place' must be an integer from 0"),
        ({"run": "plain/train", "place": "x"}, "'place' must be an integer from 0"),
        ({"run": "plain/train", "place": "0", "layer": "model/x"}, "'layer' and 'place' exclude each other"),
    ],
)
def test_a_bad_place_is_a_400_that_says_why(client, query, message):
    response = client.get(f"{PREFIX}/weights", query_string=query)
    assert response.status_code == 400 and message in response.get_data(as_text=True)


def test_a_place_a_run_lacks_is_a_404_naming_its_places(client):
    response = client.get(f"{PREFIX}/weights", query_string={"run": "plain/train", "place": "7"})
    assert response.status_code == 404
    assert "no layer at place 7" in response.get_data(as_text=True)
