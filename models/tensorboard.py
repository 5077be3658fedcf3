"""TensorBoard beyond the epoch curves: the network's weights and gradients, its embeddings, the trials.

Every Trainer run's log folder (the Trainer's `model_run`) holds, beside Keras' own `train/` and
`validation/` curves:

  network/    `NetworkHistograms`: histograms of the weights of up to `max_layers` layers, spread
              over the network's depth, and of their gradients on one fixed training batch, at up to
              `histogram_epochs` epochs (the first, the last and evenly between); the learning rate
              of every epoch as a scalar. Bounded, so a 22M-parameter encoder does not fill the disk.
  projector/  `write_projector`: the combined representation (the head's input) and each text,
              image, audio or sequence encoding of a sample of eval examples, labelled with their
              class (or value) and the model's answer; each categorical embedding's rows, labelled
              with the vocabulary.

The Tuner writes `tensorboard/` beside trials.json (`write_hparams`): the HParams dashboard's
configuration and one run per trial with its values and its objective after every epoch.
`training.tensorboard` in the spec sets the bounds; `lamina tensorboard SPEC` serves the folders.
"""

import math
import os
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from lamina.models.features import CATEGORICAL, NUMERIC, DATE, FeatureInfo, vocabulary_name

NETWORK_DIR = "network"
PROJECTOR_DIR = "projector"
HPARAMS_DIR = "tensorboard"  # beside the Tuner's trials.json


def logged_epochs(total: int, most: int) -> List[int]:
    """The 0-based epochs whose histograms are written: the first, the last and evenly between.

    >>> logged_epochs(20, 4), logged_epochs(3, 10)
    ([0, 6, 13, 19], [0, 1, 2])
    """
    if total <= most:
        return list(range(total))
    if most == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (most - 1)) for i in range(most)})


def histogram_layers(model: keras.Model, most: int) -> Dict[str, List]:
    """Up to `most` layers' trainable variables, {layer path: variables}, spread over the model's depth."""
    groups: Dict[str, List] = {}
    for v in model.trainable_variables:
        groups.setdefault(v.path.rsplit("/", 1)[0], []).append(v)
    names = list(groups)
    if len(names) > most:
        names = [names[round(i * (len(names) - 1) / max(most - 1, 1))] for i in range(most)]
    return {n: groups[n] for n in dict.fromkeys(names)}


class NetworkHistograms(keras.callbacks.Callback):
    """Weights, gradients and the learning rate to `<log_dir>/network` (see the module docstring).

    `sample`: one (inputs, labels) training batch the gradients are taken on, in inference mode (no
    dropout, batch norm's statistics untouched); None writes the weights and the learning rate only.
    """

    def __init__(self, log_dir: str, total_epochs: int, max_layers: int = 12, histogram_epochs: int = 10,
                 sample: Optional[tuple] = None):
        super().__init__()
        self.log_dir = os.path.join(log_dir, NETWORK_DIR)
        self.epochs = set(logged_epochs(total_epochs, histogram_epochs))
        self.max_layers = max_layers
        self.sample = sample
        self._writer = None
        self._last_logged = None
        self._epoch = None

    def on_train_begin(self, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def _gradients(self, variables) -> List[Optional[tf.Tensor]]:
        x, y = self.sample[0], self.sample[1]
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=False)
            loss = self.model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        return tape.gradient(loss, variables)

    def _write(self, epoch: int) -> None:
        layers = histogram_layers(self.model, self.max_layers)
        variables = [v for vs in layers.values() for v in vs]
        grads = self._gradients(variables) if self.sample is not None else [None] * len(variables)
        with self._writer.as_default(step=epoch + 1):
            for v, g in zip(variables, grads):
                tf.summary.histogram(f"weights/{v.path}", tf.cast(v.value, tf.float32))
                if g is not None:
                    tf.summary.histogram(f"gradients/{v.path}", tf.cast(g, tf.float32))
        self._last_logged = epoch

    def on_epoch_end(self, epoch, logs=None):
        with self._writer.as_default(step=epoch + 1):
            rate = self.model.optimizer.learning_rate
            tf.summary.scalar("learning_rate", float(keras.ops.convert_to_numpy(rate)))
        if epoch in self.epochs:
            self._write(epoch)
        self._epoch = epoch

    def on_train_end(self, logs=None):
        # Early stopping (or a phase) ended between logged epochs: the weights it ends with are written too.
        if self._epoch is not None and self._epoch != self._last_logged:
            self._write(self._epoch)
        self._writer.flush()


# -- projector ----------------------------------------------------------------------------------


def _encoder_output(backbone: keras.Model, key: str):
    """The output of the layer that takes backbone input `key` (the feature's encoder)."""
    source = backbone.get_layer(key).output
    for layer in backbone.layers:
        try:
            if layer.input is source:
                return layer.output
        except (AttributeError, ValueError):  # a layer with several inputs or none
            continue
    return None


def _sample(dataset, samples: int):
    """(inputs, labels) of the first `samples` examples of a batched (inputs, labels) dataset."""
    xs, ys, n = [], [], 0
    for batch in dataset:
        xs.append({k: v.numpy() for k, v in batch[0].items()})
        ys.append(np.asarray(batch[1]))
        n += len(ys[-1])
        if n >= samples:
            break
    inputs = {k: np.concatenate([x[k] for x in xs])[:samples] for k in xs[0]}
    return inputs, np.concatenate(ys)[:samples]


