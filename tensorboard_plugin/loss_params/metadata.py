"""The summary format shared by the Keras callback and the TensorBoard plugin.

This module is the one contract between the writer side
(`loss_param_tracker`) and the reader side (the plugin, `load()`, the report
command). It imports neither TensorFlow nor Keras, so TensorBoard can load it
without them.

Each summary's `plugin_data.content` is a serialized `LossParamsPluginData`
message that says whose series it is (role), what it holds (kind, and for a
vector kind which element or field) and for which variable (path). The vector
kinds (VALUE, STATS, GRAD_NORM, WEIGHT_NORMS) are written as scalar summaries
(`DATA_CLASS_SCALAR`), one per element or field, because TensorBoard's Rust
data server hands scalars over as packed arrays but decodes tensors point by
point, tens of times slower. HISTOGRAM and DIAGNOSIS are tensor summaries.
Tags are `<path>/<suffix>[/<field>]`, for example
`loss/GaussianNLL/log_var/value` or `loss/GaussianNLL/log_var/grad_norm/mean`;
see `tag()`.
"""

import dataclasses

from tensorboard.compat.proto import summary_pb2

from tensorboard_plugin.loss_params import plugin_data_pb2

PLUGIN_NAME = "loss_params"

# Bump when the meaning of a field or of a kind's tensor changes. Readers skip
# series written with a newer version than they know, and read older ones.
# 2: DIAGNOSIS rows gained a third column, the cause; the STEPS kind.
# 3: DIAGNOSIS is one string, the table as JSON (see `series.diagnosis_table`).
# (New causes, such as fix_not_reached and unbounded, need no bump: a
# reader keeps a cause it does not know.)
PROTO_VERSION = 3

PluginData = plugin_data_pb2.LossParamsPluginData

ROLE_LOSS = PluginData.LOSS
ROLE_MODEL = PluginData.MODEL
ROLE_RUN = PluginData.RUN

VALUE = PluginData.VALUE
STATS = PluginData.STATS
HISTOGRAM = PluginData.HISTOGRAM
GRAD_NORM = PluginData.GRAD_NORM
WEIGHT_NORMS = PluginData.WEIGHT_NORMS
DIAGNOSIS = PluginData.DIAGNOSIS
STEPS = PluginData.STEPS

EPOCH = PluginData.EPOCH
BATCH = PluginData.BATCH

# A loss variable with at most this many elements is logged whole (VALUE);
# a larger one as STATS and HISTOGRAM.
MAX_WHOLE_ELEMENTS = 64
HISTOGRAM_BINS = 30

# Kinds written as scalar series, one per element (VALUE) or field.
SCALAR_KINDS = frozenset({VALUE, STATS, GRAD_NORM, WEIGHT_NORMS, STEPS})

# Names of the entries of the vector-valued kinds, in order.
FIELDS = {
    STATS: ("mean", "std", "min", "max", "l2"),
    GRAD_NORM: ("mean", "max"),
    WEIGHT_NORMS: ("norm", "grad_norm_mean", "grad_norm_max", "update_ratio"),
    STEPS: ("captured", "skipped"),
}

# Roles and kinds by name: tag suffixes (`tag()`), the fields of `load()`'s
# variables and the JSON bodies' keys. Every reader names them from here.
ROLE_NAMES = {ROLE_LOSS: "loss", ROLE_MODEL: "model", ROLE_RUN: "run"}
KIND_NAMES = {
    VALUE: "value",
    STATS: "stats",
    HISTOGRAM: "histogram",
    GRAD_NORM: "grad_norm",
    WEIGHT_NORMS: "norms",
    DIAGNOSIS: "diagnosis",
    STEPS: "steps",
}

# Paths of the run-level series.
RUN_GRAD_NORM = "run/global"
RUN_MODEL = "run/model"  # WEIGHT_NORMS of all the model's weights as one vector
RUN_DIAGNOSIS = "run"
RUN_STEPS = "run"  # STEPS: training steps captured, and skipped for overflow


