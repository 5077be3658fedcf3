"""The export section: TFLite (LiteRT) files made from the blessed model, and the bound on their metric."""

from typing import List, Literal

from pydantic import Field, field_validator

from lamina.spec.base import StrictModel, repeated

TFLITE_FORMS = ("float", "dynamic_range", "int8")


class ExportSpec(StrictModel):
    """`export: {tflite: [float, dynamic_range, int8], max_metric_drop: 0.02}`; no forms, no TFLite step."""

    tflite: List[Literal["float", "dynamic_range", "int8"]] = Field(
        default_factory=list, description="TFLite forms to export beside the SavedModel.")
    max_metric_drop: float = Field(
        default=0.02, ge=0.0, le=1.0,
        description="A form whose eval metric (accuracy, or mean absolute error) is worse than the SavedModel's "
                    "by more than this is not exported.")
    calibration_examples: int = Field(default=200, ge=1, le=10_000,
                                      description="Training examples that calibrate int8.")

    @field_validator("tflite")
    @classmethod
    def _no_repeats(cls, v: List[str]) -> List[str]:
        repeated_forms = repeated(v)
        if repeated_forms:
            raise ValueError(f"each form at most once. Received {', '.join(repr(r) for r in repeated_forms)} twice")
        return v


class ExplainSpec(StrictModel):
    """`explain:` the Explainer after the Evaluator: Integrated Gradients (tabular, text), Grad-CAM (images),
    Shapley values (gradient-boosted trees and the linear model)."""

    enabled: bool = True
    samples: int = Field(default=8, ge=1, le=1000,
                         description="Eval examples explained (tabular and text); their mean |attribution| "
                                     "ranks the features.")
    images_per_class: int = Field(default=2, ge=1, le=50,
                                  description="Grad-CAM overlays per class, right and wrong answers both.")
    steps: int = Field(default=128, ge=4, le=1024, description="Integrated Gradients' integration steps.")
    baseline: Literal["zeros", "mean"] = Field(
        default="zeros", description="Integrated Gradients' baseline in each feature's encoded space: the zero "
                                     "vector, or the mean over the explained examples. For Shapley values, "
                                     "the reference row's numbers: their train mean, or the examples' mean.")
