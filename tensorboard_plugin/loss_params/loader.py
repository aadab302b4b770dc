"""The `tensorboard_plugins` entry point of the "Loss Params" plugin.

TensorBoard imports this module at start-up, and an import error here would
stop it from starting; so it imports nothing but TensorBoard's base classes,
and the plugin itself only in `load`, where a failure is logged and the tab
left out.
"""

import logging

from tensorboard.plugins import base_plugin

PLUGIN_NAME = "loss_params"  # metadata.PLUGIN_NAME, without importing protobuf code here

logger = logging.getLogger("loss_param_tracker")


class LossParamsLoader(base_plugin.TBLoader):
    """Loads the plugin, and keeps every epoch of its series on both loaders.

    TensorBoard keeps a sample of each tag's points: 10 for a third-party
    plugin on the Python loader, 100 tensors on the Rust data server. A user
    running plain `tensorboard --logdir logs` should see every epoch, so when
    `--samples_per_plugin` does not name this plugin, it is set to keep all.
    """

    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(PLUGIN_NAME, 0)  # 0 keeps all points

    def load(self, context):
        try:
            from tensorboard_plugin.loss_params import plugin
        except Exception:  # noqa: BLE001 - never stop TensorBoard over this tab
            logger.exception("The Loss Params plugin could not be loaded; its tab is left out.")
            return None
        return plugin.LossParamsPlugin(context)
