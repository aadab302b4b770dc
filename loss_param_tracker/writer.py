"""The event file of a run: TensorFlow's summary writer where TensorFlow runs, TensorBoard's elsewhere.

Both write the same `Summary` protos (built by `tensorboard_plugin.loss_params.
summary`, from TensorBoard's own protobufs) as one event per step, which every
reader (TensorBoard on either loader, `load()`, the report) reads alike:

- With TensorFlow already imported (the TensorFlow backend, or a program
  that uses it), `tf.summary`'s writer, as `keras.callbacks.TensorBoard`
  uses: its file systems (`gs://`, ...) and file names.
- Otherwise (JAX or PyTorch without TensorFlow), TensorBoard's pure-Python
  `EventFileWriter`. TensorFlow is never imported just to write.
"""

import sys
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from tensorboard_plugin.loss_params import summary


def create(log_dir):
    """Returns a writer of a new event file in `log_dir`, which it creates if needed."""
    if sys.modules.get("tensorflow") is not None:
        return TensorFlowWriter(log_dir)
    return PythonWriter(log_dir)


class TensorFlowWriter:
    """Writes through `tf.summary.create_file_writer`: one op per step, however many values."""

    def __init__(self, log_dir):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(log_dir)

    def write(self, values, step):
        """Writes `Summary.Value`s as one event at `step`, and flushes it to the file."""
        with self._writer.as_default():
            summary.write(values, step)
        self._writer.flush()

    def close(self):
        self._writer.close()


class PythonWriter:
    """Writes through TensorBoard's `EventFileWriter`, without TensorFlow."""

    def __init__(self, log_dir):
        self._writer = EventFileWriter(log_dir)

    def write(self, values, step):
        """Writes `Summary.Value`s as one event at `step`, and flushes it to the file."""
        event = event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
        )
        self._writer.add_event(event)
        self._writer.flush()

    def close(self):
        self._writer.close()
