"""Transform's preprocessing_fn: the one place raw features become model inputs.

Numeric features: z-scored by the mean and deviation of the train split's values present; a missing
value becomes 0 (the mean); with `missing_indicator`, a 0/1 feature says which values were missing.
Categorical features: surrounding spaces are dropped, missing values and markers ('?', 'NA') become '',
boolean spellings are lower-cased (`normalize_categories`), then a vocabulary maps them to ids.
Date features: the string is parsed in the graph by its layout (`FeatureSpec.format`) into
calendar parts (year, month, day of week, hour, ...), each z-scored, the cyclic ones also as sine and
cosine; a missing or unparseable date takes the training mean of each part.
Image features: the encoded bytes pass through; tf.data and the serving graph decode them.
Text features: the UTF-8 string passes through ('' when missing); the model's tokenizer runs in
tf.data and in the serving graph.
Sequence features: a list of floats of any length; the last `max_length` values are kept, z-scored
by the mean and deviation of every value in the train split, left-aligned, and padded with NaN
to [batch, max_length] (NaN also marks a missing value inside a sequence; the encoder masks both).
The label becomes a class index (classification) or a float (regression).
The same graph runs inside the exported SavedModel, so serving cannot drift from training.
"""

import tensorflow as tf
import tensorflow_transform as tft

import math
import re

from lamina.cells import CATEGORY_BOOLEANS, MISSING_NUMBER_TOKENS
from lamina.models.features import (AUDIO, CATEGORICAL, CYCLIC_PERIODS, DATE, IMAGE, LABEL_VOCABULARY, MISSING_PART, NUMERIC,
                                    SEQUENCE, TEXT, input_feature_names, kind_from_dtype, transformed_label_key,
                                    transformed_name, vocabulary_name)
from lamina.spec import Spec

# Where year, month and day sit among a date's digit groups, per layout (the time follows them).
_DATE_ORDER = {"%Y-%m-%d": (0, 1, 2), "%Y/%m/%d": (0, 1, 2), "%m/%d/%Y": (2, 0, 1), "%d/%m/%Y": (2, 1, 0),
               "%d.%m.%Y": (2, 1, 0)}


def _to_dense(x, default):
    """A [batch] dense tensor from a dense, sparse or ragged column; missing values get `default`."""
    if isinstance(x, tf.SparseTensor):
        batch = x.dense_shape[0]
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [batch, 1]), default_value=default)
    elif isinstance(x, tf.RaggedTensor):
        x = x[:, :1].to_tensor(default_value=default, shape=[None, 1])
    if x.shape.rank == 2:
        x = tf.squeeze(x, axis=1)
    return x


def _values(x):
    return x.values if isinstance(x, (tf.SparseTensor, tf.RaggedTensor)) else tf.reshape(x, [-1])


def _dense_float(x):
    """[batch] float32 with NaN where the value is missing. An infinity is missing too, as ingestion
    reads an 'inf' cell: a client may send one, and a TFRecord file may hold one."""
    if isinstance(x, tf.SparseTensor):
        x = tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    elif isinstance(x, tf.RaggedTensor):
        x = tf.cast(x, tf.float32)
    x = tf.cast(_to_dense(x, float("nan")), tf.float32)
    return tf.where(tf.math.is_inf(x), float("nan"), x)


def _impute_and_scale(dense):
    """A z-score by the mean and deviation of the values present; a missing value (NaN) is 0, the mean.

    `dense` is [batch], or [batch, k] for k values scaled each on its own (one set of analyzers
    for all k: Transform's cost grows with the number of analyzers). TFT's mean and variance leave
    NaNs out, so the statistics need one pass over the data. Imputing the mean first and scaling
    the result made a second analysis pass over the whole train split, since the scaling's input
    then depended on an analyzer's output (docs/benchmarks.md). A column with no value present in
    training is 0 everywhere.
    """
    scaled = tft.scale_to_z_score(dense, elementwise=True)
    # NaN where the value is missing, and for every value of a column with none present in training.
    return tf.where(tf.math.is_nan(scaled), tf.zeros_like(scaled), scaled)


def _numeric_columns(columns):
    """{name: [batch] z-score} for every numeric column, from one set of analyzers.

    The columns are stacked into one [batch, k] tensor and scaled elementwise: each column still
    gets its own mean and variance, but Transform's Beam graph holds three analyzers instead of
    three per column (20 numeric columns took 42 s of Transform on 10k rows with an analyzer set
    each; see docs/benchmarks.md).
    """
    names = list(columns)
    if not names:
        return {}
    scaled = _impute_and_scale(tf.stack([_dense_float(columns[n]) for n in names], axis=1))
    return {name: scaled[:, i] for i, name in enumerate(names)}


