"""Transfer is real for text: all-MiniLM-L6-v2 fine-tuned on topics.csv's half-a sentences beats a
from-scratch Transformer of the same architecture on the half-b sentences, whose topic
words neither model saw in training. Same examples, same tokens (MiniLM's vocabulary), same
steps, batch and schedule (AdamW, linear warmup and decay)."""

import csv
import os

import numpy as np
import tensorflow as tf

from lamina.models.builder import build_model
from lamina.models.features import TEXT, FeatureInfo
from lamina.models.text import inspect_pretrained
from lamina.models.trainer import fit
from lamina.spec import Spec
from tests.helpers import TOPICS_CSV

LENGTH = 24
STEPS = 40
BATCH = 16
SCRATCH_LR = 2e-4  # the best of 1e-4, 2e-4, 5e-4 and 1e-3 for the scratch model (train accuracy)


def topics():
    rows = list(csv.DictReader(open(TOPICS_CSV, encoding="utf-8")))
    classes = sorted({r["topic"] for r in rows})
    split = {h: [r for r in rows if r["vocab_half"] == h] for h in ("a", "b")}
    return classes, split


def train_and_score(tmp_path, encoder, learning_rate, vocabulary):
    classes, split = topics()
    spec = Spec.from_dict({
        "name": "transfer", "data": {"path": "unused.csv", "label": "topic", "features": {"text": "text"}},
        "model": {"encoders": {"text": encoder}, "combiner": {"hidden_units": []}},
        "training": {"epochs": 1, "batch_size": BATCH, "optimizer": "adamw", "learning_rate": learning_rate,
                     "seed": 1}}, base_dir=str(tmp_path))
    feature = FeatureInfo("text", TEXT, vocabulary=vocabulary, lowercase=True, max_length=LENGTH)
    tok = feature.tokenizer()

    def data(rows):
        return tok(tf.constant([r["text"] for r in rows])), np.array([classes.index(r["topic"]) for r in rows])

    x, y = data(split["a"])
    train_ds = tf.data.Dataset.from_tensor_slices(({"text": x}, y)).shuffle(1000, seed=1).repeat().batch(BATCH)
    model = build_model(spec, [feature], num_classes=len(classes), compile=False)
    fit(model, spec, train_ds, None, steps_per_epoch=STEPS, stream=open(os.devnull, "w"))
    held_x, held_y = data(split["b"])
    train_acc = float(np.mean(model.predict({"text": x}, verbose=0).argmax(1) == y))
    held_acc = float(np.mean(model.predict({"text": held_x}, verbose=0).argmax(1) == held_y))
    return train_acc, held_acc, model.count_params()


def test_pretrained_minilm_beats_a_transformer_from_scratch(minilm_dir, tmp_path):
    vocab = inspect_pretrained(minilm_dir).vocabulary
    pre_train, pretrained, pre_params = train_and_score(
        tmp_path, {"type": "bert", "path": minilm_dir, "max_length": LENGTH}, 1e-4, vocab)
    # MiniLM's own architecture, randomly initialised: the same size, bit for bit.
    scratch_train, scratch, scratch_params = train_and_score(
        tmp_path, {"type": "transformer", "num_layers": 6, "num_heads": 12, "hidden_dim": 384,
                   "intermediate_dim": 1536, "max_length": LENGTH, "vocabulary": vocab}, SCRATCH_LR, vocab)
    print(f"held-out accuracy: MiniLM {pretrained:.3f} ({pre_params} parameters), "
          f"scratch {scratch:.3f} ({scratch_params}); train {pre_train:.3f} / {scratch_train:.3f}")
    assert scratch_train >= 0.5  # the scratch model learns its training sentences (chance: 0.25) ...
    assert pretrained >= 0.85  # ... but only MiniLM knows that hockey is a sport
    assert pretrained - scratch >= 0.3
