"""Lamina's TFMA metrics: the Evaluator computes them in Beam, per slice, and gates on them.

Metrics TFMA lacks:
- `RSquared`: the coefficient of determination, 1 - SSE / SST (regression).
- `ExpectedCalibrationError`: the mean gap between the predicted probability and the observed rate,
  over equal-width probability bins, weighted by the bins' example counts (binary tasks, on the
  positive class that TFMA's binarization picks).

Keras's metrics that TFMA has no numpy version of, in numpy: `SparseCategoricalAccuracy`,
`SparseCategoricalCrossentropy` and `RootMeanSquaredError`, with Keras's class names, output names
and formulas. TFMA runs a Keras metric through `tf_metric_wrapper`: a TensorFlow graph per metric,
traced by AutoGraph in every Evaluator, and a graph call per batch and slice. That cost about 3 s
per Evaluator on a 65-row eval split (docs/benchmarks.md). These are plain combiners. (TFMA's own
`MeanSquaredError` and `MeanAbsoluteError` are numpy already; its registry picks them by name.)

TFMA's own metrics that the Evaluator runs on every example (AUC, PR-AUC, precision, recall, TPR, FPR
and the confusion matrix), as `Lamina` + TFMA's class name (`LaminaAUC`): the same metrics and names,
with each example's label, prediction and weight read by `label_prediction_weight` instead of TFMA's
general function, which cost about 30 µs an example and a metric (docs/benchmarks.md).

`eval_config` names them with `module="lamina.models.tfma_metrics"`.
"""

from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import (calibration_histogram, confusion_matrix_metrics, metric_types,
                                               metric_util, multi_class_confusion_matrix_plot)

R_SQUARED_NAME = "r_squared"
ECE_NAME = "expected_calibration_error"
_ONE = np.array([1.0], np.float32)


def _prediction_key(eval_config) -> str:
    specs = eval_config.model_specs if eval_config is not None else ()
    return specs[0].prediction_key if len(specs) == 1 else ""


def _one_example(element, eval_config=None, model_name: str = "", output_name: str = "", sub_key=None,
                 aggregation_type=None, class_weights=None, example_weighted: bool = False,
                 fractional_labels: bool = False, flatten: bool = True, **_
                 ) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(label, prediction, weight) of one example where TFMA would give one triple with these values: one
    model and output, a label of shape [1], a prediction vector (the spec's prediction key of a dict), the
    whole vector or one class of it (`sub_key.class_id`). None for anything else. A 0/1 label split by
    `fractional_labels` is itself with its own weight; any other label TFMA splits, or refuses."""
    if model_name or output_name or class_weights or aggregation_type is not None:
        return None
    label, prediction = element.label, element.prediction
    if isinstance(prediction, dict):
        prediction = prediction.get(_prediction_key(eval_config) or None)
    if (type(label) is not np.ndarray or type(prediction) is not np.ndarray or label.shape != (1,)
            or prediction.ndim != 1 or label.dtype.kind not in "iuf"):
        return None
    weight = _ONE
    if example_weighted and element.example_weight is not None:
        weight = element.example_weight
        if type(weight) is not np.ndarray or weight.size != 1:
            return None
        weight = weight.reshape(1)
    if sub_key is None:
        # TFMA flattens a vector into one (0/1, score) pair per class; the single value stays as it is.
        one = (label, prediction, weight) if prediction.size == 1 or not flatten else None
    else:
        k = sub_key.class_id
        if k is None or sub_key.k is not None or sub_key.top_k is not None or not 0 <= k < prediction.size \
                or prediction.size < 2:
            return None
        one = np.array([int(label[0] == k)]), prediction[k:k + 1], weight  # TFMA's select_class_id, sparse label
    if one is not None and fractional_labels and float(one[0][0]) not in (0.0, 1.0):
        return None
    return one


def label_prediction_weight(element, **kwargs) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """TFMA's `metric_util.to_label_prediction_example_weight`, with its arguments and values: the Evaluator's
    usual example (`_one_example`) read directly, anything else by TFMA's function."""
    one = _one_example(element, **kwargs)
    return iter((one,)) if one is not None else metric_util.to_label_prediction_example_weight(element, **kwargs)


def _computations(combiner_cls, name, eval_config=None, model_name="", output_name="", sub_key=None,
                  aggregation_type=None, class_weights=None, example_weighted=False, **kwargs):
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name, sub_key=sub_key,
                                 example_weighted=example_weighted)
    return [metric_types.MetricComputation(
        keys=[key], preprocessors=None,
        combiner=combiner_cls(key, eval_config, aggregation_type, class_weights, example_weighted, **kwargs))]


