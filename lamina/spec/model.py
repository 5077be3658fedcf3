"""The model section: per-feature encoders, a combiner that fuses them, and a head."""

from typing import Dict, List, Literal, Optional

from pydantic import Field, field_validator

from lamina.spec.base import StrictModel
from lamina.spec.encoders import EncoderSpec


class CombinerSpec(StrictModel):
    """Fuses the encoded features, then a dense stack (`hidden_units`).

    `concat`: side by side. `gated`: each encoding projected to `dim` and scaled by a learned gate
    per modality and example. `attention`: each encoding projected to `dim` is a token, and
    `heads`-head self-attention runs across them (cross-modal attention). `skip`: the head sees the
    fused encodings beside the dense stack's output, so the network holds a linear model of them
    (wide & deep).
    """

    type: Literal["concat", "gated", "attention"] = "concat"
    dim: int = Field(default=32, ge=1, le=4096, description="gated and attention: the width of each modality's "
                                                            "projection.")
    heads: int = Field(default=4, ge=1, le=64, description="attention only.")
    hidden_units: List[int] = Field(default_factory=lambda: [32, 16])
    activation: Literal["relu", "gelu", "tanh", "selu", "swish"] = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    skip: bool = Field(default=False, description="The head also sees the fused encodings (a linear path beside "
                                                  "the dense stack, as in wide & deep).")

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, v: List[int]) -> List[int]:
        bad = [u for u in v if u < 1]
        if bad:
            raise ValueError(f"expected positive integers. Received: {bad}")
        return v


class HeadSpec(StrictModel):
    """The task head: what is predicted and how. `forecast` answers every step of the horizon
    (the `forecast` section), in the target's own units."""

    type: Literal["classification", "regression", "forecast"] = "classification"
    units: Optional[int] = Field(default=None, ge=1, le=65536, description="Width of an extra hidden layer.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    standardize: bool = Field(
        default=True,
        description="regression: the network predicts the label in standard units (the train split's mean and "
                    "standard deviation) and its last layer maps the answer back to the label's units. Answers "
                    "and metrics are in the label's units either way.")
    linear_start: bool = Field(
        default=False,
        description="Tabular features, classification or regression: the network starts as the linear model "
                    "(logistic or ridge regression, fitted on the train split first) and learns what it misses. "
                    "Its head starts at zero and adds to the linear model's scores, and early stopping keeps the "
                    "start when no epoch beats it on the eval split.")


class ModelSpec(StrictModel):
    """Per-feature encoders, a combiner that fuses them, and a head."""

    type: Literal["network", "gbt", "blend", "auto"] = Field(
        default="network",
        description="network: the Keras network. gbt: gradient-boosted trees (scikit-learn's HistGradientBoosting) "
                    "on the same Transform output, exported as a TensorFlow graph with the same signatures. blend: "
                    "both, and their answers averaged (probabilities or values) in one model. auto: the network, the "
                    "trees, the linear model and the average, scored on the eval split by the first of "
                    "evaluation.metrics. The network is exported unless another's lead over it is significant (more "
                    "than 2.13 standard errors of the difference, bootstrapped over the eval rows: one-sided 5%, "
                    "Bonferroni over the three); then the best of those whose lead is. Trees take tabular features "
                    "only (numbers, categories, dates, sequences).")
    encoders: Dict[str, EncoderSpec] = Field(
        default_factory=dict,
        description="Encoder per feature name, or per feature type (`numeric`, `categorical`) as a default.",
    )
    combiner: CombinerSpec = Field(default_factory=CombinerSpec)
    head: HeadSpec = Field(default_factory=HeadSpec)

