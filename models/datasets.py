"""The Trainer's input: ExampleGen's gzipped TFRecords put through Transform's graph, as batches, cached in
memory when they fit.

Transform only analyzes (it writes the graph, not transformed copies of the splits): writing both splits
was half of its time, and reading raw records through the graph costs the readers about as much as reading
transformed ones (docs/benchmarks.md, "Transform writes the graph only"). The graph is the one the
SavedModel serves with, so training and serving share one transformation.

Shared by the Trainer, the Tuner's trials, the baselines, the explanations and the TFLite export.
"""

import math
import os
from typing import List, Optional, Tuple

import tensorflow as tf

from lamina.models.export import model_inputs
from lamina.models.features import label_key as features_label_key, raw_label_column, AUDIO, IMAGE, TEXT, FeatureInfo
from lamina.spec import Spec

# Decoded examples are cached in memory when they take at most this much (LAMINA_CACHE_MB overrides).
# It bounds the Trainer's memory: a larger train split is read from disk every epoch instead.
CACHE_BUDGET_MB = 256
# What tf.data's cache holds per example beyond the values: measured on TF 2.16 with 1 to 26 scalar
# features (benchmarks/scale.py, docs/benchmarks.md): about 360 bytes an element and 32 a tensor.
CACHE_ELEMENT_OVERHEAD = 400
CACHE_TENSOR_OVERHEAD = 48


def decoded_bytes(features: List[FeatureInfo]) -> int:
    """What one decoded example costs in tf.data's cache: its values, its tensors and the label."""
    values = sum(4 * math.prod(f.shape) + CACHE_TENSOR_OVERHEAD for f in features)
    return values + CACHE_TENSOR_OVERHEAD + CACHE_ELEMENT_OVERHEAD


def count_records(files: List[str]) -> int:
    """Records in gzipped TFRecord files, counted a batch at a time inside tf.data: one element at a time
    costs about 40 us a record, a Python loop 60 (1M records: 40-60 s against 2-3 s)."""
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", buffer_size=8 << 20).batch(4096)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, b: n + tf.shape(b, out_type=tf.int64)[0]))


def fits_in_memory(files: List[str], features: List[FeatureInfo], budget_mb: Optional[float] = None) -> bool:
    """Whether the decoded examples of `files` fit the cache budget (counts records only if it might)."""
    budget = 1024 * 1024 * (budget_mb if budget_mb is not None
                            else float(os.environ.get("LAMINA_CACHE_MB", CACHE_BUDGET_MB)))
    if sum(tf.io.gfile.stat(f).length for f in files) > budget:
        return False
    return count_records(files) * decoded_bytes(features) <= budget


def cache_plan(train_files: List[str], eval_files: List[str], features: List[FeatureInfo],
               budget_mb: Optional[float] = None) -> Tuple[bool, bool]:
    """(cache the train split, cache the eval split): both when they fit the budget together, else
    the train split alone when it fits (it is read every epoch, and shuffled), else neither.

    The caches are what grows with the data in the Trainer; past the budget, examples are read
    from disk every epoch and memory stays flat (docs/benchmarks.md, "Cost growth").
    """
    if not fits_in_memory(train_files, features, budget_mb):
        return False, False
    return True, fits_in_memory(train_files + eval_files, features, budget_mb)


def expand_file_patterns(file_patterns: List[str]) -> List[str]:
    return sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))


# Raw records per call of the transform graph on the way to the per-example pipeline (images decoded, examples
# cached): the graph runs on batches, like parse_example, and the batches are then split into examples.
TRANSFORM_BATCH = 256


def raw_decoder(tf_transform_output, columns: Optional[List[str]] = None):
    """A function from a batch of serialized raw tf.Examples (ExampleGen's records) to Transform's features
    for them: parsed by the raw schema and put through the transform graph, as the SavedModel's
    `transform_features` signature does. Static shapes are those of Transform's feature spec.

    `columns`: parse only these raw columns; the graph then gives only the features computed from them
    (TFT prunes the rest), e.g. the label alone.
    """
    layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    if columns is not None:
        raw_spec = {k: raw_spec[k] for k in columns}
    feature_spec = tf_transform_output.transformed_feature_spec()

    # Plain TensorFlow calls, no Python control flow on tensors: AutoGraph (which tf.data's map would apply
    # to this function and to everything it calls, Keras's and TFT's layer code included) would only spend
    # seconds converting that code, once per process (docs/benchmarks.md).
    @tf.autograph.experimental.do_not_convert
    def decode(serialized):
        out = layer(tf.io.parse_example(serialized, raw_spec))
        for key, value in out.items():
            fspec = feature_spec.get(key)
            if isinstance(fspec, tf.io.FixedLenFeature) and isinstance(value, tf.Tensor):
                out[key] = tf.ensure_shape(value, [None, *fspec.shape])
        return out

    return decode


