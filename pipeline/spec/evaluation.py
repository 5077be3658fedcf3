"""The evaluation section: the metrics TFMA computes, the gates on them, and the slices."""

from typing import Dict, List, Optional

from pydantic import Field, model_validator

from lamina.pipeline.spec.base import StrictModel

# Metric names the spec accepts, per head type, and the TFMA metric class each maps to.
CLASSIFICATION_METRICS = {
    "accuracy": "SparseCategoricalAccuracy",
    "crossentropy": "SparseCategoricalCrossentropy",
}
REGRESSION_METRICS = {
    "mse": "MeanSquaredError",
    "mae": "MeanAbsoluteError",
    "rmse": "RootMeanSquaredError",
}
LOWER_IS_BETTER = {"crossentropy", "mse", "mae", "rmse"}


class ThresholdSpec(StrictModel):
    """A gate on one metric: absolute bounds and/or the largest allowed regression vs the baseline."""

    lower_bound: Optional[float] = None
    upper_bound: Optional[float] = None
    max_regression: Optional[float] = Field(
        default=None, ge=0.0, description="How much worse than the last blessed model the metric may be."
    )

    @model_validator(mode="after")
    def _some_bound(self) -> "ThresholdSpec":
        if self.lower_bound is None and self.upper_bound is None and self.max_regression is None:
            raise ValueError("expected at least one of lower_bound, upper_bound, max_regression.")
        if self.lower_bound is not None and self.upper_bound is not None and self.lower_bound > self.upper_bound:
            raise ValueError(
                f"lower_bound must not exceed upper_bound. Received: lower_bound={self.lower_bound}, upper_bound={self.upper_bound}"
            )
        return self


class EvaluationSpec(StrictModel):
    metrics: List[str] = Field(default_factory=lambda: ["accuracy"])
    thresholds: Dict[str, ThresholdSpec] = Field(default_factory=dict)
    slices: List[List[str]] = Field(default_factory=list, description="Feature lists to slice metrics by.")

