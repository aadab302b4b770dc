"""TensorBoard side of loss-param-tracker: the summary format and the "Loss Params" plugin."""
