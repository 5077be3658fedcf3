"""Per-feature encoders: each turns one transformed feature into a dense vector.

`ENCODER_BUILDERS` maps each encoder spec class (`lamina.spec.ENCODERS`) to the function
that builds its Keras layer; `build_encoder` looks it up. A new encoder is its spec class, its
entry in `ENCODERS`, and its builder here; the combiner and heads stay as they are.
"""

from typing import Callable, Dict, Optional

import keras

from lamina.models.features import SEQUENCE, FeatureInfo
from lamina.spec import (ENCODERS, AudioEncoder, BertEncoder, CalendarEncoder, CategoricalEncoder, EncoderConfig, ImageEncoder,
                         NumericEncoder, SequenceEncoder, TransformerEncoder, encoder_names)


def _numeric(feature: FeatureInfo, config: NumericEncoder, base_dir, seed) -> keras.layers.Layer:
    if config.type == "dense":
        return keras.layers.Dense(config.units, activation="relu", name=f"{feature.key}_dense")
    return keras.layers.Identity(name=f"{feature.key}_normalized")


def _categorical(feature: FeatureInfo, config: CategoricalEncoder, base_dir, seed) -> keras.layers.Layer:
    if config.type == "one_hot":
        return keras.layers.CategoryEncoding(feature.vocab_size, output_mode="one_hot", name=f"{feature.key}_one_hot")
    return keras.Sequential([keras.layers.Embedding(feature.vocab_size, config.dim), keras.layers.Flatten()],
                            name=f"{feature.key}_embedding")


def _image(feature: FeatureInfo, config: ImageEncoder, base_dir, seed) -> keras.layers.Layer:
    from lamina.models.images import build_image_encoder

    return build_image_encoder(feature.key, feature.shape, config, base_dir=base_dir, seed=seed)


def _audio(feature: FeatureInfo, config: AudioEncoder, base_dir, seed) -> keras.layers.Layer:
    from lamina.models.audio import build_audio_encoder

    return build_audio_encoder(feature.key, config, base_dir=base_dir, seed=seed)


def _text(feature: FeatureInfo, config, base_dir, seed) -> keras.layers.Layer:
    from lamina.models.sequence import build_sequence_encoder
    from lamina.models.text import build_text_encoder

    if feature.kind == SEQUENCE:  # a Transformer over a numeric sequence
        return build_sequence_encoder(feature.key, config)
    tokenizer = feature.tokenizer()
    return build_text_encoder(feature.key, config, tokenizer.vocabulary_size, tokenizer.pad_id, base_dir=base_dir)


def _sequence(feature: FeatureInfo, config: SequenceEncoder, base_dir, seed) -> keras.layers.Layer:
    from lamina.models.sequence import build_sequence_encoder

    if feature.kind == SEQUENCE:
        return build_sequence_encoder(feature.key, config)
    tokenizer = feature.tokenizer()  # a text read by an LSTM, GRU or convolution
    return build_sequence_encoder(feature.key, config, tokenizer.vocabulary_size, tokenizer.pad_id)


def _calendar(feature: FeatureInfo, config: CalendarEncoder, base_dir, seed) -> keras.layers.Layer:
    # Transform already made the parts model-ready (z-scores, sine and cosine).
    return keras.layers.Identity(name=f"{feature.key}_calendar")


# Encoder spec class -> builder(feature, config, base_dir, seed) -> Keras layer.
ENCODER_BUILDERS: Dict[type, Callable] = {
    NumericEncoder: _numeric,
    CategoricalEncoder: _categorical,
    ImageEncoder: _image,
    BertEncoder: _text,
    TransformerEncoder: _text,
    CalendarEncoder: _calendar,
    SequenceEncoder: _sequence,
    AudioEncoder: _audio,
}
_unbuilt = [cls.__name__ for cls in ENCODERS if cls not in ENCODER_BUILDERS]
if _unbuilt:  # fails at import, not halfway through a training run
    raise TypeError(f"encoder specs without a builder in ENCODER_BUILDERS: {', '.join(_unbuilt)}")


def build_encoder(feature: FeatureInfo, config: EncoderConfig, base_dir: Optional[str] = None,
                  seed: Optional[int] = None) -> keras.layers.Layer:
    """The encoder layer for `feature`: input [batch, *feature.shape], output [batch, width].

    `base_dir` resolves relative weight paths; `seed` seeds random augmentation.
    """
    if not config.encodes(feature.kind):
        allowed = ", ".join(repr(n) for n in encoder_names(feature.kind))
        raise ValueError(f"feature {feature.name!r} is {feature.kind}; its encoder must be one of: {allowed}. "
                         f"Received: type={config.type!r}")
    return ENCODER_BUILDERS[type(config)](feature, config, base_dir, seed)
