"""What the model sees of each feature, shared by Transform, the builder and the export.

Columns keep the names users gave them (`monthly spend`, `Preis (€)`, `2nd_choice`) in the
examples, in TFMA's slices and in the served signatures. Inside the graph each one has a safe
name (`safe_name`): the name itself when it is already a plain identifier, else an ASCII
rendering plus a short hash of the original, so two names that clean to the same text stay
apart. Transform writes each input feature under `transformed_name(name)` (`<safe name>_xf`), so the
raw and the transformed value never shadow each other (TFMA slices on the raw one).
Numeric features come out as z-scored float32, categorical ones as int64 vocabulary
indices with a vocabulary file named after the feature, image and audio features as the encoded
bytes (decoding and resizing happen in tf.data and in the serving graph, not in Transform), text features as
the raw UTF-8 string (tokenized by the model's WordPiece tokenizer, in tf.data and in the serving graph
alike). The label comes out under `transformed_label_key(label)`.
"""

import dataclasses
import hashlib
import re
import unicodedata
from typing import Dict, List, Optional, Sequence

from lamina.spec import CALENDAR_PARTS, BertEncoder, FeatureType, Spec

# The feature kinds, as the spec names them.
NUMERIC = FeatureType.NUMERIC.value
CATEGORICAL = FeatureType.CATEGORICAL.value
IMAGE = FeatureType.IMAGE.value
TEXT = FeatureType.TEXT.value
DATE = FeatureType.DATE.value
SEQUENCE = FeatureType.SEQUENCE.value
AUDIO = FeatureType.AUDIO.value
LABEL_VOCABULARY = "__label__"
# Calendar parts that wrap around get a sine and a cosine beside their z-score.
CYCLIC_PERIODS = {"month": 12, "day": 31, "day_of_week": 7, "hour": 24}
MISSING_PART = "missing"
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def safe_name(name: str) -> str:
    """A name Keras, TensorFlow and file systems accept for column `name`.

    >>> safe_name("bill_length_mm"), safe_name("monthly spend"), safe_name("Größe")
    ('bill_length_mm', 'monthly_spend_40f087', 'Grosse_d9130a')
    """
    if _IDENTIFIER.match(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name.replace("ß", "ss")).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9]+", "_", ascii_name).strip("_")[:40]
    if not ascii_name or not ascii_name[0].isalpha():
        ascii_name = "f_" + ascii_name
    return f"{ascii_name}_{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"


def transformed_name(name: str, part: str = "") -> str:
    """Transform's output key for column `name` (or one `part` of it, such as its missing indicator)."""
    return f"{safe_name(name)}{'_' + part if part else ''}_xf"


def calendar_width(parts: List[str]) -> int:
    """Values per example a date feature becomes: a z-score per part, plus sin and cos for cyclic ones."""
    return sum(3 if p in CYCLIC_PERIODS else 1 for p in parts)


def transformed_label_key(label: str) -> str:
    return transformed_name(label)


def raw_label_column(spec: Spec) -> str:
    """The raw column of what the model learns to predict: the label, or a forecast's horizon of targets."""
    if spec.task == "forecast":
        from lamina.constants import HORIZON_KEY

        return HORIZON_KEY
    return spec.data.label


def label_key(spec: Spec) -> str:
    """Transform's key of what the model learns to predict (`raw_label_column`, transformed)."""
    return transformed_label_key(raw_label_column(spec))


