"""Lamina: a YAML spec (or a few lines of Python) becomes a TFX pipeline, a pushed SavedModel
and a server that speaks TensorFlow Serving's protocol.

Every Lamina module has one import name under `lamina.`; the folders of the checkout map onto it
(pyproject.toml's `package-dir`): `pipeline/` is `lamina.pipeline`, `models/` is `lamina.models`,
`components/` is `lamina.components`, `serving/` is `lamina.serving`. This folder holds the core
that every room uses and that uses no room: the spec (`lamina.spec`), `constants`, the cell
grammar (`cells`), the table row sources (`tables`), a user's file as rows (`rows`),
`image_headers`, `storage` and `progress` (docs/architecture.md). So a user's own `models`
or `pipeline` package never shadows Lamina's, and the module paths handed to TFX
(`lamina.models.trainer.run_fn`) mean the same in every process.

Python API (the same as the YAML spec):

    from lamina import DataSpec, Spec, TrainingSpec, run_pipeline
    spec = Spec(name="penguins", data=DataSpec(path="penguins.csv", label="species"),
                training=TrainingSpec(epochs=10))
    result = run_pipeline(spec)
"""

import os

# TensorFlow defaults, in the one place that runs before any Lamina module (and so, in Lamina's
# own processes, before TensorFlow) loads. TF 2.16's oneDNN CPU kernels corrupt memory ("double
# free or corruption", then SIGABRT) while training a small ResNet on some AVX-512 CPUs (seen on
# AMD EPYC with AVX512_BF16); TF's default Eigen kernels do not. `export TF_ENABLE_ONEDNN_OPTS=1`
# opts back in. docs/stack.md has the details.
TENSORFLOW_DEFAULTS = {"TF_ENABLE_ONEDNN_OPTS": "0"}
for _key, _value in TENSORFLOW_DEFAULTS.items():
    os.environ.setdefault(_key, _value)

__version__ = "0.1.0"

# The public API lives in lamina.pipeline; it is imported on first use so that
# `import lamina.serving...` does not pay for the spec package.
_PIPELINE_API = ("create_pipeline", "load_spec", "run_pipeline", "Spec", "SpecError", "DataSpec", "FeatureSpec",
                 "ModelSpec", "TrainingSpec", "EvaluationSpec", "ServingSpec", "RunnerSpec")


# Lamina's own artifact types, by the names ML Metadata and Kubeflow know them by ("lamina.Explanations"):
# Kubeflow's TFX entrypoint imports an artifact's class from that name, module and class.
_ARTIFACT_TYPES = {"Explanations": "lamina.components.explainer", "TFLiteModels": "lamina.components.tflite_export",
                   "Baselines": "lamina.components.baselines"}


def __getattr__(name):
    if name in _PIPELINE_API:
        from lamina import pipeline

        return getattr(pipeline, name)
    if name in _ARTIFACT_TYPES:
        import importlib

        return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
    raise AttributeError(f"module 'lamina' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PIPELINE_API))


__all__ = list(_PIPELINE_API)
