"""Where the blessed model is pushed, and the optional BulkInferrer."""

import re

from pydantic import field_validator

from lamina.spec.base import StrictModel


class ServingSpec(StrictModel):
    model_name: str = "model"
    push_dir: str = "serving_models"

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", v):
            raise ValueError(f"expected letters, digits, '_', '.' or '-'. Received: {v!r}")
        return v


class InferenceSpec(StrictModel):
    """Optional BulkInferrer over the eval split with the blessed model."""

    enabled: bool = False