def make_dataset(file_patterns: List[str], tf_transform_output, spec: Spec, features: List[FeatureInfo],
                 batch_size: int, shuffle: bool, seed: int = 0, cache: Optional[bool] = None,
                 part: Optional[Tuple[float, bool]] = None,
                 shard: Optional[Tuple[int, int]] = None) -> tf.data.Dataset:
    """(features, label) batches from ExampleGen's gzipped TFRecords, put through Transform's graph.

    Records are read, parsed and transformed in parallel, images decoded and resized in parallel, the
    decoded examples (texts still as strings) cached in memory when they fit (`cache=None`
    decides by size), shuffled after the cache, batched, texts tokenized a batch at a time, and
    prefetched. When they do not fit, the serialized records are shuffled before decoding
    instead, so the shuffle buffer holds small strings, not pixels.

    `part=(share, True)` keeps an evenly spread `share` of the examples (in file order), and
    `(share, False)` the rest: the Tuner's holdout and its training part.

    `shard=(count, index)` keeps every count-th example from the index-th, after the shuffle (every
    worker shuffles alike, from the same seed): the workers' batches of one step together hold the
    examples of one global batch of a single process.
    """
    files = expand_file_patterns(file_patterns)
    if not files:
        raise FileNotFoundError(f"no examples match {file_patterns}")
    transform = raw_decoder(tf_transform_output)
    label_key = features_label_key(spec)
    if cache is None:
        cache = fits_in_memory(files, features)

    texts = [f for f in features if f.kind == TEXT]

    def parse(parsed):  # one transformed example
        inputs = model_inputs(parsed, [f for f in features if f.kind != TEXT], batched=False)
        for f in texts:  # the raw string; tokenized a batch at a time below
            inputs[f.key] = parsed[f.transformed_key]
        return inputs, parsed[label_key]

    def tokenize(inputs, label):
        # A batch of strings at once: ~10x the throughput of tokenizing string by string.
        return {**inputs, **{f.key: f.tokenizer()(inputs[f.key]) for f in texts}}, label

    def parse_batch(serialized):
        parsed = transform(serialized)
        inputs, label = model_inputs(parsed, features, batched=True), parsed[label_key]
        if spec.task == "classification":  # labels unseen in training (-1) cannot be learned from
            keep = label >= 0
            inputs, label = {k: tf.boolean_mask(v, keep) for k, v in inputs.items()}, tf.boolean_mask(label, keep)
        return inputs, label

    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    if part is not None:  # before any shuffle: the same examples in every epoch and every trial
        share, take = part

        def keep(i, record):
            step = tf.cast(i, tf.float64)
            hit = tf.math.floor((step + 1.0) * share) - tf.math.floor(step * share) >= 1.0
            return hit if take else tf.logical_not(hit)

        ds = ds.enumerate().filter(keep).map(lambda i, record: record)
    if shuffle and not cache:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if not cache and not any(f.kind in (IMAGE, AUDIO) for f in features):
        # Read from disk every epoch: a batch of records parsed and transformed at once, several
        # times faster per example than one record at a time (benchmarks/scale.py).
        if shard:
            ds = ds.shard(*shard)
        return ds.batch(batch_size).map(parse_batch, num_parallel_calls=tf.data.AUTOTUNE,
                                        deterministic=True).prefetch(tf.data.AUTOTUNE)
    ds = ds.batch(TRANSFORM_BATCH).map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if spec.task == "classification":
        # Labels unseen in training map to -1 in Transform; they cannot be learned from.
        ds = ds.filter(lambda x, y: y >= 0)
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)
    if shard:
        ds = ds.shard(*shard)
    ds = ds.batch(batch_size)
    if texts:
        ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _label_batches(files: List[str], tf_transform_output, spec: Spec):
    """The transformed label of every record in `files` (ExampleGen's), 4,096 at a time, as numpy arrays:
    only the label's raw column is parsed and put through the graph."""
    key = features_label_key(spec)
    decode = raw_decoder(tf_transform_output, [raw_label_column(spec)])
    ds = tf.data.TFRecordDataset(expand_file_patterns(files), compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.batch(4096).map(lambda r: tf.reshape(decode(r)[key], [-1]))
    return ds.as_numpy_iterator()


def label_counts(files: List[str], tf_transform_output, spec: Spec, num_classes: int) -> List[int]:
    """Examples per class index in `files`, in one pass over the labels."""
    import numpy as np

    counts = np.zeros(num_classes, np.int64)
    for labels in _label_batches(files, tf_transform_output, spec):
        labels = labels[(labels >= 0) & (labels < num_classes)]
        counts += np.bincount(labels, minlength=num_classes)
    return counts.tolist()


def label_moments(files: List[str], tf_transform_output, spec: Spec) -> Tuple[float, float]:
    """(mean, standard deviation) of a regression label in `files`, in one pass over the labels.

    NaN labels are left out. A label with no spread, or no values, gets a deviation of 1.
    """
    import numpy as np

    n, total, squares = 0, 0.0, 0.0
    shift = None  # sums around the first value seen: no cancellation for labels far from 0
    for labels in _label_batches(files, tf_transform_output, spec):
        labels = labels[np.isfinite(labels)].astype(np.float64)
        if not labels.size:
            continue
        if shift is None:
            shift = float(labels[0])
        labels = labels - shift
        n, total, squares = n + labels.size, total + labels.sum(), squares + np.square(labels).sum()
    if not n:
        return 0.0, 1.0
    mean = total / n
    std = math.sqrt(max(squares / n - mean * mean, 0.0))
    return mean + shift, (std if std > 0 and math.isfinite(std) else 1.0)
