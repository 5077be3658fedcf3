"""Text: WordPiece tokenization in the graph and Transformer encoders.

Tokenization (`TextTokenizer`): KerasHub's WordPiece tokenizer (tensorflow-text ops) from a
`vocab.txt`, then [CLS] ... [SEP] and padding to the spec's `max_length`. The same object runs in
tf.data for training and inside the exported signatures, so the served model takes raw UTF-8
strings and cannot tokenize differently from training.

Encoders (`build_text_encoder`): a KerasHub `BertBackbone`, either
  - pretrained (`type: bert`), from a Hugging Face directory (config.json, model.safetensors,
    vocab.txt) or a KerasHub preset directory; or
  - from scratch (`type: transformer`): token, position (and segment) embeddings, then N blocks
    of multi-head self-attention and feed-forward with residuals and layer normalization, sized
    by the spec, with a `vocab.txt` of the user's or one learned from the train split.
followed by [CLS] or mean pooling over the non-padding tokens.

Hugging Face weights go through KerasHub 0.25.1's own BERT converter. That converter expects the
`bert.`-prefixed layout with LayerNorm `gamma`/`beta`; checkpoints saved from `BertModel` (such as
sentence-transformers models) have no prefix and name them `weight`/`bias`. `_HFWeights` maps the
converter's key to whichever layout the file has, and checks every shape against the config.
"""

import dataclasses
import functools
import json
import os
from typing import Dict, List, Optional

import keras
import numpy as np

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
PRESET_METADATA_FILE = "metadata.json"  # marks a KerasHub preset directory
PRESET_VOCAB_FILE = os.path.join("assets", "tokenizer", "vocabulary.txt")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
INVALID_UTF8_MESSAGE = "a text input is not valid UTF-8; text features take UTF-8 encoded strings."
BERT_MODEL_TYPES = ("bert",)
# Hugging Face `hidden_act` -> whether GELU is the tanh approximation.
GELU_ACTIVATIONS = {"gelu": False, "gelu_new": True, "gelu_pytorch_tanh": True, "gelu_fast": True}
_REQUIRED_CONFIG_KEYS = ("vocab_size", "num_hidden_layers", "num_attention_heads", "hidden_size",
                         "intermediate_size")


class TextModelError(ValueError):
    """A pretrained text model directory that cannot be loaded; the message names the file and key."""


# -- tokenization --------------------------------------------------------------------------------


def read_vocabulary(path: str) -> List[str]:
    if not os.path.isfile(path):
        raise TextModelError(f"{path}: no such vocabulary file.")
    with open(path, encoding="utf-8") as f:
        vocab = [line.rstrip("\n").rstrip("\r") for line in f]
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise TextModelError(f"{path}: the vocabulary lacks the special tokens {missing}; a WordPiece "
                             f"vocabulary for a BERT-style encoder needs all of {SPECIAL_TOKENS}.")
    return vocab


class TextTokenizer:
    """Strings -> token ids [CLS] w1 ... wn [SEP] [PAD]..., truncated and padded to `max_length`.

    Takes a scalar string (-> [max_length]) or a [batch] string tensor (-> [batch, max_length]),
    int32. Lowercasing also strips accents, as BERT's uncased tokenizer does.
    """

    def __init__(self, vocabulary: str, lowercase: bool, max_length: int):
        import keras_hub

        vocab = read_vocabulary(vocabulary)
        self.max_length = max_length
        self.tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=vocab, lowercase=lowercase, strip_accents=lowercase, dtype="int32")
        self.pad_id = vocab.index("[PAD]")
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=max_length, start_value=vocab.index("[CLS]"), end_value=vocab.index("[SEP]"),
            pad_value=self.pad_id)
        self.vocabulary_size = len(vocab)

    def __call__(self, strings):
        import tensorflow as tf

        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        # Invalid UTF-8 would otherwise be tokenized as replacement characters without a word.
        repaired = tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="replace")
        check = tf.debugging.Assert(tf.reduce_all(tf.equal(repaired, strings)), [INVALID_UTF8_MESSAGE])
        with tf.control_dependencies([check]):
            strings = tf.identity(strings)
        return self.packer(self.tokenizer(strings))


