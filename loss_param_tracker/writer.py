"""The event files of a run: its directory, and a writer created when first needed.

`RunWriter(log_dir)` owns `log_dir/train` as `keras.callbacks.TensorBoard`
does: the directory is checked when the callback is made, the writer is
created at the first write, and a directory removed under a running fit is
made again. A local event file is written here; a remote one by TensorFlow's
writer where TensorFlow runs, TensorBoard's elsewhere. A tag's metadata is written with its first value in
each event file only, as TensorFlow's own v1 `FileWriter` does: every reader
(TensorBoard on either loader, `load()`) keeps a tag's metadata from its
first write, and a model of 1,000 weights writes 4,000 values an epoch,
whose metadata would be most of the file.

All write the same `Summary` protos (built by `tensorboard_plugin.loss_params.
summary`, from TensorBoard's own protobufs) as one event per step, which every
reader (TensorBoard on either loader, `load()`, the report) reads alike:

- A local file (`PythonWriter`): TFRecords written here, on every backend.
  TensorFlow is never imported to write one, and where it runs its writer
  is not needed: it took 3.5 ms a write of 250 KB, this 1 ms.
- A remote one (`gs://`, ...): with TensorFlow already imported (the
  TensorFlow backend, or a program that uses it), `tf.summary`'s writer and
  its file systems, as `keras.callbacks.TensorBoard` uses; otherwise
  TensorBoard's `EventFileWriter` and its own.
"""

import itertools
import logging
import os
import socket
import struct
import sys
import time

import google_crc32c

from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from tensorboard_plugin.loss_params import metadata, summary

logger = logging.getLogger("loss_param_tracker")

# A TFRecord: its length (uint64), the length's masked CRC (uint32), data,
# the data's masked CRC (uint32). The reader checks files by the same framing.
RECORD_LENGTH = struct.Struct("<Q")
RECORD_FRAMING = RECORD_LENGTH.size + 4 + 4