class _Combiner(beam.CombineFn):
    """Sums per example (label, prediction, weight) into a numpy accumulator."""

    size = 1

    def __init__(self, key, eval_config, aggregation_type, class_weights, example_weighted, **kwargs):
        self._key = key
        self._eval_config = eval_config
        self._aggregation_type = aggregation_type
        self._class_weights = class_weights
        self._example_weighted = example_weighted
        self._kwargs = kwargs

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(self.size, np.float64)

    def _examples(self, element, flatten: bool = True):
        """(label, prediction, weight) arrays of each example in `element`, for this metric's key."""
        return label_prediction_weight(
            element, eval_config=self._eval_config, model_name=self._key.model_name,
            output_name=self._key.output_name, sub_key=self._key.sub_key,
            aggregation_type=self._aggregation_type, class_weights=self._class_weights,
            example_weighted=self._example_weighted, flatten=flatten)

    def _triples(self, element):
        for label, prediction, weight in self._examples(element):
            yield float(np.ravel(label)[0]), float(np.ravel(prediction)[0]), float(np.ravel(weight)[0])

    def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
        out = self.create_accumulator()
        for acc in accumulators:
            out += acc
        return out


class _RSquaredCombiner(_Combiner):
    size = 4  # weight, sum(w y), sum(w y^2), sum(w (y - p)^2)

    def add_input(self, acc: np.ndarray, element) -> np.ndarray:
        for y, p, w in self._triples(element):
            acc += (w, w * y, w * y * y, w * (y - p) ** 2)
        return acc

    def extract_output(self, acc: np.ndarray) -> Dict[metric_types.MetricKey, float]:
        n, sy, syy, sse = acc
        sst = syy - sy * sy / n if n > 0 else 0.0
        return {self._key: float(1.0 - sse / sst) if sst > 0 else float("nan")}


class RSquared(metric_types.Metric):
    """1 - sum((y - p)^2) / sum((y - mean(y))^2): 1 is perfect, 0 is the mean's score."""

    def __init__(self, name: str = R_SQUARED_NAME):
        super().__init__(metric_util.merge_per_key_computations(self._make), name=name)

    @staticmethod
    def _make(name=R_SQUARED_NAME, eval_config=None, model_name="", output_name="", sub_key=None,
              aggregation_type=None, class_weights=None, example_weighted=False):
        # Explicit arguments: TFMA passes only those a computation's signature names (sub_key included).
        return _computations(_RSquaredCombiner, name, eval_config, model_name, output_name, sub_key,
                             aggregation_type, class_weights, example_weighted)


class _CalibrationCombiner(_Combiner):
    def __init__(self, *args, num_bins: int = 10):
        super().__init__(*args)
        self.num_bins = num_bins
        self.size = 3 * num_bins  # per bin: weight, sum(w p), sum(w y)

    def add_input(self, acc: np.ndarray, element) -> np.ndarray:
        for y, p, w in self._triples(element):
            b = min(int(max(p, 0.0) * self.num_bins), self.num_bins - 1)
            acc[3 * b] += w
            acc[3 * b + 1] += w * p
            acc[3 * b + 2] += w * y
        return acc

    def extract_output(self, acc: np.ndarray) -> Dict[metric_types.MetricKey, float]:
        bins = acc.reshape(self.num_bins, 3)
        total = bins[:, 0].sum()
        if total <= 0:
            return {self._key: float("nan")}
        used = bins[:, 0] > 0
        gap = np.abs(bins[used, 1] - bins[used, 2]) / total  # |sum p - sum y| / N == n_b/N * |mean p - mean y|
        return {self._key: float(gap.sum())}


