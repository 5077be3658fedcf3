"""The one typed spec through which all configuration enters Lamina.

A spec is YAML (or the same structure built in Python) validated by pydantic with
unknown keys forbidden. Errors are rewritten into one line per problem naming the
key path, the bad value and what is allowed, e.g.::

    model.head.units: Received -3; expected an integer >= 1.
    model.hed: unknown key. Did you mean 'head'? Allowed keys: combiner, encoders, head.

Example:
    >>> spec = Spec.from_yaml("examples/penguins/spec.yaml")
    >>> spec.data.label
    'species'
"""

from __future__ import annotations

import difflib
import enum
import glob
import json
import os
import re
import threading
import typing
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

__all__ = [
    "CategoricalEncoder",
    "CombinerSpec",
    "DataSpec",
    "EvaluationSpec",
    "EarlyStoppingSpec",
    "AugmentationSpec",
    "FeatureSpec",
    "FineTuneSpec",
    "ImageEncoder",
    "ImageIngestSpec",
    "FeatureType",
    "HeadSpec",
    "InferenceSpec",
    "ModelSpec",
    "NumericEncoder",
    "RunnerSpec",
    "ServingSpec",
    "Spec",
    "SpecError",
    "SplitSpec",
    "ThresholdSpec",
    "TrainingSpec",
    "load_spec",
]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecError(ValueError):
    """A spec failed validation. `problems` holds one readable line per error."""

    def __init__(self, problems: List[str], source: Optional[str] = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid spec{where}:\n{lines}")


_construction = threading.local()


class _Strict(BaseModel):
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
            raise SpecError(_format_validation_error(e, type(self))) from None
        finally:
            _construction.depth = depth


class FeatureType(str, enum.Enum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"
    IMAGE = "image"
    SEQUENCE = "sequence"


# Feature types whose encoders this release implements end to end.
SUPPORTED_FEATURE_TYPES = (FeatureType.NUMERIC, FeatureType.CATEGORICAL, FeatureType.IMAGE, FeatureType.TEXT)
IMAGE_FORMATS = ("image_folder", "image_csv")
# The column ImageExampleGen adds to every example: the image's path relative to the data root.
SOURCE_PATH_KEY = "source_path"
IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".gif", ".bmp"]


class FeatureSpec(_Strict):
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


class ImageIngestSpec(_Strict):
    """How ImageExampleGen treats files it cannot use (corrupt, empty, not an image).

    Bad files are skipped and listed in the run report. `bad_files: fail` stops the run at
    the first one; with `skip`, the run stops when more than `max_bad_fraction` of all files
    are bad. Paths outside the data root and empty class folders always stop the run.
    """

    bad_files: Literal["skip", "fail"] = "skip"
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    extensions: List[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS))

    @field_validator("extensions")
    @classmethod
    def _check_extensions(cls, v: List[str]) -> List[str]:
        bad = [e for e in v if e.lower() not in IMAGE_EXTENSIONS]
        if bad or not v:
            raise ValueError(f"expected a non-empty list from {IMAGE_EXTENSIONS}. Received: {v}")
        return [e.lower() for e in v]


class DataSpec(_Strict):
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


class SplitSpec(_Strict):
    """Hash-bucket split of the input into train and eval."""

    train: int = Field(default=4, ge=1, le=100)
    eval: int = Field(default=1, ge=1, le=100)


class NumericEncoder(_Strict):
    """Numeric features arrive z-scored by Transform; `dense` adds a projection."""

    type: Literal["normalized", "dense"] = "normalized"
    units: int = Field(default=8, ge=1, le=4096)


class CategoricalEncoder(_Strict):
    """Categorical features arrive as vocabulary indices from Transform."""

    type: Literal["embedding", "one_hot"] = "embedding"
    dim: int = Field(default=4, ge=1, le=1024)
    num_oov_buckets: int = Field(default=1, ge=0, le=1000)
    top_k: Optional[int] = Field(default=None, ge=1, description="Keep only the k most frequent values.")


