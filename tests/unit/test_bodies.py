"""The routes' bodies, built from hand-made listings (`{tag: Series}`) and data (`{tag: (steps, values)}`)."""

import base64
import math

import numpy as np
import pytest
from tensorboard import errors

from tensorboard_plugin.loss_params import bodies, cache, metadata
from tensorboard_plugin.loss_params import series as series_lib
from tensorboard_plugin.loss_params.display import Display

pytestmark = pytest.mark.unit

LOG_VAR = "loss/GaussianNLL/log_var"
CENTERS = "loss/CenterLoss/centers"
HIDDEN, OUT = "model/net/hidden", "model/net/out"
NETWORK = "loss/Perceptual/features"
STEPS = np.arange(3, dtype=np.int64)


def series(path, kind, role=metadata.ROLE_LOSS, shape=(), display=None, layer_index=None):
    """The `Series` `list_series` gives of a variable's series of `kind`."""
    tag = metadata.tag(path, kind)
    fields = metadata.fields(kind, shape)
    parts = tuple((f, metadata.tag(path, kind, field=f) if f else tag) for f in fields)
    return series_lib.Series(
        tag=tag, path=path, role=role, kind=kind, shape=tuple(shape), dtype="float32", max_step=2,
        parts=parts, display=display, layer_index=layer_index,
    )


def listing(*all_series):
    """A run's listing, `{tag: Series}`, sorted by tag as `list_series` gives it."""
    return {s.tag: s for s in sorted(all_series, key=lambda s: s.tag)}


def weight(path, layer_index=None):
    return series(path, metadata.WEIGHT_NORMS, metadata.ROLE_MODEL, shape=(4, 8), layer_index=layer_index)


def log_var_data(values=(0.0, 0.5, 1.0)):
    """The data of a scalar loss variable and its gradient norm, which lacks the first epoch."""
    return {
        metadata.tag(LOG_VAR, metadata.VALUE): (STEPS, np.array(values).reshape(-1, 1)),
        metadata.tag(LOG_VAR, metadata.GRAD_NORM): (STEPS[1:], np.array([[0.25, 0.5], [0.125, 0.25]])),
    }


def test_series_body_aligns_every_kind_on_the_union_of_steps():
    mine = bodies.variable_series(listing(series(LOG_VAR, metadata.VALUE), series(LOG_VAR, metadata.GRAD_NORM),
                                          weight(f"{HIDDEN}/kernel")), LOG_VAR)
    body = bodies.series_body("a/train", LOG_VAR, mine, log_var_data())
    assert body == {
        "run": "a/train", "path": LOG_VAR, "role": "loss", "shape": [], "dtype": "float32", "sampled": False,
        "steps": [0, 1, 2],
        "value": [[0.0, 0.5, 1.0]],
        "grad_norm": {"mean": ["NaN", 0.25, 0.125], "max": ["NaN", 0.5, 0.25]},
    }
    assert "shown" not in body, "no display, no displayed values"


def test_series_body_of_a_variable_with_a_display_carries_the_shown_values_in_the_same_layout():
    display = Display("exp", inner_scale=0.5, label="sigma")
    mine = listing(series(LOG_VAR, metadata.VALUE, display=display), series(LOG_VAR, metadata.GRAD_NORM))
    body = bodies.series_body("a/train", LOG_VAR, mine, log_var_data([0.0, 2 * math.log(2), np.inf]))
    assert body["value"] == [[0.0, 1.3862944, "Infinity"]], "the stored values, at float32 precision"
    assert body["shown"] == {"value": [[1.0, 2.0, "Infinity"]]}


