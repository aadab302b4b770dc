"""Gradient capture inside the real training step: the PyTorch backend.

Keras's torch trainer runs the forward pass, `compute_loss`, scales the loss
(`optimizer.scale_loss`, mixed precision), calls `loss.backward()`, and hands
the model's gradients to `optimizer.apply`. The hooks here only read:

- `model.optimizer.scale_loss`: the step's loss-scale factor, to report
  unscaled norms;
- `model.optimizer.apply`: the exact gradients of the step, whose norms are
  buffered and added up on their device (no host read per step);
- a tensor hook (`register_hook`) on each loss variable the optimizer is not
  handed: the gradient the same `backward` computes for it, before it would
  be added to `.grad`. A loss variable whose hook did not fire in a step had
  no gradient in it (`no_gradient`). Its `.grad` is left as it is;
- the same `scale_loss`, in an epoch's first `PROBE_STEPS` steps: the
  curvature probe takes the loss variables' gradient of the objective (those
  the optimizer is handed too, to check the fix) with
  `torch.autograd.grad` (`create_graph`, the graph kept for the step's own
  `backward`), and its derivative along a fixed direction in each variable
  alone (a Hessian-vector product). It writes no `.grad`, and the other
  steps pay one comparison in Python;
- `model.zero_grad`, which the step calls before its loss: the hooks count
  the backward passes from there to `optimizer.apply`, as the optimizer's
  gradients do, and not one that other code (a callback) runs between steps.
  Once a fit, where the model's trainable variables hold gradients before
  it, the hook looks whether it cleared them all: it reaches a variable
  only through the model's parameter dict, keyed by `Variable.path`, so
  one whose path another variable has keeps its gradient, and each step
  adds to it (a console note names both).

Nothing of the training computation changes. A hook that fails steps aside
for the rest of the fit and says why in `problems()`.
"""

import operator
from typing import NamedTuple

import torch

from loss_param_tracker.capture import CLEARING, PROBE_MAX_ELEMENTS, PROBE_STEPS, HookedCapture, probe_start
from loss_param_tracker.discovery import Places, variable_key


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


_BUFFERED = 32  # steps whose norms are buffered before they are added up


