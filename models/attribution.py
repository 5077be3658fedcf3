"""What every explanation method shares: the number explained, the attributions' record, and a hook on a
layer's output during one eager forward pass (Integrated Gradients and Grad-CAM use it)."""

import contextlib
import dataclasses
from typing import Dict, Optional

import numpy as np
import tensorflow as tf


@contextlib.contextmanager
def replaced_output(layer, fn):
    """While inside, `layer` returns fn(its output) when called (eagerly)."""
    original = layer.call

    def call(*args, **kwargs):
        return fn(original(*args, **kwargs))

    layer.call = call
    try:
        yield
    finally:
        del layer.call


def walk_layers(layer):
    """`layer` and every layer nested in it, depth first."""
    yield layer
    for child in getattr(layer, "layers", []) or []:
        yield from walk_layers(child)


def explained_score(outputs, targets: Optional[np.ndarray], task: str):
    """The number explained: the target class's probability per example, or the regression output."""
    outputs = tf.cast(outputs, tf.float32)
    if task != "classification":
        return tf.reshape(outputs, [-1])
    return tf.gather(outputs, tf.constant(targets, tf.int32), axis=1, batch_dims=1)


@dataclasses.dataclass
class Attributions:
    """A batch's attributions (Integrated Gradients, Shapley values): per feature key, [n] (tabular) or
    [n, tokens] (text)."""

    values: Dict[str, np.ndarray]
    targets: Optional[np.ndarray]  # the explained class per example (classification)
    score: np.ndarray  # f(x)
    baseline_score: np.ndarray  # f(baseline)

    def total(self) -> np.ndarray:
        """Per example, the sum over every feature (and token): completeness says f(x) - f(baseline)."""
        return sum(v.reshape(v.shape[0], -1).sum(axis=1) for v in self.values.values())

    def completeness_error(self) -> float:
        """The largest relative gap, over the examples, between the attributions' sum and f(x) - f(baseline)."""
        gap = self.score - self.baseline_score
        return float(np.max(np.abs(self.total() - gap) / np.maximum(np.abs(gap), 1e-6)))