@dataclasses.dataclass(frozen=True)
class Status:
    """One status of the diagnosis: a row of `STATUS_TABLE`.

    Attributes:
        name: The status, as written in the diagnosis series.
        meaning: One line: what was observed of a variable with it.
        fix: One line: what to do about it (`""` for a healthy status).
        severity: How a reader shows it: `"good"`, `"warn"`, `"bad"` or
            `"info"` (the tab's colour, the report's exit code).
        warned: Whether the console warns about a loss variable with it.
    """

    name: str
    meaning: str
    fix: str
    severity: str
    warned: bool = False


@dataclasses.dataclass(frozen=True)
class Cause:
    """Why a variable has its status, where a status has several causes that call for different fixes.

    Its `meaning` and `fix` replace the status's own.
    """

    name: str
    meaning: str
    fix: str


FROZEN = "frozen"
NON_FINITE = "non_finite"
NO_GRADIENT = "no_gradient"
NOT_UPDATED = "not_updated"
ZERO_GRADIENT = "zero_gradient"
NO_MINIMUM = "no_minimum"
TRAINING = "training"

# Every status, in order of precedence: where several apply, the first one
# wins; except that a trainable variable whose value moved while the
# optimizer was not handed it is `training` (updated outside the optimizer)
# unless non_finite. Adding a status is adding a row here (and its rule in
# `loss_param_tracker.diagnosis`): the warnings, the report, `/runs` and the
# tab's colours read this table.
STATUS_TABLE = (
    Status(FROZEN, "trainable=False: it is not meant to train.", "", "info"),
    Status(
        NON_FINITE,
        "Its value or gradient is NaN or Inf.",
        "Lower the learning rate, clip the gradient, or keep the parameter in range "
        "(e.g. learn a log, guard log(0) with an epsilon).",
        "bad",
        warned=True,
    ),
    Status(
        NO_GRADIENT,
        "The loss did not depend on it differentiably in any step of the epoch (gradient "
        "is None).",
        "Compute the loss with TensorFlow/keras.ops only: no numpy, Python float(), int "
        "casts or stop_gradient on the path to the variable. (A loss that reads it in some "
        "steps only, after a warm-up or for some batches, gives it a gradient from the "
        "first such step. If it is meant to stay constant, as a hyperparameter the loss "
        "reads under stop_gradient on purpose, create it with trainable=False.)",
        "bad",
        warned=True,
    ),
    Status(
        NOT_UPDATED,
        "It is trainable and has a gradient, but nothing changed its value.",
        "Call loss_param_tracker.make_trainable(model) after compile and before fit, so that "
        "the optimizer trains it.",
        "bad",
        warned=True,
    ),
    Status(
        ZERO_GRADIENT,
        "Its gradient was exactly zero for the whole epoch.",
        "Look for a dead branch, a clamp or a saturated op (relu, clip, minimum) between the "
        "variable and the loss.",
        "warn",
    ),
    Status(
        NO_MINIMUM,
        "The optimizer trains it, and descent has shown no minimum in it: the objective was linear in "
        "it (no curvature) at every step the probe measured in the fit, and its gradient had one "
        "sign in the last epoch's (and in one more epoch before it for each epoch whose steps turned "
        "its sign, at most 3 in all), or it is a compile(loss_weights=...) variable. Descent on a model "
        "and a variable the objective is linear in has no minimum, only saddles: it moves the "
        "variable for as long as that lasts, which for the weight of a loss term (a focal loss's "
        "class weight, a learned label-smoothing epsilon; an entropy bonus's, raised) is without "
        "bound: the loss falls without end as the model gets worse. A margin or a threshold that "
        "the loss reads through a hinge looks the same until terms that pull the other way turn on, "
        "where it has its minimum: its gradient then turns from step to step, and this status "
        "changes.",
        "If it is the weight of a term, take it out of the optimizer: set it from a callback or a "
        "schedule, or create it with trainable=False (make_trainable(model, variables=[...]) "
        "attaches only the variables named); to learn task weights, add the term that bounds them "
        "(uncertainty weighting's log-variances). If it is a hinge's margin or threshold, check in "
        "the tab that it settles.",
        "bad",
        warned=True,
    ),
    Status(TRAINING, "Its value moves; its gradient is finite and non-zero.", "", "good"),
)
STATUS = {s.name: s for s in STATUS_TABLE}
STATUSES = tuple(STATUS)
WARNED_STATUSES = tuple(s.name for s in STATUS_TABLE if s.warned)