class AugmentationSpec(_Strict):
    """Random image augmentation, applied in training only (Keras preprocessing layers)."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: float = Field(default=0.0, ge=0.0, le=0.5, description="Fraction of a full turn, either way.")
    zoom: float = Field(default=0.0, ge=0.0, lt=1.0)
    contrast: float = Field(default=0.0, ge=0.0, lt=1.0)

    @property
    def enabled(self) -> bool:
        return self.flip != "none" or bool(self.rotation or self.zoom or self.contrast)


RESNET_ARCHITECTURES = ("resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
                        "resnet_small")


class ImageEncoder(_Strict):
    """A ResNet backbone on decoded, resized RGB images, global-average pooled.

    `weights`: 'imagenet' (through the Keras cache, KERAS_HOME), 'random', a Keras weights
    file (.weights.h5 or .h5), or the pushed model of an earlier Lamina run (its model
    directory or one version directory), whose backbone is loaded.
    """

    type: Literal["resnet"] = "resnet"
    architecture: Literal[RESNET_ARCHITECTURES] = "resnet50"
    weights: str = "imagenet"
    image_size: List[int] = Field(default_factory=lambda: [224, 224], description="[height, width] after resizing.")
    width: int = Field(default=16, ge=4, le=512, description="resnet_small only: filters of the first stage.")
    augmentation: AugmentationSpec = Field(default_factory=AugmentationSpec)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("image_size")
    @classmethod
    def _check_size(cls, v: List[int]) -> List[int]:
        if len(v) != 2 or any(s < 8 or s > 4096 for s in v):
            raise ValueError(f"expected [height, width], each between 8 and 4096. Received: {v}")
        return v

    @property
    def pretrained(self) -> bool:
        return self.weights != "random"


class _TextEncoderBase(_Strict):
    max_length: int = Field(default=128, ge=4, le=8192, description="Tokens per text, [CLS] and [SEP] included; "
                            "longer texts are truncated.")
    pooling: Literal["cls", "mean"] = Field(default="mean", description="[CLS] token or mean of the tokens.")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="On the pooled vector, in training only.")


class BertEncoder(_TextEncoderBase):
    """A pretrained BERT-family encoder from a local directory, fine-tuned with the head.

    `path`: a Hugging Face directory (config.json, model.safetensors, vocab.txt; keys with or
    without the `bert.` prefix) or a KerasHub preset directory of a BertBackbone. Relative paths
    are resolved against the spec's folder; `~` is expanded. `freeze_epochs`: train only the head
    for the first N epochs, then everything.
    """

    type: Literal["bert"] = "bert"
    path: str
    freeze_epochs: int = Field(default=0, ge=0, le=100000)


class TransformerEncoder(_TextEncoderBase):
    """A Transformer encoder trained from scratch: token and position embeddings, then
    `num_layers` blocks of multi-head self-attention and feed-forward (residuals, layer norm).

    `vocabulary`: a WordPiece vocab.txt; omitted, one of `vocabulary_size` tokens is learned
    from the train split.
    """

    type: Literal["transformer"] = "transformer"
    num_layers: int = Field(default=2, ge=1, le=48)
    num_heads: int = Field(default=4, ge=1, le=64)
    hidden_dim: int = Field(default=128, ge=8, le=8192)
    intermediate_dim: int = Field(default=512, ge=8, le=32768)
    vocabulary: Optional[str] = None
    vocabulary_size: int = Field(default=8000, ge=100, le=1_000_000)
    lowercase: bool = True

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerEncoder":
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be a multiple of num_heads ({self.num_heads}).")
        return self


_ENCODER_TYPES = {"normalized": "numeric", "dense": "numeric", "embedding": "categorical", "one_hot": "categorical",
                  "resnet": "image", "bert": "bert", "transformer": "transformer"}


def _encoder_kind(v: Any) -> Optional[str]:
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return _ENCODER_TYPES.get(t)


EncoderSpec = Annotated[
    Union[Annotated[NumericEncoder, Tag("numeric")], Annotated[CategoricalEncoder, Tag("categorical")],
          Annotated[ImageEncoder, Tag("image")], Annotated[BertEncoder, Tag("bert")],
          Annotated[TransformerEncoder, Tag("transformer")]],
    Discriminator(
        _encoder_kind,
        custom_error_type="encoder_type",
        custom_error_message="unknown encoder type",
    ),
]
_TAGS = {"numeric": NumericEncoder, "categorical": CategoricalEncoder, "image": ImageEncoder, "bert": BertEncoder,
         "transformer": TransformerEncoder}
TEXT_ENCODERS = (BertEncoder, TransformerEncoder)


class CombinerSpec(_Strict):
    """Fuses the encoded features: concatenation followed by dense layers."""

    type: Literal["concat"] = "concat"
    hidden_units: List[int] = Field(default_factory=lambda: [32, 16])
    activation: Literal["relu", "gelu", "tanh", "selu", "swish"] = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, v: List[int]) -> List[int]:
        bad = [u for u in v if u < 1]
        if bad:
            raise ValueError(f"expected positive integers. Received: {bad}")
        return v


class HeadSpec(_Strict):
    """The task head: what is predicted and how."""

    type: Literal["classification", "regression"] = "classification"
    units: Optional[int] = Field(default=None, ge=1, le=65536, description="Width of an extra hidden layer.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class ModelSpec(_Strict):
    """Per-feature encoders, a combiner that fuses them, and a head."""

    encoders: Dict[str, EncoderSpec] = Field(
        default_factory=dict,
        description="Encoder per feature name, or per feature type (`numeric`, `categorical`) as a default.",
    )
    combiner: CombinerSpec = Field(default_factory=CombinerSpec)
    head: HeadSpec = Field(default_factory=HeadSpec)


class EarlyStoppingSpec(_Strict):
    monitor: str = "val_loss"
    patience: int = Field(default=3, ge=0)
    min_delta: float = Field(default=0.0, ge=0.0)


class FineTuneSpec(_Strict):
    """Phase 2 of transfer learning: unfreeze the top blocks of a pretrained backbone.

    Phase 1 (training.epochs at training.learning_rate) trains the head with the backbone
    frozen. Phase 2 unfreezes the top `unfreeze_blocks` residual blocks (BatchNorm stays in
    inference mode and frozen) and continues at the lower `learning_rate`.
    """

    epochs: int = Field(default=0, ge=0, le=100000)
    learning_rate: float = Field(default=1e-4, gt=0.0, le=10.0)
    unfreeze_blocks: int = Field(default=2, ge=1, le=1000)


class TrainingSpec(_Strict):
    epochs: Optional[int] = Field(default=20, ge=1, le=100000)
    steps_per_epoch: Optional[int] = Field(default=None, ge=1, description="Default: one pass over the train split.")
    batch_size: int = Field(default=32, ge=1, le=1_000_000)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=1e-2, gt=0.0, le=10.0)
    early_stopping: Optional[EarlyStoppingSpec] = None
    seed: int = 42
    mixed_precision: Literal["auto", "on", "off"] = "auto"
    jit_compile: bool = False
    fine_tune: Optional[FineTuneSpec] = None
    lr_schedule: Optional[Literal["constant", "linear_warmup_decay"]] = Field(
        default=None, description="Default: linear_warmup_decay for text encoders, constant otherwise.")
    warmup_fraction: float = Field(default=0.1, ge=0.0, lt=1.0, description="Share of the steps spent warming up.")
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0, description="adamw only; not on biases and norms.")


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


class ThresholdSpec(_Strict):
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


class EvaluationSpec(_Strict):
    metrics: List[str] = Field(default_factory=lambda: ["accuracy"])
    thresholds: Dict[str, ThresholdSpec] = Field(default_factory=dict)
    slices: List[List[str]] = Field(default_factory=list, description="Feature lists to slice metrics by.")


class ServingSpec(_Strict):
    model_name: str = "model"
    push_dir: str = "serving_models"

    @field_validator("model_name")
    @classmethod
    def _check_model_name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", v):
            raise ValueError(f"expected letters, digits, '_', '.' or '-'. Received: {v!r}")
        return v


class InferenceSpec(_Strict):
    """Optional BulkInferrer over the eval split with the blessed model."""

    enabled: bool = False


class RunnerSpec(_Strict):
    root: str = Field(default="lamina_runs", description="Run directory: pipeline root and ML Metadata live here.")
    enable_cache: bool = True
    beam_args: List[str] = Field(
        default_factory=lambda: ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    )


class ResourceSpec(_Strict):
    """What one component's pod asks for: CPU cores, memory, and GPUs."""

    cpu: Optional[float] = Field(default=None, gt=0, le=1024, description="vCPUs, e.g. 4 or 0.5.")
    memory: Optional[str] = Field(default=None, description="e.g. '16G' or '512M'.")
    gpu: int = Field(default=0, ge=0, le=16, description="accelerators (nvidia.com/gpu).")
    accelerator: str = Field(default="nvidia.com/gpu", description="accelerator type, e.g. 'NVIDIA_TESLA_T4' "
                             "on Vertex AI, 'nvidia.com/gpu' on Kubeflow Pipelines.")

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.match(r"^\d+(\.\d+)?[KMGT]i?$", v):
            raise ValueError(f"expected a number and a unit K, M, G or T (optionally Ki, Mi, Gi, Ti), e.g. '16G'. "
                             f"Received: {v!r}")
        return v


