"""Exports the trained model as a SavedModel with the Transform graph inside.

Signatures:
  serving_default     serialized tf.Example under `inputs` -> predictions. Its method is
                      tensorflow/serving/classify (or /regress), so TF Serving's Classify
                      (Regress) API, TFMA and BulkInferrer all accept it.
  serving_raw         one [batch] tensor per raw feature, by the column's own name (spaces,
                      symbols and any script included) -> the same predictions.
                      Missing values: NaN for floats, '' for strings. An image feature takes
                      the encoded JPEG/PNG/GIF/BMP bytes; decoding and resizing happen here.
                      An audio feature takes a WAV file's bytes; decoding, mono mixdown and
                      resampling happen here (lamina.models.audio).
                      A text feature takes UTF-8 strings; WordPiece tokenization happens here.
                      A sequence feature takes [batch, length] float32, each row's values
                      followed by NaN up to the longest row's length (ragged lists, padded).
  transform_features  serialized tf.Example -> transformed features, label included.
  transform_label     serialized tf.Example -> the transformed label alone: what TFMA needs of Transform
                      (components/evaluation_schema.py says why the rest costs it time).

Numeric features are float32 in both signatures. A tf.Example may leave out any numeric,
categorical, text or date feature: it then takes the value Transform imputes for a missing one.

Outputs: classification {'classes': [batch, C] string, 'scores': [batch, C] float32};
regression {'outputs': [batch] float32}.

Why keras.export.ExportArchive and not tf.saved_model.save(model): the latter's graph cannot
find Keras 3 variables when loaded into a TF1 session, which is how BulkInferrer runs models
("Could not find variable dense/bias"). ExportArchive tracks them explicitly.
"""

import json
import os
from typing import Dict, List, Optional

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from lamina.models.audio import decode_wav, decode_wavs
from lamina.models.features import (AUDIO, IMAGE, SEQUENCE, TEXT, FeatureInfo, label_key, label_vocabulary,
                                    safe_name)
from lamina.models.images import (BACKBONE_DIR, backbone_feature, decode_image, decode_images, image_backbones,
                                  save_backbone)
from lamina.spec import Spec
from lamina.constants import CLASSIFY_METHOD, DEFAULT_SIGNATURE, RAW_SIGNATURE, REGRESS_METHOD

SERVING_DEFAULT = DEFAULT_SIGNATURE
SERVING_RAW = RAW_SIGNATURE
TRANSFORM_FEATURES = "transform_features"
TRANSFORM_LABEL = "transform_label"
# Beside the model (assets.extra/lamina/, which TF Serving ignores): each column's safe name and dtype.
COLUMNS_FILE = "columns.json"


def model_inputs(transformed: Dict[str, tf.Tensor], features: List[FeatureInfo],
                 batched: bool = True) -> Dict[str, tf.Tensor]:
    """Transformed features -> the model's inputs, by raw name.

    Batched ([batch] each, as in the serving graph): tabular features become [batch, 1] of the
    model's dtype, encoded images [batch, H, W, 3] float32 pixels, texts [batch, max_length] int32
    token ids. Unbatched (one example, as
    tf.data maps it): [1] per tabular feature, [H, W, 3] per image, [max_length] per text.
    """
    out = {}
    for f in features:
        value = transformed[f.transformed_key]
        if f.kind == IMAGE:
            out[f.key] = (decode_images if batched else decode_image)(value, f.image_size)
        elif f.kind == AUDIO:
            seconds = f.max_length / f.sample_rate
            out[f.key] = (decode_wavs if batched else decode_wav)(value, f.sample_rate, seconds)
        elif f.kind == TEXT:
            out[f.key] = f.tokenizer()(value)
        else:
            out[f.key] = tf.reshape(tf.cast(value, f.dtype), [-1, *f.shape] if batched else list(f.shape))
    return out


