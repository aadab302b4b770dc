"""One summary function per kind, the reductions they log, the norms, and the run's writer: no TensorFlow."""

import json
import math
import os
import struct
import sys

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2
from tensorboard.util import tensor_util

from loss_param_tracker import writer
from tensorboard_plugin.loss_params import metadata, norms, series, summary
from tensorboard_plugin.loss_params.display import Display

pytestmark = pytest.mark.unit


def kinds(values):
    return [metadata.parse_plugin_metadata(v.metadata.plugin_data.content).kind for v in values]


def test_a_small_loss_variable_is_logged_whole_with_its_gradient_norm():
    values = summary.loss_variable(
        "loss/L/w", np.float32([1, 2]), shape=(2,), dtype="float32", grad=(0.5, 1.0), display=Display("exp")
    )
    assert [v.tag for v in values] == ["loss/L/w/value/0", "loss/L/w/value/1", "loss/L/w/grad_norm/mean",
                                       "loss/L/w/grad_norm/max"]
    assert [tensor_util.make_ndarray(v.tensor).item() for v in values] == [1.0, 2.0, 0.5, 1.0]
    first = metadata.parse_plugin_metadata(values[0].metadata.plugin_data.content)
    assert first.display.fn == "exp" and list(first.shape) == [2]


@pytest.mark.parametrize("shape", [(100,), (-1, 2)])
def test_a_large_or_growing_loss_variable_is_logged_as_statistics_and_a_histogram(shape):
    value = np.arange(200.0 if -1 in shape else 100.0)
    values = summary.loss_variable("loss/L/bank", value, shape=shape, dtype="float32")
    assert set(kinds(values)) == {metadata.STATS, metadata.HISTOGRAM}
    batch = summary.loss_variable("loss/L/bank", value, shape=shape, dtype="float32", granularity=metadata.BATCH)
    assert set(kinds(batch)) == {metadata.STATS}, "a batch write holds no histogram"


def test_the_run_level_kinds_and_a_wrong_size_are_refused_with_what_was_received():
    rows = summary.diagnosis([("loss/L/w", "training", ""), ("loss/L/v", "not_updated", "not_in_optimizer")])
    (one,) = rows
    assert one.tag == metadata.DIAGNOSIS_TAG and tensor_util.make_ndarray(one.tensor).shape == ()
    with pytest.raises(ValueError, match=r"\(path, status, cause\); received \['loss/L/w', 'training'\]"):
        summary.diagnosis([("loss/L/w", "training")])
    assert [v.tag for v in summary.steps(10, 1)] == ["run/steps/captured", "run/steps/skipped"]
    with pytest.raises(ValueError, match=r"needs 4 numbers a weight, 1 weights; received numbers of shape \(1, 3\)"):
        summary.weight_norms("model/d/kernel", [1, 2, 3])


def test_the_diagnosis_is_one_string_whose_table_reads_back_cell_for_cell():
    rows = [("loss/L/w", "training", ""), ("loss/L/β", "not_updated", "not_in_optimizer"),
            ('loss/"q"\\t\n\x00/w', "x", "\u2028")]
    for table in (rows, []):
        (value,) = summary.diagnosis(table)
        (text,) = value.tensor.string_val
        assert (value.tensor.dtype, len(value.tensor.tensor_shape.dim)) == (types_pb2.DT_STRING, 0)
        read = series.diagnosis_table(tensor_util.make_ndarray(value.tensor))
        assert read.shape == (len(table), 3) and read.tolist() == [list(r) for r in table]
        assert json.loads(text) == [list(r) for r in table]


def test_many_weights_norms_at_once_are_each_weights_norms():
    weights = [("model/d/kernel", (8, 4), "float32", 0), ("model/d/bias", (4,), "float16", 0), ("model/e/w", (), "float32", None)]
    rows = np.random.default_rng(0).normal(size=(3, 4))
    one_by_one = [v for (path, shape, dtype, place), row in zip(weights, rows)
                  for v in summary.weight_norms(path, row, shape=shape, dtype=dtype, layer_index=place)]
    assert summary.many_weight_norms(weights, rows) == one_by_one and len(one_by_one) == 12
    assert summary.many_weight_norms([], []) == []


def test_stats_and_histogram_leave_out_non_finite_elements_from_counts():
    value = np.array([1.0, 2.0, 3.0, np.nan])
    assert math.isnan(summary.stats(value)[0])
    buckets = summary.histogram(value, bins=3)
    assert buckets.shape == (3, 3) and buckets[:, 2].sum() == 3
    assert summary.histogram(np.array([np.inf])).tolist() == [[0, 0, 0]]


def test_root_sum_square_leaves_out_nan_and_is_nan_only_when_all_are():
    assert norms.root_sum_square([3.0, 4.0, math.nan]) == 5.0
    assert math.isnan(norms.root_sum_square([math.nan]))
    np.testing.assert_array_equal(norms.root_sum_square([[3.0, math.nan], [4.0, math.nan]], axis=0), [5.0, math.nan])
    assert norms.l2_norm(np.float32([3, 4])) == 5.0


def test_weights_combine_into_one_vector_with_the_ratio_over_the_start_norms():
    rows = [[3.0, 1.0, 2.0, 0.1], [4.0, math.nan, 2.0, math.nan]]  # the second: a bias that started at 0
    combined = norms.combine_weight_norms(rows, start_norms=[3.0, 0.0])
    np.testing.assert_allclose(combined, [5.0, 1.0, math.sqrt(8), 0.1])
    over_steps = norms.combine_weight_norms(np.array(rows)[:, None, :])
    assert over_steps.shape == (1, 4)