BEAM_RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
REMOTE_SCHEMES = ("gs://", "s3://", "minio://", "hdfs://")


class BeamSpec(_Strict):
    """The Beam runner of the data components (ExampleGen, StatisticsGen, Transform, Evaluator...)."""

    runner: Literal[BEAM_RUNNERS] = "DirectRunner"
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "multi_processing"
    direct_num_workers: int = Field(default=0, ge=0, le=1024, description="DirectRunner: 0 = one per CPU.")
    options: Dict[str, Union[str, int, float, bool]] = Field(
        default_factory=dict, description="Runner options without the dashes: project, region, temp_location, "
                                          "flink_master, spark_master_url, ...")

    def args(self) -> List[str]:
        out = [f"--runner={self.runner}"]
        if self.runner == "DirectRunner":
            out += [f"--direct_running_mode={self.direct_running_mode}",
                    f"--direct_num_workers={self.direct_num_workers}"]
        for key, value in sorted(self.options.items()):
            out.append(f"--{key}" if value is True else f"--{key}={value}")
        return out


class KubeflowSpec(_Strict):
    """Where and how the pipeline runs on Kubeflow Pipelines 2.x or Vertex AI Pipelines.

    `pipeline_root` and `push_dir` must be shared storage every pod can reach: gs://, s3://,
    minio://, hdfs://, or a path under `volume_mount` (a PVC the cluster mounts into each pod).
    """

    image: str = Field(description="The container image every component runs in, with its tag.")
    pipeline_root: str
    push_dir: Optional[str] = Field(default=None, description="Where Pusher writes; default <pipeline_root>/"
                                                              "serving_models.")
    volume_mount: Optional[str] = Field(default=None, description="Mount path of a shared PVC, e.g. /mnt/lamina.")
    resources: Dict[str, ResourceSpec] = Field(
        default_factory=dict, description="Per component id (Trainer, Transform, ...) or 'default'.")
    beam: BeamSpec = Field(default_factory=BeamSpec)
    schedule: Optional[str] = Field(default=None, description="A cron expression for a recurring run, "
                                                              "e.g. '0 0 3 * * *' (KFP cron has seconds).")

    @field_validator("image")
    @classmethod
    def _check_image(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9._/-]*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$", v) or (
                ":" not in v.rsplit("/", 1)[-1] and "@" not in v):
            raise ValueError(f"expected an image reference with a tag or digest, e.g. "
                             f"'gcr.io/project/lamina:0.1.0'. Received: {v!r}")
        return v

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and len(v.split()) not in (5, 6):
            raise ValueError(f"expected a cron expression of 5 or 6 fields (KFP: seconds minutes hours day "
                             f"month weekday). Received: {v!r}")
        return v

    def shared(self, path: str) -> bool:
        """Whether every pod can reach `path`."""
        if path.startswith(REMOTE_SCHEMES):
            return True
        mount = (self.volume_mount or "").rstrip("/")
        return bool(mount) and (path == mount or path.startswith(mount + "/"))


