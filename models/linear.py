"""A linear model (logistic or ridge regression) on the tabular columns, as a Keras model of TensorFlow ops.

On some small tables (IBM's attrition data, Titanic) a regularized linear model is what generalizes best,
and `model.type: auto` should be able to serve it. scikit-learn fits it on the tabular part of Transform's
output (`trees.tabular_matrix`: numbers z-scored, categories as vocabulary ids one-hot encoded), exactly as
the Baselines component fits its linear baseline. `LinearScores` then holds the coefficients: a matrix for
the numeric columns and, per categorical column, a table indexed by vocabulary id (a one-hot vector times
the coefficients is that row). An id the fit never saw scores 0, as `OneHotEncoder(handle_unknown="ignore")`
does. The answers equal `predict_proba` / `predict` to float32 rounding, and the model is exported through
`models.export` with the network's signatures.

The same layer, answering logits, is where a network with `model.head.linear_start` begins (`add_linear_start`):
its head starts at zero and adds to the fixed linear scores, so the network learns what the linear model misses.
"""

from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from lamina.models.features import AUDIO, IMAGE, SEQUENCE, TEXT, FeatureInfo
from lamina.models.trees import MODEL_NAMES, TabularColumns, build_tree_model, column_categories, tabular_matrix

LINEAR_NAME = MODEL_NAMES["linear"]
_SHAPES = ("numeric_index", "numeric_weights", "categorical_index", "offsets", "sizes", "table", "intercept",
           "placement")
_INT = ("numeric_index", "categorical_index", "offsets", "sizes")
ABSENT_LOGIT = -30.0  # a class the linear fit never saw: a probability of about 1e-13


REGULARIZATION = np.logspace(-3, 2, 11)  # the inverse strengths tried: C for logistic, 1 / alpha for ridge


def linear_estimator(task: str, mask: np.ndarray):
    """An unfitted linear model over the tabular columns (the Baselines component's and `model.type: auto`'s):
    categories (`mask`) one-hot, numbers as they are (Transform z-scored them). Its strength of regularization
    is chosen by cross-validation on the rows it is fitted on (5 folds for logistic regression, leave-one-out
    for ridge), as a careful person's ten lines would."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    one_hot = ColumnTransformer([("categories", OneHotEncoder(handle_unknown="ignore"), np.flatnonzero(mask)),
                                 ("numbers", "passthrough", np.flatnonzero(~mask))])
    if task == "classification":
        linear = LogisticRegressionCV(Cs=REGULARIZATION.tolist(), cv=5, scoring="neg_log_loss", max_iter=2000)
    else:
        linear = RidgeCV(alphas=(1.0 / REGULARIZATION).tolist())  # leave-one-out, in closed form
    return make_pipeline(one_hot, linear)


def linear_arrays(pipeline, mask: np.ndarray, categories: List[int], num_classes: Optional[int]
                  ) -> Dict[str, np.ndarray]:
    """A fitted `linear_estimator`'s coefficients as the arrays `LinearScores` holds."""
    encoder = pipeline[0].named_transformers_["categories"]
    fitted = pipeline[-1]
    coef = np.atleast_2d(fitted.coef_).astype(np.float64)  # [k, one-hot columns + numeric columns]
    k = coef.shape[0]
    cat_columns, num_columns = np.flatnonzero(mask), np.flatnonzero(~mask)
    sizes = [int(categories[c]) + 1 for c in cat_columns]  # + a zero row for ids out of range
    offsets = np.cumsum([0] + sizes[:-1]).astype(np.int32)
    table = np.zeros((max(sum(sizes), 1), k), np.float32)
    position = 0
    for j, seen in enumerate(encoder.categories_ if len(cat_columns) else []):
        for value in seen:
            if 0 <= int(value) < sizes[j] - 1:
                table[offsets[j] + int(value)] = coef[:, position]
            position += 1
    numeric_weights = coef[:, position:].T.astype(np.float32).reshape(len(num_columns), k)
    placement = np.zeros((1, 1), np.float32)
    if num_classes:
        classes = fitted.classes_
        placement = np.zeros((len(classes), num_classes), np.float32)
        placement[np.arange(len(classes)), classes.astype(int)] = 1.0  # a class absent from the train split: 0
    return {"numeric_index": num_columns.astype(np.int32), "numeric_weights": numeric_weights,
            "categorical_index": cat_columns.astype(np.int32), "offsets": offsets,
            "sizes": np.array(sizes, np.int32), "table": table,
            "intercept": np.atleast_1d(fitted.intercept_).astype(np.float32), "placement": placement}


