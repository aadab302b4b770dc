"""load(log_dir) on damaged, malformed and reshaped runs, and the value before training.

The event files are real: written by real fits, or by the project's own
summary writers (as the callback calls them) where a fit cannot produce the
case, then damaged byte by byte where the case is a damaged file.
"""

import os
import pathlib
import struct

import numpy as np
import pytest
import tensorflow as tf
from tensorboard import context
from tensorboard.backend.event_processing import (
    data_provider,
    event_accumulator,
    plugin_event_multiplexer,
)
from tensorboard.compat.proto import summary_pb2
from tensorboard.util import tensor_util

from loss_param_tracker import LossParamTracker, load, report
from loss_param_tracker.reader import (
    IncompleteRunWarning,
    NoSummariesError,
    SkippedRunWarning,
    NewerTrackerWarning,
    UnreadableVariableWarning,
)
from tensorboard_plugin.loss_params import metadata, series, summary
from tests.conftest import (
    DASHBOARD_RUNS,
    CenterLoss,
    GaussianNLL,
    InterruptAt,
    compile_fixed,
    damaged_copy,
    fit,
    make_model,
)

VAR = "loss/L/w"


# Writing runs as the callback does ----------------------------------------


def loss_values(path, value, granularity=metadata.EPOCH, grad=(0.1, 0.2)):
    """A loss variable's `Summary.Value`s of one step: value (or stats) and, per epoch, gradient norm."""
    value = np.asarray(value, np.float32)
    common = dict(shape=value.shape, dtype="float32", granularity=granularity)
    if value.size <= metadata.MAX_WHOLE_ELEMENTS:
        values = summary.values(metadata.ROLE_LOSS, metadata.VALUE, path, value, **common)
    else:
        values = summary.values(metadata.ROLE_LOSS, metadata.STATS, path, summary.stats(value), **common)
    if granularity == metadata.EPOCH and grad is not None:
        values += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, path, np.float32(grad), **common)
    return values


def diagnosis(statuses, columns=3):
    rows = np.array([[path, status, ""][:columns] for path, status in statuses.items()], dtype=object)
    return summary.values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS, rows)


def epochs(values, path=VAR, status="training"):
    """`[(epoch, Summary.Values)]`: one variable with a value per epoch, and its diagnosis."""
    return [(e, loss_values(path, v) + diagnosis({path: status})) for e, v in enumerate(values)]


def write_run(root, run, steps):
    """Writes `[(step, [Summary.Value])]` to the event file of `root/run`, one write per step."""
    with tf.summary.create_file_writer(str(pathlib.Path(root) / run)).as_default():
        for step, values in steps:
            assert summary.write(values, step)
    return pathlib.Path(root) / run


def raw_value(tag, role, kind, path, tensor, shape=(), field=""):
    """A `Summary.Value` with metadata of any role and kind, and any tensor."""
    return summary_pb2.Summary.Value(
        tag=tag,
        metadata=metadata.create_summary_metadata(role, kind, path, shape, "float32", field=field),
        tensor=tensor_util.make_tensor_proto(tensor),
    )


def load_partial(log_dir):
    """`load`, which must keep every run and warn once per variable it left out, naming it."""
    with pytest.warns(UnreadableVariableWarning) as record:
        runs = load(log_dir)
    named = sorted(str(w.message).split("'")[3] for w in record if w.category is UnreadableVariableWarning)
    assert named == sorted(p for run in runs.values() for p in run.unreadable)
    assert not runs.skipped, runs.skipped
    return runs


def load_skipping(log_dir):
    """`load`, which must warn once per skipped run, naming it."""
    with pytest.warns(SkippedRunWarning) as record:
        runs = load(log_dir)
    named = [str(w.message).split("'")[1] for w in record if w.category is SkippedRunWarning]
    assert sorted(named) == sorted(runs.skipped)
    return runs


def record_ends(path):
    """Byte offsets where the event file's records end."""
    data, offset, ends = pathlib.Path(path).read_bytes(), 0, []
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        offset += 8 + 4 + length + 4
        ends.append(offset)
    return ends


