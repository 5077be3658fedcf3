"""Transform's preprocessing_fn on a tiny in-memory dataset with tf.Transform's Beam implementation."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from lamina.models.preprocessing import preprocessing_fn
from lamina.spec import Spec

RAW = [
    {"length": [1.0], "count": [10], "colour": [b"red"], "label": [b"a"]},
    {"length": [3.0], "count": [20], "colour": [b"blue"], "label": [b"b"]},
    {"length": [], "count": [30], "colour": [b"red"], "label": [b"a"]},  # length missing
    {"length": [5.0], "count": [40], "colour": [], "label": [b"b"]},     # colour missing
]
FEATURE_SPEC = {
    "length": tf.io.VarLenFeature(tf.float32),
    "count": tf.io.FixedLenFeature([], tf.int64),
    "colour": tf.io.VarLenFeature(tf.string),
    "label": tf.io.FixedLenFeature([], tf.string),
}


def _instances():
    out = []
    for r in RAW:
        out.append({"length": np.array(r["length"], np.float32), "count": r["count"][0],
                    "colour": np.array(r["colour"], object), "label": r["label"][0]})
    return out


def _run_transform(spec, rows, feature_spec):
    """The spec's preprocessing_fn over `rows` in TF Transform on Beam: the transformed rows."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (data, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {"spec": spec.to_json()}), output_record_batches=False)
    return data


def _transform(spec_dict):
    data = _run_transform(Spec.from_dict(spec_dict), _instances(), FEATURE_SPEC)
    return {k: np.array([row[k] for row in data]) for k in data[0]}


def test_types_inferred_from_the_schema_when_not_declared():
    out = _transform({"data": {"path": "x.csv", "label": "label"}})
    assert sorted(out) == ["colour_xf", "count_xf", "label_xf", "length_xf"]
    # length: missing value imputed with the mean (3.0), then z-scored: mean 0.
    np.testing.assert_allclose(out["length_xf"][2], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["length_xf"].mean(), 0.0, atol=1e-6)
    # count: an INT column is numeric; z-score of 10..40.
    expected = (np.array([10, 20, 30, 40]) - 25) / np.std([10, 20, 30, 40])
    np.testing.assert_allclose(out["count_xf"], expected, rtol=1e-5)
    # colour: categorical vocabulary ids, the missing value becomes its own '' entry.
    assert out["colour_xf"].dtype == np.int64
    assert out["colour_xf"][0] == out["colour_xf"][2] != out["colour_xf"][1]
    assert len(set(out["colour_xf"].tolist())) == 3
    # label: class ids in [0, 2).
    assert out["label_xf"].tolist() in ([0, 1, 0, 1], [1, 0, 1, 0])


def test_declared_categorical_overrides_a_numeric_column():
    out = _transform({"data": {"path": "x.csv", "label": "label",
                               "features": {"count": "categorical", "length": "numeric"}}})
    assert sorted(out) == ["count_xf", "label_xf", "length_xf"]  # colour is not a declared feature
    assert out["count_xf"].dtype == np.int64 and len(set(out["count_xf"].tolist())) == 4


def test_calendar_parts_of_each_layout_in_the_graph():
    from lamina.models.preprocessing import calendar_parts

    cases = {  # text -> (year, month, day, day_of_week (Monday 0), hour)
        "%Y-%m-%d": {"2024-01-01": (2024, 1, 1, 0, 0), "1970-01-01T13:45:00Z": (1970, 1, 1, 3, 13),
                     "2000-02-29 23:59": (2000, 2, 29, 1, 23)},
        "%d/%m/%Y": {"31/12/2023": (2023, 12, 31, 6, 0)},
        "%m/%d/%Y": {"12/31/2023": (2023, 12, 31, 6, 0)},
        "%d.%m.%Y": {"04.07.1976 09:30": (1976, 7, 4, 6, 9)},
    }
    for layout, values in cases.items():
        parts = calendar_parts(tf.constant(list(values) + ["", "not a date"]), layout)
        got = np.stack([parts[k].numpy() for k in ("year", "month", "day", "day_of_week", "hour")], axis=1)
        np.testing.assert_array_equal(got[: len(values)], np.array(list(values.values()), np.float32), layout)
        assert np.isnan(got[len(values):]).all(), layout  # missing or unreadable: imputed later


