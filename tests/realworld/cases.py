"""Trainable-loss patterns reduced from public code, as runnable Keras 3 (TensorFlow) cases.

Each `Case` names the public file it was reduced from, builds a fresh compiled
model with the arguments of its `fit`, and says where its loss parameters are
(`watched`: tracker path -> the variable). What truly happens to each of them
is measured without the tracker by `tests/realworld/truth.py`.

The reductions keep where the variable lives and what moves it (the model's
optimizer, a second optimizer, a callback, an `assign` in the loss, nothing);
networks and data are shrunk to a few hundred samples and small Dense layers.
"""

import dataclasses
import functools
import itertools
import math
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Case:
    """One pattern.

    Attributes:
        name: Short id.
        source: URL of the public file it is reduced from, and what was kept.
        build: Returns `(model, fit_kwargs)`: a compiled model (fresh objects,
            seeded) and the keyword arguments of its `model.fit`.
        watched: `{tracker path: callable(model) -> the variable}`.
        objective: For a custom `train_step`, `callable(model, x, y) -> scalar`:
            what the step differentiates for the watched variables (the
            compiled loss otherwise).
        expected: The status each watched path should measure to, from reading
            the source (checked against the measured truth, never against the
            tracker).
        bounded: Whether the loss has a minimum in its `not_updated`
            variables, so that handing them to the optimizer trains them;
            `False` where the loss is linear in them (descent would run off).
    """

    name: str
    source: str
    build: Callable[[], tuple]
    watched: dict
    objective: Optional[Callable] = None
    expected: dict = dataclasses.field(default_factory=dict)
    bounded: bool = True

    def __repr__(self):
        return self.name


EPOCHS = 3
BATCH = 64


def _seed():
    keras.utils.set_random_seed(0)


