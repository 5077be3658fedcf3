"""The precision policy for each GPU generation: bfloat16 where it runs at full speed, float16 before."""

import keras
import pytest

from lamina.models.device import configure_devices, precision_policy
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


def test_cpu_run_stays_float32():
    try:
        configure_devices(TrainingSpec())
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
