"""`cache.RunCache` over a fake data provider: what it reads once, what makes it read again, what it skips."""

import ast
import pathlib

import numpy as np
import pytest
from tensorboard import context, errors
from tensorboard.data import provider

from tensorboard_plugin.loss_params import cache, metadata

pytestmark = pytest.mark.unit

LOG_VAR = "loss/GaussianNLL/log_var"
CTX = context.RequestContext()


class FakeProvider(provider.DataProvider):
    """The runs of a log directory in memory, as TensorBoard's `DataProvider` serves them.

    `runs` is `{run: {tag: (SummaryMetadata, {step: value})}}`. Every call
    is recorded in `calls`, with the runs it asks for; a read that asks for
    a run of `broken` raises, as the Python loader does over a damaged run.
    """

    def __init__(self):
        self.runs = {}
        self.calls = []
        self.broken = set()

    def write(self, run, step, path=LOG_VAR, value=0.0, rows=((LOG_VAR, "training", ""),)):
        """Writes an epoch as the callback does: a loss variable's value and the run's diagnosis."""
        value_tag = metadata.tag(path, metadata.VALUE)
        tags = self.runs.setdefault(run, {})
        tags.setdefault(value_tag, (metadata.create_summary_metadata(metadata.ROLE_LOSS, metadata.VALUE, path,
                                                                     dtype="float32"), {}))[1][step] = value
        diagnosis = metadata.create_summary_metadata(metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS)
        table = np.array([[c.encode() for c in row] for row in rows], dtype=object)
        tags.setdefault(metadata.DIAGNOSIS_TAG, (diagnosis, {}))[1][step] = table

    def list_scalars(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):
        return self._list(run_tag_filter, scalar=True, series=provider.ScalarTimeSeries)

    def list_tensors(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):
        return self._list(run_tag_filter, scalar=False, series=provider.TensorTimeSeries)

    def read_scalars(self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None):
        return self._read(run_tag_filter, True, downsample, lambda s, v: provider.ScalarDatum(s, float(s), v))

    def read_tensors(self, ctx=None, *, experiment_id, plugin_name, downsample=None, run_tag_filter=None):
        return self._read(run_tag_filter, False, downsample, lambda s, v: provider.TensorDatum(s, float(s), v))

    def list_runs(self, ctx=None, *, experiment_id):
        raise NotImplementedError

    def read_last_scalars(self, ctx=None, *, experiment_id, plugin_name, run_tag_filter=None):
        raise NotImplementedError

    def _selected(self, name, run_tag_filter, scalar):
        """`{run: {tag: (metadata, points)}}` of the filter's runs and tags of one data class; records the call."""
        runs = None if run_tag_filter is None else run_tag_filter.runs
        tags = None if run_tag_filter is None else run_tag_filter.tags
        chosen = sorted(self.runs if runs is None else set(runs) & self.runs.keys())
        self.calls.append((name, tuple(chosen)))
        if name.startswith("read") and self.broken & set(chosen):
            raise ValueError(f"cannot convert the points of {sorted(self.broken & set(chosen))}")
        return {
            run: {
                tag: data
                for tag, data in self.runs[run].items()
                if (tags is None or tag in tags) and (data[0].data_class == 1) == scalar
            }
            for run in chosen
        }

    def _list(self, run_tag_filter, scalar, series):
        name = "list_scalars" if scalar else "list_tensors"
        return {
            run: {
                tag: series(max_step=max(points), max_wall_time=float(max(points)),
                            plugin_content=meta.plugin_data.content, description="", display_name="")
                for tag, (meta, points) in tags.items()
            }
            for run, tags in self._selected(name, run_tag_filter, scalar).items()
            if tags
        }

    def _read(self, run_tag_filter, scalar, downsample, datum):
        name = "read_scalars" if scalar else "read_tensors"
        return {
            run: {
                tag: [datum(step, value) for step, value in sorted(points.items())][-downsample:]
                for tag, (_, points) in tags.items()
            }
            for run, tags in self._selected(name, run_tag_filter, scalar).items()
        }