@functools.lru_cache(maxsize=None)
def tokenizer_for(vocabulary: str, lowercase: bool, max_length: int) -> TextTokenizer:
    """One tokenizer per (vocabulary file, lowercase, max_length), shared by tf.data and the export.

    Built eagerly even when first asked for inside a tf.data map or a tf.function, so its
    constants belong to no one graph and every later graph can capture them.
    """
    import tensorflow as tf

    with tf.init_scope():
        return TextTokenizer(vocabulary, lowercase, max_length)


def learn_vocabulary(texts, size: int, lowercase: bool, path: str) -> str:
    """Trains a WordPiece vocabulary of at most `size` tokens (special tokens first) on `texts`.

    `texts`: a tf.data.Dataset of scalar strings. Writes it to `path` and returns the path.
    """
    import keras_hub

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    keras_hub.tokenizers.compute_word_piece_vocabulary(
        texts.batch(1024), vocabulary_size=size, vocabulary_output_file=path, lowercase=lowercase,
        strip_accents=lowercase, reserved_tokens=SPECIAL_TOKENS)
    return path


# -- pretrained model directories ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PretrainedText:
    """What a pretrained text model directory holds, read without loading the weights."""

    path: str
    layout: str  # 'huggingface' or 'keras_hub'
    vocabulary: str  # the vocab file's path
    lowercase: bool
    max_positions: int
    config: Dict


def _load_json(path: str) -> Dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise TextModelError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(data, dict):
        raise TextModelError(f"{path}: expected a JSON object.")
    return data


def inspect_pretrained(path: str) -> PretrainedText:
    """Checks a pretrained directory's files and config; raises TextModelError naming file and key."""
    if not os.path.isdir(path):
        raise TextModelError(f"{path}: no such directory; expected a Hugging Face BERT directory "
                             f"({CONFIG_FILE}, {WEIGHTS_FILE}, {VOCAB_FILE}) or a KerasHub preset directory.")
    if os.path.isfile(os.path.join(path, PRESET_METADATA_FILE)):
        return _inspect_keras_hub_preset(path)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE) if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise TextModelError(f"{path}: missing {', '.join(missing)}; a Hugging Face BERT directory needs "
                             f"{CONFIG_FILE}, {WEIGHTS_FILE} and {VOCAB_FILE}.")
    config_path = os.path.join(path, CONFIG_FILE)
    config = _load_json(config_path)
    model_type = config.get("model_type")
    if model_type not in BERT_MODEL_TYPES:
        archs = config.get("architectures")
        raise TextModelError(f"{config_path}: key 'model_type' is {model_type!r}"
                             + (f" (architectures {archs})" if archs else "")
                             + f"; Lamina loads BERT-family encoders: expected one of {list(BERT_MODEL_TYPES)}.")
    for key in _REQUIRED_CONFIG_KEYS:
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise TextModelError(f"{config_path}: key {key!r} must be a positive integer. "
                                 f"Received: {config.get(key)!r}")
    act = config.get("hidden_act", "gelu")
    if act not in GELU_ACTIVATIONS:
        raise TextModelError(f"{config_path}: key 'hidden_act' is {act!r}; expected one of "
                             f"{sorted(GELU_ACTIVATIONS)}.")
    pos = config.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise TextModelError(f"{config_path}: key 'position_embedding_type' is {pos!r}; expected 'absolute'.")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise TextModelError(f"{config_path}: key 'hidden_size' ({config['hidden_size']}) must be a multiple of "
                             f"'num_attention_heads' ({config['num_attention_heads']}).")
    vocab_path = os.path.join(path, VOCAB_FILE)
    vocab = read_vocabulary(vocab_path)
    if len(vocab) > config["vocab_size"]:
        raise TextModelError(f"{vocab_path}: {len(vocab)} tokens, more than key 'vocab_size' "
                             f"({config['vocab_size']}) of {config_path}.")
    lowercase = True
    tok_config = os.path.join(path, TOKENIZER_CONFIG_FILE)
    if os.path.isfile(tok_config):
        lowercase = bool(_load_json(tok_config).get("do_lower_case", True))
    return PretrainedText(path, "huggingface", vocab_path, lowercase,
                          int(config.get("max_position_embeddings", 512)), config)


