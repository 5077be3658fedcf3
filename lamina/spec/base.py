"""What every spec section shares: unknown keys forbidden, and errors as one line per problem."""

import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from lamina.spec.errors import SpecError, format_validation_error

_construction = threading.local()


class StrictModel(BaseModel):
    """A spec section: unknown keys are errors, and so is a bad assignment after construction."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init__(self, **data: Any):
        # The Python API gives the same messages as the YAML path: SpecError with key paths.
        # Pydantic calls this for nested sections too; only the outermost call converts.
        depth = getattr(_construction, "depth", 0)
        _construction.depth = depth + 1
        try:
            super().__init__(**data)
        except ValidationError as e:
            if depth:
                raise
            raise SpecError(format_validation_error(e, type(self))) from None
        finally:
            _construction.depth = depth


def repeated(values) -> list:
    """The values that appear more than once, sorted."""
    seen, twice = set(), set()
    for v in values:
        (twice if v in seen else seen).add(v)
    return sorted(twice)