def _regression(n=256, features=4, outputs=1, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = x @ rng.normal(size=(features, outputs)) + noise * rng.normal(size=(n, outputs))
    return x, y.astype("float32")


def _classification(n=256, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    labels = np.argmax(x @ rng.normal(size=(features, classes)) + 0.3 * rng.normal(size=(n, classes)), axis=1)
    return x, labels, np.eye(classes, dtype="float32")[labels]


def _fit(x, y, callbacks=(), epochs=EPOCHS, batch_size=BATCH):
    return dict(x=x, y=y, epochs=epochs, batch_size=batch_size, callbacks=list(callbacks), verbose=0, shuffle=False)


def _cell(function, name):
    """The value of `function`'s closure variable `name`."""
    function = getattr(function, "python_function", function)  # through @tf.function
    return function.__closure__[function.__code__.co_freevars.index(name)].cell_contents


# --- 1. Self-adaptive PINN: weights stepped by a second optimizer on negated gradients ---


class SelfAdaptivePINN(keras.Model):
    """SA-PINN: one self-adaptive weight per loss term, maximised by its own Adam."""

    def __init__(self):
        super().__init__(name="sa_pinn")
        self.hidden = keras.layers.Dense(8, activation="tanh", name="hidden")
        self.u = keras.layers.Dense(1, name="u")
        # col_weights / u_weights in the source: raw tf.Variables the model's optimizer never sees.
        self.sa_weights = tf.Variable([1.0, 1.0], name="sa_weights")
        self.weights_optimizer = keras.optimizers.Adam(0.05)

    def call(self, x):
        return self.u(self.hidden(x))

    def objective(self, x, y, u):
        data = y - u  # the initial/boundary term
        residual = u - 0.5 * x[:, :1]  # stands for the PDE residual f_u
        return tf.reduce_mean(tf.square(self.sa_weights[0] * data)) + tf.reduce_mean(
            tf.square(self.sa_weights[1] * residual)
        )

    def train_step(self, data):
        x, y = data
        with tf.GradientTape(persistent=True) as tape:
            loss = self.objective(x, y, self(x, training=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        ascent = tape.gradient(loss, self.sa_weights)
        self.weights_optimizer.apply_gradients([(-ascent, self.sa_weights)])  # gradient ascent
        del tape
        return {"loss": loss}


def build_sa_pinn():
    _seed()
    model = SelfAdaptivePINN()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x, y = _regression()
    return model, _fit(x, y)


# --- 2. GradNorm: task weights held by the loss, stepped by a second optimizer in train_step ---


class GradNormLoss(keras.losses.Loss):
    """The weighted sum of the task losses; holds GradNorm's task weights and initial losses."""

    def __init__(self, n_tasks=2, **kwargs):
        super().__init__(name="gradnorm_loss", **kwargs)
        self.task_weights = [
            tf.Variable(1.0, constraint=keras.constraints.NonNeg(), name=f"w{i}") for i in range(n_tasks)
        ]
        self.initial_losses = [tf.Variable(-1.0, trainable=False, name=f"L0_{i}") for i in range(n_tasks)]

    def task_losses(self, y_true, y_pred):
        return [tf.reduce_mean(tf.square(y_true[:, i] - y_pred[:, i])) for i in range(len(self.task_weights))]

    def call(self, y_true, y_pred):
        return tf.add_n([w * l for w, l in zip(self.task_weights, self.task_losses(y_true, y_pred))])


class GradNormNet(keras.Model):
    def __init__(self, alpha=0.12):
        super().__init__(name="gradnorm_net")
        self.shared = keras.layers.Dense(8, activation="relu", name="last_shared_layer")
        self.heads = keras.layers.Dense(2, name="heads")
        self.alpha = alpha
        self.weights_optimizer = keras.optimizers.Adam(0.05)

    def call(self, x):
        return self.heads(self.shared(x))

    def gradnorm(self, x, y):
        """(total loss, GradNorm loss), as the source's training_on_batch computes them."""
        loss = self.loss
        with tf.GradientTape(persistent=True) as inner:
            task = loss.task_losses(y, self(x, training=True))
            weighted = [w * l for w, l in zip(loss.task_weights, task)]
        for l0, l in zip(loss.initial_losses, task):
            l0.assign(tf.where(l0 < 0, tf.stop_gradient(l), l0))
        norms = [tf.norm(inner.gradient(wl, self.shared.kernel.value)) for wl in weighted]
        del inner
        g_avg = tf.add_n(norms) / len(norms)
        lhat = [l / l0 for l, l0 in zip(task, loss.initial_losses)]
        lhat_avg = tf.add_n(lhat) / len(lhat)
        targets = [tf.stop_gradient(g_avg * tf.pow(r / lhat_avg, self.alpha)) for r in lhat]
        return tf.add_n(weighted), tf.add_n([tf.abs(g - c) for g, c in zip(norms, targets)])

    def train_step(self, data):
        x, y = data
        with tf.GradientTape(persistent=True) as tape:
            total, l_grad = self.gradnorm(x, y)
        grads = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        task_weights = self.loss.task_weights
        self.weights_optimizer.apply_gradients(zip(tape.gradient(l_grad, task_weights), task_weights))
        del tape
        return {"loss": total, "gradnorm": l_grad}


class RenormalizeTaskWeights(keras.callbacks.Callback):
    """The source renormalises the task weights to sum to the number of tasks after each epoch."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def on_epoch_end(self, epoch, logs=None):
        weights = self.loss.task_weights
        coef = len(weights) / float(sum(w.numpy() for w in weights))
        for w in weights:
            w.assign(w * coef)


def build_gradnorm():
    _seed()
    model = GradNormNet()
    loss = GradNormLoss()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    x, y = _regression(outputs=2)
    y[:, 1] *= 5.0  # tasks of different scales
    return model, _fit(x, y, callbacks=[RenormalizeTaskWeights(loss)])


def gradnorm_objective(model, x, y):
    return model.gradnorm(x, y)[1]


# --- 3. Sonnet's Lagrange multiplier: gradient reversed, one optimizer for min-max ---


def scale_gradient(x, scale):
    @tf.custom_gradient
    def identity(t):
        return tf.identity(t), lambda dy: dy * scale

    return identity(x)


class ConstrainedMSE(keras.losses.Loss):
    """MSE subject to mean(y_pred^2) <= bound, with a Lagrange multiplier as Sonnet parametrises it."""

    def __init__(self, bound=0.5, rate=1.0, **kwargs):
        super().__init__(**kwargs)
        self.bound, self.rate = bound, rate
        # _inv_squared_softplus(1.0): the multiplier starts at 1.
        self.lagrange_multiplier = tf.Variable(math.log(math.e - 1.0), name="lagrange_multiplier")

    def call(self, y_true, y_pred):
        multiplier = scale_gradient(tf.nn.softplus(self.lagrange_multiplier) ** 2, -self.rate)
        constraint = tf.reduce_mean(tf.square(y_pred)) - self.bound
        return tf.reduce_mean(tf.square(y_true - y_pred)) + multiplier * constraint


def _mlp(name="net", outputs=1, features=4, activation=None):
    return keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(outputs, activation=activation, name="out"),
        ],
        name=name,
    )


def build_lagrange():
    _seed()
    model = _mlp()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=ConstrainedMSE())
    return model, _fit(*_regression())


# --- 4. Temperature scaling: a keras.Model whose only parameter is a raw tf.Variable ---


class TemperatureScaler(keras.Model):
    def __init__(self):
        super().__init__(name="temperature_scaler")
        self.temperature = tf.Variable(initial_value=1.0, trainable=True, dtype=tf.float32)

    def call(self, logits):
        return logits / self.temperature


def build_temperature_scaling():
    _seed()
    x, labels, _ = _classification()
    logits = (3.0 * x[:, :3]).astype("float32")  # an over-confident classifier's logits
    model = TemperatureScaler()
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, _fit(logits, labels)


# --- 5. CRF: transition matrix as a raw tf.Variable on a layer, NLL through add_loss ---


def crf_nll(logits, tags, transitions):
    """Negative log-likelihood of `tags` under a linear-chain CRF (the forward algorithm)."""
    steps = logits.shape[1]
    unary = tf.reduce_sum(tf.gather(logits, tags, batch_dims=2), axis=1)
    pairs = tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1)
    binary = tf.reduce_sum(tf.gather_nd(transitions, pairs), axis=1)
    alpha = logits[:, 0]
    for t in range(1, steps):
        alpha = tf.reduce_logsumexp(alpha[:, :, None] + transitions[None], axis=1) + logits[:, t]
    return tf.reduce_logsumexp(alpha, axis=1) - unary - binary


class CRF(keras.layers.Layer):
    def __init__(self, label_size, **kwargs):
        super().__init__(**kwargs)
        self.trans_params = tf.Variable(tf.random.uniform(shape=(label_size, label_size)), name="transition")

    def call(self, inputs):
        logits, labels = inputs
        self.add_loss(tf.reduce_mean(crf_nll(logits, tf.cast(labels, "int32"), self.trans_params)))
        return logits


def _tagging(steps=4, features=3, tags=3, n=256):
    """`(features, labels)` of a sequence-tagging task: `[n, steps, features]` floats, `[n, steps]` tags."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, steps, features)).astype("float32")
    return feats, np.argmax(feats @ rng.normal(size=(features, tags)), axis=-1).astype("int32")


def build_crf():
    _seed()
    steps, features, tags = 4, 3, 3
    feats, labels = _tagging(steps, features, tags)
    inputs = keras.Input((steps, features), name="features")
    tag_input = keras.Input((steps,), dtype="int32", name="tags")
    logits = keras.layers.Dense(tags, name="emissions")(inputs)
    outputs = CRF(tags, name="crf")([logits, tag_input])
    model = keras.Model([inputs, tag_input], outputs, name="crf_tagger")
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    return model, _fit([feats, labels], None)


# --- 6. CLIP: logit_scale as a raw tf.Variable on the keras.Model ---


class DualEncoder(keras.Model):
    def __init__(self, embed_dim=8):
        super().__init__(name="clip")
        self.image_projection = keras.layers.Dense(embed_dim, name="image_projection")
        self.text_projection = keras.layers.Dense(embed_dim, name="text_projection")
        self.logit_scale = tf.Variable(np.ones([]) * np.log(1 / 0.07), dtype=tf.float32, name="logit_scale")

    def call(self, inputs):
        image, text = inputs
        image_features = tf.math.l2_normalize(self.image_projection(image), axis=-1)
        text_features = tf.math.l2_normalize(self.text_projection(text), axis=-1)
        return tf.exp(self.logit_scale) * image_features @ tf.transpose(text_features)  # logits_per_image


def clip_loss(y_true, y_pred):
    labels = tf.range(tf.shape(y_pred)[0])
    per_image = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
    per_text = keras.losses.sparse_categorical_crossentropy(labels, tf.transpose(y_pred), from_logits=True)
    return (tf.reduce_mean(per_image) + tf.reduce_mean(per_text)) / 2


def build_clip():
    _seed()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(256, 6)).astype("float32")
    text = (image @ rng.normal(size=(6, 5)) + 0.3 * rng.normal(size=(256, 5))).astype("float32")
    model = DualEncoder()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=clip_loss)
    return model, _fit((image, text), np.zeros((256, 1), "float32"), batch_size=32)


# --- 7. Kendall et al.: log-variances as add_weight of a layer that calls add_loss ---


class CustomMultiLossLayer(keras.layers.Layer):
    def __init__(self, nb_outputs=2, **kwargs):
        super().__init__(**kwargs)
        self.nb_outputs = nb_outputs

    def build(self, input_shape=None):
        self.log_vars = [
            self.add_weight(name=f"log_var{i}", shape=(1,), initializer=keras.initializers.Constant(0.0))
            for i in range(self.nb_outputs)
        ]

    def call(self, inputs):
        ys_true, ys_pred = inputs[: self.nb_outputs], inputs[self.nb_outputs :]
        loss = 0.0
        for y_true, y_pred, log_var in zip(ys_true, ys_pred, self.log_vars):
            precision = tf.exp(-log_var[0])
            loss += tf.reduce_sum(precision * (y_true - y_pred) ** 2.0 + log_var[0], -1)
        self.add_loss(tf.reduce_mean(loss))
        return tf.concat(inputs, -1)


def build_kendall():
    _seed()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y1 = (x @ rng.normal(size=(4, 1)) + 1.0 * rng.normal(size=(256, 1))).astype("float32")
    y2 = (x @ rng.normal(size=(4, 1)) + 0.1 * rng.normal(size=(256, 1))).astype("float32")
    inp = keras.Input((4,), name="inp")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    y1_pred = keras.layers.Dense(1, name="y1_pred")(hidden)
    y2_pred = keras.layers.Dense(1, name="y2_pred")(hidden)
    y1_true = keras.Input((1,), name="y1_true")
    y2_true = keras.Input((1,), name="y2_true")
    out = CustomMultiLossLayer(name="multi_loss")([y1_true, y2_true, y1_pred, y2_pred])
    model = keras.Model([inp, y1_true, y2_true], out, name="trainable_model")
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=None)
    return model, _fit([x, y1, y2], None)


# --- 8/9. Barron's adaptive loss and its Student's t sibling: tf.Modules of latent variables ---


def _affine_sigmoid(latent, lo, hi):
    return tf.sigmoid(latent) * (hi - lo) + lo


def _affine_softplus(latent, lo, ref):
    shift = math.log(math.expm1(1.0))  # softplus(shift) == 1
    return (ref - lo) * tf.nn.softplus(latent + shift) + lo


class AdaptiveLossFunction(tf.Module):
    """robust_loss.adaptive.AdaptiveLossFunction: alpha and scale from latent variables."""

    def __init__(self, num_channels, alpha_lo=0.001, alpha_hi=1.999, scale_lo=1e-5, scale_init=1.0, name=None):
        super().__init__(name=name)
        alpha_init = (alpha_lo + alpha_hi) / 2.0
        latent_alpha_init = math.log((alpha_init - alpha_lo) / (alpha_hi - alpha_init))  # inv_affine_sigmoid
        self._latent_alpha = tf.Variable(tf.fill((1, num_channels), latent_alpha_init), name="LatentAlpha")
        self._latent_scale = tf.Variable(tf.zeros((1, num_channels)), name="LatentScale")
        self._alpha_lo, self._alpha_hi, self._scale_lo, self._scale_init = alpha_lo, alpha_hi, scale_lo, scale_init

    def alpha(self):
        return _affine_sigmoid(self._latent_alpha, self._alpha_lo, self._alpha_hi)

    def scale(self):
        return _affine_softplus(self._latent_scale, self._scale_lo, self._scale_init)

    def __call__(self, x):
        # The general loss rho(x, alpha, scale) plus log(scale); the partition function is left out.
        alpha, scale = self.alpha(), self.scale()
        b = tf.abs(alpha - 2.0) + 1e-5
        return b / alpha * (tf.pow(tf.square(x / scale) / b + 1.0, alpha / 2.0) - 1.0) + tf.math.log(scale)


def make_adaptive_loss():
    adaptive = AdaptiveLossFunction(num_channels=1, name="adaptive")

    @tf.function
    def adaptive_loss(y_true, y_pred):
        return tf.reduce_mean(adaptive(y_true - y_pred))

    return adaptive_loss


def build_barron():
    _seed()
    model = _mlp()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=make_adaptive_loss())
    return model, _fit(*_regression(noise=0.5))