def event_file(run_dir):
    (name,) = [f for f in os.listdir(run_dir) if f.startswith("events")]
    return pathlib.Path(run_dir) / name


# Damaged event files ------------------------------------------------------


def test_a_record_whose_length_is_damaged_is_damage_not_a_cut(tmp_path):
    write_run(tmp_path, "run", epochs([1.0, 2.0, 3.0]))
    (event,) = (tmp_path / "run").iterdir()
    data = bytearray(event.read_bytes())
    data[record_ends(event)[1] + 7] ^= 0x80  # the high byte of the third record's length: far past the end
    event.write_bytes(bytes(data))
    runs = load_skipping(tmp_path)
    assert "damaged record" in runs.skipped["run"] and not runs.incomplete


def test_a_damaged_event_file_skips_its_run_and_names_it(tmp_path, dashboard_logdir):
    log_dir = damaged_copy(pathlib.Path(dashboard_logdir), tmp_path / "logs")
    runs = load_skipping(log_dir)
    assert set(runs) == set(DASHBOARD_RUNS) | {"truncated/train"}
    assert set(runs.skipped) == {"corrupt/train"}
    assert "damaged record" in runs.skipped["corrupt/train"]
    assert "ends inside a record" in runs.incomplete["truncated/train"]
    for name, (count, statuses) in DASHBOARD_RUNS.items():  # the others, whole
        for path, status in statuses.items():
            variable = runs[name].variables[path]
            assert variable.steps.tolist() == list(range(count)) and variable.last_status == status


@pytest.mark.parametrize("cut", ["inside_a_record", "inside_a_header"])
def test_an_event_file_cut_short_is_read_up_to_the_cut_and_named(tmp_path, cut):
    source = event_file(write_run(tmp_path / "source", "train", epochs([1.0, 2.0, 3.0])))
    data = source.read_bytes()
    ends = record_ends(source)
    # A header cut after 5 of its 8 bytes: TensorFlow's record reader takes that for the file's end.
    damaged = data[: ends[-1] - 7] if cut == "inside_a_record" else data + data[ends[-2] : ends[-2] + 5]
    target = tmp_path / "logs" / "train"
    target.mkdir(parents=True)
    (target / source.name).write_bytes(damaged)
    with pytest.warns(IncompleteRunWarning, match="'train' is incomplete"):
        runs = load(tmp_path / "logs")
    assert not runs.skipped and "ends inside a record" in runs.incomplete["train"]
    assert f"of {len(damaged)}" in runs.incomplete["train"]
    steps = runs["train"].variables[VAR].steps.tolist()  # the epochs whose records are whole
    assert steps == [0, 1, 2] if cut == "inside_a_header" else steps in ([0, 1], [0, 1, 2])


def test_a_file_ending_on_a_record_boundary_reads_what_it_holds(tmp_path):
    source = event_file(write_run(tmp_path / "source", "train", epochs([1.0, 2.0, 3.0])))
    target = tmp_path / "logs" / "train"
    target.mkdir(parents=True)
    (target / source.name).write_bytes(source.read_bytes()[: record_ends(source)[-2]])
    runs = load(tmp_path / "logs")
    assert runs.skipped == {} and runs["train"].variables[VAR].value.tolist() == [1.0, 2.0]


def test_an_unreadable_event_file_and_an_undecodable_record_are_named(tmp_path):
    write_run(tmp_path, "good", epochs([1.0, 2.0]))
    (tmp_path / "dangling").mkdir()
    (tmp_path / "dangling" / "events.out.tfevents.1.host").symlink_to(tmp_path / "nowhere")
    (tmp_path / "garbage").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "garbage" / "events.out.tfevents.2.host")) as writer:
        writer.write(b"\xff\xff\xff\xff")  # checksums fine, not an Event
    runs = load_skipping(tmp_path)
    assert list(runs) == ["good"]
    assert runs.skipped["dangling"].startswith("event file events.out.tfevents.1.host cannot be read")
    assert runs.skipped["garbage"].startswith("unexpected error while reading it: DecodeError")


