"""Per-feature encoders: each turns one transformed feature into a dense vector.

New modalities (images, text, sequences) add an encoder here and a branch in
`build_encoder`; the combiner and heads stay as they are.
"""

from typing import Optional

import keras

from models.features import CATEGORICAL, IMAGE, NUMERIC, TEXT, FeatureInfo
from pipeline.spec import TEXT_ENCODERS, CategoricalEncoder, ImageEncoder, NumericEncoder


def build_encoder(feature: FeatureInfo, config, base_dir: Optional[str] = None,
                  seed: Optional[int] = None) -> keras.layers.Layer:
    """The encoder layer for `feature`: input [batch, *feature.shape], output [batch, width].

    `base_dir` resolves relative weight paths; `seed` seeds random augmentation.
    """
    if feature.kind == NUMERIC:
        if not isinstance(config, NumericEncoder):
            raise ValueError(f"feature {feature.name!r} is numeric; its encoder must be 'normalized' or 'dense'. "
                             f"Received: type={config.type!r}")
        if config.type == "dense":
            return keras.layers.Dense(config.units, activation="relu", name=f"{feature.name}_dense")
        return keras.layers.Identity(name=f"{feature.name}_normalized")
    if feature.kind == CATEGORICAL:
        if not isinstance(config, CategoricalEncoder):
            raise ValueError(f"feature {feature.name!r} is categorical; its encoder must be 'embedding' or "
                             f"'one_hot'. Received: type={config.type!r}")
        if config.type == "one_hot":
            return keras.layers.CategoryEncoding(feature.vocab_size, output_mode="one_hot",
                                                 name=f"{feature.name}_one_hot")
        return keras.Sequential(
            [keras.layers.Embedding(feature.vocab_size, config.dim), keras.layers.Flatten()],
            name=f"{feature.name}_embedding",
        )
    if feature.kind == IMAGE:
        if not isinstance(config, ImageEncoder):
            raise ValueError(f"feature {feature.name!r} is an image; its encoder must be 'resnet'. "
                             f"Received: type={config.type!r}")
        from models.images import build_image_encoder

        return build_image_encoder(feature.name, feature.shape, config, base_dir=base_dir, seed=seed)
    if feature.kind == TEXT:
        if not isinstance(config, TEXT_ENCODERS):
            raise ValueError(f"feature {feature.name!r} is text; its encoder must be 'bert' or 'transformer'. "
                             f"Received: type={config.type!r}")
        from models.text import build_text_encoder

        tokenizer = feature.tokenizer()
        return build_text_encoder(feature.name, config, tokenizer.vocabulary_size, tokenizer.pad_id,
                                  base_dir=base_dir)
    raise ValueError(f"feature {feature.name!r}: no encoder for kind {feature.kind!r}; "
                     f"expected one of: {NUMERIC!r}, {CATEGORICAL!r}, {IMAGE!r}, {TEXT!r}.")
