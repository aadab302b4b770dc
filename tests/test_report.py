"""load(log_dir) and the report command, over runs written by real fits."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from loss_param_tracker import load
from loss_param_tracker.reader import NoSummariesError
from tests.conftest import AnnealLogVar, GaussianNLL, compile_fixed, fit, make_model


def report(*args):
    return subprocess.run(
        [sys.executable, "-m", "loss_param_tracker", "report", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    with pytest.warns():
        fit(make_model(), GaussianNLL(), str(root / "broken"), epochs=3)
    loss, model = GaussianNLL(), make_model()
    compile_fixed(model, loss)
    fit(model, loss, str(root / "fixed"), epochs=3)
    # Event files of another tool in the same tree are ignored.
    with tf.summary.create_file_writer(str(root / "fixed" / "other")).as_default():
        tf.summary.scalar("accuracy", 0.5, step=0)
    return root


def test_load_returns_documented_arrays(logs):
    runs = load(logs)
    assert list(runs) == ["broken/train", "fixed/train"]
    broken = runs["broken/train"].variables["loss/GaussianNLL/log_var"]
    fixed = runs["fixed/train"].variables["loss/GaussianNLL/log_var"]
    assert broken.steps.tolist() == [0, 1, 2] and broken.value.shape == (3,)
    assert broken.status.tolist() == ["not_updated"] * 3
    assert fixed.status.tolist() == ["training"] * 3 and len(set(fixed.value.tolist())) == 3
    assert fixed.grad_norm.shape == (3, 2)
    kernel = runs["fixed/train"].variables["model/net/hidden/kernel"]
    assert kernel.role == "model" and kernel.norms.shape == (3, 4) and kernel.shape == (4, 8)


def test_report_table_and_exit_code(logs):
    result = report(str(logs))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    broken = next(l for l in lines if "loss/GaussianNLL/log_var" in l and "not_updated" in l)
    assert "value 0 -> 0" in broken
    assert any("training" in l and "loss/GaussianNLL/log_var" in l for l in lines)
    assert any("fix: Call loss_param_tracker.make_trainable" in l for l in lines)
    assert report(str(logs / "fixed")).returncode == 0


def test_report_json(logs):
    result = report(str(logs), "--json")
    data = json.loads(result.stdout)
    rows = data["runs"]["broken/train"]["variables"]
    assert rows[0]["path"] == "loss/GaussianNLL/log_var" and rows[0]["status"] == "not_updated"
    assert rows[0]["first"] == rows[0]["last"] == 0.0
    assert data["runs"]["fixed/train"]["model_weights"] == {"training": 4}
    assert result.returncode == 1


def test_partial_last_record_reads_what_is_complete(logs, tmp_path):
    source = logs / "fixed" / "train"
    target = tmp_path / "partial" / "train"
    target.mkdir(parents=True)
    (event_file,) = [f for f in os.listdir(source) if f.startswith("events")]
    data = (source / event_file).read_bytes()
    (target / event_file).write_bytes(data[:-7])  # a write cut short
    variable = load(tmp_path / "partial")["train"].variables["loss/GaussianNLL/log_var"]
    assert variable.steps.tolist() == [0, 1, 2][: len(variable.steps)] and len(variable.steps) >= 2


@pytest.mark.parametrize("case", ["missing", "empty", "other_tools"])
def test_bad_log_dir_is_exit_2_with_a_message(case, tmp_path):
    path = tmp_path / case
    if case != "missing":
        path.mkdir()
    if case == "other_tools":
        with tf.summary.create_file_writer(str(path)).as_default():
            tf.summary.scalar("loss", 1.0, step=0)
    result = report(str(path))
    assert result.returncode == 2
    assert ("does not exist" if case == "missing" else "No loss_params summaries") in result.stderr
    with pytest.raises(FileNotFoundError if case == "missing" else NoSummariesError):
        load(path)


def test_report_gives_the_fix_of_each_cause(tmp_path):
    loss, model = GaussianNLL(), make_model()
    with pytest.warns(match=r"\[not_updated\]"):  # before the first batch, from registration
        fit(model, loss, str(tmp_path / "annealed"), epochs=2, callbacks=[AnnealLogVar(loss)])
    annealed = report(str(tmp_path / "annealed"))
    assert annealed.returncode == 0, annealed.stdout + annealed.stderr
    assert "training" in annealed.stdout and "something else updates it" in annealed.stdout

    loss, model = GaussianNLL(), make_model()
    compile_fixed(model, loss)
    model.optimizer.learning_rate = 0.0
    with pytest.warns(match=r"\[not_updated\].*learning rate"):
        fit(model, loss, str(tmp_path / "frozen_lr"), epochs=2)
    frozen = report(str(tmp_path / "frozen_lr"), "--json")
    assert frozen.returncode == 1, frozen.stdout + frozen.stderr
    (row,) = json.loads(frozen.stdout)["runs"]["train"]["variables"]
    assert (row["status"], row["cause"]) == ("not_updated", "optimizer_no_effect")
    assert "learning rate" in row["hint"] and "make_trainable" not in row["hint"]
