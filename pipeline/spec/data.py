"""The data section: where the examples come from, what is predicted, and how it is split."""

import enum
import re
from typing import Any, Dict, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from lamina.pipeline.spec.base import StrictModel

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FeatureType(str, enum.Enum):
    """The kinds of input feature this release trains on, end to end."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"
    IMAGE = "image"


IMAGE_FORMATS = ("image_folder", "image_csv")
# The column ImageExampleGen adds to every example: the image's path relative to the data root.
SOURCE_PATH_KEY = "source_path"
IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".gif", ".bmp"]
# Pixels an encoded image may declare in its header, at ingest and in `lamina serve`: far above what
# the image encoders resize to, far below a decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096

class FeatureSpec(StrictModel):
    """One input feature. `type: null` means: infer it from the schema."""

    name: str
    type: Optional[FeatureType] = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"expected a column name made of letters, digits and underscores, "
                f"not starting with a digit. Received: {v!r}"
            )
        return v


class ImageIngestSpec(StrictModel):
    """How ImageExampleGen treats files it cannot use (corrupt, empty, not an image).

    Bad files are skipped and listed in the run report. `bad_files: fail` stops the run at
    the first one; with `skip`, the run stops when more than `max_bad_fraction` of all files
    are bad. Paths outside the data root and empty class folders always stop the run.
    """

    bad_files: Literal["skip", "fail"] = "skip"
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    extensions: List[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    max_pixels: int = Field(default=DEFAULT_MAX_IMAGE_PIXELS, ge=1, description="An image declaring more pixels "
                            "in its header is a bad file ('too_large'), never decoded.")

    @field_validator("extensions")
    @classmethod
    def _check_extensions(cls, v: List[str]) -> List[str]:
        bad = [e for e in v if e.lower() not in IMAGE_EXTENSIONS]
        if bad or not v:
            raise ValueError(f"expected a non-empty list from {IMAGE_EXTENSIONS}. Received: {v}")
        return [e.lower() for e in v]


class DataSpec(StrictModel):
    """Where the examples come from and what is predicted.

    `format: csv` reads a CSV file (or a glob). `format: image_folder` reads a folder with one
    subfolder per class; `format: image_csv` reads a CSV whose image column holds file paths
    relative to the CSV's folder. Both image formats default to one image feature, `image`.
    """

    path: str = Field(description="A CSV file or glob; an image folder; or a CSV of image paths and labels.")
    label: str
    format: Literal["csv", "image_folder", "image_csv"] = "csv"
    images: ImageIngestSpec = Field(default_factory=ImageIngestSpec)
    features: Optional[List[FeatureSpec]] = Field(
        default=None,
        description="Input features. Omitted: every column but the label, types from the schema.",
    )
    schema_path: Optional[str] = Field(
        default=None,
        description="A curated schema.pbtxt; when set, ImportSchemaGen replaces schema inference.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_image_feature(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format") in IMAGE_FORMATS and data.get("features") is None:
            data = dict(data, features={"image": "image"})
        return data

    @property
    def is_images(self) -> bool:
        return self.format in IMAGE_FORMATS

    @field_validator("features", mode="before")
    @classmethod
    def _features_from_mapping(cls, v: Any) -> Any:
        # Accept the compact YAML form `{bill_length_mm: numeric, island: categorical}`.
        if isinstance(v, dict):
            return [{"name": k, "type": t} for k, t in v.items()]
        return v

    @field_validator("features")
    @classmethod
    def _unique_features(cls, v: Optional[List[FeatureSpec]]) -> Optional[List[FeatureSpec]]:
        if v is not None:
            if not v:
                raise ValueError("expected at least one feature, or omit `features` to use every column.")
            names = [f.name for f in v]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"feature names must be unique. Received duplicates: {', '.join(dupes)}")
        return v

    @property
    def feature_types(self) -> Dict[str, Optional[str]]:
        return {f.name: (f.type.value if f.type else None) for f in (self.features or [])}


class SplitSpec(StrictModel):
    """Hash-bucket split of the input into train and eval."""

    train: int = Field(default=4, ge=1, le=100)
    eval: int = Field(default=1, ge=1, le=100)