def _missing(x):
    return tf.cast(tf.math.is_nan(_dense_float(x)), tf.float32)


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), in float ops."""
    y = year - tf.cast(month <= 2, tf.float32)
    era = tf.math.floor(y / 400.0)
    yoe = y - era * 400.0
    mp = tf.math.floormod(month + 9.0, 12.0)
    doy = tf.math.floor((153.0 * mp + 2.0) / 5.0) + day - 1.0
    doe = yoe * 365.0 + tf.math.floor(yoe / 4.0) - tf.math.floor(yoe / 100.0) + doy
    return era * 146097.0 + doe - 719468.0


def calendar_parts(x, layout: str):
    """{part: [batch] float32} from date strings written in `layout`; NaN where a date is missing."""
    text = _to_dense(x, "")
    digits = tf.strings.strip(tf.strings.regex_replace(text, "[^0-9]+", " "))
    groups = tf.strings.to_number(tf.strings.split(digits), tf.float32)
    groups = groups.to_tensor(default_value=float("nan"), shape=[None, 6])
    yi, mi, di = _DATE_ORDER[layout]
    year, month, day = groups[:, yi], groups[:, mi], groups[:, di]
    valid = tf.logical_and(tf.logical_and(month >= 1, month <= 12), tf.logical_and(day >= 1, day <= 31))
    nan = tf.fill(tf.shape(year), float("nan"))
    year, month, day = (tf.where(valid, v, nan) for v in (year, month, day))
    hour = tf.where(tf.logical_and(valid, tf.math.is_nan(groups[:, 3])), tf.zeros_like(year), groups[:, 3])
    # 1970-01-01 was a Thursday; Monday is 0.
    day_of_week = tf.math.floormod(days_from_civil(year, month, day) + 3.0, 7.0)
    return {"year": year, "month": month, "day": day, "day_of_week": day_of_week, "hour": hour}


def _days(values):
    """Days since 1970-01-01, with the hour as a fraction; NaN where the date is missing."""
    return days_from_civil(values["year"], values["month"], values["day"]) + values["hour"] / 24.0


def _date(x, layout: str, parts, reference=None):
    """[batch, width] calendar inputs: each part's z-score (then, with `reference` ((tensor, layout)
    of another date), the days from it to this date, z-scored), then sine and cosine of the cyclic parts."""
    values = calendar_parts(x, layout)
    scaled = [values[p] for p in parts]
    if reference is not None:
        scaled.append(_days(values) - _days(calendar_parts(*reference)))
    columns = [_impute_and_scale(tf.stack(scaled, axis=1))]
    for part in parts:
        if part in CYCLIC_PERIODS:
            start = 0.0 if part in ("day_of_week", "hour") else 1.0
            angle = 2.0 * math.pi * (values[part] - start) / CYCLIC_PERIODS[part]
            waves = tf.stack([tf.sin(angle), tf.cos(angle)], axis=1)
            columns.append(tf.where(tf.math.is_nan(waves), tf.zeros_like(waves), waves))  # missing: the centre
    return tf.concat(columns, axis=1)


# What Python's str.strip() takes off both ends: ASCII and Unicode spaces (RE2's \s is ASCII only).
_SPACE = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\p{Z}]"
_ALTERNATIVES = "|".join


def normalize_categories(x):
    """`lamina.cells.normalize_category` in the graph, on a string tensor: ingestion strips every cell,
    so a client's ' male' must mean 'male'; '?', 'NA' and the other missing markers are ''; 'Yes' is 'yes'."""
    s = tf.strings.regex_replace(x, f"^{_SPACE}+|{_SPACE}+$", "")
    low = tf.strings.lower(s)
    missing = tf.strings.regex_full_match(low, _ALTERNATIVES(re.escape(t) for t in sorted(MISSING_NUMBER_TOKENS)))
    s = tf.where(missing, tf.zeros_like(s), s)
    boolean = tf.strings.regex_full_match(low, _ALTERNATIVES(sorted(CATEGORY_BOOLEANS)))
    return tf.where(boolean, low, s)


def _categorical(x, name, cfg):
    if x.dtype != tf.string:
        if isinstance(x, tf.SparseTensor):
            x = tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
        else:
            x = tf.strings.as_string(x)
        dense = _to_dense(x, "")
    else:
        dense = normalize_categories(_to_dense(x, ""))
    return tft.compute_and_apply_vocabulary(
        dense, top_k=cfg.top_k, num_oov_buckets=cfg.num_oov_buckets, vocab_filename=vocabulary_name(name))


