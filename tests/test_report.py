"""load(log_dir) and the report command, over runs written by real fits."""

import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from loss_param_tracker import LossParamWarning, load
from loss_param_tracker.reader import NoSummariesError
from loss_param_tracker.report import main as report_main
from tensorboard_plugin.loss_params import metadata
from tests.conftest import AnnealLogVar, GaussianNLL, compile_fixed, damaged_copy, fit, make_model
from tests.test_reader import VAR, diagnosis, epochs, loss_values, write_run


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
    fix = next(l for l in lines if "fix: Call loss_param_tracker.make_trainable" in l)
    assert "scan(model, x[:256], y[:256], 'loss/GaussianNLL/log_var', values)" in fix, "the line to copy names it"
    assert report(str(logs / "fixed")).returncode == 0


def test_report_json(logs):
    result = report(str(logs), "--json")
    data = json.loads(result.stdout)
    rows = data["runs"]["broken/train"]["variables"]
    assert rows[0]["path"] == "loss/GaussianNLL/log_var" and rows[0]["status"] == "not_updated"
    assert rows[0]["first"] == rows[0]["last"] == 0.0
    assert data["runs"]["fixed/train"]["model_weights"] == {"training": 4}
    assert result.returncode == 1


def test_the_command_reads_without_importing_tensorflow_and_says_the_same(logs, tmp_path, capsys):
    # The command's process: TensorBoard's stub file layer, not TensorFlow's.
    script = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('loss_param_tracker', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code, 'tensorflow' in sys.modules, file=sys.stderr)\n"
    )
    for args in ([str(logs)], [str(logs), "--json"]):
        result = subprocess.run(
            [sys.executable, "-c", script, "report", *args], capture_output=True, text=True, timeout=120
        )
        assert result.stderr.splitlines()[-1] == "exit 1 False", result.stderr
        # This process has TensorFlow, whose file layer TensorBoard takes here: the same report.
        assert report_main(["report", *args]) == 1
        assert result.stdout == capsys.readouterr().out
    # A damaged run is named the same way too.
    damaged = damaged_copy(logs, tmp_path / "logs")
    result = subprocess.run(
        [sys.executable, "-c", script, "report", str(damaged)], capture_output=True, text=True, timeout=120
    )
    assert "run corrupt/train skipped: event file" in result.stderr and "exit 1 False" in result.stderr


def test_damaged_runs_are_named_and_never_pass(logs, tmp_path):
    log_dir = damaged_copy(logs, tmp_path / "logs")
    result = report(str(log_dir))
    assert result.returncode == 1, result.stderr  # broken/train's log_var: a finding wins
    skipped = [l for l in result.stderr.splitlines() if " skipped: " in l]
    assert [l.split(" skipped: ")[0] for l in skipped] == ["run corrupt/train"]
    assert "damaged record" in skipped[0]
    # A last record cut short: the run is read up to it, and said to be incomplete.
    incomplete = [l for l in result.stderr.splitlines() if " incomplete: " in l]
    assert len(incomplete) == 1 and incomplete[0].startswith("run truncated/train incomplete: event file")
    assert "ends inside a record" in incomplete[0] and "the records before it are read" in incomplete[0]
    assert "Traceback" not in result.stderr
    assert "run broken/train" in result.stdout and "run truncated/train" in result.stdout
    assert "corrupt" not in result.stdout

    data = json.loads(report(str(log_dir), "--json").stdout)
    assert sorted(data["runs"]) == ["broken/train", "fixed/train", "truncated/train"]
    assert sorted(data["skipped"]) == ["corrupt/train"]
    assert "ends inside a record" in data["incomplete"]["truncated/train"]

    shutil.rmtree(log_dir / "broken")  # nothing broken left to find: the damage alone fails
    shutil.rmtree(log_dir / "truncated")  # (a copy of broken)
    result = report(str(log_dir), "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert list(json.loads(result.stdout)["runs"]) == ["fixed/train"]

    shutil.rmtree(log_dir / "fixed")  # every run unreadable: still 3, not "nothing to report"
    result = report(str(log_dir))
    assert result.returncode == 3 and result.stdout == "" and result.stderr.count(" skipped: ") == 1


def test_without_tensorflow_damaged_runs_are_named_all_the_same(logs, tmp_path):
    log_dir = damaged_copy(logs, tmp_path / "logs")
    script = (
        "import sys; sys.modules['tensorflow'] = None  # any import of TensorFlow now fails\n"
        "from loss_param_tracker.report import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "report", str(log_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    skipped = [l for l in result.stderr.splitlines() if " skipped: " in l]
    assert len(skipped) == 1
    assert "run corrupt/train skipped: event file" in skipped[0] and "damaged record" in skipped[0]
    assert "run truncated/train incomplete: event file" in result.stderr
    assert "not_updated" in result.stdout and "Traceback" not in result.stderr


def test_an_unexpected_error_is_one_line_and_exit_3(logs, tmp_path):
    shutil.copytree(logs / "fixed", tmp_path / "fixed")
    (tmp_path / "garbage").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "garbage" / "events.out.tfevents.1.host")) as writer:
        writer.write(b"\xff\xff\xff\xff")  # checksums fine, not an Event
    result = report(str(tmp_path))
    assert result.returncode == 3, result.stdout + result.stderr
    (line,) = [l for l in result.stderr.splitlines() if "garbage" in l]
    assert line.startswith("run garbage skipped: unexpected error while reading it: DecodeError")
    assert "Traceback" not in result.stderr and "training" in result.stdout


