"""The evaluation section: the metrics TFMA computes, the gates on them, per slice and across slices, and
the baselines that keep the network honest."""

from typing import Dict, List, Literal, Optional

from pydantic import Field, model_validator

from lamina.spec.base import StrictModel

# Metric names the spec accepts, per head type, and the TFMA metric class each maps to.
CLASSIFICATION_METRICS = {
    "accuracy": "SparseCategoricalAccuracy",
    "crossentropy": "SparseCategoricalCrossentropy",
    # Of the positive class (binary tasks): computed by TFMA on the positive class's probability.
    "auc": "LaminaAUC",
    "pr_auc": "LaminaAUCPrecisionRecall",
    "precision": "LaminaPrecision",
    "recall": "LaminaRecall",
    "tpr": "LaminaTPR",
    "fpr": "LaminaFPR",
    "ece": "ExpectedCalibrationError",
    # Multi-class: the lowest recall of any class, read off TFMA's confusion matrix.
    "class_recall": "LaminaMultiClassConfusionMatrixPlot",
}
REGRESSION_METRICS = {
    "mse": "MeanSquaredError",
    "mae": "MeanAbsoluteError",
    "rmse": "RootMeanSquaredError",
    "r2": "RSquared",
}
# Forecasting: over every step of every eval window. MASE scales the error by the in-sample error of
# the seasonal-naive forecast (lamina.models.forecast_metrics); below 1 beats it.
FORECAST_METRICS = {"mae": "mae", "rmse": "rmse", "mape": "mape", "smape": "smape", "mase": "mase"}
# Metrics TFMA computes after binarizing the label and the prediction at the positive class.
POSITIVE_CLASS_METRICS = ("auc", "pr_auc", "precision", "recall", "tpr", "fpr", "ece")
# Metrics Lamina's own TFMA module defines (models/tfma_metrics.py): those TFMA lacks, Keras's that TFMA
# would run as TensorFlow graphs, in numpy, and TFMA's own confusion-matrix metrics reading each example
# directly ("Lamina" + TFMA's class name: TFMA takes a class name it knows from itself, whatever the
# module). TFMA's own MeanSquaredError and MeanAbsoluteError are numpy, and read examples cheaply.
LAMINA_TFMA_METRICS = ("ece", "r2", "accuracy", "crossentropy", "rmse", "auc", "pr_auc", "precision", "recall",
                       "tpr", "fpr", "class_recall")
# The name each metric has in TFMA's output.
TFMA_OUTPUT_NAMES = {
    "accuracy": "sparse_categorical_accuracy",
    "crossentropy": "sparse_categorical_crossentropy",
    "auc": "auc",
    "pr_auc": "auc_precision_recall",
    "precision": "precision",
    "recall": "recall",
    "tpr": "tpr",
    "fpr": "fpr",
    "ece": "expected_calibration_error",
    "class_recall": "class_recall",
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "rmse": "root_mean_squared_error",
    "r2": "r_squared",
}
LOWER_IS_BETTER = {"crossentropy", "mse", "mae", "rmse", "ece", "fpr", "mape", "smape", "mase"}


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


class ThresholdSpec(StrictModel):
    """A gate on one metric: absolute bounds and/or the largest allowed regression vs the baseline."""

    lower_bound: Optional[float] = None
    upper_bound: Optional[float] = None
    max_regression: Optional[float] = Field(
        default=None, ge=0.0, description="How much worse than the last blessed model the metric may be.")

    @model_validator(mode="after")
    def _some_bound(self) -> "ThresholdSpec":
        if self.lower_bound is None and self.upper_bound is None and self.max_regression is None:
            raise ValueError("expected at least one of lower_bound, upper_bound, max_regression.")
        if self.lower_bound is not None and self.upper_bound is not None and self.lower_bound > self.upper_bound:
            raise ValueError(
                f"lower_bound must not exceed upper_bound. Received: lower_bound={self.lower_bound}, upper_bound={self.upper_bound}"
            )
        return self


class SliceThresholdSpec(StrictModel):
    """A bound a metric must meet in every slice of `evaluation.slices` with at least `min_examples` examples.

    Smaller slices are reported, not gated: a handful of examples says little.
    """

    lower_bound: Optional[float] = None
    upper_bound: Optional[float] = None
    min_examples: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _some_bound(self) -> "SliceThresholdSpec":
        if self.lower_bound is None and self.upper_bound is None:
            raise ValueError("expected lower_bound, upper_bound or both.")
        return self


class FairnessSpec(StrictModel):
    """The largest gap in `metric` between the slices of `feature` (each with at least `min_examples`)."""

    feature: str
    metric: str = "accuracy"
    max_gap: float = Field(gt=0.0)
    min_examples: int = Field(default=30, ge=1)


class BaselineSpec(StrictModel):
    """Gradient-boosted trees and a linear model, trained on the same split and Transform output.

    Computed for every run with tabular features. `must_beat` makes them a gate: the network is
    pushed only when its `metric` is within `tolerance` of that baseline's (or of the better one).
    A forecast's baselines are the seasonal-naive and last-value forecasts, always computed.
    """

    enabled: bool = True
    must_beat: Optional[Literal["gbt", "linear", "best", "seasonal_naive", "last_value"]] = None
    tolerance: float = Field(default=0.01, ge=0.0)
    metric: Optional[str] = Field(default=None, description="Default: the first of evaluation.metrics.")
    max_train_rows: int = Field(default=200_000, ge=100,
                                description="A larger train split is cut to its first this-many rows (which "
                                            "ExampleGen has hashed into it): it bounds the memory the fit takes.")


class EvaluationSpec(StrictModel):
    metrics: List[str] = Field(default_factory=lambda: ["accuracy"])
    thresholds: Dict[str, ThresholdSpec] = Field(default_factory=dict)
    slices: List[List[str]] = Field(default_factory=list, description="Feature lists to slice metrics by.")
    slice_thresholds: Dict[str, SliceThresholdSpec] = Field(default_factory=dict)
    fairness: List[FairnessSpec] = Field(default_factory=list)
    baseline: BaselineSpec = Field(default_factory=BaselineSpec)
    positive_class: Optional[str] = Field(
        default=None, description="Binary tasks: the label value the positive-class metrics are of. Default: the "
        "rarer class of the train split.")
    decision_threshold: float = Field(default=0.5, gt=0.0, lt=1.0,
                                      description="Binary tasks: the positive-class probability that predicts it; "
                                      "precision, recall, tpr and fpr are measured there.")

    @property
    def gated_beyond_tfma(self) -> bool:
        """Whether a gate needs the PushGate: per slice, across slices, against the baselines, per class."""
        return bool(self.slice_thresholds or self.fairness or self.baseline.must_beat
                    or "class_recall" in self.thresholds)

    @property
    def positive_index(self) -> int:
        """The positive class's index in the label vocabulary: a declared `positive_class` is reserved at index 0;
        otherwise the vocabulary is sorted by frequency, and index 1 is the rarer of two classes."""
        return 0 if self.positive_class is not None else 1

    @property
    def baseline_metric(self) -> str:
        return self.baseline.metric or self.metrics[0]

    @property
    def all_slices(self) -> List[List[str]]:
        """`slices`, plus one slice per fairness feature not among them."""
        out = [list(s) for s in self.slices]
        for f in self.fairness:
            if [f.feature] not in out:
                out.append([f.feature])
        return out
