"""Realistic trainable losses with known answers, each trained twice.

Every demo trains the loss as users usually write it (the parameters held by
the loss: `fit` never trains them, status `not_updated`) and the same loss
after `loss_param_tracker.make_trainable(model, loss)` (it converges), each
with a `LossParamTracker` in `log_dir/<demo>_<variant>`, then prints the
learned parameters against their analytic values.

- `demo.uncertainty`: multi-task uncertainty weighting (Kendall et al. 2018).
- `demo.noise`: a Gaussian negative log-likelihood with a learned noise
  variance.
- `demo.contrastive`: a CLIP-style contrastive loss with a learned
  temperature, plus a run where the temperature goes through numpy
  (`no_gradient`).

Run one with `python -m demo.uncertainty`, all with `python -m demo` (`--quick`
for a fifth of the epochs); then
`tensorboard --logdir logs` or `python -m loss_param_tracker report logs`.
"""

DEMOS = ("uncertainty", "noise", "contrastive")