NOT_IN_OPTIMIZER = "not_in_optimizer"
NOT_IN_OPTIMIZER_GRADIENT_UNKNOWN = "not_in_optimizer_gradient_unknown"
OPTIMIZER_NO_EFFECT = "optimizer_no_effect"
HELD_BY_CONSTRAINT = "held_by_constraint"
OUTSIDE_OPTIMIZER = "outside_optimizer"
GRADIENT_UNKNOWN = "gradient_unknown"
FIX_NOT_REACHED = "fix_not_reached"
FIX_NOT_HANDED = "fix_not_handed"
NOT_READ = "not_read"
UNBOUNDED = "unbounded"
LINEAR = "linear"
CONCAVE = "concave"
MOVED_WITHOUT_GRADIENT = "moved_without_gradient"
CONSTANT_IN_STEP = "constant_in_compiled_step"
ASSIGNMENT_DROPPED = "assignment_dropped"
LOSS_NON_FINITE = "loss_non_finite"

CAUSE_TABLE = (
    Cause(
        NOT_IN_OPTIMIZER,
        "The optimizer is not handed it and nothing else moved it during the epoch's "
        "steps: model.fit only trains model.trainable_variables.",
        STATUS[NOT_UPDATED].fix + " (If it is meant to stay constant, create it with trainable=False. "
        "Descent trains it only where the loss has a minimum in it: one that falls for as long as it "
        "moves, as for a term's weight, a focal exponent or a margin, drives it off instead; "
        "print(loss_param_tracker.scan(model, x[:256], y[:256], '<its path>', values)) shows which, "
        "the loss at each value on a batch.)",
    ),
    Cause(
        NOT_IN_OPTIMIZER_GRADIENT_UNKNOWN,
        "The optimizer is not handed it and nothing else moved it during the epoch's "
        "steps; whether the objective has a gradient for it could not be observed (the "
        "console says why: a training step that computes its loss without "
        "model.compute_loss or the compiled loss object, add_loss terms, or a variable found on the model's layers, on JAX; a "
        "tf.py_function between it and the loss).",
        "If the training step's loss reads it and it is meant to train: call "
        "loss_param_tracker.make_trainable(model) after compile and before fit; the next "
        "fit shows whether it then gets a gradient and moves. If it is meant to stay "
        "constant, create it with trainable=False.",
    ),
    Cause(
        OPTIMIZER_NO_EFFECT,
        "The optimizer is handed it and its gradient, but its value did not change.",
        "Check the learning rate (0, or a schedule at 0) and the optimizer's exclusions "
        "(exclude_from_weight_decay, a gradient mask, a frozen sub-optimizer).",
    ),
    Cause(
        HELD_BY_CONSTRAINT,
        "The optimizer is handed it and its gradient, but its value did not change, and it has a "
        "constraint, which the optimizer applies after each update: the loss pulls it out of the "
        "range the constraint allows, and the constraint sets it back to its bound.",
        "Nothing, if the bound is meant. Otherwise widen the constraint, or learn it in a form that "
        "stays in range without one (its log, with exp() where the loss reads it).",
    ),
    Cause(
        OUTSIDE_OPTIMIZER,
        "Its value moves, though model.optimizer is not handed it: something else "
        "updates it (a second optimizer, an assign in the loss or a callback). Healthy.",
        "",
    ),
    Cause(
        GRADIENT_UNKNOWN,
        "Its gradient could not be observed (the console says why: a training step that "
        "computes its loss without model.compute_loss or the compiled loss object, add_loss "
        "terms on JAX, a tf.py_function between it and the loss).",
        "",
    ),
    Cause(
        FIX_NOT_REACHED,
        "make_trainable handed it to the optimizer, but the objective has no gradient for "
        "it, and the training step does not read it: the code that computes the loss reads "
        "another variable (one captured before the fix, by a traced tf.function or a copy), "
        "reads its value outside the step's graph (.numpy() in a tf.py_function), or skips "
        "it on a branch decided when the step was traced (an `if` on a Python flag, which a "
        "callback changes later: the compiled step keeps the branch it was traced with).",
        "Create the variable as keras.Variable(...) where the loss's code reads it, or call "
        "make_trainable(model) before anything traces that code (summary(), a first call); "
        "pass it to a tf.py_function as an input, not by .numpy() inside; branch on a variable "
        "(multiply the term by a 0/1 keras.Variable the callback assigns, on JAX one assigned to the "
        "model), not on a Python value.",
    ),
    Cause(
        NOT_READ,
        "The training step does not read it at all, so the loss cannot depend on it: a variable kept "
        "beside the model or the loss (a copy of the weights, a counter, a statistic) that no step "
        "reads, or one the loss's code no longer reaches (it reads another variable, the "
        "variable's value outside the step's graph, or skips it on a branch decided when the step "
        "was traced: an `if` on a Python flag that a callback changes later).",
        "If the loss is not meant to read it, create it with trainable=False (the tracker then shows "
        "it frozen). If it is, have the loss's code read this very variable inside the step (pass it "
        "to a tf.py_function as an input, not by .numpy() inside; branch on a 0/1 keras.Variable "
        "the callback assigns, on JAX one assigned to the model, not on a Python value).",
    ),
    Cause(
        FIX_NOT_HANDED,
        "make_trainable attached it to the model, but the training steps did not hand it to the "
        "optimizer, and nothing else moved it: a custom train_step that differentiates and applies "
        "a list of its own (a sub-model's trainable_variables).",
        "In the train_step, differentiate the loss with respect to self.trainable_variables, which "
        "holds it now, and hand those to optimizer.apply; or add it to the list the step uses.",
    ),
    Cause(
        UNBOUNDED,
        "Nothing changed it; the objective was linear in it (no curvature) with a gradient that "
        "never pointed down, at every step measured, or it is a compile(loss_weights=...) "
        "variable: descent lowers it for as long as that lasts, which for the weight of a loss "
        "term is without bound, so handing it to the optimizer is not the fix. A margin or a "
        "threshold that the loss reads through a hinge (relu, max, |y - c|) looks the same where "
        "every active term pulls it one way: descent lowers it until terms that pull the other "
        "way turn on, where it has a minimum (MarginLoss's beta, between the positive and the "
        "negative distances), or until every term turns off and the loss is 0 (a triplet "
        "margin, which then teaches the model nothing).",
        "If a callback or a schedule sets it (Dynamic Weight Averaging, an annealed loss "
        "weight), it stays put until the callback first assigns it; if it is a constant, "
        "create it with trainable=False; to learn task weights, add a term that bounds "
        "them (uncertainty weighting's log-variances).",
    ),
    Cause(
        LINEAR,
        "Nothing changed it; the objective was linear in it (no curvature) at every step "
        "measured, and its gradient pointed down at some step. Where it is linear throughout, "
        "descent has no minimum in it while the model stays put, and would move it as its mean "
        "gradient says, raising it where that points down: a Lagrange multiplier trained by "
        "gradient reversal wants exactly that; the weight of a bonus term (an entropy bonus "
        "subtracted from the loss) or a quantile level (a pinball loss's tau) must not get it. "
        "A threshold or a margin that the loss reads through hinges (an ordinal loss's "
        "cut-points) is linear only between its kinks, and has its minimum at one.",
        "For a multiplier trained by gradient reversal, or a hinge's threshold or margin: call "
        "loss_param_tracker.make_trainable(model) after compile and before fit (for a "
        "threshold, check in the tab that it settles). For a term's weight or a quantile "
        "level: set it from a callback, or create it with trainable=False.",
    ),
    Cause(
        CONCAVE,
        "Nothing changed it; the objective curved down in it at every step the probe measured in its "
        "last epoch (negative curvature along the probe's direction, in every element), so its value "
        "is not at a minimum now: descent "
        "would move it away, faster as it goes, and finds a minimum only where the loss turns "
        "up farther on, which the probe does not see: a softmax temperature learned as its log "
        "can curve down where it starts and settle all the same (NT-Xent's, near 0.1); a Tversky "
        "loss's alpha and beta, or a temperature that also scales the loss, fall without end. The "
        "dual variable of a min-max loss (AUC-M's alpha) is to be maximised, not minimised.",
        "If the loss is to be maximised in it (a min-max dual), train it by ascent: reverse its "
        "gradient where the loss reads it, or give it a second optimizer on the negated "
        "gradient; handing it to model.optimizer would minimise it. If it is meant to be learned "
        "by descent, look farther first: print(loss_param_tracker.scan(model, x[:256], y[:256], "
        "'<its path>', values)) computes the loss on a batch at each value, the model as it "
        "stands (give values on the side descent takes it). Where the loss turns up inside the "
        "range, it has a minimum there: call "
        "loss_param_tracker.make_trainable(model) after compile and before fit, and check in the "
        "tab that it settles. Where it falls to the range's end, learn it in a form the loss bounds "
        "(its log, if it is not one already; the term its method adds). If it is a constant, create "
        "it with trainable=False.",
    ),
    Cause(
        CONSTANT_IN_STEP,
        "Its value moves (something assigns it: a callback, a schedule), but JAX's compiled "
        "training step holds the value it had when the step was traced, since the variable is "
        "not part of the model's state: training never sees the change.",
        "Make it part of the model's state, which the compiled step reads at every step: assign "
        "it to the model before fit (model.loss_weight = loss.weight; create it with "
        "trainable=False if nothing but the callback is to change it), or compile with "
        "jit_compile=False.",
    ),
    Cause(
        ASSIGNMENT_DROPPED,
        "The loss assigns it in the training step (assign, assign_add: a running statistic, a step "
        "counter), but JAX's step keeps what the loss assigns to the model's non-trainable variables "
        "only: this one's assignments are dropped at every step, so it never changes as the loss's "
        "code says (on TensorFlow and PyTorch it does).",
        "Make it one of the model's non-trainable variables, whose assignments the step keeps: create "
        "it with trainable=False and assign it to the model before fit (model.running_mean = "
        "loss.running_mean); or update it from a callback.",
    ),
    Cause(
        LOSS_NON_FINITE,
        "Its value moves and is finite (its gradient too, where observed), but the training "
        "loss Keras logged for the epoch is NaN or Inf: a step's loss was.",
        "Look at its trajectory (the tab, load(), the report's sparkline). Where descent drove it "
        "out of the loss's domain (a variance through zero under a log), learn it in a form that "
        "stays in range: its log, with exp() where the loss reads it. Where the loss fell for as "
        "long as it moved (a Huber delta, a margin), descent has no minimum in it: keep it "
        "constant (trainable=False). Otherwise lower the learning rate or clip the gradient; "
        "keras.callbacks.TerminateOnNaN stops a fit at its first NaN loss.",
    ),
    Cause(
        MOVED_WITHOUT_GRADIENT,
        "Its gradient was exactly zero at every step of the epoch, yet its value changed: "
        "something other than that gradient moved it (a second optimizer that a custom "
        "train_step hands the real gradient, an assign in the loss or a callback, weight decay, "
        "or momentum from earlier steps).",
        "If a custom train_step trains it with another optimizer, or the loss or a callback assigns "
        "it, nothing to do. Otherwise "
        "look for a dead branch, a clamp or a saturated op (relu, clip, minimum) between the "
        "variable and the loss.",
    ),
)
CAUSES = {c.name: c for c in CAUSE_TABLE}
# The causes whose fix is to hand the variable to the optimizer (make_trainable).
ATTACHED_BY_THE_FIX = frozenset({NOT_IN_OPTIMIZER, NOT_IN_OPTIMIZER_GRADIENT_UNKNOWN})

