"""The precision policy for each GPU generation: bfloat16 where it runs at full speed, float16 before."""

import os
import subprocess
import sys

import keras
import pytest

from lamina.models.device import configure_devices, gpu_capabilities, precision_policy
from lamina.spec import TrainingSpec

H100, A100, V100, T4 = (9, 0), (8, 0), (7, 0), (7, 5)


@pytest.mark.parametrize("setting, gpus, policy", [
    ("auto", [], "float32"),                      # CPU: full precision
    ("auto", [H100], "mixed_bfloat16"),
    ("auto", [A100, A100], "mixed_bfloat16"),
    ("auto", [V100], "mixed_float16"),            # no fast bf16: float16 with loss scaling
    ("auto", [T4], "mixed_float16"),
    ("auto", [A100, V100], "mixed_float16"),      # one older GPU decides for the replicas
    ("off", [H100], "float32"),
    ("on", [], "mixed_bfloat16"),
    ("on", [V100], "mixed_float16"),
])
def test_precision_policy(setting, gpus, policy):
    assert precision_policy(setting, gpus) == policy


def test_float16_training_gets_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Activation("softmax",
                                                                                                      dtype="float32")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_cpu_run_stays_float32():
    """On a CPU, whatever the machine has: the GPUs are hidden (CUDA_VISIBLE_DEVICES=-1) in a fresh process,
    since a process that has started TensorFlow cannot hide them any more."""
    code = ("import keras, tensorflow as tf\n"
            "from lamina.models.device import configure_devices\n"
            "from lamina.spec import TrainingSpec\n"
            "assert tf.config.list_physical_devices('GPU') == []\n"
            "strategy = configure_devices(TrainingSpec())\n"
            "print(keras.mixed_precision.global_policy().name, strategy.num_replicas_in_sync)\n")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["float32", "1"]


def test_this_machines_devices_get_the_policy_their_capabilities_call_for():
    """Whatever this process sees (a CPU in CI, GPUs where they are): the policy precision_policy names."""
    try:
        configure_devices(TrainingSpec())
        assert keras.mixed_precision.global_policy().name == precision_policy("auto", gpu_capabilities())
    finally:
        keras.mixed_precision.set_global_policy("float32")
