"""Reading from TensorBoard's Rust data server: the packed fast path gives what the provider's own call gives.

The same for the decoding of string tables (the diagnosis), on which `/diagnosis` and `load` spend most of their time.
"""

import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard import context
from tensorboard.data import grpc_provider, server_ingester
from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.util import grpc_util, tensor_util

from tensorboard_plugin.loss_params import metadata, series, summary


def write(run_dir, steps, values):
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        for step, value in zip(steps, values):
            out = summary.values(metadata.ROLE_LOSS, metadata.VALUE, "loss/L/w", np.float32(value), dtype="float32")
            out += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, "loss/L/w", np.float32([value, 2 * value]))
            out += summary.diagnosis(diagnosis_rows(step))
            summary.write(out, step)
        tf.summary.flush()


def diagnosis_rows(step):
    """A diagnosis whose layout changes (a variable that appears, rows that swap, one that goes) and whose
    status changes every ten steps: between, each step's table is the one before's."""
    rows = [("loss/L/w", ["training", "not_updated"][step // 10 % 2], "")]
    if step >= 2:
        rows.append(("loss/L/v", "no_gradient", "its gradient is None"))
    if step % 7 == 3:
        rows.reverse()
    if step >= 250:
        rows = rows[1:]
    return rows


class _Public:
    """The same provider without its gRPC stub: `series.read` goes the provider's own way."""

    def __init__(self, provider):
        self._provider = provider

    def __getattr__(self, name):
        return getattr(self._provider, name)


@pytest.fixture
def data_server(tmp_path):
    # A step written twice, as after a resume from a checkpoint, and a NaN.
    write(tmp_path / "a", range(300), np.sin(np.arange(300)))
    write(tmp_path / "b", [0, 1, 2, 1, 2, 3], [0.0, 1.0, np.nan, 10.0, 20.0, 30.0])
    ingester = server_ingester.SubprocessServerDataIngester(
        server_ingester.get_server_binary(),
        str(tmp_path),
        reload_interval=1,
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin={metadata.PLUGIN_NAME: 0},
    )
    ingester.start()
    provider = ingester.data_provider
    assert isinstance(provider, grpc_provider.GrpcDataProvider)
    ctx = context.RequestContext()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listing = series.list_series(provider, ctx, "")
        if {r: max(s.max_step for s in t.values()) for r, t in listing.items()} == {"a": 299, "b": 3}:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the data server did not load both runs: {listing}")
    yield provider, ctx, listing
    ingester._stdin_handle.close()  # the server was started with --die-after-stdin


@pytest.mark.parametrize("downsample", [series.ALL_POINTS, 50])
def test_the_packed_read_is_the_providers_read(data_server, downsample):
    provider, ctx, listing = data_server
    wanted = {run: list(tags.values()) for run, tags in listing.items()}
    fast = series.read(provider, ctx, "", wanted, downsample)
    slow = series.read(_Public(provider), ctx, "", wanted, downsample)
    assert series._grpc_stub(provider) is not None and series._grpc_stub(_Public(provider)) is None
    assert fast.keys() == slow.keys() == {"a", "b"}
    for run in fast:
        assert fast[run].keys() == slow[run].keys()
        for tag, (steps, values) in fast[run].items():
            np.testing.assert_array_equal(steps, slow[run][tag][0], err_msg=f"{run} {tag}")
            if tag == metadata.DIAGNOSIS_TAG:  # a table per step, of the step's variables
                assert len(values) == len(slow[run][tag][1])
                for mine, theirs in zip(values, slow[run][tag][1]):
                    assert mine.dtype == theirs.dtype == object and mine.tolist() == theirs.tolist()
            else:
                np.testing.assert_array_equal(values, slow[run][tag][1], err_msg=f"{run} {tag}")
    steps, values = fast["b"]["loss/L/w/value"]
    assert steps.tolist() == [0, 1, 2, 3], "a step written twice is one step"
    assert values[1:, 0].tolist() == [10.0, 20.0, 30.0], "its last write wins"
    if downsample == series.ALL_POINTS:
        assert len(fast["a"]["loss/L/w/value"][0]) == 300
        steps, tables = fast["a"][metadata.DIAGNOSIS_TAG]
        read = [series.diagnosis_table(t).tolist() for t in tables]
        assert read == [[list(row) for row in diagnosis_rows(s)] for s in steps]


def string_tensor(shape, strings):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]),
        string_val=strings,
    )


