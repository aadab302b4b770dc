"""Patterns reduced from public code: the tracker's diagnosis against the truth measured without it.

For each case of `tests/realworld/cases.py`:
(a) the truth of each watched variable, measured by a plain fit and a tape
    (`tests/realworld/truth.py`), is the one its source implies;
(b) a fit with `LossParamTracker` diagnoses each watched variable as the truth
    says, and gives no `make_trainable` advice for a variable that trains or is
    frozen;
(c) where the truth is `not_updated`, the warning's `make_trainable(...)` call,
    evaluated on a fresh build, makes the variable train; where the loss has
    no minimum in it, no warning advises `make_trainable`.
"""

import re
import warnings

import numpy as np
import pytest

from loss_param_tracker import LossParamTracker, LossParamWarning, make_trainable
from tests.realworld.cases import CASES
from tests.realworld.truth import measure, value


def _fit_tracked(model, fit_kwargs, log_dir):
    """Fits with the tracker appended to the case's callbacks; returns the tracker and its warnings."""
    tracker = LossParamTracker(log_dir=str(log_dir))
    kwargs = dict(fit_kwargs, callbacks=list(fit_kwargs.get("callbacks", [])) + [tracker])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(**kwargs)
    return tracker, [str(w.message) for w in caught if issubclass(w.category, LossParamWarning)]


def _naming(messages, path):
    return [m for m in messages if f"'{path}'" in m]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_truth_measured_without_the_tracker_is_the_sources(case):
    truths = measure(case)
    measured = {path: t.status for path, t in truths.items()}
    details = "\n".join(f"  {path}: {t.describe()}" for path, t in truths.items())
    assert measured == case.expected, f"{case.name}: the reduction does not behave as its source\n{details}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tracker_diagnosis_matches_the_truth(case, tmp_path):
    truths = measure(case)
    model, fit_kwargs = case.build()
    tracker, warned = _fit_tracked(model, fit_kwargs, tmp_path / "logs")
    problems = []
    for path, truth in truths.items():
        got = tracker.diagnosis.get(path, "<not diagnosed>")
        if got != truth.status:
            problems.append(f"  {path}: truth {truth.describe()}; tracker says {got}")
        if truth.status in ("training", "frozen") or not case.bounded:
            for message in _naming(warned, path):
                if "make_trainable" in message:
                    problems.append(f"  {path}: truth {truth.status}, yet a warning advises make_trainable: {message}")
    assert not problems, (
        f"{case.name} ({case.source})\n" + "\n".join(problems) + "\nwarnings:\n" + "\n".join(f"  {m}" for m in warned)
    )


BROKEN = [c for c in CASES if "not_updated" in c.expected.values() and c.bounded]


@pytest.mark.parametrize("case", BROKEN, ids=[c.name for c in BROKEN])
def test_advised_fix_makes_a_not_updated_variable_train(case, tmp_path):
    truths = measure(case)
    broken = [path for path, t in truths.items() if t.status == "not_updated"]
    assert broken, f"{case.name}: the truth has no not_updated variable, its source implies one"
    model, fit_kwargs = case.build()
    _, warned = _fit_tracked(model, fit_kwargs, tmp_path / "broken")
    for path in broken:
        advice = [m for m in _naming(warned, path) if re.search(r"make_trainable\([^)]*\)", m)]
        assert advice, f"{case.name}: no warning for '{path}' gives a make_trainable(...) call; warnings: {warned}"
        call = re.search(r"make_trainable\([^)]*\)", advice[0]).group(0)

        model, fit_kwargs = case.build()
        eval(call, {"make_trainable": make_trainable, "model": model})  # the advice, as given
        variable = case.watched[path](model)
        before = value(variable)
        tracker, warned_fixed = _fit_tracked(model, fit_kwargs, tmp_path / f"fixed_{broken.index(path)}")
        after = value(case.watched[path](model))
        assert not np.array_equal(before, after), (
            f"{case.name}: after {call}, '{path}' still ends at its initial value {before}; warnings: {warned_fixed}"
        )
        status = tracker.diagnosis.get(path, "<not diagnosed>")
        assert status == "training", (
            f"{case.name}: after {call}, '{path}' moved ({before} -> {after}) but the tracker says {status};"
            f" warnings: {warned_fixed}"
        )