def test_a_run_with_no_finished_epoch_is_said_so_not_missing(tmp_path):
    """It holds the starting values the tracker wrote (its fit ended, or is still, in its first
    epoch): alone, it was said to hold no summaries at all. Beside others it is left out, not
    skipped: a run still in its first epoch is not damaged."""
    with pytest.raises(KeyboardInterrupt):
        fit(make_model(), GaussianNLL(), str(tmp_path / "cut"), epochs=2, callbacks=[InterruptAt(0)])
    with pytest.raises(NoSummariesError, match=r"No epoch has finished.*\(train\) hold the values"):
        load(tmp_path / "cut")
    assert report.main(["report", str(tmp_path / "cut")]) == 2
    fit(make_model(), GaussianNLL(), str(tmp_path / "whole"), epochs=1)
    runs = load(tmp_path)
    assert list(runs) == ["whole/train"] and runs.skipped == {}


def test_an_epoch_read_before_its_diagnosis_leaves_the_latest_status_standing(tmp_path):
    """A run still training writes an epoch's diagnosis at the next one's start: read in between
    (here, a fit stopped there), its status was '' and the report said 'unknown' and exited 0."""
    with pytest.raises(KeyboardInterrupt):  # before the tracker's epoch start writes epoch 1's diagnosis
        fit(make_model(), GaussianNLL(), str(tmp_path), epochs=3, callbacks=[InterruptAt(2)])
    variable = load(tmp_path)["train"].variables["loss/GaussianNLL/log_var"]
    assert variable.status.tolist() == ["not_updated", ""]
    assert (variable.last_status, variable.last_cause) == ("not_updated", "not_in_optimizer")
    assert report.main(["report", str(tmp_path)]) == 1


def test_a_log_dir_whose_every_run_is_skipped_is_not_empty(tmp_path, dashboard_logdir):
    copy = damaged_copy(pathlib.Path(dashboard_logdir), tmp_path / "copy")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    for name in ("truncated", "corrupt"):
        (copy / name).rename(log_dir / name)
    runs = load_skipping(log_dir)  # no NoSummariesError: there was something, unreadable
    assert list(runs) == ["truncated/train"], "read up to its cut"
    assert set(runs.skipped) == {"corrupt/train"}
    (log_dir / "truncated").rename(tmp_path / "elsewhere")
    runs = load_skipping(log_dir)
    assert dict(runs) == {} and set(runs.skipped) == {"corrupt/train"}


# Malformed summaries ------------------------------------------------------


def malformed_runs():
    """`{case: (steps, words the reason must hold)}`: runs that break the format."""
    ok = diagnosis({VAR: "training"})

    def two_epochs(*extra, values=None, diagnosed=ok):
        values = loss_values(VAR, 1.0) if values is None else values
        return [(e, values + list(extra) + diagnosed) for e in range(2)]

    def diagnosis_of_shape(rows):
        rows = np.array(rows, dtype=object)
        return summary.values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS, rows)

    vector = raw_value(
        f"{VAR}/value/0", metadata.ROLE_LOSS, metadata.VALUE, VAR, np.float32([1, 2]), (2,), "0"
    )
    return {
        "diagnosis_1d": (
            two_epochs(diagnosed=diagnosis_of_shape([VAR, "training", ""])),
            ["diagnosis at epoch 0", "(3,)"],
        ),
        "diagnosis_3d": (
            two_epochs(diagnosed=diagnosis_of_shape([[[VAR, "training", ""]]])),
            ["diagnosis at epoch 0", "(1, 1, 3)"],
        ),
        "diagnosis_not_json": (
            two_epochs(diagnosed=diagnosis_of_shape(f'[["{VAR}", "training"')),
            ["diagnosis at epoch 0", "is not JSON"],
        ),
        "diagnosis_rows_of_two": (
            two_epochs(diagnosed=diagnosis_of_shape(f'[["{VAR}", "training"]]')),
            ["diagnosis at epoch 0", "not a list of [path, status, cause] rows"],
        ),
        "vector_in_a_scalar": (two_epochs(values=[vector]), ["cannot be read"]),
    }