class ExpectedCalibrationError(metric_types.Metric):
    """sum over bins of n_b / N * |mean predicted probability - observed positive rate| (0 is calibrated)."""

    def __init__(self, name: str = ECE_NAME, num_bins: int = 10):
        super().__init__(metric_util.merge_per_key_computations(self._make), name=name, num_bins=num_bins)

    @staticmethod
    def _make(name=ECE_NAME, num_bins=10, eval_config=None, model_name="", output_name="", sub_key=None,
              aggregation_type=None, class_weights=None, example_weighted=False):
        return _computations(_CalibrationCombiner, name, eval_config, model_name, output_name, sub_key,
                             aggregation_type, class_weights, example_weighted, num_bins=num_bins)


metric_types.register_metric(RSquared)
metric_types.register_metric(ExpectedCalibrationError)

KERAS_EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps]


class _ScoresCombiner(_Combiner):
    """Per example, the label and the whole prediction vector (not TFMA's flattened one-vs-rest pairs)."""

    size = 2  # weight, sum(w * value)

    def add_input(self, acc: np.ndarray, element) -> np.ndarray:
        for label, prediction, weight in self._examples(element, flatten=False):
            w = float(np.ravel(weight)[0])
            acc += (w, w * self.value(np.ravel(label), np.ravel(prediction)))
        return acc

    def extract_output(self, acc: np.ndarray) -> Dict[metric_types.MetricKey, float]:
        return {self._key: self.finish(acc[1] / acc[0]) if acc[0] > 0 else float("nan")}

    @staticmethod
    def finish(mean: float) -> float:
        return float(mean)


class _AccuracyCombiner(_ScoresCombiner):
    @staticmethod
    def value(label: np.ndarray, scores: np.ndarray) -> float:
        return float(int(np.argmax(scores)) == int(label[0]))  # argmax: the first of equal scores, as tf.argmax


class _CrossentropyCombiner(_ScoresCombiner):
    @staticmethod
    def value(label: np.ndarray, scores: np.ndarray) -> float:
        # Keras (from probabilities): clip to [eps, 1 - eps], then the softmax crossentropy of their logs,
        # which renormalizes the clipped vector: -log(p_y / sum(p)). A label the train split never had
        # (index -1) is a class the model gives probability 0, clipped to eps; Keras raises there.
        p = np.clip(scores.astype(np.float32), KERAS_EPSILON, 1 - KERAS_EPSILON).astype(np.float64)
        y = int(label[0])
        return float(np.log(p.sum()) - np.log(p[y] if 0 <= y < len(p) else KERAS_EPSILON))


class _RootSquaredErrorCombiner(_ScoresCombiner):
    @staticmethod
    def value(label: np.ndarray, prediction: np.ndarray) -> float:
        return float(np.mean((label.astype(np.float64) - prediction) ** 2))

    @staticmethod
    def finish(mean: float) -> float:
        return float(np.sqrt(mean))


class _KerasLike(metric_types.Metric):
    """The weighted mean over examples of `combiner`'s value, under Keras's metric name."""

    combiner = _ScoresCombiner
    default_name = ""

    def __init__(self, name: Optional[str] = None):
        super().__init__(metric_util.merge_per_key_computations(self._make), name=name or self.default_name)

    def _make(self, name, eval_config=None, model_name="", output_name="", sub_key=None,
              aggregation_type=None, class_weights=None, example_weighted=False):
        return _computations(self.combiner, name, eval_config, model_name, output_name, sub_key,
                             aggregation_type, class_weights, example_weighted)


class SparseCategoricalAccuracy(_KerasLike):
    """The share of examples whose highest score is the label's class."""

    combiner = _AccuracyCombiner
    default_name = "sparse_categorical_accuracy"


class SparseCategoricalCrossentropy(_KerasLike):
    """The mean of -log(probability of the label's class), the probabilities clipped as Keras clips them."""

    combiner = _CrossentropyCombiner
    default_name = "sparse_categorical_crossentropy"


class RootMeanSquaredError(_KerasLike):
    """The square root of the mean of (label - prediction)^2."""

    combiner = _RootSquaredErrorCombiner
    default_name = "root_mean_squared_error"


def expected_calibration_error(labels, probabilities, num_bins: int = 10) -> float:
    """The same ECE in numpy (baselines, tuning, tests): labels in {0, 1}, positive-class probabilities."""
    labels = np.asarray(labels, np.float64).ravel()
    p = np.asarray(probabilities, np.float64).ravel()
    bins = np.minimum((np.clip(p, 0, None) * num_bins).astype(int), num_bins - 1)
    sp = np.bincount(bins, p, minlength=num_bins)
    sy = np.bincount(bins, labels, minlength=num_bins)
    return float(np.abs(sp - sy).sum() / max(len(p), 1))