def test_missing_indicator_and_dates_in_transform():
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "label", "features": {
        "monthly spend": {"type": "numeric", "missing_indicator": True},
        "Signup Date": {"type": "date", "format": "%d/%m/%Y"}}},
        "model": {"encoders": {"Signup Date": {"type": "calendar", "parts": ["year", "month"]}}}})
    rows = [{"monthly spend": np.array([10.0], np.float32), "Signup Date": np.array([b"01/01/2020"], object),
             "label": b"a"},
            {"monthly spend": np.array([], np.float32), "Signup Date": np.array([b"01/07/2022"], object),
             "label": b"b"},
            {"monthly spend": np.array([30.0], np.float32), "Signup Date": np.array([], object), "label": b"a"}]
    feature_spec = {"monthly spend": tf.io.VarLenFeature(tf.float32), "Signup Date": tf.io.VarLenFeature(tf.string),
                    "label": tf.io.FixedLenFeature([], tf.string)}
    data = _run_transform(spec, rows, feature_spec)
    from lamina.models.features import transformed_name

    spend, missing = transformed_name("monthly spend"), transformed_name("monthly spend", "missing")
    date = transformed_name("Signup Date")
    assert sorted(data[0]) == sorted([spend, missing, date, "label_xf"])
    assert [r[missing] for r in data] == [0.0, 1.0, 0.0]
    # 10 and 30: mean 20, deviation 10; the missing value sits at the mean.
    np.testing.assert_allclose([r[spend] for r in data], [-1.0, 0.0, 1.0], atol=1e-6)
    # the z-scores of year and month, then sine and cosine of the month; a missing date sits at the means
    # and the circle's centre.
    dates = np.array([r[date] for r in data])
    assert dates.shape == (3, 4)
    np.testing.assert_allclose(dates[:, 0], [-1.0, 1.0, 0.0], atol=1e-5)  # 2020 and 2022; the missing one at 2021
    np.testing.assert_allclose(dates[1, 2:], [np.sin(np.pi), np.cos(np.pi)], atol=1e-6)  # July: half a turn
    np.testing.assert_allclose(dates[2, 2:], [0.0, 0.0], atol=1e-6)


def test_an_infinity_is_a_missing_value_in_the_analysis_and_the_graph():
    """A TFRecord file, or a client, may hold inf: it is missing, as ingestion reads an 'inf' cell, and
    leaves the mean and deviation of the other values alone."""
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "label", "features": {
        "ratio": {"type": "numeric", "missing_indicator": True}}}})
    values = [[10.0], [np.inf], [30.0], [-np.inf], []]
    rows = [{"ratio": np.array(v, np.float32), "label": b"ab"[i % 2:i % 2 + 1]} for i, v in enumerate(values)]
    feature_spec = {"ratio": tf.io.VarLenFeature(tf.float32), "label": tf.io.FixedLenFeature([], tf.string)}
    data = _run_transform(spec, rows, feature_spec)
    from lamina.models.features import transformed_name

    ratio, missing = transformed_name("ratio"), transformed_name("ratio", "missing")
    np.testing.assert_allclose([r[ratio] for r in data], [-1.0, 0.0, 1.0, 0.0, 0.0], atol=1e-6)  # mean 20, sd 10
    assert [r[missing] for r in data] == [0.0, 1.0, 0.0, 1.0, 1.0]


