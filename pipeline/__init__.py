"""Lamina's pipeline package: the spec, `create_pipeline`, the runners and the CLI.

Python API, mirroring the YAML spec:

    from pipeline import Spec, DataSpec, TrainingSpec, run_pipeline
    spec = Spec(name="penguins", data=DataSpec(path="penguins.csv", label="species"),
                training=TrainingSpec(epochs=10))
    result = run_pipeline(spec)
"""

from pipeline.spec import (AugmentationSpec, CategoricalEncoder, CombinerSpec, DataSpec, EarlyStoppingSpec,
                           EvaluationSpec, FeatureSpec, FineTuneSpec, HeadSpec, ImageEncoder, ImageIngestSpec,
                           InferenceSpec, ModelSpec, NumericEncoder, RunnerSpec, ServingSpec, Spec, SpecError,
                           SplitSpec, ThresholdSpec, TrainingSpec, load_spec)


def create_pipeline(spec):
    """See pipeline.pipeline.create_pipeline (imported lazily: TFX takes seconds to import)."""
    from pipeline.pipeline import create_pipeline as _create

    return _create(spec)


def run_pipeline(spec, **kwargs):
    """See pipeline.local_runner.run_pipeline."""
    from pipeline.local_runner import run_pipeline as _run

    return _run(spec, **kwargs)


__all__ = [
    "AugmentationSpec", "FineTuneSpec", "ImageEncoder", "ImageIngestSpec",
    "CategoricalEncoder", "CombinerSpec", "DataSpec", "EarlyStoppingSpec", "EvaluationSpec", "FeatureSpec",
    "HeadSpec", "InferenceSpec", "ModelSpec", "NumericEncoder", "RunnerSpec", "ServingSpec", "Spec", "SpecError",
    "SplitSpec", "ThresholdSpec", "TrainingSpec", "create_pipeline", "load_spec", "run_pipeline",
]