class StepCapture(HookedCapture):
    """Accumulates gradient norms of the loss's variables and the model's weights (PyTorch)."""

    _HOOKED = (("optimizer", "apply"), ("optimizer", "scale_loss"), ("model", "zero_grad"))

    def __init__(self, model, loss_variables, losses, rediscover, places=Places()):
        super().__init__(model, loss_variables, losses, rediscover, places)
        self._accumulator = None  # float32[2, slots + 3] on the gradients' device: sums, maxes
        self._scale = None  # the loss-scale factor of the step being run
        self._watched = {}  # {key: hook handle} of the unregistered loss variables
        self._pending = {}  # {key: gradient} their hooks received since the last step
        self._plan = None  # the last step's `_Plan`
        self._filled = 0  # steps in the buffer, not yet in the accumulator
        self._scaled = False  # a step's loss was scaled: the buffer's factors are written every step
        self._probes = 0  # the probe's calls since the last reset (`PROBE_STEPS` at most)
        self._probe = {}  # {key: float32[capture.PROBE_ROWS]} this epoch's curvature probe, see `_probe_curvature`
        self._probing = False  # the probe's own backward runs: the gradient hooks leave it out
        self._probe_turn = 0  # where in the probed variables the next step starts, past `_PRODUCTS_A_STEP`
        self._clearing_seen = False  # a zero_grad found gradients to clear, and was checked

    def _install(self):
        self._hook(self._model, "zero_grad", "model.zero_grad", self._zero_grad)
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
            if self._probing:
                return
            with self._guard("loss variable gradient"):
                pending = self._pending.get(key)
                self._pending[key] = grad.detach() if pending is None else pending + grad.detach()

        return hook

    def _zero_accumulators(self):
        self._probes = 0
        self._probe = {}
        if self._accumulator is not None:
            self._filled = 0
            self._accumulator.zero_()

    def _accumulated(self):
        self._fold()
        return self._accumulator.cpu().numpy()

    # Hooks -------------------------------------------------------------

    def _zero_grad(self, original, *args, **kwargs):
        self._pending = {}  # a backward before the step's own is not the step's
        if self._clearing_seen or CLEARING in self._off:
            return original(*args, **kwargs)
        holding = []
        with self._guard(CLEARING):
            holding = [v for v in self._model.trainable_variables if _tensor(v).grad is not None]
        result = original(*args, **kwargs)
        if holding:
            self._clearing_seen = True
            with self._guard(CLEARING):
                self._note_uncleared(holding)
        return result

    def _note_uncleared(self, holding):
        """Notes each of `holding` whose gradient `zero_grad` left in place: each step adds to it."""
        with torch.no_grad():
            uncleared = [v for v in holding if _tensor(v).grad is not None and bool(_tensor(v).grad.any())]
        for variable in uncleared:
            path = variable.path
            others = [v for v in self._model.variables if v is not variable and v.path == path]
            why = (
                f"another variable of the model has the same path, {path!r}, and the model's parameter "
                "dict that zero_grad goes through is keyed by path, so it holds one of them. Give them "
                "different names (the name= of add_weight or keras.Variable)"
                if others
                else "it is not among the model's parameters (model.parameters()), which zero_grad clears"
            )
            self._notes[f"uncleared {path}"] = (
                f"{path}: PyTorch's gradient of this variable is not cleared between training steps: "
                "Keras's step clears gradients with model.zero_grad(), and it left this one in place, so "
                "each step hands the optimizer the sum of every gradient so far, not the step's own. "
                f"Why: {why}."
            )

    def _scale_loss(self, original, loss):
        # The step calls it once, on its objective: an epoch's first calls are its first steps. Counted
        # here, not where the optimizer is handed the gradients: a step whose apply hook stepped
        # aside, or a custom step that never calls it, would probe at every step.
        if self._probes < PROBE_STEPS and "curvature" not in self._off:
            self._probes += 1
            with self._guard("curvature"):
                self._probe_curvature(loss)
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
        """Buffers the norms of the step's gradients: `grads`, a list, the optimizer's for `variables`."""
        if variables is None:
            variables = self._optimizer.trainable_variables
        if self._slots is None:
            before = {variable_key(v) for v in self._loss_variables}
            self._stale = True  # a loss may have created variables in its first call
            self._build_slots([variable_key(v) for v in variables])
            self._created = bool({variable_key(v) for v in self._loss_variables} - before)
            self._watch(self._unregistered_loss_variables())
            self._build_accumulator(next((g.device for g in grads if g is not None), None))
        pending, self._pending = self._pending, {}
        plan = self._plan
        if plan is None or not plan.fits(variables, grads, pending):
            self._fold()  # the rows buffered so far are of the last plan's slots
            plan = self._plan = self._new_plan(variables, grads, pending)
        else:
            self._step_ran()

        # Each step writes its norms to a row of a buffer, which is folded into
        # the sums and maxes every `_BUFFERED` steps and when read: two kernels
        # a step, where the step's own row would take six (a step's Python and
        # dispatch run cold, between Keras's forward and the optimizer).
        norms = self._norm_rows[self._filled]
        if plan.present:
            present = [pending[ref] if hooked else grads[ref] for hooked, ref in plan.present]
            # One fused kernel for every norm, as torch.nn.utils.clip_grad_norm_,
            # in float32 whatever the gradients' dtype.
            found = torch._foreach_norm(present, 2, dtype=torch.float32)
            if plan.index is None:  # every slot, in order, on the buffer's device
                torch.stack(found, out=norms)
            else:
                norms.zero_().index_copy_(0, plan.index, torch.stack([n.to(norms.device) for n in found]))
        else:
            norms.zero_()
        # Every gradient, the loss variables' too, comes from the backward of
        # the scaled loss: unscaled when folded, as the optimizer does.
        if self._scale is not None:
            self._scales[self._filled].copy_(self._scale)
            self._scaled = True
        elif self._scaled:
            self._scales[self._filled].fill_(1.0)
        self._filled += 1
        if self._filled == _BUFFERED:
            self._fold()

    def _probe_curvature(self, objective):
        """Folds into `_probe`, per loss variable (handed to the optimizer or not), its curvature in the
        step's `objective` (the norm of its Hessian-vector product along a fixed direction, in that
        variable alone, the others held), its gradient's smallest element and the signed curvature
        along the direction, element by element, as the TensorFlow and JAX captures keep them.

        Only reads: `torch.autograd.grad` writes no `.grad`, the graph is
        kept for the step's `backward`, and the tracker's own gradient hooks
        leave the probe's passes out. Each product is a pass through the
        whole graph (autograd walks all of it), so a step takes at most
        `_PRODUCTS_A_STEP` of them, the variables in turn from step to step.
        Not probed: a variable someone else hooked (their hook would see the
        probe's gradients), any in a `torch.compile`d step (the probe would
        break its graph) or of more than `PROBE_MAX_ELEMENTS` elements, and
        any that the objective reaches through a custom
        `torch.autograd.Function` (a compiled kernel's, or
        `keras.ops.custom_gradient`'s): autograd differentiates such a
        backward again only as far as it recorded it, and a product missing
        a part would read as less curved, or as linear. A step whose
        gradient for a variable is zero, or not finite, measures nothing of it.
        """
        variables = [v for v in self._probe_variables() if _probed_size(v)]
        if not variables or not (torch.is_tensor(objective) and objective.requires_grad) or _compiled(self._model):
            return  # (no loss variable: nothing to probe)
        probed = [(variable_key(v), _tensor(v)) for v in variables]
        probed = [
            (key, tensor) for key, tensor in probed
            if tensor.requires_grad and _hooked_by_us_only(tensor, ours=key in self._watched)
        ]
        if len(probed) > _PRODUCTS_A_STEP:
            start = self._probe_turn % len(probed)
            self._probe_turn = start + _PRODUCTS_A_STEP
            probed = (probed + probed)[start : start + _PRODUCTS_A_STEP]
        opaque = _through_custom_functions(objective, [tensor for _, tensor in probed])
        probed = [pair for pair, hidden in zip(probed, opaque) if not hidden]
        if not probed:
            return
        keys, tensors = zip(*probed)
        self._probing = True
        try:
            with torch.enable_grad():
                grads = torch.autograd.grad(objective, tensors, create_graph=True, retain_graph=True, allow_unused=True)
                for key, tensor, grad in zip(keys, tensors, grads):
                    if grad is not None:
                        self._probe[key] = _folded(self._probe.get(key), tensor, grad)
        finally:
            self._probing = False

    def _probed(self):
        if self._slots is None:
            return None
        probed = probe_start(len(self._slots))
        known = [(self._slots[key], measured) for key, measured in self._probe.items() if key in self._slots]
        if known:
            columns, values = zip(*known)
            device = values[0].device  # (variables on several devices: one read all the same)
            probed[:, list(columns)] = torch.stack([v.to(device) for v in values], dim=1).cpu().numpy()
        return probed

    def _fold(self):
        """Adds the buffered steps' rows to the sums and the maxes, and empties the buffer."""
        if not self._filled:
            return
        steps, self._filled = self._buffer[: self._filled], 0
        size = len(self._slots)
        norms = steps[:, :size] / steps[:, size:]
        mask = self._plan.mask
        # Zeros where the optimizer is not handed the variable: a boolean index
        # would wait for the device (its size is data-dependent).
        optimizer_norms = norms if mask is None else torch.where(mask, norms, self._zero)
        global_norm = torch.linalg.vector_norm(optimizer_norms, dim=1, keepdim=True)
        captured = torch.ones_like(global_norm)
        rows = torch.cat([norms, global_norm, captured, torch.zeros_like(captured)], dim=1)
        if self._skips_overflow:
            # The optimizer skips a step whose gradients overflowed: so do the
            # norms, and the step counts as skipped.
            rows = torch.where(torch.isfinite(optimizer_norms).all(dim=1, keepdim=True), rows, self._skipped)
        self._sums.add_(rows.sum(dim=0))
        torch.maximum(self._maxes, rows.amax(dim=0), out=self._maxes)

    def _new_plan(self, variables, grads, pending):
        """Where each slot's gradient is found in a step of this shape, which `_note_step` records."""
        by_key = {variable_key(v): index for index, v in enumerate(variables)}
        optimizer_keys = {key: grads[index] is not None for key, index in by_key.items()}
        loss_keys = {key: key in pending for key in self._watched if key not in optimizer_keys}
        self._note_step(optimizer_keys, loss_keys, eager=True)
        sources = {key: (False, index) for key, index in by_key.items() if grads[index] is not None}
        sources.update({key: (True, key) for key, seen in loss_keys.items() if seen})
        slots = [(index, sources[key]) for key, index in self._slots.items() if key in sources]
        present = [source for _, source in slots]
        device = self._buffer.device
        in_order = [index for index, _ in slots] == list(range(len(self._slots))) and all(
            (pending[ref] if hooked else grads[ref]).device == device for hooked, ref in present
        )
        index = None if in_order else torch.tensor([index for index, _ in slots], dtype=torch.long, device=device)
        in_optimizer = [key in optimizer_keys for key in self._slots]
        mask = None if all(in_optimizer) else torch.tensor(in_optimizer, device=device)
        return _Plan(tuple(variables), tuple(g is None for g in grads), frozenset(pending), present, index, mask)

    def _build_accumulator(self, device):
        """The accumulator and the buffer of the steps' norms, on the gradients' device."""
        size = len(self._slots)
        self._accumulator = torch.zeros((2, size + 3), dtype=torch.float32, device=device)
        self._sums, self._maxes = self._accumulator
        self._zero = torch.zeros((), dtype=torch.float32, device=device)
        self._skipped = torch.zeros(size + 3, device=device)  # no norm, no captured step, one skipped
        self._skipped[-1] = 1.0
        # Per buffered step: its norms, then the loss-scale factor it was taken at (1: none).
        self._buffer = torch.ones((_BUFFERED, size + 1), dtype=torch.float32, device=device)
        self._norm_rows = [row[:size] for row in self._buffer]
        self._scales = [row[size] for row in self._buffer]