def test_the_analysis_reads_the_train_split_once():
    """Numeric columns with blanks, a date, a category and the label: every analyzer takes its input
    straight from the raw rows, so tf.Transform's analysis is one pass over the train split. Imputing
    the mean before z-scoring made it two: the second pass was a third of what Transform read
    (docs/benchmarks.md)."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "label", "features": {
        "monthly spend": {"type": "numeric", "missing_indicator": True}, "age": "numeric",
        "Signup Date": {"type": "date", "format": "%d/%m/%Y"}, "plan": "categorical"}}})
    rows = [{"monthly spend": np.array([] if i % 3 == 0 else [10.0 * i], np.float32),
             "age": np.array([20.0 + i], np.float32), "plan": np.array([b"basic" if i % 2 else b"pro"], object),
             "Signup Date": np.array([] if i == 4 else [f"0{1 + i % 9}/01/2020".encode()], object),
             "label": b"a" if i % 2 else b"b"} for i in range(9)]
    feature_spec = {"monthly spend": tf.io.VarLenFeature(tf.float32), "age": tf.io.VarLenFeature(tf.float32),
                    "plan": tf.io.VarLenFeature(tf.string), "Signup Date": tf.io.VarLenFeature(tf.string),
                    "label": tf.io.FixedLenFeature([], tf.string)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    read = beam.metrics.Metrics.counter("test", "rows_read")

    def counted(row):
        read.inc()
        return row

    pipeline = beam.Pipeline()
    # TFX's Transform asks for deep copies: each analysis phase reads the data again, not a stored copy
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(), use_deep_copy_optimization=True):
        raw = pipeline | beam.Create(rows) | beam.Map(counted)
        _ = (raw, metadata) | tft_beam.AnalyzeDataset(lambda inputs: preprocessing_fn(inputs, {"spec": spec.to_json()}))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name("rows_read"))["counters"]  # one per copy
    assert sum(c.committed for c in counters) == len(rows)


def test_safe_names_are_stable_and_keep_cleaned_collisions_apart():
    from lamina.models.features import safe_name

    assert safe_name("bill_length_mm") == "bill_length_mm"
    assert safe_name("monthly spend") == "monthly_spend_40f087" != safe_name("monthly_spend") == "monthly_spend"
    assert safe_name("Größe") == "Grosse_d9130a" and safe_name("2nd_choice") == "f_2nd_choice_a2b264"
    assert safe_name("Preis (€)") != safe_name("Preis ($)")
    import re

    for name in ("", " ", "日本語", "a/b", "x" * 200, "_x"):
        assert re.match(r"^[A-Za-z][A-Za-z0-9_]*$", safe_name(name)) and len(safe_name(name)) <= 50, name


def test_a_date_with_a_reference_gets_the_days_between_them():
    from lamina.models.features import transformed_name

    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "label", "features": {
        "signup": {"type": "date"},
        "last login": {"type": "date", "format": "%d.%m.%Y", "reference": "signup"}}},
        "model": {"encoders": {"date": {"type": "calendar", "parts": ["year"]}}}})
    rows = [{"signup": np.array([b"2024-01-01"], object), "last login": np.array([b"11.01.2024"], object),
             "label": b"a"},   # 10 days
            {"signup": np.array([b"2024-02-28"], object), "last login": np.array([b"01.03.2024 12:00"], object),
             "label": b"b"},   # 2.5 days (2024 is a leap year)
            {"signup": np.array([b"2023-12-31"], object), "last login": np.array([b"31.12.2024"], object),
             "label": b"a"}]   # 366 days
    feature_spec = {"signup": tf.io.VarLenFeature(tf.string), "last login": tf.io.VarLenFeature(tf.string),
                    "label": tf.io.FixedLenFeature([], tf.string)}
    data = _run_transform(spec, rows, feature_spec)
    login = np.array([r[transformed_name("last login")] for r in data])
    assert login.shape == (3, 2)  # the year's z-score, then the days since signup, z-scored
    days = np.array([10.0, 2.5, 366.0])
    np.testing.assert_allclose(login[:, 1], (days - days.mean()) / days.std(), atol=1e-5)
    assert np.array([r[transformed_name("signup")] for r in data]).shape == (3, 1)


def test_a_reference_must_be_another_date_feature():
    from lamina.spec import SpecError

    with pytest.raises(SpecError) as e:
        Spec.from_dict({"data": {"path": "x.csv", "label": "y", "features": {
            "signup": "date", "plan": "categorical", "login": {"type": "date", "reference": "plan"}}}})
    assert e.value.problems == ["data.features.2.reference: Received 'plan'; expected another date feature: 'signup'."]


def test_numeric_columns_share_one_set_of_analyzers_and_keep_their_own_scale():
    """Ten numeric columns (a spreadsheet's: different scales, blanks in places) are z-scored each by
    its own mean and deviation, from one set of analyzers: Transform's Beam graph, and its time,
    no longer grow with the number of numeric columns (issue 19: 42 s -> 17 s on 25 columns)."""
    rng = np.random.default_rng(3)
    names = [f"Col {i} (%)" for i in range(10)]
    values = rng.normal(size=(40, 10)) * np.arange(1, 11) * 100 + np.arange(10) * 1000
    blank = rng.random((40, 10)) < 0.1
    rows = [{**{n: np.array([] if blank[r, i] else [values[r, i]], np.float32) for i, n in enumerate(names)},
             "label": b"a" if r % 2 else b"b"} for r in range(40)]
    feature_spec = {**{n: tf.io.VarLenFeature(tf.float32) for n in names},
                    "label": tf.io.FixedLenFeature([], tf.string)}
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "label", "features": {n: "numeric" for n in names}}})
    data = _run_transform(spec, rows, feature_spec)
    from lamina.models.features import transformed_name

    for i, n in enumerate(names):
        present = values[~blank[:, i], i].astype(np.float32)
        expected = np.where(blank[:, i], 0.0, (values[:, i].astype(np.float32) - present.mean()) / present.std())
        got = np.array([row[transformed_name(n)] for row in data])
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3, err_msg=n)

    with tf.compat.v1.Graph().as_default() as graph:
        inputs = {n: tf.compat.v1.sparse_placeholder(tf.float32, [None, 1]) for n in names}
        inputs["label"] = tf.compat.v1.placeholder(tf.string, [None])
        preprocessing_fn(inputs, {"spec": spec.to_json()})
    scopes = {op.name.split("/")[0] for op in graph.get_operations() if op.name.startswith("scale_to_z_score")}
    assert scopes == {"scale_to_z_score"}


def test_a_sequence_keeps_its_last_values_z_scored_by_every_value_and_pads_with_nan():
    """Logs of different lengths (one empty, one longer than max_length, one with a missing reading):
    the last max_length values, left-aligned, z-scored by the mean and deviation of all values kept."""
    nan = float("nan")
    logs = [[20.0, 21.0, 22.0], [30.0, 31.0, 32.0, 33.0, 34.0, 35.0], [], [25.0, nan, 27.0]]
    rows = [{"log": np.array(v, np.float32), "label": b"a" if i % 2 else b"b"} for i, v in enumerate(logs)]
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "label", "features": {"log": {"type": "sequence"}}},
                           "model": {"encoders": {"log": {"type": "gru", "max_length": 4}}}})
    data = _run_transform(spec, rows, {"log": tf.io.VarLenFeature(tf.float32),
                                       "label": tf.io.FixedLenFeature([], tf.string)})
    out = np.array([row["log_xf"] for row in data])
    kept = [[20, 21, 22], [32, 33, 34, 35], [], [25, 27]]  # what the statistics see (NaN is no value)
    values = np.array([v for k in kept for v in k], np.float64)
    mean, std = values.mean(), values.std()
    expected = np.full((4, 4), np.nan)
    for i, row in enumerate([[20, 21, 22], [32, 33, 34, 35], [], [25, nan, 27]]):
        expected[i, :len(row)] = (np.array(row) - mean) / std
    np.testing.assert_allclose(out, expected, rtol=1e-5)


# Cells as spreadsheets and clients write them, beside what ingestion reads: one value each.
SPELLINGS = [" male", "male ", "\u00a0male\u3000", "\tmale\n", " ?", "NA", "n/a", "#N/A", "-", "none", "",
             "  ", "Yes", "YES", " no ", "True", "Y", "1", "0", "?x", "Male", "None of these", "日本 ", "Ölçek"]


def test_a_categorical_cell_means_the_same_in_the_graph_as_in_python():
    from lamina.cells import normalize_category
    from lamina.models.preprocessing import normalize_categories

    graph = [v.decode("utf-8") for v in normalize_categories(tf.constant(SPELLINGS)).numpy()]
    assert graph == [normalize_category(s) for s in SPELLINGS]
    assert graph[:13] == ["male"] * 4 + [""] * 8 + ["yes"]
    assert graph[13:] == ["yes", "no", "true", "y", "1", "0", "?x", "Male", "None of these", "日本", "Ölçek"]


def test_spaces_markers_and_boolean_case_map_to_one_vocabulary_id():
    rows = [{"colour": np.array([c], object), "label": b"a"} for c in
            [b"red", b" red", b"red  ", b"?", b"NA", b"", b"Yes", b"yes", b"YES", b"blue"]]
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "label", "features": {"colour": "categorical"}}})
    data = _run_transform(spec, rows, {"colour": tf.io.VarLenFeature(tf.string),
                                       "label": tf.io.FixedLenFeature([], tf.string)})
    ids = [int(row["colour_xf"]) for row in data]
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] == ids[5] and ids[6] == ids[7] == ids[8]
    assert len(set(ids)) == 4  # red, '' (missing), yes, blue
