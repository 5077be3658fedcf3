"""The metrics the Evaluator computes in numpy, as it resolves and runs them, against the Keras metrics
(tf_keras, what TFMA's `tf_metric_wrapper` ran before for accuracy, crossentropy and RMSE) on the same
labels and predictions. MSE and MAE are TFMA's own numpy metrics, held to Keras's values too."""

import numpy as np
import pytest
import tf_keras
from tensorflow_model_analysis import MetricConfig
from tensorflow_model_analysis.metrics import metric_specs, metric_types

from lamina.spec import (CLASSIFICATION_METRICS, LAMINA_TFMA_METRICS, REGRESSION_METRICS,
                         TFMA_OUTPUT_NAMES)
from pipeline.pipeline import TFMA_METRICS_MODULE

KERAS = {"accuracy": tf_keras.metrics.SparseCategoricalAccuracy,
         "crossentropy": tf_keras.metrics.SparseCategoricalCrossentropy,
         "mse": tf_keras.metrics.MeanSquaredError, "mae": tf_keras.metrics.MeanAbsoluteError,
         "rmse": tf_keras.metrics.RootMeanSquaredError}
CLASS_NAMES = {**CLASSIFICATION_METRICS, **REGRESSION_METRICS}  # what eval_config names each metric


def _classification(rng, n=300, k=4):
    scores = rng.dirichlet(np.ones(k) * 0.3, size=n).astype(np.float32)
    scores[:20] = 0.0  # a probability of exactly 0 and 1: Keras clips them
    scores[np.arange(20), rng.integers(0, k, 20)] = 1.0
    scores[20:30] = 1.0 / k  # ties: the first class wins, as tf.argmax picks it
    scores[30:40] *= 0.9  # rows that do not sum to 1
    return rng.integers(0, k, n), scores


def _config(metric: str) -> MetricConfig:
    return MetricConfig(class_name=CLASS_NAMES[metric], module=TFMA_METRICS_MODULE if metric in LAMINA_TFMA_METRICS
                        else "")


def _run(metric: str, labels, predictions, weights):
    instance = metric_specs.metric_instance(_config(metric))
    assert isinstance(instance, metric_types.Metric)  # TFMA's numpy kind, not a Keras metric run as a graph
    (computation,) = instance.computations(example_weighted=True)
    combiner = computation.combiner
    halves = []
    for part in (slice(0, len(labels) // 2), slice(len(labels) // 2, None)):  # two accumulators, merged
        acc = combiner.create_accumulator()
        for y, p, w in zip(labels[part], predictions[part], weights[part]):
            acc = combiner.add_input(acc, metric_types.StandardMetricInputs(
                labels=np.array([y]), predictions=np.atleast_1d(p), example_weights=np.array([w])))
        halves.append(acc)
    return combiner.extract_output(combiner.merge_accumulators(iter(halves))), computation.keys


@pytest.mark.parametrize("metric", ["accuracy", "crossentropy", "mse", "mae", "rmse"])
def test_each_metric_equals_the_keras_metric(metric):
    rng = np.random.default_rng(7)
    if metric in ("accuracy", "crossentropy"):
        labels, predictions = _classification(rng)
    else:
        labels = rng.normal(50, 20, 300)
        predictions = (labels + rng.normal(0, 5, 300)).astype(np.float32)
    out, keys = _run(metric, labels, predictions, np.ones(len(labels)))
    assert [key.name for key in keys] == [TFMA_OUTPUT_NAMES[metric]]  # the name gates and reports read
    keras = KERAS[metric]()
    keras.update_state(labels.reshape(-1, 1), predictions.reshape(len(labels), -1))
    assert out[keys[0]] == pytest.approx(float(keras.result()), rel=2e-6, abs=1e-7)


def test_the_crossentropy_of_certain_and_impossible_answers_is_keras_clipped_value():
    labels = np.array([0, 1])
    predictions = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    out, keys = _run("crossentropy", labels, predictions, np.ones(2))
    eps = 1e-7
    right, wrong = -np.log((1 - eps) / (1 - eps + eps)), -np.log(eps / (1 - eps + eps))
    assert out[keys[0]] == pytest.approx((right + wrong) / 2, rel=1e-6)
    assert wrong == pytest.approx(16.118, abs=1e-3)
    # A label the train split never had (-1): the model gave it probability 0; accuracy counts it wrong.
    unseen = np.array([[0.5, 0.5]], np.float32)
    out, keys = _run("crossentropy", np.array([-1]), unseen, np.ones(1))
    assert out[keys[0]] == pytest.approx(-np.log(1e-7), rel=1e-6)
    out, keys = _run("accuracy", np.array([-1]), unseen, np.ones(1))
    assert out[keys[0]] == 0.0


def test_example_weights_weigh_the_mean():
    labels = np.array([0, 1, 1])
    predictions = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], np.float32)  # right, wrong, right
    out, keys = _run("accuracy", labels, predictions, np.array([1.0, 3.0, 1.0]))
    assert out[keys[0]] == pytest.approx(2 / 5)
    out, keys = _run("mae", np.array([1.0, 5.0]), np.array([2.0, 1.0], np.float32), np.array([3.0, 1.0]))
    assert out[keys[0]] == pytest.approx((3 * 1 + 1 * 4) / 4)
