"""The whole job: the `Spec` that every section hangs from, and the paths it resolves."""

import json
import os
import re
from typing import Any, Dict, List, Optional, Union

from pydantic import Field, field_validator, model_validator

from lamina import storage
from lamina.constants import METADATA_FILE
from lamina.spec.base import StrictModel
from lamina.spec.errors import CrossFieldError, SpecError
from lamina.spec.checks import cross_field_problems
from lamina.spec.data import DataSpec, FeatureType, SplitSpec
from lamina.spec.encoders import AudioEncoder, EncoderConfig, ImageEncoder, TextEncoderConfig, default_encoder, encoder_names
from lamina.spec.export import ExplainSpec, ExportSpec
from lamina.spec.evaluation import (CLASSIFICATION_METRICS, FORECAST_METRICS, REGRESSION_METRICS, EvaluationSpec,
                                    higher_is_better)
from lamina.spec.forecast import ForecastSpec
from lamina.spec.kubeflow import KubeflowSpec
from lamina.spec.loading import read_spec_file
from lamina.spec.model import ModelSpec
from lamina.spec.runner import RunnerSpec
from lamina.spec.serving import InferenceSpec, ServingSpec
from lamina.spec.training import TrainingSpec
from lamina.spec.tuning import TuningSpec


class Spec(StrictModel):
    """A whole Lamina job: data, split, model, training, evaluation, serving and runner."""

    name: str = "lamina"
    data: DataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    tuning: Optional[TuningSpec] = None
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    inference: InferenceSpec = Field(default_factory=InferenceSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    explain: ExplainSpec = Field(default_factory=ExplainSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    kubeflow: Optional[KubeflowSpec] = None
    forecast: Optional[ForecastSpec] = None
    # Directory that relative paths are resolved against (the spec file's folder).
    base_dir: Optional[str] = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _check_pipeline_name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", v):
            raise ValueError(f"expected letters, digits, '_' or '-'. Received: {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _task_shorthand(cls, data: Any) -> Any:
        """`task: forecast` (or classification, regression) is `model.head.type`; a forecast section implies it,
        and a forecast is scored by forecast metrics unless the spec names others, and must beat the better of
        its naive baselines (seasonal naive, last value) unless `evaluation.baseline.must_beat` says otherwise."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        task = data.pop("task", None)
        model, head_type = data.get("model"), None
        if isinstance(model, dict) and isinstance(model.get("head"), dict):
            head_type = model["head"].get("type")
        if task is None and (isinstance(data.get("forecast"), dict) or head_type == "forecast"):
            task = "forecast"
        if task is not None and isinstance(model or {}, dict) and isinstance((model or {}).get("head") or {}, dict):
            model = dict(model or {})
            head = dict(model.get("head") or {})
            if head.get("type", task) != task:
                raise ValueError(f"task is {task!r} but model.head.type is {head['type']!r}; set one of them.")
            head["type"] = task
            model["head"] = head
            data["model"] = model
            if task == "forecast" and isinstance(data.get("evaluation") or {}, dict):
                evaluation = dict(data.get("evaluation") or {})
                evaluation.setdefault("metrics", ["mase", "mae", "rmse", "smape"])
                if isinstance(evaluation.get("baseline") or {}, dict):
                    baseline = dict(evaluation.get("baseline") or {})
                    baseline.setdefault("must_beat", "best")
                    evaluation["baseline"] = baseline
                data["evaluation"] = evaluation
        return data

    # -- cross-field rules: small named checks, each with a readable message --------------

    @model_validator(mode="after")
    def _cross_checks(self) -> "Spec":
        problems = cross_field_problems(self)
        if problems:
            raise CrossFieldError(problems)
        return self

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: Union[str, os.PathLike]) -> "Spec":
        """Reads and validates a YAML spec; relative paths in it resolve against its folder."""
        data, base_dir = read_spec_file(path)
        return cls.from_dict(data, base_dir=base_dir, source=str(path))

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
        if self.runner.pipeline_root:
            return os.path.join(self.resolve(self.runner.pipeline_root), self.name)
        return os.path.join(self.run_dir, "pipeline")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.run_dir, METADATA_FILE)

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
        return {"classification": CLASSIFICATION_METRICS, "forecast": FORECAST_METRICS}.get(self.task,
                                                                                            REGRESSION_METRICS)

    @property
    def has_tabular_features(self) -> bool:
        """Whether any input is a number, a category or a date (features inferred from a table count too)."""
        if self.data.is_files or self.task == "forecast":
            return False
        if not self.data.features:
            return True
        return any(f.type in (FeatureType.NUMERIC, FeatureType.CATEGORICAL, FeatureType.DATE)
                   for f in self.data.features)

    @property
    def tuning_objective(self) -> Optional[tuple]:
        """(metric, 'max' or 'min') the Tuner optimizes, or None without tuning."""
        if self.tuning is None:
            return None
        metric = self.tuning.objective or self.evaluation.metrics[0]
        return metric, self.tuning.direction or ("max" if higher_is_better(metric) else "min")

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

    def encoder_for(self, name: str, feature_type: Union[FeatureType, str]) -> EncoderConfig:
        """The encoder of feature `name`: by its name, else by its type, else the type's default.

        Raises ValueError when the encoder named for `name` encodes another feature type (the
        checks catch that at validation when the feature's type is declared; an inferred type is
        only known here).
        """
        feature_type = FeatureType(feature_type)
        cfg = self.model.encoders.get(name)
        if cfg is not None and not cfg.encodes(feature_type):
            allowed = ", ".join(repr(n) for n in encoder_names(feature_type))
            raise ValueError(f"model.encoders.{name}.type: Received {cfg.type!r}; feature {name!r} is "
                             f"{feature_type.value} in the data, and a {feature_type.value} feature expects "
                             f"one of: {allowed}.")
        by_type = self.model.encoders.get(feature_type.value)
        return cfg or (by_type if by_type is not None and by_type.encodes(feature_type) else None) \
            or default_encoder(feature_type)

    def image_encoder(self, name: str) -> ImageEncoder:
        """The encoder of image feature `name`; for an audio feature, the image encoder its audio_resnet
        sends the spectrogram through."""
        if self.data.feature_types.get(name) == FeatureType.AUDIO.value:
            return self.audio_encoder(name).image_encoder()
        return self.encoder_for(name, FeatureType.IMAGE)

    def audio_encoder(self, name: str) -> AudioEncoder:
        """The encoder of audio feature `name`."""
        return self.encoder_for(name, FeatureType.AUDIO)

    def text_encoder(self, name: str) -> TextEncoderConfig:
        """The encoder of text feature `name` (a small Transformer unless the spec names one)."""
        return self.encoder_for(name, FeatureType.TEXT)

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
        try:
            return self._matched_data_files(pattern)
        except storage.UnsupportedFilesystem as e:
            raise SpecError([f"data.path: {e}"]) from None

    def _matched_data_files(self, pattern: str) -> List[str]:
        if self.data.format in ("image_folder", "audio_folder"):
            if not storage.isdir(pattern):
                kind = "images" if self.data.is_images else "audio files"
                raise SpecError([f"data.path: {pattern!r} is not a folder; format {self.data.format} expects a "
                                 f"folder with one subfolder of {kind} per class."])
            return [pattern]
        if self.data.format == "image_csv" and not storage.isfile(pattern):
            raise SpecError([f"data.path: no file {pattern!r}; format image_csv expects a CSV with an image path "
                             f"column and a label column."])
        files = storage.glob(pattern)
        if not files:
            raise SpecError([f"data.path: no file matches {pattern!r}."])
        dirs = {storage.parent(f) for f in files}
        if len(dirs) > 1:
            raise SpecError([f"data.path: the matched files must sit in one folder. Received folders: {sorted(dirs)}"])
        return files


def load_spec(path: Union[str, os.PathLike]) -> Spec:
    """Reads and validates a YAML spec; relative paths in it resolve against its folder.

    Example:
        >>> spec = load_spec("examples/penguins/spec.yaml")
    """
    return Spec.from_yaml(path)