class StudentsTLossFunction(tf.Module):
    """robust_loss.adaptive.StudentsTLossFunction: log degrees of freedom and a latent scale."""

    def __init__(self, num_channels, scale_lo=1e-5, scale_init=1.0, name=None):
        super().__init__(name=name)
        self._log_df = tf.Variable(tf.zeros((1, num_channels)), name="LogDf")
        self._latent_scale = tf.Variable(tf.zeros((1, num_channels)), name="LatentScale")
        self._scale_lo, self._scale_init = scale_lo, scale_init

    def __call__(self, x):
        df = tf.exp(self._log_df)
        scale = _affine_softplus(self._latent_scale, self._scale_lo, self._scale_init)
        return (
            0.5 * (df + 1.0) * tf.math.log1p(tf.square(x / scale) / df)
            + tf.math.lgamma(0.5 * df)
            - tf.math.lgamma(0.5 * (df + 1.0))
            + 0.5 * tf.math.log(df * math.pi)
            + tf.math.log(scale)
        )


class StudentsTNLL(keras.losses.Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.students_t = StudentsTLossFunction(num_channels=1, name="students_t")

    def call(self, y_true, y_pred):
        return tf.reduce_mean(self.students_t(y_true - y_pred))


def build_students_t():
    _seed()
    model = _mlp()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=StudentsTNLL())
    return model, _fit(*_regression(noise=0.5))


