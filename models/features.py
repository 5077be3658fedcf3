"""What the model sees of each feature, shared by Transform, the builder and the export.

Transform writes each input feature under `transformed_name(name)` (`<name>_xf`), so the
raw and the transformed value never shadow each other (TFMA slices on the raw one).
Numeric features come out as z-scored float32, categorical ones as int64 vocabulary
indices with a vocabulary file named after the feature, image features as the encoded
bytes (decoding and resizing happen in tf.data and in the serving graph, not in Transform), text features as
the raw UTF-8 string (tokenized by the model's WordPiece tokenizer, in tf.data and in the serving graph
alike). The label comes out under `transformed_label_key(label)`.
"""

import dataclasses
from typing import Dict, List, Optional

from lamina.pipeline.spec import BertEncoder, FeatureType, Spec

# The feature kinds, as the spec names them.
NUMERIC = FeatureType.NUMERIC.value
CATEGORICAL = FeatureType.CATEGORICAL.value
IMAGE = FeatureType.IMAGE.value
TEXT = FeatureType.TEXT.value
LABEL_VOCABULARY = "__label__"


def transformed_name(name: str) -> str:
    return f"{name}_xf"


def transformed_label_key(label: str) -> str:
    return transformed_name(label)


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """A transformed input feature: its name, kind and, if categorical, how many ids it takes."""

    name: str  # the raw feature name, which is also the model input's name
    kind: str
    vocab_size: int = 0  # categorical only: vocabulary size plus OOV buckets
    image_size: tuple = ()  # image only: (height, width) the model takes
    vocabulary: str = ""  # text only: the WordPiece vocab file
    lowercase: bool = True  # text only
    max_length: int = 0  # text only: token ids per text

    @property
    def dtype(self) -> str:
        return {CATEGORICAL: "int64", TEXT: "int32"}.get(self.kind, "float32")

    @property
    def shape(self) -> tuple:
        """The model input's shape without the batch axis."""
        if self.kind == IMAGE:
            return (*self.image_size, 3)
        return (self.max_length,) if self.kind == TEXT else (1,)

    def tokenizer(self):
        """Text only: the WordPiece tokenizer, shared by tf.data and the serving graph."""
        from lamina.models.text import tokenizer_for

        return tokenizer_for(self.vocabulary, self.lowercase, self.max_length)


def kind_from_dtype(dtype) -> str:
    """Type inference from the schema: integers and floats are numeric, strings categorical."""
    import tensorflow as tf

    return NUMERIC if tf.as_dtype(dtype) in (tf.float32, tf.float64, tf.int32, tf.int64) else CATEGORICAL


def input_feature_names(spec: Spec, raw_columns: List[str]) -> List[str]:
    """The spec's features, or every column but the label when the spec lists none."""
    if spec.data.features:
        return [f.name for f in spec.data.features]
    return sorted(c for c in raw_columns if c != spec.data.label)


def text_feature(spec: Spec, name: str, learned_vocabularies: Optional[Dict[str, str]] = None) -> FeatureInfo:
    """A text feature's FeatureInfo: the pretrained model's vocabulary, the spec's, or a learned one."""
    from lamina.models.text import inspect_pretrained, resolve_path

    cfg = spec.text_encoder(name)
    if isinstance(cfg, BertEncoder):
        info = inspect_pretrained(resolve_path(cfg.path, spec.base_dir))
        return FeatureInfo(name, TEXT, vocabulary=info.vocabulary, lowercase=info.lowercase,
                           max_length=cfg.max_length)
    if cfg.vocabulary:
        vocab = resolve_path(cfg.vocabulary, spec.base_dir)
    elif learned_vocabularies and name in learned_vocabularies:
        vocab = learned_vocabularies[name]
    else:
        raise ValueError(f"text feature {name!r}: no vocabulary; set model.encoders.{name}.vocabulary or learn "
                         f"one from the train split first.")
    return FeatureInfo(name, TEXT, vocabulary=vocab, lowercase=cfg.lowercase, max_length=cfg.max_length)


def describe_transformed_features(spec: Spec, tf_transform_output,
                                  learned_vocabularies: Optional[Dict[str, str]] = None) -> List[FeatureInfo]:
    """Reads the transformed feature spec back into FeatureInfo, in a stable order."""
    import tensorflow as tf

    label_key = transformed_label_key(spec.data.label)
    declared = spec.data.feature_types
    infos = []
    for key, fspec in sorted(tf_transform_output.transformed_feature_spec().items()):
        if key == label_key or not key.endswith("_xf"):
            continue
        name = key[: -len("_xf")]
        if declared.get(name) == IMAGE:
            infos.append(FeatureInfo(name, IMAGE, image_size=tuple(spec.image_encoder(name).image_size)))
        elif declared.get(name) == TEXT:
            infos.append(text_feature(spec, name, learned_vocabularies))
        elif fspec.dtype == tf.int64:
            cfg = spec.encoder_for(name, CATEGORICAL)
            size = tf_transform_output.vocabulary_size_by_name(name) + cfg.num_oov_buckets
            infos.append(FeatureInfo(name, CATEGORICAL, size))
        else:
            infos.append(FeatureInfo(name, NUMERIC))
    return infos


def label_vocabulary(tf_transform_output) -> Optional[List[str]]:
    """The class names, in the order of the model's output units."""
    try:
        vocab = tf_transform_output.vocabulary_by_name(LABEL_VOCABULARY)
    except (ValueError, KeyError, FileNotFoundError):
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in vocab]
