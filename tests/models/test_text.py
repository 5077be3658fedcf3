"""Text encoders and tokenization: all-MiniLM-L6-v2 loaded three ways equals the Hugging Face
reference (tests/golden), the tokenizer's edge cases, loader errors with exact messages, the
learned vocabulary, the warmup/decay schedule and the frozen-encoder phase."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from lamina.models.builder import LinearWarmupDecay, build_model
from lamina.models.features import TEXT, FeatureInfo
from lamina.models.finetune import training_phases
from lamina.models.text import (INVALID_UTF8_MESSAGE, TextModelError, TextTokenizer, inspect_pretrained,
                                learn_vocabulary, load_bert_backbone, read_vocabulary, text_encoders)
from lamina.models.trainer import fit
from lamina.spec import Spec

GOLDEN = json.load(open(os.path.join(os.path.dirname(__file__), "..", "golden", "minilm_golden.json"),
                        encoding="utf-8"))
TEXTS = [s["text"] for s in GOLDEN["sentences"]]
LENGTH = GOLDEN["max_length"]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    """(info, backbone, tokenizer) of all-MiniLM-L6-v2 from its Hugging Face directory."""
    info = inspect_pretrained(minilm_dir)
    return info, load_bert_backbone(info), TextTokenizer(info.vocabulary, info.lowercase, LENGTH)


def hidden_states(backbone, ids):
    mask = (ids != 0).astype("int32")
    return backbone({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
                    )["sequence_output"].numpy()


def assert_matches_golden(backbone, tokenizer):
    ids = tokenizer(tf.constant(TEXTS)).numpy()
    out = hidden_states(backbone, ids)
    for i, s in enumerate(GOLDEN["sentences"]):
        n = len(s["token_ids"])
        assert ids[i, :n].tolist() == s["token_ids"], s["text"]
        assert (ids[i, n:] == 0).all()
        np.testing.assert_allclose(out[i, 0], s["cls"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(out[i, :n, :16], s["tokens_first_dims"], atol=1e-4, rtol=0)
        mean = out[i, :n].mean(0)
        np.testing.assert_allclose(mean, s["mean_pooled"], atol=1e-4, rtol=0)


def test_minilm_from_its_hugging_face_directory_matches_the_reference(minilm):
    info, backbone, tokenizer = minilm
    assert (info.layout, info.lowercase, info.max_positions) == ("huggingface", True, 512)
    assert backbone.num_layers == 6 and backbone.hidden_dim == 384
    assert GOLDEN["reference"].startswith("transformers ")
    assert_matches_golden(backbone, tokenizer)


def test_the_bert_prefixed_gamma_beta_layout_loads_the_same_weights(minilm, minilm_dir, tmp_path):
    """The layout BertForPreTraining checkpoints use: `bert.` prefix, LayerNorm gamma/beta."""
    from safetensors.numpy import load_file, save_file

    _, backbone, _ = minilm
    tensors = load_file(os.path.join(minilm_dir, "model.safetensors"))
    renamed = {}
    for key, value in tensors.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed["bert." + key] = value
    renamed["cls.predictions.bias"] = np.zeros(3, "float32")  # a pretraining head, ignored
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(minilm_dir, name), tmp_path / name)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    other = load_bert_backbone(inspect_pretrained(str(tmp_path)))
    assert len(other.weights) == len(backbone.weights) > 100
    for a, b in zip(other.weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_keras_hub_preset_directory_loads_the_same_encoder(minilm, tmp_path):
    """A KerasHub preset of MiniLM (BertBackbone + BertTokenizer) loads to the same weights and tokens.

    KerasHub's BertBackbone config has no activation key and always builds tanh-approximated GELU
    (as Google's original BERT code uses), so a preset saved from the exact-GELU Hugging Face
    model is close to the reference, not within 1e-4: the weights are compared exactly instead.
    """
    import keras_hub

    info, backbone, tokenizer = minilm
    backbone.save_to_preset(str(tmp_path))
    keras_hub.models.BertTokenizer(vocabulary=info.vocabulary, lowercase=True).save_to_preset(str(tmp_path))
    preset = inspect_pretrained(str(tmp_path))
    assert (preset.layout, preset.lowercase, preset.max_positions) == ("keras_hub", True, 512)
    assert read_vocabulary(preset.vocabulary) == read_vocabulary(info.vocabulary)
    loaded = load_bert_backbone(preset)
    assert len(loaded.weights) == len(backbone.weights)
    for a, b in zip(loaded.weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    ids = TextTokenizer(preset.vocabulary, preset.lowercase, LENGTH)(tf.constant(TEXTS)).numpy()
    np.testing.assert_array_equal(ids, tokenizer(tf.constant(TEXTS)).numpy())
    out = hidden_states(loaded, ids)
    for i, s in enumerate(GOLDEN["sentences"]):
        n = len(s["token_ids"])
        np.testing.assert_allclose(out[i, :n].mean(0), s["mean_pooled"], atol=5e-3, rtol=0)


# -- tokenizer -----------------------------------------------------------------------------------


def test_tokenizer_edge_cases(minilm):
    info, _, _ = minilm
    tok = TextTokenizer(info.vocabulary, True, 8)
    vocab = read_vocabulary(info.vocabulary)
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    batch = tok(tf.constant(["", "   ", "Hello WORLD", "one two three four five six seven eight nine"])).numpy()
    assert batch.dtype == np.int32 and batch.shape == (4, 8)
    assert batch[0].tolist() == [cls, sep, 0, 0, 0, 0, 0, 0]
    assert batch[1].tolist() == batch[0].tolist()
    assert batch[2].tolist() == [cls, vocab.index("hello"), vocab.index("world"), sep, 0, 0, 0, 0]
    assert batch[3, 0] == cls and batch[3, -1] == sep and (batch[3] != 0).all()  # truncated, [SEP] kept
    for text, row in zip(["", "Hello WORLD"], batch[[0, 2]]):
        assert tok(tf.constant(text)).numpy().tolist() == row.tolist()  # one string, as tf.data maps it
    with pytest.raises(tf.errors.InvalidArgumentError, match="a text input is not valid UTF-8"):
        tok(tf.constant([b"ok", b"\xff\xfe"]))
    assert INVALID_UTF8_MESSAGE.startswith("a text input is not valid UTF-8")


def test_learned_vocabulary_starts_with_the_special_tokens(tmp_path):
    texts = tf.data.Dataset.from_tensor_slices(["The storm hit the coast", "the storm passed", "Sunny skies"] * 20)
    path = learn_vocabulary(texts, 200, True, str(tmp_path / "v" / "vocab.txt"))
    vocab = read_vocabulary(path)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"storm", "the", "coast", "sunny"} <= set(vocab)
    ids = TextTokenizer(path, True, 6)(tf.constant(["The STORM"])).numpy()[0].tolist()
    assert ids == [2, vocab.index("the"), vocab.index("storm"), 3, 0, 0]


# -- loader errors -------------------------------------------------------------------------------


def model_copy(minilm_dir, tmp_path, config=None, drop=(), vocab=None):
    """A directory like MiniLM's: the weights linked, config.json edited, files dropped."""
    d = tmp_path / "model"
    d.mkdir()
    for name in ("model.safetensors", "vocab.txt", "tokenizer_config.json"):
        if name not in drop:
            os.symlink(os.path.join(minilm_dir, name), d / name)
    if "config.json" not in drop:
        cfg = json.load(open(os.path.join(minilm_dir, "config.json")))
        if config == "broken":
            (d / "config.json").write_text("{not json")
        else:
            (d / "config.json").write_text(json.dumps({**cfg, **(config or {})}))
    if vocab is not None:
        os.unlink(d / "vocab.txt")
        (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return str(d)


@pytest.mark.parametrize("case, expected", [
    (dict(drop=("model.safetensors", "vocab.txt")),
     "{d}: missing model.safetensors, vocab.txt; a Hugging Face BERT directory needs config.json, "
     "model.safetensors and vocab.txt."),
    (dict(config={"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}),
     "{d}/config.json: key 'model_type' is 'gpt2' (architectures ['GPT2LMHeadModel']); Lamina loads "
     "BERT-family encoders: expected one of ['bert']."),
    (dict(config={"hidden_act": "swish"}),
     "{d}/config.json: key 'hidden_act' is 'swish'; expected one of ['gelu', 'gelu_fast', 'gelu_new', "
     "'gelu_pytorch_tanh']."),
    (dict(config={"num_hidden_layers": "six"}),
     "{d}/config.json: key 'num_hidden_layers' must be a positive integer. Received: 'six'"),
    (dict(config={"hidden_size": 390}),
     "{d}/config.json: key 'hidden_size' (390) must be a multiple of 'num_attention_heads' (12)."),
    (dict(vocab=["hello", "world"]),
     "{d}/vocab.txt: the vocabulary lacks the special tokens ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']; "
     "a WordPiece vocabulary for a BERT-style encoder needs all of ['[PAD]', '[UNK]', '[CLS]', '[SEP]', "
     "'[MASK]']."),
], ids=["missing_files", "unknown_architecture", "unknown_activation", "bad_key", "heads", "vocab"])
def test_inspect_errors_name_the_file_and_key(minilm_dir, tmp_path, case, expected):
    d = model_copy(minilm_dir, tmp_path, **case)
    with pytest.raises(TextModelError) as info:
        inspect_pretrained(d)
    assert str(info.value) == expected.format(d=d)


def test_shape_mismatch_between_config_and_weights_names_the_tensor(minilm_dir, tmp_path):
    d = model_copy(minilm_dir, tmp_path, config={"intermediate_size": 1024})
    with pytest.raises(TextModelError) as info:
        load_bert_backbone(inspect_pretrained(d))
    assert str(info.value) == (f"{d}/model.safetensors: tensor 'encoder.layer.0.intermediate.dense.weight' has "
                               f"shape (1536, 384), but {d}/config.json implies (384, 1024) for it.")


def test_more_layers_in_config_than_in_the_weights_names_the_missing_tensor(minilm_dir, tmp_path):
    d = model_copy(minilm_dir, tmp_path, config={"num_hidden_layers": 7})
    with pytest.raises(TextModelError, match=r"model.safetensors: no tensor 'encoder.layer.6.attention.self.query"
                                             r".weight' \(looked for \['bert.encoder.layer.6"):
        load_bert_backbone(inspect_pretrained(d))


def test_other_directory_errors(minilm_dir, tmp_path):
    with pytest.raises(TextModelError, match=r"nowhere: no such directory; expected a Hugging Face BERT "
                                             r"directory \(config.json, model.safetensors, vocab.txt\)"):
        inspect_pretrained(str(tmp_path / "nowhere"))
    d = model_copy(minilm_dir, tmp_path, config="broken")
    with pytest.raises(TextModelError, match=r"model/config.json: not valid JSON"):
        inspect_pretrained(d)
    with pytest.raises(TextModelError) as info:
        load_bert_backbone(inspect_pretrained(minilm_dir), max_length=1024)
    assert str(info.value) == f"max_length 1024 exceeds the 512 positions of {minilm_dir}/config.json."
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "vocab.txt"):
        os.symlink(os.path.join(minilm_dir, name), bad / name)
    (bad / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(TextModelError, match=r"bad/model.safetensors: not a readable safetensors file"):
        load_bert_backbone(inspect_pretrained(str(bad)))


# -- schedule and phases -------------------------------------------------------------------------


def test_linear_warmup_then_linear_decay():
    lr = LinearWarmupDecay(1e-3, warmup_steps=10, total_steps=110)
    values = [float(lr(s)) for s in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    assert LinearWarmupDecay(**lr.get_config()).get_config() == lr.get_config()


def text_spec(base_dir, encoder, epochs=2, **training) -> Spec:
    return Spec.from_dict({
        "name": "t", "data": {"path": "t.csv", "label": "topic", "features": {"text": "text"}},
        "model": {"encoders": {"text": encoder}, "combiner": {"hidden_units": []}},
        "training": {"epochs": epochs, "batch_size": 8, "optimizer": "adamw", "learning_rate": 1e-3,
                     "seed": 1, **training}}, base_dir=str(base_dir))


def test_freeze_epochs_train_the_head_first_then_everything(minilm, minilm_dir, tmp_path):
    info, _, tok = minilm
    spec = text_spec(tmp_path, {"type": "bert", "path": minilm_dir, "max_length": 16, "freeze_epochs": 1})
    assert spec.lr_schedule == "linear_warmup_decay"
    features = [FeatureInfo("text", TEXT, vocabulary=info.vocabulary, lowercase=True, max_length=16)]
    model = build_model(spec, features, num_classes=2, compile=False)
    phases = training_phases(model, spec)
    assert [(p.name, p.epochs, p.unfreeze_blocks) for p in phases] == [
        ("head, text encoder frozen", 1, 0), ("all layers", 1, None)]
    x = features[0].tokenizer()(tf.constant(["the storm hit", "the soup was good"] * 8))
    ds = tf.data.Dataset.from_tensor_slices(({"text": x}, np.array([0, 1] * 8))).batch(8).repeat()
    backbone = text_encoders(model)[0].backbone
    before = [w.numpy().copy() for w in backbone.weights]
    head_before = model.get_layer("head").weights[0].numpy().copy()
    after_phase_1 = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                after_phase_1.update(trainable=len(backbone.trainable_weights),
                                     weights=[w.numpy().copy() for w in backbone.weights],
                                     head=model.get_layer("head").weights[0].numpy().copy())

    fit(model, spec, ds, None, steps_per_epoch=2, callbacks=[Snapshot()], stream=open(os.devnull, "w"))
    # Phase 1: the encoder frozen, bit for bit; the head trained.
    assert after_phase_1["trainable"] == 0
    assert all(np.array_equal(a, b) for a, b in zip(after_phase_1["weights"], before))
    assert not np.array_equal(after_phase_1["head"], head_before)
    # Phase 2: the encoder trained too, all but the pooler (mean pooling does not use it).
    moved = [w.path for w, b in zip(backbone.weights, before) if not np.array_equal(w.numpy(), b)]
    assert "token_embedding/embeddings" in moved and "transformer_layer_5/self_attention_layer/query/kernel" in moved
    assert not [p for p in moved if "pooled_dense" in p]


def test_scratch_transformer_has_the_spec_size(tmp_path, minilm):
    info, _, _ = minilm
    spec = text_spec(tmp_path, {"type": "transformer", "num_layers": 3, "num_heads": 4, "hidden_dim": 64,
                                "intermediate_dim": 128, "max_length": 16, "vocabulary": info.vocabulary})
    features = [FeatureInfo("text", TEXT, vocabulary=info.vocabulary, lowercase=True, max_length=16)]
    model = build_model(spec, features, num_classes=3)
    backbone = text_encoders(model)[0].backbone
    assert (backbone.num_layers, backbone.num_heads, backbone.hidden_dim, backbone.intermediate_dim) == (3, 4, 64, 128)
    assert backbone.get_layer("token_embedding").input_dim == 30522
    assert training_phases(model, spec)[0].name == "train"
    assert model.output_shape == (None, 3)


def test_text_encoder_config_round_trip():
    """config -> layer -> config is the identity, and the rebuilt layer computes the same vectors."""
    from lamina.models.text import TextEncoder, build_scratch_backbone
    from lamina.spec import TransformerEncoder

    spec = TransformerEncoder(num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32, max_length=8,
                              dropout=0.0)
    encoder = TextEncoder(build_scratch_backbone(spec, vocabulary_size=50), pooling="cls", dropout=0.25, pad_id=3,
                          name="notes_transformer")
    config = encoder.get_config()
    assert {k: config[k] for k in ("pooling", "dropout", "pad_id", "name")} == {
        "pooling": "cls", "dropout": 0.25, "pad_id": 3, "name": "notes_transformer"}
    rebuilt = TextEncoder.from_config(config)
    assert rebuilt.get_config() == config
    rebuilt.set_weights(encoder.get_weights())
    ids = np.array([[2, 7, 9, 4, 3, 3, 3, 3]], dtype="int32")
    np.testing.assert_allclose(rebuilt(ids).numpy(), encoder(ids).numpy(), atol=1e-6)


def test_text_encoder_rejects_an_unknown_pooling():
    from lamina.models.text import TextEncoder, build_scratch_backbone
    from lamina.spec import TransformerEncoder

    backbone = build_scratch_backbone(TransformerEncoder(num_layers=1, num_heads=2, hidden_dim=16,
                                                         intermediate_dim=32, max_length=8), vocabulary_size=50)
    with pytest.raises(ValueError, match=r"^Received an invalid value for `pooling`, expected 'cls' or 'mean'. "
                                         r"Received: pooling='max'$"):
        TextEncoder(backbone, pooling="max")