@keras.saving.register_keras_serializable(package="lamina")
class LinearScores(keras.layers.Layer):
    """[batch, d] float32 columns -> class probabilities [batch, classes], or [batch, 1] for regression.

    `scores="logits"`: a classifier's scores before the softmax instead, one per class of the label's
    vocabulary; a class the fit never saw scores `ABSENT_LOGIT`. A network that starts from the linear
    model (`model.head.linear_start`) adds its own scores to these.
    """

    def __init__(self, shapes: Dict[str, list], task: str, scores: str = "probabilities", **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        if scores not in ("probabilities", "logits"):
            raise ValueError(f"expected scores 'probabilities' or 'logits'. Received: scores={scores!r}")
        self.shapes = {k: list(v) for k, v in shapes.items()}
        self.task = task
        self.scores = scores
        self.arrays = {name: self.add_weight(name=name, shape=tuple(self.shapes[name]), trainable=False,
                                             dtype="int32" if name in _INT else "float32", initializer="zeros")
                       for name in _SHAPES}

    @classmethod
    def from_fitted(cls, pipeline, mask: np.ndarray, categories: List[int], task: str, num_classes: Optional[int],
                    name: str = "linear") -> "LinearScores":
        return cls.from_arrays(linear_arrays(pipeline, mask, categories, num_classes), task, name=name)

    @classmethod
    def from_arrays(cls, arrays: Dict[str, np.ndarray], task: str, scores: str = "probabilities",
                    name: str = "linear") -> "LinearScores":
        layer = cls({k: list(arrays[k].shape) for k in _SHAPES}, task, scores=scores, name=name)
        for k in _SHAPES:
            layer.arrays[k].assign(arrays[k])
        return layer

    def get_config(self):
        return {**super().get_config(), "shapes": self.shapes, "task": self.task, "scores": self.scores}

    def call(self, x):
        a = {k: tf.convert_to_tensor(v) for k, v in self.arrays.items()}
        x = tf.cast(x, tf.float32)
        z = tf.matmul(tf.gather(x, a["numeric_index"], axis=1), a["numeric_weights"]) + a["intercept"]
        if self.shapes["categorical_index"][0]:
            ids = tf.gather(x, a["categorical_index"], axis=1)
            inside = (ids >= 0) & (ids < tf.cast(a["sizes"] - 1, tf.float32)) & tf.equal(ids, tf.floor(ids))
            rows = tf.where(inside, tf.cast(ids, tf.int32), a["sizes"] - 1 + tf.zeros_like(ids, tf.int32))
            z += tf.reduce_sum(tf.gather(a["table"], rows + a["offsets"]), axis=1)
        if self.task != "classification":
            return z[:, :1]
        if self.scores == "logits":  # binary: the first fitted class scores 0, the second z
            if self.shapes["intercept"][0] == 1:
                z = tf.concat([tf.zeros_like(z), z], axis=1)
            absent = (1.0 - tf.reduce_sum(a["placement"], axis=0)) * ABSENT_LOGIT
            return tf.matmul(z, a["placement"]) + absent
        if self.shapes["intercept"][0] == 1:
            p = tf.sigmoid(z)
            probs = tf.concat([1.0 - p, p], axis=1)
        else:
            probs = tf.nn.softmax(z, axis=1)
        return tf.matmul(probs, a["placement"])


def fit_linear(spec, tf_transform_output, features: List[FeatureInfo], train_files: List[str],
               classes: Optional[List[str]], class_weight: Optional[Dict[int, float]] = None, part=None
               ) -> Dict[str, np.ndarray]:
    """The linear model fitted on the train split's tabular columns (the rows the trees see), as the arrays
    `LinearScores.from_arrays` takes. `part`: only those rows, as `make_dataset`'s (the Tuner's)."""
    import time

    started = time.perf_counter()
    x, y, mask = tabular_matrix(spec, tf_transform_output, features, train_files,
                                spec.evaluation.baseline.max_train_rows, part=part)
    weight = np.array([class_weight.get(int(c), 1.0) for c in y]) if class_weight else None
    pipeline = linear_estimator(spec.task, mask)
    target = y.astype(np.int64) if spec.task == "classification" else y
    pipeline.fit(x, target, **{f"{pipeline.steps[-1][0]}__sample_weight": weight} if weight is not None else {})
    arrays = linear_arrays(pipeline, mask, column_categories(features), len(classes) if classes else None)
    print(f"    {LINEAR_NAME}: {x.shape[1]} columns ({int(mask.sum())} categorical, one-hot) on {len(y)} rows in "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    return arrays


def linear_model(spec, features: List[FeatureInfo], arrays: Dict[str, np.ndarray]) -> keras.Model:
    """The fitted linear model as a Keras model with the network's inputs (the trees', this layer on top)."""
    return build_tree_model(features, LinearScores.from_arrays(arrays, spec.task), name="linear_model")


@keras.saving.register_keras_serializable(package="lamina")
class AddLinearScores(keras.layers.Layer):
    """[the network's head, the linear model's scores] -> the answer (`model.head.linear_start`).

    classification: the softmax of the two logits summed. regression: the two answers summed, less `shift`,
    the value the zero-initialized head starts at (the label's mean when the head predicts in standard units,
    else 0). So the untrained network answers exactly what the linear model answers.
    """

    def __init__(self, task: str, shift: float = 0.0, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.task, self.shift = task, float(shift)

    def get_config(self):
        return {**super().get_config(), "task": self.task, "shift": self.shift}

    def call(self, inputs):
        head, scores = (tf.cast(t, tf.float32) for t in inputs)
        if self.task == "classification":
            return tf.nn.softmax(head + scores, axis=-1)
        return head + scores - self.shift


def tabular_only(features: List[FeatureInfo]) -> bool:
    """Every feature is one the trees and the linear model take (no text, images or audio)."""
    return all(f.kind not in (TEXT, IMAGE, AUDIO) for f in features)


def linear_start_applies(spec, features: List[FeatureInfo]) -> bool:
    """`model.head.linear_start` is on and can be honoured: classification or regression on tabular features."""
    return (spec.model.head.linear_start and spec.task in ("classification", "regression")
            and tabular_only(features))


def add_linear_start(task: str, features: List[FeatureInfo], inputs: dict, head_output, arrays: Dict[str, np.ndarray],
                     label_moments=None):
    """The network's answer when it starts from the linear model: its head (zero at the start) plus the fixed
    linear model's scores, computed from the same inputs. The network learns the residual, as in Schelldorfer &
    Wüthrich's combined actuarial neural network (CANN, 2019)."""
    columns = TabularColumns([f.key for f in features], [f.key for f in features if f.kind == SEQUENCE],
                             name="linear_start_columns")(inputs)
    scores = LinearScores.from_arrays(arrays, task, scores="logits", name="linear_start")(columns)
    shift = label_moments[0] if (task == "regression" and label_moments is not None) else 0.0
    return AddLinearScores(task, shift, name="network_plus_linear")([head_output, scores])
