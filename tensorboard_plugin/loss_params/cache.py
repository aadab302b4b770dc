"""The runs as the plugin last listed them, and reads of their data that one bad or deleted run never fails.

A run's listing (`{tag: Series}`, from metadata) never changes for a tag
once written, so the routes of one run reuse it and make a single read from
the provider (each provider call costs tens of ms on the Rust loader). What
`/runs` shows of each run (its listing and latest diagnosis, a `Listed`) is
kept the same way, read again when the run's diagnosis moves on; so is a
run's whole diagnosis, decoded by variable (a `Diagnosis`, what
`/diagnosis` shows). `RunCache` holds them, behind one lock.

This module gives data, never a body: the routes (`plugin.py`) hand what it
gives to the body builders (`bodies.py`).
"""

import collections
import functools
import logging
import threading
import typing

import numpy as np

from tensorboard import errors
from tensorboard.data import provider as tb_provider

from tensorboard_plugin.loss_params import metadata
from tensorboard_plugin.loss_params import series as series_lib

# The most characters of an error message an answer names a skipped run with.
_MAX_REASON = 300
# The most runs whose whole diagnosis is kept decoded (the latest asked for):
# a run of 1,200 variables x 1,000 epochs holds 10 MB of it.
MAX_DIAGNOSES = 32

logger = logging.getLogger("loss_param_tracker")


class Read(typing.NamedTuple):
    """What `RunCache.read` gives.

    Attributes:
        data: `{run: {tag: (steps, values)}}`, as `series_lib.read`.
        skipped: `{run: reason}` of the runs that could not be read.
        gone: The runs that no longer exist.
    """

    data: dict
    skipped: dict
    gone: set


class Listed(typing.NamedTuple):
    """What `RunCache.listed` gives of one run: what `/runs` shows of it.

    Attributes:
        run: The run's name.
        last: `(step, wall time)` of its latest diagnosis.
        tags: Its listing, `{tag: Series}`, or `None` when it has none (it
            cannot be read, or none of its tags can).
        latest: Its latest diagnosis, `{path: (status, cause)}`; empty when
            it cannot be read.
        reason: Why the run cannot be read, or `""`.
        invalid: `{tag: reason}` of the tags left out of its listing for
            their metadata.
    """

    run: str
    last: tuple
    tags: dict
    latest: dict
    reason: str
    invalid: dict


class Diagnosis(typing.NamedTuple):
    """What `RunCache.diagnosis` gives of one run: its whole diagnosis, decoded by variable.

    Attributes:
        steps: The epochs diagnosed, int64, ascending.
        changes: `{path: [(index, status), ...]}` of every path of any
            step: its status from `steps[index]` on, `""` where a step has
            no row for it (see `series_lib.status_changes`).
    """

    steps: np.ndarray
    changes: dict


_NO_DIAGNOSIS = Diagnosis(np.zeros(0, np.int64), {})


