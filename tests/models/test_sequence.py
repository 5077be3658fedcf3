"""The sequence encoders: masking, padding, widths, serialization, and an LSTM reading text."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from lamina.models.builder import build_model
from lamina.models.features import SEQUENCE, TEXT, FeatureInfo
from lamina.models.sequence import SequenceEncoderLayer
from lamina.models.text import TextTokenizer, learn_vocabulary
from lamina.spec import Spec

NAN = float("nan")
LOGS = np.array([[1.0, 2.0, 3.0, NAN, NAN, NAN],
                 [0.5, -1.0, 2.0, 1.5, 0.0, 3.0],
                 [NAN] * 6,                      # no readings at all
                 [1.0, NAN, 2.0, 4.0, NAN, NAN]], np.float32)  # a missing reading inside


@pytest.mark.parametrize("kind, options, width", [
    ("lstm", {}, 8), ("gru", {"layers": 2, "dropout": 0.2}, 8), ("lstm", {"bidirectional": True}, 16),
    ("gru", {"bidirectional": True, "layers": 2}, 16), ("conv1d", {"layers": 2, "kernel_size": 3}, 8),
    ("transformer", {"num_heads": 2, "max_length": 6}, 8)])
def test_padding_is_masked_whatever_its_length(kind, options, width):
    keras.utils.set_random_seed(1)
    layer = SequenceEncoderLayer(kind, units=8, **options)
    out = np.asarray(layer(LOGS))
    assert out.shape == (4, width) and np.isfinite(out).all()
    if kind != "transformer":  # its positions stop at max_length; Transform pads to exactly that
        longer = np.concatenate([LOGS, np.full((4, 5), NAN, np.float32)], axis=1)
        np.testing.assert_allclose(np.asarray(layer(longer)), out, atol=1e-6)
    # A value past a row's end would change the answer if the padding were read: it is not masked.
    filled = LOGS.copy()
    filled[0, 3:] = 9.0
    assert not np.allclose(np.asarray(layer(filled))[0], out[0])


def test_a_missing_reading_is_not_read_as_zero():
    layer = SequenceEncoderLayer("lstm", units=8)
    zero = LOGS.copy()
    zero[3, 1] = 0.0
    assert not np.allclose(np.asarray(layer(LOGS))[3], np.asarray(layer(zero))[3])


def test_a_saved_encoder_loads_with_the_same_weights(tmp_path):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(1)(SequenceEncoderLayer("gru", units=4, bidirectional=True)(inputs)))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(LOGS)), np.asarray(model(LOGS)), atol=1e-6)


def test_an_unknown_kind_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"expected one of \['lstm', 'gru', 'conv1d', 'transformer'\]. "
                                         r"Received: kind='rnn'"):
        SequenceEncoderLayer("rnn")


def test_the_builder_gives_a_sequence_feature_its_spec_encoder():
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "y", "features": {"log": "sequence", "n": "numeric"}},
                           "model": {"encoders": {"log": {"type": "gru", "units": 5, "bidirectional": True,
                                                          "max_length": 6}}}})
    model = build_model(spec, [FeatureInfo("log", SEQUENCE, max_length=6), FeatureInfo("n", "numeric")],
                        num_classes=2)
    encoder = next(l for l in model.get_layer("backbone").layers if isinstance(l, SequenceEncoderLayer))
    assert (encoder.kind, encoder.units, encoder.bidirectional, encoder.name) == ("gru", 5, True, "log_gru")
    assert model.get_layer("log").output.shape == (None, 6)
    out = model({"log": LOGS, "n": np.zeros((4, 1), np.float32)})
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-5)


TOPICS = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "text", "topics.csv")


def test_an_lstm_learns_topics_from_text_with_a_learned_vocabulary(tmp_path):
    """`text: {type: lstm}`: a WordPiece vocabulary learned from the train rows, token ids embedded and
    read by an LSTM; trained here on the vocab_half 'a' rows and scored on held-out 'a' rows."""
    keras.utils.set_random_seed(0)
    rows = [r for r in csv.DictReader(open(TOPICS, encoding="utf-8")) if r["vocab_half"] == "a"]
    train, held_out = rows[: int(len(rows) * 0.75)], rows[int(len(rows) * 0.75):]
    classes = sorted({r["topic"] for r in rows})
    vocab = learn_vocabulary(tf.data.Dataset.from_tensor_slices([r["text"] for r in train]), 400, True,
                             str(tmp_path / "vocab.txt"))
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "topic", "features": {"text": "text"}},
                           "model": {"encoders": {"text": {"type": "lstm", "units": 32, "max_length": 24, "bidirectional": True,
                                                           "vocabulary": vocab}},
                                     "combiner": {"hidden_units": []}},
                           "training": {"learning_rate": 0.01}})
    feature = FeatureInfo("text", TEXT, vocabulary=vocab, lowercase=True, max_length=24)
    tokenizer = TextTokenizer(vocab, True, 24)
    model = build_model(spec, [feature], num_classes=len(classes))

    def data(part):
        ids = tokenizer(tf.constant([r["text"] for r in part])).numpy()
        return {"text": ids}, np.array([classes.index(r["topic"]) for r in part])

    x, y = data(train)
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    hx, hy = data(held_out)
    accuracy = float((np.argmax(model.predict(hx, verbose=0), axis=1) == hy).mean())
    assert accuracy >= 0.85, accuracy
    encoder = next(l for l in model.get_layer("backbone").layers if isinstance(l, SequenceEncoderLayer))
    assert encoder.embedding.input_dim == tokenizer.vocabulary_size and encoder.pad_id == tokenizer.pad_id


def test_a_sequence_model_converts_to_tflite_and_answers_as_keras(tmp_path):
    from lamina.models import tflite

    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "y", "features": {"log": "sequence"}},
                           "model": {"encoders": {"log": {"type": "lstm", "units": 8, "max_length": 6}}}})
    features = [FeatureInfo("log", SEQUENCE, max_length=6)]
    model = build_model(spec, features, num_classes=2)
    content = tflite.convert(model, features, "classification", "float")
    np.testing.assert_allclose(tflite.run_interpreter(content, [{"log": LOGS}], "classification"),
                               model({"log": LOGS}).numpy(), atol=1e-5)


def test_a_saved_model_file_loads_in_a_fresh_process(tmp_path):
    """load_keras_model registers every custom layer itself: the Explainer and TFLiteExporter load the
    Trainer's file in another process when the Trainer's run is cached."""
    import subprocess
    import sys

    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "y", "features": {"log": "sequence", "n": "numeric"}},
                           "model": {"encoders": {"log": {"type": "gru", "units": 4, "max_length": 6}},
                                     "combiner": {"type": "attention", "dim": 4, "heads": 2}}})
    model = build_model(spec, [FeatureInfo("log", SEQUENCE, max_length=6), FeatureInfo("n", "numeric")],
                        num_classes=2)
    folder = tmp_path / "Format-Serving" / "assets.extra" / "lamina"
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    code = ("import sys; from lamina.models.artifacts import load_keras_model; "
            "print(load_keras_model(sys.argv[1]).count_params())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) == model.count_params()