# The fix of a network held by the loss that nothing trains (`not_in_optimizer`):
# a perceptual loss's feature extractor is usually meant to stay as it is,
# and training it with the model lets it shrink the features the loss compares.
NETWORK_FIX = (
    "If it is a fixed feature extractor (a perceptual or style loss's network), set its "
    "trainable=False: it is then frozen. If it is meant to learn with the model (a learned "
    "loss, a critic), call loss_param_tracker.make_trainable(model) after compile and before fit."
)


# Where a fix gives a line to copy, the variable's path stands as this: the
# warning, the report and the tab (static/views.js) put the path in its place.
PATH_PLACEHOLDER = "'<its path>'"


def for_path(fix, path):
    """`fix` with `path` in place of `PATH_PLACEHOLDER`, so that the line to copy names its variable."""
    return fix.replace(PATH_PLACEHOLDER, repr(path))


def advice(status, cause=""):
    """Returns `(meaning, fix)` of a status and its cause; `("", "")` for names this version does not know."""
    row = CAUSES.get(cause) or STATUS.get(status)
    return (row.meaning, row.fix) if row else ("", "")


def severity(status):
    """The status's severity (see `Status`), `"unknown"` for one this version does not know."""
    row = STATUS.get(status)
    return row.severity if row else "unknown"


