"""The model builder: backbone, head and their shapes, per encoder type."""

import keras
import numpy as np
import pytest

from lamina.models.backbone import build_tabular_backbone
from lamina.models.builder import build_model
from lamina.models.features import CATEGORICAL, NUMERIC, FeatureInfo
from lamina.models.heads import build_head
from lamina.spec import HeadSpec
from tests.helpers import make_spec

FEATURES = [FeatureInfo("bill_length_mm", NUMERIC), FeatureInfo("body_mass_g", NUMERIC),
            FeatureInfo("island", CATEGORICAL, vocab_size=4), FeatureInfo("sex", CATEGORICAL, vocab_size=3)]


def _batch(n=5):
    rng = np.random.default_rng(0)
    return {"bill_length_mm": rng.normal(size=(n, 1)).astype("float32"),
            "body_mass_g": rng.normal(size=(n, 1)).astype("float32"),
            "island": rng.integers(0, 4, size=(n, 1)), "sex": rng.integers(0, 3, size=(n, 1))}


def test_classifier_shapes_and_probabilities(tmp_path):
    model = build_model(make_spec(tmp_path), FEATURES, num_classes=3)
    assert sorted(model.input.keys()) == ["bill_length_mm", "body_mass_g", "island", "sex"]
    assert all(tuple(t.shape) == (None, 1) for t in model.input.values())
    out = model.predict(_batch(), verbose=0)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    assert model.get_layer("head").layers[-1].dtype_policy.name == "float32"


def test_backbone_width_follows_the_spec(tmp_path):
    spec = make_spec(tmp_path, model={"encoders": {"categorical": {"type": "one_hot"}},
                                      "combiner": {"hidden_units": [8, 5]}})
    backbone = build_tabular_backbone(spec, FEATURES)
    assert backbone.output_shape == (None, 5)
    # one-hot of 4 + 3 ids beside 2 numeric features feeds the first dense layer
    assert backbone.get_layer("concat").output.shape == (None, 2 + 4 + 3)


def test_embedding_encoder_dimension(tmp_path):
    spec = make_spec(tmp_path, model={"encoders": {"island": {"type": "embedding", "dim": 6},
                                                    "categorical": {"type": "embedding", "dim": 2}},
                                      "combiner": {"hidden_units": []}})
    backbone = build_tabular_backbone(spec, FEATURES)
    assert backbone.output_shape == (None, 2 + 6 + 2)


def test_regression_head(tmp_path):
    spec = make_spec(tmp_path, model={"head": {"type": "regression"}},
                     evaluation={"metrics": ["mae"], "thresholds": {}, "slices": []})
    model = build_model(spec, FEATURES)
    assert model.predict(_batch(3), verbose=0).shape == (3, 1)
    assert isinstance(model.loss, keras.losses.MeanSquaredError)


def test_classification_head_needs_two_classes():
    with pytest.raises(ValueError, match=r"a classification head needs at least 2 classes in the label. "
                                         r"Received: num_classes=1"):
        build_head(HeadSpec(type="classification"), num_classes=1)


def test_training_reduces_loss(tmp_path):
    spec = make_spec(tmp_path, training={"learning_rate": 0.05})
    model = build_model(spec, FEATURES, num_classes=3)
    x = _batch(64)
    y = (x["bill_length_mm"][:, 0] > 0).astype("int64") + (x["island"][:, 0] == 1)
    first = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=30, verbose=0, batch_size=16)
    assert model.evaluate(x, y, verbose=0)[0] < first / 2


def test_a_standardized_regression_head_answers_in_the_labels_units(tmp_path):
    spec = make_spec(tmp_path, model={"head": {"type": "regression"}},
                     evaluation={"metrics": ["mae"], "thresholds": {}, "slices": []})
    model = build_model(spec, FEATURES, label_moments=(4200.0, 800.0))
    head = model.get_layer("head")
    assert [layer.name for layer in head.layers] == ["prediction", "label_units"]
    x = _batch(4)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer is not head)
    standard = head.get_layer("prediction")(backbone(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), standard * 800.0 + 4200.0, rtol=1e-6)
    path = str(tmp_path / "model.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_standardizing_a_large_label_is_what_lets_the_network_learn_it(tmp_path, penguins_dir):
    """Penguin body mass (grams, about 4,200 +- 800) from three measurements, a network fitted for 15 epochs at
    Adam's default rate: in standard units it lands well inside one deviation, in grams it is still near 0."""
    from tests.helpers import read_csv

    rows = [r for r in read_csv(str(penguins_dir / "data" / "penguins.csv"))
            if all(r[c] not in ("", "NA") for c in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm",
                                                     "body_mass_g"))]
    columns = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
    features = [FeatureInfo(c, NUMERIC) for c in columns]
    values = {c: np.array([float(r[c]) for r in rows], np.float32) for c in columns}
    x = {c: ((v - v.mean()) / v.std())[:, None] for c, v in values.items()}  # as Transform scales them
    y = np.array([float(r["body_mass_g"]) for r in rows], np.float32)
    spec = make_spec(tmp_path, model={"head": {"type": "regression"}, "combiner": {"hidden_units": [16]}},
                     training={"learning_rate": 0.001}, evaluation={"metrics": ["mae"], "thresholds": {}, "slices": []})
    errors = {}
    for moments in (None, (float(y.mean()), float(y.std()))):
        keras.utils.set_random_seed(0)
        model = build_model(spec, features, label_moments=moments)
        model.fit(x, y, epochs=15, batch_size=16, verbose=0)
        errors[moments is not None] = float(np.abs(model.predict(x, verbose=0)[:, 0] - y).mean())
    assert len(rows) == 342
    assert errors[True] < 0.5 * y.std()  # about 300 g: what three measurements explain
    assert errors[False] > 0.9 * np.abs(y).mean()  # still predicting a few grams


def test_label_moments_are_the_train_splits_mean_and_deviation(tmp_path):
    import math

    import tensorflow as tf
    import tensorflow_transform as tft
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from lamina.models.datasets import label_moments

    spec = make_spec(tmp_path, data={"label": "price"}, model={"head": {"type": "regression"}},
                     evaluation={"metrics": ["mae"], "thresholds": {}, "slices": []})
    import tensorflow_transform.beam as tft_beam

    # A real transform graph that passes the raw label through as its transformed key: the moments are read
    # from raw examples put through it, as the Trainer reads them.
    raw = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {"price": tf.io.FixedLenFeature([], tf.float32)}))
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=False):
        transform_fn = ([{"price": 1.0}], raw) | tft_beam.AnalyzeDataset(lambda x: {"price_xf": tf.identity(x["price"])})
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / "tft"))
    metadata_io.write_metadata(raw, str(tmp_path / "tft" / tft.TFTransformOutput.RAW_METADATA_DIR))
    # House prices: large, close together (the sums are taken around the first value), and one NaN left out.
    path = str(tmp_path / "train.gz")

    def moments(values):
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for value in values:
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "price": tf.train.Feature(float_list=tf.train.FloatList(value=[value]))})).SerializeToString())
        return label_moments([path], tft.TFTransformOutput(str(tmp_path / "tft")), spec)

    prices = 1.0e9 + np.random.default_rng(0).normal(0, 25_000, size=5000).astype(np.float64)
    mean, std = moments(list(prices.astype(np.float32)) + [math.nan])
    stored = prices.astype(np.float32).astype(np.float64)
    assert mean == pytest.approx(stored.mean(), rel=1e-12)
    assert std == pytest.approx(stored.std(), rel=1e-9)
    assert moments([7.5, 7.5, 7.5]) == (7.5, 1.0)  # no spread: a deviation of 1, not 0
