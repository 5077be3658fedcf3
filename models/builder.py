"""Builds and compiles the Keras model from the spec: backbone, then head."""

from typing import List, Optional

import keras

from models.backbone import build_tabular_backbone, feature_inputs
from models.features import FeatureInfo
from models.heads import build_head, task_loss_and_metrics
from pipeline.spec import Spec, TrainingSpec


def build_optimizer(config: TrainingSpec, learning_rate: Optional[float] = None) -> keras.optimizers.Optimizer:
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[config.optimizer](learning_rate=learning_rate or config.learning_rate)


def compile_model(model: keras.Model, spec: Spec, learning_rate: Optional[float] = None) -> keras.Model:
    """(Re)compiles with a fresh optimizer, the task's loss and metrics; needed after (un)freezing."""
    loss, metrics = task_loss_and_metrics(spec.model.head)
    model.compile(optimizer=build_optimizer(spec.training, learning_rate), loss=loss, metrics=metrics,
                  jit_compile=spec.training.jit_compile)
    return model


def build_model(spec: Spec, features: List[FeatureInfo], num_classes: Optional[int] = None,
                compile: bool = True) -> keras.Model:
    """The compiled model: dict of transformed features -> predictions.

    Inputs are [batch, 1] per tabular feature and [batch, H, W, 3] pixels in [0, 255] per image.

    Example:
        >>> features = [FeatureInfo("bill_length_mm", "numeric"), FeatureInfo("island", "categorical", 4)]
        >>> model = build_model(spec, features, num_classes=3)
        >>> model.output_shape
        (None, 3)
    """
    inputs = feature_inputs(features)
    backbone = build_tabular_backbone(spec, features)
    head = build_head(spec.model.head, num_classes)
    outputs = head(backbone(inputs))
    model = keras.Model(inputs, outputs, name=f"{spec.name}_{spec.task}")
    if compile:
        compile_model(model, spec)
    return model
