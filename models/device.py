"""Picks the hardware set-up for training: GPU when present, CPU otherwise."""

import logging
from typing import List, Tuple

import keras
import tensorflow as tf

from lamina.spec import TrainingSpec

log = logging.getLogger("lamina.train")


# bfloat16 math runs at full speed from compute capability 8.0 (Ampere: A100, H100 and later).
BF16_MIN_CAPABILITY = (8, 0)


def gpu_capabilities() -> List[Tuple[int, int]]:
    """The compute capability of each visible GPU, e.g. [(9, 0)] on an H100; [] on CPU."""
    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append(tuple(details.get("compute_capability") or (0, 0)))
    return out


def precision_policy(setting: str, capabilities: List[Tuple[int, int]]) -> str:
    """The Keras dtype policy for `training.mixed_precision` on GPUs of these compute capabilities.

    Mixed precision is used on GPUs (`auto`) or whenever asked (`on`): bfloat16 where every GPU
    supports it, which needs no loss scaling; float16 on older GPUs, where Keras wraps the
    optimizer in a LossScaleOptimizer at compile time. `on` without a GPU gives mixed_bfloat16,
    which CPUs with AVX-512 BF16 or AMX run natively.
    """
    if setting == "off" or (setting == "auto" and not capabilities):
        return "float32"
    if not capabilities or all(c >= BF16_MIN_CAPABILITY for c in capabilities):
        return "mixed_bfloat16"
    return "mixed_float16"


def configure_devices(config: TrainingSpec) -> tf.distribute.Strategy:
    """Sets the precision policy and returns the distribution strategy to build the model under.

    On a GPU, `mixed_precision: auto` turns on mixed precision (`precision_policy`: bfloat16 from
    Ampere on, float16 with loss scaling before; heads keep a float32 output); more than one GPU
    gets a MirroredStrategy. On CPU everything stays float32.
    """
    gpus = tf.config.list_physical_devices("GPU")
    keras.mixed_precision.set_global_policy(precision_policy(config.mixed_precision, gpu_capabilities()))
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    log.info("training on %s, precision %s, %d replica(s)", f"{len(gpus)} GPU(s)" if gpus else "CPU",
             keras.mixed_precision.global_policy().name, strategy.num_replicas_in_sync)
    return strategy