# --- 10. Center loss: non-trainable centres moved by an assign inside the loss ---


class CenterLoss(keras.losses.Loss):
    def __init__(self, num_classes, emb_shape=2, alpha=0.5, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha
        self.centers = tf.Variable(tf.zeros([num_classes, emb_shape]), trainable=False)

    def call(self, y_true, embedding):
        labels = tf.argmax(y_true, axis=1)
        centers_batch = tf.gather(self.centers, labels)
        loss = tf.reduce_sum(tf.square(embedding - centers_batch), axis=-1) / 2
        diff = centers_batch - embedding
        _, unique_idx, unique_count = tf.unique_with_counts(labels)
        appear_times = tf.cast(tf.gather(unique_count, unique_idx), tf.float32)
        diff = self.alpha * diff / tf.expand_dims(appear_times + 1, 1)
        self.centers.assign(tf.tensor_scatter_nd_sub(self.centers, tf.expand_dims(labels, 1), diff))
        return loss


def build_center_loss():
    _seed()
    x, _, onehot = _classification()
    model = _mlp(outputs=2)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CenterLoss(num_classes=3))
    return model, _fit(x, onehot)


# --- 11. AdaFace: EMA statistics of feature norms, non-trainable, assigned in the loss ---


class NormDense(keras.layers.Layer):
    """Cosine logits, with the feature norm (negated) appended as in Keras_insightface."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="norm_dense_w")

    def call(self, x):
        norm = tf.norm(x, axis=1, keepdims=True)
        cos = tf.matmul(tf.nn.l2_normalize(x, 1), tf.nn.l2_normalize(self.w, 0))
        return tf.concat([cos, -norm], axis=-1)


class AdaFaceLoss(keras.losses.Loss):
    def __init__(self, margin=0.4, margin_alpha=0.333, mean_std_alpha=0.01, scale=16.0, **kwargs):
        super().__init__(**kwargs)
        self.margin, self.margin_alpha, self.mean_std_alpha, self.scale = margin, margin_alpha, mean_std_alpha, scale
        self.epsilon = 1e-3
        self.batch_mean = tf.Variable(20, dtype="float32", trainable=False)
        self.batch_std = tf.Variable(100, dtype="float32", trainable=False)

    def scaled_margin(self, feature_norm):
        norm_mean = tf.reduce_mean(feature_norm)
        samples = tf.cast(tf.maximum(1, tf.shape(feature_norm)[0] - 1), feature_norm.dtype)
        norm_std = tf.sqrt(tf.reduce_sum((feature_norm - norm_mean) ** 2) / samples)
        self.batch_mean.assign(self.mean_std_alpha * norm_mean + (1.0 - self.mean_std_alpha) * self.batch_mean)
        self.batch_std.assign(self.mean_std_alpha * norm_std + (1.0 - self.mean_std_alpha) * self.batch_std)
        margin_scaler = (feature_norm - self.batch_mean) / (self.batch_std + self.epsilon)
        margin_scaler = tf.clip_by_value(margin_scaler * self.margin_alpha, -1, 1)
        return tf.expand_dims(self.margin * margin_scaler, 1)

    def call(self, y_true, norm_logits_with_norm):
        norm_logits, feature_norm = norm_logits_with_norm[:, :-1], norm_logits_with_norm[:, -1] * -1
        norm_logits = tf.clip_by_value(norm_logits, -1 + self.epsilon, 1 - self.epsilon)
        feature_norm = tf.clip_by_value(feature_norm, 0.001, 100)
        scaled_margin = tf.stop_gradient(self.scaled_margin(feature_norm))
        arcface_logits = tf.where(
            tf.cast(y_true, dtype=tf.bool),
            tf.cos(tf.clip_by_value(tf.acos(norm_logits) - scaled_margin, self.epsilon, math.pi - self.epsilon))
            - (self.margin + scaled_margin),
            norm_logits,
        )
        return keras.losses.categorical_crossentropy(y_true, arcface_logits * self.scale, from_logits=True)


def build_adaface():
    _seed()
    x, _, onehot = _classification()
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, name="embedding"), NormDense(3, name="norm_dense")], name="face"
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=AdaFaceLoss())
    return model, _fit(x, onehot)


# --- 12. CurricularFace: a trainable-by-default tf.Variable t moved by an EMA assign in the loss ---


class CosSimLayer(keras.layers.Layer):
    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, embedding_shape):
        self._w = self.add_weight(
            shape=(embedding_shape[-1], self.num_classes), initializer="glorot_uniform", name="cosine_weights"
        )

    def call(self, embedding):
        return tf.matmul(tf.nn.l2_normalize(embedding, axis=1), tf.nn.l2_normalize(self._w, axis=0))


class CurricularFaceLoss(keras.losses.Loss):
    def __init__(self, scale=30, margin=0.5, alpha=0.99, name="CurricularFaceLoss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale, self.margin, self.alpha = scale, margin, alpha
        self.t = tf.Variable(0.0)
        self.eps = 1e-7

    def call(self, y_true, y_logit):
        y_logit = tf.clip_by_value(y_logit, -1.0 + self.eps, 1.0 - self.eps)
        y_logit_masked = tf.expand_dims(tf.reduce_sum(y_true * y_logit, axis=1), axis=1)
        y_logit_pos_masked = tf.cos(tf.acos(y_logit_masked) + self.margin)
        hard_sample_mask = y_logit_pos_masked < y_logit
        y_logit_neg = tf.where(hard_sample_mask, tf.square(y_logit) + self.t * y_logit, y_logit)
        self.t.assign(self.alpha * tf.reduce_mean(y_logit_pos_masked) + (1 - self.alpha) * self.t)
        fixed = tf.where(tf.cast(y_true, dtype=tf.bool), y_logit_pos_masked, y_logit_neg)
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y_true, fixed * self.scale))


def build_curricularface():
    _seed()
    x, _, onehot = _classification(classes=4)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="embedding"), CosSimLayer(4, name="cos_sim")], name="face"
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=CurricularFaceLoss())
    return model, _fit(x, onehot)


# --- 13. KL annealing: a K.variable weight in a functools.partial loss, set at epoch end ---


class Sampling(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(0)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
        return z_mean + tf.exp(0.5 * z_log_var) * eps


def _charbonnier_sum(y_true, y_pred):
    return tf.reduce_sum(tf.sqrt(tf.square(y_true - y_pred) + 1e-10), axis=-1)


def vae_loss(y_true, y_pred, weight, latent_dim=2):
    recon, z_mean, z_log_var = (
        y_pred[:, : -2 * latent_dim],
        y_pred[:, -2 * latent_dim : -latent_dim],
        y_pred[:, -latent_dim:],
    )
    kl = -0.5 * tf.reduce_sum(1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=-1)
    return tf.reduce_mean(_charbonnier_sum(y_true, recon) + weight * kl)


class AnnealingCallback(keras.callbacks.Callback):
    def __init__(self, weight, kl_start=1, kl_growth=3.0):
        super().__init__()
        self.weight, self.kl_start, self.kl_growth = weight, kl_start, kl_growth

    def on_epoch_end(self, epoch, logs=None):
        new_weight = float(keras.ops.convert_to_numpy(self.weight))
        if new_weight != 1 and epoch + 1 >= self.kl_start:
            new_weight = 1 / (1 + math.exp(-(-10 + self.kl_growth * (epoch + 1 - self.kl_start))))
        self.weight.assign(min(new_weight, 1.0))


def _vae(latent_dim=2, features=4, kl_layer=None):
    inputs = keras.Input((features,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="encoder")(inputs)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(h)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(h)
    if kl_layer is not None:
        z_mean = kl_layer([z_mean, z_log_var])
    z = Sampling(name="z")([z_mean, z_log_var])
    h = keras.layers.Dense(8, activation="relu", name="decoder")(z)
    recon = keras.layers.Dense(features, name="recon")(h)
    return inputs, recon, z_mean, z_log_var


def build_kl_partial():
    _seed()
    inputs, recon, z_mean, z_log_var = _vae()
    model = keras.Model(inputs, keras.layers.Concatenate(name="out")([recon, z_mean, z_log_var]), name="vae")
    weight = keras.Variable(0.0, name="kl_weight")  # K.variable(0.0): trainable by default
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=functools.partial(vae_loss, weight=weight))
    x, _ = _regression()
    return model, _fit(x, x, callbacks=[AnnealingCallback(weight)])


# --- 14. KL annealing: a non-trainable beta on a loss layer (add_loss), set at epoch end ---


class KlAnnealingLoss(keras.layers.Layer):
    def __init__(self, beta, name="loss_layer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.beta = beta

    def call(self, inputs):
        mean, var = inputs
        kl_loss = var - tf.square(mean) - tf.exp(var)
        self.add_loss(self.beta * (-0.5 * tf.reduce_mean(kl_loss)))
        return mean


class BetaAnnealingCallback(keras.callbacks.Callback):
    def __init__(self, beta, total_epochs, ratio=1.5):
        super().__init__()
        self.beta, self.total_epochs, self.ratio = beta, total_epochs, ratio

    def on_epoch_end(self, epoch, logs=None):  # the "monotonic" schedule
        self.beta.assign(min(epoch / float(self.total_epochs) * self.ratio, 1.0))


def build_kl_layer():
    _seed()
    beta = tf.Variable(0.0, trainable=False, name="Beta_annealing")
    inputs, recon, _, _ = _vae(kl_layer=KlAnnealingLoss(beta))
    model = keras.Model(inputs, recon, name="my_model")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x, _ = _regression()
    return model, _fit(x, x, callbacks=[BetaAnnealingCallback(beta, EPOCHS)])


# --- 15. compile(loss_weights=[K.variable, K.variable]) switched by a callback at epoch begin ---


class LossManager(keras.callbacks.Callback):
    def __init__(self, limit, weights):
        super().__init__()
        self.limit, self.weights = limit, weights

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.limit:
            for weight, target in zip(self.weights, [1.0, 0.0]):
                weight.assign(target)


def build_loss_weights():
    _seed()
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = [keras.layers.Dense(1, name="output")(hidden), keras.layers.Dense(1, name="aux")(hidden)]
    model = keras.Model(inputs, outputs, name="multiheaded")
    weights = [keras.Variable(0.2, name="w_output"), keras.Variable(0.8, name="w_aux")]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "mse"], loss_weights=weights)
    x, y = _regression(outputs=2)
    return model, _fit(x, [y[:, :1], y[:, 1:]], callbacks=[LossManager(1, weights)])


# --- 16. Dynamic Weight Averaging: task weights held by the loss, set at epoch begin ---


class DWAWeightedLoss(keras.losses.Loss):
    def __init__(self, n_tasks=2, **kwargs):
        super().__init__(**kwargs)
        self.task_weights = tf.Variable(tf.fill([n_tasks], 1.0 / n_tasks), name="task_weights")

    def task_losses(self, y_true, y_pred):
        return tf.reduce_mean(tf.square(y_true - y_pred), axis=0)

    def call(self, y_true, y_pred):
        return tf.reduce_sum(self.task_weights * self.task_losses(y_true, y_pred))


class DynamicWeightAveraging(keras.callbacks.Callback):
    """Weights from the losses' relative descent since the first epoch, through a softmax."""

    def __init__(self, loss, x, y, task_balance_factor=2.0):
        super().__init__()
        self.loss, self.x, self.y, self.a = loss, x, y, task_balance_factor
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        self.history.append(self.loss.task_losses(self.y, self.model(self.x)).numpy())

    def on_epoch_begin(self, epoch, logs=None):
        n = int(self.loss.task_weights.shape[0])
        rel = np.ones(n) if epoch < 2 else self.history[-1] / self.history[0]
        numerator = n * np.exp(rel / self.a)
        self.loss.task_weights.assign((numerator / numerator.sum()).astype("float32"))


