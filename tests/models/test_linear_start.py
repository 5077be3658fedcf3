"""`model.head.linear_start`: the network starts as the fitted linear model and learns what it misses (CANN).
Before training it answers exactly what the linear model answers; early stopping keeps that start when no
epoch beats it on the eval split; the model saves and reloads without code from the file."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lamina.models.builder import build_model
from lamina.models.linear import linear_arrays, linear_estimator
from lamina.models.trainer import fit
from lamina.models.trees import column_categories
from tests.helpers import make_spec
from tests.models.test_trees import FEATURES, _data

MASK = np.array([False, False, True])


def _spec(tmp_path, task, **training):
    model = {"combiner": {"hidden_units": [16, 8], "skip": True}, "head": {"type": task, "linear_start": True}}
    evaluation = {} if task == "classification" else {"metrics": ["mae"], "thresholds": {}, "slices": []}
    return make_spec(tmp_path, model=model, evaluation=evaluation,
                     training={"epochs": 12, "batch_size": 32, "learning_rate": 0.01,
                               "early_stopping": {"patience": 3}, **training})


def _fitted(task, x, y, num_classes):
    target = y.astype(np.int64) if task == "classification" else y
    pipeline = linear_estimator(task, MASK).fit(x, target)
    return pipeline, linear_arrays(pipeline, MASK, column_categories(FEATURES), num_classes or None)


def _inputs(x):
    return {"number": x[:, :1].astype(np.float32), "other": x[:, 1:2].astype(np.float32),
            "category": x[:, 2:].astype(np.int64)}


@pytest.mark.parametrize("task, classes, num_classes, moments", [
    ("classification", 2, 3, None),  # labels 0 and 2 only: class 1 is absent from the fit
    ("classification", 3, 3, None),
    ("regression", 0, 0, (0.3, 1.7)),
    ("regression", 0, 0, None)])
def test_the_untrained_network_answers_what_the_linear_model_answers(tmp_path, task, classes, num_classes, moments):
    x, y = _data(800, 0, task, classes or 3)
    x = np.nan_to_num(x)
    if classes == 2:
        y = y * 2
    pipeline, arrays = _fitted(task, x, y, num_classes)
    model = build_model(_spec(tmp_path, task), FEATURES, num_classes=num_classes or None, label_moments=moments,
                        linear=arrays)
    got = model.predict(_inputs(x[:200]), verbose=0)
    if task == "regression":
        np.testing.assert_allclose(got[:, 0], pipeline.predict(x[:200]), atol=1e-4)
        return
    expected = pipeline.predict_proba(x[:200])
    seen = pipeline[-1].classes_.astype(int)
    np.testing.assert_allclose(got[:, seen], expected, atol=1e-5)
    absent = sorted(set(range(num_classes)) - set(seen))
    assert got[:, absent].max(initial=0.0) < 1e-12

    model.save(tmp_path / "network.keras")
    loaded = keras.saving.load_model(tmp_path / "network.keras")  # safe mode: no code from the file
    np.testing.assert_allclose(loaded.predict(_inputs(x[:200]), verbose=0), got, atol=1e-7)


def _datasets(x, y, batch=32):
    def ds(rows):
        return tf.data.Dataset.from_tensor_slices((_inputs(x[rows]), y[rows].astype(np.float32))).batch(batch)
    return ds(slice(0, 600)), ds(slice(600, None))


def test_early_stopping_keeps_the_start_when_no_epoch_beats_it(tmp_path, capsys):
    x, y = _data(900, 1, "regression")  # linear in its columns, plus noise: the start is as good as it gets
    x = np.nan_to_num(x)
    pipeline, arrays = _fitted("regression", x[:600], y[:600], 0)
    spec = _spec(tmp_path, "regression", learning_rate=5.0)  # every step overshoots
    model = build_model(spec, FEATURES, label_moments=(float(y.mean()), float(y.std())), linear=arrays,
                        compile=False)
    train, valid = _datasets(x, y)
    history = fit(model, spec, train, valid, from_start=True)[0]
    out = capsys.readouterr().out
    start = float(out.split("before training: val_loss=")[1].split()[0])
    assert min(history.history["val_loss"]) > start  # no epoch beat the start
    assert "no epoch beat the start's val_loss" in out
    np.testing.assert_allclose(model.predict(_inputs(x[600:]), verbose=0)[:, 0], pipeline.predict(x[600:]), atol=1e-4)


def test_the_network_learns_what_the_linear_model_misses(tmp_path):
    rng = np.random.RandomState(2)
    x, _ = _data(1200, 2, "regression")
    x = np.nan_to_num(x)
    y = x[:, 0] + 1.5 * np.abs(x[:, 0]) * (x[:, 2] > 4) + 0.1 * rng.randn(len(x))  # a kink and an interaction
    pipeline, arrays = _fitted("regression", x[:600], y[:600], 0)
    spec = _spec(tmp_path, "regression", epochs=40, learning_rate=0.01)
    model = build_model(spec, FEATURES, label_moments=(float(y[:600].mean()), float(y[:600].std())),
                        linear=arrays, compile=False)
    train, valid = _datasets(x[:900], y[:900])
    fit(model, spec, train, valid, from_start=True)
    test = slice(900, None)
    linear_mae = np.abs(pipeline.predict(x[test]) - y[test]).mean()
    network_mae = np.abs(model.predict(_inputs(x[test]), verbose=0)[:, 0] - y[test]).mean()
    assert network_mae < 0.7 * linear_mae, (network_mae, linear_mae)
    assert model.get_layer("linear_start").trainable is False
    assert not model.get_layer("linear_start").trainable_weights  # the linear model is fixed; the network moves


def test_a_linear_start_is_explained_with_shapley_values_that_cover_both_paths(tmp_path):
    from lamina.models.explain import explain

    x, y = _data(800, 3, "classification", 3)
    x = np.nan_to_num(x)
    _, arrays = _fitted("classification", x, y, 3)
    spec = _spec(tmp_path, "classification")
    model = build_model(spec, FEATURES, num_classes=3, linear=arrays, compile=False)
    keras.utils.set_random_seed(0)
    for w in model.get_layer("head").trainable_weights:  # as after training: the network's part is not zero
        w.assign(np.random.RandomState(4).normal(0, 0.5, w.shape).astype(np.float32))
    record = explain(model, FEATURES, "classification", ["a", "b", "c"], _inputs(x[:6]), None)
    assert record["method"] == "Shapley values (exact)"
    for e in record["examples"]:  # complete: the linear path and the network's add up to the score
        assert sum(e["attributions"].values()) == pytest.approx(e["score"] - e["baseline_score"], abs=1e-5)
    assert record["completeness_error"] < 1e-4
