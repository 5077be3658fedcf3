"""Explainer: why the trained model answers what it answers, on a sample of the eval split.

After the Evaluator (blessed or not: a failed model is the one people most want to understand).
Tabular and text features get Integrated Gradients over `explain.samples` eval examples (per
example, per feature or token, and a global ranking by mean |attribution|); gradient-boosted trees
and the linear model, which have no gradients, get Shapley values instead (models.shapley); images get Grad-CAM
overlays for `explain.images_per_class` examples of each class, a wrong answer first where there
is one. The artifact (explanations.json, gradcam/*.png, text.html) is recorded in ML Metadata
against the model it explains, and the run report shows it.

An explanation that cannot be made does not stop the run: the reason is written into
explanations.json and printed.
"""

import os
import sys
import traceback
from typing import List, Optional

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, artifact_utils
from tfx.types.standard_artifacts import Examples, Model, TransformGraph


MAX_SCANNED_BATCHES = 40  # images: how far into the eval split to look for a wrong answer per class


class Explanations(artifact.Artifact):
    """explanations.json, Grad-CAM overlays (gradcam/*.png) and highlighted texts (text.html)."""

    TYPE_NAME = "lamina.Explanations"  # importable as lamina.<Name>, as Kubeflow needs


def _eval_batches(spec, tf_transform_output, features, examples_uri_pattern: List[str]):
    from lamina.models.datasets import expand_file_patterns, make_dataset

    return make_dataset(expand_file_patterns(examples_uri_pattern), tf_transform_output, spec, features, 64, shuffle=False,
                        cache=False)


def pick_examples(model, batches, task: str, spec, classes: Optional[List[str]], has_images: bool):
    """(inputs, labels) to explain: the first `explain.samples` eval examples; for image models,
    `images_per_class` per class, wrong answers first where there are some."""
    explain = spec.explain
    if not has_images:
        # Round-robin over the labels (classes, or everything for regression), so a file sorted by class
        # still gives a sample of every class.
        groups, order = {}, []
        for b, (x, y) in enumerate(batches):
            x = {k: v.numpy() for k, v in x.items()}
            y = y.numpy().reshape(-1)
            for i, label in enumerate(y):
                key = int(label) if task == "classification" else 0
                if key not in groups:
                    groups[key] = []
                    order.append(key)
                if len(groups[key]) < explain.samples:
                    groups[key].append(({k: v[i] for k, v in x.items()}, label))
            if b + 1 >= MAX_SCANNED_BATCHES or (task != "classification" and len(groups[0]) >= explain.samples):
                break
        rows = []
        while len(rows) < explain.samples and any(groups.values()):
            for key in order:
                if groups[key] and len(rows) < explain.samples:
                    rows.append(groups[key].pop(0))
        inputs = {k: np.stack([r[0][k] for r in rows]) for k in rows[0][0]}
        return inputs, np.array([r[1] for r in rows])
    per_class = explain.images_per_class
    wrong, right = {}, {}
    for b, (x, y) in enumerate(batches):
        x = {k: v.numpy() for k, v in x.items()}
        y = y.numpy().reshape(-1)
        predicted = np.argmax(np.asarray(model(x, training=False)), axis=-1)
        for i, label in enumerate(y):
            bucket = wrong if predicted[i] != label else right
            bucket.setdefault(int(label), [])
            if len(bucket[int(label)]) < per_class:
                bucket[int(label)].append({k: v[i] for k, v in x.items()})
        full = all(len(right.get(c, [])) >= per_class for c in range(len(classes or [])))
        if (full and len(wrong) >= min(len(classes or []), 1)) or b + 1 >= MAX_SCANNED_BATCHES:
            break
    rows, labels = [], []
    for c in sorted(set(wrong) | set(right)):
        chosen = (wrong.get(c, [])[:max(1, per_class // 2)] + right.get(c, []))[:per_class]
        rows += chosen
        labels += [c] * len(chosen)
    inputs = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return inputs, np.array(labels)


def explain_model(spec, model_uri: str, transform_uri: str, examples, out_dir: str, stream=None) -> dict:
    """Explains the Trainer's model on the eval split and writes the artifact's files into `out_dir`."""
    import tensorflow_transform as tft

    from lamina.models import explain
    from lamina.models.features import AUDIO, IMAGE, label_vocabulary
    from lamina.models.artifacts import load_keras_model, read_features

    stream = stream or sys.stdout
    tf.io.gfile.makedirs(out_dir)
    try:
        tf_transform_output = tft.TFTransformOutput(transform_uri)
        features = read_features(model_uri)
        model = load_keras_model(model_uri)
        classes = label_vocabulary(tf_transform_output) if spec.task == "classification" else None
        pattern = [os.path.join(artifact_utils.get_split_uri([examples], "eval"), "*")]
        batches = _eval_batches(spec, tf_transform_output, features, pattern)
        has_images = any(f.kind in (IMAGE, AUDIO) for f in features)
        inputs, labels = pick_examples(model, batches, spec.task, spec, classes, has_images)
        record = explain.explain(model, features, spec.task, classes, inputs, labels, steps=spec.explain.steps,
                                 baseline=spec.explain.baseline)
        record = explain.write_explanations(record, inputs, features, out_dir)
    except Exception as e:  # noqa: BLE001 - explanations are diagnostics: say why, do not stop the run
        record = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)}
        with tf.io.gfile.GFile(os.path.join(out_dir, explain.EXPLANATIONS_FILE), "w") as f:
            import json

            json.dump(record, f, indent=1)
        print(f"    warning: no explanations: {record['error']}", file=stream, flush=True)
        return record
    what = []
    if record.get("tabular"):
        top = ", ".join(f"{r['feature']} {r['importance']:.3g}" for r in record["tabular"][:3])
        what.append(f"{record['method']} on {len(record['examples'])} examples (top: {top}; completeness "
                    f"within {100 * record['completeness_error']:.2g}%)")
    elif record.get("text"):
        what.append(f"Integrated Gradients over tokens of {len(record['examples'])} texts (completeness within "
                    f"{100 * record['completeness_error']:.2g}%)")
    if record.get("images"):
        what.append(f"Grad-CAM on {len(record['images'])} {'spectrograms' if spec.data.is_audio else 'images'}")
    print(f"    explanations: {'; '.join(what)}", file=stream, flush=True)
    return record


@component
def Explainer(  # pylint: disable=invalid-name
    model: InputArtifact[Model],
    transform_graph: InputArtifact[TransformGraph],
    examples: InputArtifact[Examples],  # ExampleGen's, read through the transform graph
    explanations: OutputArtifact[Explanations],
    spec_json: Parameter[str],
):
    """Writes explanations of `model` on the eval split into `explanations`."""
    from lamina.spec import Spec

    record = explain_model(Spec.from_json(spec_json), model.uri, transform_graph.uri, examples,
                           explanations.uri)
    explanations.set_int_custom_property("explained_examples", len(record.get("examples", [])))
    if "error" in record:
        explanations.set_string_custom_property("error", record["error"][:1000])
