"""What the model sees of each feature, shared by Transform, the builder and the export.

Transform writes each input feature under `transformed_name(name)` (`<name>_xf`), so the
raw and the transformed value never shadow each other (TFMA slices on the raw one).
Numeric features come out as z-scored float32, categorical ones as int64 vocabulary
indices with a vocabulary file named after the feature, image features as the encoded
bytes (decoding and resizing happen in tf.data and in the serving graph, not in Transform). The label comes out under
`transformed_label_key(label)`.
"""

import dataclasses
from typing import List, Optional, Union

from pipeline.spec import CategoricalEncoder, ImageEncoder, NumericEncoder, Spec

NUMERIC = "numeric"
CATEGORICAL = "categorical"
IMAGE = "image"
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

    @property
    def dtype(self) -> str:
        return "int64" if self.kind == CATEGORICAL else "float32"

    @property
    def shape(self) -> tuple:
        """The model input's shape without the batch axis."""
        return (*self.image_size, 3) if self.kind == IMAGE else (1,)


def encoder_config(spec: Spec, name: str, kind: str) -> Union[NumericEncoder, CategoricalEncoder, ImageEncoder]:
    """The encoder for a feature: by its name, else by its kind, else the kind's default."""
    if kind == IMAGE:
        return spec.image_encoder(name)
    encoders = spec.model.encoders
    cfg = encoders.get(name) or encoders.get(kind)
    if cfg is None:
        cfg = NumericEncoder() if kind == NUMERIC else CategoricalEncoder()
    return cfg


def kind_from_dtype(dtype) -> str:
    """Type inference from the schema: integers and floats are numeric, strings categorical."""
    import tensorflow as tf

    return NUMERIC if tf.as_dtype(dtype) in (tf.float32, tf.float64, tf.int32, tf.int64) else CATEGORICAL


def input_feature_names(spec: Spec, raw_columns: List[str]) -> List[str]:
    """The spec's features, or every column but the label when the spec lists none."""
    if spec.data.features:
        return [f.name for f in spec.data.features]
    return sorted(c for c in raw_columns if c != spec.data.label)


def describe_transformed_features(spec: Spec, tf_transform_output) -> List[FeatureInfo]:
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
        elif fspec.dtype == tf.int64:
            cfg = encoder_config(spec, name, CATEGORICAL)
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
