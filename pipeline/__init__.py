"""lamina.pipeline: `create_pipeline` and the runners (here), reading finished runs (`runs/`) and the CLI
(`cli/`). The spec's classes are re-exported for the Python API; they live in `lamina.spec`.

Python API, mirroring the YAML spec:

    from lamina.pipeline import Spec, DataSpec, TrainingSpec, run_pipeline
    spec = Spec(name="penguins", data=DataSpec(path="penguins.csv", label="species"),
                training=TrainingSpec(epochs=10))
    result = run_pipeline(spec)

Importing this package loads only the spec (pydantic); TFX loads when a pipeline is built.
"""

from lamina.spec import (AugmentationSpec, BertEncoder, CategoricalEncoder, CombinerSpec, DataSpec, EarlyStoppingSpec,
                         EvaluationSpec, FeatureSpec, FineTuneSpec, HeadSpec, ImageEncoder, ImageIngestSpec,
                         InferenceSpec, ModelSpec, NumericEncoder, RunnerSpec, ServingSpec, Spec, SpecError,
                         SplitSpec, ThresholdSpec, TrainingSpec, TransformerEncoder, load_spec)


def create_pipeline(spec):
    """See lamina.pipeline.pipeline.create_pipeline (imported lazily: TFX takes seconds to import)."""
    from lamina.pipeline.pipeline import create_pipeline as _create

    return _create(spec)


def run_pipeline(spec, **kwargs):
    """See lamina.pipeline.local_runner.run_pipeline."""
    from lamina.pipeline.local_runner import run_pipeline as _run

    return _run(spec, **kwargs)


__all__ = [
    "AugmentationSpec", "BertEncoder", "CategoricalEncoder", "CombinerSpec", "DataSpec", "EarlyStoppingSpec",
    "EvaluationSpec", "FeatureSpec", "FineTuneSpec", "HeadSpec", "ImageEncoder", "ImageIngestSpec",
    "InferenceSpec", "ModelSpec", "NumericEncoder", "RunnerSpec", "ServingSpec", "Spec", "SpecError", "SplitSpec",
    "ThresholdSpec", "TrainingSpec", "TransformerEncoder", "create_pipeline", "load_spec", "run_pipeline",
]