class RunCache:
    """The runs' listings and what `/runs` shows of them, and the reads of their data.

    TensorBoard serves requests from several threads. Every read and every
    replacement of the state goes through `_lock`, and the state is
    replaced, never edited in place. Provider calls are made outside the
    lock, so that a slow read never holds up another route; two requests
    may then list the same run at once, and the later one's write, as
    fresh, wins.
    """

    def __init__(self, data_provider):
        """Holds nothing yet: runs are listed as the routes ask for them.

        Args:
            data_provider: TensorBoard's `DataProvider` (`context.data_provider`).
        """
        self._data_provider = data_provider
        self._lock = threading.Lock()
        # {run: {tag: Series}} as last listed.
        self._listing = {}
        # {run: Listed} as `listed` last gave them.
        self._listed = {}
        # {run: (the (step, wall time) of its latest diagnosis, its Diagnosis)},
        # the latest asked for last.
        self._diagnoses = collections.OrderedDict()

    def listed(self, ctx, experiment):
        """Each run with loss_params data, as `/runs` shows it: `[Listed]`, sorted by run.

        The frontend polls `/runs`, so this costs one small provider call
        while nothing is written: the callback writes a diagnosis every
        epoch, and only a run whose diagnosis moved on (a new last step, or a
        new write time, as when a resumed run writes an epoch again) or a new
        run is listed again and has its latest diagnosis read. A run is
        listed from its first diagnosis on; runs gone since are forgotten.

        A run that cannot be read (its latest diagnosis is damaged, the
        provider fails on its data) has no `tags` and gives the `reason`;
        each tag left out of a listed run for its metadata is in its
        `invalid`: one bad run never hides the others.
        """
        heartbeats = self._data_provider.list_tensors(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=tb_provider.RunTagFilter(tags=[metadata.DIAGNOSIS_TAG]),
        )
        last = {
            run: (int(tags[metadata.DIAGNOSIS_TAG].max_step), float(tags[metadata.DIAGNOSIS_TAG].max_wall_time))
            for run, tags in heartbeats.items()
            if metadata.DIAGNOSIS_TAG in tags
        }
        with self._lock:
            listed = self._listed
        changed = [run for run in last if run not in listed or listed[run].last != last[run]]
        if changed or listed.keys() - last.keys():
            listed = self._list_runs(ctx, experiment, changed, last)
        return [listed[run] for run in sorted(last) if run in listed]

    def tags_of(self, ctx, experiment, run):
        """`{tag: Series}` of `run`, listed from the provider the first time it is asked for.

        Raises:
            errors.NotFoundError: When the run has no loss_params data.
        """
        with self._lock:
            tags = self._listing.get(run)
        if tags is None:
            listing = series_lib.list_series(self._data_provider, ctx, experiment, runs=[run])
            if run not in listing:
                raise errors.NotFoundError(f"No run {run!r} with loss_params data.")
            tags = listing[run]
            self._update_listing({run: tags})
        return tags

    def diagnosis(self, ctx, experiment, run, tags):
        """`run`'s whole `Diagnosis`, decoded once per write, as a `Read` of `{run: Diagnosis}`.

        Its diagnosis series (`tags[metadata.DIAGNOSIS_TAG]`, none before
        the first) is read and decoded the first time, and again only once
        the run has written since: a small provider call tells its latest
        step and write time (0.3 ms on the Rust loader, where reading and
        decoding 2,000 epochs of 40 variables takes 70). A run that cannot
        be read, or whose diagnosis cannot be decoded (it is not a table),
        is named in `skipped` with the reason; a run deleted since it was
        listed is `gone`.
        """
        if metadata.DIAGNOSIS_TAG not in tags:
            return Read({run: _NO_DIAGNOSIS}, {}, set())
        last = self._last_diagnosis(ctx, experiment, run)
        with self._lock:
            written, decoded = self._diagnoses.get(run, (None, None))
            if last is not None and written == last:
                self._diagnoses.move_to_end(run)
                return Read({run: decoded}, {}, set())
        read = self.read(ctx, experiment, {run: [tags[metadata.DIAGNOSIS_TAG]]})
        if run in read.skipped or run in read.gone:
            return read
        steps, values = read.data.get(run, {}).get(metadata.DIAGNOSIS_TAG, (_NO_DIAGNOSIS.steps, []))
        try:
            decoded = Diagnosis(steps, series_lib.status_changes(values))
        except Exception as error:  # noqa: BLE001 - the run is named as unreadable
            return Read({}, {run: reason(run, error)}, set())
        if last is not None:  # decoded from no older a write than `last`
            with self._lock:
                self._diagnoses[run] = (last, decoded)
                self._diagnoses.move_to_end(run)
                while len(self._diagnoses) > MAX_DIAGNOSES:
                    self._diagnoses.popitem(last=False)
        return Read({run: decoded}, {}, set())

    def _last_diagnosis(self, ctx, experiment, run):
        """`(step, wall time)` of `run`'s latest diagnosis, as the provider lists it, or `None`."""
        listing = self._data_provider.list_tensors(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=tb_provider.RunTagFilter(runs=[run], tags=[metadata.DIAGNOSIS_TAG]),
        )
        heartbeat = listing.get(run, {}).get(metadata.DIAGNOSIS_TAG)
        if heartbeat is None:
            return None
        return int(heartbeat.max_step), float(heartbeat.max_wall_time)

    def forget(self, run):
        """Drops `run`'s listing: the next `tags_of` lists it afresh (it may have new tags)."""
        self._update_listing({}, gone={run})

    def read(self, ctx, experiment, wanted, downsample=series_lib.ALL_POINTS):
        """`series_lib.read` of `wanted` (`{run: [Series]}`) that one bad or deleted run never fails.

        Returns a `Read`: the data, the runs that could not be read (see
        `_each_run`), and the runs gone since they were listed. A run
        deleted while served leaves the provider's runs at its next reload,
        while this cache still holds its listing: a run read empty is
        listed again, and forgotten when it is no longer there.
        """
        wanted = {run: list(series) for run, series in wanted.items()}
        data, skipped = _each_run(
            wanted,
            lambda some: series_lib.read(
                self._data_provider, ctx, experiment, {run: wanted[run] for run in some}, downsample
            ),
        )
        empty = [run for run, series in wanted.items() if series and run not in data and run not in skipped]
        gone = set()
        if empty:
            listing = series_lib.list_series(self._data_provider, ctx, experiment, runs=empty)
            gone = set(empty) - listing.keys()
            self._update_listing(listing, gone)
        return Read(data, skipped, gone)

    def _list_runs(self, ctx, experiment, runs, last):
        """Lists `runs` afresh and reads their latest diagnoses, for `listed`; returns the new `{run: Listed}`.

        Runs no longer in `last` (deleted since) are forgotten.
        """
        invalid, newer = {}, {}
        listing, failed = _each_run(
            runs,
            lambda some: series_lib.list_series(
                self._data_provider, ctx, experiment, runs=some, invalid=invalid, newer=newer
            ),
        )
        for run, tags in newer.items():
            for tag, what in tags.items():
                invalid.setdefault(run, {})[tag] = (
                    f"its metadata names {what}, which a newer loss-param-tracker writes; "
                    "upgrade to read it"
                )
        latest, unreadable = self._latest(ctx, experiment, listing)
        failed.update(unreadable)
        fresh = {}
        for run in runs:
            why = failed.get(run, "")
            tags = None if why else listing.get(run)
            fresh[run] = Listed(run, last[run], tags, latest.get(run, {}), why, invalid.get(run, {}))
        with self._lock:
            gone = self._listed.keys() - last.keys()
            self._listed = {run: one for run, one in {**self._listed, **fresh}.items() if run in last}
            listed = self._listed
        self._update_listing(listing, gone)
        return listed

    def _latest(self, ctx, experiment, listing):
        """The latest diagnosis of each run of `listing`: `{run: {path: (status, cause)}}`, `{run: reason}`.

        A run without a diagnosis has none; a run whose diagnosis cannot be
        read or decoded is named with the reason.
        """
        wanted = {
            run: [tags[metadata.DIAGNOSIS_TAG]] for run, tags in listing.items() if metadata.DIAGNOSIS_TAG in tags
        }
        read = self.read(ctx, experiment, wanted, downsample=1)
        latest, failed = {}, dict(read.skipped)
        for run, data in read.data.items():
            try:
                latest[run] = series_lib.diagnoses(data[metadata.DIAGNOSIS_TAG][1][-1:])[0]
            except Exception as error:  # noqa: BLE001 - one bad run must not hide the rest
                failed[run] = reason(run, error)
        return latest, failed

    def _update_listing(self, listing, gone=()):
        """Merges `listing` (`{run: {tag: Series}}`) into the listing, and drops the runs `gone`."""
        with self._lock:
            self._listing = {r: t for r, t in {**self._listing, **listing}.items() if r not in gone}


def _each_run(runs, call):
    """`call(runs)`, a dict by run; where it raises, `call([run])` run by run.

    One call for all runs is the quick way (a provider call costs tens of
    ms on the Rust loader); run by run finds the run whose data breaks it
    (the Python loader raises as it converts a damaged run's points, a VALUE
    of strings say) and serves the others.

    Returns:
        The dict, and `{run: reason}` of the runs whose call raised.
    """
    runs = list(runs)
    if not runs:
        return {}, {}
    try:
        return call(runs), {}
    except Exception:  # noqa: BLE001 - found run by run below
        pass
    result, failed = {}, {}
    for run in runs:
        try:
            result.update(call([run]))
        except Exception as error:  # noqa: BLE001 - one bad run must not fail the rest
            failed[run] = reason(run, error)
    return result, failed


def reason(run, error):
    """One line, of bounded length, that says why `run` could not be read (`error`); logged once too.

    The routes name a run they leave out with it, whether its read or its
    body failed.
    """
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 1] + "…"
    _log_once(run, text)
    return text


@functools.lru_cache(maxsize=1024)
def _log_once(run, reason):
    """Logs a run that cannot be read once, not at every poll of the tab."""
    logger.warning("Run %r cannot be read: %s", run, reason)
