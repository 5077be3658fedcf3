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