class RunWriter:
    """The summaries of one run, under `log_dir/train`.

    Args:
        log_dir: The run's directory, as `LossParamTracker(log_dir=...)`.

    Raises:
        ValueError: When `log_dir` can clearly not be written (a file, not
            writable); the message names it.
    """

    def __init__(self, log_dir):
        check_writable(log_dir)
        self.log_dir = log_dir
        self.train_dir = os.path.join(log_dir, "train")
        self._writer = None
        self._written = set()  # the tags the open event file holds, with their metadata

    def make_dir(self):
        """Creates `log_dir/train` where missing.

        Raises:
            ValueError: When it cannot be created; the message says why.
        """
        if self._dir_exists():
            return
        try:
            os.makedirs(self.train_dir, exist_ok=True)
        except OSError as error:
            raise ValueError(
                f"LossParamTracker cannot create its log directory {self.train_dir!r}: "
                f"{error}. Pass a log_dir you can write to."
            ) from error

    def write(self, values, step):
        """Writes one step's values (`summary.serialize`) as one event at `step`, creating the file writer at the first write.

        A tag's metadata is written with its first value in each event file
        (a `Summary.Value`'s is cleared in place after that).
        """
        if self._writer is not None and not self._dir_exists():
            # Removed under a running fit: the open file would swallow every
            # later epoch. Start a new one where the user looks for it.
            self.close()
            logger.warning(
                "LossParamTracker: %s was removed during training; it is created again, "
                "and the epochs written before are lost.",
                self.train_dir,
            )
        if self._writer is None:
            self.make_dir()
            self._writer = create(self.train_dir)
            self._written = set()
        self._writer.write(summary.serialize(values, self._written), step)

    def close(self):
        """Closes the file writer, if one was created; the next write opens a new one."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _dir_exists(self):
        return "://" in self.log_dir or os.path.isdir(self.train_dir)

    def last_epoch(self):
        """The last epoch diagnosed in the event files already in the run's directory, or `None`.

        An earlier tracker's, on the same `log_dir`: a later fit that numbered
        its epochs from 0 again would be read mixed with them, epoch by
        epoch. Only the records that hold a diagnosis are parsed, found by a
        search of their bytes; a remote directory is not read.
        """
        if "://" in self.log_dir or not os.path.isdir(self.train_dir):
            return None
        paths = [os.path.join(self.train_dir, name) for name in os.listdir(self.train_dir) if "tfevents" in name]
        return max((step for path in paths for step in _diagnosed_steps(path)), default=None)


def check_writable(log_dir):
    """Raises a ValueError naming `log_dir` when it can clearly not be written."""
    if "://" in log_dir:
        return  # Remote filesystems are checked when the writer is created.
    existing = os.path.abspath(log_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        reason = f"{existing!r} is a file, not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing!r} is not writable"
    else:
        return
    raise ValueError(
        f"Received: log_dir={log_dir!r}, which cannot be written: {reason}. "
        "Pass a directory you can write to."
    )


def create(log_dir):
    """Returns a writer of a new event file in `log_dir`, which it creates if needed."""
    if "://" not in log_dir:
        return PythonWriter(log_dir)
    if sys.modules.get("tensorflow") is not None:
        return TensorFlowWriter(log_dir)
    return RemotePythonWriter(log_dir)


class TensorFlowWriter:
    """Writes through `tf.summary.create_file_writer`: one op per step, however many values."""

    def __init__(self, log_dir):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(log_dir)

    def write(self, serialized, step):
        """Writes a serialized `Summary` as one event at `step`, and flushes it to the file."""
        with self._writer.as_default():
            summary.write_serialized(serialized, step)
        self._writer.flush()

    def close(self):
        self._writer.close()


class PythonWriter:
    """Writes a local event file of TFRecords, without TensorFlow.

    TensorBoard's `EventFileWriter` opens its file through `tensorboard.
    compat.tf`, which imports TensorFlow wherever it is installed: seconds
    and hundreds of MB in a JAX or PyTorch process. A local file needs no
    file system layer. Nor TensorBoard's `RecordWriter`: it computes the
    records' checksums in Python, 34 ms for the 250 KB an epoch of a model
    of 1,000 weights writes, where `google_crc32c` takes 0.1 ms.
    """

    def __init__(self, log_dir):
        os.makedirs(log_dir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_UID)}"
        self._file = open(os.path.join(log_dir, name), "wb")  # noqa: SIM115 - closed in close()
        self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

    def write(self, serialized, step):
        """Writes a serialized `Summary` as one event at `step`, and flushes it to the file."""
        # The Event's own fields, then its `summary` field (5) around the
        # bytes as they are: serialized messages concatenated are their merge.
        head = event_pb2.Event(wall_time=time.time(), step=int(step)).SerializeToString()
        self._add(head + b"\x2a" + _varint(len(serialized)) + serialized)

    def _add(self, data):
        """Writes `data`, a serialized `Event`, as a TFRecord: length, its masked CRC, data, its masked CRC."""
        length = RECORD_LENGTH.pack(len(data))
        self._file.write(length + _masked_crc(length) + data + _masked_crc(data))
        self._file.flush()

    def close(self):
        self._file.close()


class RemotePythonWriter:
    """Writes a remote event file (`gs://`, ...) through TensorBoard's `EventFileWriter` and its file systems."""

    def __init__(self, log_dir):
        self._writer = EventFileWriter(log_dir)

    def write(self, serialized, step):
        """Writes a serialized `Summary` as one event at `step`, and flushes it to the file."""
        self._writer.add_event(_event(serialized, step))
        self._writer.flush()

    def close(self):
        self._writer.close()


def _varint(number):
    """`number` as protobuf writes a length: seven bits a byte, low first, the high bit for "more"."""
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _masked_crc(data):
    """The checksum a TFRecord holds of `data`: its CRC-32C rotated right by 15 bits, plus a constant."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _diagnosed_steps(path):
    """The steps of the diagnoses in the event file at `path`; the records up to a cut-short one."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    tag, steps, at = metadata.DIAGNOSIS_TAG.encode(), [], 0
    while at + RECORD_FRAMING <= len(data):
        (length,) = RECORD_LENGTH.unpack_from(data, at)
        start = at + RECORD_LENGTH.size + 4
        end = start + length
        if end + 4 > len(data):
            break
        if data.find(tag, start, end) != -1:
            event = event_pb2.Event.FromString(data[start:end])
            if any(value.tag == metadata.DIAGNOSIS_TAG for value in event.summary.value):
                steps.append(event.step)
        at = end + 4
    return steps



def _event(serialized, step):
    event = event_pb2.Event(wall_time=time.time(), step=int(step))
    event.summary.ParseFromString(serialized)
    return event


_UID = itertools.count()  # tells apart the files one process opens in the same second
