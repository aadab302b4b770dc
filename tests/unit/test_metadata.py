"""The summary format's vocabulary: one table of statuses and causes, tags and fields, metadata protos."""

import pytest
from tensorboard.compat.proto import summary_pb2

from tensorboard_plugin.loss_params import metadata

pytestmark = pytest.mark.unit


def test_each_status_is_one_row_with_a_meaning_a_severity_and_a_fix_where_it_is_a_problem():
    assert metadata.STATUSES == tuple(s.name for s in metadata.STATUS_TABLE)
    for row in metadata.STATUS_TABLE:
        assert row.meaning and row.severity in ("good", "warn", "bad", "info"), row
        assert bool(row.fix) == (row.severity in ("warn", "bad")), row
        assert not row.warned or row.severity == "bad", row
    assert metadata.WARNED_STATUSES == (
        metadata.NON_FINITE, metadata.NO_GRADIENT, metadata.NOT_UPDATED, metadata.NO_MINIMUM
    )


def test_advice_of_a_cause_replaces_its_status_own_and_names_unknown_ones_empty():
    cause = metadata.CAUSES[metadata.NOT_IN_OPTIMIZER]
    assert metadata.advice(metadata.NOT_UPDATED, metadata.NOT_IN_OPTIMIZER) == (cause.meaning, cause.fix)
    row = metadata.STATUS[metadata.NOT_UPDATED]
    assert metadata.advice(metadata.NOT_UPDATED) == (row.meaning, row.fix)
    assert metadata.advice("exploded", "solar_flare") == ("", "")
    assert metadata.severity("exploded") == "unknown"
    assert metadata.severity(metadata.TRAINING) == "good"


def test_tags_are_path_kind_name_and_field_and_batch_series_carry_a_prefix():
    path = "loss/GaussianNLL/log_var"
    assert metadata.tag(path, metadata.VALUE) == f"{path}/value"
    assert metadata.tag(path, metadata.GRAD_NORM, field="mean") == f"{path}/grad_norm/mean"
    assert metadata.tag(path, metadata.VALUE, metadata.BATCH, "0") == f"{path}/batch_value/0"
    assert metadata.DIAGNOSIS_TAG == "run/diagnosis"
    assert set(metadata.KIND_NAMES) == set(metadata.PluginData.Kind.values()) - {0}
    assert set(metadata.ROLE_NAMES) == set(metadata.PluginData.Role.values()) - {0}


@pytest.mark.parametrize(
    "kind, shape, expected",
    [
        (metadata.VALUE, (), ("",)),
        (metadata.VALUE, (2, 2), ("0", "1", "2", "3")),
        (metadata.STATS, (100,), ("mean", "std", "min", "max", "l2")),
        (metadata.HISTOGRAM, (100,), ("",)),
    ],
)
def test_fields_of_a_kind_follow_the_variable_shape_or_the_kind(kind, shape, expected):
    assert metadata.fields(kind, shape) == expected


def test_metadata_round_trips_and_names_its_data_class():
    proto = metadata.create_summary_metadata(metadata.ROLE_LOSS, metadata.VALUE, "loss/L/w", (3,), "float32")
    assert proto.data_class == summary_pb2.DATA_CLASS_SCALAR and proto.plugin_data.plugin_name == "loss_params"
    parsed = metadata.parse_plugin_metadata(proto.plugin_data.content)
    assert (parsed.path, list(parsed.shape), parsed.version) == ("loss/L/w", [3], metadata.PROTO_VERSION)
    histogram = metadata.create_summary_metadata(metadata.ROLE_LOSS, metadata.HISTOGRAM, "loss/L/w")
    assert histogram.data_class == summary_pb2.DATA_CLASS_TENSOR


def test_a_newer_version_parses_to_none_and_bytes_are_required():
    data = metadata.PluginData(version=metadata.PROTO_VERSION + 1, kind=metadata.VALUE)
    assert metadata.parse_plugin_metadata(data.SerializeToString()) is None
    with pytest.raises(TypeError, match="received str"):
        metadata.parse_plugin_metadata("not bytes")
