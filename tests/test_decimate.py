"""Extreme-preserving decimation (`columns=N`) through the routes, over runs of 3,000 epochs.

The pure function, `decimate.keep_indices`, is tested in tests/unit/test_decimate.py.
"""

import numpy as np
import pytest

from tensorboard_plugin.loss_params import bodies, metadata, summary
from tensorboard_plugin.loss_params.decimate import keep_indices
from tests.test_plugin import PREFIX, assert_float32_equal, get_json, make_client


EPOCHS = 3_000
VARIABLE = "loss/Spiky/weight"
SPIKE = 1_234  # one epoch of the value, far above the rest
NAN = 2_222  # one epoch without a gradient norm
MODEL_SPIKE = 777  # one epoch of the model's norm
SPIKY, CALM = "spiky/train", "calm/train"


@pytest.fixture(scope="module")
def long_client(tmp_path_factory):
    """Two runs of 3,000 epochs, written with the summary API as the callback does; one has a spike."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(0)
    for run in (SPIKY, CALM):
        writer = tf.summary.create_file_writer(str(root / run))
        with writer.as_default():
            for epoch in range(EPOCHS):
                spiky = run == SPIKY
                value = 50.0 if spiky and epoch == SPIKE else 1 + 0.01 * rng.standard_normal()
                grad_norm = [np.nan, np.nan] if spiky and epoch == NAN else [0.5, 1.0]
                norm = 90.0 if spiky and epoch == MODEL_SPIKE else 10 + epoch / EPOCHS
                values = summary.values(metadata.ROLE_LOSS, metadata.VALUE, VARIABLE, np.float32(value),
                                        dtype="float32")
                values += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, VARIABLE,
                                         np.float32(grad_norm))
                values += summary.values(metadata.ROLE_RUN, metadata.WEIGHT_NORMS, metadata.RUN_MODEL,
                                         np.float32([norm, 0.5, 1.0, 0.01]))
                values += summary.values(metadata.ROLE_RUN, metadata.GRAD_NORM, metadata.RUN_GRAD_NORM,
                                         np.float32([0.5, 1.0]))
                values += summary.values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS,
                                         np.array([[VARIABLE, "training", ""]], dtype=object))
                summary.write(values, epoch)
        writer.close()
    return make_client(str(root))


def assert_slice_of(body, full, arrays):
    """`body` is `full` at some of its steps, every array sliced alike."""
    at = np.searchsorted(full["steps"], body["steps"])
    assert np.array_equal(np.asarray(full["steps"])[at], body["steps"]), "kept steps are epochs of the run"
    for name, values in arrays(body).items():
        assert values == [arrays(full)[name][i] for i in at], name


def series_arrays(body):
    return {"value": body["value"][0], **{f"grad_norm.{f}": v for f, v in body["grad_norm"].items()}}


def weights_arrays(body):
    return {
        **{f: body[f] for f in metadata.FIELDS[metadata.WEIGHT_NORMS]},
        **{f"global_grad_norm.{f}": v for f, v in body["global_grad_norm"].items()},
    }


def test_series_multirun_columns_keep_a_one_epoch_spike_and_nan(long_client):
    body = get_json(long_client, "series_multirun", variable=VARIABLE, run=[SPIKY, CALM], columns="100")
    full = get_json(long_client, "series_multirun", variable=VARIABLE, run=[SPIKY, CALM])
    assert sorted(body["runs"]) == [CALM, SPIKY] and body["skipped"] == []
    spiky = body["runs"][SPIKY]
    assert (spiky["sampled"], spiky["columns"], spiky["epochs"]) == (True, 100, EPOCHS)
    assert len(spiky["steps"]) <= 500, f"{len(spiky['steps'])} of {EPOCHS} epochs for 100 columns"
    assert spiky["value"][0][spiky["steps"].index(SPIKE)] == 50.0, "the spike is in the view"
    assert spiky["grad_norm"]["mean"][spiky["steps"].index(NAN)] == "NaN", "so is the NaN"
    assert (spiky["steps"][0], spiky["steps"][-1]) == (0, EPOCHS - 1)
    for run in (SPIKY, CALM):
        assert_slice_of(body["runs"][run], full["runs"][run], series_arrays)
        assert "columns" not in full["runs"][run] and full["runs"][run]["sampled"] is False
    single = get_json(long_client, "series", run=SPIKY, variable=VARIABLE, columns="100")
    assert single == spiky


def test_weights_columns_keep_a_one_epoch_spike_of_the_models_norm(long_client):
    body = get_json(long_client, "weights_multirun", run=[SPIKY, CALM], columns="100")
    full = get_json(long_client, "weights_multirun", run=[SPIKY, CALM])
    spiky = body["runs"][SPIKY]
    assert (spiky["sampled"], spiky["columns"]) == (True, 100)
    assert len(spiky["steps"]) <= 500
    assert_float32_equal(spiky["norm"][spiky["steps"].index(MODEL_SPIKE)], 90.0)
    for run in (SPIKY, CALM):
        assert_slice_of(body["runs"][run], full["runs"][run], weights_arrays)
    assert get_json(long_client, "weights", run=SPIKY, columns="100") == spiky


def test_columns_as_wide_as_the_run_keep_every_epoch(long_client):
    full = get_json(long_client, "series", run=SPIKY, variable=VARIABLE)
    wide = get_json(long_client, "series", run=SPIKY, variable=VARIABLE, columns=str(EPOCHS))
    assert (wide.pop("columns"), wide.pop("epochs"), wide) == (EPOCHS, EPOCHS, full), "nothing dropped, not sampled"


def test_a_reduction_that_would_keep_most_epochs_sends_every_one(long_client):
    # Six epochs a column: each series' first, last, lowest and highest are up
    # to four of them, more than half, so the tab would only read them again.
    full = get_json(long_client, "series", run=SPIKY, variable=VARIABLE)
    columns = EPOCHS // 6
    kept = keep_indices(np.asarray(full["steps"]), [np.asarray(full["value"][0])], columns)
    assert EPOCHS * bodies.KEEP_ALL_ABOVE < len(kept) < EPOCHS, "the case is the one meant"
    most = get_json(long_client, "series", run=SPIKY, variable=VARIABLE, columns=str(columns))
    assert (most.pop("columns"), most.pop("epochs"), most) == (columns, EPOCHS, full)


@pytest.mark.parametrize("columns", ["0", "-1", "abc", str(10**6), "100001", "9" * 5000, "1.5", ""])
@pytest.mark.parametrize("route", ["series", "series_multirun", "weights", "weights_multirun"])
def test_bad_columns_are_a_400_that_says_what_was_received(long_client, route, columns):
    query = {"run": SPIKY, "variable": VARIABLE, "columns": columns}
    response = long_client.get(f"{PREFIX}/{route}", query_string=query)
    assert response.status_code == 400, (route, columns[:20], response.status_code)
    text = response.get_data(as_text=True)
    assert "'columns' must be a positive integer up to 100000" in text and len(text) < 400, text[:500]
    shown = columns if len(columns) <= 20 else f"{columns[:20]}… ({len(columns)} characters)"
    assert f"received {shown!r}" in text, text


@pytest.mark.parametrize(
    "query, message",
    [
        ({"format": "csv", "columns": "100"}, "a CSV always has every epoch"),
        ({"samples": "10", "columns": "100"}, "'samples' and 'columns' exclude each other"),
    ],
)
def test_columns_are_refused_for_csv_and_beside_samples(long_client, query, message):
    response = long_client.get(f"{PREFIX}/series", query_string={"run": SPIKY, "variable": VARIABLE, **query})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