def test_a_variable_that_changed_shape_is_named_in_its_run_with_its_epochs(tmp_path):
    values = [np.arange(3)] * 2 + [np.arange(5)] * 2
    write_run(tmp_path, "reshaped", epochs(values))
    result = report(str(tmp_path))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "run reshaped" in result.stdout and "skipped" not in result.stderr
    assert (
        f"  {VAR}  not readable: variable {VAR!r} changed shape during the run: "
        "shape (3,) at epochs 0-1, shape (5,) at epochs 2-3;"
    ) in result.stdout


def test_long_paths_keep_the_columns_aligned(tmp_path):
    long = "loss/output_with_a_long_name/SomeVeryLongLossClassName/nested/attribute/log_scale"
    write_run(tmp_path, "a", [(e, loss_values(VAR, 1.0) + loss_values(long, [1.0, 2.0])
                                 + diagnosis({VAR: "training", long: "not_updated"})) for e in range(2)])
    write_run(tmp_path, "b", epochs([np.zeros((3, 4))] * 2, status="zero_gradient"))
    result = report(str(tmp_path))
    assert result.returncode == 1, result.stderr
    rows = [l for l in result.stdout.splitlines() if l.startswith("  loss/")]
    assert len(rows) == 3
    for column in ("value", "grad norm"):  # each starts at one place in every row
        assert len({row.index(f"  {column} ") for row in rows}) == 1, result.stdout
    statuses = ("training", "not_updated", "zero_gradient")
    assert len({row.index(s) for row in rows for s in statuses if s in row}) == 1, result.stdout
    assert any(row.startswith(f"  {long}  ") for row in rows)


def test_first_is_the_value_before_training(tmp_path):
    before = [(0, loss_values(VAR, 5.0, metadata.BATCH))]
    write_run(tmp_path, "run", before + epochs([1.0, 2.0]))
    write_run(tmp_path, "old", epochs([1.0, 2.0]))  # no value before training: the first epoch's
    result = report(str(tmp_path), "--json")
    rows = {run: data["variables"][0] for run, data in json.loads(result.stdout)["runs"].items()}
    assert (rows["run"]["first"], rows["run"]["last"]) == (5.0, 2.0)
    assert (rows["old"]["first"], rows["old"]["last"]) == (1.0, 2.0)
    assert "value 5 -> 2" in report(str(tmp_path / "run")).stdout


def test_help_gives_the_exit_codes():
    result = report("--help")
    assert result.returncode == 0
    for code in ("0  every run was read", "1  a loss variable is", "2  nothing to report",
                 "3  a run or a variable could not be read"):
        assert code in result.stdout, result.stdout


@pytest.mark.parametrize(
    "case, said, error",
    [
        ("missing", "does not exist", FileNotFoundError),
        ("a_file", "is a file, not a directory", NotADirectoryError),
        ("empty", "No loss_params summaries", NoSummariesError),
        ("other_tools", "No loss_params summaries", NoSummariesError),
    ],
)
def test_bad_log_dir_is_exit_2_with_a_message(case, said, error, tmp_path):
    path = tmp_path / case
    if case == "a_file":
        path.write_text("")
    elif case != "missing":
        path.mkdir()
    if case == "other_tools":
        with tf.summary.create_file_writer(str(path)).as_default():
            tf.summary.scalar("loss", 1.0, step=0)
    result = report(str(path))
    assert result.returncode == 2
    assert said in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(error):
        load(path)


def test_report_gives_the_fix_of_each_cause(tmp_path):
    loss, model = GaussianNLL(), make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LossParamWarning)  # moved by a callback: nothing to warn about
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
