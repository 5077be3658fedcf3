"""Forecast windows: time on a grid, gaps, the split by time, requests from recent history, and the
seasonal-naive and last-value baselines with the metrics, on hand-made series."""

import datetime
import math

import numpy as np
import pytest

from lamina.constants import HORIZON_KEY
from lamina.components.forecast_windows import (CsvInputError, WindowSettings, build_series, cutoff_index, parse_time,
                                                request_windows, row_point, seasonal_scale, series_windows, step_of,
                                                time_of)
from lamina.models.forecast_metrics import forecast_metrics, last_value, seasonal_naive

SETTINGS = WindowSettings(target="Units sold", timestamp="Date", frequency="D", lookback=4, horizon=2,
                          series_id="Store", known_future=("Promo",), past_only=("Temp",), season=2)


def _points(days, store="A", start=datetime.date(2024, 1, 1), skip=()):
    out = []
    for d in range(days):
        if d in skip:
            continue
        day = start + datetime.timedelta(days=d)
        record = {"Date": day.isoformat(), "Store": store, "Units sold": str(10 + d), "Promo": str(d % 2),
                  "Temp": f"{d}.5"}
        out.append(row_point(record, SETTINGS, f"sales.csv, line {d + 2}")[1])
    return out


@pytest.mark.parametrize("text, expected", [
    ("2024-03-05", datetime.datetime(2024, 3, 5)), ("2024-03-05 14:30", datetime.datetime(2024, 3, 5, 14, 30)),
    ("2024-03-05T14:00:00Z", datetime.datetime(2024, 3, 5, 14)), ("05.03.2024", datetime.datetime(2024, 3, 5)),
    ("2024-03-05T15:00:00+01:00", datetime.datetime(2024, 3, 5, 14)), ("31/12/2024", datetime.datetime(2024, 12, 31)),
    ("1949-01", datetime.datetime(1949, 1, 1)), ("1960/12", datetime.datetime(1960, 12, 1)), ("1949-13", None),
    ("next tuesday", None), ("", None)])
def test_parse_time(text, expected):
    assert parse_time(text) == expected


def test_steps_on_each_frequency_and_back():
    t = datetime.datetime(2024, 3, 5, 14)
    for frequency in ("H", "D", "W", "M"):
        assert time_of(step_of(t, frequency), frequency, t) == t
    assert step_of(datetime.datetime(2024, 3, 1), "M") - step_of(datetime.datetime(2023, 12, 1), "M") == 3
    assert time_of(step_of(t, "D") + 3, "D", t) == datetime.datetime(2024, 3, 8, 14)
    assert step_of(datetime.datetime(2024, 3, 11), "W") - step_of(datetime.datetime(2024, 3, 4), "W") == 1


def test_no_training_target_and_no_eval_input_after_the_cutoff():
    series = build_series("A", _points(20), SETTINGS)
    cutoff = cutoff_index(len(series), SETTINGS)
    assert cutoff == 18
    windows = list(series_windows(series, SETTINGS))
    train = [w for w in windows if w[0] == "train"]
    assert [o for _, _, o, _ in train] == list(range(4, 17))  # targets o, o+1 end before step 18
    assert all(origin + SETTINGS.horizon <= cutoff for _, _, origin, _ in train)
    (split, fold, origin, values), = [w for w in windows if w[0] == "eval"]
    assert (split, fold, origin) == ("eval", 1, cutoff)
    assert values["Units sold"] == [24.0, 25.0, 26.0, 27.0]  # steps 14-17: all before the cutoff
    assert values[HORIZON_KEY] == [28.0, 29.0]
    assert values["Promo"] == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]  # known for the horizon too
    assert values["Temp"] == [14.5, 15.5, 16.5, 17.5]  # past only


def test_a_backtest_moves_the_cutoff_back_and_scores_rolling_origins():
    settings = WindowSettings(**{**SETTINGS.__dict__, "backtest": 3})
    series = build_series("A", _points(20), settings)
    cutoff = cutoff_index(len(series), settings)
    windows = list(series_windows(series, settings))
    assert cutoff == 14
    assert [(f, o) for s, f, o, _ in windows if s == "eval"] == [(1, 14), (2, 16), (3, 18)]
    assert max(o + settings.horizon for s, _, o, _ in windows if s == "train") <= cutoff


