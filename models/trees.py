"""Gradient-boosted trees as a Keras model made of TensorFlow's own ops.

scikit-learn's HistGradientBoosting is fitted on the tabular part of Transform's output (numbers
z-scored, categories as vocabulary ids, dates as calendar parts: `tabular_matrix`). `TreeEnsemble`
then holds every fitted tree as flat arrays (the feature and threshold of each node, its children,
its leaf value, the bitsets of categorical splits) and walks all trees at once, one level per
step, with `gather` and `where`: no custom op, so the SavedModel it is exported in runs in
`lamina serve` and in the official TF Serving image alike, and through the same export
(`models.export`) as the network: the Transform graph inside, the same signatures.

The walk is scikit-learn's own (`_predictor.pyx`): a missing value goes the way the split learned for
missing values; a categorical split sends a category in its bitset left, another known category
right, and an unknown category (an out-of-vocabulary id) the missing way. Thresholds are rounded
down to float32, so `x <= threshold` decides as scikit-learn's float64 comparison does on the same
float32 inputs: the answers equal `predict_proba` / `predict` to float32 rounding.
"""

from typing import Dict, Iterator, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from lamina.models.features import CATEGORICAL, SEQUENCE, FeatureInfo

# Beside the Trainer's run folder: which model was exported, and how each scored on the eval split.
MODEL_CHOICE_FILE = "model_choice.json"
TREES_NAME = "gradient-boosted trees"
# What `model.type: auto` chooses between, by the names model_choice.json uses.
MODEL_NAMES = {"network": "network", "gbt": TREES_NAME, "linear": "linear model",
               "blend": "network and trees averaged"}
# Vocabulary ids above this stay numeric columns for the trees (scikit-learn's native categorical
# splits take at most 255 categories).
MAX_NATIVE_CATEGORIES = 255


def tabular_columns(inputs: Dict[str, tf.Tensor], features: List[FeatureInfo]) -> tf.Tensor:
    """[batch, d] float32: each tabular feature's values side by side, in `features`' order (a
    sequence's NaN padding as 0, its mean), as `tabular_matrix` lays them out from a dataset."""
    return _columns(inputs, [f.key for f in features], {f.key for f in features if f.kind == SEQUENCE})


def _columns(inputs, keys: List[str], sequences) -> tf.Tensor:
    blocks = []
    for key in keys:
        value = tf.cast(inputs[key], tf.float32)
        value = tf.reshape(value, [tf.shape(value)[0], -1])
        if key in sequences:
            value = tf.where(tf.math.is_nan(value), tf.zeros_like(value), value)
        blocks.append(value)
    return tf.concat(blocks, axis=1)


def tabular_matrix(spec, tf_transform_output, features: List[FeatureInfo], files: List[str],
                   max_rows: Optional[int] = None, part=None):
    """(X [n, d] float64, labels [n], categorical column mask [d]) from Transform's output, at most
    `max_rows` rows, in the files' order. `part`: as `make_dataset`'s (the Tuner's rows without its holdout)."""
    blocks = list(tabular_blocks(spec, tf_transform_output, features, files, batches=max_rows and -(-max_rows // 4096),
                                 part=part))
    if not blocks:
        return np.zeros((0, 0)), np.zeros(0), np.zeros(0, bool)
    x, y = np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])
    if max_rows and len(y) > max_rows:
        x, y = x[:max_rows], y[:max_rows]
    return x, y, np.array([n > 0 for n in column_categories(features)], bool)


def tabular_blocks(spec, tf_transform_output, features: List[FeatureInfo], files: List[str], rows: int = 65536,
                   batches: Optional[int] = None, part=None) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """`tabular_matrix`'s (X, labels), a block of at least `rows` rows at a time (the last one smaller), in the
    files' order (the first `batches` batches of 4,096 rows, if given): the memory of one block, whatever the
    split's size."""
    from lamina.models.datasets import make_dataset

    ds = make_dataset(files, tf_transform_output, spec, features, min(4096, rows), shuffle=False, cache=False,
                      part=part)
    if batches:
        ds = ds.take(batches)
    blocks, labels, held = [], [], 0
    for x, y in ds:
        blocks.append(tabular_columns(x, features).numpy())
        labels.append(np.asarray(y).reshape(-1))
        held += len(labels[-1])
        if held >= rows:
            yield np.concatenate(blocks).astype(np.float64), np.concatenate(labels)
            blocks, labels, held = [], [], 0
    if labels:
        yield np.concatenate(blocks).astype(np.float64), np.concatenate(labels)


