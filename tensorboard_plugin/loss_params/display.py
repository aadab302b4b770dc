"""How a loss variable is shown: the value users reason about, not the latent stored.

Published trainable losses often keep a reparametrised latent: CLIP's
`logit_scale` is the log of the scale, Barron's adaptive loss keeps its shape
behind a sigmoid and its scale behind a softplus, uncertainty weighting
learns log-variances. A `Display` maps the stored value onto the one users
speak of:

    shown = offset + scale * fn(inner_scale * stored + shift)

with `fn` one of `exp`, `softplus`, `sigmoid`. Each of these is monotone, so
the extremes (and quantiles) of the stored series are those of the shown
one: a chart reduced to its extremes per pixel stays exact under a display.
The callback records it in the summary metadata (`plugin_data.proto`,
`Display`); the tab draws the shown value with the stored one a toggle
away, and `load()` gives both. Needs neither TensorFlow nor Keras.
"""

import dataclasses
import math

import numpy as np

from tensorboard_plugin.loss_params import plugin_data_pb2

FUNCTIONS = ("exp", "softplus", "sigmoid")


@dataclasses.dataclass(frozen=True)
class Display:
    """`shown = offset + scale * fn(inner_scale * stored + shift)`.

    Example: CLIP's scale is `Display("exp")` of its `logit_scale`; a
    log-variance `s` shown as the standard deviation is
    `Display("exp", inner_scale=0.5, label="sigma")`; Barron's shape in
    (0.001, 1.999) is `Display("sigmoid", scale=1.998, offset=0.001, label="alpha")`.

    Args:
        fn: `"exp"`, `"softplus"` or `"sigmoid"`.
        inner_scale: Multiplies the stored value before `fn`; not 0.
            Defaults to `1.0`.
        shift: Added before `fn`. Defaults to `0.0`.
        scale: Multiplies `fn`'s result; not 0. Defaults to `1.0`.
        offset: Added last. Defaults to `0.0`.
        label: What the shown value is called; empty for the formula over
            the variable's name, e.g. `exp(logit_scale)`. Defaults to `""`.

    Raises:
        ValueError: When `fn` is not one of `FUNCTIONS`, or a number is not
            finite, or a scale is 0.
    """

    fn: str
    inner_scale: float = 1.0
    shift: float = 0.0
    scale: float = 1.0
    offset: float = 0.0
    label: str = ""

    def __post_init__(self):
        if self.fn not in FUNCTIONS:
            raise ValueError(
                f"Received: fn={self.fn!r}. Expected one of {', '.join(FUNCTIONS)}."
            )
        for name in ("inner_scale", "shift", "scale", "offset"):
            number = getattr(self, name)
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ValueError(f"Received: {name}={number!r}. Expected a finite number.")
            object.__setattr__(self, name, float(number))
        if self.inner_scale == 0 or self.scale == 0:
            raise ValueError(
                f"Received: inner_scale={self.inner_scale}, scale={self.scale}. A scale of 0 "
                "shows a constant; leave it out (1) or give another number."
            )
        if not isinstance(self.label, str):
            raise ValueError(f"Received: label={self.label!r}. Expected a string.")

    @classmethod
    def of(cls, spec):
        """A `Display` from what the callback's `display=` takes: a `Display` or a function name.

        Raises:
            ValueError: When `spec` is neither.
        """
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        raise ValueError(
            f"Received: {spec!r} ({type(spec).__name__}). Expected one of "
            f"{', '.join(map(repr, FUNCTIONS))} or a loss_param_tracker.Display(...)."
        )

    def named(self, name):
        """This display with its label filled in from the variable's name where it has none."""
        if self.label:
            return self
        inner = _affine(name, self.inner_scale, self.shift)
        outer = _affine(f"{self.fn}({inner})", self.scale, self.offset)
        return dataclasses.replace(self, label=outer)

    def apply(self, stored):
        """The shown value of `stored` (array-like), as float64; NaN stays NaN, overflow is Inf."""
        x = self.inner_scale * np.asarray(stored, dtype=np.float64) + self.shift
        with np.errstate(over="ignore", invalid="ignore"):
            if self.fn == "exp":
                y = np.exp(x)
            elif self.fn == "softplus":
                y = np.logaddexp(0.0, x)
            else:
                # exp(-|x|) never overflows: the two halves of the logistic.
                z = np.exp(-np.abs(x))
                y = np.where(x >= 0, 1 / (1 + z), z / (1 + z))
        return self.offset + self.scale * y

    def to_proto(self):
        return plugin_data_pb2.Display(
            fn=self.fn,
            inner_scale=self.inner_scale,
            shift=self.shift,
            scale=self.scale,
            offset=self.offset,
            label=self.label,
        )

    @classmethod
    def from_proto(cls, message):
        """The `Display` a series' metadata records, or `None` where it records none.

        Raises:
            ValueError: When the record is not one this version can show (an
                unknown function, a scale of 0): the series is read as stored.
        """
        if not message.fn:
            return None
        return cls(
            fn=message.fn,
            inner_scale=message.inner_scale if message.HasField("inner_scale") else 1.0,
            shift=message.shift,
            scale=message.scale if message.HasField("scale") else 1.0,
            offset=message.offset,
            label=message.label,
        )

    def to_json(self):
        """The display as the plugin's routes give it (see http_api.md)."""
        return dataclasses.asdict(self)


def _affine(text, scale, offset):
    """`offset + scale*text`, leaving out a scale of 1 and an offset of 0."""
    if scale != 1:
        text = f"{scale:g}*{text}"
    if offset:
        text = f"{text} {'+' if offset > 0 else '-'} {abs(offset):g}"
    return text