def tag(path, kind, granularity=EPOCH, field=""):
    """Returns the tag of `path`'s series of `kind` (and `field`, for a scalar series).

    Without `field`, the tag names the kind's series as a whole, which is also
    how readers key a vector reassembled from its scalar series. Batch series
    carry a `batch_` prefix on the suffix, as `keras.callbacks.TensorBoard`
    does for its batch-level scalars.
    """
    suffix = KIND_NAMES[kind]
    if granularity == BATCH:
        suffix = "batch_" + suffix
    return f"{path}/{suffix}/{field}" if field else f"{path}/{suffix}"


# The tags of the run-level series.
DIAGNOSIS_TAG = tag(RUN_DIAGNOSIS, DIAGNOSIS)
GLOBAL_GRAD_NORM_TAG = tag(RUN_GRAD_NORM, GRAD_NORM)
MODEL_TAG = tag(RUN_MODEL, WEIGHT_NORMS)
STEPS_TAG = tag(RUN_STEPS, STEPS)


def fields(kind, shape=()):
    """The fields of a kind's scalar series, in order: names, or element indices for VALUE.

    A tensor kind, and a VALUE of shape (), has the one field `""`.
    """
    if kind not in SCALAR_KINDS:
        return ("",)
    if kind == VALUE:
        size = 1
        for d in shape:
            size *= int(d)
        return ("",) if not shape else tuple(str(i) for i in range(size))
    return FIELDS[kind]


