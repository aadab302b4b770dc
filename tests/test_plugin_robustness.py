"""The plugin's routes over damaged, hostile and vanishing runs: one bad run never takes the others down.

The damaged runs are written without TensorFlow, with TensorBoard's own
event writer and the plugin's metadata helpers, as a buggy or hostile writer
would write them.
"""

import pathlib
import shutil
import time
import urllib.parse

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from tensorboard_plugin.loss_params import metadata, summary
from tests.conftest import DASHBOARD_RUNS
from tests.servers import tensorboard
from tests.test_plugin import FIXED, LOG_VAR, PREFIX, get_json, make_client


def write_run(directory, epochs):
    """Writes one event file: `epochs`, a list of each epoch's `Summary.Value`s."""
    writer = EventFileWriter(str(directory))
    for step, values in enumerate(epochs):
        event = event_pb2.Event(step=step, wall_time=time.time())
        event.summary.ParseFromString(summary.serialize(values))
        writer.add_event(event)
    writer.close()


def diagnosis(rows):
    return summary.values(
        metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS, np.array(rows, dtype=object)
    )


def raw_value(tag, kind, path, tensor, shape=(), field=""):
    """A `Summary.Value` whose metadata and tensor are given as they are, checked by nothing."""
    return summary_pb2.Summary.Value(
        tag=tag,
        metadata=metadata.create_summary_metadata(metadata.ROLE_LOSS, kind, path, shape, "float32", field=field),
        tensor=tensor_util.make_tensor_proto(tensor),
    )


def log_var(value=1.0):
    return summary.values(metadata.ROLE_LOSS, metadata.VALUE, LOG_VAR, np.float32(value), dtype="float32")


HEALTHY = diagnosis([[LOG_VAR, "training", ""]])

# Runs whose data breaks the format: {run: (its epochs, what `/runs` names of it, words of the reason)}.
DAMAGED = {
    # A diagnosis that is not a table of rows.
    "flat_diagnosis/train": (
        [log_var() + diagnosis(["a", "b", "c"])] * 3,
        {"run": "flat_diagnosis/train"},
        "diagnosis has shape (3,)",
    ),
    # A kind this version does not know (a newer tracker's): the tag is named, the rest of the run listed.
    "unknown_kind/train": (
        [log_var() + HEALTHY + [raw_value("loss/L/x/mystery", 99, "loss/L/x", np.float32(1))]] * 3,
        {"run": "unknown_kind/train", "tag": "loss/L/x/mystery"},
        "unknown kind, 99",
    ),
    # A VALUE of 10^10 elements, as far as its metadata says.
    "huge_shape/train": (
        [log_var() + HEALTHY + [raw_value("loss/L/x/value/0", metadata.VALUE, "loss/L/x", np.float32(1),
                                          (100_000, 100_000), "0")]] * 3,
        {"run": "huge_shape/train", "tag": "loss/L/x/value/0"},
        "(100000, 100000), 10000000000 elements",
    ),
}

# Runs whose VALUE series of LOG_VAR holds what no scalar can be: {run: that tensor}.
NOT_SCALARS = {"strings/train": np.array(["x", "y"], dtype=object), "vector/train": np.float32([1, 2])}


@pytest.fixture(scope="module")
def damaged_logdir(tmp_path_factory, dashboard_logdir):
    """The dashboard's runs, and beside them each damaged run."""
    root = tmp_path_factory.mktemp("damaged") / "logs"
    shutil.copytree(dashboard_logdir, root)
    for run, (epochs, _, _) in DAMAGED.items():
        write_run(root / run, epochs)
    for run, tensor in NOT_SCALARS.items():
        write_run(root / run, [[raw_value(f"{LOG_VAR}/value", metadata.VALUE, LOG_VAR, tensor)] + HEALTHY] * 3)
    return root


@pytest.fixture(scope="module")
def damaged_client(damaged_logdir):
    return make_client(str(damaged_logdir))