def test_gaps_are_masked_interpolated_or_refused():
    points = _points(12, skip=(5, 6))
    masked = build_series("A", points, SETTINGS)
    assert masked.gaps == 2 and math.isnan(masked.target[5]) and masked.target[7] == 17.0
    # A training window with a gap among its targets is left out; one with a gap in its history is kept.
    origins = [o for s, _, o, _ in series_windows(masked, SETTINGS) if s == "train"]
    assert 5 not in origins and 6 not in origins and 7 in origins
    filled = build_series("A", points, WindowSettings(**{**SETTINGS.__dict__, "gaps": "interpolate"}))
    assert filled.target[5:7] == pytest.approx([15.0, 16.0])
    with pytest.raises(CsvInputError) as info:
        build_series("A", points, WindowSettings(**{**SETTINGS.__dict__, "gaps": "fail"}))
    assert str(info.value) == ("series 'A' has 2 missing step(s), the first at 2024-01-06; set forecast.gaps to "
                               "'mask' (the model skips them) or 'interpolate'.")


def test_bad_rows_name_the_file_line_and_column():
    with pytest.raises(CsvInputError) as info:
        row_point({"Date": "2024-02-30", "Store": "A", "Units sold": "3"}, SETTINGS, "sales.csv, line 7")
    assert str(info.value) == ("sales.csv, line 7: column 'Date' (forecast.timestamp) holds '2024-02-30', which is not "
                               "a time; expected YYYY-MM-DD, optionally with HH:MM[:SS], YYYY-MM, or one of "
                               "05/03/2024, 05.03.2024.")
    with pytest.raises(CsvInputError) as info:
        row_point({"Date": "2024-02-03", "Store": "A", "Units sold": "12 pcs"}, SETTINGS, "sales.csv, line 8")
    assert str(info.value) == ("sales.csv, line 8: column 'Units sold' holds '12 pcs', which is not a number; a "
                               "forecast's target and covariates are numbers (leave a cell blank for a missing value).")
    twice = _points(3) + _points(1, start=datetime.date(2024, 1, 2))
    with pytest.raises(CsvInputError) as info:
        build_series("A", twice, SETTINGS)
    assert str(info.value).endswith("series 'A' has two rows for 2024-01-02 (the other at sales.csv, line 3); a D "
                                    "series has one row per step.")


def test_a_timestamp_split_over_year_month_day_hour_columns():
    """Beijing's air quality tables write each hour as year, month, day and hour columns."""
    hourly = WindowSettings(target="PM2.5", timestamp=("year", "month", "day", "hour"), frequency="H", lookback=4,
                            horizon=2, series_id="station")
    record = {"year": "2013", "month": "3", "day": "1", "hour": "23", "station": "Dongsi", "PM2.5": "9.0"}
    series, point = row_point(record, hourly, "beijing.csv, line 2")
    assert series == "Dongsi" and point.time == datetime.datetime(2013, 3, 1, 23) and point.target == 9.0
    nxt = row_point({**record, "day": "2", "hour": "0"}, hourly, "beijing.csv, line 3")[1]
    assert nxt.step == point.step + 1
    monthly = WindowSettings(target="n", timestamp=("Year", "Month"), frequency="M", lookback=4, horizon=2)
    assert row_point({"Year": "1949", "Month": "12.0", "n": "1"}, monthly, "x")[1].time == datetime.datetime(1949, 12, 1)
    with pytest.raises(CsvInputError) as info:
        row_point({**record, "hour": "11pm"}, hourly, "beijing.csv, line 9")
    assert str(info.value) == ("beijing.csv, line 9: column 'hour' (forecast.timestamp, the hour) holds '11pm', which "
                               "is not a whole number; the timestamp's columns hold the year, month, day, hour as "
                               "numbers.")
    with pytest.raises(CsvInputError) as info:
        row_point({**record, "month": "2", "day": "30"}, hourly, "beijing.csv, line 10")
    assert str(info.value) == ("beijing.csv, line 10: columns 'year', 'month', 'day', 'hour' (forecast.timestamp) make "
                               "year 2013, month 2, day 30, hour 23, which is not a time (day is out of range for "
                               "month).")


def test_a_request_reads_the_history_up_to_the_last_target_and_the_future_covariates():
    points = _points(6)
    for p in points[-2:]:  # the horizon's rows: the promotion is planned, the target not known yet
        p.target, p.covariates = math.nan, (p.covariates[0], math.nan)
    (request,) = request_windows({"A": points}, SETTINGS)
    assert request.origin == "2024-01-05" and request.times == ["2024-01-05", "2024-01-06"]
    assert request.row["Units sold"] == [10.0, 11.0, 12.0, 13.0]
    assert request.row["Promo"] == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0] and request.row["Store"] == "A"
    # Fewer rows than the lookback: NaN before the series starts (masked by the model).
    (short,) = request_windows({"A": points[2:]}, SETTINGS)
    assert all(map(math.isnan, short.row["Units sold"][:2])) and short.row["Units sold"][2:] == [12.0, 13.0]
    with pytest.raises(CsvInputError) as info:
        request_windows({"A": points[:4]}, SETTINGS)
    assert str(info.value) == (
        "series 'A': 'Promo' (forecast.known_future) is needed for the 2 steps after 2024-01-04, the last 'Units sold' "
        "value, and 2 of them are missing; add rows for 2024-01-05 to 2024-01-06 with 'Promo' and a blank 'Units sold'.")