@pytest.mark.parametrize("case", sorted(malformed_runs()))
def test_a_run_that_breaks_the_format_is_skipped_with_the_reason(tmp_path, case):
    steps, words = malformed_runs()[case]
    write_run(tmp_path, "bad", steps)
    write_run(tmp_path, "good", epochs([1.0, 2.0]))
    runs = load_skipping(tmp_path)
    assert list(runs) == ["good"] and runs["good"].variables[VAR].value.tolist() == [1.0, 2.0]
    assert list(runs.skipped) == ["bad"]
    for word in words:
        assert word in runs.skipped["bad"], (word, runs.skipped["bad"])


def variable_faults():
    """`{case: (steps, words the reason must hold)}`: runs whose one variable breaks the format."""
    ok = diagnosis({VAR: "training", OTHER: "training"})
    five_of_three = [
        raw_value(f"{VAR}/value/{i}", metadata.ROLE_LOSS, metadata.VALUE, VAR, np.float32(i), (3,), str(i))
        for i in range(5)
    ]
    stats = summary.values(metadata.ROLE_LOSS, metadata.STATS, VAR, np.zeros(5, np.float32), shape=(100,))
    other = loss_values(OTHER, 2.0)
    return {
        "metadata_disagrees": (
            [(e, five_of_three + other + ok) for e in range(2)],
            [VAR, "shape (3,) in its metadata", "5 elements"],
        ),
        "stats_lack_a_field": (
            [(0, stats + other + ok), (1, stats[:4] + other + ok)],
            [f"{VAR}/stats", "lacks l2", "at epoch 1"],
        ),
    }


OTHER = "loss/Other/scale"


@pytest.mark.parametrize("case", sorted(variable_faults()))
def test_a_variable_that_breaks_the_format_costs_only_itself(tmp_path, case):
    steps, words = variable_faults()[case]
    write_run(tmp_path, "run", steps)
    run = load_partial(tmp_path)["run"]
    assert list(run.variables) == [OTHER] and run.variables[OTHER].value.tolist() == [2.0, 2.0]
    assert run.variables[OTHER].status.tolist() == ["training"] * 2
    for word in words:
        assert word in run.unreadable[VAR], (word, run.unreadable)


def newer_series():
    """`{case: (a Summary.Value only a newer tracker writes, what the warning names)}`."""
    unknown_granularity = summary_pb2.Summary.Value(
        tag=f"{VAR}/later_value",
        metadata=metadata.create_summary_metadata(metadata.ROLE_LOSS, metadata.VALUE, VAR, granularity=5),
        tensor=tensor_util.make_tensor_proto(np.float32(1)),
    )
    newer_version = summary_pb2.Summary.Value(
        tag=f"{VAR}/v9",
        metadata=metadata.create_summary_metadata(metadata.ROLE_LOSS, metadata.VALUE, VAR),
        tensor=tensor_util.make_tensor_proto(np.float32(1)),
    )
    content = metadata.PluginData.FromString(newer_version.metadata.plugin_data.content)
    content.version = metadata.PROTO_VERSION + 1
    newer_version.metadata.plugin_data.content = content.SerializeToString()
    return {
        "kind": (raw_value(f"{VAR}/mystery", metadata.ROLE_LOSS, 42, VAR, np.float32(1)), "unknown kind, 42"),
        "role": (raw_value("other/w/value", 9, metadata.VALUE, "other/w", np.float32(1)), "unknown role, 9"),
        "granularity": (unknown_granularity, "unknown granularity, 5"),
        "version": (newer_version, f"version {metadata.PROTO_VERSION + 1} of the format"),
    }


@pytest.mark.parametrize("case", sorted(newer_series()))
def test_a_series_of_a_newer_tracker_is_left_out_and_its_run_read(tmp_path, case):
    value, named = newer_series()[case]
    write_run(tmp_path, "run", [(e, loss_values(VAR, float(e)) + [value] + diagnosis({VAR: "training"})) for e in range(2)])
    with pytest.warns(NewerTrackerWarning) as record:
        runs = load(tmp_path)
    said = [str(w.message) for w in record if w.category is NewerTrackerWarning]
    assert len(said) == 1 and named in said[0] and "newer" in said[0], said
    assert not runs.skipped and list(runs["run"].variables) == [VAR]
    assert runs["run"].variables[VAR].value.tolist() == [0.0, 1.0]


