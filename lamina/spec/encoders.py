"""Encoder specs, and the one table that registers them.

An encoder spec is a section class with a `type` literal (the names it answers to in YAML) and
a `feature_type` (the kind of feature it encodes). `ENCODERS` lists them; everything else is
derived from that table: the discriminated union `model.encoders` validates against, the
allowed names in error messages, the checks that match encoders to features, and the default
encoder of each feature type. The Keras side looks the builder up by class
(`lamina.models.encoders.ENCODER_BUILDERS`). Adding an encoder is one class here, one entry in
`ENCODERS`, and its builder.
"""

import typing
from typing import Annotated, Any, ClassVar, Dict, List, Literal, Optional, Tuple, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from lamina.spec.base import StrictModel
from lamina.spec.data import FeatureType
from lamina.spec.errors import UNKNOWN_TYPE_ERROR


class EncoderConfig(StrictModel):
    """Base of the encoder specs. `feature_type`: what it encodes (`also_encodes`: further feature
    types it takes); `is_default`: used when the spec names no encoder for a feature of
    `feature_type`."""

    feature_type: ClassVar[FeatureType]
    also_encodes: ClassVar[Tuple[FeatureType, ...]] = ()
    is_default: ClassVar[bool] = False

    @classmethod
    def type_names(cls) -> Tuple[str, ...]:
        """The `type` values this class answers to."""
        return typing.get_args(cls.model_fields["type"].annotation)

    @classmethod
    def encodes(cls, feature_type: Union[FeatureType, str]) -> bool:
        """Whether this encoder takes features of `feature_type`."""
        return FeatureType(feature_type) in (cls.feature_type, *cls.also_encodes)


class NumericEncoder(EncoderConfig):
    """Numeric features arrive z-scored by Transform; `dense` adds a projection."""

    feature_type: ClassVar[FeatureType] = FeatureType.NUMERIC
    is_default: ClassVar[bool] = True
    type: Literal["normalized", "dense"] = "normalized"
    units: int = Field(default=8, ge=1, le=4096)


class CategoricalEncoder(EncoderConfig):
    """Categorical features arrive as vocabulary indices from Transform."""

    feature_type: ClassVar[FeatureType] = FeatureType.CATEGORICAL
    is_default: ClassVar[bool] = True
    type: Literal["embedding", "one_hot"] = "embedding"
    dim: int = Field(default=4, ge=1, le=1024)
    num_oov_buckets: int = Field(default=1, ge=0, le=1000)
    top_k: Optional[int] = Field(default=None, ge=1, description="Keep only the k most frequent values.")


CALENDAR_PARTS = ("year", "month", "day", "day_of_week", "hour")


class CalendarEncoder(EncoderConfig):
    """A date or timestamp as calendar features: each part z-scored, the cyclic ones also as
    sine and cosine (December sits next to January)."""

    feature_type: ClassVar[FeatureType] = FeatureType.DATE
    is_default: ClassVar[bool] = True
    type: Literal["calendar"] = "calendar"
    parts: List[Literal[CALENDAR_PARTS]] = Field(default_factory=lambda: ["year", "month", "day_of_week", "hour"])

    @field_validator("parts")
    @classmethod
    def _check_parts(cls, v: List[str]) -> List[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"expected a non-empty list of distinct parts from {list(CALENDAR_PARTS)}. Received: {v}")
        return v


