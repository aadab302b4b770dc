"""The plugin's routes through TensorBoard's WSGI app, over a log directory written by real fits."""

import argparse
import base64
import csv
import gzip
import io
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard import context as tb_context
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from loss_param_tracker import load
from tensorboard_plugin.loss_params import loader, metadata, plugin, series
from tests.conftest import DASHBOARD_RUNS, NETWORK, NETWORK_LAYERS, NETWORK_RUNS, XSS_RUN, damaged_copy

PREFIX = "/data/plugin/loss_params"
FIXED = "fixed/train"
LOG_VAR = "loss/GaussianNLL/log_var"


def make_client(log_dir):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(log_dir)
    multiplexer.Reload()
    context = base_plugin.TBContext(
        logdir=log_dir, data_provider=data_provider.MultiplexerDataProvider(multiplexer, log_dir)
    )
    app = application.TensorBoardWSGI([loader.LossParamsLoader().load(context)])
    client = werkzeug_test.Client(app)
    client.reload = multiplexer.Reload  # reads what was written since
    return client


def get_json(client, route, **query):
    response = client.get(f"{PREFIX}/{route}", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/json")
    # Strict JSON: a NaN or Infinity literal would break the browser's JSON.parse.
    return json.loads(response.get_data(as_text=True), parse_constant=_reject)


def _reject(name):
    raise AssertionError(f"The response holds {name}, which is not JSON.")


def assert_float32_equal(actual, expected):
    """The routes give float32 values in their shortest digits: equal once read back as float32."""
    np.testing.assert_array_equal(
        np.asarray(actual, dtype=np.float32), np.asarray(expected, dtype=np.float32)
    )


@pytest.fixture(scope="module")
def client(dashboard_logdir):
    return make_client(dashboard_logdir)


def test_runs_lists_every_run_with_its_variables_and_latest_status(client):
    body = get_json(client, "runs")
    runs = {run["name"]: run for run in body["runs"]}
    assert set(runs) == set(DASHBOARD_RUNS)
    for name, (epochs, statuses) in DASHBOARD_RUNS.items():
        run = runs[name]
        assert run["last_step"] == epochs - 1
        loss = {v["path"]: v["status"] for v in run["variables"] if v["role"] == "loss"}
        assert loss == statuses, name
        model = [v for v in run["variables"] if v["role"] == "model"]
        assert {v["path"] for v in model} == {
            f"model/net/{layer}/{w}" for layer in ("hidden", "out") for w in ("kernel", "bias")
        }
        assert all(v["status"] == "training" and v["kind"] == "norms" for v in model), model
        roles = [v["role"] for v in run["variables"]]
        assert roles == sorted(roles, key=lambda r: r != "loss"), "loss variables come first"
    log_var = runs[FIXED]["variables"][0]
    assert log_var == {
        "path": LOG_VAR, "role": "loss", "shape": [], "dtype": "float32", "kind": "value",
        "status": "training", "cause": "",
    }
    broken = runs["broken/train"]["variables"][0]
    assert (broken["status"], broken["cause"]) == ("not_updated", "not_in_optimizer")
    assert body["causes"]["not_in_optimizer"]["fix"] == metadata.CAUSES["not_in_optimizer"].fix
    assert list(body["causes"]) == list(metadata.CAUSES)
    centers = runs["centers/train"]["variables"][0]
    assert (centers["kind"], centers["shape"]) == ("stats", [10, 10])
    assert list(body["statuses"]) == list(metadata.STATUSES)
    assert body["statuses"]["not_updated"] == {
        "explanation": metadata.STATUS["not_updated"].meaning,
        "fix": metadata.STATUS["not_updated"].fix,
        "severity": "bad",
    }


def test_series_holds_every_epoch_equal_to_what_load_reads(client, dashboard_logdir):
    expected = load(dashboard_logdir)[FIXED].variables[LOG_VAR]
    body = get_json(client, "series", run=FIXED, variable=LOG_VAR)
    assert body["steps"] == list(range(150))
    assert (body["role"], body["shape"], body["dtype"]) == ("loss", [], "float32")
    assert_float32_equal(np.array(body["value"]), expected.value.reshape(1, -1))
    assert_float32_equal(body["grad_norm"]["mean"], expected.grad_norm[:, 0])
    assert_float32_equal(body["grad_norm"]["max"], expected.grad_norm[:, 1])
    assert body["value"][0][-1] != body["value"][0][0], "the fixed run's log-variance moves"


def count_calls(monkeypatch):
    """Returns a list that gets the name of each data provider call made from now on."""
    calls = []
    for name in ("list_scalars", "list_tensors", "read_scalars", "read_tensors"):
        original = getattr(data_provider.MultiplexerDataProvider, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(data_provider.MultiplexerDataProvider, name, counted)
    return calls


def test_runs_follow_a_run_that_writes_its_epochs_again(tmp_path, monkeypatch):
    from tests.conftest import GaussianNLL, compile_fixed, fit, make_model
    import keras

    model, loss = make_model(), GaussianNLL()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    with pytest.warns(UserWarning):
        fit(model, loss, str(tmp_path / "resumed"), epochs=3)
    client = make_client(str(tmp_path))
    (run,) = get_json(client, "runs")["runs"]
    assert (run["last_step"], run["variables"][0]["status"]) == (2, "not_updated")
    calls = count_calls(monkeypatch)
    assert get_json(client, "runs")["runs"] == [run]
    assert calls == ["list_tensors"], "nothing new written: one small call"

    # Resumed from epoch 1 with the fix: epochs 1 and 2 written again, the
    # last step unchanged. TensorBoard reads a run's event files in the order
    # of their names, `events.out.tfevents.<second>.<host>.<pid>.<count>`: in
    # one second of one process, a count of 10 sorts before 9, so the resumed
    # file is started in a later second than the first.
    (first,) = (tmp_path / "resumed" / "train").glob("events.out.tfevents.*")
    while int(time.time()) <= int(first.name.split(".")[3]):
        time.sleep(0.05)
    compile_fixed(model, loss, learning_rate=0.01)
    fit(model, loss, str(tmp_path / "resumed"), epochs=3, initial_epoch=1)
    client.reload()
    (again,) = get_json(client, "runs")["runs"]
    assert (again["last_step"], again["variables"][0]["status"]) == (2, "training")
    assert again["last_wall_time"] > run["last_wall_time"]
    assert get_json(client, "series", run="resumed/train", variable=LOG_VAR)["steps"] == [0, 1, 2]


def test_samples_give_a_few_epochs_the_last_among_them(client):
    full = get_json(client, "series", run=FIXED, variable=LOG_VAR)
    assert full["sampled"] is False
    body = get_json(client, "series", run=FIXED, variable=LOG_VAR, samples="20")
    assert body["sampled"] is True
    assert len(body["steps"]) == 20 and body["steps"] == sorted(body["steps"])
    assert body["steps"][-1] == 149, "the last epoch is always in the sample"
    at = [full["steps"].index(step) for step in body["steps"]]
    assert body["value"][0] == [full["value"][0][i] for i in at]
    assert body["grad_norm"]["max"] == [full["grad_norm"]["max"][i] for i in at]
    whole = get_json(client, "series", run=FIXED, variable=LOG_VAR, samples="1000")
    assert whole == full, "a sample larger than the run is the whole run"

    multirun = get_json(client, "series_multirun", variable=LOG_VAR, run=["broken/train", FIXED], samples="20")
    assert multirun["runs"][FIXED] == body
    assert multirun["runs"]["broken/train"]["sampled"] is False, "12 epochs fit in 20"


def test_weights_multirun_reads_several_runs_at_once(client):
    runs = ["broken/train", FIXED, "nope/train"]
    body = get_json(client, "weights_multirun", run=runs)
    assert body["layer"] == ""
    assert sorted(body["runs"]) == ["broken/train", FIXED], "unknown runs are left out"
    for run in ("broken/train", FIXED):
        assert body["runs"][run] == get_json(client, "weights", run=run)
    layer = "model/net/hidden"
    hidden = get_json(client, "weights_multirun", run=runs, layer=layer)
    assert hidden["runs"][FIXED] == get_json(client, "weights", run=FIXED, layer=layer)
    assert get_json(client, "weights_multirun", run=runs, layer="model/net/x")["runs"] == {}
    sample = get_json(client, "weights_multirun", run=[FIXED], samples="10")["runs"][FIXED]
    assert sample["sampled"] and len(sample["steps"]) == 10 and sample["steps"][-1] == 149


def test_series_multirun_reads_one_variable_in_several_runs(client):
    runs = ["broken/train", FIXED, "plain/train", "nope/train"]
    body = get_json(client, "series_multirun", variable=LOG_VAR, run=runs)
    assert body["variable"] == LOG_VAR
    assert sorted(body["runs"]) == ["broken/train", FIXED], "runs without the variable are left out"
    for run in ("broken/train", FIXED):
        assert body["runs"][run] == get_json(client, "series", run=run, variable=LOG_VAR)


def assert_same_floats(packed, plain):
    """`packed`, a body asked with `floats=base64`, holds `plain`'s floats as float32 bytes, and the rest as is."""
    if isinstance(packed, str) and isinstance(plain, list):
        np.testing.assert_array_equal(
            np.frombuffer(base64.b64decode(packed), "<f4"), np.array([float(v) for v in plain], np.float32)
        )
    elif isinstance(plain, dict):
        assert packed.keys() == plain.keys()
        for key in plain:
            assert_same_floats(packed[key], plain[key])
    elif isinstance(plain, list) and isinstance(packed, list):
        assert len(packed) == len(plain)
        for one, other in zip(packed, plain):
            assert_same_floats(one, other)
    else:
        assert packed == plain


@pytest.mark.parametrize("route, query", [
    ("series_multirun", {"variable": LOG_VAR, "run": ["broken/train", FIXED]}),
    ("series_multirun", {"variable": LOG_VAR, "run": [FIXED], "columns": "7"}),
    ("series", {"variable": "loss/CenterLoss/centers", "run": "centers/train"}),
    ("weights_multirun", {"run": ["broken/train", FIXED], "place": "0"}),
    ("weights", {"run": FIXED, "columns": "5"}),
])
def test_floats_as_base64_are_the_same_float32_values(client, route, query):
    plain = get_json(client, route, **query)
    packed = get_json(client, route, floats="base64", **query)
    assert_same_floats(packed, plain)
    assert get_json(client, route, floats="json", **query) == plain, "json: the default"
    # Gzipped (with Huffman coding only) for a client that accepts it, as above for one that does not.
    zipped = client.get(f"{PREFIX}/{route}", query_string={**query, "floats": "base64"},
                        headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(zipped.get_data())) == packed


class _Outside:
    """A provider seen from outside: `series.read` reads through its `read_scalars` and `read_tensors`."""

    def __init__(self, provider):
        self._provider = provider

    def __getattr__(self, name):
        return getattr(self._provider, name)


@pytest.mark.parametrize("downsample", [series.ALL_POINTS, 5])
def test_the_python_loaders_events_read_directly_are_the_providers_read(dashboard_logdir, downsample):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(dashboard_logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, dashboard_logdir)
    ctx = tb_context.RequestContext()
    wanted = {run: list(tags.values()) for run, tags in series.list_series(provider, ctx, "").items()}
    assert series._multiplexer(provider) is multiplexer and series._multiplexer(_Outside(provider)) is None
    fast = series.read(provider, ctx, "", wanted, downsample)
    slow = series.read(_Outside(provider), ctx, "", wanted, downsample)
    assert fast.keys() == slow.keys() == set(DASHBOARD_RUNS)
    kinds = set()
    for run in fast:
        assert fast[run].keys() == slow[run].keys()
        for tag, (steps, values) in fast[run].items():
            np.testing.assert_array_equal(steps, slow[run][tag][0], err_msg=f"{run} {tag}")
            if isinstance(values, np.ndarray):
                np.testing.assert_array_equal(values, slow[run][tag][1], err_msg=f"{run} {tag}")
            else:  # a tensor per step: a histogram, a diagnosis
                kinds.add(tag)
                assert len(values) == len(slow[run][tag][1])
                for one, other in zip(values, slow[run][tag][1]):
                    np.testing.assert_array_equal(one, other, err_msg=f"{run} {tag}")
    assert {metadata.DIAGNOSIS_TAG, "loss/CenterLoss/centers/histogram"} <= kinds


def test_series_of_a_large_variable_holds_statistics(client, dashboard_logdir):
    expected = load(dashboard_logdir)["centers/train"].variables["loss/CenterLoss/centers"]
    body = get_json(client, "series", run="centers/train", variable="loss/CenterLoss/centers")
    assert "value" not in body
    assert list(body["stats"]) == list(metadata.FIELDS[metadata.STATS])
    for i, field in enumerate(metadata.FIELDS[metadata.STATS]):
        assert_float32_equal(body["stats"][field], expected.stats[:, i])


def test_series_of_a_model_weight_holds_its_norms(client):
    body = get_json(client, "series", run=FIXED, variable="model/net/out/kernel")
    assert body["role"] == "model"
    assert list(body["norms"]) == list(metadata.FIELDS[metadata.WEIGHT_NORMS])
    assert len(body["norms"]["norm"]) == 150
    assert all(isinstance(r, float) and r > 0 for r in body["norms"]["update_ratio"])


def test_series_as_csv(client):
    response = client.get(f"{PREFIX}/series", query_string={"run": FIXED, "variable": LOG_VAR,
                                                            "format": "csv"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["step", "value[0]", "grad_norm.mean", "grad_norm.max"]
    assert [int(r[0]) for r in rows[1:]] == list(range(150))
    body = get_json(client, "series", run=FIXED, variable=LOG_VAR)
    assert [float(r[1]) for r in rows[1:]] == body["value"][0]


def test_weights_of_the_whole_model_and_of_one_layer(client, dashboard_logdir):
    run = load(dashboard_logdir)[FIXED]
    weights = {p: v.norms for p, v in run.variables.items() if p.startswith("model/")}
    body = get_json(client, "weights", run=FIXED)
    assert body["steps"] == list(range(150))
    assert (body["layer"], body["layers"]) == ("", ["model/net/hidden", "model/net/out"])
    for i, field in enumerate(metadata.FIELDS[metadata.WEIGHT_NORMS]):
        assert_float32_equal(body[field], run.model_norms[1][:, i])
    np.testing.assert_allclose(
        body["norm"], np.sqrt(sum(n[:, 0] ** 2 for n in weights.values())), rtol=1e-6
    )
    assert all(0 < r < 1 for r in body["update_ratio"]), "every weight moves a little each epoch"
    assert_float32_equal(body["global_grad_norm"]["mean"], run.grad_norm[1][:, 0])

    hidden = get_json(client, "weights", run=FIXED, layer="model/net/hidden")
    assert sorted(hidden["weights"]) == ["model/net/hidden/bias", "model/net/hidden/kernel"]
    norms = [weights[p] for p in hidden["weights"]]
    np.testing.assert_allclose(hidden["norm"], np.sqrt(sum(n[:, 0] ** 2 for n in norms)))
    np.testing.assert_allclose(
        hidden["grad_norm_mean"], np.sqrt(sum(n[:, 1] ** 2 for n in norms))
    )


def test_diagnosis_per_epoch(client):
    body = get_json(client, "diagnosis", run="broken/train")
    assert body["steps"] == list(range(12))
    assert body["statuses"][LOG_VAR] == [[0, "not_updated"]], "from epoch 0 on"
    assert body["statuses"]["model/net/hidden/kernel"] == [[0, "training"]]


def test_run_names_pass_through_as_data(client):
    body = get_json(client, "series", run=f"{XSS_RUN}/train", variable="loss/StoppedGradient/weight")
    assert body["run"] == f"{XSS_RUN}/train"
    assert body["value"] == [[2.0] * 12], "a variable without a gradient keeps its value"


def test_non_finite_values_are_valid_json(tmp_path):
    from tests.conftest import fit, make_model
    import keras

    class Exploding(keras.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = keras.Variable(float("inf"), name="scale")

        def call(self, y_true, y_pred):
            return self.scale * keras.ops.mean(keras.ops.square(y_true - y_pred))

    with pytest.warns(UserWarning):
        fit(make_model(), Exploding(), str(tmp_path / "inf"), epochs=2)
    client = make_client(str(tmp_path))
    body = get_json(client, "series", run="inf/train", variable="loss/Exploding/scale")
    assert body["value"] == [["Infinity", "Infinity"]]
    status = get_json(client, "runs")["runs"][0]["variables"][0]["status"]
    assert status == "non_finite"


@pytest.fixture(scope="module")
def network_client(network_logdir):
    return make_client(network_logdir)


NETWORK_WEIGHTS = sorted(f"{NETWORK}/{layer}/{w}" for layer in NETWORK_LAYERS for w in ("kernel", "bias"))
TUNED = "vgg_tuned/train"


def test_runs_list_a_network_as_one_loss_variable_with_its_weights_after_the_models(network_client):
    runs = {run["name"]: run for run in get_json(network_client, "runs")["runs"]}
    assert set(runs) == set(NETWORK_RUNS)
    for name, (epochs, statuses) in NETWORK_RUNS.items():
        variables = runs[name]["variables"]
        assert runs[name]["last_step"] == epochs - 1
        assert {v["path"]: v["status"] for v in variables if v["role"] == "loss"} == statuses
        assert variables[0] == {
            "path": NETWORK, "role": "loss", "shape": [], "dtype": "float32", "kind": "network",
            "status": statuses[NETWORK], "cause": "", "weights": len(NETWORK_WEIGHTS),
        }
        assert variables[1]["kind"] == "value", "a loss variable beside the network is as ever"
        model = [v for v in variables if v["role"] == "model"]
        assert [v["path"] for v in model[:4]] == [
            f"model/net/{layer}/{w}" for layer in ("hidden", "out") for w in ("bias", "kernel")
        ]
        assert all("network" not in v and v["status"] == "training" for v in model[:4])
        assert [v["path"] for v in model[4:]] == NETWORK_WEIGHTS, "the network's weights come last"
        assert all(
            (v["kind"], v["network"], v["status"], v["cause"]) == ("norms", NETWORK, "", "")
            for v in model[4:]
        )
        kernel = next(v for v in model if v["path"] == f"{NETWORK}/block5_conv3/kernel")
        assert kernel["shape"] == [3, 3, 512, 512]


def test_series_of_a_network_holds_the_norms_of_all_its_weights(network_client):
    body = get_json(network_client, "series", run=TUNED, variable=NETWORK)
    assert (body["role"], body["shape"], body["steps"]) == ("loss", [], list(range(8)))
    assert list(body["norms"]) == list(metadata.FIELDS[metadata.WEIGHT_NORMS])
    assert "value" not in body and "grad_norm" not in body
    weights = [
        get_json(network_client, "series", run=TUNED, variable=path)["norms"] for path in NETWORK_WEIGHTS
    ]
    for field in ("norm", "grad_norm_mean", "grad_norm_max"):
        np.testing.assert_allclose(
            body["norms"][field], np.sqrt(sum(np.square(w[field]) for w in weights)), rtol=1e-6
        )
    frozen = get_json(network_client, "series", run="vgg_frozen/train", variable=NETWORK)["norms"]
    assert frozen["grad_norm_mean"] == ["NaN"] * 8, "a frozen network has no gradient"
    assert len(set(frozen["norm"])) == 1 and frozen["update_ratio"] == [0.0] * 8

    response = network_client.get(f"{PREFIX}/series", query_string={"run": TUNED, "variable": NETWORK,
                                                                    "format": "csv"})
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["step"] + [f"norms.{f}" for f in metadata.FIELDS[metadata.WEIGHT_NORMS]]
    assert len(rows) == 1 + 8


def test_weights_keep_a_networks_layers_apart_from_the_models(network_client, network_logdir):
    whole = get_json(network_client, "weights", run=TUNED)
    assert whole["layers"] == ["model/net/hidden", "model/net/out"], "no network layer among the model's"
    assert whole["networks"] == {NETWORK: [f"{NETWORK}/{layer}" for layer in sorted(NETWORK_LAYERS)]}
    model_norms = load(network_logdir)[TUNED].model_norms[1]
    for i, field in enumerate(metadata.FIELDS[metadata.WEIGHT_NORMS]):
        assert_float32_equal(whole[field], model_norms[:, i])

    # The network as a whole: its own series, as logged.
    network = get_json(network_client, "weights", run=TUNED, layer=NETWORK)
    series = get_json(network_client, "series", run=TUNED, variable=NETWORK)
    assert (network["layer"], network["weights"], network["layers"]) == (NETWORK, [], whole["layers"])
    assert {f: network[f] for f in series["norms"]} == series["norms"]
    assert network["global_grad_norm"] == whole["global_grad_norm"]

    # Its layers, combined as a model's are; all together, the network again.
    norms = []
    for layer in whole["networks"][NETWORK]:
        body = get_json(network_client, "weights", run=TUNED, layer=layer)
        assert body["weights"] == [f"{layer}/bias", f"{layer}/kernel"]
        norms.append(body["norm"])
    np.testing.assert_allclose(np.sqrt(np.sum(np.square(norms), axis=0)), network["norm"], rtol=1e-6)

    both = get_json(network_client, "weights_multirun", run=list(NETWORK_RUNS), layer=NETWORK)
    assert sorted(both["runs"]) == sorted(NETWORK_RUNS)
    assert both["runs"][TUNED] == network

    query = {"run": TUNED, "layer": "loss/Perceptual"}
    response = network_client.get(f"{PREFIX}/weights", query_string=query)
    assert response.status_code == 404
    assert f"its networks ['{NETWORK}']" in response.get_data(as_text=True)
    assert get_json(network_client, "weights", run=TUNED) == whole


def test_diagnosis_of_a_network_is_one_row_for_all_its_weights(network_client):
    body = get_json(network_client, "diagnosis", run="vgg_frozen/train")
    assert body["statuses"][NETWORK] == [[0, "frozen"]]
    assert not any(path.startswith(f"{NETWORK}/") for path in body["statuses"])


@pytest.mark.parametrize(
    "route, query, code, message",
    [
        ("series", {"variable": LOG_VAR}, 400, "Missing query parameter 'run'"),
        ("series", {"run": FIXED}, 400, "Missing query parameter 'variable'"),
        ("series", {"run": "", "variable": LOG_VAR}, 400, "Missing query parameter 'run'"),
        ("series", {"run": FIXED, "variable": LOG_VAR, "format": "xml"}, 400, "'xml'"),
        ("series", {"run": "nope", "variable": LOG_VAR}, 404, "No run 'nope'"),
        ("series", {"run": FIXED, "variable": "loss/Nope/x"}, 404, "no variable 'loss/Nope/x'"),
        ("series", {"run": FIXED, "variable": "run"}, 404, "no variable 'run'"),
        ("series_multirun", {"variable": LOG_VAR}, 400, "Missing query parameter 'run'"),
        ("series_multirun", {"run": FIXED}, 400, "Missing query parameter 'variable'"),
        ("series", {"run": FIXED, "variable": LOG_VAR, "samples": "0"}, 400, "received '0'"),
        ("series", {"run": FIXED, "variable": LOG_VAR, "samples": "-3"}, 400, "received '-3'"),
        ("series", {"run": FIXED, "variable": LOG_VAR, "samples": "1.5"}, 400, "'samples' must be a positive integer"),
        ("series", {"run": FIXED, "variable": LOG_VAR, "samples": "²"}, 400, "received '²'"),
        ("series_multirun", {"run": FIXED, "variable": LOG_VAR, "samples": "all"}, 400, "received 'all'"),
        ("weights", {}, 400, "Missing query parameter 'run'"),
        ("weights_multirun", {}, 400, "Missing query parameter 'run'"),
        ("weights_multirun", {"run": FIXED, "samples": "x"}, 400, "received 'x'"),
        ("weights_multirun", {"run": FIXED, "floats": "xml"}, 400, "'floats' must be 'json'"),
        ("series", {"run": FIXED, "variable": LOG_VAR, "floats": "base64", "format": "csv"}, 400,
         "'floats' is for JSON"),
        ("weights", {"run": "nope"}, 404, "No run 'nope'"),
        ("weights", {"run": FIXED, "layer": "model/net/x"}, 404, "no layer 'model/net/x'"),
        ("diagnosis", {}, 400, "Missing query parameter 'run'"),
        ("diagnosis", {"run": "nope"}, 404, "No run 'nope'"),
    ],
)
def test_bad_queries(client, route, query, code, message):
    response = client.get(f"{PREFIX}/{route}", query_string=query)
    assert response.status_code == code
    assert message in response.get_data(as_text=True)


def test_static_files_are_served_with_their_types(client):
    for name, mimetype in [("index.js", "text/javascript"), ("chart.js", "text/javascript"),
                           ("model.js", "text/javascript"), ("views.js", "text/javascript"),
                           ("style.css", "text/css")]:
        response = client.get(f"{PREFIX}/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["Content-Type"].startswith(mimetype)
        with open(os.path.join(plugin.STATIC_DIR, name), "rb") as f:
            assert response.get_data() == f.read()


@pytest.mark.parametrize(
    "attack",
    [
        "../plugin.py",
        "..%2fplugin.py",
        "..%2Fplugin.py",
        "%2e%2e%2fplugin.py",
        "%2e%2e/%2e%2e/loss_params/plugin.py",
        "..\\plugin.py",
        "..%5cplugin.py",
        "index.js/../../plugin.py",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "....//plugin.py",
        "index.js%00.py",
        "%00",
        ".",
        "",
        "static/index.js",
        "INDEX.JS",
    ],
)
def test_static_route_refuses_path_traversal(client, attack):
    response = client.get(f"{PREFIX}/static/{attack}")
    assert response.status_code == 404, f"{attack!r} answered {response.status_code}"
    body = response.get_data()
    assert b"import" not in body and b"root:" not in body


def test_a_corrupt_or_truncated_run_leaves_the_others_served(tmp_path, dashboard_logdir):
    log_dir = damaged_copy(pathlib.Path(dashboard_logdir), tmp_path / "logs")
    client = make_client(str(log_dir))
    names = {run["name"] for run in get_json(client, "runs")["runs"]}
    assert set(DASHBOARD_RUNS) <= names
    for name, (epochs, statuses) in DASHBOARD_RUNS.items():
        for path in statuses:
            assert len(get_json(client, "series", run=name, variable=path)["steps"]) == epochs
    for name in ("truncated/train", "corrupt/train"):  # what was read before the damage is served
        assert name in names
        body = get_json(client, "series", run=name, variable=LOG_VAR)
        assert 0 < len(body["steps"]) < 12
        assert body["steps"] == list(range(len(body["steps"])))


def test_plugin_is_activated_by_its_data_and_names_its_tab():
    context = base_plugin.TBContext(data_provider=None)
    instance = plugin.LossParamsPlugin(context)
    assert instance.plugin_name == metadata.PLUGIN_NAME == loader.PLUGIN_NAME
    assert instance.data_plugin_names() == (metadata.PLUGIN_NAME,)
    assert instance.frontend_metadata().tab_name == "Loss Params"
    assert instance.frontend_metadata().es_module_path == "/static/index.js"


def test_loader_keeps_every_point_unless_the_user_says_otherwise():
    flags = argparse.Namespace(samples_per_plugin={})
    loader.LossParamsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {metadata.PLUGIN_NAME: 0}
    flags = argparse.Namespace(samples_per_plugin={metadata.PLUGIN_NAME: 500, "scalars": 9})
    loader.LossParamsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {metadata.PLUGIN_NAME: 500, "scalars": 9}


def test_entry_point_imports_and_serves_without_tensorflow(dashboard_logdir):
    script = f"""
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
from importlib.metadata import entry_points
(entry,) = [e for e in entry_points(group="tensorboard_plugins") if e.name == "loss_params"]
loader = entry.load()()
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard import context
from tensorboard.plugins import base_plugin
mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={{"loss_params": 0}})
mux.AddRunsFromDirectory({dashboard_logdir!r})
mux.Reload()
provider = data_provider.MultiplexerDataProvider(mux, {dashboard_logdir!r})
plugin = loader.load(base_plugin.TBContext(data_provider=provider))
runs = plugin.runs_impl(context.RequestContext(), "")["runs"]
print(len(runs), "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(DASHBOARD_RUNS)), "False"]