def test_the_run_writer_creates_its_directory_lazily_and_again_when_removed(tmp_path, caplog):
    tensorflow_before = "tensorflow" in sys.modules  # imported by the rest of the suite, not `make unit`
    run = writer.RunWriter(str(tmp_path / "run"))
    assert not (tmp_path / "run").exists(), "nothing is created before the first write"
    run.write(summary.steps(1, 0), step=0)
    os.rename(tmp_path / "run" / "train", tmp_path / "elsewhere")
    run.write(summary.steps(2, 0), step=1)
    run.close()
    assert "was removed during training" in caplog.text
    (event_file,) = (tmp_path / "run" / "train").iterdir()
    assert [e.step for e in events(event_file) if e.HasField("summary")] == [1]
    assert ("tensorflow" in sys.modules) == tensorflow_before, "a local event file is written without TensorFlow"


def test_a_tag_metadata_is_written_with_its_first_value_in_each_event_file_only(tmp_path):
    run = writer.RunWriter(str(tmp_path))
    for step in range(3):
        run.write(summary.steps(step, 0) + (summary.diagnosis([("loss/L/w", "training", "")]) if step else []), step)
    run.close()
    run.write(summary.steps(3, 0), step=3)  # a later fit: a new event file
    run.close()
    first, second = sorted((tmp_path / "train").iterdir())
    with_metadata = [
        [v.tag for v in e.summary.value if v.HasField("metadata")] for e in events(first) if e.HasField("summary")
    ]
    assert with_metadata == [["run/steps/captured", "run/steps/skipped"], ["run/diagnosis"], []]
    (later,) = [e for e in events(second) if e.HasField("summary")]
    assert all(v.HasField("metadata") for v in later.summary.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_scalar_whose_metadata_is_written_is_serialized_as_protobuf_serializes_it(dtype):
    numbers = np.array([0.0, -0.0, 1.5, -3e-39, np.nan, -np.inf, np.finfo(dtype).max, 7.0], dtype)
    step = summary.weight_norms("model/d/kernel", numbers[:4], layer_index=3) + summary.values(
        metadata.ROLE_LOSS, metadata.VALUE, "loss/L/w", numbers[4:], shape=(4,), dtype=np.dtype(dtype).name
    )
    written = {v.tag for v in step}
    expected = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=v.tag, tensor=v.tensor) for v in step]
    ).SerializeToString()
    assert summary.serialize(step, written) == expected
    with_metadata = summary_pb2.Summary.FromString(summary.serialize(step))
    assert [v.HasField("metadata") for v in with_metadata.value] == [True] * len(step)
    read = [tensor_util.make_ndarray(v.tensor).item() for v in with_metadata.value]
    np.testing.assert_array_equal(np.array(read, dtype), np.concatenate([numbers[:4].astype(np.float32), numbers[4:]]))


def test_the_python_writer_checksums_its_records_as_tensorboard_does():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    for data in (b"", b"a", struct.pack("<Q", 1 << 40), bytes(range(256)) * 40):
        assert writer._masked_crc(data) == struct.pack("<I", masked_crc32c(data))


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 1 << 14, 1 << 21])
def test_the_python_writer_frames_an_event_as_protobuf_does(tmp_path, size):
    # A summary whose length takes 1 to 4 bytes to write.
    serialized = summary.serialize(summary.diagnosis([("w" * size, "training", "")])) if size else b""
    local = writer.PythonWriter(str(tmp_path))
    local.write(serialized, step=7)
    local.close()
    (path,) = tmp_path.iterdir()
    _, event = events(path)
    expected = event_pb2.Event(wall_time=event.wall_time, step=7, summary=summary_pb2.Summary.FromString(serialized))
    assert event == expected and event.HasField("summary")


def events(path):
    """The events of a file, framed as TFRecords (length, its CRC, data, its CRC): no TensorFlow to read."""
    data, at, found = path.read_bytes(), 0, []
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        found.append(event_pb2.Event.FromString(data[at + 12 : at + 12 + length]))
        at += 12 + length + 4
    return found


def test_a_log_dir_that_cannot_be_written_is_refused_with_its_name(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        writer.RunWriter(str(tmp_path / "file" / "run"))


def test_a_block_of_weight_norms_is_serialized_as_its_scalars_are():
    weights = [("model/d/kernel", (8, 4), "float32", 0), ("model/d/bias", (4,), "float32", 0), ("model/e/w", (), "float32", None)]
    rows = np.array([[1.5, np.nan, -0.0, 3e-39], [np.inf, 2.0, 0.0, np.finfo(np.float32).max], [7.0, 0.5, 0.25, -1.0]])
    block = summary.weight_norms_block(weights, rows)
    scalars = block.scalars()
    assert scalars == summary.many_weight_norms(weights, rows) and len(scalars) == 12
    first, later = set(), {s.tag for s in scalars}
    assert summary.serialize([block], first) == summary.serialize(scalars), "the first write holds each tag's metadata"
    assert first == later
    for step_rows in (rows, rows[::-1].copy()):  # the template, filled twice: nothing of the first stays
        block = summary.weight_norms_block(weights, step_rows)
        assert summary.serialize([block], later) == summary.serialize(block.scalars(), later)
    partly = later - {scalars[4].tag}  # the bias's first field: its metadata not yet written
    assert len(partly) == len(later) - 1
    assert summary.serialize([block], set(partly)) == summary.serialize(block.scalars(), set(partly))
    empty = summary.weight_norms_block([], [])  # a model without weights of its own
    assert empty.scalars() == [] and summary.serialize([empty], set()) == summary.serialize([empty]) == b""