class AugmentationSpec(StrictModel):
    """Random image augmentation, applied in training only (Keras preprocessing layers)."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: float = Field(default=0.0, ge=0.0, le=0.5, description="Fraction of a full turn, either way.")
    zoom: float = Field(default=0.0, ge=0.0, lt=1.0)
    contrast: float = Field(default=0.0, ge=0.0, lt=1.0)

    @property
    def enabled(self) -> bool:
        return self.flip != "none" or bool(self.rotation or self.zoom or self.contrast)


RESNET_ARCHITECTURES = ("resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
                        "resnet_small")


class ImageEncoder(EncoderConfig):
    """A ResNet backbone on decoded, resized RGB images, global-average pooled.

    `weights`: 'imagenet' (through the Keras cache, KERAS_HOME), 'random', a Keras weights
    file (.weights.h5 or .h5), or the pushed model of an earlier Lamina run (its model
    directory or one version directory), whose backbone is loaded.
    """

    feature_type: ClassVar[FeatureType] = FeatureType.IMAGE
    is_default: ClassVar[bool] = True
    type: Literal["resnet"] = "resnet"
    architecture: Literal[RESNET_ARCHITECTURES] = "resnet50"
    weights: str = "imagenet"
    image_size: List[int] = Field(default_factory=lambda: [224, 224], description="[height, width] after resizing.")
    width: int = Field(default=16, ge=4, le=512, description="resnet_small only: filters of the first stage.")
    augmentation: AugmentationSpec = Field(default_factory=AugmentationSpec)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    frozen: bool = Field(default=False, description="With pretrained weights: keep the whole backbone frozen, also "
                                                     "in training.fine_tune's phase (a fixed feature extractor).")

    @field_validator("image_size")
    @classmethod
    def _check_size(cls, v: List[int]) -> List[int]:
        if len(v) != 2 or any(s < 8 or s > 4096 for s in v):
            raise ValueError(f"expected [height, width], each between 8 and 4096. Received: {v}")
        return v

    @property
    def pretrained(self) -> bool:
        return self.weights != "random"


class AudioAugmentationSpec(StrictModel):
    """Random audio augmentation, in training only: a circular time shift and Gaussian noise on the
    waveform, then SpecAugment-style masks (one band of mel bins, one run of frames) on the spectrogram."""

    time_shift: float = Field(default=0.0, ge=0.0, le=0.5, description="Fraction of the clip, either way.")
    noise: float = Field(default=0.0, ge=0.0, le=1.0, description="Noise standard deviation (samples are in "
                         "[-1, 1]).")
    freq_mask: int = Field(default=0, ge=0, le=512, description="Up to this many mel bins masked.")
    time_mask: int = Field(default=0, ge=0, le=10000, description="Up to this many frames masked.")

    @property
    def enabled(self) -> bool:
        return bool(self.time_shift or self.noise or self.freq_mask or self.time_mask)


class AudioEncoder(EncoderConfig):
    """An audio clip as a log-mel spectrogram (or MFCCs), then a network over it.

    The clip is decoded from WAV bytes in the graph, mixed down to mono, cut or zero-padded to
    `seconds` at its own rate and resampled to `sample_rate` (FFT resampling, as
    scipy.signal.resample). Frames of `frame_ms` every `hop_ms`, a periodic Hann window, and
    `mel_bins` HTK mel bands from `fmin` to `fmax` (default: half the rate).

    `audio_cnn`: four blocks of 3x3 convolutions (`width`, 2x, 4x, 4x filters), batch norm and
    max pooling, then each frequency band's mean and standard deviation over time (statistics
    pooling), beside the same statistics of the spectrogram itself. `audio_resnet`: the spectrogram as an image (resized to `image_size`, scaled to
    [0, 255], grey in three channels) through the image encoders' ResNet `architecture` with
    `weights` ('random', 'imagenet', a file or a Lamina model).
    """

    feature_type: ClassVar[FeatureType] = FeatureType.AUDIO
    is_default: ClassVar[bool] = True
    type: Literal["audio_cnn", "audio_resnet"] = "audio_cnn"
    sample_rate: int = Field(default=16000, ge=1000, le=192000)
    seconds: float = Field(default=1.0, gt=0.0, le=60.0, description="Clip length the model takes.")
    frame_ms: float = Field(default=25.0, ge=1.0, le=1000.0)
    hop_ms: float = Field(default=10.0, ge=1.0, le=1000.0)
    mel_bins: int = Field(default=64, ge=4, le=512)
    fmin: float = Field(default=20.0, ge=0.0)
    fmax: Optional[float] = Field(default=None, gt=0.0)
    features: Literal["log_mel", "mfcc"] = "log_mel"
    mfcc: int = Field(default=20, ge=1, le=512, description="mfcc only: coefficients kept.")
    width: int = Field(default=16, ge=4, le=512, description="Filters of the first block (audio_cnn), or of "
                       "resnet_small's first stage.")
    architecture: Literal[RESNET_ARCHITECTURES] = Field(default="resnet_small", description="audio_resnet only.")
    weights: str = Field(default="random", description="audio_resnet only.")
    image_size: List[int] = Field(default_factory=lambda: [64, 96], description="audio_resnet only: [height, "
                                  "width] of the spectrogram image.")
    augmentation: AudioAugmentationSpec = Field(default_factory=AudioAugmentationSpec)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_frames(self) -> "AudioEncoder":
        nyquist = self.sample_rate / 2
        if self.fmax is not None and self.fmax > nyquist:
            raise ValueError(f"fmax ({self.fmax:g} Hz) must be at most half the sample rate ({nyquist:g} Hz).")
        if self.fmin >= (self.fmax or nyquist):
            raise ValueError(f"fmin ({self.fmin:g} Hz) must be below fmax ({self.fmax or nyquist:g} Hz).")
        if self.hop_ms > self.frame_ms:
            raise ValueError(f"hop_ms ({self.hop_ms:g}) must be at most frame_ms ({self.frame_ms:g}).")
        if self.frame_ms > self.seconds * 1000:
            raise ValueError(f"frame_ms ({self.frame_ms:g}) must fit in the clip (seconds: {self.seconds:g}).")
        if self.features == "mfcc" and self.mfcc > self.mel_bins:
            raise ValueError(f"mfcc ({self.mfcc}) must be at most mel_bins ({self.mel_bins}).")
        if len(self.image_size) != 2 or any(s < 8 or s > 4096 for s in self.image_size):
            raise ValueError(f"image_size: expected [height, width], each between 8 and 4096. "
                             f"Received: {self.image_size}")
        return self

    @property
    def samples(self) -> int:
        """Samples per clip at `sample_rate`."""
        return int(round(self.seconds * self.sample_rate))

    def image_encoder(self) -> ImageEncoder:
        """audio_resnet: the image encoder its spectrogram image goes through."""
        return ImageEncoder(architecture=self.architecture, weights=self.weights, image_size=self.image_size,
                            width=self.width, dropout=self.dropout)


class TextEncoderConfig(EncoderConfig):
    """What every text encoder takes: its token budget, its pooling and dropout on the pooled vector."""

    feature_type: ClassVar[FeatureType] = FeatureType.TEXT
    max_length: int = Field(default=128, ge=4, le=8192, description="Tokens per text, [CLS] and [SEP] included; "
                            "longer texts are truncated.")
    pooling: Literal["cls", "mean"] = Field(default="mean", description="[CLS] token or mean of the tokens.")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="On the pooled vector, in training only.")


class BertEncoder(TextEncoderConfig):
    """A pretrained BERT-family encoder from a local directory, fine-tuned with the head.

    `path`: a Hugging Face directory (config.json, model.safetensors, vocab.txt; keys with or
    without the `bert.` prefix) or a KerasHub preset directory of a BertBackbone. Relative paths
    are resolved against the spec's folder; `~` is expanded. `freeze_epochs`: train only the head
    for the first N epochs, then everything.
    """

    type: Literal["bert"] = "bert"
    path: str
    freeze_epochs: int = Field(default=0, ge=0, le=100000)
    frozen: bool = Field(default=False, description="Never fine-tune it: only the layers after it train.")

    @model_validator(mode="after")
    def _frozen_or_phased(self) -> "BertEncoder":
        if self.frozen and self.freeze_epochs:
            raise ValueError("`frozen: true` keeps the encoder frozen for every epoch; drop freeze_epochs, or "
                             "frozen to fine-tune it after freeze_epochs.")
        return self


class TransformerEncoder(TextEncoderConfig):
    """A Transformer encoder trained from scratch: token and position embeddings, then
    `num_layers` blocks of multi-head self-attention and feed-forward (residuals, layer norm).

    `vocabulary`: a WordPiece vocab.txt; omitted, one of `vocabulary_size` tokens is learned
    from the train split.
    """

    also_encodes: ClassVar[Tuple[FeatureType, ...]] = (FeatureType.SEQUENCE,)
    is_default: ClassVar[bool] = True
    type: Literal["transformer"] = "transformer"
    num_layers: int = Field(default=2, ge=1, le=48)
    num_heads: int = Field(default=4, ge=1, le=64)
    hidden_dim: int = Field(default=128, ge=8, le=8192)
    intermediate_dim: int = Field(default=512, ge=8, le=32768)
    vocabulary: Optional[str] = None
    vocabulary_size: int = Field(default=8000, ge=100, le=1_000_000)
    lowercase: bool = True

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerEncoder":
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be a multiple of num_heads ({self.num_heads}).")
        return self


class SequenceEncoder(EncoderConfig):
    """A recurrent or convolutional encoder of a sequence feature, or of a text's tokens.

    `lstm`, `gru`: `layers` stacked recurrent layers of `units` each (both directions with
    `bidirectional`: 2 x `units` wide); the last one's final state, at each sequence's own end,
    is the encoding. `conv1d`: `layers` 1-D convolutions of `units` filters and width
    `kernel_size`, then the mean over the sequence's steps. Padding is masked in every case.

    A sequence feature keeps its last `max_length` values. A text feature is WordPiece-tokenized
    to `max_length` tokens (`vocabulary`, or one of `vocabulary_size` tokens learned from the train
    split, as the scratch Transformer's is) and embedded in `embedding_dim` before the layers.
    """

    feature_type: ClassVar[FeatureType] = FeatureType.SEQUENCE
    also_encodes: ClassVar[Tuple[FeatureType, ...]] = (FeatureType.TEXT,)
    is_default: ClassVar[bool] = True
    type: Literal["lstm", "gru", "conv1d"] = "lstm"
    units: int = Field(default=32, ge=1, le=4096)
    layers: int = Field(default=1, ge=1, le=16)
    bidirectional: bool = False
    kernel_size: int = Field(default=3, ge=1, le=64, description="conv1d only.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="On each layer's inputs, in training only.")
    max_length: int = Field(default=64, ge=2, le=8192, description="Values per sequence (the last ones), or "
                            "tokens per text.")
    embedding_dim: int = Field(default=32, ge=2, le=4096, description="Text only.")
    vocabulary: Optional[str] = Field(default=None, description="Text only: a WordPiece vocab.txt.")
    vocabulary_size: int = Field(default=8000, ge=100, le=1_000_000, description="Text only.")
    lowercase: bool = True

    @model_validator(mode="after")
    def _check_direction(self) -> "SequenceEncoder":
        if self.type == "conv1d" and self.bidirectional:
            raise ValueError("`bidirectional` is for 'lstm' and 'gru'; a convolution already sees both sides.")
        return self


# The registry: every encoder spec, once.
ENCODERS: Tuple[type, ...] = (NumericEncoder, CategoricalEncoder, ImageEncoder, BertEncoder, TransformerEncoder,
                               CalendarEncoder, SequenceEncoder, AudioEncoder)

# -- derived from ENCODERS ----------------------------------------------------------------------

ENCODER_TYPES: Dict[str, type] = {name: cls for cls in ENCODERS for name in cls.type_names()}


def encoders_for(feature_type: Union[FeatureType, str]) -> Tuple[type, ...]:
    """The encoder classes that encode features of `feature_type`."""
    return tuple(c for c in ENCODERS if c.encodes(feature_type))


def encoder_names(feature_type: Union[FeatureType, str]) -> List[str]:
    """The `type` names a feature of `feature_type` accepts, in registry order."""
    return [name for cls in encoders_for(feature_type) for name in cls.type_names()]


def default_encoder(feature_type: Union[FeatureType, str]) -> EncoderConfig:
    """The encoder a feature of `feature_type` gets when the spec names none."""
    return next(c for c in ENCODERS if c.is_default and c.feature_type == FeatureType(feature_type))()


def _encoder_tag(v: Any) -> Optional[str]:
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    cls = ENCODER_TYPES.get(t) if isinstance(t, str) else None
    return cls.__name__ if cls else None


EncoderSpec = Annotated[
    Union[tuple(Annotated[cls, Tag(cls.__name__)] for cls in ENCODERS)],
    Discriminator(_encoder_tag, custom_error_type=UNKNOWN_TYPE_ERROR, custom_error_message="unknown encoder type"),
]

for _type in FeatureType:  # a new feature type or encoder must keep this true
    if len([c for c in ENCODERS if c.is_default and c.feature_type == _type]) != 1:
        raise TypeError(f"feature type {_type.value!r} needs exactly one default encoder in ENCODERS")