@pytest.mark.parametrize(
    "proto",
    [
        string_tensor([2, 3], [b"a", b"training", b"", b"b", b"frozen", b"why"]),
        string_tensor([], [b"one"]),
        string_tensor([0, 3], []),
        string_tensor([2, 2], [b"all four"]),  # one value for every element: make_ndarray repeats it
        tensor_util.make_tensor_proto(np.float32([[1.5, 2.0]])),
        tensor_util.make_tensor_proto(np.int64(7)),
    ],
    ids=["table", "scalar", "empty", "repeated", "float32", "int64"],
)
def test_a_tensor_is_decoded_as_make_ndarray_decodes_it(proto):
    mine, theirs = series._tensor(proto), tensor_util.make_ndarray(proto)
    assert mine.dtype == theirs.dtype and mine.shape == theirs.shape and mine.tolist() == theirs.tolist()


def test_a_tensor_whose_values_do_not_fill_its_shape_fails_as_make_ndarray_does():
    proto = string_tensor([2, 3], [b"a", b"b"])
    with pytest.raises(ValueError):
        tensor_util.make_ndarray(proto)
    with pytest.raises(ValueError):
        series._tensor(proto)


def test_a_table_equal_to_the_one_before_is_the_same_read_only_array():
    steps = [2, 2, 2, 3, 4, 4, 239, 251, 251]  # 2 and 4 have equal tables, not next to each other
    protos = [summary.diagnosis(diagnosis_rows(step))[0].tensor for step in steps]
    tables = series._tensors(protos)
    assert tables[0] is tables[1] is tables[2] and tables[4] is tables[5] and tables[7] is tables[8]
    assert len({id(t) for t in tables}) == 5
    assert not any(t.flags.writeable for t in tables)
    for table, proto in zip(tables, protos):
        assert table.tolist() == tensor_util.make_ndarray(proto).tolist()
    decoded = [series.diagnosis_table(t) for t in tables]
    assert decoded[0] is decoded[1] is decoded[2] and decoded[3] is not decoded[4]
    assert decoded[4] is series.diagnosis_table(tensor_util.make_ndarray(protos[4])), "the same text, one array"
    assert not any(t.flags.writeable for t in decoded)
    assert series.status_changes(tables) == series.status_changes([tensor_util.make_ndarray(p) for p in protos])


def test_the_diagnosis_by_variable_is_the_diagnosis_by_step_turned_around():
    steps = range(40)
    tables = [np.array([[c.encode() for c in row] for row in diagnosis_rows(s)], dtype=object) for s in steps]
    tables[5] = np.array([[b"loss/L/w", b"training"], [b"loss/L/w", b"frozen"]], dtype=object)  # a path twice, no cause
    by_step = series.statuses(tables)
    changes = series.status_changes(tables)
    assert list(changes) == ["loss/L/w", "loss/L/v"], "in the order first seen"
    by_variable = {}
    for path, points in changes.items():
        assert all(a[1] != b[1] and a[0] < b[0] for a, b in zip(points, points[1:])), "only where it changes"
        column = [""] * len(tables)
        for (start, status), (end, _) in zip(points, points[1:] + [(len(tables), "")]):
            column[start:end] = [status] * (end - start)
        by_variable[path] = column
    assert by_variable == {path: [one.get(path, "") for one in by_step] for path in by_variable}
    assert changes["loss/L/w"][:4] == [(0, "training"), (5, "frozen"), (6, "training"), (10, "not_updated")], (
        "a path twice: its last row")
    assert changes["loss/L/v"][:3] == [(2, "no_gradient"), (5, ""), (6, "no_gradient")]
