"""Transform's preprocessing_fn: the one place raw features become model inputs.

Numeric features: missing values are filled with the mean, then z-scored.
Categorical features: missing values become '', then a vocabulary maps them to ids.
Image features: the encoded bytes pass through; tf.data and the serving graph decode them.
Text features: the UTF-8 string passes through ('' when missing); the model's tokenizer runs in
tf.data and in the serving graph.
The label becomes a class index (classification) or a float (regression).
The same graph runs inside the exported SavedModel, so serving cannot drift from training.
"""

import tensorflow as tf
import tensorflow_transform as tft

from lamina.models.features import (CATEGORICAL, IMAGE, LABEL_VOCABULARY, NUMERIC, TEXT, input_feature_names,
                             kind_from_dtype, transformed_label_key, transformed_name)
from lamina.pipeline.spec import Spec


def _to_dense(x, default):
    """A [batch] dense tensor from a dense, sparse or ragged column; missing values get `default`."""
    if isinstance(x, tf.SparseTensor):
        batch = x.dense_shape[0]
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [batch, 1]), default_value=default)
    elif isinstance(x, tf.RaggedTensor):
        x = x[:, :1].to_tensor(default_value=default, shape=[None, 1])
    if x.shape.rank == 2:
        x = tf.squeeze(x, axis=1)
    return x


def _values(x):
    return x.values if isinstance(x, (tf.SparseTensor, tf.RaggedTensor)) else tf.reshape(x, [-1])


def _numeric(x):
    mean = tft.mean(tf.cast(_values(x), tf.float32))
    if isinstance(x, tf.SparseTensor):
        x = tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    elif isinstance(x, tf.RaggedTensor):
        x = tf.cast(x, tf.float32)
    dense = tf.cast(_to_dense(x, float("nan")), tf.float32)
    # Missing (and NaN) values take the training mean, so they land on 0 after scaling.
    dense = tf.where(tf.math.is_nan(dense), mean, dense)
    return tft.scale_to_z_score(dense)


def _categorical(x, name, cfg):
    if x.dtype != tf.string:
        if isinstance(x, tf.SparseTensor):
            x = tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
        else:
            x = tf.strings.as_string(x)
    dense = _to_dense(x, "")
    return tft.compute_and_apply_vocabulary(
        dense, top_k=cfg.top_k, num_oov_buckets=cfg.num_oov_buckets, vocab_filename=name)


def preprocessing_fn(inputs, custom_config):
    """tf.Transform callback. `custom_config['spec']` holds the spec as JSON."""
    spec = Spec.from_json(custom_config["spec"])
    declared = spec.data.feature_types
    outputs = {}
    for name in input_feature_names(spec, list(inputs)):
        x = inputs[name]
        kind = declared.get(name) or kind_from_dtype(x.dtype)
        if kind == NUMERIC:
            outputs[transformed_name(name)] = _numeric(x)
        elif kind == CATEGORICAL:
            outputs[transformed_name(name)] = _categorical(x, name, spec.encoder_for(name, CATEGORICAL))
        elif kind in (IMAGE, TEXT):
            outputs[transformed_name(name)] = tf.identity(_to_dense(x, ""))
        else:  # rejected by the spec already; kept as a guard for new feature types
            raise ValueError(f"feature {name!r}: type {kind!r} has no preprocessing; expected 'numeric', "
                             f"'categorical', 'image' or 'text'.")

    raw_label = inputs[spec.data.label]
    label = _to_dense(raw_label, "" if raw_label.dtype == tf.string else tf.cast(0, raw_label.dtype))
    if spec.task == "classification":
        if label.dtype != tf.string:
            label = tf.strings.as_string(label)
        # Sorted by frequency, then value; labels never seen in training map to -1.
        outputs[transformed_label_key(spec.data.label)] = tft.compute_and_apply_vocabulary(
            label, vocab_filename=LABEL_VOCABULARY, num_oov_buckets=0, default_value=-1)
    else:
        outputs[transformed_label_key(spec.data.label)] = tf.cast(label, tf.float32)
    return outputs
