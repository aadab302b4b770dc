"""The tracker on Keras's JAX and PyTorch backends, without TensorFlow, and its two event writers.

Keras picks its backend at import: `tests/backend_fits.py` runs real fits in
one fresh process per backend, with TensorFlow made unimportable, and this
module asserts on what they wrote.
"""

import collections
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader

from loss_param_tracker import load, writer
from tensorboard_plugin.loss_params import metadata, summary
from tests.models import assert_no_minimum_said, assert_scanned, assert_settles_without_no_minimum_again
from tests.servers import tensorboard

BACKENDS = ("jax", "torch")
SCRIPT = os.path.join(os.path.dirname(__file__), "backend_fits.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """Runs `backend_fits.py` once per backend, side by side; returns `{backend: (out_dir, results)}`."""
    out = tmp_path_factory.mktemp("backends")
    processes = {}
    for backend in BACKENDS:
        (out / backend).mkdir()
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
        processes[backend] = subprocess.Popen(
            [sys.executable, SCRIPT, str(out / backend)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    results = {}
    for backend, process in processes.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{backend}:\n{output[-5000:]}"
        with open(out / backend / "results.json") as f:
            results[backend] = (out / backend, json.load(f))
    return results


def loss_statuses(diagnosis):
    return {path: status for path, status in diagnosis.items() if path.startswith("loss/")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_statuses_and_advice_are_those_of_tensorflow(fits, backend):
    _, results = fits[backend]
    assert results["backend"] == backend
    assert results["tensorflow_imported"] is False
    expected = {
        "broken": ("loss/GaussianNLL/log_var", "not_updated"),
        "fixed": ("loss/GaussianNLL/log_var", "training"),
        "stopped": ("loss/StoppedGradient/weight", "no_gradient"),
        "clamped": ("loss/ClampedWeight/weight", "zero_gradient"),
        "frozen": ("loss/FrozenWeight/weight", "frozen"),
        "lazy_layer": ("loss/LazyNLL/log_var", "not_updated"),
    }
    for case, (path, status) in expected.items():
        diagnosis = results["statuses"][case]["diagnosis"]
        assert loss_statuses(diagnosis) == {path: status}, f"{backend} {case}: {diagnosis}"
        model = {p: s for p, s in diagnosis.items() if p.startswith("model/")}
        assert set(model.values()) == {"training"}, f"{backend} {case}: {model}"
    # numpy cuts the gradient: PyTorch sees none; JAX's loss head, tracing the
    # variable, finds that the loss needs its value (a concretization error):
    # none either. (It said the gradient unknown and advised make_trainable,
    # after which fit raised that error.)
    numpy = results["statuses"]["numpy"]
    assert loss_statuses(numpy["diagnosis"]) == {"loss/NumpyWeight/weight": "no_gradient"}
    assert not [m for m in numpy["logged"] if "stepped aside" in m], numpy["logged"]
    assert all(g > 0 for g in numpy["kernel_grad_norms"]), "the model's gradients are still captured"
    # Built before the callback starts here (Keras's symbolic build): make_trainable before fit
    # finds nothing all the same, and the fix says so.
    (lazy,) = results["statuses"]["lazy_layer"]["warnings"]
    assert "It is created when the loss is first called (in a layer's build(), or by the loss's own code)" in lazy, lazy
    (broken,) = results["statuses"]["broken"]["warnings"]
    assert "[not_updated]" in broken and "make_trainable(model)" in broken
    assert results["statuses"]["fixed"]["warnings"] == []
    assert any("[no_gradient]" in w for w in results["statuses"]["stopped"]["warnings"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("policy", ["analytic", "mixed_float16"])
def test_gradient_norms_are_the_analytic_ones_of_a_linear_model(fits, backend, policy):
    """One full-batch step: ||dL/dW|| = exp(-s) ||X^T r|| / n, and |dL/ds| = |mean(-r^2/2 + 1/2)| at s = 0."""
    _, results = fits[backend]
    one = results[policy]
    assert loss_statuses(one["diagnosis"]) == {"loss/GaussianNLL/log_var": "not_updated"}
    # float16 forward and backward, unscaled from a loss scale of 2^10
    rtol = 1e-5 if policy == "analytic" else 1e-3
    np.testing.assert_allclose(one["kernel"], one["kernel_expected"], rtol=rtol)
    np.testing.assert_allclose(one["log_var"], one["log_var_expected"], rtol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_each_epochs_norms_are_those_of_its_own_steps(fits, backend, policy):
    """Two epochs of 64 SGD steps of a linear model: the logged mean and max of each epoch's gradient norms
    (the kernel's, the global one, the loss's log-variance's) are those of its steps' own gradients.

    On PyTorch the loss reads its log-variance in runs of 40 calls, so that an
    epoch's steps differ: the log-variance has a gradient in some and none in
    others (counted as zeros). Under mixed precision the first steps overflow
    and are skipped.
    """
    _, results = fits[backend]
    one = results[f"every_step_{policy}" if policy != "float32" else "every_step"]
    if backend == "torch":
        reads = one["reads"]
        assert set(reads[:64]) == set(reads[64:]) == {True, False}, "each epoch has steps with and without the gradient"
    assert one["diagnosis"]["loss/SometimesNLL/log_var"] == "not_updated"
    if policy == "mixed_float16":
        assert one["epochs"][0]["expected"]["counts"][1] > 0, "the first steps overflowed"
    for epoch in one["epochs"]:
        for field, logged in epoch["logged"].items():
            np.testing.assert_allclose(logged, epoch["expected"][field], rtol=1e-4 if policy == "float32" else 2e-3, err_msg=field)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_float16_gradients_norm_above_float16s_range_is_logged_finite(fits, backend):
    """A float16 kernel's gradient: each element finite, its norm (about 105,000) above 65,504.
    Taken in float16 it was inf, and the kernel said `non_finite`."""
    one = fits[backend][1]["float16_norm"]
    np.testing.assert_allclose(one["logged"], one["expected"], rtol=1e-3)
    assert one["diagnosis"]["model/half_model/half/kernel"] == "training"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gathered_variables_gradient_norm_is_its_dense_gradients(fits, backend):
    """An `Embedding` and a loss's `take(centers, labels)`, rows read several times (see `models.gathered_fit`)."""
    one = fits[backend][1]["gathered"]
    np.testing.assert_allclose(one["logged"], one["expected"], rtol=1e-5)
    assert one["diagnosis"]["loss/GatheredCenters/centers"] == "not_updated"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_variable_read_only_in_an_add_loss_term(fits, backend):
    """PyTorch sees every gradient. JAX differentiates the loss head without the add_loss terms: it
    cannot tell, and says so; it said no_gradient, with a fix that was wrong (see `models.penalized_fit`)."""
    one = fits[backend][1]["penalized"]
    if backend == "jax":
        assert one["cause"] == "not_in_optimizer_gradient_unknown" and math.isnan(one["grad_norm"]), one
        # The cause says the console names why: it does (it said nothing).
        assert len(one["incomplete"]) == 1 and "add_loss terms" in one["incomplete"][0], one
    else:
        assert one == {"cause": "not_in_optimizer", "grad_norm": 2.0, "incomplete": []}, one


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_weight_the_objective_is_linear_in_is_told_apart_by_its_curvature(fits, backend):
    """JAX and PyTorch measure the loss head's curvature, as TensorFlow does: a penalty's weight is
    `unbounded`, a bonus's `linear`, neither advised to train plainly (PyTorch measured none, and
    advised `make_trainable` for both)."""
    assert fits[backend][1]["term_weights"] == {
        "loss/TermWeights/penalty": ["unbounded"] * 2, "loss/TermWeights/bonus": ["linear"] * 2
    }
    # Each variable's own curvature: the weight alone is linear, though its term reads the projections.
    assert fits[backend][1]["projected_term"] == {
        "loss/ProjectedTerm/weight": ["unbounded"] * 2, "loss/ProjectedTerm/projections": ["not_in_optimizer"] * 2
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_variable_the_objective_curves_down_in_is_told_apart_by_its_curvature(fits, backend):
    """The curvature's sign, as TensorFlow measures it: AUC-M's dual variable is `concave`, a
    log-scale `not_in_optimizer` (PyTorch said both `not_in_optimizer`, and advised descent on a
    variable the method maximises)."""
    assert fits[backend][1]["dual_weight"] == {
        "loss/DualWeight/dual": ["concave"] * 2, "loss/DualWeight/log_scale": ["not_in_optimizer"] * 2
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_normalised_proxies_and_a_nan_product_read_as_on_tensorflow(fits, backend):
    """Proxy-Anchor's proxies curved down along the probe's one direction in epoch 0, which read as
    `concave` on every backend, though descent trains them; a NaN product at a kink poisoned JAX's
    probe. Element by element, and with NaN steps measuring nothing, they read as on TensorFlow."""
    assert fits[backend][1]["proxy_anchor"] == ["not_in_optimizer"] * 2
    assert fits[backend][1]["kinked_concave"] == ["concave"] * 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_curvatures_sign_is_the_last_epochs_on_every_backend(fits, backend):
    """A task weight `x^2 mse + log x^2` curves up in `x` until the model brings the mse under 1, and
    down after: `concave` then, as on TensorFlow; make_trainable, advised before, leaves the model's
    error over ten times higher."""
    left, trained = (fits[backend][1]["adaptive_task_weight"][how] for how in ("left", "trained"))
    assert left["causes"] == ["not_in_optimizer"] * 3 + ["concave"]
    assert left["mse"] < 0.1
    assert trained["loss"] < 0 and trained["mse"] > 10 * left["mse"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_temperature_read_through_a_gradient_reversal_is_not_probed_on_every_backend(fits, backend):
    """CTKD's temperature, read through `keras.ops.custom_gradient`'s reversal: not probed (a custom
    Function on PyTorch, a custom_vjp on JAX), `not_in_optimizer` as on TensorFlow; JAX's product,
    the derivative of the reversed gradient, read `concave` from epoch 2, whose advice (ascent, a
    bounded form) is not what the method wants. Handed to the optimizer, it rises and settles."""
    left, trained = (fits[backend][1]["reversed_temperature"][how] for how in ("left", "trained"))
    assert left["causes"] == ["not_in_optimizer"] * 6, left
    moves = np.diff([1.0, *trained["values"]])
    assert (moves > 0).all() and moves[-1] < moves[0] / 2, trained["values"]
    assert trained["accuracy"] > left["accuracy"] - 0.02, (left, trained)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_parameter_the_model_keeps_out_of_kerass_tracking_is_found_and_fixed(fits, backend):
    """As on TensorFlow (`test_fix`), but JAX's loss head does not see the forward pass: a variable found
    on the model that the head does not read has an unknown gradient there, and the console says why."""
    held = fits[backend][1]["held_on_the_model"]
    criterion, log_var = "model/held/criterion/log_var", "model/held/weighting/log_var"
    averages = ["model/held/weighting/copies/0", "model/held/weighting/copies/1"]
    assert held["loss_left"]["found"] == {criterion: [["not_updated"] * 3, ["not_in_optimizer"] * 3]}
    assert held["loss_left"]["log_var"] == 0 and "(on GaussianNLL)" in held["loss_left"]["warnings"][0]
    assert held["loss_trained"]["found"] == {criterion: [["training"] * 3, [""] * 3]}
    assert held["loss_trained"]["log_var"] != 0
    left = held["forward_left"]
    if backend == "jax":
        unknown = [["not_updated"] * 3, ["not_in_optimizer_gradient_unknown"] * 3]
        assert left["found"] == {log_var: unknown, **{p: unknown for p in averages}}, left["found"]
        assert any("may be read by its forward pass" in m for m in left["logged"]), left["logged"]
    else:
        assert left["found"] == {
            log_var: [["not_updated"] * 3, ["not_in_optimizer"] * 3],
            **{p: [["no_gradient"] * 3, [""] * 3] for p in averages},
        }, left["found"]
    assert left["log_var"] == 0
    trained = held["forward_trained"]
    assert trained["found"][log_var] == [["training"] * 3, [""] * 3] and trained["log_var"] != 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_term_a_python_flag_switches_on_after_the_trace_is_read_by_no_step_on_jax(fits, backend):
    """JAX traces the step with the flag as it was, as TensorFlow does (`test_capture`): its loss head
    reads `log_var` in no step, which is said so, not `no_gradient`'s generic advice. PyTorch runs the
    loss's Python every step: the term is read from epoch 2, and make_trainable trains it."""
    flagged = fits[backend][1]["flagged"]
    left, trained = flagged["left"], flagged["trained"]
    if backend == "jax":
        assert left["causes"] == ["not_read"] * 4 and trained["causes"] == ["fix_not_reached"] * 4, flagged
        assert trained["log_var"] == 0
    else:
        assert left["statuses"] == ["no_gradient"] * 2 + ["not_updated"] * 2, left
        assert left["causes"] == ["", "", "not_in_optimizer", "not_in_optimizer"], left
        assert trained["statuses"] == ["no_gradient"] * 2 + ["training"] * 2 and trained["log_var"] != 0, trained


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fix_descent_has_no_minimum_for_is_said_so_on_every_backend(fits, backend):
    """A learned label-smoothing epsilon: as on TensorFlow (`test_capture`)."""
    smoothing = fits[backend][1]["learned_smoothing"]
    assert_no_minimum_said(smoothing["left"], smoothing["trained"], smoothing["untracked"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_that_assigns_its_own_statistics_is_said_to_lose_them_on_jax_only(fits, backend):
    """JAX's step keeps what the loss assigns to the model's non-trainable variables only: a running
    mean and a step counter the loss updates itself never change, so the warm-up never ends and the
    loss is 0. That is said, with the fix, which the second fit checks; on PyTorch they move."""
    running = fits[backend][1]["running_normalized"]
    left, fixed = running["on_the_loss"], running["on_the_model"]
    statistics = ["loss/RunningNormalizedNLL/running_mean", "loss/RunningNormalizedNLL/step"]
    if backend == "jax":
        assert left["step"] == 0
        assert all(left["causes"][p] == ["assignment_dropped"] * 3 for p in statistics), left["causes"]
        said = [w for w in left["warnings"] if "[not_updated]" in w and "JAX's step keeps" in w]
        assert len(said) == 2 and all("model.running_mean = loss.running_mean" in w for w in said), said
    else:
        assert left["step"] == 24
        assert all(left["causes"][p] == ["outside_optimizer"] * 3 for p in statistics), left["causes"]
    assert fixed["step"] == 24
    assert all(fixed["statuses"][p] == ["frozen"] * 3 for p in statistics), fixed["statuses"]
    assert not any("JAX's step keeps" in w for w in fixed["warnings"]), fixed["warnings"]
    assert fixed["causes"]["loss/RunningNormalizedNLL/log_var"] == ["not_in_optimizer"] * 3


def test_pytorchs_probe_takes_its_products_in_turn_past_its_share_of_a_step(fits):
    """12 term weights, 8 products a step: each weight measured in the epoch's first 4 steps, and
    `unbounded` from epoch 0 (the first 8 alone, the last 4 were `not_in_optimizer`)."""
    causes = fits["torch"][1]["many_term_weights"]
    assert causes == {f"loss/ManyTermWeights/weights_/{i}": ["unbounded"] * 2 for i in range(12)}


def test_pytorchs_probe_passes_over_an_empty_loss_variable(fits):
    """An empty variable beside AUC-M's dual: its gradient has no smallest element, the probe
    stepped aside for the fit, and the dual was `not_in_optimizer`."""
    assert fits["torch"][1]["empty_beside_dual"] == ["concave"] * 2


def test_pytorchs_probe_leaves_alone_a_variable_the_users_hook_is_on(fits):
    """The user's tensor hook on AUC-M's dual variable sees one gradient a step, the step's own
    (2 epochs of 4): the probe's two passes in each epoch's 4 first steps would have made it 24. Not
    measured, the dual is `not_in_optimizer`."""
    one = fits["torch"][1]["hooked_dual"]
    assert one["hook_calls"] == 8, one
    assert one["causes"] == {"dual": ["not_in_optimizer"] * 2, "log_scale": ["not_in_optimizer"] * 2}, one


def test_pytorchs_probe_does_not_read_curvature_through_a_custom_autograd_function(fits):
    """A loss through a `once_differentiable` Function: autograd's second pass finds no path through
    it, and the curved variable read as linear (`unbounded`, advice not to train it). Not measured
    now, the training identical to a plain fit's, and nothing said about the probe."""
    one = fits["torch"][1]["once_differentiable"]
    assert one["max_difference"] == 0.0 and one["losses"][0] == one["losses"][1], one
    assert one["cause"] == ["not_in_optimizer"] * 2 and one["said"] == [], one


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_epoch_whose_steps_the_optimizer_all_skipped_gets_no_status(fits, backend):
    """Mixed precision, every step of the first two epochs overflowing: no status for them (it was
    `optimizer_no_effect` attached, `not_in_optimizer_gradient_unknown` left), as on TensorFlow."""
    from tests.models import skipped_epochs_said_nothing

    for attach, (statuses, steps) in fits[backend][1]["overflow"].items():  # keys as JSON has them
        expected = "training" if attach == "true" else "not_updated"
        assert skipped_epochs_said_nothing(statuses, steps, expected), (attach, statuses, steps)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_variable_its_constraint_holds_at_its_bound_is_said_so(fits, backend):
    """The loss pulls `c` below the 0.5 its constraint allows: once there, the optimizer's updates
    are set back, and the cause says so, where it named the learning rate."""
    one = fits[backend][1]["constrained"]
    assert one["c"][2:] == [0.5] * 3, one
    assert one["status"] == ["training"] * 3 + ["not_updated"] * 2, one
    assert one["cause"][3:] == ["held_by_constraint"] * 2, one


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_term_switched_on_by_the_models_step_counter_has_its_gradient_from_that_step(fits, backend):
    """JAX's loss head read the model's non-trainable values as the step began, not as its forward
    pass left them (the counter one behind): epoch 0's one step with the term on was missed, and
    the variable said zero_gradient."""
    fit = fits[backend][1]["counted_warm_up"]
    assert fit["status"] == ["not_updated"] * 2, fit
    (first_mean, first_max), _ = fit["grad_norm"]
    assert first_max > 0 and first_mean == pytest.approx(first_max / 8, rel=1e-5), "one step of 8 had it"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_tracker_adds_no_deprecation_warning_to_a_fit(fits, backend):
    """On JAX, Keras's Variable.numpy() hands numpy an __array__ without numpy 2's copy keyword:
    reading the variables that way put a DeprecationWarning in the user's fit."""
    found = fits[backend][1]["deprecations"]
    assert not collections.Counter(found["tracked"]) - collections.Counter(found["plain"]), found


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fixed_variable_that_moves_while_the_loss_is_nan_is_never_said_to_train(fits, backend):
    """mse + log(v) after make_trainable: v stays finite, the loss turns NaN as it crosses zero."""
    fit = fits[backend][1]["log_variance"]
    finite = [math.isfinite(loss) for loss in fit["loss"]]
    assert finite[0] and not finite[-1], fit
    expected = [("training", "") if f else ("non_finite", "loss_non_finite") for f in finite]
    assert list(zip(fit["status"], fit["cause"])) == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_weight_a_callback_sets_outside_the_compiled_steps_state_is_said_not_to_reach_it(fits, backend):
    """JAX's compiled step holds a variable outside the model's state as the constant it was traced
    with: a callback's schedule never reached training, and the tracker called the weight healthy
    (training, outside_optimizer). PyTorch's step reads it anew: the schedule works there."""
    fits_of = fits[backend][1]["assigned_weight"]
    broken, fixed = fits_of["on_the_loss"], fits_of["in_state"]
    assert fixed["loss"][1] == 0.0 and fixed["status"] == ["frozen"] * 3, "weight 0: the loss is 0"
    if backend == "jax":
        assert broken["loss"][1] > 0, "the step kept weight 1"
        assert broken["cause"][1:] == ["constant_in_compiled_step"] * 2 and broken["status"][1:] == ["not_updated"] * 2
    else:
        assert broken["loss"][1] == 0.0 and broken["status"] == ["frozen"] * 3, broken
    # Set once and left: on JAX the step holds the old value in the epochs after the one that set it,
    # where the weight does not move (it was said `frozen` there, taking back the warning).
    once = fits[backend][1]["assigned_once"]
    if backend == "jax":
        assert once["loss"][2] > 0 and once["status"] == ["frozen"] + ["not_updated"] * 2, once
        assert once["cause"][1:] == ["constant_in_compiled_step"] * 2, once
    else:
        assert once["loss"][1:] == [0.0] * 2 and once["status"] == ["frozen"] * 3, once
    # Set before the step was traced: the step holds the new value, and nothing is claimed.
    early = fits[backend][1]["assigned_before_trace"]
    assert early["loss"] == [0.0] * 3 and early["status"] == ["frozen"] * 3, early


def test_an_eager_epoch_whose_steps_do_not_read_a_variable_has_no_gradient_for_it(fits):
    """PyTorch's steps run eagerly: epoch 0's last step's gradient counted as epoch 1's, which was
    said zero_gradient (see `models.dropped_term_fit`)."""
    assert fits["torch"][1]["dropped_term"] == ["not_updated", "no_gradient", "no_gradient"]


def test_a_backward_pass_run_between_steps_is_not_counted_in_the_steps_gradient(fits):
    """PyTorch's tensor hook fires on any backward through the loss: a callback's at a batch's
    start was added to the step's, and the logged norm doubled."""
    one = fits["torch"][1]["foreign_backward"]
    np.testing.assert_allclose(one["probed"], one["alone"], rtol=1e-6)
    np.testing.assert_allclose(one["probed"], one["callback"], rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_is_bit_identical_and_not_traced_again(fits, backend):
    _, results = fits[backend]
    same = results["identical"]
    assert same["max_difference"] == 0.0
    assert same["log_var"][0] == same["log_var"][1] != 0.0, "the fixed variable trains, identically"
    assert same["loss"][0] == same["loss"][1]
    assert same["traces"][0] == same["traces"][1], "the tracker traces the step no more often"
    # Left to the tracker: on JAX, XLA computes once what its loss head, compiled into the step,
    # shares with the step's own loss; the logged loss may then differ in its last bits (see the
    # README), the weights not.
    left = results["identical_left"]
    assert left["max_difference"] == 0.0
    if backend == "jax":
        np.testing.assert_allclose(left["losses"][1], left["losses"][0], rtol=1e-6)
    else:
        assert left["losses"][0] == left["losses"][1]


def test_the_plugin_serves_what_each_backend_wrote(fits):
    logdir = next(iter(fits.values()))[0].parent
    expected = {}
    for backend, (_, results) in fits.items():
        for case, one in results["statuses"].items():
            expected[f"{backend}/logs/{case}/train"] = loss_statuses(one["diagnosis"])
    with tensorboard(logdir, "--load_fast=false") as board:
        def runs():
            return {r["name"]: r for r in board.get_json("/data/plugin/loss_params/runs")["runs"]}

        board.wait_for(lambda: set(expected) <= set(runs()))
        served = runs()
        for name, statuses in expected.items():
            loss = {v["path"]: v["status"] for v in served[name]["variables"] if v["role"] == "loss"}
            assert loss == statuses, name
            assert served[name]["last_step"] == 2, name
    for backend, (out, _) in fits.items():
        run = load(out / "logs" / "fixed")["train"]
        log_var = run.variables["loss/GaussianNLL/log_var"]
        assert log_var.steps.tolist() == [0, 1, 2], backend
        assert np.isfinite(log_var.grad_norm).all(), backend
        assert log_var.initial == 0.0, "the value before training"


def events(log_dir):
    """`[(step, {tag: (metadata bytes, tensor)})]` of the summaries in a run directory."""
    (name,) = [n for n in os.listdir(log_dir) if "tfevents" in n]
    found = []
    for event in event_file_loader.EventFileLoader(os.path.join(log_dir, name)).Load():
        if event.HasField("summary"):
            found.append(
                (event.step, {v.tag: (v.metadata.SerializeToString(), v.tensor) for v in event.summary.value})
            )
    return found


def test_the_python_writer_writes_what_the_tensorflow_writer_writes(tmp_path):
    steps = {
        0: summary.values(metadata.ROLE_LOSS, metadata.VALUE, "loss/L/w", np.array([0.5, -1.0], np.float32), shape=(2,), dtype="float32"),
        1: summary.values(metadata.ROLE_LOSS, metadata.HISTOGRAM, "loss/L/big", summary.histogram(np.arange(100.0)), shape=(100,), dtype="float32")
        + summary.values(
            metadata.ROLE_RUN, metadata.DIAGNOSIS, metadata.RUN_DIAGNOSIS,
            np.array([["loss/L/w", "training", "ok"]], dtype=object),
        ),
    }
    written = {}
    for cls in (writer.TensorFlowWriter, writer.PythonWriter):
        log_dir = str(tmp_path / cls.__name__)
        w = cls(log_dir)
        for step, values in steps.items():
            w.write(summary.serialize(values), step)
        w.close()
        written[cls] = events(log_dir)
    tf_events, python_events = written[writer.TensorFlowWriter], written[writer.PythonWriter]
    assert [step for step, _ in tf_events] == [step for step, _ in python_events] == [0, 1]
    for (_, ours), (_, theirs) in zip(python_events, tf_events):
        assert ours.keys() == theirs.keys()
        for tag in ours:
            assert ours[tag][0] == theirs[tag][0], f"{tag}: metadata"
            assert ours[tag][1] == theirs[tag][1], f"{tag}: tensor"
    assert len(python_events[0][1]) == 2 and len(python_events[1][1]) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_writes_and_the_report(fits, backend):
    _, results = fits[backend]
    values = results["batches"]["loss/GaussianNLL/log_var/batch_value"]
    grads = results["batches"]["loss/GaussianNLL/log_var/batch_grad_norm/mean"]
    assert sorted(map(int, values)) == [0, 2, 4, 6, 8, 10, 12, 14, 16], "step 0: the value before training"
    assert len(set(values.values())) == len(values), "the trained value, read back every 2 batches"
    assert sorted(map(int, grads)) == [2, 4, 6, 8, 10, 12, 14, 16] and all(g > 0 for g in grads.values())
    assert results["report"] == {"broken": 1, "fixed": 0}


def test_a_tf_keras_model_is_told_that_keras_3_is_required(tmp_path):
    """tf_keras (Keras 2): a clear error from fit and from make_trainable, in a fresh process."""
    code = """
import numpy as np
import tensorflow as tf
from loss_param_tracker import LossParamTracker, make_trainable
model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(3,))])
model.compile("sgd", "mse")
for attempt in (lambda: make_trainable(model),
                lambda: model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0, callbacks=[LossParamTracker("{log_dir}")])):
    try:
        attempt()
    except TypeError as error:
        print("TypeError:", error)
"""
    result = subprocess.run(
        [sys.executable, "-c", code.format(log_dir=tmp_path)],
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if line.startswith("TypeError:")]
    assert len(errors) == 2, result.stdout + result.stderr[-3000:]
    for error in errors:
        assert "tf_keras (Keras 2) model" in error and "needs Keras 3" in error, error


def test_jax_squared_norms_put_each_gradients_own_norm_in_its_slot():
    """The JAX capture's norms: small gradients of one shape reduced together, each still in its own slot."""
    import jax.numpy as jnp

    from loss_param_tracker import capture_jax

    rng = np.random.default_rng(0)
    shapes = [(4, 3)] * 5 + [(3,)] * 4 + [()] * 3 + [(64, 80)]  # the last is above `_SMALL`: alone
    grads = [rng.normal(size=shape).astype("float32") for shape in shapes]
    inverse = np.float32(0.25)
    inverses = [inverse if i % 2 else None for i in range(len(grads))]  # each shape split in two groups
    slots = list(rng.permutation(len(grads) + 3))[: len(grads)]  # in any order, with slots left empty
    got = np.asarray(
        capture_jax._squared_norms([jnp.asarray(g) for g in grads], inverses, slots, len(grads) + 3)
    )
    expected = np.zeros(len(grads) + 3, np.float32)
    for grad, scale, slot in zip(grads, inverses, slots):
        expected[slot] = np.sum(np.square(grad * (1 if scale is None else scale)))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_the_jax_joined_read_gives_each_arrays_own_elements_and_steps_aside_where_it_cannot_join(monkeypatch):
    """Ten arrays of four dtypes, read by one compiled concatenation a dtype: each array's elements, in order,
    exactly; a joined read that fails where the arrays' own reads work is not tried again."""
    import jax.numpy as jnp

    from loss_param_tracker import capture_jax

    rng = np.random.default_rng(0)
    dtypes = ["float32", "float16", "int32", "bfloat16", "float32"] * 2
    arrays = [jnp.asarray(rng.normal(size=(i % 3 + 1, 4)) * 1000, dtype) for i, dtype in enumerate(dtypes)]
    arrays[1] = arrays[1].at[0, 0].set(jnp.nan)
    expected = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in arrays])
    read = capture_jax.flat_reader(arrays)
    np.testing.assert_array_equal(read(), expected)

    joined = []

    def fails(values):
        joined.append(len(values))
        raise ValueError("incompatible devices for jitted computation")

    monkeypatch.setattr(capture_jax, "_joined", fails)
    deleted = jnp.ones(3)
    deleted.delete()
    unreadable = capture_jax.flat_reader(arrays + [deleted])
    with pytest.raises(RuntimeError, match="deleted"):
        unreadable()
    with pytest.raises(RuntimeError, match="deleted"):
        unreadable()
    assert joined == [11, 11], "a variable that cannot be read is no reason to stop joining"
    joined.clear()
    read = capture_jax.flat_reader(arrays)
    np.testing.assert_array_equal(read(), expected)
    np.testing.assert_array_equal(read(), expected)
    assert joined == [10], "asked once, then one by one"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_attached_variables_of_one_name_train_as_two_of_different_names(fits, backend):
    """Two losses' `log_var`s, attached by `make_trainable`: trained as if named apart. On PyTorch they
    shared a key in the model's parameter dict: the first's gradient was never cleared (2.32 against 0.25
    after 3 epochs), and a variable named `keys` or `a.b` failed the fit. So again once the model was saved
    and loaded."""
    twin = fits[backend][1]["twin_nll"]
    assert twin["shared"]["values"] == twin["distinct"]["values"] == twin["torch_keys"]["values"]
    assert twin["shared"]["loaded"] == twin["distinct"]["loaded"] == twin["torch_keys"]["loaded"], "saved and loaded"
    assert twin["shared"]["values"][0] != 0.0 and twin["shared"]["values"][1] != 0.0
    # Only PyTorch keys parameters by path: elsewhere the variables are left as they are.
    assert len(set(twin["shared"]["paths"])) == (2 if backend == "torch" else 1), twin["shared"]["paths"]
    for how in ("shared", "distinct", "torch_keys"):
        statuses = twin[how]["statuses"]
        assert sorted(statuses) == ["loss/a/GaussianNLL/log_var", "loss/b/GaussianNLL/log_var"], statuses
        assert all(s == ["training"] * 3 for s in statuses.values()), (how, statuses)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gradient_zero_grad_leaves_in_place_is_said_on_pytorch(fits, backend):
    """Two `add_weight(name="log_var")` of a model share a path, and Keras's PyTorch step clears
    gradients through a parameter dict keyed by path: the first's gradient adds up step after step.
    The tracker says so, naming the shared path; with two names it says nothing, and the training differs."""
    fits_ = fits[backend][1]["two_log_variances"]
    shared, distinct = fits_["shared"], fits_["distinct"]
    assert distinct["warnings"] == [], distinct["warnings"]
    if backend != "torch":
        assert shared == distinct, "elsewhere a name is only a name"
        return
    (said,) = [w for w in shared["warnings"] if "not cleared between training steps" in w]
    assert said.startswith("two_log_variances/log_var:") and "same path, 'two_log_variances/log_var'" in said, said
    assert shared["values"][1] == distinct["values"][1]
    assert abs(shared["values"][0] - distinct["values"][0]) > 0.5, "the first's update is the sum of its gradients"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_learned_value_at_risk_is_not_said_to_have_no_minimum_once_it_settled(fits, backend):
    assert_settles_without_no_minimum_again(fits[backend][1]["cvar"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_finds_a_log_variances_minimum_and_leaves_the_training_as_it_was(fits, backend):
    assert_scanned(fits[backend][1]["scanned"])
