"""The metrics the Evaluator computes in numpy, as it resolves and runs them, against the Keras metrics
(tf_keras, what TFMA's `tf_metric_wrapper` ran before for accuracy, crossentropy and RMSE) on the same
labels and predictions. MSE and MAE are TFMA's own numpy metrics, held to Keras's values too."""

import re

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


# TFMA's confusion-matrix metrics that the Evaluator takes from Lamina's module, which reads each example's
# label, prediction and weight directly (`label_prediction_weight`), against TFMA's own classes.
DIRECT = {"auc": {}, "pr_auc": {}, "precision": {"thresholds": [0.3]}, "recall": {"thresholds": [0.3]},
          "tpr": {"thresholds": [0.5]}, "fpr": {"thresholds": [0.5]}, "class_recall": {}}


def _real_scores(k: int):
    """Labels and a logistic regression's class probabilities on a real table: breast cancer (k=2) or wine
    (k=3), fitted on half, scored on the other half."""
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = (load_breast_cancer if k == 2 else load_wine)(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000)).fit(x[::2], y[::2])
    return y[1::2], model.predict_proba(x[1::2]).astype(np.float32)


def _inputs(labels, scores, weights=None, as_dict=True):
    """StandardMetricInputs as TFMA's Evaluator builds them for Lamina's model: the transformed label as an
    int64 array of one, and the serving signature's outputs (a dict; its `scores` is the prediction key)."""
    out = []
    for i, (y, p) in enumerate(zip(labels, scores)):
        prediction = {"scores": p, "classes": np.array([b"a", b"b", b"c"][:len(p)])} if as_dict else p
        kwargs = {} if weights is None else {"example_weights": np.array([weights[i]], np.float32)}
        out.append(metric_types.StandardMetricInputs(labels=np.array([y], np.int64), predictions=prediction,
                                                     **kwargs))
    return out


def _evaluate(class_name: str, module: str, config: dict, inputs, sub_keys, example_weighted=False):
    """Every computation of the metric, as TFMA's Evaluator runs them: combiners over two halves, merged,
    then the derived computations in order. {key: value} of everything computed."""
    import json

    from tensorflow_model_analysis import EvalConfig, ModelSpec

    eval_config = EvalConfig(model_specs=[ModelSpec(prediction_key="scores", label_key="y_xf")])
    instance = metric_specs.metric_instance(MetricConfig(class_name=class_name, module=module,
                                                         config=json.dumps(config)))
    results = {}
    for computation in instance.computations(eval_config=eval_config, sub_keys=sub_keys,
                                             example_weighted=example_weighted):
        if isinstance(computation, metric_types.MetricComputation):
            combiner = computation.combiner
            halves = []
            for part in (inputs[:len(inputs) // 3], inputs[len(inputs) // 3:]):
                acc = combiner.create_accumulator()
                for element in part:
                    acc = combiner.add_input(acc, element)
                halves.append(acc)
            results.update(combiner.extract_output(combiner.merge_accumulators(iter(halves))))
        else:
            results.update(computation.result(results))
    return results


@pytest.mark.parametrize("metric", sorted(DIRECT))
@pytest.mark.parametrize("weighted", [False, True])
def test_the_direct_metrics_equal_tfmas_own(metric, weighted):
    from tensorflow_model_analysis.metrics import calibration_histogram

    from lamina.models.tfma_metrics import DIRECT_TFMA_CLASSES

    class_name = CLASS_NAMES[metric]
    assert metric in LAMINA_TFMA_METRICS and class_name in DIRECT_TFMA_CLASSES
    k = 3 if metric == "class_recall" else 2
    labels, scores = _real_scores(k)
    labels = labels.copy()
    labels[:3] = -1  # a label the train split never had
    weights = np.random.default_rng(3).uniform(0.5, 2.0, len(labels)) if weighted else None
    inputs = _inputs(labels, scores, weights) + _inputs(labels[:40], scores[:40], weights, as_dict=False)
    sub_keys = [None] if k == 3 else [metric_types.SubKey(class_id=1)]
    ours = _evaluate(class_name, TFMA_METRICS_MODULE, DIRECT[metric], inputs, sub_keys, weighted)
    tfmas = _evaluate(class_name[len("Lamina"):], "", DIRECT[metric], inputs, sub_keys, weighted)
    assert sorted(ours, key=str) == sorted(tfmas, key=str)
    named = [key for key in ours if key.name == (TFMA_OUTPUT_NAMES[metric] if k == 2
                                                 else "multi_class_confusion_matrix_plot")]
    assert len(named) == 1  # the value gates and reports read, under its usual name
    for key in ours:
        if isinstance(ours[key], list):  # a calibration histogram: its buckets
            assert [vars(b) for b in ours[key]] == [vars(b) for b in tfmas[key]]
            assert all(isinstance(b, calibration_histogram.Bucket) for b in ours[key])
        else:
            assert ours[key] == tfmas[key], key
    if k == 2 and metric == "auc":
        from sklearn.metrics import roc_auc_score  # and it is the AUC (TFMA's 10,000 thresholds)

        seen = labels >= 0
        expected = roc_auc_score(labels[seen] == 1, scores[seen, 1], sample_weight=None if weights is None
                                 else weights[seen])
        assert ours[named[0]] == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("kwargs", [
    {}, {"flatten": False}, {"sub_key": metric_types.SubKey(class_id=0)}, {"sub_key": metric_types.SubKey(class_id=2)},
    {"sub_key": metric_types.SubKey(class_id=1), "fractional_labels": True}, {"example_weighted": True},
    {"sub_key": metric_types.SubKey(top_k=2)}, {"sub_key": metric_types.SubKey(k=1)},
    {"class_weights": {0: 1.0, 1: 2.0, 2: 0.5}}])
def test_label_prediction_weight_gives_tfmas_triples(kwargs):
    """Each example's (label, prediction, weight), read directly where Lamina's Evaluator's examples allow it
    and by TFMA's function elsewhere: the same values as TFMA's function, for every form TFMA accepts."""
    from tensorflow_model_analysis import EvalConfig, ModelSpec
    from tensorflow_model_analysis.metrics import metric_util

    from lamina.models.tfma_metrics import label_prediction_weight

    labels, scores = _real_scores(3)
    eval_config = EvalConfig(model_specs=[ModelSpec(prediction_key="scores")])
    elements = _inputs(labels[:30], scores[:30], np.linspace(0.5, 2, 30)) + _inputs(labels[:5], scores[:5],
                                                                                      as_dict=False)
    elements += [metric_types.StandardMetricInputs(labels=np.array([-1]), predictions=scores[0]),  # unseen label
                 metric_types.StandardMetricInputs(labels=np.array([1.0]), predictions=np.array([0.8], np.float32)),
                 metric_types.StandardMetricInputs(labels=np.array([[0, 1, 0]]), predictions=scores[1])]  # one-hot
    for element in elements:
        try:
            expected = list(metric_util.to_label_prediction_example_weight(element, eval_config=eval_config, **kwargs))
        except ValueError as error:  # what TFMA refuses, Lamina's reading refuses the same way
            with pytest.raises(ValueError, match=re.escape(str(error).splitlines()[0][:40])):
                list(label_prediction_weight(element, eval_config=eval_config, **kwargs))
            continue
        got = list(label_prediction_weight(element, eval_config=eval_config, **kwargs))
        assert len(got) == len(expected)
        for triple, want in zip(got, expected):
            for value, wanted in zip(triple, want):
                np.testing.assert_array_equal(np.ravel(value), np.ravel(wanted))