def sequence_values(x, max_length: int):
    """[batch, max_length] float32 from a list feature: its last `max_length` values, left-aligned,
    NaN after its end. `x` is sparse (VarLen), ragged, or dense [batch, k]."""
    if isinstance(x, tf.SparseTensor):
        rt = tf.RaggedTensor.from_sparse(x)
    elif isinstance(x, tf.RaggedTensor):
        rt = x
    else:
        rt = tf.RaggedTensor.from_tensor(tf.reshape(x, [tf.shape(x)[0], -1]))
    rt = tf.cast(rt, tf.float32)
    lengths = rt.row_lengths()
    start = tf.maximum(lengths - max_length, 0)
    kept = tf.RaggedTensor.from_row_lengths(
        tf.gather(rt.values, tf.ragged.range(rt.row_starts() + start, rt.row_limits()).values),
        lengths - start)
    return kept.to_tensor(default_value=float("nan"), shape=[None, max_length])


def _sequence(x, max_length: int):
    """A sequence's values z-scored by the train split's values, NaN where there is none."""
    dense = sequence_values(x, max_length)
    values = tf.reshape(dense, [-1])
    values = tf.boolean_mask(values, tf.logical_not(tf.math.is_nan(values)))
    mean = tft.mean(values)
    deviation = tf.sqrt(tft.var(values))
    return (dense - mean) / tf.where(deviation > 0, deviation, tf.ones_like(deviation))


def forecast_preprocessing(inputs, spec: Spec):
    """A forecast's windows: the target's history and its horizon stay in the target's units (the model
    scales each window by its own history), padded with NaN; covariates are z-scored sequences of
    lookback (past-only) or lookback + horizon (known-future) steps; the series ID is a category."""
    from lamina.constants import HORIZON_KEY

    fc = spec.forecast
    outputs = {transformed_name(spec.data.label): sequence_values(inputs[spec.data.label], fc.lookback),
               transformed_label_key(HORIZON_KEY): sequence_values(inputs[HORIZON_KEY], fc.horizon)}
    for name in fc.covariates:
        steps = fc.lookback + (fc.horizon if name in fc.known_future else 0)
        outputs[transformed_name(name)] = _sequence(inputs[name], steps)
    if fc.series_id:
        outputs[transformed_name(fc.series_id)] = _categorical(inputs[fc.series_id], fc.series_id,
                                                              spec.encoder_for(fc.series_id, CATEGORICAL))
    return outputs


def preprocessing_fn(inputs, custom_config):
    """tf.Transform callback. `custom_config['spec']` holds the spec as JSON."""
    spec = Spec.from_json(custom_config["spec"])
    if spec.task == "forecast":
        return forecast_preprocessing(inputs, spec)
    declared = spec.data.feature_types
    by_name = {f.name: f for f in spec.data.features or []}
    outputs = {}
    names = input_feature_names(spec, list(inputs))
    kinds = {name: declared.get(name) or kind_from_dtype(inputs[name].dtype) for name in names}
    numeric = _numeric_columns({name: inputs[name] for name in names if kinds[name] == NUMERIC})
    for name in names:
        x = inputs[name]
        kind = kinds[name]
        if kind == NUMERIC:
            outputs[transformed_name(name)] = numeric[name]
            if name in by_name and by_name[name].missing_indicator:
                outputs[transformed_name(name, MISSING_PART)] = _missing(x)
        elif kind == CATEGORICAL:
            outputs[transformed_name(name)] = _categorical(x, name, spec.encoder_for(name, CATEGORICAL))
        elif kind in (IMAGE, TEXT, AUDIO):
            outputs[transformed_name(name)] = tf.identity(_to_dense(x, ""))
        elif kind == SEQUENCE:
            outputs[transformed_name(name)] = _sequence(x, spec.encoder_for(name, SEQUENCE).max_length)
        elif kind == DATE:
            f = by_name[name]
            reference = (inputs[f.reference], by_name[f.reference].format) if f.reference else None
            outputs[transformed_name(name)] = _date(x, f.format, spec.encoder_for(name, DATE).parts, reference)
        else:  # rejected by the spec already; kept as a guard for new feature types
            raise ValueError(f"feature {name!r}: type {kind!r} has no preprocessing; expected 'numeric', "
                             f"'categorical', 'image', 'text', 'date', 'sequence' or 'audio'.")

    raw_label = inputs[spec.data.label]
    label = _to_dense(raw_label, "" if raw_label.dtype == tf.string else tf.cast(0, raw_label.dtype))
    if spec.task == "classification":
        if label.dtype != tf.string:
            label = tf.strings.as_string(label)
        # Sorted by frequency, then value; labels never seen in training map to -1. A declared positive
        # class comes first, whatever its frequency: the positive-class metrics are of index 0 then.
        positive = spec.evaluation.positive_class
        outputs[transformed_label_key(spec.data.label)] = tft.compute_and_apply_vocabulary(
            label, vocab_filename=LABEL_VOCABULARY, num_oov_buckets=0, default_value=-1,
            reserved_tokens=[positive] if positive is not None else None)
    else:
        outputs[transformed_label_key(spec.data.label)] = tf.cast(label, tf.float32)
    return outputs
