"""The data section: where the examples come from, what is predicted, and how it is split."""

import codecs
import enum
from typing import Any, ClassVar, Dict, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from lamina.constants import (AUDIO_EXTENSIONS, AUDIO_FORMATS, DEFAULT_MAX_AUDIO_SECONDS, DEFAULT_MAX_IMAGE_PIXELS,
                              IMAGE_EXTENSIONS, IMAGE_FORMATS, TABLE_FORMATS, table_format_of)
from lamina.spec.base import StrictModel, repeated


class FeatureType(str, enum.Enum):
    """The kinds of input feature this release trains on, end to end."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"
    IMAGE = "image"
    DATE = "date"
    SEQUENCE = "sequence"
    AUDIO = "audio"


# The date and timestamp layouts a `date` feature may have; each may be followed by a time,
# `[ T]HH:MM[:SS]`. Transform parses them in the graph, so the served model takes the same strings.
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y")
# The delimiters a CSV's dialect is sniffed among when the spec sets none.
CSV_DELIMITERS = (",", ";", "\t", "|")
# What separates a sequence's values in one CSV cell when the feature sets no `delimiter`: any run
# of spaces, commas, semicolons or bars ("1.5 2 3", "[1.5, 2, 3]", "1.5;2;3"). Lists in JSON Lines,
# Parquet and TFRecord need none.
SEQUENCE_SEPARATORS = " ,;|"



class FeatureSpec(StrictModel):
    """One input feature, by its column name as the file has it (any header works).

    `type: null` means: infer it from the schema. `missing_indicator` adds a 0/1 feature saying
    the value was missing (numeric features; the value itself takes the training mean).
    `format` is a date feature's layout, one of DATE_FORMATS; `reference` names another date
    feature, and the days from it to this one become one more input (a time delta).
    `delimiter` is a sequence feature's separator inside one CSV cell (default: any of
    SEQUENCE_SEPARATORS); a list in JSON Lines, Parquet or TFRecord is a sequence as it is.
    """

    name: str
    type: Optional[FeatureType] = None
    missing_indicator: bool = False
    format: Optional[str] = None
    reference: Optional[str] = None
    delimiter: Optional[str] = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not v.strip() or any(ord(c) < 32 for c in v):
            raise ValueError(f"expected a column name with no control characters, not blank. Received: {v!r}")
        return v

    @model_validator(mode="after")
    def _check_format(self) -> "FeatureSpec":
        for key in ("format", "reference"):
            if getattr(self, key) is not None and self.type != FeatureType.DATE:
                raise ValueError(f"`{key}` is for date features only. Received: type={self.type and self.type.value!r}")
        if self.delimiter is not None:
            if self.type != FeatureType.SEQUENCE:
                raise ValueError(f"`delimiter` is for sequence features only. Received: "
                                 f"type={self.type and self.type.value!r}")
            if len(self.delimiter) != 1 or self.delimiter in "\"\r\n.-+":
                raise ValueError(f"`delimiter`: expected one character that is not a quote, a line break, '.', "
                                 f"'-' or '+' (they are parts of numbers). Received: {self.delimiter!r}")
        if self.type == FeatureType.DATE:
            if self.format is None:
                self.format = DATE_FORMATS[0]
            if self.format not in DATE_FORMATS:
                raise ValueError(f"Received format={self.format!r}; expected one of: "
                                 f"{', '.join(repr(f) for f in DATE_FORMATS)}, optionally followed by a time.")
        return self


class FileIngestSpec(StrictModel):
    """How a folder's ExampleGen treats files it cannot use (corrupt, empty, not an image or audio).

    Bad files are skipped and listed in the run report. `bad_files: fail` stops the run at
    the first one; with `skip`, the run stops when more than `max_bad_fraction` of all files
    are bad. Paths outside the data root and empty class folders always stop the run.
    `extensions`: the file endings read, from the subclass's KNOWN_EXTENSIONS.
    """

    KNOWN_EXTENSIONS: ClassVar[List[str]] = []
    bad_files: Literal["skip", "fail"] = "skip"
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0)

    @field_validator("extensions", check_fields=False)
    @classmethod
    def _check_extensions(cls, v: List[str]) -> List[str]:
        bad = [e for e in v if e.lower() not in cls.KNOWN_EXTENSIONS]
        if bad or not v:
            raise ValueError(f"expected a non-empty list from {cls.KNOWN_EXTENSIONS}. Received: {v}")
        return [e.lower() for e in v]


class ImageIngestSpec(FileIngestSpec):
    """Image files: which endings are read, and the pixel bound checked in each header."""

    KNOWN_EXTENSIONS: ClassVar[List[str]] = IMAGE_EXTENSIONS
    extensions: List[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    max_pixels: int = Field(default=DEFAULT_MAX_IMAGE_PIXELS, ge=1, description="An image declaring more pixels "
                            "in its header is a bad file ('too_large'), never decoded.")


class AudioIngestSpec(FileIngestSpec):
    """Audio files: which endings are read (all but .wav are turned into 16-bit WAV by soundfile), and the
    duration bound checked in each WAV header."""

    KNOWN_EXTENSIONS: ClassVar[List[str]] = AUDIO_EXTENSIONS
    extensions: List[str] = Field(default_factory=lambda: list(AUDIO_EXTENSIONS))
    max_seconds: float = Field(default=DEFAULT_MAX_AUDIO_SECONDS, gt=0.0, description="A file declaring more "
                               "seconds is a bad file ('too_long'), never decoded.")


class DataSpec(StrictModel):
    """Where the examples come from and what is predicted.

    `format: csv` reads a CSV file (or a glob); `jsonl`, `parquet` and `tfrecord` read those
    formats alike (one column per key, column or feature). `format: image_folder` reads a folder with one
    subfolder per class; `format: image_csv` reads a CSV whose image column holds file paths
    relative to the CSV's folder. Both image formats default to one image feature, `image`.
    `format: audio_folder` reads a folder with one subfolder of audio files per class, as one
    audio feature, `audio`.
    """

    path: str = Field(description="A CSV file or glob; an image folder; or a CSV of image paths and labels.")
    label: str
    format: Literal[TABLE_FORMATS + IMAGE_FORMATS + AUDIO_FORMATS] = Field(
        default="csv", description="Default: from the file extension (.jsonl/.ndjson, .parquet/.pq, .tfrecord/"
        ".tfrecord.gz), else csv.")
    images: ImageIngestSpec = Field(default_factory=ImageIngestSpec)
    audio: AudioIngestSpec = Field(default_factory=AudioIngestSpec)
    features: Optional[List[FeatureSpec]] = Field(
        default=None,
        description="Input features. Omitted: Lamina infers each column's role from the data and prints them.",
    )
    exclude: List[str] = Field(default_factory=list, description="Columns that are never features (IDs, "
                               "constants); kept in the examples for slicing.")
    delimiter: Optional[str] = Field(default=None, description="CSV only: one character. Default: sniffed "
                                     "among , ; tab |")
    encoding: str = Field(default="utf-8", description="CSV only; a byte-order mark is dropped.")
    bad_rows: Literal["fail", "skip"] = Field(default="fail", description="CSV rows with more or fewer fields "
                                              "than the header: stop the run, or skip and count them.")
    max_bad_rows: float = Field(default=0.01, ge=0.0, le=1.0, description="With bad_rows: skip, the largest "
                                "fraction of rows that may be skipped.")
    max_missing_labels: float = Field(default=0.5, ge=0.0, le=1.0, description="Rows without a label are left "
                                      "out of training and evaluation; more than this fraction stops the run.")
    max_unseen_share: float = Field(
        default=0.02, ge=0.0, le=1.0,
        description="A categorical column's values in the eval split that the train split never had go to the "
                    "out-of-vocabulary bucket, as at serving time; past this share of the column's values they are "
                    "an anomaly and stop the run (TFDV's min_domain_mass is 1 - this).")
    schema_path: Optional[str] = Field(
        default=None,
        description="A curated schema.pbtxt; when set, ImportSchemaGen replaces schema inference.",
    )

    @model_validator(mode="before")
    @classmethod
    def _format_from_extension(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format") is None and isinstance(data.get("path"), str):
            path = data["path"].lower()
            fmt = table_format_of(path, default=None)
            if fmt:
                data = dict(data, format=fmt)
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_image_feature(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("features") is None:
            if data.get("format") in IMAGE_FORMATS:
                data = dict(data, features={"image": "image"})
            elif data.get("format") in AUDIO_FORMATS:
                data = dict(data, features={"audio": "audio"})
        return data

    @property
    def is_images(self) -> bool:
        return self.format in IMAGE_FORMATS

    @property
    def is_audio(self) -> bool:
        return self.format in AUDIO_FORMATS

    @property
    def is_files(self) -> bool:
        """Examples made one per file (image or audio folders, image CSVs), each keyed by its path."""
        return self.is_images or self.is_audio

    @property
    def file_feature(self) -> str:
        """is_files: the one feature that holds each file's bytes."""
        return self.features[0].name

    @field_validator("features", mode="before")
    @classmethod
    def _features_from_mapping(cls, v: Any) -> Any:
        # Accept the compact YAML form `{bill_length_mm: numeric, signup: {type: date, format: ...}}`.
        if isinstance(v, dict):
            return [{"name": k, **t} if isinstance(t, dict) else {"name": k, "type": t} for k, t in v.items()]
        return v

    @field_validator("delimiter")
    @classmethod
    def _check_delimiter(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (len(v) != 1 or v in "\"\r\n"):
            raise ValueError(f"expected one character, not a quote or a line break; the usual ones are "
                             f"{', '.join(repr(d) for d in CSV_DELIMITERS)}. Received: {v!r}")
        return v

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding; expected a Python codec name such as 'utf-8', 'latin-1' "
                             f"or 'cp1252'. Received: {v!r}") from None
        return v

    @field_validator("features")
    @classmethod
    def _unique_features(cls, v: Optional[List[FeatureSpec]]) -> Optional[List[FeatureSpec]]:
        if v is not None:
            if not v:
                raise ValueError("expected at least one feature, or omit `features` to use every column.")
            names = [f.name for f in v]
            dupes = repeated(names)
            if dupes:
                raise ValueError(f"feature names must be unique. Received duplicates: {', '.join(dupes)}")
        return v

    @property
    def sequence_delimiters(self) -> Dict[str, str]:
        """Each sequence feature's delimiter in a CSV cell ('' for the default)."""
        return {f.name: f.delimiter or "" for f in self.features or [] if f.type == FeatureType.SEQUENCE}

    @property
    def feature_types(self) -> Dict[str, Optional[str]]:
        return {f.name: (f.type.value if f.type else None) for f in (self.features or [])}


class SplitSpec(StrictModel):
    """Hash-bucket split of the input into train and eval."""

    train: int = Field(default=4, ge=1, le=100)
    eval: int = Field(default=1, ge=1, le=100)