class Spec(_Strict):
    """A whole Lamina job: data, split, model, training, evaluation, serving and runner."""

    name: str = "lamina"
    data: DataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    inference: InferenceSpec = Field(default_factory=InferenceSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    kubeflow: Optional[KubeflowSpec] = None
    # Directory that relative paths are resolved against (the spec file's folder).
    base_dir: Optional[str] = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _check_pipeline_name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", v):
            raise ValueError(f"expected letters, digits, '_' or '-'. Received: {v!r}")
        return v

    # -- cross-field rules: small named checks, each with a readable message --------------

    @model_validator(mode="after")
    def _cross_checks(self) -> "Spec":
        problems = []
        for check in (_check_label_not_feature, _check_supported_types, _check_data_format, _check_metrics,
                      _check_thresholds, _check_slices, _check_encoders, _check_fine_tune, _check_kubeflow):
            problems.extend(check(self))
        if problems:
            raise _CrossFieldError(problems)
        return self

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: Union[str, os.PathLike]) -> "Spec":
        return load_spec(path)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], base_dir: Optional[str] = None, source: Optional[str] = None) -> "Spec":
        if not isinstance(data, dict):
            raise SpecError([f"<root>: expected a mapping of keys to values. Received: {type(data).__name__}"], source)
        try:
            spec = cls(**data)
        except SpecError as e:
            raise SpecError(e.problems, source) from None
        spec.base_dir = os.path.abspath(base_dir or os.getcwd())
        return spec

    # -- resolved paths --------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        path = os.path.expanduser(path)
        if os.path.isabs(path) or "://" in path:
            return path
        return os.path.abspath(os.path.join(self.base_dir or os.getcwd(), path))

    @property
    def run_dir(self) -> str:
        return os.path.join(self.resolve(self.runner.root), self.name)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.run_dir, "pipeline")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.run_dir, "metadata.sqlite")

    @property
    def report_path(self) -> str:
        return os.path.join(self.run_dir, "report.html")

    @property
    def push_dir(self) -> str:
        return self.resolve(self.serving.push_dir)

    @property
    def task(self) -> str:
        return self.model.head.type

    def metric_names(self) -> Dict[str, str]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS

    def to_json(self) -> str:
        """Serialized form handed to Transform and Trainer through `custom_config`."""
        d = self.model_dump(mode="json")
        d["base_dir"] = self.base_dir
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        d = json.loads(text)
        base_dir = d.pop("base_dir", None)
        return cls.from_dict(d, base_dir=base_dir)

    def image_encoder(self, name: str) -> "ImageEncoder":
        """The encoder of image feature `name` (by name, else the `image` default)."""
        cfg = self.model.encoders.get(name) or self.model.encoders.get("image")
        return cfg if isinstance(cfg, ImageEncoder) else ImageEncoder()

    def text_encoder(self, name: str) -> Union["BertEncoder", "TransformerEncoder"]:
        """The encoder of text feature `name` (by name, else the `text` default, else a small Transformer)."""
        cfg = self.model.encoders.get(name) or self.model.encoders.get("text")
        return cfg if isinstance(cfg, TEXT_ENCODERS) else TransformerEncoder()

    @property
    def has_text(self) -> bool:
        return any(f.type == FeatureType.TEXT for f in self.data.features or [])

    @property
    def lr_schedule(self) -> str:
        if self.training.lr_schedule:
            return self.training.lr_schedule
        return "linear_warmup_decay" if self.has_text else "constant"

    def check_data_exists(self) -> List[str]:
        """Files the data path matches; raises SpecError naming the path when none do."""
        pattern = self.resolve(self.data.path)
        if self.data.format == "image_folder":
            if not os.path.isdir(pattern):
                raise SpecError([f"data.path: {pattern!r} is not a folder; format image_folder expects a folder "
                                 f"with one subfolder of images per class."])
            return [pattern]
        if self.data.format == "image_csv" and not os.path.isfile(pattern):
            raise SpecError([f"data.path: no file {pattern!r}; format image_csv expects a CSV with an image path "
                             f"column and a label column."])
        files = sorted(glob.glob(pattern))
        if not files:
            raise SpecError([f"data.path: no file matches {pattern!r}."])
        dirs = {os.path.dirname(f) for f in files}
        if len(dirs) > 1:
            raise SpecError([f"data.path: the matched files must sit in one folder. Received folders: {sorted(dirs)}"])
        return files


