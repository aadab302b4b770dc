"""The loss parameters where users already look: Keras's `logs`, and warnings at the user's line."""

import csv
import glob
import math
import os
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from loss_param_tracker import LossParamTracker, LossParamWarning
from tests.conftest import GaussianNLL, make_data, make_model


class Uncertainty(keras.losses.Loss):
    """Kendall et al.'s weighting of two terms by learned log-variances: a vector of two."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_vars = keras.Variable(np.zeros(2, "float32"), name="log_vars")

    def call(self, y_true, y_pred):
        error = tf.square(y_true - y_pred)
        terms = tf.stack([tf.reduce_mean(error, -1), tf.reduce_mean(tf.abs(y_true - y_pred), -1)], -1)
        return tf.reduce_sum(tf.exp(-self.log_vars) * terms + self.log_vars, -1)


def test_history_csv_logger_and_keras_tensorboard_get_the_loss_parameters(tmp_path):
    from loss_param_tracker import make_trainable

    model, loss = make_model(), GaussianNLL()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    make_trainable(model)
    x, y = make_data()
    csv_path = str(tmp_path / "epochs.csv")
    tracker = LossParamTracker(str(tmp_path / "ours"), display={"log_var": keras_sigma()})
    history = model.fit(
        x, y, epochs=3, batch_size=64, verbose=0,
        callbacks=[
            tracker,
            keras.callbacks.CSVLogger(csv_path),
            keras.callbacks.TensorBoard(str(tmp_path / "keras")),
            keras.callbacks.EarlyStopping(monitor="GaussianNLL/sigma", patience=10, mode="min"),
        ],
    )
    shown = history.history["GaussianNLL/sigma"]
    assert len(shown) == 3 and all(isinstance(v, float) for v in shown), shown
    assert shown[-1] == pytest.approx(math.exp(0.5 * float(loss.log_var.numpy())), rel=1e-6)
    assert len(set(shown)) == 3, "it trains"
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["GaussianNLL/sigma"]) for r in rows] == pytest.approx(shown)
    (events,) = glob.glob(str(tmp_path / "keras" / "train" / "events.*"))
    acc = event_accumulator.EventAccumulator(events, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    logged = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("epoch_GaussianNLL/sigma")]
    assert logged == pytest.approx(shown)


def keras_sigma():
    from loss_param_tracker import Display

    return Display("exp", inner_scale=0.5, label="sigma")


def test_vector_elements_get_a_key_each_and_the_switch_turns_it_off(tmp_path):
    x, y = make_data()
    model = make_model()
    model.compile(optimizer="adam", loss=Uncertainty())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossParamWarning)
        history = model.fit(x, y, epochs=2, verbose=0, callbacks=[LossParamTracker(str(tmp_path / "on"))])
        assert history.history["Uncertainty/log_vars/0"] == [0.0, 0.0]
        assert history.history["Uncertainty/log_vars/1"] == [0.0, 0.0]
        assert all(re.fullmatch(r"[\w./ -]+", key) for key in history.history), "names MLflow accepts"
        model = make_model()
        model.compile(optimizer="adam", loss=Uncertainty())
        off = LossParamTracker(str(tmp_path / "off"), add_to_logs=False)
        history = model.fit(x, y, epochs=1, verbose=0, callbacks=[off])
    assert set(history.history) == {"loss"}
    with pytest.raises(ValueError, match="add_to_logs='yes'"):
        LossParamTracker(str(tmp_path), add_to_logs="yes")


def test_a_value_that_is_not_finite_goes_into_logs_as_nan(tmp_path):
    class Exploding(keras.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = keras.Variable(1.0, name="scale")

        def call(self, y_true, y_pred):
            self.scale.assign(self.scale * 1e30)
            return tf.reduce_mean(tf.square(y_true - y_pred), -1) * tf.stop_gradient(self.scale)

    model = make_model()
    model.compile(optimizer="sgd", loss=Exploding())
    x, y = make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, y, epochs=1, verbose=0, callbacks=[LossParamTracker(str(tmp_path))])
    (value,) = history.history["Exploding/scale"]
    assert isinstance(value, float) and not math.isfinite(value)


def test_a_metric_of_the_same_name_is_kept_and_the_variable_left_out(tmp_path, caplog):
    class Same(keras.metrics.Mean):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(tf.reduce_mean(y_pred))

    model = make_model()
    model.compile(optimizer="adam", loss=GaussianNLL(), metrics=[Same(name="GaussianNLL/log_var")])
    x, y = make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossParamWarning)
        history = model.fit(x, y, epochs=1, verbose=0, callbacks=[LossParamTracker(str(tmp_path))])
    assert history.history["GaussianNLL/log_var"][0] != 0.0, "the metric's value, not the variable's"
    assert "logs already hold 'GaussianNLL/log_var'" in caplog.text


def test_warnings_point_at_the_line_that_called_fit(tmp_path):
    model = make_model()
    model.compile(optimizer="adam", loss=GaussianNLL())
    x, y = make_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LossParamTracker(str(tmp_path))]); line = _line()  # noqa: E702
    (warning,) = [w for w in caught if w.category is LossParamWarning]
    assert os.path.samefile(warning.filename, __file__), warning.filename
    assert warning.lineno == line, (warning.lineno, line)


def _line():
    import inspect

    return inspect.currentframe().f_back.f_lineno
