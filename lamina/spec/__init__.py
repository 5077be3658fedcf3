"""The one typed spec through which all configuration enters Lamina.

A spec is YAML (or the same structure built in Python) validated by pydantic with unknown keys
forbidden. Errors are one line per problem naming the key path, the bad value and what is
allowed, e.g.::

    model.head.units: Received -3; expected an integer >= 1.
    model.hed: unknown key. Did you mean 'head'? Allowed keys: combiner, encoders, head.

Part of the core (docs/architecture.md): it imports only `lamina.constants` and `lamina.storage`,
and no TensorFlow, so every room may use it and a spec error is reported in a second. One module per section
(`data`, `encoders`, `model`, `training`, `evaluation`, `serving`, `runner`, `kubeflow`), the
cross-field rules in `checks`, the error lines in `errors`, YAML in `loading`.

Example:
    >>> spec = load_spec("examples/penguins/spec.yaml")
    >>> spec.data.label
    'species'
"""

from lamina.spec.errors import SpecError
from lamina.spec.data import (CSV_DELIMITERS, DATE_FORMATS, SEQUENCE_SEPARATORS, DataSpec, FeatureSpec, FeatureType,
                              AudioIngestSpec, FileIngestSpec, ImageIngestSpec, SplitSpec)
from lamina.spec.encoders import (CALENDAR_PARTS, ENCODERS, AudioAugmentationSpec, AudioEncoder, AugmentationSpec, BertEncoder, CalendarEncoder,
                                  CategoricalEncoder, EncoderConfig, ImageEncoder, NumericEncoder, SequenceEncoder,
                                  TextEncoderConfig, TransformerEncoder, default_encoder, encoder_names, encoders_for)
from lamina.spec.forecast import DEFAULT_SEASONALITY, FORECAST_BASELINES, FREQUENCIES, ForecastSpec
from lamina.spec.evaluation import (CLASSIFICATION_METRICS, FORECAST_METRICS, LAMINA_TFMA_METRICS, LOWER_IS_BETTER,
                                    POSITIVE_CLASS_METRICS, REGRESSION_METRICS, TFMA_OUTPUT_NAMES, BaselineSpec,
                                    EvaluationSpec, FairnessSpec, SliceThresholdSpec, ThresholdSpec, higher_is_better)
from lamina.spec.tuning import ENGINES, TUNABLE, ParamSpec, TuningSpec
from lamina.spec.export import TFLITE_FORMS, ExplainSpec, ExportSpec
from lamina.spec.kubeflow import REMOTE_SCHEMES, BeamSpec, KubeflowSpec, ResourceSpec, VertexTrainingSpec
from lamina.spec.model import CombinerSpec, HeadSpec, ModelSpec
from lamina.spec.root import Spec, load_spec
from lamina.spec.runner import RunnerSpec
from lamina.spec.serving import InferenceSpec, ServingSpec
from lamina.spec.training import DistributionSpec, EarlyStoppingSpec, FineTuneSpec, TensorBoardSpec, TrainingSpec

__all__ = [
    "DEFAULT_SEASONALITY", "FORECAST_BASELINES", "FORECAST_METRICS", "FREQUENCIES", "ForecastSpec",
    "AudioAugmentationSpec", "AudioEncoder", "AudioIngestSpec", "FileIngestSpec",
    "AugmentationSpec", "BaselineSpec", "BeamSpec", "ENGINES", "FairnessSpec", "LAMINA_TFMA_METRICS",
    "POSITIVE_CLASS_METRICS", "ParamSpec", "SliceThresholdSpec", "TFMA_OUTPUT_NAMES", "TUNABLE", "TuningSpec",
    "higher_is_better", "BertEncoder", "CALENDAR_PARTS", "CLASSIFICATION_METRICS", "CSV_DELIMITERS",
    "CalendarEncoder", "CategoricalEncoder", "CombinerSpec", "DATE_FORMATS", "DataSpec", "ENCODERS", "EarlyStoppingSpec", "EncoderConfig", "EvaluationSpec", "ExplainSpec", "ExportSpec", "FeatureSpec", "FeatureType",
    "FineTuneSpec", "HeadSpec", "ImageEncoder", "ImageIngestSpec",
    "InferenceSpec", "KubeflowSpec", "LOWER_IS_BETTER", "ModelSpec", "NumericEncoder", "REGRESSION_METRICS",
    "REMOTE_SCHEMES", "ResourceSpec", "RunnerSpec", "SEQUENCE_SEPARATORS", "SequenceEncoder", "ServingSpec", "Spec", "SpecError",
    "DistributionSpec", "TensorBoardSpec", "SplitSpec", "TFLITE_FORMS", "TextEncoderConfig", "ThresholdSpec", "TrainingSpec", "TransformerEncoder", "VertexTrainingSpec", "default_encoder",
    "encoder_names", "encoders_for", "load_spec",
]