def padded_to_sparse(value: tf.Tensor) -> tf.SparseTensor:
    """[batch, width] float values padded at the end with NaN -> a [batch, width] SparseTensor of
    each row's values up to its last non-NaN one (a NaN before it is a missing value, and stays)."""
    value = tf.convert_to_tensor(value, tf.float32)
    present = tf.logical_not(tf.math.is_nan(value))
    width = tf.shape(value, out_type=tf.int64)[1]
    steps = tf.range(width)[None, :] + tf.zeros_like(value, tf.int64)
    lengths = tf.reduce_max(tf.where(present, steps + 1, tf.zeros_like(steps)), axis=1)
    keep = steps < lengths[:, None]
    return tf.SparseTensor(tf.where(keep), tf.boolean_mask(value, keep), tf.shape(value, out_type=tf.int64))


def raw_to_tft_format(name: str, value: tf.Tensor, fspec) -> tf.Tensor:
    """A dense [batch] raw tensor -> what the Transform graph expects for that feature."""
    if value.shape.rank == 2:  # a sequence feature, padded with NaN
        return padded_to_sparse(value)
    if isinstance(fspec, tf.io.FixedLenFeature):
        return value if fspec.shape == [] or fspec.shape == () else tf.reshape(value, [-1] + list(fspec.shape))
    # VarLen: a missing value (NaN or '') becomes an absent entry of a [batch, 1] SparseTensor.
    if value.dtype == tf.string:
        present = tf.not_equal(value, "")
    elif value.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(value))
    else:
        present = tf.ones_like(value, dtype=tf.bool)
    rows = tf.cast(tf.where(present)[:, 0], tf.int64)
    indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)
    return tf.SparseTensor(indices, tf.boolean_mask(value, present), tf.stack([tf.size(value, tf.int64), 1]))


