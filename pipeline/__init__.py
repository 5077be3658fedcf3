"""Lamina's pipeline package: the spec, `create_pipeline`, the runners and the CLI.

Python API, mirroring the YAML spec:

    from pipeline import Spec, DataSpec, TrainingSpec, run_pipeline
    spec = Spec(name="penguins", data=DataSpec(path="penguins.csv", label="species"),
                training=TrainingSpec(epochs=10))
    result = run_pipeline(spec)
"""

import os

# TensorFlow 2.16's oneDNN CPU kernels corrupt memory ("double free or corruption", then SIGABRT)
# while training a small ResNet on some AVX-512 CPUs (seen on AMD EPYC with AVX512_BF16); TF's
# default Eigen kernels do not. It has to be set before TensorFlow loads, so every Lamina package
# imports this one first. `export TF_ENABLE_ONEDNN_OPTS=1` opts back in.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from pipeline.spec import (AugmentationSpec, BertEncoder, CategoricalEncoder, CombinerSpec, DataSpec, EarlyStoppingSpec,
                           EvaluationSpec, FeatureSpec, FineTuneSpec, HeadSpec, ImageEncoder, ImageIngestSpec,
                           InferenceSpec, ModelSpec, NumericEncoder, RunnerSpec, ServingSpec, Spec, SpecError,
                           SplitSpec, ThresholdSpec, TrainingSpec, TransformerEncoder, load_spec)  # noqa: E402


def create_pipeline(spec):
    """See pipeline.pipeline.create_pipeline (imported lazily: TFX takes seconds to import)."""
    from pipeline.pipeline import create_pipeline as _create

    return _create(spec)


def run_pipeline(spec, **kwargs):
    """See pipeline.local_runner.run_pipeline."""
    from pipeline.local_runner import run_pipeline as _run

    return _run(spec, **kwargs)


__all__ = [
    "AugmentationSpec", "BertEncoder", "TransformerEncoder", "FineTuneSpec", "ImageEncoder", "ImageIngestSpec",
    "CategoricalEncoder", "CombinerSpec", "DataSpec", "EarlyStoppingSpec", "EvaluationSpec", "FeatureSpec",
    "HeadSpec", "InferenceSpec", "ModelSpec", "NumericEncoder", "RunnerSpec", "ServingSpec", "Spec", "SpecError",
    "SplitSpec", "ThresholdSpec", "TrainingSpec", "create_pipeline", "load_spec", "run_pipeline",
]
