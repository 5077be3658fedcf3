"""The Trainer's entry point: `run_fn`, as TFX's generic Trainer calls it.

Reads the transformed examples, builds the model from the spec, fits it with one progress
line per epoch and TensorBoard logs, and exports the SavedModel with the Transform graph.
"""

import logging
import sys
import time
from typing import List, Optional

import keras
import tensorflow as tf
import tensorflow_transform as tft

from models.builder import build_model
from models.device import configure_devices
from models.export import export_serving_model, model_inputs
from models.features import FeatureInfo, describe_transformed_features, label_vocabulary, transformed_label_key
from pipeline.spec import Spec

log = logging.getLogger("lamina.train")


def make_dataset(file_patterns: List[str], tf_transform_output, spec: Spec, features: List[FeatureInfo],
                 batch_size: int, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
    """(features, label) batches from Transform's gzipped TFRecords, parsed in parallel and cached."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {file_patterns}")
    feature_spec = tf_transform_output.transformed_feature_spec()
    label_key = transformed_label_key(spec.data.label)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, feature_spec)
        return model_inputs(parsed, features), parsed[label_key]

    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if spec.task == "classification":
        # Labels unseen in training map to -1 in Transform; they cannot be learned from.
        ds = ds.unbatch().filter(lambda x, y: y >= 0).batch(batch_size)
    ds = ds.cache()
    if shuffle:
        ds = ds.unbatch().shuffle(10_000, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch: number, duration and every metric."""

    def __init__(self, epochs: int, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream or sys.stdout
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()) if isinstance(v, (int, float)))
        print(f"    epoch {epoch + 1:>3}/{self.epochs}  {time.perf_counter() - self._start:5.2f}s  {metrics}",
              file=self.stream, flush=True)


def train(spec: Spec, tf_transform_output, train_files: List[str], eval_files: List[str],
          serving_model_dir: str, log_dir: Optional[str] = None, steps_per_epoch: Optional[int] = None):
    """Builds, fits and exports the model. Returns (model, history)."""
    keras.utils.set_random_seed(spec.training.seed)
    strategy = configure_devices(spec.training)
    features = describe_transformed_features(spec, tf_transform_output)
    classes = label_vocabulary(tf_transform_output) if spec.task == "classification" else None
    batch = spec.training.batch_size * strategy.num_replicas_in_sync
    train_ds = make_dataset(train_files, tf_transform_output, spec, features, batch, shuffle=True,
                            seed=spec.training.seed)
    eval_ds = make_dataset(eval_files, tf_transform_output, spec, features, batch, shuffle=False)
    with strategy.scope():
        model = build_model(spec, features, num_classes=len(classes) if classes else None)

    epochs = spec.training.epochs or 1
    steps = steps_per_epoch or spec.training.steps_per_epoch
    callbacks = [EpochProgress(epochs)]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    if spec.training.early_stopping:
        es = spec.training.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience,
                                                       min_delta=es.min_delta, restore_best_weights=True))
    if steps:
        train_ds = train_ds.repeat()
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"    training {model.name}: {len(features)} features, up to {epochs} epochs, batch {batch}, "
          f"{model.count_params()} parameters, on {device}", flush=True)
    history = model.fit(train_ds, validation_data=eval_ds, epochs=epochs, steps_per_epoch=steps,
                        callbacks=callbacks, verbose=0)
    export_serving_model(model, tf_transform_output, spec, features, serving_model_dir)
    return model, history


def run_fn(fn_args):
    """TFX Trainer entry point (`Trainer(run_fn='models.trainer.run_fn')`)."""
    spec = Spec.from_json(fn_args.custom_config["spec"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train(spec, tf_transform_output, fn_args.train_files, fn_args.eval_files, fn_args.serving_model_dir,
          log_dir=fn_args.model_run_dir)
