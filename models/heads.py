"""Task heads: the last layers, the loss and the training metrics for each task type."""

from typing import Optional, Tuple

import keras

from lamina.spec import HeadSpec


def task_loss_and_metrics(config: HeadSpec):
    """Fresh (loss, metrics) for the head's task: used at every (re)compile."""
    if config.type == "classification":
        return keras.losses.SparseCategoricalCrossentropy(), [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if config.type == "forecast":  # targets missing in a gap are left out
        from lamina.models.forecast import MaskedMeanAbsoluteError

        return MaskedMeanAbsoluteError(name="mae"), []
    return keras.losses.MeanSquaredError(), [keras.metrics.MeanAbsoluteError(name="mae")]


def build_head(config: HeadSpec, num_classes: Optional[int] = None,
               label_moments: Optional[Tuple[float, float]] = None, residual: bool = False) -> keras.Sequential:
    """A classification head (softmax over `num_classes`) or a regression head (one unit).

    `label_moments`: a regression label's (mean, standard deviation). The unit then predicts the label
    in standard units and a last layer maps it back to the label's own (`prediction * std + mean`),
    so training starts at the mean whatever the label's scale (a house's price, a rate in percent).

    `residual`: the head of a network that starts from the linear model (`models.linear.add_linear_start`).
    Its output layer starts at zero, and a classifier's answers logits, not probabilities.

    The output layer stays float32 under a mixed-precision policy, for stable losses.
    """
    start = {"kernel_initializer": "zeros", "bias_initializer": "zeros"} if residual else {}
    layers = []
    if config.units:
        layers.append(keras.layers.Dense(config.units, activation="relu", name="head_hidden"))
    if config.dropout:
        layers.append(keras.layers.Dropout(config.dropout, name="head_dropout"))
    if config.type == "classification":
        if not num_classes or num_classes < 2:
            raise ValueError(
                f"a classification head needs at least 2 classes in the label. Received: num_classes={num_classes}")
        layers.append(keras.layers.Dense(num_classes, activation=None if residual else "softmax", dtype="float32",
                                         name="logits" if residual else "probabilities", **start))
        return keras.Sequential(layers, name="head")
    if config.type == "regression":
        layers.append(keras.layers.Dense(1, dtype="float32", name="prediction", **start))
        if label_moments is not None:
            mean, std = label_moments
            layers.append(keras.layers.Rescaling(scale=float(std), offset=float(mean), dtype="float32",
                                                 name="label_units"))
        return keras.Sequential(layers, name="head")
    raise ValueError(f"unknown head type; expected 'classification' or 'regression'. Received: type={config.type!r}")
