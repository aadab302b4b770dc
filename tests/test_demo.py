"""The demos at reduced size: learned parameters reach their analytic values; statuses differ.

Every demo runs once (module fixture) at `--quick` size, a fifth of its epochs:
about 40 s on 2 CPU cores in all. Tolerances are for that size; the full-size
demos land closer.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from demo import _common, contrastive, run_all
from loss_param_tracker import LossParamWarning, load
from loss_param_tracker.report import main as report_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# |learned s - log(mean squared residual of the trained model)|: the fixed
# point of both log-variance losses. At quick size s still lags the shrinking
# residual by about 0.1.
RESIDUAL_TOLERANCE = 0.25
# |learned s - log(sigma^2)| of the generating noise: the network's own error
# adds to the noise (log mse - log sigma^2 is 0.03 to 0.16 at quick size).
NOISE_TOLERANCE = 0.4
# |learned scale / t* - 1|, t* the InfoNCE-optimal scale of the trained
# encoders: about 0.08 at quick size, the scale still rising.
SCALE_TOLERANCE = 0.2


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Runs every demo at quick size; returns (log_dir, results, LossParamWarning messages)."""
    log_dir = str(tmp_path_factory.mktemp("demo_logs"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossParamWarning)
        results = run_all.run_all(log_dir, scale=_common.QUICK_SCALE, verbose=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, LossParamWarning)]
    return log_dir, results, messages


def last_statuses(log_dir, result):
    """{variant: last logged status of the demo's loss variable}, read back from the event files."""
    runs = load(log_dir)
    return {
        variant: runs[f"{run}/train"].variables[result["variables"][variant]].last_status
        for variant, run in result["runs"].items()
    }


def logged_value(log_dir, result, variant):
    run = load(os.path.join(log_dir, result["runs"][variant]))["train"]
    return run.variables[result["variables"][variant]].value[-1]


@pytest.mark.parametrize("name", ["uncertainty", "noise"])
def test_log_variance_reaches_its_fixed_point(demos, name):
    log_dir, results, _ = demos
    result = results[name]
    fixed = np.atleast_1d(result["learned"]["fixed"])
    analytic = {k: np.atleast_1d(v) for k, v in result["analytic"].items()}
    np.testing.assert_allclose(fixed, analytic["residual"], atol=RESIDUAL_TOLERANCE)
    np.testing.assert_allclose(fixed, analytic["noise"], atol=NOISE_TOLERANCE)
    # The loss as written never moves its parameters from their initial zeros.
    np.testing.assert_array_equal(result["learned"]["broken"], 0.0)
    np.testing.assert_allclose(logged_value(log_dir, result, "fixed"), fixed, rtol=1e-6)
    assert last_statuses(log_dir, result) == {"broken": "not_updated", "fixed": "training"}


def test_uncertainty_orders_tasks_by_noise(demos):
    _, results, _ = demos
    learned = results["uncertainty"]["learned"]["fixed"]
    assert list(np.argsort(learned)) == [0, 1, 2], learned  # SIGMAS ascend


def test_contrastive_scale(demos):
    log_dir, results, _ = demos
    result = results["contrastive"]
    learned, analytic, initial = result["learned"], result["analytic"], result["initial"]
    assert learned["fixed"] / analytic["fixed"] == pytest.approx(1, abs=SCALE_TOLERANCE)
    assert learned["fixed"] > 1.5 * initial  # the scale moves, and far
    assert learned["fixed"] < contrastive.MAX_SCALE  # not stuck at CLIP's clamp
    # Held by the loss, or read through numpy: the scale never leaves its initial value.
    assert learned["broken"] == pytest.approx(initial, rel=1e-6)
    assert learned["numpy"] == pytest.approx(initial, rel=1e-6)
    logged = np.exp(logged_value(log_dir, result, "fixed"))  # the tracker logs the latent log
    np.testing.assert_allclose(logged, learned["fixed"], rtol=1e-5)
    assert last_statuses(log_dir, result) == {
        "broken": "not_updated",
        "fixed": "training",
        "numpy": "no_gradient",
    }


def shown_variable(log_dir, result, variant):
    run = load(os.path.join(log_dir, result["runs"][variant]))["train"]
    return run.variables[result["variables"][variant]]


def test_the_demos_show_the_values_their_answers_speak_of(demos):
    log_dir, results, _ = demos
    # CLIP's scale, not its log: from 1/0.07 = 14.3 to what the loss learned.
    scale = shown_variable(log_dir, results["contrastive"], "fixed")
    assert scale.display.label == "scale"
    assert scale.shown_initial == pytest.approx(contrastive.INITIAL_SCALE, rel=1e-6)
    assert scale.shown[-1] == pytest.approx(results["contrastive"]["learned"]["fixed"], rel=1e-5)
    # Each task's sigma, near the noise it was generated with.
    for name in ("uncertainty", "noise"):
        sigma = shown_variable(log_dir, results[name], "fixed")
        assert sigma.display.label == "sigma"
        np.testing.assert_allclose(sigma.shown[-1], np.exp(0.5 * sigma.value[-1]), rtol=1e-12)
        noise = np.exp(0.5 * np.atleast_1d(results[name]["analytic"]["noise"]))
        np.testing.assert_allclose(np.atleast_1d(sigma.shown[-1]), noise, rtol=NOISE_TOLERANCE)


def test_broken_runs_warn(demos):
    _, results, messages = demos
    for name, result in results.items():
        path = result["variables"]["broken"]
        assert any(path in m and "[not_updated]" in m for m in messages), (name, messages)
    numpy_path = results["contrastive"]["variables"]["numpy"]
    assert any(numpy_path in m and "[no_gradient]" in m for m in messages), messages


def test_report_exits_1_over_the_broken_runs(demos):
    log_dir, results, _ = demos
    done = subprocess.run(
        [sys.executable, "-m", "loss_param_tracker", "report", log_dir],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    for result in results.values():
        for run in result["runs"].values():
            assert f"run {run}/train" in done.stdout
    assert "not_updated" in done.stdout and "no_gradient" in done.stdout
    # The fixed runs alone pass the gate.
    for result in results.values():
        assert report_main(["report", os.path.join(log_dir, result["runs"]["fixed"])]) == 0


def test_quick_option():
    assert _common.parse("demo", ["--quick"]).scale == _common.QUICK_SCALE
    args = _common.parse("demo", ["--scale", "0.5", "--logdir", "x"])
    assert (args.scale, args.logdir, args.verbose) == (0.5, "x", 2)
    with pytest.raises(SystemExit):
        _common.parse("demo", ["--scale", "0"])