def create_summary_metadata(
    role, kind, path, shape=(), dtype="", granularity=EPOCH, field="", display=None, layer_index=None
):
    """Returns the `SummaryMetadata` proto of one series.

    `display`, a `plugin_data_pb2.Display` or `None`, says how a loss
    variable is shown (see `display.Display`); `layer_index`, the place of
    a model weight's layer in the model (see `plugin_data.proto`).
    """
    content = PluginData(
        version=PROTO_VERSION,
        role=role,
        kind=kind,
        path=path,
        shape=list(shape),
        dtype=dtype,
        granularity=granularity,
        field=field,
        display=display,
        layer_index=layer_index,
    )
    data_class = summary_pb2.DATA_CLASS_SCALAR if kind in SCALAR_KINDS else summary_pb2.DATA_CLASS_TENSOR
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content.SerializeToString()
        ),
        data_class=data_class,
    )


def parse_plugin_metadata(content):
    """Parses `plugin_data.content` into a `LossParamsPluginData`.

    Args:
        content: The serialized message, as `bytes`.

    Returns:
        The message, or `None` when it was written by a newer version of this
        format than this reader knows (such series are skipped, not misread).

    Raises:
        TypeError: When `content` is not `bytes`.
        google.protobuf.message.DecodeError: When it is not a valid message.
    """
    if not isinstance(content, bytes):
        raise TypeError(
            f"Plugin content must be bytes; received {type(content).__name__}."
        )
    data = PluginData.FromString(content)
    if data.version > PROTO_VERSION:
        return None
    return data