def build_dwa():
    _seed()
    model = _mlp(outputs=2)
    loss = DWAWeightedLoss()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    x, y = _regression(outputs=2)
    y[:, 1] *= 3.0
    return model, _fit(x, y, callbacks=[DynamicWeightAveraging(loss, x, y)])


# --- 17. A cost matrix as a functools.partial argument, updated after each epoch ---


def w_categorical_crossentropy(y_true, y_pred, weights):
    nb_cl = weights.shape[0]
    y_pred_max = tf.reduce_max(y_pred, axis=1, keepdims=True)
    y_pred_max_mat = tf.cast(tf.equal(y_pred, y_pred_max), tf.float32)
    final_mask = tf.zeros_like(y_pred[:, 0])
    for c_p, c_t in itertools.product(range(nb_cl), range(nb_cl)):
        final_mask += weights[c_t, c_p] * y_pred_max_mat[:, c_p] * y_true[:, c_t]
    return keras.losses.categorical_crossentropy(y_true, y_pred) * final_mask


class CostFromConfusion(keras.callbacks.Callback):
    """Raises the cost of the confusions the model makes, after each epoch."""

    def __init__(self, weights, x, onehot):
        super().__init__()
        self.weights, self.x, self.onehot = weights, x, onehot

    def on_epoch_end(self, epoch, logs=None):
        pred = np.argmax(self.model(self.x).numpy(), axis=1)
        true = np.argmax(self.onehot, axis=1)
        k = self.onehot.shape[1]
        confusion = np.zeros((k, k), "float32")
        np.add.at(confusion, (true, pred), 1.0)
        confusion /= np.maximum(confusion.sum(axis=1, keepdims=True), 1.0)
        self.weights.assign(1.0 + confusion - np.diag(np.diag(confusion)))


