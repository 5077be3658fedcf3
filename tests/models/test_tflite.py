"""TFLite conversion of models from Lamina's builder: the interpreter answers as Keras does, and a form
that loses more than the bound is refused with the numbers."""

import keras
import numpy as np
import pytest

from lamina.models import tflite
from lamina.models.builder import build_model
from lamina.models.features import CATEGORICAL, NUMERIC, FeatureInfo
from tests.helpers import make_spec

FEATURES = [FeatureInfo("bill_length_mm", NUMERIC), FeatureInfo("island", CATEGORICAL, vocab_size=4)]


def _batches(rng, n=3, size=16):
    return [({"bill_length_mm": rng.normal(size=(size, 1)).astype("float32"),
              "island": rng.integers(0, 4, size=(size, 1))}, rng.integers(0, 3, size=(size,))) for _ in range(n)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    keras.utils.set_random_seed(0)
    return build_model(make_spec(tmp_path_factory.mktemp("tfl")), FEATURES, num_classes=3)


def test_float_file_answers_as_keras_does_at_any_batch_size(model):
    rng = np.random.default_rng(0)
    content = tflite.convert(model, FEATURES, "classification", "float")
    for x, _ in _batches(rng) + _batches(rng, n=1, size=1):
        np.testing.assert_allclose(tflite.run_interpreter(content, [x], "classification"), model(x).numpy(),
                                   atol=1e-6)


def test_a_form_worse_than_the_bound_is_not_written_and_says_by_how_much(model, tmp_path):
    rng = np.random.default_rng(1)
    batches = _batches(rng)
    representative = [{k: v[i:i + 1] for k, v in batches[0][0].items()} for i in range(16)]
    reference, results = tflite.evaluate_forms(model, FEATURES, "classification", ["float", "int8"], batches,
                                               representative, max_drop=-0.5, out_dir=str(tmp_path))
    labels = np.concatenate([y for _, y in batches])
    predicted = np.concatenate([model(x).numpy() for x, _ in batches]).argmax(axis=1)
    assert reference == pytest.approx(np.mean(predicted == labels))
    float_result = results[0]
    assert not float_result.exported and list(tmp_path.iterdir()) == []
    assert float_result.reason == (f"accuracy {float_result.metric:.4f} against the SavedModel's {reference:.4f}: "
                                   f"worse by {float_result.drop:.4f}, more than the allowed -0.5; not exported")
    assert results[1].form == "int8" and results[1].size_bytes < float_result.size_bytes


def test_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown TFLite form 'int4'; expected one of: float, dynamic_range, int8"):
        tflite.convert(None, FEATURES, "classification", "int4")