class _Plan(NamedTuple):
    """A step's shape (its variables, which of their gradients are absent, which loss
    variables' hooks fired) and where each slot's gradient is then found."""

    variables: tuple
    absent: tuple
    pending: frozenset
    present: list  # per slot with a gradient, in slot order: (False, its index in `grads`) or (True, its hook's key)
    index: object  # the slots of `present` as a long tensor; `None` when they are every slot, in order
    mask: object  # bool tensor, the slots the optimizer is handed; `None` when all are

    def fits(self, variables, grads, pending):
        return (
            len(variables) == len(self.variables)
            and all(map(operator.is_, variables, self.variables))
            and all(map(operator.is_, map(_is_none, grads), self.absent))
            and pending.keys() == self.pending
        )


def _is_none(value):
    return value is None


def _through_custom_functions(objective, tensors):
    """Per tensor of `tensors` (leaves), whether a path of the autograd graph from `objective` to it
    passes a custom `torch.autograd.Function`'s node; `True` for all where the graph has more than
    `_GRAPH_NODES` nodes (not walked), or where the objective has no graph (nothing to probe).

    One walk of the graph, each node once: the bits of the tensors a node
    reaches, and of those it reaches through a custom Function.
    """
    bits = {}
    for index, tensor in enumerate(tensors):
        bits[id(tensor)] = bits.get(id(tensor), 0) | 1 << index
    everything = (1 << len(tensors)) - 1
    reach, hidden = {}, {}  # {node: bits}
    stack = [(objective.grad_fn, None)]  # (node, its children once entered)
    while stack:
        node, children = stack.pop()
        if children is None:
            if node is None or node in reach:
                continue
            if len(reach) >= _GRAPH_NODES:
                return [True] * len(tensors)
            children = [child for child, _ in node.next_functions if child is not None]
            reach[node] = hidden[node] = 0  # entered: a DAG never comes back to it before it is done
            stack.append((node, children))
            stack.extend((child, None) for child in children if child not in reach)
            continue
        leaf = getattr(node, "variable", None)
        found = bits.get(id(leaf), 0) if leaf is not None else 0
        concealed = 0
        for child in children:
            found |= reach[child]
            concealed |= hidden[child]
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            concealed |= found
        reach[node], hidden[node] = found, concealed
    top = hidden.get(objective.grad_fn, everything)
    return [bool(top >> index & 1) for index in range(len(tensors))]