class _CrossFieldError(ValueError):
    def __init__(self, problems: List[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _check_label_not_feature(spec: Spec) -> List[str]:
    if spec.data.features and spec.data.label in spec.data.feature_types:
        return [f"data.features: the label {spec.data.label!r} must not also be an input feature."]
    return []


def _check_supported_types(spec: Spec) -> List[str]:
    problems = []
    for i, f in enumerate(spec.data.features or []):
        if f.type is not None and f.type not in SUPPORTED_FEATURE_TYPES:
            allowed = ", ".join(repr(t.value) for t in SUPPORTED_FEATURE_TYPES)
            problems.append(
                f"data.features.{i}.type: feature {f.name!r} has type {f.type.value!r}, which this release "
                f"cannot train on yet; expected one of: {allowed}."
            )
    return problems


def _check_data_format(spec: Spec) -> List[str]:
    data = spec.data
    images = [f.name for f in data.features or [] if f.type == FeatureType.IMAGE]
    if not data.is_images:
        return [f"data.features: image feature {n!r} needs data.format 'image_folder' or 'image_csv'; "
                f"format 'csv' reads tabular columns only." for n in images]
    problems = []
    others = [f.name for f in data.features or [] if f.type != FeatureType.IMAGE]
    if len(images) != 1 or others:
        problems.append(f"data.features: format {data.format!r} expects exactly one feature, of type 'image'. "
                        f"Received: {data.feature_types}")
    if SOURCE_PATH_KEY in (data.label, *data.feature_types):
        problems.append(f"data: {SOURCE_PATH_KEY!r} is the column that holds each image's path; "
                        f"name the label and features otherwise.")
    return problems


def _check_fine_tune(spec: Spec) -> List[str]:
    problems = []
    for key, enc in spec.model.encoders.items():
        if not isinstance(enc, ImageEncoder):
            continue
        if enc.architecture == "resnet_small" and enc.weights == "imagenet":
            problems.append(f"model.encoders.{key}.weights: 'resnet_small' has no ImageNet weights; expected "
                            f"'random', a weights file or a Lamina model directory.")
        if enc.architecture != "resnet_small" and min(enc.image_size) < 32:
            problems.append(f"model.encoders.{key}.image_size: {enc.architecture} expects images of at least "
                            f"32x32. Received: {enc.image_size}")
    image_features = [f.name for f in spec.data.features or [] if f.type == FeatureType.IMAGE]
    if spec.training.fine_tune and spec.training.fine_tune.epochs:
        if not any(spec.image_encoder(n).pretrained for n in image_features):
            problems.append("training.fine_tune: needs an image encoder with pretrained weights; with "
                            "weights: random the whole backbone trains from the start.")
    return problems


GPU_COMPONENTS = ("Trainer", "Tuner")


def _check_kubeflow(spec: Spec) -> List[str]:
    kf = spec.kubeflow
    if kf is None:
        return []
    problems = []
    for key in ("pipeline_root", "push_dir"):
        path = getattr(kf, key)
        if path is not None and not kf.shared(path):
            problems.append(
                f"kubeflow.{key}: {path!r} is a local path; on Kubeflow each component runs in its own pod, "
                f"which cannot see this machine's disk. Use {', '.join(REMOTE_SCHEMES)} storage"
                + (f" or a path under kubeflow.volume_mount ({kf.volume_mount!r})." if kf.volume_mount
                   else ", or set kubeflow.volume_mount to a shared volume's mount path."))
    for name, res in kf.resources.items():
        if res.gpu and name not in GPU_COMPONENTS:
            problems.append(f"kubeflow.resources.{name}.gpu: only {' and '.join(GPU_COMPONENTS)} use GPUs; "
                            f"the data components run on Beam workers.")
    return problems


def _check_metrics(spec: Spec) -> List[str]:
    allowed = spec.metric_names()
    problems = []
    for i, m in enumerate(spec.evaluation.metrics):
        if m not in allowed:
            problems.append(
                f"evaluation.metrics.{i}: Received {m!r}; for a {spec.task} head {_one_of(m, list(allowed))}"
            )
    return problems


def _check_thresholds(spec: Spec) -> List[str]:
    problems = []
    for m in spec.evaluation.thresholds:
        if m not in spec.evaluation.metrics:
            problems.append(
                f"evaluation.thresholds.{m}: no such metric in evaluation.metrics; "
                f"{_one_of(m, spec.evaluation.metrics)}"
            )
    return problems


def _check_slices(spec: Spec) -> List[str]:
    if not spec.data.features:
        return []  # feature names are only known from the data; checked when the pipeline runs.
    known = list(spec.data.feature_types) + [spec.data.label]
    problems = []
    for i, keys in enumerate(spec.evaluation.slices):
        for k in keys:
            if k not in known:
                problems.append(
                    f"evaluation.slices.{i}: unknown feature {k!r}; {_one_of(k, known)}"
                )
    return problems


# The encoder types each feature kind accepts, as the spec names them.
ENCODERS_BY_KIND = {
    "numeric": ((NumericEncoder,), "one of: 'normalized', 'dense'"),
    "categorical": ((CategoricalEncoder,), "one of: 'embedding', 'one_hot'"),
    "image": ((ImageEncoder,), "'resnet'"),
    "text": (TEXT_ENCODERS, "one of: 'bert', 'transformer'"),
}


def _check_encoders(spec: Spec) -> List[str]:
    types = spec.data.feature_types
    problems = []
    kinds = tuple(ENCODERS_BY_KIND)
    for key, enc in spec.model.encoders.items():
        wanted = types.get(key) or (key if key in kinds else None)
        if key not in types and key not in kinds:
            if spec.data.features is None:
                continue  # features come from the data; checked when the pipeline runs.
            choices = list(types) + list(kinds)
            problems.append(
                f"model.encoders.{key}: not a feature name or feature type; expected one of: "
                f"{', '.join(repr(c) for c in choices)}.{_did_you_mean(key, choices)}"
            )
            continue
        if wanted in ENCODERS_BY_KIND:
            classes, names = ENCODERS_BY_KIND[wanted]
            if not isinstance(enc, classes):
                article = "an" if wanted == "image" else "a"
                problems.append(f"model.encoders.{key}.type: Received {enc.type!r}; {article} {wanted} feature "
                                f"expects {names}.")
        if isinstance(enc, BertEncoder) and enc.freeze_epochs and enc.freeze_epochs >= (spec.training.epochs or 1):
            problems.append(f"model.encoders.{key}.freeze_epochs: {enc.freeze_epochs} leaves no epoch to fine-tune "
                            f"the encoder; training.epochs is {spec.training.epochs}.")
    return problems


# -- error formatting --------------------------------------------------------------------------


def _one_of(word: str, choices: List[str]) -> str:
    """"expected one of: 'a', 'b'." plus a suggestion for a near miss."""
    return f"expected one of: {', '.join(repr(c) for c in choices)}.{_did_you_mean(word, list(choices))}"


def _did_you_mean(word: str, choices: List[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _strip_tags(loc: tuple) -> tuple:
    """Drops the union tags pydantic puts in locations (`encoders.island.categorical.dim`)."""
    out = []
    for i, p in enumerate(loc):
        if isinstance(p, str) and p.startswith("function-"):
            continue
        if p in _TAGS and i >= 2 and loc[i - 2] == "encoders":
            continue
        out.append(p)
    return tuple(out)


def _model_at(root: type, loc: tuple) -> Optional[type]:
    """The pydantic model class that owns the location `loc` (used to list allowed keys)."""
    current: Any = root
    for i, part in enumerate(loc):
        if part in _TAGS and i >= 2 and loc[i - 2] == "encoders":
            current = _TAGS[part]
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        else:
            # inside a Dict[str, X] or List[X]: the key/index selects an X
            args = [a for a in typing.get_args(current) if a is not str]
            current = args[-1] if args else None
        current = _unwrap_model(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap_model(annotation: Any) -> Any:
    """Optional[X] -> X; leaves Dict/List alone so their keys can be walked."""
    origin = typing.get_origin(annotation)
    if origin is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap_model(args[0])
    if origin is Annotated:
        return _unwrap_model(typing.get_args(annotation)[0])
    return annotation


def _loc_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _format_validation_error(err: ValidationError, root: type) -> List[str]:
    problems = []
    for e in err.errors(include_url=False):
        raw_loc = tuple(e["loc"])
        loc = _strip_tags(raw_loc)
        path = _loc_path(loc)
        kind = e["type"]
        value = e.get("input")
        ctx = e.get("ctx") or {}
        if kind == "extra_forbidden":
            parent = _model_at(root, raw_loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            allowed = [a for a in allowed if a != "base_dir"]
            key = str(loc[-1])
            msg = f"{path}: unknown key.{_did_you_mean(key, allowed)}"
            if allowed:
                msg += f" Allowed keys: {', '.join(allowed)}."
            problems.append(msg)
        elif kind == "encoder_type":
            allowed = sorted(_ENCODER_TYPES)
            t = value.get("type") if isinstance(value, dict) else value
            if isinstance(value, dict) and t is None:
                problems.append(f"{path}.type: required key is missing; expected one of: {', '.join(repr(a) for a in allowed)}.")
            else:
                problems.append(
                    f"{path}.type: Received {t!r}; {_one_of(str(t), allowed)}"
                )
        elif kind == "missing":
            problems.append(f"{path}: required key is missing.")
        elif kind == "literal_error":
            expected = ctx.get("expected", "")
            choices = re.findall(r"'([^']*)'", str(expected))
            problems.append(
                f"{path}: Received {value!r}; expected one of: {expected}.{_did_you_mean(str(value), choices)}"
            )
        elif kind == "enum":
            expected = ctx.get("expected", "")
            choices = re.findall(r"'([^']*)'", str(expected))
            problems.append(
                f"{path}: Received {value!r}; expected one of: {expected}.{_did_you_mean(str(value), choices)}"
            )
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
            bound = ctx.get({"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}[kind])
            noun = "an integer" if isinstance(bound, int) and not isinstance(bound, bool) else "a number"
            problems.append(f"{path}: Received {value!r}; expected {noun} {op} {bound}.")
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            problems.append(f"{path}: Received {value!r}; expected an integer.")
        elif kind in ("float_type", "float_parsing"):
            problems.append(f"{path}: Received {value!r}; expected a number.")
        elif kind in ("bool_type", "bool_parsing"):
            problems.append(f"{path}: Received {value!r}; expected true or false.")
        elif kind in ("string_type",):
            problems.append(f"{path}: Received {value!r}; expected a string.")
        elif kind in ("list_type",):
            problems.append(f"{path}: Received {value!r}; expected a list.")
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            problems.append(f"{path}: Received {value!r}; expected a mapping of keys to values.")
        elif kind == "value_error":
            msg = str(ctx.get("error", e["msg"]))
            if isinstance(ctx.get("error"), _CrossFieldError):
                problems.extend(ctx["error"].problems)
            else:
                problems.append(f"{path}: {msg}")
        else:
            problems.append(f"{path}: {e['msg']}. Received: {value!r}")
    return problems


def load_spec(path: Union[str, os.PathLike]) -> Spec:
    """Reads and validates a YAML spec; relative paths in it resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"spec file not found: {str(path)!r}"])
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"not valid YAML{where}: {getattr(e, 'problem', e)}"], str(path)) from None
    return Spec.from_dict(data, base_dir=str(path.parent.resolve()), source=str(path))
