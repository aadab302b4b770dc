"""Every ```python block of README.md runs, in order, and what its comments show is true.

The blocks run in one shared namespace, as a reader would type them into one
session, with a real fit each. Tracebacks point at README.md's own lines. A
block may be excluded only when it genuinely cannot run, by the line
`<!-- readme-test: skip: <reason> -->` right above its fence; no block is now.
The ```sh blocks are not run, except the `report` command, on the logs the
blocks wrote.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from loss_param_tracker import LossParamWarning, load
from loss_param_tracker.fix import attached_variables

README = Path(__file__).resolve().parent.parent / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*\S.*-->")


@dataclasses.dataclass
class Block:
    language: str
    line: int  # README line of the block's first line of code (1-based)
    code: str
    skipped: bool


def readme_blocks(language):
    """The README's fenced blocks of `language`, in order."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) == language:
            skipped = i > 0 and bool(SKIP.fullmatch(lines[i - 1].strip()))
            blocks.append(Block(language, i + 2, "\n".join(lines[i + 1 : end]) + "\n", skipped))
        i = end + 1
    return blocks


def comment_after(block, code):
    """The comment on the line of `block` that starts with `code`, and the comment lines right after it."""
    lines = block.code.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(code))
    comments = [lines[index].partition("#")[2].strip()]
    for line in lines[index + 1 :]:
        if not line.startswith("#"):
            break
        comments.append(line[1:].strip())
    return " ".join(c for c in comments if c)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """What a reader has before the README's first block, and nothing more.

    Supplies exactly: `x`, `y` (small float32 numpy regression data, y of
    shape (n, 1)) and `model` (an uncompiled keras Sequential regression
    model, one output, as the GaussianNLL example needs). The working
    directory is a fresh tmp dir, so `logs/run1` and `m.keras` land there.
    Everything else (imports, the loss, `loss`) the blocks define themselves.
    """
    directory = tmp_path_factory.mktemp("readme")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1)) + 0.3 * rng.normal(size=(64, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        yield directory, {"x": x, "y": y, "model": model}


@dataclasses.dataclass
class ReadmeRun:
    directory: Path
    namespace: dict
    blocks: list  # the python blocks, in order
    warnings: list  # per block: the warnings it issued

    def block_with(self, code):
        """The index of the one block holding `code`."""
        (index,) = [i for i, b in enumerate(self.blocks) if code in b.code]
        return index


@pytest.fixture(scope="module")
def readme(reader):
    """Runs the README's python blocks in order, in one namespace; records each block's warnings."""
    directory, supplied = reader
    namespace = {"__name__": "readme", **supplied}
    blocks = readme_blocks("python")
    caught = []
    for block in blocks:
        if block.skipped:
            caught.append([])
            continue
        # Padded so that tracebacks show README.md's line numbers and lines.
        code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
        with warnings.catch_warnings(record=True) as issued:
            warnings.simplefilter("always")
            exec(code, namespace)
        caught.append(issued)
    return ReadmeRun(directory, namespace, blocks, caught)


def test_every_python_block_is_found_and_runs(readme):
    assert len(readme.blocks) >= 4, [b.line for b in readme.blocks]
    assert not [b.line for b in readme.blocks if b.skipped], "a README block is marked skipped"


def test_first_fit_warns_as_the_comment_shows(readme):
    index = readme.block_with("LossParamTracker(log_dir=\"logs/run1\")")
    block = readme.blocks[index]
    shown = comment_after(block, "model.fit(x, y, epochs=20, callbacks=[tracker])")
    prefix = "LossParamWarning: "
    assert shown.startswith(prefix) and shown.endswith("..."), shown
    claimed = shown[len(prefix) : -len("...")].strip()

    ours = [w for w in readme.warnings[index] if issubclass(w.category, LossParamWarning)]
    assert len(ours) == 1, [str(w.message) for w in readme.warnings[index]]
    message = " ".join(str(ours[0].message).split())
    assert message.startswith(claimed), (message, claimed)


def test_first_fit_diagnosis_is_the_one_shown(readme):
    index = readme.block_with("LossParamTracker(log_dir=\"logs/run1\")")
    shown = comment_after(readme.blocks[index], "tracker.diagnosis")
    pairs = re.findall(r"'([^']+)': '([^']+)'", shown)
    assert ("loss/GaussianNLL/log_var", "not_updated") in pairs, shown
    diagnosis = readme.namespace["tracker"].diagnosis
    for key, status in pairs:
        # '...' in a key stands for any part of the path, as the comment writes it.
        pattern = re.compile(".+".join(re.escape(part) for part in key.split("...")))
        matched = [path for path in diagnosis if pattern.fullmatch(path)]
        assert matched, (key, list(diagnosis))
        assert all(diagnosis[path] == status for path in matched), (key, diagnosis)


def test_scan_shows_where_the_loss_turns_up(readme):
    found = readme.namespace["found"]
    assert len(found.losses) == 17 and np.isfinite(found.losses).all()
    assert found.turns_up, "# True: a minimum inside the range"
    assert found.losses[found.lowest] == found.losses.min() < min(found.losses[0], found.losses[-1])


def test_the_fix_trains_log_var(readme):
    index = readme.block_with("LossParamTracker(log_dir=\"logs/run2\")")
    assert not [w for w in readme.warnings[index] if issubclass(w.category, LossParamWarning)]
    ns = readme.namespace
    model, loss = ns["model"], ns["loss"]
    assert attached_variables(model) == [loss.log_var]
    # "returns the variables it attached; calling it again adds nothing"
    again = ns["make_trainable"](model, loss)
    assert again == [loss.log_var] and attached_variables(model) == [loss.log_var]

    run2 = ns["loss_param_tracker"].load("logs/run2")["train"]
    log_var = run2.variables["loss/GaussianNLL/log_var"]
    assert log_var.status.tolist() == ["training"] * 20  # "# log_var: training"
    # Where run2 ended, the next fit of the same model (the display example's) began.
    assert log_var.value[-1] != 0.0 and log_var.value[-1] == pytest.approx(ns["noise"].initial)


def test_saved_model_loads_with_the_trained_log_var(readme):
    ns = readme.namespace
    assert (readme.directory / "m.keras").is_file()
    # Saved after run2 (later blocks train `model` further): its last epoch's value.
    trained = load(readme.directory / "logs" / "run2")["train"].variables["loss/GaussianNLL/log_var"].value[-1]
    loaded = ns["loaded"]
    assert trained != 0.0
    assert isinstance(loaded.loss, ns["GaussianNLL"]) and loaded.loss is not ns["loss"]
    np.testing.assert_array_equal(loaded.loss.log_var.numpy(), trained)
    # "attached to `loaded`: loaded.fit(x, y) trains it further"
    assert attached_variables(loaded) == [loaded.loss.log_var]
    before = float(loaded.loss.log_var.numpy())
    loaded.fit(ns["x"], ns["y"], epochs=1, verbose=0)
    assert float(loaded.loss.log_var.numpy()) != before


def test_load_gives_numpy_arrays_one_row_per_epoch(readme):
    ns = readme.namespace
    assert sorted(ns["runs"]) == ["run1/train", "run2/train"]
    v = ns["v"]
    for array in (v.steps, v.value, v.grad_norm, v.status):
        assert isinstance(array, np.ndarray) and len(array) == 20
    # The Keras trap: run1's log_var never moved from its initial value.
    assert v.status.tolist() == ["not_updated"] * 20 and set(v.value.tolist()) == {0.0}


def report_commands():
    """The README's `report` command line and the alternative its comment gives."""
    (block,) = [b for b in readme_blocks("sh") if "loss_param_tracker report" in b.code]
    (line,) = block.code.splitlines()
    command, _, comment = line.partition("#")
    alternative = comment.strip().removeprefix("or:").strip()
    return command.split(), alternative


def test_report_command_on_the_readme_logs(readme):
    command, alternative = report_commands()
    assert command[:2] == ["python", "-m"] and command[-1] == "logs", command

    def run(argv):
        return subprocess.run(
            argv, cwd=readme.directory, capture_output=True, text=True, timeout=300
        )

    done = run([sys.executable, *command[1:]])
    assert done.returncode == 1, done.stderr  # run1's log_var is not_updated
    lines = done.stdout.splitlines()
    assert any("loss/GaussianNLL/log_var" in l and "not_updated" in l for l in lines), done.stdout
    assert any("loss/GaussianNLL/log_var" in l and "training" in l for l in lines), done.stdout

    # Only the fixed run: exits 0.
    done = run([sys.executable, *command[1:-1], "logs/run2"])
    assert done.returncode == 0, done.stdout + done.stderr

    # "or: loss-param-tracker report logs [--format ...]", the console script.
    assert alternative == "loss-param-tracker report logs [--format text|json|markdown|html]", alternative
    script = os.path.join(os.path.dirname(sys.executable), "loss-param-tracker")
    for fmt in ("text", "markdown", "html"):
        assert run([script, "report", "logs", "--format", fmt]).returncode == 1
    done = run([script, "report", "logs", "--format", "json"])
    assert done.returncode == 1, done.stderr
    statuses = {
        run: [row["status"] for row in report["variables"]]
        for run, report in json.loads(done.stdout)["runs"].items()
    }
    assert statuses == {"run1/train": ["not_updated"], "run2/train": ["training"], "run3/train": ["training"],
                        "mirrored/train": ["training"]}


def test_the_strategy_example_trains_and_logs_its_gradients(readme):
    """The README's MirroredStrategy block (one CPU device here): the strategy's path, end to end."""
    run = load(readme.directory / "logs" / "mirrored")["train"]
    log_var = run.variables["loss/GaussianNLL/log_var"]
    assert log_var.status.tolist() == ["training", "training"]
    assert np.isfinite(log_var.grad_norm).all() and (log_var.grad_norm > 0).all()
    assert np.isfinite(run.grad_norm[1]).all()


def test_the_display_example_records_sigma_beside_the_stored_log_var(readme):
    noise = readme.namespace["noise"]
    assert noise.display == readme.namespace["Display"]("exp", inner_scale=0.5, label="sigma")
    assert len(noise.value) == 5 and len(set(noise.value.tolist())) == 5, "it trained, as stored"
    # "exp(0.5 * noise.value), per epoch"
    np.testing.assert_allclose(noise.shown, np.exp(0.5 * noise.value), rtol=1e-6)
    assert noise.shown_initial == pytest.approx(np.exp(0.5 * noise.initial))
    assert not [w for w in readme.warnings[readme.block_with("logs/run3")] if issubclass(w.category, LossParamWarning)]


def table_rows(heading):
    """The first cells of the rows of the first table under `heading`, in order."""
    text = README.read_text(encoding="utf-8").split(heading, 1)[1]
    rows = re.findall(r"^\| `(\w+)` \|(?: `(\w+)` \|)?", text.split("\n## ", 1)[0], re.MULTILINE)
    return rows


def test_the_readme_status_tables_are_the_vocabulary_rows():
    from tensorboard_plugin.loss_params import metadata

    rows = table_rows("## What each status means")
    statuses = [status for status, cause in rows if not cause]
    causes = [cause for _, cause in rows if cause]
    assert statuses == list(metadata.STATUSES), "the README lists the statuses of metadata.STATUS_TABLE in order"
    assert sorted(causes) == sorted(metadata.CAUSES), "and every cause of metadata.CAUSE_TABLE once"
