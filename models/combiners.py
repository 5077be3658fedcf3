"""Combiners: how the per-feature encodings are fused before the dense stack.

  concat     the encodings side by side.
  gated      each encoding projected to `dim`, then scaled by a learned gate in (0, 1) per encoding
             and example, computed from all of them: the model learns how much each modality counts
             for each example (a missing or noisy one can be turned down).
  attention  each encoding projected to `dim` is one token; multi-head self-attention across the
             tokens (each modality attends to the others), a residual and layer norm, then the
             tokens side by side.
"""

from typing import List

import keras

from lamina.spec import CombinerSpec


@keras.saving.register_keras_serializable(package="lamina")
class StackTokens(keras.layers.Layer):
    """A list of [batch, dim] tensors -> [batch, tokens, dim]."""

    def call(self, inputs):
        return keras.ops.stack(inputs, axis=1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], len(input_shapes), input_shapes[0][-1])


@keras.saving.register_keras_serializable(package="lamina")
class ApplyGates(keras.layers.Layer):
    """([batch, tokens, dim] tokens, [batch, tokens] gates) -> [batch, tokens * dim] gated tokens."""

    def call(self, inputs):
        tokens, gates = inputs
        gated = tokens * keras.ops.expand_dims(keras.ops.cast(gates, tokens.dtype), -1)
        return keras.ops.reshape(gated, (-1, gated.shape[1] * gated.shape[2]))

    def compute_output_shape(self, input_shapes):
        shape = input_shapes[0]
        return (shape[0], shape[1] * shape[2])


def fuse(config: CombinerSpec, encoded: List, names: List[str]):
    """The fused vector of `encoded` ([batch, width] each, from the features `names`)."""
    if config.type == "concat" or (len(encoded) == 1 and config.type == "gated"):
        return encoded[0] if len(encoded) == 1 else keras.layers.Concatenate(name="concat")(encoded)
    dim = config.dim
    tokens = [keras.layers.Dense(dim, name=f"{name}_to_{config.type}")(x) for x, name in zip(encoded, names)]
    stacked = StackTokens(name="modality_tokens")(tokens)
    if config.type == "gated":
        joint = keras.layers.Concatenate(name="gate_inputs")(tokens)
        gates = keras.layers.Dense(len(tokens), activation="sigmoid", name="modality_gates")(joint)
        return ApplyGates(name="gated")([stacked, gates])
    attended = keras.layers.MultiHeadAttention(config.heads, max(dim // config.heads, 1),
                                               name="cross_modal_attention")(stacked, stacked)
    x = keras.layers.LayerNormalization(name="attention_norm")(keras.layers.Add(name="attention_residual")(
        [stacked, attended]))
    return keras.layers.Flatten(name="attended")(x)
