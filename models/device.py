"""Picks the hardware set-up for training: GPU when present, CPU otherwise."""

import logging

import keras
import tensorflow as tf

from lamina.pipeline.spec import TrainingSpec

log = logging.getLogger("lamina.train")


def configure_devices(config: TrainingSpec) -> tf.distribute.Strategy:
    """Sets the precision policy and returns the distribution strategy to build the model under.

    On a GPU, `mixed_precision: auto` turns on mixed_float16 (heads keep a float32 output);
    more than one GPU gets a MirroredStrategy. On CPU everything stays float32.
    """
    gpus = tf.config.list_physical_devices("GPU")
    use_mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    log.info("training on %s, precision %s, %d replica(s)", f"{len(gpus)} GPU(s)" if gpus else "CPU",
             keras.mixed_precision.global_policy().name, strategy.num_replicas_in_sync)
    return strategy