def _folded(kept, tensor, grad):
    """`kept` (float32 `[PROBE_ROWS]`, `None` before any) with this step's measurement of the variable
    `tensor`, whose gradient in the objective is `grad` (see `capture.PROBE_ROWS`). No host read."""
    direction = _direction(tensor)
    product = None
    if grad.requires_grad:  # else the gradient depends on no variable: linear
        (product,) = torch.autograd.grad(grad, tensor, grad_outputs=direction, retain_graph=True, allow_unused=True)
    with torch.no_grad():
        gradient = grad.detach().to(torch.float32)
        if product is None:  # the gradient does not depend on the variable itself
            curvature = bend = torch.zeros((), dtype=torch.float32, device=gradient.device)
        else:
            product = product.detach().to(torch.float32)
            curvature = torch.linalg.vector_norm(product)
            bend = torch.max(direction.to(torch.float32) * product)
        measured = torch.stack([curvature, gradient.min(), bend, gradient.max()])
        if kept is None:
            kept = torch.from_numpy(probe_start(1)[:, 0]).to(gradient.device)
        folded = torch.stack([
            torch.maximum(kept[0], measured[0]), torch.minimum(kept[1], measured[1]), torch.maximum(kept[2], measured[2]),
            torch.maximum(kept[3], measured[3]),
        ])
        # A zero gradient measures nothing, nor does one that overflowed.
        seen = torch.any(gradient != 0) & torch.isfinite(measured).all()
        return torch.where(seen, folded, kept)


