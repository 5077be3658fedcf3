"""The training section: epochs, batches, the optimizer and its schedule, fine-tuning."""

from typing import Dict, Literal, Optional, Union

from pydantic import Field, field_validator

from lamina.spec.base import StrictModel


class EarlyStoppingSpec(StrictModel):
    monitor: str = "val_loss"
    patience: int = Field(default=3, ge=0)
    min_delta: float = Field(default=0.0, ge=0.0)


class FineTuneSpec(StrictModel):
    """Phase 2 of transfer learning: unfreeze the top blocks of a pretrained backbone.

    Phase 1 (training.epochs at training.learning_rate) trains the head with the backbone
    frozen. Phase 2 unfreezes the top `unfreeze_blocks` residual blocks (BatchNorm stays in
    inference mode and frozen) and continues at the lower `learning_rate`.
    """

    epochs: int = Field(default=0, ge=0, le=100000)
    learning_rate: float = Field(default=1e-4, gt=0.0, le=10.0)
    unfreeze_blocks: int = Field(default=2, ge=1, le=1000)


class TrainingSpec(StrictModel):
    epochs: int = Field(default=20, ge=1, le=100000)
    steps_per_epoch: Optional[int] = Field(default=None, ge=1, description="Default: one pass over the train split.")
    batch_size: int = Field(default=32, ge=1, le=1_000_000)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=1e-2, gt=0.0, le=10.0)
    early_stopping: Optional[EarlyStoppingSpec] = None
    seed: int = 42
    mixed_precision: Literal["auto", "on", "off"] = "auto"
    jit_compile: bool = False
    fine_tune: Optional[FineTuneSpec] = None
    lr_schedule: Optional[Literal["constant", "linear_warmup_decay"]] = Field(
        default=None, description="Default: linear_warmup_decay for text encoders, constant otherwise.")
    warmup_fraction: float = Field(default=0.1, ge=0.0, lt=1.0, description="Share of the steps spent warming up.")
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0, description="adamw only; not on biases and norms.")
    class_weights: Union[Literal["auto", "balanced", "none"], Dict[str, float]] = Field(
        default="auto", description="Classification: 'auto' weighs classes as 'balanced' does (n / (k * count)) when "
        "the rarest class is under 20% of the train split, else not at all; or one weight per class name.")

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, v):
        if isinstance(v, dict):
            bad = {k: w for k, w in v.items() if not w > 0}
            if bad or not v:
                raise ValueError(f"expected a positive weight per class name. Received: {v}")
        return v

