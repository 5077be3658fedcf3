"""The training section: epochs, batches, the optimizer and its schedule, fine-tuning."""

from typing import Dict, List, Literal, Optional, Union

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


STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


class DistributionSpec(StrictModel):
    """Where the Trainer's steps run: one device, several devices of one machine, or several machines.

    - `auto`: every GPU under MirroredStrategy when there are several, else one device.
    - `one_device`: one device, even when more are present.
    - `mirrored`: MirroredStrategy and Keras' `fit` over `devices` devices of one machine (default: every
      GPU). Without GPUs the CPU is split into `devices` logical devices, which must be configured
      before TensorFlow starts, so the Trainer then runs in a fresh process.
    - `multi_worker`: `workers` processes, each with a MultiWorkerMirroredStrategy, running Lamina's own
      training loop (Keras 3's `fit` does not work under that strategy: keras-team/keras#20585).

    `training.batch_size` is per replica: a step's global batch is batch_size x replicas (devices x workers).
    """

    strategy: Literal[STRATEGIES] = "auto"
    devices: Optional[int] = Field(default=None, ge=1, le=64, description="mirrored: devices per machine "
                                   "(default: every GPU; on a CPU-only machine, logical CPU devices, default 2).")
    workers: int = Field(default=2, ge=1, le=256, description="multi_worker: how many worker processes (pods).")
    scale_learning_rate: bool = Field(default=False, description="Multiply the learning rate by the number of "
                                      "replicas (the linear scaling rule for a global batch that grows with them).")
    launcher: Literal["processes", "kubernetes", "vertex"] = Field(
        default="processes", description="multi_worker: local processes on loopback ports, a Kubernetes Indexed "
        "Job with a headless Service, or Vertex AI's worker pools (`lamina compile` sets one of the last two).")
    port: int = Field(default=0, ge=0, le=65535, description="processes: the first worker's port on loopback "
                      "(0: free ports the system picks); kubernetes: the port every pod listens on (default 2222).")
    checkpoint_dir: Optional[str] = Field(default=None, description="multi_worker: where the per-epoch checkpoint "
                                          "lives, on storage every worker reaches (default: the Trainer's run "
                                          "folder). A rerun resumes from it.")
    worker_timeout_s: float = Field(default=86400.0, gt=0, description="How long the launcher waits for the "
                                    "workers before stopping them.")


class TensorBoardSpec(StrictModel):
    """What a Trainer run writes for TensorBoard beyond the epoch curves (`models/tensorboard.py`).

    Histograms: the weights of up to `max_layers` layers (spread over the network's depth) and their
    gradients on one fixed training batch, at up to `histogram_epochs` epochs (the first, the last and
    evenly between), plus the learning rate each epoch. Projector: the combined representation and
    each text, image and audio encoding of up to `projector_samples` eval examples, labelled, and each
    categorical embedding's rows by vocabulary value. Profile: a trace of training batches
    `profile_batches` [first, last] of the first epoch (off by default: it slows those batches and
    writes several MB).
    """

    histograms: bool = True
    max_layers: int = Field(default=12, ge=1, le=1000)
    histogram_epochs: int = Field(default=10, ge=1, le=100000)
    projector: bool = True
    projector_samples: int = Field(default=500, ge=1, le=100000)
    profile_batches: Optional[List[int]] = Field(default=None, description="[first, last] batch of the first "
                                                 "epoch to trace, e.g. [2, 4].")

    @field_validator("profile_batches")
    @classmethod
    def _check_batches(cls, v: Optional[List[int]]) -> Optional[List[int]]:
        if v is not None and (len(v) != 2 or v[0] < 1 or v[1] < v[0]):
            raise ValueError(f"expected [first, last] batch numbers, 1 <= first <= last. Received: {v}")
        return v


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
    distribution: DistributionSpec = Field(default_factory=DistributionSpec)
    tensorboard: TensorBoardSpec = Field(default_factory=TensorBoardSpec)
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