def _tsv_cell(value) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")[:200] or "''"


def write_projector(log_dir: str, model: keras.Model, features: Sequence[FeatureInfo], dataset, samples: int,
                    classes: Optional[List[str]], tf_transform_output=None) -> Dict[str, int]:
    """The projector's tensors and labels under `<log_dir>/projector` (see the module docstring).

    Returns {tensor name: rows}.
    """
    from tensorboard.plugins import projector

    out = os.path.join(log_dir, PROJECTOR_DIR)
    tf.io.gfile.makedirs(out)
    inputs, labels = _sample(dataset, samples)
    backbone = model.get_layer("backbone")
    predicted = np.asarray(model(inputs, training=False))
    if classes:
        shown_labels = [classes[int(i)] if 0 <= int(i) < len(classes) else "?" for i in labels.reshape(-1)]
        answers = [classes[int(i)] for i in predicted.argmax(axis=-1)]
    else:
        shown_labels = [f"{float(v):.4g}" for v in labels.reshape(-1)]
        answers = [f"{float(v):.4g}" for v in predicted.reshape(-1)]
    examples_meta = "label\tpredicted\n" + "".join(f"{_tsv_cell(a)}\t{_tsv_cell(b)}\n"
                                                   for a, b in zip(shown_labels, answers))
    tensors: Dict[str, np.ndarray] = {"examples": np.asarray(backbone(inputs, training=False))}
    metadata: Dict[str, str] = {"examples": examples_meta}
    for f in features:
        if f.kind in (NUMERIC, DATE):
            continue
        if f.kind == CATEGORICAL:
            try:
                table = backbone.get_layer(f"{f.key}_embedding").layers[0].embeddings
            except ValueError:  # a one-hot encoder has no embedding to show
                continue
            words = []
            if tf_transform_output is not None:
                words = [w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w)
                         for w in tf_transform_output.vocabulary_by_name(vocabulary_name(f.name))]
            rows = int(table.shape[0])
            words = (words + [f"[OOV {i}]" for i in range(rows - len(words))])[:rows]
            tensors[f"{f.key}_embedding"] = np.asarray(keras.ops.convert_to_numpy(table))
            metadata[f"{f.key}_embedding"] = "".join(f"{_tsv_cell(w)}\n" for w in words)
            continue
        output = _encoder_output(backbone, f.key)
        if output is None:
            continue
        encoded = keras.Model(backbone.inputs, output)(inputs, training=False)
        tensors[f"{f.key}_encoding"] = np.asarray(encoded).reshape(len(labels), -1)
        metadata[f"{f.key}_encoding"] = examples_meta
    config = projector.ProjectorConfig()
    variables = {}
    for name, value in tensors.items():
        variables[name] = tf.Variable(value.astype(np.float32), name=name)
        with tf.io.gfile.GFile(os.path.join(out, f"{name}.tsv"), "w") as fh:
            fh.write(metadata[name])
        embedding = config.embeddings.add()
        embedding.tensor_name = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = f"{name}.tsv"
    tf.train.Checkpoint(**variables).save(os.path.join(out, "embeddings.ckpt"))
    projector.visualize_embeddings(out, config)
    rows = {name: int(v.shape[0]) for name, v in tensors.items()}
    # TensorBoard's projector looks in its runs, and a folder is a run once it holds an event file.
    with tf.summary.create_file_writer(out).as_default():
        tf.summary.text("projector", "\n".join(f"- {name}: {n} rows" for name, n in rows.items()), step=0)
    return rows


# -- the Tuner's trials ---------------------------------------------------------------------------


def write_hparams(out_dir: str, summary: dict) -> int:
    """The HParams dashboard for a Tuner's `summary` (what trials.json holds); returns the trials written."""
    from tensorboard.plugins.hparams import api as hp

    trials = summary.get("trials") or []
    metric = summary["objective"]
    names = sorted({k for t in trials for k in t["values"]})
    hparams = {}
    for name in names:
        values = [t["values"][name] for t in trials if name in t["values"]]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            if all(isinstance(v, int) for v in values):
                hparams[name] = hp.HParam(name, hp.IntInterval(min(values), max(values)))
            else:
                hparams[name] = hp.HParam(name, hp.RealInterval(float(min(values)), float(max(values))))
        else:
            hparams[name] = hp.HParam(name, hp.Discrete(sorted({str(v) for v in values})))
    with tf.summary.create_file_writer(out_dir).as_default():
        hp.hparams_config(hparams=list(hparams.values()),
                          metrics=[hp.Metric(metric, display_name=f"{metric} ({summary.get('direction', '')})")])
    for t in trials:
        with tf.summary.create_file_writer(os.path.join(out_dir, f"trial-{t['trial']:03d}")).as_default():
            values = {hparams[k]: (v if isinstance(hparams[k].domain, (hp.IntInterval, hp.RealInterval)) else str(v))
                      for k, v in t["values"].items()}
            hp.hparams(values, trial_id=f"trial {t['trial']}")
            for step, value in enumerate(t.get("curve") or [t["score"]], start=1):
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    tf.summary.scalar(metric, value, step=step)
    return len(trials)