def forecast_features(spec: Spec, tf_transform_output) -> "List[FeatureInfo]":
    """A forecast's inputs: the target's history, each covariate's steps and the series ID (a category)."""
    fc = spec.forecast
    infos = [FeatureInfo(spec.data.label, SEQUENCE, max_length=fc.lookback)]
    for name in sorted(fc.covariates):
        infos.append(FeatureInfo(name, SEQUENCE, max_length=fc.lookback + (fc.horizon if name in fc.known_future
                                                                           else 0)))
    if fc.series_id:
        cfg = spec.encoder_for(fc.series_id, CATEGORICAL)
        size = tf_transform_output.vocabulary_size_by_name(vocabulary_name(fc.series_id)) + cfg.num_oov_buckets
        infos.append(FeatureInfo(fc.series_id, CATEGORICAL, size))
    return infos


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """A transformed input feature: its name, kind and, if categorical, how many ids it takes."""

    name: str  # the column's name as the data has it
    kind: str
    vocab_size: int = 0  # categorical only: vocabulary size plus OOV buckets
    image_size: tuple = ()  # image only: (height, width) the model takes
    vocabulary: str = ""  # text only: the WordPiece vocab file
    lowercase: bool = True  # text only
    max_length: int = 0  # text: token ids per text; sequence: values per sequence; audio: samples per clip
    sample_rate: int = 0  # audio only: the rate the model takes clips at
    width: int = 1  # date only: calendar values per example
    part: str = ""  # a derived input of the column, such as 'missing' (its 0/1 missing indicator)

    @property
    def key(self) -> str:
        """The model input's name: safe for Keras and TensorFlow whatever the column is called."""
        return safe_name(self.name) + (f"_{self.part}" if self.part else "")

    @property
    def transformed_key(self) -> str:
        return transformed_name(self.name, self.part)

    @property
    def dtype(self) -> str:
        return {CATEGORICAL: "int64", TEXT: "int32"}.get(self.kind, "float32")

    @property
    def shape(self) -> tuple:
        """The model input's shape without the batch axis."""
        if self.kind == IMAGE:
            return (*self.image_size, 3)
        if self.kind == DATE:
            return (self.width,)
        return (self.max_length,) if self.kind in (TEXT, SEQUENCE, AUDIO) else (1,)

    def tokenizer(self):
        """Text only: the WordPiece tokenizer, shared by tf.data and the serving graph."""
        from lamina.models.text import tokenizer_for

        return tokenizer_for(self.vocabulary, self.lowercase, self.max_length)


def kind_from_dtype(dtype) -> str:
    """Type inference from the schema: integers and floats are numeric, strings categorical."""
    import tensorflow as tf

    return NUMERIC if tf.as_dtype(dtype) in (tf.float32, tf.float64, tf.int32, tf.int64) else CATEGORICAL


def input_feature_names(spec: Spec, raw_columns: List[str]) -> List[str]:
    """The spec's features, or every column but the label and the excluded ones when the spec lists none."""
    if spec.data.features:
        return [f.name for f in spec.data.features]
    return sorted(c for c in raw_columns if c != spec.data.label and c not in spec.data.exclude)


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
                                  learned_vocabularies: Optional[Dict[str, str]] = None,
                                  skip_kinds: Sequence[str] = ()) -> List[FeatureInfo]:
    """The model's inputs, read from the spec and the transformed feature spec, in a stable order.

    `skip_kinds` leaves out the features of those kinds (the baselines take tabular ones only).
    """
    import tensorflow as tf

    if spec.task == "forecast":
        return forecast_features(spec, tf_transform_output)
    transformed = tf_transform_output.transformed_feature_spec()
    declared = spec.data.feature_types
    infos = []
    for name in sorted(input_feature_names(spec, list(tf_transform_output.raw_feature_spec()))):
        key = transformed_name(name)
        if key not in transformed:
            continue
        kind = declared.get(name)
        if kind in skip_kinds:
            continue
        if kind == IMAGE:
            infos.append(FeatureInfo(name, IMAGE, image_size=tuple(spec.image_encoder(name).image_size)))
        elif kind == TEXT:
            infos.append(text_feature(spec, name, learned_vocabularies))
        elif kind == AUDIO:
            cfg = spec.audio_encoder(name)
            infos.append(FeatureInfo(name, AUDIO, max_length=cfg.samples, sample_rate=cfg.sample_rate))
        elif kind == SEQUENCE:
            infos.append(FeatureInfo(name, SEQUENCE, max_length=spec.encoder_for(name, SEQUENCE).max_length))
        elif kind == DATE:
            reference = next(f.reference for f in spec.data.features if f.name == name)
            width = calendar_width(spec.encoder_for(name, DATE).parts) + (1 if reference else 0)
            infos.append(FeatureInfo(name, DATE, width=width))
        elif transformed[key].dtype == tf.int64:
            cfg = spec.encoder_for(name, CATEGORICAL)
            size = tf_transform_output.vocabulary_size_by_name(vocabulary_name(name)) + cfg.num_oov_buckets
            infos.append(FeatureInfo(name, CATEGORICAL, size))
        else:
            infos.append(FeatureInfo(name, NUMERIC))
        if transformed_name(name, MISSING_PART) in transformed:
            infos.append(FeatureInfo(name, NUMERIC, part=MISSING_PART))
    return infos


def vocabulary_name(name: str) -> str:
    """The file name of a categorical column's vocabulary in the Transform graph."""
    return safe_name(name)


def label_vocabulary(tf_transform_output) -> Optional[List[str]]:
    """The class names, in the order of the model's output units."""
    try:
        vocab = tf_transform_output.vocabulary_by_name(LABEL_VOCABULARY)
    except (ValueError, KeyError, FileNotFoundError):
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in vocab]
