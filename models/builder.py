"""Builds and compiles the Keras model from the spec: backbone, then head."""

from typing import Dict, List, Optional, Tuple

import keras
import numpy as np

from lamina.models.backbone import build_tabular_backbone, feature_inputs
from lamina.models.features import FeatureInfo
from lamina.models.heads import build_head, task_loss_and_metrics
from lamina.spec import Spec, TrainingSpec


@keras.saving.register_keras_serializable(package="lamina")
class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear decay to 0 at `total_steps`.

    The schedule BERT fine-tuning uses. Past `total_steps` the rate stays at 0.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = keras.ops.cast(max(self.warmup_steps, 1), "float32")
        total = keras.ops.cast(self.total_steps, "float32")
        up = self.peak * step / warmup
        down = self.peak * keras.ops.maximum(total - step, 0.0) / keras.ops.maximum(total - warmup, 1.0)
        return keras.ops.where(step < self.warmup_steps, up, down)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def learning_rate_for(spec: Spec, learning_rate: Optional[float] = None, total_steps: Optional[int] = None):
    """The spec's learning rate: a constant, or LinearWarmupDecay over `total_steps`."""
    lr = learning_rate or spec.training.learning_rate
    if spec.lr_schedule == "linear_warmup_decay" and total_steps:
        return LinearWarmupDecay(lr, round(spec.training.warmup_fraction * total_steps), total_steps)
    return lr


def build_optimizer(config: TrainingSpec, learning_rate=None) -> keras.optimizers.Optimizer:
    """The spec's optimizer; AdamW decays weights but not biases, norms and embeddings' LayerNorm."""
    learning_rate = learning_rate or config.learning_rate
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return optimizer
    optimizers = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[config.optimizer](learning_rate=learning_rate)


def compile_model(model: keras.Model, spec: Spec, learning_rate: Optional[float] = None,
                  total_steps: Optional[int] = None) -> keras.Model:
    """(Re)compiles with a fresh optimizer, the task's loss and metrics; needed after (un)freezing.

    `total_steps`: the optimizer steps this compile will run, for a warmup/decay schedule.
    """
    loss, metrics = task_loss_and_metrics(spec.model.head)
    model.compile(optimizer=build_optimizer(spec.training, learning_rate_for(spec, learning_rate, total_steps)),
                  loss=loss, metrics=metrics, jit_compile=spec.training.jit_compile)
    return model


def build_model(spec: Spec, features: List[FeatureInfo], num_classes: Optional[int] = None,
                compile: bool = True, label_moments: Optional[Tuple[float, float]] = None,
                linear: Optional[Dict[str, np.ndarray]] = None) -> keras.Model:
    """The compiled model: dict of transformed features -> predictions.

    Inputs are [batch, 1] per tabular feature and [batch, H, W, 3] pixels in [0, 255] per image.
    `label_moments`: a regression label's train-split (mean, std), for `build_head`.
    `linear`: the fitted linear model's arrays (`models.linear.fit_linear`) for `model.head.linear_start`:
    the network then starts as that model and learns what it misses.

    Example:
        >>> features = [FeatureInfo("bill_length_mm", "numeric"), FeatureInfo("island", "categorical", 4)]
        >>> model = build_model(spec, features, num_classes=3)
        >>> model.output_shape
        (None, 3)
    """
    if spec.task == "forecast":
        from lamina.models.forecast import build_forecast_model

        model = build_forecast_model(spec, features)
        if compile:
            compile_model(model, spec)
        return model
    inputs = feature_inputs(features)
    backbone = build_tabular_backbone(spec, features)
    head = build_head(spec.model.head, num_classes, label_moments, residual=linear is not None)
    outputs = head(backbone(inputs))
    if linear is not None:
        from lamina.models.linear import add_linear_start

        outputs = add_linear_start(spec.task, features, inputs, outputs, linear, label_moments)
    model = keras.Model(inputs, outputs, name=f"{spec.name}_{spec.task}")
    if compile:
        compile_model(model, spec)
    return model