def test_a_display_of_a_newer_tracker_shows_the_value_as_stored(tmp_path):
    values = [v.proto() for v in loss_values(VAR, 2.0)]
    for v in values:
        content = metadata.PluginData.FromString(v.metadata.plugin_data.content)
        content.display.fn = "arcsinh"  # a function this version cannot apply
        v.metadata.plugin_data.content = content.SerializeToString()
    write_run(tmp_path, "run", [(e, values + diagnosis({VAR: "training"})) for e in range(2)])
    with pytest.warns(NewerTrackerWarning, match="shown as stored") as record:
        runs = load(tmp_path)
    assert len([w for w in record if w.category is NewerTrackerWarning]) == 1
    variable = runs["run"].variables[VAR]
    assert variable.display is None and variable.shown.tolist() == [2.0, 2.0]


def test_statuses_and_causes_of_a_newer_tracker_are_kept_and_warned_once(tmp_path):
    rows = np.array([[VAR, "exploded", "solar_flare"]], dtype=object)
    newer = summary.values(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS, rows)
    write_run(tmp_path, "run", [(e, loss_values(VAR, 1.0) + newer) for e in range(3)])
    with pytest.warns(NewerTrackerWarning) as record:
        runs = load(tmp_path)
    said = sorted(str(w.message) for w in record if w.category is NewerTrackerWarning)
    assert len(said) == 2 and "status 'exploded'" in said[1] and "cause 'solar_flare'" in said[0], said
    variable = runs["run"].variables[VAR]
    assert variable.status.tolist() == ["exploded"] * 3 and variable.cause.tolist() == ["solar_flare"] * 3
    assert report.main(["report", str(tmp_path)]) == 0, "an unknown status is not a finding"


def provider_of(log_dir):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    return data_provider.MultiplexerDataProvider(multiplexer, str(log_dir))


def test_the_plugin_listing_logs_and_leaves_out_an_unknown_kind_and_sees_no_batch_series(tmp_path, caplog):
    mystery, _ = newer_series()["kind"]
    steps = [(e, loss_values(VAR, 1.0) + [mystery] + diagnosis({VAR: "training"})) for e in range(2)]
    write_run(tmp_path, "run", [(0, loss_values(VAR, 2.0, metadata.BATCH))] + steps)
    provider, ctx = provider_of(tmp_path), context.RequestContext()
    listing = series.list_series(provider, ctx, "")
    assert sorted(listing["run"]) == [f"{VAR}/grad_norm", f"{VAR}/value", "run/diagnosis"]
    assert any("unknown kind, 42" in r.getMessage() for r in caplog.records)
    invalid, newer = {}, {}
    with_batch = series.list_series(provider, ctx, "", batch=True, invalid=invalid, newer=newer)
    assert with_batch["run"][f"{VAR}/batch_value"].granularity == metadata.BATCH
    assert not invalid and newer == {"run": {f"{VAR}/mystery": "an unknown kind, 42"}}


# A variable that changed shape -------------------------------------------


@pytest.mark.parametrize(
    "values, said",
    [
        ([np.arange(3)] * 3 + [np.arange(5)] * 3, "shape (3,) at epochs 0-2, shape (5,) at epochs 3-5"),
        ([np.arange(3)] * 3 + [np.arange(2)] * 3, "shape (3,) at epochs 0-2, 2 elements at epochs 3-5"),
        ([1.0] * 2 + [np.arange(3)] * 4, "shape () at epochs 0-1, shape (3,) at epochs 2-5"),
        (
            [np.arange(3)] * 3 + [np.arange(100)] * 2 + [np.arange(3)],
            "shape (3,) at epochs 0-2, 5, shape (100,) (logged as statistics) at epochs 3-4",
        ),
    ],
    ids=["3_to_5", "3_to_2", "scalar_to_3", "3_to_100_and_back"],
)
def test_a_variable_that_changed_shape_is_named_with_its_epochs(tmp_path, values, said):
    write_run(tmp_path, "reshaped", epochs(values))
    write_run(tmp_path, "good", epochs([1.0, 2.0]))
    runs = load_partial(tmp_path)
    assert list(runs) == ["good", "reshaped"], "the run stays readable"
    assert runs["reshaped"].variables == {}
    reason = runs["reshaped"].unreadable[VAR]
    assert reason.startswith(f"variable {VAR!r} changed shape during the run: {said};"), reason


