"""The forecast model: the target's history, scaled by its own window, read by a sequence encoder
with the covariates as more channels per step; the known-future covariates of the horizon and
the series ID join the encoding; a dense head answers every step of the horizon at once, scaled
back to the target's units.

Each window is scaled by the mean and deviation of its own history (so series of any level share
one model), in the graph: the served model takes the raw history and answers in raw units.
Missing values (NaN) in the history are masked, not read as zeros.
"""

from typing import List

import keras

from lamina.models.backbone import build_combiner, feature_inputs
from lamina.models.encoders import build_encoder
from lamina.models.features import CATEGORICAL, FeatureInfo, safe_name
from lamina.models.sequence import build_sequence_encoder
from lamina.spec import Spec


@keras.saving.register_keras_serializable(package="lamina")
class WindowScaler(keras.layers.Layer):
    """[batch, L] history -> (history scaled by its own mean and deviation (NaN stays), mean, scale), the
    last two [batch, 1]. A history with no value, or no spread, gets mean 0 or scale 1."""

    def call(self, history):
        ops = keras.ops
        x = ops.cast(history, "float32")
        present = ops.logical_not(ops.isnan(x))
        w = ops.cast(present, "float32")
        count = ops.maximum(ops.sum(w, axis=1, keepdims=True), 1.0)
        filled = ops.where(present, x, ops.zeros_like(x))
        mean = ops.sum(filled, axis=1, keepdims=True) / count
        var = ops.sum(w * ops.square(filled - mean), axis=1, keepdims=True) / count
        scale = ops.where(var > 1e-12, ops.sqrt(var), ops.ones_like(var))
        return (x - mean) / scale, mean, scale

    def compute_output_shape(self, input_shape):
        return input_shape, (input_shape[0], 1), (input_shape[0], 1)


@keras.saving.register_keras_serializable(package="lamina")
class Unscale(keras.layers.Layer):
    """(scaled forecast [batch, H], mean, scale) -> the forecast in the target's units."""

    def call(self, inputs):
        y, mean, scale = inputs
        return keras.ops.cast(y, "float32") * scale + mean


@keras.saving.register_keras_serializable(package="lamina")
class NanToZero(keras.layers.Layer):
    def call(self, x):
        return keras.ops.where(keras.ops.isnan(x), keras.ops.zeros_like(x), x)


@keras.saving.register_keras_serializable(package="lamina")
class MaskedMeanAbsoluteError(keras.losses.Loss):
    """Mean absolute error over the target steps that have a value (NaN targets are left out)."""

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(y_true, "float32")
        known = ops.logical_not(ops.isnan(y_true))
        error = ops.where(known, ops.abs(ops.where(known, y_true, y_pred) - y_pred), ops.zeros_like(y_pred))
        return ops.sum(error, axis=-1) / ops.maximum(ops.sum(ops.cast(known, "float32"), axis=-1), 1.0)


def build_forecast_model(spec: Spec, features: List[FeatureInfo]) -> keras.Model:
    """history (+ covariates, series ID) -> [batch, horizon] forecasts in the target's units."""
    fc = spec.forecast
    inputs = feature_inputs(features)
    history = inputs[safe_name(spec.data.label)]
    scaled, mean, scale = WindowScaler(name="window_scaler")(history)
    channels = [keras.layers.Reshape((fc.lookback, 1), name="history_steps")(scaled)]
    horizon_parts = []
    by_name = {f.name: f for f in features}
    for name in sorted(fc.covariates):
        f = by_name[name]
        per_step = keras.layers.Reshape((f.max_length, 1), name=f"{f.key}_steps")(inputs[f.key])
        if name in fc.known_future:  # its first L steps go beside the history, the last H to the head
            future = keras.layers.Cropping1D((fc.lookback, 0), name=f"{f.key}_future")(per_step)
            horizon_parts.append(NanToZero(name=f"{f.key}_horizon")(keras.layers.Flatten()(future)))
            per_step = keras.layers.Cropping1D((0, fc.horizon), name=f"{f.key}_past")(per_step)
        channels.append(per_step)
    steps = channels[0] if len(channels) == 1 else keras.layers.Concatenate(axis=-1, name="steps")(channels)
    config = spec.encoder_for(spec.data.label, "sequence")
    encoded = [build_sequence_encoder(safe_name(spec.data.label), config)(steps)]
    encoded += horizon_parts
    for f in features:
        if f.kind == CATEGORICAL:
            encoded.append(build_encoder(f, spec.encoder_for(f.name, CATEGORICAL))(inputs[f.key]))
    x = encoded[0] if len(encoded) == 1 else keras.layers.Concatenate(name="concat")(encoded)
    if spec.model.combiner.hidden_units:
        x = build_combiner(spec.model.combiner)(x)
    if spec.model.head.units:
        x = keras.layers.Dense(spec.model.head.units, activation="relu", name="head_hidden")(x)
    if spec.model.head.dropout:
        x = keras.layers.Dropout(spec.model.head.dropout, name="head_dropout")(x)
    y = keras.layers.Dense(fc.horizon, dtype="float32", name="forecast_scaled")(x)
    outputs = Unscale(name="forecast")([y, mean, scale])
    return keras.Model(inputs, outputs, name=f"{spec.name}_forecast")