def test_series_body_of_a_large_variable_gives_its_distribution_within_its_exact_extremes():
    mine = listing(series(CENTERS, metadata.STATS, shape=(10, 10), display=Display("exp")),
                   series(CENTERS, metadata.HISTOGRAM, shape=(10, 10)))
    # mean, std, min, max, l2; the histogram's one bucket is wider than the elements.
    stats = np.array([[0.5, 0.25, 0.0, 1.0, 6.0]])
    histogram = np.array([[-1.0, 3.0, 100.0]])
    data = {
        metadata.tag(CENTERS, metadata.STATS): (STEPS[:1], stats),
        metadata.tag(CENTERS, metadata.HISTOGRAM): (STEPS[:1], [histogram]),
    }
    body = bodies.series_body("a/train", CENTERS, mine, data)
    assert body["stats"] == {"mean": [0.5], "std": [0.25], "min": [0.0], "max": [1.0], "l2": [6.0]}
    distribution = body["distribution"]
    assert distribution["basis"] == list(bodies.DISTRIBUTION_BASIS)
    quantiles = [q[0] for q in distribution["values"]]
    assert quantiles[0] == 0.0 and quantiles[-1] == 1.0, "clipped to the exact min and max"
    assert quantiles[4] == 1.0, "the median of elements spread evenly over [-1, 3] is 1"
    assert body["shown"]["distribution"]["values"][0] == [1.0]
    assert list(body["shown"]) == ["distribution"], "a display applies to the value's quantiles, not its stats"


def test_series_body_reduced_to_columns_keeps_a_spike_and_says_how_many_epochs_were_read():
    steps = np.arange(1_000, dtype=np.int64)
    values = np.ones((1_000, 1))
    values[567] = 50.0
    mine = listing(series(LOG_VAR, metadata.VALUE))
    body = bodies.series_body("a/train", LOG_VAR, mine, {metadata.tag(LOG_VAR, metadata.VALUE): (steps, values)},
                              columns=10)
    assert (body["sampled"], body["columns"], body["epochs"]) == (True, 10, 1_000)
    assert len(body["steps"]) <= 10 * 6 and body["value"][0][body["steps"].index(567)] == 50.0
    wide = bodies.series_body("a/train", LOG_VAR, mine, {metadata.tag(LOG_VAR, metadata.VALUE): (steps, values)},
                              columns=1_000)
    assert (wide["sampled"], len(wide["steps"])) == (False, 1_000), "every epoch: nothing to reduce"


def test_a_sample_as_long_as_asked_may_lack_epochs():
    mine = listing(series(LOG_VAR, metadata.VALUE))
    data = {metadata.tag(LOG_VAR, metadata.VALUE): (STEPS, np.zeros((3, 1)))}
    assert bodies.series_body("a/train", LOG_VAR, mine, data, samples=3)["sampled"] is True
    assert bodies.series_body("a/train", LOG_VAR, mine, data, samples=4)["sampled"] is False


def model_listing():
    """A run's listing: two layers of two weights each, the model as a whole and the global gradient norm."""
    return listing(
        *(weight(f"{layer}/{w}", layer_index=i) for i, layer in enumerate((HIDDEN, OUT)) for w in ("kernel", "bias")),
        series(metadata.RUN_MODEL, metadata.WEIGHT_NORMS, metadata.ROLE_RUN),
        series(metadata.RUN_GRAD_NORM, metadata.GRAD_NORM, metadata.ROLE_RUN),
    )


def norms(norm, grad_mean, grad_max, ratio):
    return STEPS[:1], np.array([[norm, grad_mean, grad_max, ratio]])