def test_a_shape_change_before_training_is_named(tmp_path):
    before = [(0, loss_values(VAR, np.arange(5), metadata.BATCH))]
    write_run(tmp_path, "run", before + epochs([np.arange(3)] * 2))
    reason = load_partial(tmp_path)["run"].unreadable[VAR]
    assert "shape (5,) at batch step 0, shape (3,) at epochs 0-1" in reason


def test_series_of_a_variable_that_lack_an_epoch_stay_aligned(tmp_path):
    steps = epochs([1.0, 2.0, 3.0])
    steps[1] = (1, loss_values(VAR, 2.0, grad=None) + diagnosis({VAR: "training"}))  # no gradient norm
    write_run(tmp_path, "run", steps)
    variable = load(tmp_path)["run"].variables[VAR]
    assert variable.steps.tolist() == [0, 1, 2] and variable.value.tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(variable.grad_norm[:, 0], np.float32([0.1, np.nan, 0.1]))
    assert variable.status.tolist() == ["training"] * 3


# The value before training -------------------------------------------------


def test_initial_is_the_batch_write_at_the_smallest_step(tmp_path):
    before = [(0, loss_values(VAR, [5.0, 6.0], metadata.BATCH))]
    later = [(7, loss_values(VAR, [9.0, 9.0], metadata.BATCH))]  # a second fit's start
    write_run(tmp_path, "run", later + before + epochs([[1.0, 1.0], [2.0, 2.0]]))
    write_run(tmp_path, "old", epochs([[1.0, 1.0]]))  # written before there were initial values
    runs = load(tmp_path)
    assert runs["run"].variables[VAR].initial.tolist() == [5.0, 6.0]
    assert runs["run"].variables[VAR].value.tolist() == [[1.0, 1.0], [2.0, 2.0]]
    assert runs["old"].variables[VAR].initial is None


def batch_points(log_dir, tag):
    """`[(step, numpy value)]` of one tag, read straight from the event file."""
    accumulator = event_accumulator.EventAccumulator(
        os.path.join(log_dir, "train"), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    return [(e.step, tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]


def test_initial_of_a_fit_with_update_freq_batch(log_dir):
    loss, model = GaussianNLL(), make_model()
    compile_fixed(model, loss)
    fit(model, loss, log_dir, epochs=2, tracker=LossParamTracker(log_dir=log_dir, update_freq="batch"))
    points = batch_points(log_dir, "loss/GaussianNLL/log_var/batch_value")
    assert len(points) >= 8  # 4 batches an epoch
    variable = load(log_dir)["train"].variables["loss/GaussianNLL/log_var"]
    first_step, first_value = min(points, key=lambda point: point[0])
    assert variable.initial.shape == () and float(variable.initial) == float(first_value)
    assert variable.steps.tolist() == [0, 1] and variable.status.tolist() == ["training"] * 2


def test_initial_of_a_large_variable_is_its_stats_row(log_dir):
    loss, model = CenterLoss(), make_model()
    compile_fixed(model, loss)
    fit(model, loss, log_dir, epochs=1, tracker=LossParamTracker(log_dir=log_dir, update_freq="batch"))
    first_step = min(step for step, _ in batch_points(log_dir, "loss/CenterLoss/centers/batch_stats/l2"))
    expected = [
        dict(batch_points(log_dir, f"loss/CenterLoss/centers/batch_stats/{field}"))[first_step]
        for field in metadata.FIELDS[metadata.STATS]
    ]
    variable = load(log_dir)["train"].variables["loss/CenterLoss/centers"]
    assert variable.value is None and variable.stats.shape == (1, 5)
    np.testing.assert_array_equal(variable.initial, np.float64(expected))