def export_serving_model(model: keras.Model, tf_transform_output, spec: Spec, features: List[FeatureInfo],
                         export_dir: str) -> str:
    """Writes the SavedModel to `export_dir` and returns it."""
    tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    feature_names = [f.name for f in features]
    image_names = {f.name for f in features if f.kind in (IMAGE, AUDIO)}
    serving_spec = {k: v for k, v in raw_spec.items() if k in feature_names}
    classes: Optional[List[str]] = label_vocabulary(tf_transform_output) if spec.task == "classification" else None

    def predict(raw_features):
        transformed = tft_layer(raw_features)
        y = model(model_inputs(transformed, features), training=False)
        if spec.task == "forecast":
            return {"forecast": tf.cast(y, tf.float32)}
        if classes is None:
            return {"outputs": tf.reshape(tf.cast(y, tf.float32), [-1])}
        batch = tf.shape(y)[0]
        names = tf.tile(tf.constant([classes]), tf.stack([batch, 1]))
        return {"classes": names, "scores": tf.cast(y, tf.float32)}

    # Every feature but an image may be absent from a tf.Example: parsed as VarLen, it is filled
    # with the missing-value marker (NaN, '') that Transform imputes, whatever the schema required.
    optional = {k for k, v in serving_spec.items()
                if isinstance(v, tf.io.FixedLenFeature) and list(v.shape) in ([], [1]) and k not in image_names
                and v.dtype in (tf.float32, tf.string)}
    example_spec = {k: tf.io.VarLenFeature(v.dtype) if k in optional else v for k, v in serving_spec.items()}

    def serve_examples(inputs):
        parsed = tf.io.parse_example(inputs, example_spec)
        for k in optional:
            missing = "" if serving_spec[k].dtype == tf.string else float("nan")
            sparse = parsed[k]
            dense = tf.sparse.to_dense(tf.SparseTensor(sparse.indices, sparse.values, [tf.shape(inputs)[0], 1]),
                                       default_value=missing)[:, 0]
            parsed[k] = raw_to_tft_format(k, dense, serving_spec[k])
        return predict(parsed)

    def serve_raw(raw):
        return predict({k: raw_to_tft_format(k, v, serving_spec[k]) for k, v in raw.items()})

    def transform_examples(examples):
        return tft_layer(tf.io.parse_example(examples, raw_spec))

    def transform_label(examples):
        key = label_key(spec)
        return {key: transform_examples(examples)[key]}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tft_layer)
    examples_sig = [tf.TensorSpec([None], tf.string, name="inputs")]
    archive.add_endpoint(SERVING_DEFAULT, serve_examples, input_signature=examples_sig)
    # TensorFlow names a signature's inputs after its placeholders, which must be identifiers:
    # the placeholders get the safe names, and the SignatureDef is then keyed by the columns' own.
    sequences = {f.name for f in features if f.kind == SEQUENCE}
    raw_sig = [{k: tf.TensorSpec([None, None] if k in sequences else [None], v.dtype, name=safe_name(k))
                for k, v in sorted(serving_spec.items())}]
    archive.add_endpoint(SERVING_RAW, serve_raw, input_signature=raw_sig)
    archive.add_endpoint(TRANSFORM_FEATURES, transform_examples,
                         input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    archive.add_endpoint(TRANSFORM_LABEL, transform_label,
                         input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    archive.write_out(export_dir, verbose=False)
    if spec.task != "forecast":  # a forecast answers H values per example: Predict only
        set_signature_method(export_dir, SERVING_DEFAULT, CLASSIFY_METHOD if classes is not None else REGRESS_METHOD)
    renamed = {safe_name(k): k for k in serving_spec if safe_name(k) != k}
    if renamed:
        rename_signature_inputs(export_dir, SERVING_RAW, renamed)
    tf.io.gfile.makedirs(os.path.join(export_dir, BACKBONE_DIR))
    with tf.io.gfile.GFile(os.path.join(export_dir, BACKBONE_DIR, COLUMNS_FILE), "w") as f:
        json.dump({"columns": {k: safe_name(k) for k in sorted(serving_spec)},
                   "dtypes": {k: v.dtype.name for k, v in sorted(serving_spec.items())},
                   "sequences": sorted(sequences)}, f, indent=2,
                  ensure_ascii=False)
    # The image backbone's weights ride along (TF Serving ignores assets.extra/lamina), so a
    # later run can start from this model: `weights: <push dir>/<model name>`.
    for backbone in image_backbones(model):
        save_backbone(backbone, os.path.join(export_dir, BACKBONE_DIR),
                      spec.image_encoder(backbone_feature(backbone, spec.data.feature_types)))
    # The vocabulary is inside the graph already; this copy is for people and tools to read.
    for f in features:
        if f.kind == TEXT:
            tf.io.gfile.makedirs(os.path.join(export_dir, BACKBONE_DIR))
            tf.io.gfile.copy(f.vocabulary, os.path.join(export_dir, BACKBONE_DIR, f"{f.name}_vocab.txt"),
                             overwrite=True)
    return export_dir


def _edit_saved_model(export_dir: str, edit) -> None:
    path = os.path.join(export_dir, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        edit(meta_graph)
    # Written beside it and renamed over it: no reader ever sees half a file, and filesystems
    # whose writes do not truncate (TensorFlow's ram://) get a whole new one.
    with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
        f.write(proto.SerializeToString())
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def rename_signature_inputs(export_dir: str, signature: str, renames: Dict[str, str]) -> None:
    """Keys `signature`'s inputs by new names ({old: new}); the tensors they point to stay.

    TF Serving feeds a SignatureDef's inputs by key, so its clients may use the columns' own
    names; `lamina serve` maps the keys back to the function's arguments through the same def.
    """
    def edit(meta_graph):
        if signature in meta_graph.signature_def:
            inputs = meta_graph.signature_def[signature].inputs
            for old, new in renames.items():
                if old in inputs:
                    inputs[new].CopyFrom(inputs[old])
                    del inputs[old]

    _edit_saved_model(export_dir, edit)


def set_signature_method(export_dir: str, signature: str, method_name: str) -> None:
    """Marks a signature as classify/regress, which TF Serving's Classify/Regress APIs require.

    TF2 writes every signature as tensorflow/serving/predict; loaders that go by the method
    name (TF Serving, tfx-bsl's RunInference) need the real one. Predict still accepts it.
    """
    def edit(meta_graph):
        if signature in meta_graph.signature_def:
            meta_graph.signature_def[signature].method_name = method_name

    _edit_saved_model(export_dir, edit)
