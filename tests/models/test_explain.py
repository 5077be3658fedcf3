"""Explanations checked against their definitions, on real Keras models from Lamina's builder.

- Integrated Gradients is complete: the attributions add up to f(x) - f(baseline) within 1%.
- A feature the model never sees gets exactly zero attribution.
- Grad-CAM on images where a bright patch in one quadrant decides the class puts most of its
  mass on that quadrant.
"""

import keras
import numpy as np
import pytest

from lamina.models.builder import build_model
from lamina.models.explain import integrated_gradients
from lamina.models.gradcam import grad_cam
from lamina.models.features import CATEGORICAL, IMAGE, NUMERIC, TEXT, FeatureInfo
from tests.helpers import make_spec

FEATURES = [FeatureInfo("bill_length_mm", NUMERIC), FeatureInfo("body_mass_g", NUMERIC),
            FeatureInfo("island", CATEGORICAL, vocab_size=4), FeatureInfo("sex", CATEGORICAL, vocab_size=3)]


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"bill_length_mm": rng.normal(size=(n, 1)).astype("float32") * 2,
            "body_mass_g": rng.normal(size=(n, 1)).astype("float32") * 2,
            "island": rng.integers(0, 4, size=(n, 1)), "sex": rng.integers(0, 3, size=(n, 1))}


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    keras.utils.set_random_seed(3)
    spec = make_spec(tmp_path_factory.mktemp("ig"), model={"encoders": {"categorical": {"type": "embedding", "dim": 3}},
                                                         "combiner": {"hidden_units": [16, 8]}})
    return build_model(spec, FEATURES, num_classes=3)


@pytest.mark.parametrize("baseline", ["zeros", "mean"])
def test_integrated_gradients_are_complete(tabular, baseline):
    x = _batch()
    # The path in chunks of 7 rows (one alpha at a time) for one baseline, all at once for the other: same sums.
    result = integrated_gradients(tabular, x, FEATURES, "classification", steps=128, baseline=baseline,
                                  max_rows=7 if baseline == "mean" else 10_000)
    assert result.score == pytest.approx(np.max(tabular(x).numpy(), axis=1), abs=1e-6)  # the predicted class
    gap = result.score - result.baseline_score
    assert np.all(np.abs(gap) > 0.01) or baseline == "mean"
    np.testing.assert_allclose(result.total(), gap, rtol=0.01, atol=1e-4)
    assert sorted(result.values) == ["bill_length_mm", "body_mass_g", "island", "sex"]
    assert all(v.shape == (6,) for v in result.values.values())


def test_integrated_gradients_for_regression_are_complete(tmp_path):
    keras.utils.set_random_seed(5)
    spec = make_spec(tmp_path, model={"head": {"type": "regression"}, "combiner": {"hidden_units": [12]}},
                     evaluation={"metrics": ["mae"], "thresholds": {}})
    model = build_model(spec, FEATURES)
    x = _batch(seed=1)
    result = integrated_gradients(model, x, FEATURES, "regression", steps=128)
    assert result.targets is None
    np.testing.assert_allclose(result.score, model(x).numpy().reshape(-1), atol=1e-5)
    np.testing.assert_allclose(result.total(), result.score - result.baseline_score, rtol=0.01, atol=1e-4)


def test_a_feature_the_model_never_sees_gets_zero_attribution(tabular):
    model = keras.models.clone_model(tabular)
    model.set_weights(tabular.get_weights())
    # The concatenation is [bill_length_mm (1), body_mass_g (1), island (3), sex (3)]: cut body_mass_g's row.
    first = model.get_layer("backbone").get_layer("combiner").layers[0]
    kernel, bias = first.get_weights()
    kernel[1, :] = 0.0
    first.set_weights([kernel, bias])
    x = _batch(seed=2)
    changed = dict(x, body_mass_g=x["body_mass_g"] + 5.0)
    np.testing.assert_array_equal(model(x).numpy(), model(changed).numpy())  # it really is not seen
    result = integrated_gradients(model, x, FEATURES, "classification", steps=32)
    np.testing.assert_array_equal(result.values["body_mass_g"], np.zeros(6))
    assert np.all(np.abs(result.values["bill_length_mm"]) + np.abs(result.values["island"]) > 0)


def test_text_token_attributions_are_complete(tmp_path):
    from lamina.models.text import learn_vocabulary, tokenizer_for

    import tensorflow as tf

    texts = ["the cat sat on the mat", "dogs run in the park", "stocks fell on monday", "rain is due today"]
    vocab = learn_vocabulary(tf.data.Dataset.from_tensor_slices(texts), 60, True, str(tmp_path / "vocab.txt"))
    feature = FeatureInfo("text", TEXT, vocabulary=vocab, max_length=8)
    spec = make_spec(tmp_path, data={"path": "x.csv", "label": "y", "features": {"text": "text"}},
                     model={"encoders": {"text": {"type": "transformer", "hidden_dim": 16, "num_layers": 1,
                                                  "num_heads": 2, "intermediate_dim": 32, "max_length": 8,
                                                  "dropout": 0.0}},
                            "combiner": {"hidden_units": []}},
                     evaluation={"metrics": ["accuracy"], "thresholds": {}, "slices": []})
    keras.utils.set_random_seed(1)
    model = build_model(spec, [feature], num_classes=2)
    ids = tokenizer_for(vocab, True, 8)(tf.constant(texts)).numpy()
    result = integrated_gradients(model, {"text": ids}, [feature], "classification", steps=128)
    assert result.values["text"].shape == (4, 8)
    np.testing.assert_allclose(result.total(), result.score - result.baseline_score, rtol=0.01, atol=1e-4)


def _patch_images(n, rng):
    """32x32 noise; class 1 has a bright 8x8 patch somewhere inside the top-left quadrant, class 0 none."""
    images = rng.uniform(0, 120, size=(n, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 2, size=n)
    for img, label in zip(images, labels):
        if label:
            r, c = rng.integers(0, 9, size=2)
            img[r:r + 8, c:c + 8] = 250.0
    return images, labels


def test_grad_cam_puts_its_mass_on_the_quadrant_that_decides(tmp_path):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    spec = make_spec(tmp_path, data={"path": "x", "label": "y", "format": "image_folder", "features": {"image": "image"}},
                     model={"encoders": {"image": {"type": "resnet", "architecture": "resnet_small", "weights": "random",
                                                   "image_size": [32, 32], "width": 8}},
                            "combiner": {"hidden_units": []}},
                     training={"learning_rate": 0.003}, evaluation={"metrics": ["accuracy"], "thresholds": {}, "slices": []})
    feature = FeatureInfo("image", IMAGE, image_size=(32, 32))
    model = build_model(spec, [feature], num_classes=2)
    images, labels = _patch_images(320, rng)
    model.fit({"image": images}, labels, epochs=6, batch_size=32, verbose=0)
    test_images, test_labels = _patch_images(60, rng)
    assert np.mean(np.argmax(model.predict({"image": test_images}, verbose=0), axis=1) == test_labels) >= 0.95
    patched = test_images[test_labels == 1]
    cams, targets, _ = grad_cam(model, {"image": patched}, feature, "classification")
    assert list(targets) == [1] * len(patched)
    assert cams.shape == (len(patched), 32, 32) and cams.min() >= 0 and cams.max() <= 1
    share = [cam[:16, :16].sum() / max(cam.sum(), 1e-12) for cam in cams]
    # A quarter of the image holds well over half of the heat, in nearly every image.
    assert np.mean(share) > 0.5 and np.mean(np.array(share) > 0.4) >= 0.9, share