def build_cost_matrix():
    _seed()
    x, _, onehot = _classification()
    model = _mlp(outputs=3, activation="softmax")
    weights = tf.Variable(np.ones((3, 3), "float32"), name="cost_matrix")
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss=functools.partial(w_categorical_crossentropy, weights=weights)
    )
    return model, _fit(x, onehot, callbacks=[CostFromConfusion(weights, x, onehot)])


# --- the corpus ---

# --- 19. Class weights as a trainable K.variable in a closure (linear in them) ---


def weighted_categorical_crossentropy(weights):
    weights = keras.Variable(weights.astype("float32"), name="weights")  # K.variable(weights): trainable

    def loss(y_true, y_pred):
        y_pred = y_pred / tf.reduce_sum(y_pred, axis=-1, keepdims=True)
        y_pred = tf.clip_by_value(y_pred, keras.backend.epsilon(), 1 - keras.backend.epsilon())
        return -tf.reduce_sum(y_true * tf.math.log(y_pred) * weights, -1)

    return loss


def build_class_weights():
    _seed()
    x, _, onehot = _classification()
    model = _mlp(name="classifier", outputs=3, activation="softmax")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=weighted_categorical_crossentropy(np.array([0.5, 2, 10])))
    return model, _fit(x, onehot)


# --- 20. A CRF layer's transitions, its bound method as the compiled loss ---


class CrfLayer(keras.layers.Layer):
    """tf2crf's CRF: transitions from add_weight, `loss` a method that reads them; passes potentials through."""

    def build(self, input_shape):
        self.transitions = self.add_weight(
            name="transitions", shape=[input_shape[-1], input_shape[-1]], initializer="glorot_uniform"
        )

    def call(self, inputs):
        return inputs

    def loss(self, y_true, y_pred):
        return tf.reduce_mean(crf_nll(y_pred, tf.cast(y_true, "int32"), self.transitions))


def build_crf_method_loss():
    _seed()
    steps, features, tags = 4, 3, 3
    feats, labels = _tagging(steps, features, tags)
    inputs = keras.Input((steps, features), name="features")
    crf = CrfLayer(name="crf")
    model = keras.Model(inputs, crf(keras.layers.Dense(tags, name="emissions")(inputs)), name="crf_tagger")
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=crf.loss)
    return model, _fit(feats, labels)


GH = "https://github.com"