def _inspect_keras_hub_preset(path: str) -> PretrainedText:
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise TextModelError(f"{path}: missing {CONFIG_FILE}; a KerasHub preset directory needs it beside "
                             f"{PRESET_METADATA_FILE}.")
    config = _load_json(config_path)
    class_name = config.get("class_name")
    if class_name != "BertBackbone":
        raise TextModelError(f"{config_path}: key 'class_name' is {class_name!r}; Lamina loads KerasHub "
                             f"presets of 'BertBackbone'.")
    vocab_path = os.path.join(path, PRESET_VOCAB_FILE)
    read_vocabulary(vocab_path)
    lowercase = False
    tok_path = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tok_path):
        lowercase = bool(_load_json(tok_path).get("config", {}).get("lowercase", False))
    inner = config.get("config", {})
    return PretrainedText(path, "keras_hub", vocab_path, lowercase, int(inner.get("max_sequence_length", 512)),
                          inner)


class _HFWeights:
    """Hands KerasHub's BERT converter the tensors of a safetensors file, whatever its layout.

    The converter asks for `bert.encoder.layer.0....LayerNorm.gamma`; the file may hold that key
    or `encoder.layer.0....LayerNorm.weight`. Every tensor is checked against the variable's
    shape before it is assigned. The pooler is optional (sentence encoders often drop it).
    """

    OPTIONAL_PREFIXES = ("bert.pooler.",)

    def __init__(self, path: str):
        from safetensors import safe_open

        self.file = os.path.join(path, WEIGHTS_FILE)
        self.config_file = os.path.join(path, CONFIG_FILE)
        try:
            self._handle = safe_open(self.file, framework="np")
            self._keys = set(self._handle.keys())
        except Exception as e:  # safetensors raises its own error types for a corrupt header
            raise TextModelError(f"{self.file}: not a readable safetensors file ({e}).") from None
        self.used = set()

    def candidates(self, key: str) -> List[str]:
        bare = key[len("bert."):] if key.startswith("bert.") else key
        names = []
        for k in (key, bare):
            names.append(k)
            if k.endswith(".gamma"):
                names.append(k[: -len("gamma")] + "weight")
            if k.endswith(".beta"):
                names.append(k[: -len("beta")] + "bias")
        return list(dict.fromkeys(names))

    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        names = self.candidates(hf_weight_key)
        found = next((n for n in names if n in self._keys), None)
        if found is None:
            if hf_weight_key.startswith(self.OPTIONAL_PREFIXES):
                return
            raise TextModelError(f"{self.file}: no tensor {names[-1]!r} (looked for {names}); the file does not "
                                 f"hold a BERT encoder of the size {self.config_file} gives.")
        tensor = self._handle.get_tensor(found)
        shape = tuple(keras_variable.shape)
        expected_numel = int(np.prod(shape))
        if tensor.size != expected_numel or (hook_fn is None and tuple(tensor.shape) != shape):
            raise TextModelError(f"{self.file}: tensor {found!r} has shape {tuple(tensor.shape)}, but "
                                 f"{self.config_file} implies {shape} for it.")
        if hook_fn is not None:
            tensor = hook_fn(tensor, list(shape))
        keras_variable.assign(np.asarray(tensor, dtype=np.float32).reshape(shape))
        self.used.add(found)


def _set_gelu(backbone, approximate: bool) -> None:
    """KerasHub's BertBackbone uses tanh-approximated GELU; BERT's `hidden_act: gelu` is exact.

    KerasHub exposes no argument for it, so the private dense layer is set (keras-hub is pinned;
    the golden test against Hugging Face fails if this stops taking effect).
    """
    activation = functools.partial(keras.activations.gelu, approximate=approximate)
    for layer in backbone.transformer_layers:
        layer._feedforward_intermediate_dense.activation = activation


