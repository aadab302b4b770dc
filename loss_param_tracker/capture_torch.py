"""Gradient capture inside the real training step: the PyTorch backend.

Keras's torch trainer runs the forward pass, `compute_loss`, scales the loss
(`optimizer.scale_loss`, mixed precision), calls `loss.backward()`, and hands
the model's gradients to `optimizer.apply`. The hooks here only read:

- `model.optimizer.scale_loss`: the step's loss-scale factor, to report
  unscaled norms;
- `model.optimizer.apply`: the exact gradients of the step, whose norms are
  added to an accumulator on their device (no host read per step);
- a tensor hook (`register_hook`) on each loss variable the optimizer is not
  handed: the gradient the same `backward` computes for it, before it would
  be added to `.grad`. A loss variable whose hook did not fire in a step had
  no gradient in it (`no_gradient`). Its `.grad` is left as it is.

Nothing of the training computation changes. A hook that fails steps aside
for the rest of the fit and says why in `problems()`.
"""

import torch

from loss_param_tracker.capture import HookedCapture
from loss_param_tracker.discovery import variable_key


def flat_reader(variables):
    """All `variables`' values in one copy to the host, flattened and concatenated as float64."""

    def read():
        with torch.no_grad():
            flat = torch.cat([_tensor(v).detach().reshape(-1).to(torch.float64) for v in variables])
        return flat.cpu().numpy()

    return read


def writes_summaries(model):
    """Whether this process writes: of a `torch.distributed` fit, rank 0 only."""
    distributed = torch.distributed
    return not (distributed.is_available() and distributed.is_initialized()) or distributed.get_rank() == 0


class StepCapture(HookedCapture):
    """Accumulates gradient norms of the loss's variables and the model's weights (PyTorch)."""

    _HOOKED = (("optimizer", "apply"), ("optimizer", "scale_loss"))

    def __init__(self, model, loss_variables, losses, rediscover):
        super().__init__(model, loss_variables, losses, rediscover)
        self._accumulator = None  # float32[2, slots + 3] on the gradients' device
        self._scale = None  # the loss-scale factor of the step being run
        self._watched = {}  # {key: hook handle} of the unregistered loss variables
        self._pending = {}  # {key: gradient} their hooks received since the last step

    def _install(self):
        self._hook(self._optimizer, "scale_loss", "optimizer.scale_loss", self._scale_loss)
        self._hook(self._optimizer, "apply", "optimizer.apply", self._apply)
        self._watch(self._unregistered_loss_variables())

    def _restore(self):
        for handle in self._watched.values():
            handle.remove()
        self._watched = {}
        super()._restore()

    def _watch(self, variables):
        for variable in variables:
            key = variable_key(variable)
            if key not in self._watched:
                self._watched[key] = _tensor(variable).register_hook(self._gradient_hook(key))

    def _gradient_hook(self, key):
        def hook(grad):
            with self._guard("loss variable gradient"):
                pending = self._pending.get(key)
                self._pending[key] = grad.detach() if pending is None else pending + grad.detach()

        return hook

    def reset(self):
        if self._accumulator is not None:
            self._accumulator.zero_()

    def _accumulated(self):
        return self._accumulator.cpu().numpy()

    # Hooks -------------------------------------------------------------

    def _scale_loss(self, original, loss):
        scaled = original(loss)
        if scaled is not loss and torch.is_tensor(loss):  # an optimizer that scales
            with self._guard("optimizer.scale_loss"), torch.no_grad():
                self._scale = original(torch.ones((), dtype=torch.float32, device=loss.device))
        return scaled

    def _apply(self, original, grads, trainable_variables=None):
        with self._guard("optimizer.apply"), torch.no_grad():
            self._record_step(list(grads), trainable_variables)
        self._scale = None
        return original(grads, trainable_variables)

    def _record_step(self, grads, variables):
        if variables is None:
            variables = self._optimizer.trainable_variables
        by_key = {variable_key(v): g for v, g in zip(variables, grads)}
        optimizer_keys = {k: g is not None for k, g in by_key.items()}
        if self._slots is None:
            before = {variable_key(v) for v in self._loss_variables}
            self._stale = True  # a loss may have created variables in its first call
            self._build_slots(list(by_key))
            self._created = bool({variable_key(v) for v in self._loss_variables} - before)
            self._watch(self._unregistered_loss_variables())
            self._build_accumulator(next((g.device for g in grads if g is not None), None), optimizer_keys)
        pending, self._pending = self._pending, {}
        loss_keys = {k: k in pending for k in self._watched if k not in optimizer_keys}
        self._note_step(optimizer_keys, loss_keys)
        by_key.update({k: pending[k] for k, seen in loss_keys.items() if seen})

        # Every gradient, the loss variables' too, comes from the backward of
        # the scaled loss: unscaled here, as the optimizer does.
        accumulator = self._accumulator
        norms = [self._zero] * len(self._slots)
        present = [(index, by_key[key]) for key, index in self._slots.items() if by_key.get(key) is not None]
        if present:
            # One fused kernel for every norm, as torch.nn.utils.clip_grad_norm_.
            for (index, _), norm in zip(present, torch._foreach_norm([g for _, g in present])):
                norms[index] = norm.to(accumulator.device, torch.float32)
        norms = torch.stack(norms)
        if self._scale is not None:
            norms = norms / self._scale.to(accumulator.device, torch.float32)
        # Zeros where the optimizer is not handed the variable: a boolean index
        # would wait for the device at every step (its size is data-dependent).
        optimizer_norms = torch.where(self._in_optimizer, norms, self._zero)
        global_norm = torch.linalg.vector_norm(optimizer_norms).reshape(1)
        row = torch.cat([norms, global_norm, self._captured])
        if self._skips_overflow:
            # The optimizer skips a step whose gradients overflowed: so do the
            # norms, and the step counts as skipped.
            row = torch.where(torch.isfinite(optimizer_norms).all(), row, self._skipped)
        accumulator[0].add_(row)
        torch.maximum(accumulator[1], row, out=accumulator[1])

    def _build_accumulator(self, device, optimizer_keys):
        """The accumulator and the constant parts of a step's row, on the gradients' device."""
        size = len(self._slots)
        self._accumulator = torch.zeros((2, size + 3), dtype=torch.float32, device=device)
        self._zero = torch.zeros((), dtype=torch.float32, device=device)
        self._in_optimizer = torch.tensor([key in optimizer_keys for key in self._slots], device=device)
        self._captured = torch.tensor([1.0, 0.0], device=device)  # one more captured step
        self._skipped = torch.zeros(size + 3, device=device)
        self._skipped[-1] = 1.0


def _tensor(variable):
    """The `torch.nn.Parameter` behind a `keras.Variable` (or the tensor itself)."""
    return getattr(variable, "value", variable)
