"""The backbone: per-feature encoders fused by a combiner, with no head.

A headless functional model from a dict of transformed features to one vector,
so heads and future multimodal encoders plug in without a new code path.
"""

from typing import List

import keras

from lamina.models.combiners import fuse
from lamina.models.encoders import build_encoder
from lamina.models.features import FeatureInfo
from lamina.spec import CombinerSpec, Spec


def feature_inputs(features: List[FeatureInfo]) -> dict:
    """One Keras input per transformed feature: [batch, 1], or [batch, H, W, 3] for images."""
    return {f.key: keras.Input(shape=f.shape, name=f.key, dtype=f.dtype) for f in features}


def build_combiner(config: CombinerSpec, name: str = "combiner") -> keras.Sequential:
    layers = []
    for i, units in enumerate(config.hidden_units):
        layers.append(keras.layers.Dense(units, activation=config.activation, name=f"{name}_dense_{i}"))
        if config.dropout:
            layers.append(keras.layers.Dropout(config.dropout, name=f"{name}_dropout_{i}"))
    return keras.Sequential(layers, name=name)


def build_tabular_backbone(spec: Spec, features: List[FeatureInfo]) -> keras.Model:
    """Encoders, then the combiner's fusion (lamina.models.combiners), then its dense stack."""
    if not features:
        raise ValueError("the backbone needs at least one input feature. Received: features=[]")
    inputs = feature_inputs(features)
    encoded = [build_encoder(f, spec.encoder_for(f.name, f.kind), base_dir=spec.base_dir,
                             seed=spec.training.seed)(inputs[f.key]) for f in features]
    x = fuse(spec.model.combiner, encoded, [f.key for f in features])
    if spec.model.combiner.hidden_units:
        deep = build_combiner(spec.model.combiner)(x)
        x = keras.layers.Concatenate(name="wide_and_deep")([deep, x]) if spec.model.combiner.skip else deep
    return keras.Model(inputs, x, name="backbone")
