"""Gradient-boosted trees as TensorFlow ops: the same answers as scikit-learn, saved and served as a graph."""

import numpy as np
import pytest
import tensorflow as tf

from lamina.models.features import CATEGORICAL, NUMERIC, FeatureInfo
from lamina.models.trees import TreeEnsemble, build_tree_model, column_categories, fit_trees


def _data(n, seed, task, classes=3):
    rng = np.random.RandomState(seed)
    number = rng.randn(n)
    other = rng.exponential(size=n)
    category = rng.randint(0, 9, n).astype(np.float64)
    number[rng.rand(n) < 0.1] = np.nan  # missing values take the side each split learned for them
    signal = np.nan_to_num(number) + np.isin(category, [2, 5, 7]) * 1.5 - 0.5 * other
    if task == "regression":
        y = signal + 0.1 * rng.randn(n)
    else:
        y = np.digitize(signal + 0.3 * rng.randn(n), np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    return np.c_[number, other, category], y


FEATURES = [FeatureInfo("number", NUMERIC), FeatureInfo("other", NUMERIC), FeatureInfo("category", CATEGORICAL, 12)]


@pytest.mark.parametrize("task, classes", [("classification", 2), ("classification", 3), ("regression", 0)])
def test_the_graph_answers_what_scikit_learn_answers(task, classes):
    x, y = _data(1500, 0, task, classes)
    mask = np.array([False, False, True])
    model = fit_trees(task, x, y, mask, column_categories(FEATURES), seed=0)
    test, _ = _data(500, 1, task, classes)
    test[:20, 2] = 11  # an id the train split never had (out of vocabulary): the missing side
    test[20:25, 2] = np.nan
    ensemble = TreeEnsemble.from_fitted(model, task, classes or None)
    got = ensemble(tf.constant(test, tf.float32)).numpy()
    expected = model.predict_proba(test) if task == "classification" else model.predict(test)[:, None]
    np.testing.assert_allclose(got, expected, atol=2e-5)
    if task == "classification":
        assert got.shape == (500, classes)


def test_a_class_absent_from_the_train_split_scores_zero():
    x, y = _data(600, 0, "classification", 2)
    model = fit_trees("classification", x, y * 2, np.array([False, False, True]), column_categories(FEATURES), 0)
    got = TreeEnsemble.from_fitted(model, "classification", 3)(tf.constant(x[:50], tf.float32)).numpy()
    np.testing.assert_allclose(got[:, [0, 2]], model.predict_proba(x[:50]), atol=2e-5)
    assert (got[:, 1] == 0).all()


def test_the_tree_model_saves_loads_and_exports_with_tensorflow_ops_only(tmp_path):
    import keras

    x, y = _data(800, 0, "classification", 3)
    model = fit_trees("classification", x, y, np.array([False, False, True]), column_categories(FEATURES), 0)
    keras_model = build_tree_model(FEATURES, TreeEnsemble.from_fitted(model, "classification", 3))
    inputs = {"number": x[:64, :1].astype(np.float32), "other": x[:64, 1:2].astype(np.float32),
              "category": x[:64, 2:].astype(np.int64)}
    expected = model.predict_proba(x[:64])
    np.testing.assert_allclose(keras_model(inputs).numpy(), expected, atol=2e-5)
    keras_model.save(tmp_path / "trees.keras")
    loaded = keras.saving.load_model(tmp_path / "trees.keras")  # safe mode: no code from the file
    np.testing.assert_allclose(loaded(inputs).numpy(), expected, atol=2e-5)

    archive = keras.export.ExportArchive()
    archive.track(loaded)
    archive.add_endpoint("serve", lambda d: loaded(d), input_signature=[{
        "number": tf.TensorSpec([None, 1], tf.float32, name="number"),
        "other": tf.TensorSpec([None, 1], tf.float32, name="other"),
        "category": tf.TensorSpec([None, 1], tf.int64, name="category")}])
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    out = served.signatures["serve"](**{k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_allclose(list(out.values())[0].numpy(), expected, atol=2e-5)
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((tmp_path / "saved" / "saved_model.pb").read_bytes())
    ops = {node.op for g in [proto.meta_graphs[0].graph_def] for node in g.node}
    ops |= {node.op for f in proto.meta_graphs[0].graph_def.library.function for node in f.node_def}
    from tensorflow.python.framework import op_def_registry

    assert all(op_def_registry.get(op) is not None for op in ops), sorted(ops)