def tree_arrays(model, num_classes: Optional[int]) -> Dict[str, np.ndarray]:
    """A fitted HistGradientBoosting model's trees as the flat arrays `TreeEnsemble` holds."""
    per_iteration = model.n_trees_per_iteration_
    fields = {k: [] for k in ("feature", "threshold", "left", "right", "leaf", "value", "categorical",
                              "bitset", "missing_left")}
    roots, bitsets, offset = [], [np.zeros((1, 8), np.int64)], 0
    bitset_offset = 1  # row 0: the empty bitset every numeric node points at
    for iteration in model._predictors:  # pylint: disable=protected-access
        for predictor in iteration:
            nodes = predictor.nodes
            roots.append(offset)
            fields["feature"].append(nodes["feature_idx"].astype(np.int32))
            # x <= t on float32 inputs decides as on float64 when t is rounded down to float32.
            t32 = nodes["num_threshold"].astype(np.float32)
            above = t32.astype(np.float64) > nodes["num_threshold"]
            t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
            fields["threshold"].append(t32)
            fields["left"].append((nodes["left"] + offset).astype(np.int32))
            fields["right"].append((nodes["right"] + offset).astype(np.int32))
            fields["leaf"].append(nodes["is_leaf"].astype(np.int32))
            fields["value"].append(nodes["value"].astype(np.float32))
            fields["categorical"].append(nodes["is_categorical"].astype(np.int32))
            raw = np.asarray(predictor.raw_left_cat_bitsets, np.int64).reshape(-1, 8)
            fields["bitset"].append(np.where(nodes["is_categorical"], nodes["bitset_idx"] + bitset_offset, 0)
                                    .astype(np.int32))
            bitsets.append(raw)
            bitset_offset += len(raw)
            fields["missing_left"].append(nodes["missing_go_to_left"].astype(np.int32))
            offset += len(nodes)
    # scikit-learn (1.4+) encodes categorical columns with an OrdinalEncoder and puts them first: the trees'
    # feature indexes and bitsets are of those codes (a category not seen in fitting is missing).
    order, maps, sizes = _ordinal_encoding(model)
    known, f_idx_map = model._bin_mapper.make_known_categories_bitsets()  # pylint: disable=protected-access
    arrays = {k: np.concatenate(v) for k, v in fields.items()}
    depth = max(int(p.nodes["depth"].max()) for it in model._predictors for p in it)  # pylint: disable=protected-access
    classes = getattr(model, "classes_", None)
    placement = np.zeros((1, 1), np.float32)
    if num_classes:
        placement = np.zeros((len(classes), num_classes), np.float32)
        placement[np.arange(len(classes)), classes.astype(int)] = 1.0  # a class absent from the train split: 0
    arrays.update({
        "roots": np.array(roots, np.int32), "bitsets": _bits(np.concatenate(bitsets)),
        "known": _bits(np.concatenate([np.zeros((1, 8), np.int64), np.asarray(known, np.int64).reshape(-1, 8)])),
        "known_row": (np.asarray(f_idx_map, np.int32) + 1),
        "baseline": np.asarray(model._baseline_prediction, np.float32).reshape(-1),  # pylint: disable=protected-access
        "placement": placement, "depth": np.array(depth, np.int32), "per_iteration": np.array(per_iteration, np.int32),
        "order": order, "cat_maps": np.concatenate(maps + [np.full(1, -1, np.int32)]),
        "cat_sizes": np.array(sizes + [0], np.int32),
        "cat_offsets": np.array(list(np.cumsum([0] + sizes[:-1])) + [0] if sizes else [0], np.int32),
    })
    return arrays


def _bits(bitsets: np.ndarray) -> np.ndarray:
    """[n, 8] 32-bit words -> [n * 256] int32 of 0/1: one entry per category, so the graph looks a category up
    with a gather (TFLite has no bitwise ops)."""
    words = np.asarray(bitsets, np.int64).reshape(-1, 8)
    bits = (words[:, :, None] >> np.arange(32)[None, None, :]) & 1  # [n, 8, 32]: category 32 * word + bit
    return bits.reshape(-1).astype(np.int32)


