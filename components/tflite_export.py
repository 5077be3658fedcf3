"""TFLiteExporter: the blessed model as TFLite files, each measured on the eval split.

After the Evaluator: an unblessed model is not converted (the artifact then says so). For each
form the spec lists (`export.tflite`), the model is converted, run through the TFLite
interpreter on the eval split beside the Keras model, and written only when its metric is
within `export.max_metric_drop` of the Keras model's. The Pusher copies the written files,
`input_spec.json` and the vocabularies it names into the pushed version's
`assets.extra/lamina/tflite/` (TF Serving ignores that folder).
"""

import os
import sys
from typing import Optional

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, artifact_utils
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, TransformGraph


class TFLiteModels(artifact.Artifact):
    """A folder of .tflite files, their input spec and the measurements (tflite_report.json)."""

    TYPE_NAME = "lamina.TFLiteModels"  # importable as lamina.<Name>, as Kubeflow needs


def _split_files(examples, split: str):
    return [os.path.join(artifact_utils.get_split_uri([examples], split), "*")]


def export_tflite(spec, model_uri: str, transform_uri: str, examples, out_dir: str,
                  blessed: Optional[bool] = None, stream=None) -> Optional[dict]:
    """Converts, measures and writes the forms the spec asks for; returns the report (None: not blessed)."""
    import numpy as np
    import tensorflow_transform as tft

    from lamina.models import tflite
    from lamina.models.features import label_vocabulary
    from lamina.models.artifacts import load_keras_model, read_features
    from lamina.models.datasets import expand_file_patterns, make_dataset

    stream = stream or sys.stdout
    tf.io.gfile.makedirs(out_dir)
    if blessed is False:
        print("    TFLite: the model was not blessed; nothing exported", file=stream, flush=True)
        return None
    tf_transform_output = tft.TFTransformOutput(transform_uri)
    features = read_features(model_uri)
    model = load_keras_model(model_uri)
    classes = label_vocabulary(tf_transform_output) if spec.task == "classification" else None
    eval_ds = make_dataset(expand_file_patterns(_split_files(examples, "eval")), tf_transform_output, spec, features, 64,
                           shuffle=False, cache=False)
    eval_batches = [({k: v.numpy() for k, v in x.items()}, y.numpy()) for x, y in eval_ds]
    train_ds = make_dataset(expand_file_patterns(_split_files(examples, "train")), tf_transform_output, spec, features, 1,
                            shuffle=True, seed=spec.training.seed, cache=False)
    representative = [{k: v.numpy() for k, v in x.items()}
                      for x, _ in train_ds.take(spec.export.calibration_examples)]
    reference, results = tflite.evaluate_forms(model, features, spec.task, list(spec.export.tflite), eval_batches,
                                               representative, spec.export.max_metric_drop, out_dir)
    examples_count = int(sum(np.asarray(y).shape[0] for _, y in eval_batches))
    with tf.io.gfile.GFile(os.path.join(out_dir, tflite.INPUT_SPEC_FILE), "w") as f:
        import json

        json.dump(tflite.input_spec(features, tf_transform_output, out_dir, spec.task, classes), f, indent=1,
                  ensure_ascii=False)
    tflite.write_report(out_dir, spec.task, reference, examples_count, results)
    for r in results:
        if r.exported:
            print(f"    TFLite {r.form:<13} {r.size_bytes / 1024:8.1f} KiB  {tflite.metric_name(spec.task)}="
                  f"{r.metric:.4f} (SavedModel {reference:.4f})", file=stream, flush=True)
        else:
            print(f"    TFLite {r.form:<13} not exported: {r.reason}", file=stream, flush=True)
    return tflite.read_report(out_dir)


@component
def TFLiteExporter(  # pylint: disable=invalid-name
    model: InputArtifact[Model],
    transform_graph: InputArtifact[TransformGraph],
    examples: InputArtifact[Examples],  # ExampleGen's, read through the transform graph
    tflite_models: OutputArtifact[TFLiteModels],
    spec_json: Parameter[str],
    model_blessing: InputArtifact[ModelBlessing] = None,
):
    """Writes the spec's TFLite forms of the (blessed) model into `tflite_models`."""
    from lamina.spec import Spec

    spec = Spec.from_json(spec_json)
    blessed = None
    if model_blessing is not None and model_blessing.has_custom_property("blessed"):
        blessed = bool(model_blessing.get_int_custom_property("blessed"))
    report = export_tflite(spec, model.uri, transform_graph.uri, examples, tflite_models.uri, blessed)
    tflite_models.set_int_custom_property("exported", sum(f["exported"] for f in (report or {}).get("forms", [])))