CASES = [
    Case(
        name="sa_pinn_second_optimizer",
        source=f"{GH}/levimcclenny/SA-PINNs/blob/2acee721c7069ba0bce0f851be7618b597203a23/Burgers/burgers.py"
        " -- kept: self-adaptive loss-term weights as raw tf.Variables, stepped by their own Adam on negated"
        " gradients (tf_optimizer_coll.apply_gradients(zip([-grads_col], ...))), moved into a Keras train_step",
        build=build_sa_pinn,
        watched={"model/sa_pinn/sa_weights": lambda m: m.sa_weights},
        objective=lambda m, x, y: m.objective(x, y, m(x, training=True)),
        expected={"model/sa_pinn/sa_weights": "training"},
    ),
    Case(
        name="gradnorm_second_optimizer",
        source=f"{GH}/jpcastillog/GradNorm-Keras/blob/5fb0b63893b192e16ffa1603d7a9bec2a6b14bae/src/gradNorm.py"
        " -- kept: task weights ws (tf.Variable, NonNeg) and initial losses L0_s (trainable=False), the GradNorm"
        " loss on the last shared layer's gradient norms stepped by optimizer_weights, renormalisation after each"
        " epoch; the custom loop became a train_step and the weights moved onto the compiled loss",
        build=build_gradnorm,
        watched={
            "loss/GradNormLoss/task_weights/0": lambda m: m.loss.task_weights[0],
            "loss/GradNormLoss/task_weights/1": lambda m: m.loss.task_weights[1],
            "loss/GradNormLoss/initial_losses/0": lambda m: m.loss.initial_losses[0],
        },
        objective=gradnorm_objective,
        expected={
            "loss/GradNormLoss/task_weights/0": "training",
            "loss/GradNormLoss/task_weights/1": "training",
            "loss/GradNormLoss/initial_losses/0": "frozen",
        },
    ),
    Case(
        name="sonnet_lagrange_multiplier",
        source=f"{GH}/google-deepmind/sonnet/blob/1246c2dc0dbb839884a8e206b713019359d29c75/"
        "sonnet/python/modules/optimization_constraints.py -- kept: get_lagrange_multiplier's latent variable,"
        " squared-softplus parametrisation and scale_gradient(-rate) so one optimizer does the min-max; the"
        " constraint (mean(y_pred^2) < bound) and the multiplier live on a keras Loss",
        build=build_lagrange,
        watched={"loss/ConstrainedMSE/lagrange_multiplier": lambda m: m.loss.lagrange_multiplier},
        expected={"loss/ConstrainedMSE/lagrange_multiplier": "not_updated"},
    ),
    Case(
        name="temperature_scaler_model",
        source=f"{GH}/cidscv/cp8321-dl-project10/blob/90687fbf106db5126bd7efac547eac02b5011ba7/"
        "Callibration/temperature_scale.py -- kept: TemperatureScaler(keras.Model) whose only parameter is a"
        " raw tf.Variable temperature, fitted on fixed logits with sparse cross-entropy; the GradientTape loop"
        " became model.fit",
        build=build_temperature_scaling,
        watched={"model/temperature_scaler/temperature": lambda m: m.temperature},
        expected={"model/temperature_scaler/temperature": "not_updated"},
    ),
    Case(
        name="crf_transition_raw_variable",
        source=f"{GH}/Damcy/mytf2/blob/101f6dac05d5e86883d010a44c9bb1834bc04f4c/mytf2/layer/CRF.py"
        " -- kept: the CRF layer's transition matrix as a raw tf.Variable and the CRF negative log-likelihood"
        " computed by the layer (returned as its loss there, add_loss here); tfa's crf_log_likelihood replaced"
        " by a forward algorithm in tf ops",
        build=build_crf,
        watched={"model/crf_tagger/crf/trans_params": lambda m: m.get_layer("crf").trans_params},
        expected={"model/crf_tagger/crf/trans_params": "not_updated"},
    ),
    Case(
        name="clip_logit_scale_on_model",
        source=f"{GH}/RobertBiehl/CLIP-tf2/blob/180edf3bdf9fa94c666b49226e5d2c90c0edf163/clip_tf/clip.py"
        " -- kept: logit_scale = tf.Variable(log(1/0.07)) on the keras.Model, exp(logit_scale) times the cosine"
        " similarities; encoders reduced to two Dense projections, symmetric InfoNCE as the compiled loss",
        build=build_clip,
        watched={"model/clip/logit_scale": lambda m: m.logit_scale},
        expected={"model/clip/logit_scale": "not_updated"},
    ),
    Case(
        name="kendall_add_loss_layer",
        source=f"{GH}/yaringal/multi-task-learning-example/blob/1a313ebecabc69bdb6658acb7da1bf5a42025cc1/"
        "multi-task-learning-example.ipynb -- kept: CustomMultiLossLayer with log_vars from add_weight and the"
        " uncertainty-weighted loss through add_loss, targets as model inputs, compile(loss=None)",
        build=build_kendall,
        watched={
            "model/multi_loss/log_var0": lambda m: m.get_layer("multi_loss").log_vars[0],
            "model/multi_loss/log_var1": lambda m: m.get_layer("multi_loss").log_vars[1],
        },
        expected={"model/multi_loss/log_var0": "training", "model/multi_loss/log_var1": "training"},
    ),
    Case(
        name="barron_tf_function_closure",
        source=f"{GH}/google-research/google-research/blob/0c1bbe5fc971a1de1a427debc814e66ab4f1e7fa/"
        "robust_loss/adaptive.py -- kept: AdaptiveLossFunction(tf.Module) with _latent_alpha/_latent_scale through"
        " affine sigmoid/softplus, used by a @tf.function loss closing over the module (the partition function"
        " of the NLL is dropped)",
        build=build_barron,
        watched={
            "loss/adaptive_loss/adaptive/latent_alpha": lambda m: _cell(m.loss, "adaptive")._latent_alpha,
            "loss/adaptive_loss/adaptive/latent_scale": lambda m: _cell(m.loss, "adaptive")._latent_scale,
        },
        expected={
            "loss/adaptive_loss/adaptive/latent_alpha": "not_updated",
            "loss/adaptive_loss/adaptive/latent_scale": "not_updated",
        },
    ),
    Case(
        name="students_t_module_on_loss",
        source=f"{GH}/google-research/google-research/blob/0c1bbe5fc971a1de1a427debc814e66ab4f1e7fa/"
        "robust_loss/adaptive.py -- kept: StudentsTLossFunction(tf.Module) with _log_df and _latent_scale and"
        " the Student's t NLL, held as an attribute of a keras Loss",
        build=build_students_t,
        watched={
            "loss/StudentsTNLL/students_t/log_df": lambda m: m.loss.students_t._log_df,
            "loss/StudentsTNLL/students_t/latent_scale": lambda m: m.loss.students_t._latent_scale,
        },
        expected={
            "loss/StudentsTNLL/students_t/log_df": "not_updated",
            "loss/StudentsTNLL/students_t/latent_scale": "not_updated",
        },
    ),
    Case(
        name="center_loss_assign",
        source=f"{GH}/leondgarse/Keras_insightface/blob/2dae8e64a3ce94260ade4e04290110d15bc091d3/losses.py"
        " -- kept: CenterLoss with centers = tf.Variable(zeros, trainable=False) moved by"
        " centers.assign(tf.tensor_scatter_nd_sub(...)) inside call",
        build=build_center_loss,
        watched={"loss/CenterLoss/centers": lambda m: m.loss.centers},
        expected={"loss/CenterLoss/centers": "frozen"},
    ),
    Case(
        name="adaface_ema_statistics",
        source=f"{GH}/leondgarse/Keras_insightface/blob/2dae8e64a3ce94260ade4e04290110d15bc091d3/losses.py"
        " -- kept: AdaFaceLoss's batch_mean/batch_std (trainable=False) updated by EMA assigns in the loss and"
        " read under stop_gradient; NormDense reduced to cosine logits plus the negated feature norm",
        build=build_adaface,
        watched={
            "loss/AdaFaceLoss/batch_mean": lambda m: m.loss.batch_mean,
            "loss/AdaFaceLoss/batch_std": lambda m: m.loss.batch_std,
        },
        expected={"loss/AdaFaceLoss/batch_mean": "frozen", "loss/AdaFaceLoss/batch_std": "frozen"},
    ),
    Case(
        name="curricularface_ema_t",
        source=f"{GH}/tetrapod0/CurricularFace-Loss/blob/11ce44fbc8904657b52949121d7fe973af8802e4/"
        "CurricularFace.ipynb -- kept: CurricularFaceLoss with self.t = tf.Variable(0.) (trainable by default)"
        " moved by self.t.assign(alpha * r + (1 - alpha) * t) in the loss, t weighting the hard negatives;"
        " CosSimLayer kept, the CNN reduced to a Dense embedding",
        build=build_curricularface,
        watched={"loss/CurricularFaceLoss/t": lambda m: m.loss.t},
        expected={"loss/CurricularFaceLoss/t": "training"},
    ),
    Case(
        name="kl_weight_partial_epoch_end",
        source=f"{GH}/bawa-cq/topography_dl/blob/61af9ef178d71b6a89dcd7fadcab9922a4fcfe0f/callbacks.py"
        " (with models/VAE.py and losses.py) -- kept: weight = K.variable(0.0) passed to VAE_loss and set by"
        " AnnealingCallback.on_epoch_end with K.set_value(sigmoid schedule); the add_loss of the source became"
        " a functools.partial(VAE_loss, weight=...) compiled loss",
        build=build_kl_partial,
        watched={"loss/vae_loss/weight": lambda m: m.loss.keywords["weight"]},
        expected={"loss/vae_loss/weight": "training"},
    ),
    Case(
        name="kl_beta_layer_frozen",
        source=f"{GH}/larngroup/KL_divergence_loss/blob/32e9083567bb428ce931c83c9e5f9bb468e342e8/"
        "annealing_helper_objects.py (with VAE.py) -- kept: beta = tf.Variable(trainable=False) held by the"
        " Kl_annealing_loss layer whose KL term is the model's add_loss, set by AnnealingCallback.on_epoch_end"
        " (monotonic schedule)",
        build=build_kl_layer,
        watched={"model/my_model/loss_layer/beta": lambda m: m.get_layer("loss_layer").beta},
        expected={"model/my_model/loss_layer/beta": "frozen"},
    ),
    Case(
        name="loss_weights_epoch_begin",
        source=f"{GH}/jinensetpal/lint/blob/01826927a3752541234086db7b591bf5aac2992b/src/model/callbacks.py"
        " -- kept: compile(loss_weights=[K.variable, K.variable]) of a two-headed model and LossManager."
        "on_epoch_begin that sets them to (1, 0) at epoch `limit`",
        build=build_loss_weights,
        watched={
            "loss/loss_weights/output": lambda m: m._compile_loss._user_loss_weights[0],
            "loss/loss_weights/aux": lambda m: m._compile_loss._user_loss_weights[1],
        },
        expected={"loss/loss_weights/output": "training", "loss/loss_weights/aux": "training"},
    ),
    Case(
        name="dwa_epoch_begin",
        source=f"{GH}/prior-elicitation-methods/PriorLearning/blob/7d473775a90b050c509ee9dcd9bbdd0b5a28ac64/"
        "PriorLearning/multi_loss_weighting.py -- kept: dynamic_weight_averaging's weights (ones before epoch 2,"
        " then a softmax of L_t/L_0 with temperature a); they are stored in a tf.Variable of the loss and"
        " assigned by a callback at epoch begin",
        build=build_dwa,
        watched={"loss/DWAWeightedLoss/task_weights": lambda m: m.loss.task_weights},
        expected={"loss/DWAWeightedLoss/task_weights": "training"},
    ),
    Case(
        name="cost_matrix_partial_epoch_end",
        source=f"{GH}/keras-team/keras/issues/9598 (issue thread, code in the description) -- kept:"
        " w_categorical_crossentropy(y_true, y_pred, weights) compiled as functools.partial(..., weights=...)"
        " whose cost matrix is changed after every epoch; the matrix is a tf.Variable set by a callback",
        build=build_cost_matrix,
        watched={"loss/w_categorical_crossentropy/weights": lambda m: m.loss.keywords["weights"]},
        expected={"loss/w_categorical_crossentropy/weights": "training"},
    ),
    Case(
        name="class_weights_k_variable_closure",
        source="https://gist.github.com/wassname/ce364fddfc8a025bfab4348cf5de852d (copied into many"
        " repositories) -- kept: weights = K.variable(weights) in the closure of a weighted categorical"
        " cross-entropy, -sum(y_true * log(y_pred) * weights); a trainable variable the loss is linear in",
        build=build_class_weights,
        watched={"loss/loss/weights": lambda m: _cell(m.loss, "weights")},
        expected={"loss/loss/weights": "not_updated"},
        bounded=False,
    ),
    Case(
        name="crf_method_loss_in_model",
        source=f"{GH}/xuxingya/tf2crf/blob/e0df23a1daa5d1cd3db29dd18157dd0e530a0454/tf2crf/crf.py -- kept: the"
        " CRF layer's transitions from add_weight and model.compile(loss=crf.loss), the CRF the model's last"
        " layer; tfa's crf_log_likelihood replaced by a forward algorithm in tf ops, no decoding",
        build=build_crf_method_loss,
        watched={"model/crf/transitions": lambda m: m.get_layer("crf").transitions},
        expected={"model/crf/transitions": "training"},
    ),
]

CASES_BY_NAME = {case.name: case for case in CASES}
