"""Metrics TFMA lacks, as TFMA metrics: the Evaluator computes them in Beam, per slice, and gates on them.

- `RSquared`: the coefficient of determination, 1 - SSE / SST (regression).
- `ExpectedCalibrationError`: the mean gap between the predicted probability and the observed rate,
  over equal-width probability bins, weighted by the bins' example counts (binary tasks, on the
  positive class that TFMA's binarization picks).

`eval_config` names them with `module="lamina.models.tfma_metrics"`.
"""

from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

R_SQUARED_NAME = "r_squared"
ECE_NAME = "expected_calibration_error"


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

    def _triples(self, element):
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, sub_key=self._key.sub_key,
                aggregation_type=self._aggregation_type, class_weights=self._class_weights,
                example_weighted=self._example_weighted):
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


def expected_calibration_error(labels, probabilities, num_bins: int = 10) -> float:
    """The same ECE in numpy (baselines, tuning, tests): labels in {0, 1}, positive-class probabilities."""
    labels = np.asarray(labels, np.float64).ravel()
    p = np.asarray(probabilities, np.float64).ravel()
    bins = np.minimum((np.clip(p, 0, None) * num_bins).astype(int), num_bins - 1)
    n = np.bincount(bins, minlength=num_bins)
    sp = np.bincount(bins, p, minlength=num_bins)
    sy = np.bincount(bins, labels, minlength=num_bins)
    return float(np.abs(sp - sy).sum() / max(len(p), 1))


def r_squared(labels, predictions) -> float:
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(predictions, np.float64).ravel()
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / sst if sst > 0 else float("nan")


__all__: List[str] = ["RSquared", "ExpectedCalibrationError", "expected_calibration_error", "r_squared",
                      "R_SQUARED_NAME", "ECE_NAME"]
