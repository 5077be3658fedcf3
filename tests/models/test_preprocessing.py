"""Transform's preprocessing_fn on a tiny in-memory dataset with tf.Transform's Beam implementation."""

import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from lamina.models.preprocessing import preprocessing_fn
from lamina.pipeline.spec import Spec

RAW = [
    {"length": [1.0], "count": [10], "colour": [b"red"], "label": [b"a"]},
    {"length": [3.0], "count": [20], "colour": [b"blue"], "label": [b"b"]},
    {"length": [], "count": [30], "colour": [b"red"], "label": [b"a"]},  # length missing
    {"length": [5.0], "count": [40], "colour": [], "label": [b"b"]},     # colour missing
]
FEATURE_SPEC = {
    "length": tf.io.VarLenFeature(tf.float32),
    "count": tf.io.FixedLenFeature([], tf.int64),
    "colour": tf.io.VarLenFeature(tf.string),
    "label": tf.io.FixedLenFeature([], tf.string),
}


def _instances():
    out = []
    for r in RAW:
        out.append({"length": np.array(r["length"], np.float32), "count": r["count"][0],
                    "colour": np.array(r["colour"], object), "label": r["label"][0]})
    return out


def _transform(spec_dict):
    spec = Spec.from_dict(spec_dict)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(FEATURE_SPEC))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (data, _), _ = (_instances(), metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {"spec": spec.to_json()}), output_record_batches=False)
    return {k: np.array([row[k] for row in data]) for k in data[0]}


def test_types_inferred_from_the_schema_when_not_declared():
    out = _transform({"data": {"path": "x.csv", "label": "label"}})
    assert sorted(out) == ["colour_xf", "count_xf", "label_xf", "length_xf"]
    # length: missing value imputed with the mean (3.0), then z-scored: mean 0.
    np.testing.assert_allclose(out["length_xf"][2], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["length_xf"].mean(), 0.0, atol=1e-6)
    # count: an INT column is numeric; z-score of 10..40.
    expected = (np.array([10, 20, 30, 40]) - 25) / np.std([10, 20, 30, 40])
    np.testing.assert_allclose(out["count_xf"], expected, rtol=1e-5)
    # colour: categorical vocabulary ids, the missing value becomes its own '' entry.
    assert out["colour_xf"].dtype == np.int64
    assert out["colour_xf"][0] == out["colour_xf"][2] != out["colour_xf"][1]
    assert len(set(out["colour_xf"].tolist())) == 3
    # label: class ids in [0, 2).
    assert out["label_xf"].tolist() in ([0, 1, 0, 1], [1, 0, 1, 0])


def test_declared_categorical_overrides_a_numeric_column():
    out = _transform({"data": {"path": "x.csv", "label": "label",
                               "features": {"count": "categorical", "length": "numeric"}}})
    assert sorted(out) == ["count_xf", "label_xf", "length_xf"]  # colour is not a declared feature
    assert out["count_xf"].dtype == np.int64 and len(set(out["count_xf"].tolist())) == 4