def test_weights_body_combines_a_layers_weights_as_root_sum_squares():
    tags = model_listing()
    weights = bodies.weights_members("a/train", tags, HIDDEN)
    assert [s.path for s in weights.members] == [f"{HIDDEN}/bias", f"{HIDDEN}/kernel"]
    data = {
        metadata.tag(f"{HIDDEN}/kernel", metadata.WEIGHT_NORMS): norms(3.0, 1.0, 2.0, 0.5),
        # A bias that started at zero: its ratio is unknown, and left out of the layer's.
        metadata.tag(f"{HIDDEN}/bias", metadata.WEIGHT_NORMS): norms(4.0, 0.0, 0.0, np.nan),
        metadata.GLOBAL_GRAD_NORM_TAG: (STEPS[:1], np.array([[1.5, 2.5]])),
    }
    body = bodies.weights_body("a/train", weights, data)
    assert body == {
        "run": "a/train", "layer": HIDDEN, "layers": [HIDDEN, OUT], "places": {HIDDEN: 0, OUT: 1}, "networks": {},
        "weights": [f"{HIDDEN}/bias", f"{HIDDEN}/kernel"], "sampled": False, "steps": [0],
        "norm": [5.0], "grad_norm_mean": [1.0], "grad_norm_max": [2.0], "update_ratio": [0.5],
        "global_grad_norm": {"mean": [1.5], "max": [2.5]},
    }


def test_weights_of_the_whole_model_are_its_one_series_and_a_place_names_a_layer():
    tags = model_listing()
    whole = bodies.weights_members("a/train", tags, "")
    assert (whole.whole, [s.tag for s in whole.members]) == (True, [metadata.MODEL_TAG])
    body = bodies.weights_body("a/train", whole, {metadata.MODEL_TAG: norms(7.0, 1.0, 2.0, 0.25)})
    assert (body["layer"], body["weights"], body["norm"]) == ("", [], [7.0])
    assert "global_grad_norm" not in body, "not read, not given"
    assert bodies.weights_members("a/train", tags, "", place=1).layer == OUT
    with pytest.raises(errors.NotFoundError, match=r"no layer at place 2; its layers' places are"):
        bodies.weights_members("a/train", tags, "", place=2)
    with pytest.raises(errors.NotFoundError, match=r"no layer 'model/net'; its layers are \['model/net/hidden'"):
        bodies.weights_members("a/train", tags, "model/net")


def test_weights_body_without_data_yet_is_nan():
    weights = bodies.weights_members("a/train", model_listing(), OUT)
    body = bodies.weights_body("a/train", weights, {})
    assert (body["steps"], body["norm"]) == ([], [])


def test_a_network_the_loss_holds_is_one_variable_whose_weights_follow_the_models():
    tags = listing(series(NETWORK, metadata.WEIGHT_NORMS), weight(f"{NETWORK}/block1_conv1/kernel"),
                   weight(f"{HIDDEN}/kernel", layer_index=0))
    weights = bodies.weights_members("a/train", tags, "")
    assert weights.layers == [HIDDEN] and weights.networks == {NETWORK: [f"{NETWORK}/block1_conv1"]}
    listed = cache.Listed("a/train", (2, 1.5), tags, {NETWORK: ("frozen", "")}, "", {})
    paths = [(v["path"], v["kind"], v.get("network"), v.get("weights")) for v in _entries(listed)[0]["variables"]]
    assert paths == [(NETWORK, "network", None, 1), (f"{HIDDEN}/kernel", "norms", None, None),
                     (f"{NETWORK}/block1_conv1/kernel", "norms", NETWORK, None)]


def _entries(*listed):
    return bodies.runs_body(listed)["runs"]