def test_runs_skip_and_name_what_cannot_be_read_and_list_the_rest(damaged_client):
    body = get_json(damaged_client, "runs")
    listed = {run["name"] for run in body["runs"]}
    assert set(DASHBOARD_RUNS) | set(NOT_SCALARS) <= listed, "the good runs are all listed"
    assert "flat_diagnosis/train" not in listed, "a run whose diagnosis cannot be read is left out"
    assert {"unknown_kind/train", "huge_shape/train"} <= listed, "a bad tag leaves the rest of its run"
    for run, (_, named, words) in DAMAGED.items():
        (skip,) = [s for s in body["skipped"] if s["run"] == run]
        assert {k: skip[k] for k in named} == named and set(skip) == set(named) | {"reason"}, skip
        assert words in skip["reason"], skip
    assert len(body["skipped"]) == len(DAMAGED), body["skipped"]
    huge = next(run for run in body["runs"] if run["name"] == "huge_shape/train")
    assert [v["path"] for v in huge["variables"]] == [LOG_VAR]


def test_a_hostile_shape_costs_no_more_than_the_data(tmp_path, dashboard_logdir):
    logdir = tmp_path / "logs"
    shutil.copytree(pathlib.Path(dashboard_logdir) / "fixed", logdir / "fixed")
    epochs, _, _ = DAMAGED["huge_shape/train"]
    write_run(logdir / "huge_shape" / "train", epochs)
    client = make_client(str(logdir))
    start = time.monotonic()
    names = {run["name"] for run in get_json(client, "runs")["runs"]}
    assert time.monotonic() - start < 5, "the declared shape must not be allocated"
    assert names == {FIXED, "huge_shape/train"}


def test_a_value_of_strings_or_vectors_leaves_the_cards_other_runs_served(damaged_client):
    runs = [FIXED, *NOT_SCALARS, "broken/train"]
    body = get_json(damaged_client, "series_multirun", variable=LOG_VAR, run=runs)
    assert sorted(body["runs"]) == ["broken/train", FIXED]
    assert len(body["runs"][FIXED]["steps"]) == DASHBOARD_RUNS[FIXED][0]
    assert [s["run"] for s in body["skipped"]] == sorted(NOT_SCALARS)
    assert all(s["reason"] for s in body["skipped"])
    sample = get_json(damaged_client, "series_multirun", variable=LOG_VAR, run=runs, samples="5")
    assert sorted(sample["runs"]) == ["broken/train", FIXED]
    for run in NOT_SCALARS:
        for output in ("json", "csv"):
            query = {"run": run, "variable": LOG_VAR, "format": output}
            response = damaged_client.get(f"{PREFIX}/series", query_string=query)
            assert response.status_code == 404, (run, output, response.get_data(as_text=True))
            assert f"Run {run!r} cannot be read" in response.get_data(as_text=True)
    assert get_json(damaged_client, "series_multirun", variable=LOG_VAR, run=[FIXED])["skipped"] == []


def test_every_route_answers_the_good_runs_beside_the_damaged_ones(damaged_client):
    every = [*DASHBOARD_RUNS, *DAMAGED, *NOT_SCALARS]
    weights = get_json(damaged_client, "weights_multirun", run=every)
    assert set(DASHBOARD_RUNS) <= set(weights["runs"])
    hidden = get_json(damaged_client, "weights_multirun", run=every, layer="model/net/hidden")
    assert sorted(hidden["runs"]) == sorted(DASHBOARD_RUNS), "runs without the layer are left out"
    response = damaged_client.get(f"{PREFIX}/diagnosis", query_string={"run": "flat_diagnosis/train"})
    assert response.status_code == 404 and "diagnosis has shape (3,)" in response.get_data(as_text=True)
    assert get_json(damaged_client, "diagnosis", run="huge_shape/train")["statuses"] == {LOG_VAR: [[0, "training"]]}