def test_baselines_and_metrics_by_hand():
    nan = math.nan
    history = np.array([[1, 5, 2, 6, 3, 7], [1, 2, 3, 4, nan, nan]], float)
    np.testing.assert_array_equal(seasonal_naive(history, 3, 2), [[3, 7, 3], [3, 4, 3]])
    np.testing.assert_array_equal(last_value(history, 2), [[7, 7], [4, 4]])
    actual = np.array([[4, 8, nan]])
    got = forecast_metrics(actual, np.array([[3, 10, 5]]), scales=[2.0])
    assert got == pytest.approx({"mae": 1.5, "rmse": math.sqrt(2.5), "mape": (1 / 4 + 2 / 8) / 2,
                                 "smape": (2 / 7 + 4 / 18) / 2, "mase": 0.75, "points": 2})
    series = build_series("A", _points(10), SETTINGS)  # 10, 11, ...: a change of 2 over a season of 2
    assert seasonal_scale(series, SETTINGS) == 2.0


def test_recent_history_reads_the_same_requests_from_every_table_format(tmp_path):
    """`lamina predict --spec` on CSV, JSON Lines, Parquet and gzipped TFRecord: the format comes from the
    file's ending (lamina.constants.table_format_of), and each gives the CSV's requests."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    from lamina.components.forecast_windows import read_requests

    records = []
    for store in ("A", "B"):
        for d in range(8):
            known = d < 6  # the last two days: the promotion is planned, sales and temperature not known yet
            records.append({"Date": f"2024-01-{d + 1:02d}", "Store": store, "Units sold": 10 + d if known else None,
                            "Promo": d % 2, "Temp": d + 0.5 if known else None})
    columns = list(records[0])
    csv_path = tmp_path / "recent.csv"
    csv_path.write_text(",".join(columns) + "\n" + "".join(
        ",".join("" if r[c] is None else str(r[c]) for c in columns) + "\n" for r in records))
    (tmp_path / "recent.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "recent.ndjson").write_text((tmp_path / "recent.jsonl").read_text())
    pq.write_table(pa.Table.from_pylist(records), str(tmp_path / "recent.parquet"))
    pq.write_table(pa.Table.from_pylist(records), str(tmp_path / "recent.pq"))
    with tf.io.TFRecordWriter(str(tmp_path / "recent.tfrecord.gz"), options="GZIP") as writer:
        for r in records:
            example = tf.train.Example()
            for c, v in r.items():
                if isinstance(v, str):
                    example.features.feature[c].bytes_list.value.append(v.encode())
                elif isinstance(v, int):
                    example.features.feature[c].int64_list.value.append(v)
                elif isinstance(v, float):
                    example.features.feature[c].float_list.value.append(v)
            writer.write(example.SerializeToString())

    def read(name):
        return [(r.series, r.origin, r.times, json.dumps(r.row, sort_keys=True))
                for r in read_requests(str(tmp_path / name), SETTINGS)]

    expected = read("recent.csv")
    assert [r[:2] for r in expected] == [("A", "2024-01-07"), ("B", "2024-01-07")]
    assert json.loads(expected[0][3])["Units sold"] == [12.0, 13.0, 14.0, 15.0]
    for name in ("recent.jsonl", "recent.ndjson", "recent.parquet", "recent.pq", "recent.tfrecord.gz"):
        assert read(name) == expected, name


def test_a_forecast_must_beat_the_better_naive_baseline_unless_the_spec_says_otherwise():
    from lamina.spec import Spec

    forecast = {"timestamp": "Month", "frequency": "M", "lookback": 24, "horizon": 12}
    spec = Spec.from_dict({"data": {"path": "air.csv", "label": "value"}, "forecast": forecast})
    assert spec.evaluation.baseline.must_beat == "best"
    spec = Spec.from_dict({"data": {"path": "air.csv", "label": "value"}, "forecast": forecast,
                           "evaluation": {"baseline": {"must_beat": None}}})
    assert spec.evaluation.baseline.must_beat is None