def test_runs_body_lists_readable_runs_names_the_rest_and_gives_every_status_with_its_severity():
    display = Display("exp", label="scale")
    tags = listing(weight(f"{HIDDEN}/kernel", layer_index=0), series(LOG_VAR, metadata.VALUE, display=display),
                   series(LOG_VAR, metadata.GRAD_NORM),
                   series(metadata.RUN_DIAGNOSIS, metadata.DIAGNOSIS, metadata.ROLE_RUN, shape=(2, 3)))
    latest = {LOG_VAR: ("not_updated", "not_in_optimizer"), f"{HIDDEN}/kernel": ("training", "")}
    listed = [
        cache.Listed("a/train", (4, 12.5), tags, latest, "", {"loss/L/x/mystery": "its metadata names a kind, 99"}),
        cache.Listed("b/train", (1, 3.0), None, {}, "ValueError: a diagnosis has shape (3,)", {}),
        cache.Listed("c/train", (0, 1.0), None, {}, "", {}),  # no tag of it could be listed
    ]
    body = bodies.runs_body(listed)
    assert body["runs"] == [{
        "name": "a/train", "last_step": 4, "last_wall_time": 12.5,
        "variables": [
            {"path": LOG_VAR, "role": "loss", "shape": [], "dtype": "float32", "kind": "value",
             "status": "not_updated", "cause": "not_in_optimizer", "display": display.to_json()},
            {"path": f"{HIDDEN}/kernel", "role": "model", "shape": [4, 8], "dtype": "float32", "kind": "norms",
             "status": "training", "cause": "", "layer_index": 0},
        ],
    }]
    assert body["skipped"] == [
        {"run": "a/train", "tag": "loss/L/x/mystery", "reason": "its metadata names a kind, 99"},
        {"run": "b/train", "reason": "ValueError: a diagnosis has shape (3,)"},
    ]
    assert list(body["statuses"]) == list(metadata.STATUSES)
    for row in metadata.STATUS_TABLE:
        assert body["statuses"][row.name] == {"explanation": row.meaning, "fix": row.fix, "severity": row.severity}
    assert body["causes"] == {c.name: {"explanation": c.meaning, "fix": c.fix} for c in metadata.CAUSE_TABLE}


def test_a_run_before_its_first_diagnosis_has_empty_statuses():
    (entry,) = _entries(cache.Listed("a/train", (0, 1.0), listing(series(LOG_VAR, metadata.VALUE)), {}, "", {}))
    assert [(v["status"], v["cause"]) for v in entry["variables"]] == [("", "")]


def test_diagnosis_body_gives_the_epochs_where_each_variables_status_changed():
    tags = listing(series(LOG_VAR, metadata.VALUE), weight(f"{HIDDEN}/kernel"),
                   series(metadata.RUN_DIAGNOSIS, metadata.DIAGNOSIS, metadata.ROLE_RUN, shape=(2, 3)))
    rows = [[LOG_VAR, "not_updated", "not_in_optimizer"], [f"{HIDDEN}/kernel", "training", ""]]
    first = np.array(rows[:1], dtype=object)  # the weight has no row yet: ""
    # A variable of the diagnosis the listing lacks (written since) is not shown.
    later = np.array(rows + [["loss/L/new", "training", ""]], dtype=object)
    steps = np.array([3, 5, 8])  # changes are by place; the body names their epochs
    decoded = cache.Diagnosis(steps, series_lib.status_changes([first, np.array(rows, dtype=object), later]))
    assert bodies.diagnosis_body("a/train", tags, decoded) == {
        "run": "a/train", "steps": [3, 5, 8],
        "statuses": {LOG_VAR: [[3, "not_updated"]], f"{HIDDEN}/kernel": [[5, "training"]]},
    }
    none_yet = cache.Diagnosis(STEPS[:0], {})
    assert bodies.diagnosis_body("a/train", tags, none_yet)["steps"] == [], "before the first diagnosis"
    assert bodies.diagnosis_body("a/train", tags, cache.Diagnosis(STEPS[:1], {}))["statuses"] == {
        LOG_VAR: [], f"{HIDDEN}/kernel": []}, "a diagnosis of no rows"