@pytest.fixture
def fake():
    data = FakeProvider()
    for step in range(3):
        data.write("a/train", step, value=float(step))
        data.write("b/train", step, rows=[(LOG_VAR, "not_updated", "not_in_optimizer")])
    return data


def test_runs_are_listed_with_their_latest_diagnosis_then_served_from_the_cache(fake):
    runs = cache.RunCache(fake)
    a, b = runs.listed(CTX, "")
    assert (a.run, a.last, a.reason, a.invalid) == ("a/train", (2, 2.0), "", {})
    assert list(a.tags) == [f"{LOG_VAR}/value", metadata.DIAGNOSIS_TAG]
    assert b.latest == {LOG_VAR: ("not_updated", "not_in_optimizer")}
    fake.calls.clear()
    assert runs.listed(CTX, "") == [a, b]
    assert fake.calls == [("list_tensors", ("a/train", "b/train"))], "one small call: the diagnoses' last steps"


def test_a_new_diagnosis_lists_its_run_again_and_no_other(fake):
    runs = cache.RunCache(fake)
    runs.listed(CTX, "")
    fake.write("b/train", 3, rows=[(LOG_VAR, "training", "")])
    fake.calls.clear()
    a, b = runs.listed(CTX, "")
    assert (b.last, b.latest) == ((3, 3.0), {LOG_VAR: ("training", "")})
    assert a.last == (2, 2.0)
    assert {runs_asked for _, runs_asked in fake.calls[1:]} == {("b/train",)}, fake.calls


def test_a_run_deleted_is_forgotten(fake):
    runs = cache.RunCache(fake)
    runs.listed(CTX, "")
    del fake.runs["a/train"]
    assert [one.run for one in runs.listed(CTX, "")] == ["b/train"]


def test_a_listing_is_read_once_and_a_read_is_the_providers_each_time(fake):
    runs = cache.RunCache(fake)
    tags = runs.tags_of(CTX, "", "a/train")
    fake.calls.clear()
    assert runs.tags_of(CTX, "", "a/train") is tags and fake.calls == []
    read = runs.read(CTX, "", {"a/train": [tags[f"{LOG_VAR}/value"]]})
    steps, values = read.data["a/train"][f"{LOG_VAR}/value"]
    assert (steps.tolist(), values[:, 0].tolist(), read.skipped, read.gone) == ([0, 1, 2], [0.0, 1.0, 2.0], {}, set())
    fake.write("a/train", 3, value=3.0)
    read = runs.read(CTX, "", {"a/train": [tags[f"{LOG_VAR}/value"]]})
    assert read.data["a/train"][f"{LOG_VAR}/value"][0].tolist() == [0, 1, 2, 3], "data is never cached"
    with pytest.raises(errors.NotFoundError, match="No run 'nope/train'"):
        runs.tags_of(CTX, "", "nope/train")


def test_a_variable_written_since_the_listing_is_found_once_the_run_is_forgotten(fake):
    runs = cache.RunCache(fake)
    runs.tags_of(CTX, "", "a/train")
    fake.write("a/train", 3, path="loss/L/new")
    assert "loss/L/new/value" not in runs.tags_of(CTX, "", "a/train")
    runs.forget("a/train")
    assert "loss/L/new/value" in runs.tags_of(CTX, "", "a/train")


def test_a_run_that_raises_is_skipped_with_its_reason_and_the_others_served(fake):
    runs = cache.RunCache(fake)
    wanted = {run: list(runs.tags_of(CTX, "", run).values()) for run in ("a/train", "b/train")}
    fake.broken = {"b/train"}
    read = runs.read(CTX, "", wanted)
    assert list(read.data) == ["a/train"]
    assert read.skipped == {"b/train": "ValueError: cannot convert the points of ['b/train']"}
    a, b = runs.listed(CTX, "")
    assert (a.reason, a.tags is not None) == ("", True)
    assert (b.reason, b.tags, b.latest) == ("ValueError: cannot convert the points of ['b/train']", None, {})


