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


def split_cpu(devices: int) -> None:
    """Splits the CPU into `devices` logical devices; only before TensorFlow starts its runtime."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError as e:  # the runtime already started in this process
        raise RuntimeError(f"training.distribution: {devices} logical CPU devices must be configured before "
                           f"TensorFlow starts; the Trainer runs them in a fresh process ({e})") from None


def make_strategy(config: TrainingSpec, cluster: bool = False) -> tf.distribute.Strategy:
    """The distribution strategy `training.distribution` asks for, on this process's devices.

    `cluster`: this process is one of the launched workers (TF_CONFIG names the others), where
    `multi_worker` creates its MultiWorkerMirroredStrategy and `mirrored` may split the CPU; elsewhere
    (the Tuner's trials) those two run on one device, or on every GPU under `mirrored`.
    """
    dist = config.distribution
    gpus = tf.config.list_physical_devices("GPU")
    if dist.strategy == "multi_worker" and cluster:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if dist.strategy == "mirrored":
        if gpus:
            count = min(dist.devices or len(gpus), len(gpus))
            return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(count)])
        if cluster:
            split_cpu(dist.devices or 2)
            return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    # Outside the launched workers (the Tuner's trials), multi_worker and CPU-only mirrored run on one device.
    if dist.strategy == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def configure_devices(config: TrainingSpec, cluster: bool = False) -> tf.distribute.Strategy:
    """Sets the precision policy and returns the distribution strategy to build the model under.

    On a GPU, `mixed_precision: auto` turns on mixed precision (`precision_policy`: bfloat16 from
    Ampere on, float16 with loss scaling before; heads keep a float32 output); the strategy is
    `make_strategy`'s (by default: several GPUs get a MirroredStrategy). On CPU everything stays
    float32 unless `mixed_precision: on`.
    """
    strategy = make_strategy(config, cluster)
    gpus = tf.config.list_physical_devices("GPU")
    keras.mixed_precision.set_global_policy(precision_policy(config.mixed_precision, gpu_capabilities()))
    log.info("training on %s, precision %s, %d replica(s)", f"{len(gpus)} GPU(s)" if gpus else "CPU",
             keras.mixed_precision.global_policy().name, strategy.num_replicas_in_sync)
    return strategy


def needs_workers(config: TrainingSpec) -> bool:
    """Whether the Trainer launches worker processes: multi_worker, or mirrored over logical CPU devices
    (configured at a process's start, which the Trainer's own process is past)."""
    dist = config.distribution
    return dist.strategy == "multi_worker" or (dist.strategy == "mirrored"
                                               and not tf.config.list_physical_devices("GPU"))
