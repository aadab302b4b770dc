"""The plugin in the real `tensorboard` command, on both loaders, over real fits."""

import pathlib
import urllib.parse

import pytest

from tests.conftest import DASHBOARD_RUNS, damaged_copy
from tests.servers import tensorboard

PREFIX = "/data/plugin/loss_params"


def query(route, **args):
    return f"{PREFIX}/{route}?{urllib.parse.urlencode(args)}"


def all_runs_loaded(board):
    runs = {r["name"]: r["last_step"] for r in board.get_json(f"{PREFIX}/runs")["runs"]}
    return all(runs.get(name) == epochs - 1 for name, (epochs, _) in DASHBOARD_RUNS.items())


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_plain_tensorboard_serves_every_epoch(tmp_path, dashboard_logdir, load_fast):
    logdir = damaged_copy(pathlib.Path(dashboard_logdir), tmp_path / "logs")
    with tensorboard(logdir, f"--load_fast={load_fast}") as board:
        board.wait_for(lambda: all_runs_loaded(board))
        listing = board.get_json("/data/plugins_listing")["loss_params"]
        assert listing["enabled"] is True
        assert listing["tab_name"] == "Loss Params"
        assert listing["loading_mechanism"]["module_path"] == f"{PREFIX}/static/index.js"
        runs = {r["name"]: r for r in board.get_json(f"{PREFIX}/runs")["runs"]}
        for name, (epochs, statuses) in DASHBOARD_RUNS.items():
            latest = {v["path"]: v["status"] for v in runs[name]["variables"] if v["role"] == "loss"}
            assert latest == statuses, f"{name} on load_fast={load_fast}"
            for path in statuses:
                steps = board.get_json(query("series", run=name, variable=path))["steps"]
                assert steps == list(range(epochs)), f"{name} {path}: {len(steps)} of {epochs} epochs"
            assert board.get_json(query("weights", run=name))["steps"] == list(range(epochs))
            assert len(board.get_json(query("diagnosis", run=name))["steps"]) == epochs
        # The damaged run serves what was readable; it never takes the others down.
        if "truncated/train" in runs:
            steps = board.get_json(query("series", run="truncated/train",
                                         variable="loss/GaussianNLL/log_var"))["steps"]
            assert 0 < len(steps) < 12
        assert board.get(query("series", run="nope", variable="x"))[0] == 404
        assert board.get(query("series", run="fixed/train"))[0] == 400
        assert board.get(f"{PREFIX}/static/..%2fplugin.py")[0] == 404


def test_a_missing_logdir_does_not_stop_tensorboard(tmp_path):
    with tensorboard(tmp_path / "does-not-exist") as board:
        listing = board.get_json("/data/plugins_listing")
        assert listing["loss_params"]["enabled"] is False
        assert board.get_json(f"{PREFIX}/runs")["runs"] == []