def test_a_damaged_diagnosis_skips_its_run_with_the_reason(fake):
    fake.runs["b/train"][metadata.DIAGNOSIS_TAG][1][3] = np.array([b"a", b"b", b"c"], dtype=object)
    a, b = cache.RunCache(fake).listed(CTX, "")
    assert b.reason == "ValueError: a diagnosis has shape (3,); expected a JSON string or a (variables, 3) table" and b.tags is None
    assert a.reason == "" and a.latest == {LOG_VAR: ("training", "")}


def test_a_run_gone_since_its_listing_is_read_as_gone(fake):
    runs = cache.RunCache(fake)
    wanted = {"a/train": list(runs.tags_of(CTX, "", "a/train").values())}
    del fake.runs["a/train"]
    read = runs.read(CTX, "", wanted)
    assert (read.data, read.skipped, read.gone) == ({}, {}, {"a/train"})
    with pytest.raises(errors.NotFoundError):
        runs.tags_of(CTX, "", "a/train")


def test_a_diagnosis_is_decoded_once_per_write(fake):
    runs = cache.RunCache(fake)
    tags = runs.tags_of(CTX, "", "b/train")
    decoded = runs.diagnosis(CTX, "", "b/train", tags).data["b/train"]
    assert decoded.steps.tolist() == [0, 1, 2] and decoded.changes == {LOG_VAR: [(0, "not_updated")]}
    fake.calls.clear()
    assert runs.diagnosis(CTX, "", "b/train", tags).data["b/train"] is decoded
    assert fake.calls == [("list_tensors", ("b/train",))], "nothing written since: one small call"
    fake.write("b/train", 3, rows=[(LOG_VAR, "training", "")])
    fake.calls.clear()
    later = runs.diagnosis(CTX, "", "b/train", tags).data["b/train"]
    assert later.changes == {LOG_VAR: [(0, "not_updated"), (3, "training")]}
    assert [name for name, _ in fake.calls] == ["list_tensors", "read_tensors"]


def test_a_diagnosis_not_a_table_names_its_run_one_gone_is_gone_and_one_not_yet_written_is_empty(fake):
    fake.runs["b/train"][metadata.DIAGNOSIS_TAG][1][3] = np.array([b"a", b"b", b"c"], dtype=object)
    runs = cache.RunCache(fake)
    read = runs.diagnosis(CTX, "", "b/train", runs.tags_of(CTX, "", "b/train"))
    assert (read.data, read.skipped) == ({}, {"b/train": "ValueError: a diagnosis has shape (3,); expected a JSON string or a (variables, 3) table"})
    tags = runs.tags_of(CTX, "", "a/train")
    before = {tag: one for tag, one in tags.items() if tag != metadata.DIAGNOSIS_TAG}
    empty = runs.diagnosis(CTX, "", "a/train", before).data["a/train"]
    assert (empty.steps.tolist(), empty.changes) == ([], {})
    del fake.runs["a/train"]
    assert runs.diagnosis(CTX, "", "a/train", tags) == cache.Read({}, {}, {"a/train"})


def test_the_diagnoses_of_a_few_runs_are_kept_the_latest_asked_for(fake, monkeypatch):
    monkeypatch.setattr(cache, "MAX_DIAGNOSES", 1)
    runs = cache.RunCache(fake)
    tags = {run: runs.tags_of(CTX, "", run) for run in ("a/train", "b/train")}
    read = []
    for run in ("a/train", "b/train", "b/train", "a/train"):
        fake.calls.clear()
        runs.diagnosis(CTX, "", run, tags[run])
        read.append("read_tensors" in [name for name, _ in fake.calls])
    assert read == [True, True, False, True], "one kept: b's, then a's again"


def test_a_reason_is_one_line_of_bounded_length():
    reason = cache.reason("a/train", ValueError("many\nlines " + "x" * 1_000))
    assert reason.startswith("ValueError: many lines x") and "\n" not in reason
    assert len(reason) == 300 and reason.endswith("…")


def test_the_cache_gives_data_and_never_imports_the_body_builders():
    source = ast.parse(pathlib.Path(cache.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(source)
        if isinstance(node, ast.ImportFrom) and node.module == "tensorboard_plugin.loss_params"
        for alias in node.names
    }
    assert imported == {"metadata", "series"}, "plugin -> cache -> series; the routes hand its data to bodies"
