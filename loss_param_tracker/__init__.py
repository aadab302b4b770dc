"""loss-param-tracker: see whether the trainable parameters of a Keras loss train.

Data flow: `LossParamTracker` (the callback) finds the loss's variables
(`discovery`), captures their gradients inside the real training step
(`capture_tf`), diagnoses them (`diagnosis`) and writes TF summaries in the
format of `tensorboard_plugin.loss_params.metadata`, which the TensorBoard
plugin reads.
"""

from loss_param_tracker.callback import LossParamTracker, LossParamWarning
from loss_param_tracker.capture_tf import LossVariableCreatedError
from tensorboard_plugin.loss_params.metadata import STATUSES

__all__ = [
    "LossParamTracker",
    "LossParamWarning",
    "LossVariableCreatedError",
    "STATUSES",
]