def _ordinal_encoding(model):
    """(column order [d], per categorical column an array mapping an id to its ordinal code or -1, their sizes)
    of a fitted HistGradientBoosting model's preprocessing."""
    pre = getattr(model, "_preprocessor", None)
    n = model.n_features_in_
    if pre is None:
        return np.arange(n, dtype=np.int32), [], []
    mask = np.asarray(model.is_categorical_, bool)
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)]).astype(np.int32)
    maps, sizes = [], []
    for categories in pre.named_transformers_["encoder"].categories_:
        values = [int(v) for v in categories if not np.isnan(v)]
        table = np.full(max(values) + 1 if values else 1, -1, np.int32)
        for code, v in enumerate(categories):
            if not np.isnan(v):
                table[int(v)] = code
        maps.append(table)
        sizes.append(len(table))
    return order, maps, sizes


_SHAPES = ("feature", "threshold", "left", "right", "leaf", "value", "categorical", "bitset", "missing_left",
           "roots", "bitsets", "known", "known_row", "baseline", "placement", "order", "cat_maps", "cat_sizes",
           "cat_offsets")
_DTYPES = {"threshold": "float32", "value": "float32", "baseline": "float32", "placement": "float32"}


@keras.saving.register_keras_serializable(package="lamina")
class TreeEnsemble(keras.layers.Layer):
    """[batch, d] float32 columns -> class probabilities [batch, classes], or [batch, 1] for regression."""

    def __init__(self, shapes: Dict[str, list], depth: int, per_iteration: int, task: str, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.shapes = {k: list(v) for k, v in shapes.items()}
        self.depth, self.per_iteration, self.task = int(depth), int(per_iteration), task
        self.arrays = {}
        for name in _SHAPES:
            self.arrays[name] = self.add_weight(name=name, shape=tuple(self.shapes[name]),
                                                dtype=_DTYPES.get(name, "int32"), trainable=False,
                                                initializer="zeros")

    @classmethod
    def from_fitted(cls, model, task: str, num_classes: Optional[int], name: str = "trees") -> "TreeEnsemble":
        arrays = tree_arrays(model, num_classes)
        layer = cls({k: list(arrays[k].shape) for k in _SHAPES}, int(arrays["depth"]), int(arrays["per_iteration"]),
                    task, name=name)
        for k in _SHAPES:
            layer.arrays[k].assign(arrays[k])
        return layer

    def get_config(self):
        return {**super().get_config(), "shapes": self.shapes, "depth": self.depth,
                "per_iteration": self.per_iteration, "task": self.task}

    def call(self, x):
        a = {k: tf.convert_to_tensor(v) for k, v in self.arrays.items()}
        x = tf.gather(tf.cast(x, tf.float32), a["order"], axis=1)
        batch = tf.shape(x)[0]
        categorical_columns = self.shapes["cat_sizes"][0] - 1
        if categorical_columns:  # ids -> the encoder's codes; an id it never saw is missing (NaN)
            ids = x[:, :categorical_columns]
            sizes = tf.cast(a["cat_sizes"][:categorical_columns], tf.float32)
            valid = (ids >= 0) & (ids < sizes) & tf.equal(ids, tf.floor(ids))
            flat = a["cat_offsets"][:categorical_columns] + tf.cast(tf.where(valid, ids, tf.zeros_like(ids)), tf.int32)
            codes = tf.gather(a["cat_maps"], flat)
            coded = tf.where(valid & (codes >= 0), tf.cast(codes, tf.float32), tf.fill(tf.shape(ids), float("nan")))
            x = tf.concat([coded, x[:, categorical_columns:]], axis=1)
        node = tf.tile(a["roots"][None, :], tf.stack([batch, 1]))  # [batch, trees]
        for _ in range(self.depth):
            feature = tf.gather(a["feature"], node)
            value = tf.gather(x, feature, batch_dims=1)
            missing = tf.math.is_nan(value)
            missing_left = tf.gather(a["missing_left"], node) > 0
            categorical = tf.gather(a["categorical"], node) > 0
            in_range = (value >= 0) & (value < 256)
            category = tf.cast(tf.where(in_range & ~missing, value, tf.zeros_like(value)), tf.int32)
            in_left = tf.gather(a["bitsets"], tf.gather(a["bitset"], node) * 256 + category) > 0
            known = tf.gather(a["known"], tf.gather(a["known_row"], feature) * 256 + category) > 0
            categorical_left = tf.where(in_left, True, tf.where(known, False, missing_left))
            numeric_left = value <= tf.gather(a["threshold"], node)
            go_left = tf.where(missing | (categorical & ~in_range), missing_left,
                               tf.where(categorical, categorical_left, numeric_left))
            step = tf.where(go_left, tf.gather(a["left"], node), tf.gather(a["right"], node))
            node = tf.where(tf.gather(a["leaf"], node) > 0, node, step)
        leaves = tf.gather(a["value"], node)  # [batch, trees]
        raw = tf.reduce_sum(tf.reshape(leaves, [batch, -1, self.per_iteration]), axis=1) + a["baseline"]
        if self.task != "classification":
            return raw[:, :1]
        if self.per_iteration == 1:
            p = tf.sigmoid(raw)
            probs = tf.concat([1.0 - p, p], axis=1)
        else:
            probs = tf.nn.softmax(raw, axis=1)
        return tf.matmul(probs, a["placement"])


def gbt_estimator(task: str, mask: np.ndarray, categories: List[int], seed: int):
    """An unfitted HistGradientBoosting model (the Baselines component's and `model.type: gbt`'s): vocabulary
    columns of up to 255 ids split natively, larger ones as numbers."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    native = np.array([m and n <= MAX_NATIVE_CATEGORIES for m, n in zip(mask, categories)], bool)
    args = dict(categorical_features=native if native.any() else None, random_state=seed, max_iter=200,
                early_stopping=False)
    return HistGradientBoostingClassifier(**args) if task == "classification" else HistGradientBoostingRegressor(**args)


def fit_trees(task: str, x: np.ndarray, y: np.ndarray, mask: np.ndarray, categories: List[int], seed: int,
              sample_weight: Optional[np.ndarray] = None):
    """`gbt_estimator` fitted on the tabular columns."""
    model = gbt_estimator(task, mask, categories, seed)
    return model.fit(x, y.astype(np.int64) if task == "classification" else y, sample_weight=sample_weight)


def column_categories(features: List[FeatureInfo]) -> List[int]:
    """Each tabular column's vocabulary size (0 for a number), in `tabular_columns`' order."""
    out = []
    for f in features:
        out += [f.vocab_size if f.kind == CATEGORICAL else 0] * int(np.prod(f.shape))
    return out


@keras.saving.register_keras_serializable(package="lamina")
class TabularColumns(keras.layers.Layer):
    """The model's inputs -> [batch, d] float32 columns (`tabular_columns`), for the trees."""

    def __init__(self, keys: List[str], sequences: List[str], **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.keys, self.sequences = list(keys), list(sequences)

    def get_config(self):
        return {**super().get_config(), "keys": self.keys, "sequences": self.sequences}

    def call(self, inputs):
        return _columns(inputs, self.keys, set(self.sequences))


def build_tree_model(features: List[FeatureInfo], ensemble: TreeEnsemble, name: str = "gradient_boosted_trees"
                     ) -> keras.Model:
    """A Keras model with the network's inputs (one per transformed feature) and the trees inside."""
    from lamina.models.backbone import feature_inputs

    inputs = feature_inputs(features)
    columns = TabularColumns([f.key for f in features], [f.key for f in features if f.kind == SEQUENCE],
                             name="tabular_columns")(inputs)
    return keras.Model(inputs, ensemble(columns), name=name)


def train_trees(spec, tf_transform_output, features: List[FeatureInfo], train_files: List[str],
                classes: Optional[List[str]], class_weight: Optional[Dict[int, float]] = None) -> keras.Model:
    """Gradient-boosted trees fitted on the train split's tabular columns (at most
    `evaluation.baseline.max_train_rows` rows, as the baselines), as a Keras model with the network's inputs."""
    import time

    started = time.perf_counter()
    x, y, mask = tabular_matrix(spec, tf_transform_output, features, train_files,
                                spec.evaluation.baseline.max_train_rows)
    weight = np.array([class_weight.get(int(c), 1.0) for c in y]) if class_weight else None
    fitted = fit_trees(spec.task, x, y, mask, column_categories(features), spec.training.seed, weight)
    ensemble = TreeEnsemble.from_fitted(fitted, spec.task, len(classes) if classes else None)
    trees = sum(len(it) for it in fitted._predictors)  # pylint: disable=protected-access
    print(f"    {TREES_NAME}: {trees} trees, at most {ensemble.depth} deep, on {len(y)} rows in "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    return build_tree_model(features, ensemble)


def blend_model(features: List[FeatureInfo], members: List[keras.Model], name: str = "network_and_trees"
                ) -> keras.Model:
    """The members' answers averaged (probabilities for classification, values for regression), as one Keras model
    with their inputs. Averaging a network with gradient-boosted trees often beats both on tables, since their
    errors differ (Shwartz-Ziv and Armon, "Tabular data: deep learning is not all you need", 2022)."""
    from lamina.models.backbone import feature_inputs

    inputs = feature_inputs(features)
    return keras.Model(inputs, keras.layers.Average(name="average")([m(inputs) for m in members]), name=name)


def choice_reason(choice: dict) -> Optional[str]:
    """Why `compare_on_eval` exported what it did, when another candidate scored better or it is not the network
    (None where the network scored best, or for a choice written before the standard errors)."""
    scores, errors, margin = choice.get("scores") or {}, choice.get("errors"), choice.get("margin")
    if not scores or errors is None or margin is None:
        return None
    first, exported = next(iter(scores)), choice["exported"]
    name = exported if exported != first else max(errors, key=lambda k: _lead(choice["metric"], scores, k),
                                                  default=None)
    lead = _lead(choice["metric"], scores, name) if name is not None else 0.0
    if lead <= 0:
        return None
    said = (f"lead of the {MODEL_NAMES[name]} over the {MODEL_NAMES[first]}: {lead:.4f}, "
            + (f"{lead / errors[name]:.2f} standard errors" if errors[name] else "with no spread")
            + f" (bootstrap over the eval rows); a candidate must lead by {margin:.2f} (one-sided 5%"
            + (f", Bonferroni over {len(errors)} candidates)" if len(errors) > 1 else ")"))
    return said if name == exported else f"{said}, so the {MODEL_NAMES[first]} is kept"


def _lead(metric: str, scores: Dict[str, float], name: str) -> float:
    """How far `name` scores above the first candidate by `metric` (below, for a metric where lower is better)."""
    from lamina.spec.evaluation import higher_is_better

    difference = scores[name] - scores[next(iter(scores))]
    return difference if higher_is_better(metric) else -difference


def compare_on_eval(spec, models: Dict[str, keras.Model], eval_ds, resamples: int = 200, level: float = 0.05,
                    max_rows: int = 20_000) -> dict:
    """{'metric', 'scores': {name: value}, 'errors': {name: standard error of its lead}, 'margin', 'exported': name}
    on the eval split, by the metric the baseline gate uses (the first of evaluation.metrics).

    The first model (the network) is the default. Another is exported only when its lead over the first is
    significant: more than `margin` standard errors of the difference, bootstrapped over the eval rows, where
    `margin` is the one-sided normal quantile at `level` over the number of challengers (Bonferroni). Then the best
    of those that are. On a few hundred rows a lead of a row or two is noise, and the best of three noisy scores
    leads by chance more often than one does. Past `max_rows` eval rows the bootstrap draws from a random
    `max_rows` of them, and the error is scaled by sqrt(max_rows / rows): memory and time stay flat."""
    from statistics import NormalDist

    from lamina.models.metrics import compute, resampled
    from lamina.spec.evaluation import higher_is_better

    predictions = {name: [] for name in models}
    labels = []
    for x, y in eval_ds:
        labels.append(np.asarray(y).reshape(-1))
        for name, model in models.items():
            out = np.asarray(model(x, training=False))
            predictions[name].append(out if spec.task == "classification" else out.reshape(-1))
    metric = spec.evaluation.baseline_metric
    y = np.concatenate(labels)
    predictions = {name: np.concatenate(p) for name, p in predictions.items()}
    ev = spec.evaluation

    sign = 1.0 if higher_is_better(metric) else -1.0
    scores = {name: float(compute(spec.task, [metric], y, p, ev.decision_threshold, ev.positive_index)[metric])
              for name, p in predictions.items()}
    first = next(iter(scores))
    rng = np.random.default_rng(spec.training.seed)
    pool = np.sort(rng.choice(len(y), max_rows, replace=False)) if len(y) > max_rows else np.arange(len(y))
    draws = rng.integers(0, len(pool), (resamples, len(pool)))  # rows of the pool
    # the same rows for every candidate: paired differences
    resampled_scores = {name: resampled(spec.task, metric, y[pool], predictions[name][pool], draws,
                                        ev.decision_threshold, ev.positive_index) for name in scores}
    errors = {}
    for name in scores:
        if name != first:
            leads = sign * (resampled_scores[name] - resampled_scores[first])
            spread = float(np.nanstd(leads)) if np.isfinite(leads).any() else 0.0
            errors[name] = spread * np.sqrt(len(pool) / len(y))
    margin = NormalDist().inv_cdf(1 - level / max(len(errors), 1))
    clear = [k for k in errors if _lead(metric, scores, k) > margin * errors[k]]
    best = max(clear, key=lambda k: _lead(metric, scores, k)) if clear else first
    return {"metric": metric, "scores": scores, "errors": errors, "margin": margin, "exported": best}
