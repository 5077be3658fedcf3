"""Baselines: a gradient-boosted tree model and a linear model, on the same split and Transform output.

On small tabular data a tree ensemble often beats a network; this component says when. It reads
the tabular features Transform wrote (numbers z-scored with missing values filled, categories as
vocabulary ids, dates as calendar parts), fits scikit-learn's HistGradientBoosting (categories
as native categorical splits) and a linear model (logistic or ridge regression, categories
one-hot, its regularization chosen by cross-validation) on the train split, and scores both on the eval split with the spec's metrics
(models.metrics). `baselines.json` holds the numbers; the PushGate compares the network with
them when `evaluation.baseline.must_beat` is set, and the run report shows them.

Text and image features are left out: the baselines are of the tabular part of the data.
"""

import os
import sys
import time
from typing import List, Optional

import numpy as np
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, artifact_utils
from tfx.types.standard_artifacts import Examples, TransformGraph

from lamina import storage

BASELINES_FILE = "baselines.json"
NAMES = {"gbt": "gradient-boosted trees", "linear": "linear model"}


class Baselines(artifact.Artifact):
    """baselines.json: each baseline's metrics on the eval split, with its training time."""

    TYPE_NAME = "lamina.Baselines"  # importable as lamina.<Name>, as Kubeflow needs


def _models(task: str, mask: np.ndarray, seed: int, categories: List[int]):
    """{name: unfitted estimator}: HistGradientBoosting and the linear model, as `model.type: gbt` and `auto`
    fit them."""
    from lamina.models.linear import linear_estimator
    from lamina.models.trees import gbt_estimator

    return {"gbt": gbt_estimator(task, mask, categories, seed), "linear": linear_estimator(task, mask)}


def _predict(model, task: str, x: np.ndarray, num_classes: int) -> np.ndarray:
    if task != "classification":
        return model.predict(x)
    probs = model.predict_proba(x)
    out = np.zeros((len(x), num_classes))
    out[:, model.classes_.astype(int)] = probs  # a class absent from the train split keeps probability 0
    return out


def _or_empty(blocks, columns: int):
    """The blocks, or one empty block where there are none."""
    empty = True
    for block in blocks:
        empty = False
        yield block
    if empty:
        yield np.zeros((0, columns)), np.zeros(0)


def train_baselines(spec, transform_uri: str, examples, out_dir: str, stream=None, eval_block_rows: int = 65536) -> dict:
    """Fits the baselines on the train split (at most `evaluation.baseline.max_train_rows` rows), scores them on
    the whole eval split, read `eval_block_rows` rows at a time (the memory of a block, not of the split), and
    writes and returns baselines.json's content."""
    import tensorflow_transform as tft

    from lamina.models.features import AUDIO, IMAGE, TEXT, describe_transformed_features, label_vocabulary
    from lamina.models.metrics import compute
    from lamina.models.trees import column_categories, tabular_blocks, tabular_matrix

    stream = stream or sys.stdout
    tf_transform_output = tft.TFTransformOutput(transform_uri)
    features = describe_transformed_features(spec, tf_transform_output, skip_kinds=(TEXT, IMAGE, AUDIO))
    metrics = [m for m in spec.evaluation.metrics]
    record = {"metrics": metrics, "features": [f.key for f in features], "models": {}}
    if not features:
        record["skipped"] = "no tabular features"
        print("    baselines: none (no tabular features)", file=stream, flush=True)
        storage.write_json(os.path.join(out_dir, BASELINES_FILE), record)
        return record
    pattern = lambda split: [os.path.join(artifact_utils.get_split_uri([examples], split), "*")]  # noqa: E731
    limit = spec.evaluation.baseline.max_train_rows
    x_train, y_train, mask = tabular_matrix(spec, tf_transform_output, features, pattern("train"), limit)
    classes = label_vocabulary(tf_transform_output) if spec.task == "classification" else None
    categories = column_categories(features)
    record.update({"train_rows": int(len(y_train)), "sampled": bool(len(y_train) >= limit), "classes": classes})
    if classes:
        index = spec.evaluation.positive_index
        record["positive_class"] = classes[index] if len(classes) == 2 else None
    fitted, seconds, failed = {}, {}, {}
    models = _models(spec.task, mask, spec.training.seed, categories)
    for name, model in models.items():
        started = time.perf_counter()
        try:
            if classes and len(np.unique(y_train)) < 2:
                raise ValueError("the train split holds one class only")
            model.fit(x_train, y_train.astype(np.int64) if classes else y_train)
            fitted[name], seconds[name] = model, time.perf_counter() - started
        except Exception as e:  # noqa: BLE001 - a baseline that cannot be fit is reported, not fatal
            failed[name] = e
    predictions = {name: [] for name in fitted}
    labels = []
    blocks = tabular_blocks(spec, tf_transform_output, features, pattern("eval"), eval_block_rows)
    for x_eval, y_eval in _or_empty(blocks, x_train.shape[1]):
        labels.append(y_eval)
        for name in [n for n in fitted if n not in failed]:
            try:
                predictions[name].append(_predict(fitted[name], spec.task, x_eval, len(classes) if classes else 0))
            except Exception as e:  # noqa: BLE001 - as for the fit; scikit-learn refuses an empty eval split
                failed[name] = e
    y_all = np.concatenate(labels)
    record["eval_rows"] = int(len(y_all))
    for name in models:
        if name in failed:
            e = failed[name]
            record["models"][name] = {"name": NAMES[name], "error": f"{type(e).__name__}: {e}"}
            print(f"    baseline {NAMES[name]}: not fit ({type(e).__name__}: {e})", file=stream, flush=True)
            continue
        values = compute(spec.task, metrics, y_all, np.concatenate(predictions[name]),
                         spec.evaluation.decision_threshold, spec.evaluation.positive_index)
        record["models"][name] = {"name": NAMES[name], "metrics": values, "fit_seconds": round(seconds[name], 3)}
        shown = "  ".join(f"{m}={v:.4f}" for m, v in values.items())
        print(f"    baseline {NAMES[name]}: {shown}  (fit {seconds[name]:.1f}s on {len(y_train)} rows)",
              file=stream, flush=True)
    storage.write_json(os.path.join(out_dir, BASELINES_FILE), record)
    return record


def read_baselines(folder: str) -> Optional[dict]:
    return storage.read_json_if_exists(os.path.join(folder, BASELINES_FILE))


@component
def BaselineTrainer(  # pylint: disable=invalid-name
    transform_graph: InputArtifact[TransformGraph],
    examples: InputArtifact[Examples],  # ExampleGen's, read through the transform graph
    baselines: OutputArtifact[Baselines],
    spec_json: Parameter[str],
):
    """Fits gradient-boosted trees and a linear model on the train split; scores them on the eval split."""
    from lamina.spec import Spec

    record = train_baselines(Spec.from_json(spec_json), transform_graph.uri, examples, baselines.uri)
    for name, model in record.get("models", {}).items():
        for metric, value in model.get("metrics", {}).items():
            baselines.set_float_custom_property(f"{name}_{metric}", float(value))
