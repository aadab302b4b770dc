"""loss-param-tracker: see whether the trainable parameters of a Keras loss train.

Data flow: `LossParamTracker` (the callback) finds the loss's variables
(`discovery`), captures their gradients inside the real training step
(`capture`, one implementation per backend), diagnoses them (`diagnosis`) and writes TF summaries in the
format of `tensorboard_plugin.loss_params.metadata`, which the TensorBoard
plugin and `load()` read. `make_trainable` (`fix`) is the fix.

The Keras side is imported on first use, so `load()` and the `report` command
work without TensorFlow.
"""

import importlib

from tensorboard_plugin.loss_params.metadata import STATUSES

_EXPORTS = {
    "Display": "tensorboard_plugin.loss_params.display",
    "LossParamTracker": "loss_param_tracker.callback",
    "LossParamWarning": "loss_param_tracker.callback",
    "LossVariableCreatedError": "loss_param_tracker.capture",
    "make_trainable": "loss_param_tracker.fix",
    "load": "loss_param_tracker.reader",
    "scan": "loss_param_tracker.loss_scan",
    "Scan": "loss_param_tracker.loss_scan",
}

__all__ = sorted([*_EXPORTS, "STATUSES"])


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loss_param_tracker' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__
