"""Reading from TensorBoard's Rust data server: the packed fast path gives what the provider's own call gives."""

import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard import context
from tensorboard.data import grpc_provider, server_ingester
from tensorboard.util import grpc_util

from tensorboard_plugin.loss_params import metadata, series, summary


def write(run_dir, steps, values):
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        for step, value in zip(steps, values):
            out = summary.values(metadata.ROLE_LOSS, metadata.VALUE, "loss/L/w", np.float32(value), dtype="float32")
            out += summary.values(metadata.ROLE_LOSS, metadata.GRAD_NORM, "loss/L/w", np.float32([value, 2 * value]))
            summary.write(out, step)
        tf.summary.flush()


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
            np.testing.assert_array_equal(values, slow[run][tag][1], err_msg=f"{run} {tag}")
    steps, values = fast["b"]["loss/L/w/value"]
    assert steps.tolist() == [0, 1, 2, 3], "a step written twice is one step"
    assert values[1:, 0].tolist() == [10.0, 20.0, 30.0], "its last write wins"
    if downsample == series.ALL_POINTS:
        assert len(fast["a"]["loss/L/w/value"][0]) == 300
