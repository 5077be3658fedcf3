"""Sequence encoders: LSTM, GRU (one or both directions), 1-D convolution and a small Transformer.

A sequence feature reaches the model as [batch, max_length] float32 values, z-scored by
Transform, left-aligned, with NaN wherever there is no value (the padding after a sequence's end,
and a missing reading inside it). The encoder turns that into two channels per step, the value
(0 where there is none) and a 0/1 "has a value" flag, and masks the steps without one: recurrent
layers carry their state over them, the convolution's mean and the attention leave them out.
A text feature reaches it as [batch, max_length] WordPiece token ids; the padding id is masked
and the rest embedded first.

The padding and masking are in the graph, so the served model takes sequences of any length.
"""

from typing import Optional

import keras

RECURRENT = ("lstm", "gru")
KINDS = RECURRENT + ("conv1d", "transformer")


@keras.saving.register_keras_serializable(package="lamina")
class SequenceEncoderLayer(keras.layers.Layer):
    """[batch, L] values (NaN: no value) or token ids -> [batch, width]. [batch, L, C] values are C
    channels per step (a forecast's history and covariates), the first of which decides the mask.

    Args:
      kind: 'lstm', 'gru', 'conv1d' or 'transformer'.
      units: recurrent units or convolution filters per layer; the Transformer's width.
      layers: how many stacked layers (Transformer blocks).
      bidirectional: recurrent layers read both ways (output 2 x units).
      kernel_size: the convolution's width.
      dropout: on each layer's inputs, in training only.
      vocabulary_size: > 0 for token ids (text), which are embedded in `embedding_dim` first;
        0 for numeric values.
      pad_id: the token id that pads a text.
      num_heads, intermediate_dim, max_length: the Transformer's heads, feed-forward width and
        position count.
    """

    def __init__(self, kind: str = "lstm", units: int = 32, layers: int = 1, bidirectional: bool = False,
                 kernel_size: int = 3, dropout: float = 0.0, vocabulary_size: int = 0, embedding_dim: int = 32,
                 pad_id: int = 0, num_heads: int = 4, intermediate_dim: int = 128, max_length: int = 64, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"Received an invalid value for `kind`, expected one of {list(KINDS)}. "
                             f"Received: kind={kind!r}")
        if kind == "transformer" and units % num_heads:
            raise ValueError(f"the Transformer's width ({units}) must be a multiple of num_heads ({num_heads}).")
        self.kind, self.units, self.num_layers, self.bidirectional = kind, units, layers, bidirectional
        self.kernel_size, self.dropout_rate = kernel_size, dropout
        self.vocabulary_size, self.embedding_dim, self.pad_id = vocabulary_size, embedding_dim, pad_id
        self.num_heads, self.intermediate_dim, self.max_length = num_heads, intermediate_dim, max_length
        self.embedding = (keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
                          if vocabulary_size else None)
        self.dropouts = [keras.layers.Dropout(dropout) if dropout else None for _ in range(layers)]
        self.blocks = []
        if kind in RECURRENT:
            cell = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
            for i in range(layers):
                rnn = cell(units, return_sequences=i < layers - 1, name=f"{kind}_{i}")
                self.blocks.append(keras.layers.Bidirectional(rnn, name=f"bi_{kind}_{i}") if bidirectional else rnn)
        elif kind == "conv1d":
            self.blocks = [keras.layers.Conv1D(units, kernel_size, padding="same", activation="relu",
                                               name=f"conv1d_{i}") for i in range(layers)]
        else:
            self.projection = keras.layers.Dense(units, name="projection")
            self.positions = keras.layers.Embedding(max_length, units, name="positions")
            # One list per sublayer kind: Keras tracks lists of layers, not dicts inside them.
            self.blocks = [keras.layers.MultiHeadAttention(num_heads, units // num_heads, name=f"attention_{i}")
                           for i in range(layers)]
            self.norms_1 = [keras.layers.LayerNormalization(name=f"norm_{i}_1") for i in range(layers)]
            self.ffns_1 = [keras.layers.Dense(intermediate_dim, activation="gelu", name=f"ffn_{i}_1")
                           for i in range(layers)]
            self.ffns_2 = [keras.layers.Dense(units, name=f"ffn_{i}_2") for i in range(layers)]
            self.norms_2 = [keras.layers.LayerNormalization(name=f"norm_{i}_2") for i in range(layers)]

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, units=self.units, layers=self.num_layers, bidirectional=self.bidirectional,
                      kernel_size=self.kernel_size, dropout=self.dropout_rate, vocabulary_size=self.vocabulary_size,
                      embedding_dim=self.embedding_dim, pad_id=self.pad_id, num_heads=self.num_heads,
                      intermediate_dim=self.intermediate_dim, max_length=self.max_length)
        return config

    def build(self, input_shape):
        # A symbolic pass builds every sublayer, so weights load into a deserialized encoder.
        dtype = "int32" if self.embedding is not None else "float32"
        self.call(keras.KerasTensor((None, *tuple(input_shape)[1:]), dtype=dtype))
        self.built = True

    def steps_and_mask(self, inputs):
        """([batch, L, channels] steps, [batch, L] bool mask) from values or token ids."""
        ops = keras.ops
        if self.embedding is not None:
            ids = ops.cast(inputs, "int32")
            return self.embedding(ids), ops.not_equal(ids, self.pad_id)
        x = ops.cast(inputs, "float32")
        if len(x.shape) == 3:  # [batch, L, channels]: the first channel says which steps have a value
            present = ops.logical_not(ops.isnan(x[:, :, 0]))
            values = ops.where(ops.isnan(x), ops.zeros_like(x), x)
            return ops.concatenate([values, ops.expand_dims(ops.cast(present, "float32"), -1)], axis=-1), present
        present = ops.logical_not(ops.isnan(x))
        values = ops.where(present, x, ops.zeros_like(x))
        return ops.stack([values, ops.cast(present, "float32")], axis=-1), present

    def call(self, inputs, training=None):
        ops = keras.ops
        x, mask = self.steps_and_mask(inputs)
        if self.kind in RECURRENT:
            for dropout, rnn in zip(self.dropouts, self.blocks):
                x = dropout(x, training=training) if dropout is not None else x
                x = rnn(x, mask=mask, training=training)
            return x
        weights = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        if self.kind == "conv1d":
            for dropout, conv in zip(self.dropouts, self.blocks):
                x = dropout(x, training=training) if dropout is not None else x
                x = conv(x * weights)
        else:
            length = ops.shape(x)[1]
            x = self.projection(x) + self.positions(ops.arange(length))[None]
            attend = ops.logical_and(mask[:, :, None], mask[:, None, :])
            for i, attention in enumerate(self.blocks):
                h = self.dropouts[i](x, training=training) if self.dropouts[i] is not None else x
                h = attention(h, h, attention_mask=attend, training=training)
                x = self.norms_1[i](x + h)
                x = self.norms_2[i](x + self.ffns_2[i](self.ffns_1[i](x)))
        weights = ops.cast(weights, x.dtype)
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        width = self.units * (2 if self.bidirectional and self.kind in RECURRENT else 1)
        return (input_shape[0], width)


def build_sequence_encoder(name: str, config, vocabulary_size: int = 0, pad_id: int = 0,
                           kind: Optional[str] = None) -> SequenceEncoderLayer:
    """The encoder of sequence (or, with `vocabulary_size`, text) feature `name` from its spec:
    a `SequenceEncoder` (lstm, gru, conv1d) or a `TransformerEncoder`."""
    kind = kind or config.type
    if kind == "transformer":
        return SequenceEncoderLayer("transformer", units=config.hidden_dim, layers=config.num_layers,
                                    dropout=config.dropout, num_heads=config.num_heads,
                                    intermediate_dim=config.intermediate_dim, max_length=config.max_length,
                                    vocabulary_size=vocabulary_size, embedding_dim=config.hidden_dim, pad_id=pad_id,
                                    name=f"{name}_transformer")
    return SequenceEncoderLayer(kind, units=config.units, layers=config.layers, bidirectional=config.bidirectional,
                                kernel_size=config.kernel_size, dropout=config.dropout,
                                vocabulary_size=vocabulary_size, embedding_dim=config.embedding_dim, pad_id=pad_id,
                                max_length=config.max_length, name=f"{name}_{kind}")
