"""The export section: TFLite (LiteRT) files made from the blessed model, and the bound on their metric."""

from typing import List, Literal

from pydantic import Field, field_validator

from lamina.pipeline.spec.base import StrictModel

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
        repeated = sorted({f for f in v if v.count(f) > 1})
        if repeated:
            raise ValueError(f"each form at most once. Received {', '.join(repr(r) for r in repeated)} twice")
        return v