# Products (one pass through the step's graph each) the probe takes in a step at most.
_PRODUCTS_A_STEP = 8

# The most nodes of a step's autograd graph `_through_custom_functions` walks: 2.5 to 5 us a node,
# about 50 ms at this size, at each of an epoch's probed steps. A larger graph is not probed.
_GRAPH_NODES = 20_000


def _direction(tensor):
    """A fixed, generic direction in the variable's space (see the TensorFlow capture's `_direction`)."""
    index = torch.arange(tensor.numel(), dtype=torch.float32, device=tensor.device)
    return (1.0 + 0.5 * torch.sin(index * 2.3 + 0.7)).reshape(tensor.shape).to(tensor.dtype)


def _probed_size(variable):
    """Whether the variable is small enough to probe (a loss term's weight, not a network's kernel),
    and not empty (its gradient would have no smallest element)."""
    return 0 < _tensor(variable).numel() <= PROBE_MAX_ELEMENTS


def _compiled(model):
    """Whether the step runs under `torch.compile`: Keras's `jit_compile`, or the user's own."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(model.jit_compile) or bool(compiling and compiling())


def _hooked_by_us_only(tensor, ours):
    """Whether no backward hook is on the tensor but the tracker's own (`StepCapture._watch`), where
    `ours` says it put one there (a loss variable the optimizer is not handed)."""
    hooks = getattr(tensor, "_backward_hooks", None)
    return hooks is None or len(hooks) <= int(ours)


def _tensor(variable):
    """The `torch.nn.Parameter` behind a `keras.Variable` (or the tensor itself)."""
    return getattr(variable, "value", variable)