def test_a_run_deleted_while_served_is_a_404_and_left_out_of_the_others(tmp_path, dashboard_logdir):
    logdir = tmp_path / "logs"
    shutil.copytree(dashboard_logdir, logdir)
    client = make_client(str(logdir))
    layer = "model/net/hidden"
    both = ["broken/train", FIXED]
    # Served once, so that the plugin holds the run's listing.
    assert "broken/train" in {run["name"] for run in get_json(client, "runs")["runs"]}
    assert sorted(get_json(client, "weights_multirun", run=both, layer=layer)["runs"]) == both

    shutil.rmtree(logdir / "broken")
    client.reload()
    for route, query in [
        ("weights", {"layer": layer}),
        ("weights", {}),
        ("series", {"variable": LOG_VAR}),
        ("series", {"variable": LOG_VAR, "format": "csv"}),
        ("diagnosis", {}),
    ]:
        response = client.get(f"{PREFIX}/{route}", query_string={"run": "broken/train", **query})
        assert response.status_code == 404, (route, query, response.get_data(as_text=True))
        assert "No run 'broken/train'" in response.get_data(as_text=True)
    for route, query in [("weights_multirun", {"layer": layer}), ("weights_multirun", {}),
                         ("series_multirun", {"variable": LOG_VAR})]:
        body = get_json(client, route, run=both, **query)
        assert list(body["runs"]) == [FIXED] and body["skipped"] == [], (route, query)
    assert "broken/train" not in {run["name"] for run in get_json(client, "runs")["runs"]}


def test_csv_of_a_name_beyond_latin1_downloads_under_that_name(tmp_path):
    path = "loss/GaussianNLL/log_σ"
    epochs = [summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, np.float32(e), dtype="float32")
              + diagnosis([[path, "training", ""]]) for e in range(3)]
    write_run(tmp_path / "σ" / "train", epochs)
    client = make_client(str(tmp_path))
    response = client.get(f"{PREFIX}/series", query_string={"run": "σ/train", "variable": path, "format": "csv"})
    assert response.status_code == 200
    assert response.get_data(as_text=True).splitlines()[1:] == ["0,0.0", "1,1.0", "2,2.0"]
    header = response.headers["Content-Disposition"]
    header.encode("ascii")  # headers are Latin-1 on the wire; this one is plain ASCII
    name = "σ_train_loss_GaussianNLL_log_σ.csv"
    assert header == (
        'attachment; filename="__train_loss_GaussianNLL_log__.csv"; '
        f"filename*=UTF-8''{urllib.parse.quote(name)}"
    )


@pytest.mark.parametrize(
    "samples",
    ["9" * 5000, "1" * 4301, str(2**31), "99999999999", "00000000000000001", "+5", " 5", "5 ", "1e3"],
)
def test_samples_must_be_a_reasonably_sized_positive_integer(damaged_client, samples):
    for route, query in [("series", {"run": FIXED, "variable": LOG_VAR}), ("weights_multirun", {"run": FIXED})]:
        response = damaged_client.get(f"{PREFIX}/{route}", query_string={**query, "samples": samples})
        assert response.status_code == 400, (samples[:20], response.status_code)
        text = response.get_data(as_text=True)
        assert "'samples' must be a positive integer" in text and len(text) < 400, text[:500]
    assert get_json(damaged_client, "series", run=FIXED, variable=LOG_VAR, samples=str(2**31 - 1))["steps"]


def test_the_rust_data_server_lists_the_good_runs_beside_the_damaged_ones(damaged_logdir):
    # The routes above run on the Python loader; this one on TensorBoard's default, the Rust server.
    def loaded():
        body = board.get_json(f"{PREFIX}/runs")
        names = {run["name"] for run in body["runs"]} | {s["run"] for s in body["skipped"]}
        return body if set(DASHBOARD_RUNS) | set(DAMAGED) <= names else None

    with tensorboard(damaged_logdir, "--load_fast=true") as board:
        body = board.wait_for(loaded)
        assert set(DASHBOARD_RUNS) <= {run["name"] for run in body["runs"]}
        assert "flat_diagnosis/train" in {s["run"] for s in body["skipped"]}
        query = urllib.parse.urlencode({"variable": LOG_VAR, "run": [FIXED, *NOT_SCALARS]}, doseq=True)
        multirun = board.get_json(f"{PREFIX}/series_multirun?{query}")
        assert FIXED in multirun["runs"]
