"""What truly happens to each watched variable of a case, measured without the tracker.

For each watched variable: its value before and after a plain `model.fit`
(no tracker), the gradient of the model's training objective for it on one
batch (a `tf.GradientTape` watching it; for a custom `train_step`, the
objective that step differentiates), whether it is among
`model.trainable_variables`, and its `trainable` flag. From these, its status:

- `frozen`: its `trainable` flag is False;
- `training`: its value changed over the plain fit, by whatever means;
- `no_gradient`: the tape's gradient is None;
- `zero_gradient`: the gradient is all zeros;
- `not_updated`: otherwise (it has a gradient, and nothing moved it).
"""

import dataclasses
import functools

import keras
import numpy as np
import tensorflow as tf

from tests.realworld.cases import CASES_BY_NAME


@dataclasses.dataclass(frozen=True)
class Truth:
    status: str
    trainable: bool
    in_trainable_variables: bool
    changed: bool
    before: np.ndarray
    after: np.ndarray
    gradient: object  # None, or the gradient's L2 norm

    def describe(self):
        grad = "None" if self.gradient is None else f"|g|={self.gradient:.3g}"
        return (
            f"{self.status} (trainable={self.trainable}, in model.trainable_variables="
            f"{self.in_trainable_variables}, changed={self.changed}, gradient {grad}, "
            f"value {_short(self.before)} -> {_short(self.after)})"
        )


def _short(value):
    flat = np.ravel(value)
    text = np.array2string(flat[:4], precision=4)
    return text if flat.size <= 4 else f"{text[:-1]} ...] ({flat.size} values)"


def value(variable):
    return np.array(variable.numpy(), copy=True)


def handle(variable):
    """What a tape watches and what `id` compares: the tf.Variable under a keras.Variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def first_batch(fit_kwargs):
    size = fit_kwargs.get("batch_size", 32)

    def head(a):
        return None if a is None else tf.convert_to_tensor(a[:size])

    x = fit_kwargs["x"]
    x = tuple(head(a) for a in x) if isinstance(x, tuple) else tf.nest.map_structure(head, x)
    y = fit_kwargs.get("y")
    return x, (None if y is None else tf.nest.map_structure(head, y))


def objective(case, model, x, y):
    """The scalar the training step differentiates."""
    if case.objective is not None:
        return case.objective(model, x, y)
    y_pred = model(x, training=True)
    return model.compute_loss(x=x, y=y, y_pred=y_pred)


def gradients(case):
    """`{path: gradient or None}` on the first batch of a fresh build."""
    model, fit_kwargs = case.build()
    x, y = first_batch(fit_kwargs)
    variables = {path: get(model) for path, get in case.watched.items()}
    with tf.GradientTape(persistent=True) as tape:
        for v in variables.values():
            tape.watch(handle(v))
        loss = objective(case, model, x, y)
    result = {
        path: tape.gradient(loss, handle(v), unconnected_gradients=tf.UnconnectedGradients.NONE)
        for path, v in variables.items()
    }
    del tape
    return result


def classify(trainable, changed, gradient):
    if not trainable:
        return "frozen"
    if changed:
        return "training"
    if gradient is None:
        return "no_gradient"
    if not np.any(np.asarray(gradient)):
        return "zero_gradient"
    return "not_updated"


@functools.lru_cache(maxsize=None)
def _measure(name):
    case = CASES_BY_NAME[name]
    model, fit_kwargs = case.build()
    variables = {path: get(model) for path, get in case.watched.items()}
    before = {path: value(v) for path, v in variables.items()}
    model.fit(**fit_kwargs)
    # Read again: the objects the code reads after the fit (they are the same ones here).
    variables = {path: get(model) for path, get in case.watched.items()}
    after = {path: value(v) for path, v in variables.items()}
    trainable_ids = {id(handle(v)) for v in model.trainable_variables}
    grads = gradients(case)
    truths = {}
    for path, v in variables.items():
        grad = grads[path]
        grad = None if grad is None else tf.convert_to_tensor(grad).numpy()
        changed = before[path].shape != after[path].shape or not np.array_equal(before[path], after[path])
        truths[path] = Truth(
            status=classify(bool(v.trainable), changed, grad),
            trainable=bool(v.trainable),
            in_trainable_variables=id(handle(v)) in trainable_ids,
            changed=changed,
            before=before[path],
            after=after[path],
            gradient=None if grad is None else float(np.linalg.norm(grad)),
        )
    return truths


def measure(case):
    """`{path: Truth}` of the case's watched variables (measured once per process)."""
    return _measure(case.name)
