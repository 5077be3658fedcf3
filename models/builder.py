"""Builds and compiles the Keras model from the spec: backbone, then head."""

from typing import List, Optional

import keras

from models.backbone import build_tabular_backbone, feature_inputs
from models.features import FeatureInfo
from models.heads import build_head
from pipeline.spec import Spec, TrainingSpec


def build_optimizer(config: TrainingSpec) -> keras.optimizers.Optimizer:
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return optimizers[config.optimizer](learning_rate=config.learning_rate)


def build_model(spec: Spec, features: List[FeatureInfo], num_classes: Optional[int] = None,
                compile: bool = True) -> keras.Model:
    """The compiled model: dict of transformed features ([batch, 1] each) -> predictions.

    Example:
        >>> features = [FeatureInfo("bill_length_mm", "numeric"), FeatureInfo("island", "categorical", 4)]
        >>> model = build_model(spec, features, num_classes=3)
        >>> model.output_shape
        (None, 3)
    """
    inputs = feature_inputs(features)
    backbone = build_tabular_backbone(spec, features)
    head = build_head(spec.model.head, num_classes)
    outputs = head.layers(backbone(inputs))
    model = keras.Model(inputs, outputs, name=f"{spec.name}_{spec.task}")
    if compile:
        model.compile(optimizer=build_optimizer(spec.training), loss=head.loss, metrics=head.metrics,
                      jit_compile=spec.training.jit_compile)
    return model
