"""The linear model as TensorFlow ops: the answers of scikit-learn's logistic and ridge regression on the same
columns (z-scored numbers, categories one-hot by vocabulary id), saved and loaded without code from the file."""

import numpy as np
import pytest
import tensorflow as tf

from lamina.models.features import CATEGORICAL, NUMERIC, FeatureInfo
from lamina.models.linear import LinearScores, linear_estimator
from lamina.models.trees import column_categories
from tests.models.test_trees import _data

FEATURES = [FeatureInfo("number", NUMERIC), FeatureInfo("other", NUMERIC), FeatureInfo("category", CATEGORICAL, 12)]
MASK = np.array([False, False, True])


def _fit(task, x, y):
    x = np.nan_to_num(x)  # Transform imputes numbers: the tabular columns hold no NaN
    return linear_estimator(task, MASK).fit(x, y.astype(np.int64) if task == "classification" else y), x


@pytest.mark.parametrize("task, classes", [("classification", 2), ("classification", 3), ("regression", 0)])
def test_the_graph_answers_what_scikit_learn_answers(task, classes):
    x, y = _data(1500, 0, task, classes)
    x[:, 2] = np.where(x[:, 2] == 4, 3, x[:, 2])  # id 4 never seen in fitting: it scores 0, as one-hot ignores it
    model, x = _fit(task, x, y)
    test, _ = _data(500, 1, task, classes)
    test = np.nan_to_num(test)
    test[:20, 2] = 11  # out of vocabulary
    test[20:25, 2] = 4
    test[25:30, 2] = 40  # past the vocabulary's end (never from Transform, still safe)
    layer = LinearScores.from_fitted(model, MASK, column_categories(FEATURES), task, classes or None)
    got = layer(tf.constant(test, tf.float32)).numpy()
    clipped = test.copy()
    expected = model.predict_proba(clipped) if task == "classification" else model.predict(clipped)[:, None]
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_a_class_absent_from_the_train_split_scores_zero_and_the_model_reloads(tmp_path):
    import keras

    from lamina.models.backbone import feature_inputs
    from lamina.models.trees import TabularColumns

    x, y = _data(600, 0, "classification", 2)
    model, x = _fit("classification", x, y * 2)
    layer = LinearScores.from_fitted(model, MASK, column_categories(FEATURES), "classification", 3)
    inputs = feature_inputs(FEATURES)
    keras_model = keras.Model(inputs, layer(TabularColumns(["number", "other", "category"], [])(inputs)))
    batch = {"number": x[:50, :1].astype(np.float32), "other": x[:50, 1:2].astype(np.float32),
             "category": x[:50, 2:].astype(np.int64)}
    got = keras_model(batch).numpy()
    np.testing.assert_allclose(got[:, [0, 2]], model.predict_proba(x[:50]), atol=2e-5)
    assert (got[:, 1] == 0).all()
    keras_model.save(tmp_path / "linear.keras")
    loaded = keras.saving.load_model(tmp_path / "linear.keras")  # safe mode: no code from the file
    np.testing.assert_allclose(loaded(batch).numpy(), got, atol=1e-7)


def test_tflite_converts_the_linear_model_with_builtin_ops():
    """Through the TFLiteExporter's own conversion (models.tflite.convert), fed as `lamina predict --tflite` is."""
    from lamina.models.backbone import feature_inputs
    from lamina.models.tflite import convert
    from lamina.models.trees import TabularColumns

    import keras

    x, y = _data(400, 0, "classification", 3)
    model, x = _fit("classification", x, y)
    layer = LinearScores.from_fitted(model, MASK, column_categories(FEATURES), "classification", 3)
    inputs = feature_inputs(FEATURES)
    keras_model = keras.Model(inputs, layer(TabularColumns(["number", "other", "category"], [])(inputs)))
    interpreter = tf.lite.Interpreter(model_content=convert(keras_model, FEATURES, "classification", "float"))
    runner = interpreter.get_signature_runner()
    got = runner(number=x[:32, :1].astype(np.float32), other=x[:32, 1:2].astype(np.float32),
                 category=x[:32, 2:].astype(np.int64))
    np.testing.assert_allclose(list(got.values())[0], model.predict_proba(x[:32]), atol=2e-5)