def test_status_changes_follow_variables_that_come_go_and_change_places():
    tables = [
        [[LOG_VAR, "training"]],  # format version 1: no cause
        [[LOG_VAR, "training", ""], ["loss/L/b", "frozen", ""]],  # b comes
        [["loss/L/b", "frozen", ""], [LOG_VAR, "non_finite", ""]],  # the rows change places
        [["loss/L/b", "frozen", ""], ["loss/L/b", "training", ""]],  # b twice (its last row wins); log_var goes
        [[LOG_VAR.encode(), b"not_updated", b""]],  # as TensorBoard gives them: bytes
    ]
    values = [np.array(t, dtype=object) for t in tables]
    expected = {
        LOG_VAR: [(0, "training"), (2, "non_finite"), (3, ""), (4, "not_updated")],
        "loss/L/b": [(1, "frozen"), (3, "training"), (4, "")],
    }
    assert series_lib.status_changes(values) == expected
    assert list(series_lib.status_changes(values)) == [LOG_VAR, "loss/L/b"], "in the order first seen"
    with pytest.raises(ValueError, match=r"a diagnosis has shape \(2,\)"):
        series_lib.status_changes([np.array(["a", "b"], dtype=object)])


def test_series_csv_has_a_step_column_then_one_per_element_or_field():
    body = {"steps": [0, 1], "value": [[0.5, "NaN"], [1.0, 2.0]], "grad_norm": {"mean": [0.25, 0.125], "max": [1, 2]}}
    assert bodies.series_csv(body) == (
        "step,value[0],value[1],grad_norm.mean,grad_norm.max\n"
        "0,0.5,1.0,0.25,1\n"
        "1,NaN,2.0,0.125,2\n"
    )


def test_multirun_bodies_name_what_was_asked_and_the_runs_skipped_sorted():
    reasons = {"z/train": "OSError: gone", "b/train": "ValueError: strings"}
    body = bodies.series_multirun_body(LOG_VAR, {"a/train": {}}, reasons)
    assert body == {"variable": LOG_VAR, "runs": {"a/train": {}},
                    "skipped": [{"run": "b/train", "reason": "ValueError: strings"},
                                {"run": "z/train", "reason": "OSError: gone"}]}
    assert list(bodies.weights_multirun_body(1, {}, {})) == ["place", "runs", "skipped"]
    assert bodies.weights_multirun_body(HIDDEN, {}, {})["layer"] == HIDDEN


def test_floats_are_float32_in_their_shortest_digits_and_non_finite_ones_strings():
    mine = listing(series(LOG_VAR, metadata.VALUE, shape=(4,)))
    values = np.array([[0.1, np.nan, np.inf, -np.inf]])
    body = bodies.series_body("a/train", LOG_VAR, mine, {metadata.tag(LOG_VAR, metadata.VALUE): (STEPS[:1], values)})
    assert body["value"] == [[0.1], ["NaN"], ["Infinity"], ["-Infinity"]]


def test_floats_as_base64_are_the_float32_bytes_non_finite_ones_too():
    mine = listing(series(LOG_VAR, metadata.VALUE, shape=(2,)), series(LOG_VAR, metadata.GRAD_NORM))
    data = {
        metadata.tag(LOG_VAR, metadata.VALUE): (STEPS, np.array([[0.1, np.nan], [np.inf, -np.inf], [1.0, 2.0]])),
        metadata.tag(LOG_VAR, metadata.GRAD_NORM): (STEPS, np.array([[0.25, 0.5]] * 3)),
    }
    body = bodies.series_body("a/train", LOG_VAR, mine, data, floats=bodies.BASE64)
    plain = bodies.series_body("a/train", LOG_VAR, mine, data)
    float32s = lambda text: np.frombuffer(base64.b64decode(text), "<f4")  # noqa: E731
    np.testing.assert_array_equal(float32s(body["value"][0]), np.float32([0.1, np.inf, 1.0]))
    np.testing.assert_array_equal(float32s(body["value"][1]), np.float32([np.nan, -np.inf, 2.0]))
    assert float32s(body["grad_norm"]["max"]).tolist() == [0.5] * 3
    assert {k: v for k, v in body.items() if k not in ("value", "grad_norm")} == {
        k: v for k, v in plain.items() if k not in ("value", "grad_norm")
    }, "the rest as without it"