def _all_layers(model: keras.layers.Layer) -> List[keras.layers.Layer]:
    """Every layer nested in `model`. Keras has no public recursive walk; `_flatten_layers` is what
    Keras itself uses for it (exercised by every text test)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def _set_layer_norm_epsilon(backbone, epsilon: float) -> None:
    for layer in _all_layers(backbone):
        if isinstance(layer, keras.layers.LayerNormalization):
            layer.epsilon = epsilon


def load_bert_backbone(info: PretrainedText, max_length: Optional[int] = None):
    """A KerasHub BertBackbone with the directory's weights (and the dropout its config gives)."""
    import keras_hub

    if max_length is not None and max_length > info.max_positions:
        raise TextModelError(f"max_length {max_length} exceeds the {info.max_positions} positions of "
                             f"{os.path.join(info.path, CONFIG_FILE)}.")
    if info.layout == "keras_hub":
        return keras_hub.models.BertBackbone.from_preset(info.path)
    # KerasHub's own Hugging Face converter, from its private module: keras-hub is pinned (0.25.1)
    # and tests/models/test_text.py checks the result against the Hugging Face reference.
    from keras_hub.src.utils.transformers import convert_bert

    cfg = info.config
    kwargs = convert_bert.convert_backbone_config(cfg)
    backbone = keras_hub.models.BertBackbone(
        **kwargs,
        dropout=cfg.get("hidden_dropout_prob", 0.1),
        max_sequence_length=info.max_positions,
        num_segments=int(cfg.get("type_vocab_size", 2)),
    )
    _set_gelu(backbone, GELU_ACTIVATIONS[cfg.get("hidden_act", "gelu")])
    _set_layer_norm_epsilon(backbone, float(cfg.get("layer_norm_eps", 1e-12)))
    weights = _HFWeights(info.path)
    convert_bert.convert_weights(backbone, weights, cfg)
    return backbone


def build_scratch_backbone(config, vocabulary_size: int):
    """A randomly initialised BERT-style encoder of the spec's size (KerasHub's BertBackbone)."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, num_layers=config.num_layers, num_heads=config.num_heads,
        hidden_dim=config.hidden_dim, intermediate_dim=config.intermediate_dim, dropout=config.dropout,
        max_sequence_length=config.max_length, num_segments=1)
    _set_gelu(backbone, approximate=False)
    return backbone


# -- the encoder layer ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="lamina")
class TextEncoder(keras.layers.Layer):
    """Token ids [batch, L] -> one vector per text: the backbone, then [CLS] or mean pooling.

    Padding (`pad_id`) is masked in attention and left out of the mean.
    """

    def __init__(self, backbone, pooling: str = "mean", dropout: float = 0.0, pad_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("cls", "mean"):
            raise ValueError(f"Received an invalid value for `pooling`, expected 'cls' or 'mean'. "
                             f"Received: pooling={pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.pad_id = pad_id
        self.dropout_rate = dropout
        self.dropout = keras.layers.Dropout(dropout) if dropout else None
        set_encoder_trainable(self, True)

    def get_config(self):
        config = super().get_config()
        config.update(backbone=keras.saving.serialize_keras_object(self.backbone), pooling=self.pooling,
                      dropout=self.dropout_rate, pad_id=self.pad_id)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def call(self, token_ids, training=None):
        token_ids = keras.ops.cast(token_ids, "int32")
        mask = keras.ops.cast(keras.ops.not_equal(token_ids, self.pad_id), "int32")
        out = self.backbone({"token_ids": token_ids, "segment_ids": keras.ops.zeros_like(token_ids),
                             "padding_mask": mask}, training=training)
        seq = out["sequence_output"]
        if self.pooling == "cls":
            x = seq[:, 0, :]
        else:
            m = keras.ops.expand_dims(keras.ops.cast(mask, seq.dtype), -1)
            x = keras.ops.sum(seq * m, axis=1) / keras.ops.maximum(keras.ops.sum(m, axis=1), 1.0)
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.backbone.hidden_dim)


def set_encoder_trainable(encoder: TextEncoder, trainable: bool) -> None:
    """(Un)freezes the encoder's backbone. BERT's pooler stays frozen: pooling here does not use it."""
    encoder.backbone.trainable = trainable
    try:
        encoder.backbone.get_layer("pooled_dense").trainable = False
    except ValueError:
        pass


def text_encoders(model: keras.Model) -> List[TextEncoder]:
    return [layer for layer in _all_layers(model) if isinstance(layer, TextEncoder)]


def build_text_encoder(name: str, config, vocabulary_size: int, pad_id: int,
                       base_dir: Optional[str] = None) -> TextEncoder:
    """The encoder of text feature `name` from its spec (`BertEncoder` or `TransformerEncoderSpec`)."""
    if config.type == "bert":
        info = inspect_pretrained(resolve_path(config.path, base_dir))
        backbone = load_bert_backbone(info, max_length=config.max_length)
    else:
        backbone = build_scratch_backbone(config, vocabulary_size)
    return TextEncoder(backbone, pooling=config.pooling, dropout=config.dropout, pad_id=pad_id,
                       name=f"{name}_{config.type}")


def resolve_path(path: str, base_dir: Optional[str] = None) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.abspath(os.path.join(base_dir or os.getcwd(), path))