def r_squared(labels, predictions) -> float:
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(predictions, np.float64).ravel()
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / sst if sst > 0 else float("nan")


class _CalibrationHistogramCombiner(calibration_histogram._CalibrationHistogramCombiner):
    """TFMA's calibration histogram (AUC, PR-AUC and the binary confusion matrices come from it), each
    example read by `label_prediction_weight`. Its class name is TFMA's: TFMA tells computations apart by
    their combiner's class name and keys, so this one replaces TFMA's rather than running beside it."""

    def add_input(self, accumulator, element):
        for label, prediction, example_weight in label_prediction_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, sub_key=self._key.sub_key,
                fractional_labels=self._fractional_labels, flatten=True, aggregation_type=self._aggregation_type,
                class_weights=self._class_weights, example_weighted=self._example_weighted):
            example_weight, label, prediction = float(example_weight), float(label), float(prediction)
            index = self._bucket_index(prediction if self._prediction_based_bucketing else label)
            bucket = accumulator.get(index)
            if bucket is None:
                accumulator[index] = calibration_histogram.Bucket(index, label * example_weight,
                                                                  prediction * example_weight, example_weight)
            else:
                bucket.weighted_labels += label * example_weight
                bucket.weighted_predictions += prediction * example_weight
                bucket.weighted_examples += example_weight
        return accumulator


def _direct(computation):
    """`computation` with its combiner reading examples by `label_prediction_weight`, where TFMA's combiner
    reads them by TFMA's general function (its calibration histogram, and any combiner that takes the
    function as an argument: the binary and multi-class confusion matrices)."""
    combiner = getattr(computation, "combiner", None)
    if type(combiner) is calibration_histogram._CalibrationHistogramCombiner:
        direct = _CalibrationHistogramCombiner.__new__(_CalibrationHistogramCombiner)
        direct.__dict__.update(combiner.__dict__)
        return metric_types.MetricComputation(computation.keys, computation.preprocessors, direct)
    reads = getattr(combiner, "_extract_label_prediction_and_weight", None)
    if reads is metric_util.to_label_prediction_example_weight:
        combiner._extract_label_prediction_and_weight = label_prediction_weight
    return computation


class _Direct:
    """A TFMA metric whose combiners read each example by `label_prediction_weight` (`_direct`)."""

    def computations(self, *args, **kwargs) -> metric_types.MetricComputations:
        return [_direct(c) for c in super().computations(*args, **kwargs)]


class LaminaAUC(_Direct, confusion_matrix_metrics.AUC):
    pass


class LaminaAUCPrecisionRecall(_Direct, confusion_matrix_metrics.AUCPrecisionRecall):
    pass


class LaminaPrecision(_Direct, confusion_matrix_metrics.Precision):
    pass


class LaminaRecall(_Direct, confusion_matrix_metrics.Recall):
    pass


class LaminaTPR(_Direct, confusion_matrix_metrics.TPR):
    pass


class LaminaFPR(_Direct, confusion_matrix_metrics.FPR):
    pass


class LaminaMultiClassConfusionMatrixPlot(_Direct, multi_class_confusion_matrix_plot.MultiClassConfusionMatrixPlot):
    pass


# TFMA's metrics read directly, by their class names here: "Lamina" and TFMA's own class name. (TFMA resolves a
# class name it has registered to its own class, whatever the config's module.)
DIRECT_TFMA_CLASSES = tuple(c.__name__ for c in (LaminaAUC, LaminaAUCPrecisionRecall, LaminaPrecision, LaminaRecall,
                                                 LaminaTPR, LaminaFPR, LaminaMultiClassConfusionMatrixPlot))

__all__: List[str] = ["RSquared", "ExpectedCalibrationError", "expected_calibration_error", "r_squared",
                      "R_SQUARED_NAME", "ECE_NAME", "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
                      "RootMeanSquaredError", "label_prediction_weight", "DIRECT_TFMA_CLASSES", *DIRECT_TFMA_CLASSES]
