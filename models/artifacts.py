"""What the Trainer writes beside the SavedModel, and reads back: the Keras model, its inputs, its history."""

import os
import shutil
import tempfile
from typing import Dict, List, Optional

import keras
import tensorflow as tf

from lamina.models.features import TEXT, FeatureInfo

# Inside the SavedModel's assets.extra/lamina/ (TF Serving ignores it, the Pusher copies it): the
# Keras model itself and its inputs, for what needs the model on transformed inputs after the
# Evaluator (TFLite export, explanations, `lamina explain --model PUSHED_DIR`).
KERAS_FILE = "model.keras"
FEATURES_FILE = "features.json"
# In the Trainer's model_run folder: loss and metrics per epoch, train and validation, for the report.
HISTORY_FILE = "history.json"

def saved_model_dir(path: str) -> str:
    """A Model artifact's Format-Serving folder, or `path` itself when it is a SavedModel (a pushed version)."""
    serving = os.path.join(path, "Format-Serving")
    return serving if tf.io.gfile.isdir(serving) else path


def keras_model_path(path: str) -> str:
    """Where the Trainer keeps the Keras model: in a SavedModel (or Model artifact) folder's assets.extra/lamina/."""
    from lamina.models.images import BACKBONE_DIR

    return os.path.join(saved_model_dir(path), BACKBONE_DIR, KERAS_FILE)


def write_features(features: List[FeatureInfo], export_dir: str, label: str = "", task: str = "",
                   raw_columns: Optional[Dict[str, str]] = None) -> str:
    """The model's inputs as JSON beside the Keras model; a text vocabulary points at its copy there."""
    import dataclasses
    import json

    from lamina.models.images import BACKBONE_DIR

    rows = []
    for f in features:
        row = dataclasses.asdict(f)
        if f.kind == TEXT:
            row["vocabulary"] = f"{f.name}_vocab.txt"  # export_serving_model copied it there
        rows.append(row)
    path = os.path.join(export_dir, BACKBONE_DIR, FEATURES_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"features": rows, "label": label, "task": task, "raw_columns": raw_columns or {}}, f, indent=1,
                  ensure_ascii=False)
    return path


def read_features(path: str) -> List[FeatureInfo]:
    """The FeatureInfo list a Trainer wrote into the SavedModel at `path` (a folder or Model artifact)."""
    import json

    from lamina.models.images import BACKBONE_DIR

    folder = os.path.join(saved_model_dir(path), BACKBONE_DIR)
    with tf.io.gfile.GFile(os.path.join(folder, FEATURES_FILE)) as f:
        rows = json.load(f)["features"]
    out = []
    for row in rows:
        if row.get("kind") == TEXT:
            row["vocabulary"] = os.path.join(folder, row["vocabulary"])
        row["image_size"] = tuple(row.get("image_size") or ())
        out.append(FeatureInfo(**row))
    return out


def load_keras_model(path: str) -> keras.Model:
    """The Keras model a Trainer saved (uncompiled): `path` is its Model artifact or a SavedModel it wrote,
    a pushed version included."""
    import lamina.models.combiners  # noqa: F401 - registers the custom layers the file names
    import lamina.models.forecast  # noqa: F401
    import lamina.models.images  # noqa: F401
    import lamina.models.sequence  # noqa: F401
    import lamina.models.text  # noqa: F401
    import lamina.models.linear  # noqa: F401
    import lamina.models.trees  # noqa: F401

    path = keras_model_path(path)
    local_dir = None
    if "://" in path:  # Keras reads .keras files from local disk only
        local_dir = tempfile.mkdtemp(prefix="lamina_keras_")
        tf.io.gfile.copy(path, os.path.join(local_dir, KERAS_FILE))
        path = os.path.join(local_dir, KERAS_FILE)
    try:
        return keras.saving.load_model(path, compile=False)
    finally:
        if local_dir:
            shutil.rmtree(local_dir, ignore_errors=True)


def write_history(histories: List[keras.callbacks.History], path: str) -> str:
    """Every phase's per-epoch logs as one JSON document: {"epochs": [{"epoch": 1, "loss": ...}, ...]}."""
    import json

    epochs = []
    for history in histories:
        for i, epoch in enumerate(history.epoch):
            row = {"epoch": epoch + 1}
            row.update({k: float(v[i]) for k, v in history.history.items() if i < len(v)})
            epochs.append(row)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"epochs": epochs}, f, indent=1)
    return path


def save_keras_model(model: keras.Model, path: str) -> str:
    """model.keras at `path` (any filesystem TensorFlow reads): written locally, then copied."""
    local = tempfile.mkdtemp(prefix="lamina_keras_")
    try:
        model.save(os.path.join(local, KERAS_FILE))
        tf.io.gfile.makedirs(os.path.dirname(path))
        tf.io.gfile.copy(os.path.join(local, KERAS_FILE), path, overwrite=True)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return path
