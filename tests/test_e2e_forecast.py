"""End to end on a forecast: examples/timeseries (12 stores' daily sales, a byte-order mark, headers
with spaces and a unit, missing days) through ForecastExampleGen, Transform, an LSTM, the
ForecastEvaluator and the Pusher; then `lamina predict` on a CSV of recent history over gRPC and
REST, against the pushed model in this process."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from lamina.constants import FOLD_KEY, HORIZON_KEY, ORIGIN_KEY
from lamina.components.forecast_windows import WindowSettings, read_requests
from lamina.pipeline import cli
from lamina.rows import row_to_example
from lamina.serving.client import RestClient
from tests.helpers import run_example, serving

pytestmark = pytest.mark.e2e

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "timeseries")


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    return run_example(tmp_path_factory.mktemp("timeseries"), "timeseries", ("spec.yaml", "sales.csv"))


@pytest.fixture(scope="module")
def forecast_server(forecast_run):
    yield from serving(forecast_run[0].push_dir, rest=True)


def test_the_lstm_beats_the_seasonal_naive_and_last_value_forecasts(forecast_run):
    _, result = forecast_run
    assert result.pushed and result.blessed
    metrics = result.forecast["metrics"]
    assert result.forecast["windows"] == 12 * 4  # 12 stores, 4 rolling origins
    assert metrics["model"]["mase"] < 0.8 * metrics["seasonal_naive"]["mase"], metrics
    assert metrics["model"]["mase"] < metrics["last_value"]["mase"]
    assert metrics["model"]["points"] == metrics["seasonal_naive"]["points"] > 300
    # The seasonal-naive forecast's MASE on the eval windows is near 1 by construction of the scale.
    assert 0.8 < metrics["seasonal_naive"]["mase"] < 1.6
    assert all(f["model"]["mase"] < f["seasonal_naive"]["mase"] for f in result.forecast["folds"].values())


def _examples(result, split):
    files = tf.io.gfile.glob(os.path.join(result.examples_dir, f"Split-{split}", "*"))
    return [tf.train.Example.FromString(r) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
            .as_numpy_iterator()]


def test_the_split_never_leaks_the_future(forecast_run):
    """Every training window's targets end before its series' cut-off; the first eval window of each
    series starts at the cut-off, so its inputs all come from before it."""
    spec, result = forecast_run
    report = json.load(open(os.path.join(result.examples_dir, "forecast_report.json")))
    cutoff = {r["series"]: np.datetime64(r["cutoff"]) for r in report["series"]}
    horizon = np.timedelta64(spec.forecast.horizon, "D")
    train = _examples(result, "train")
    assert len(train) > 10_000
    for e in train:
        f = e.features.feature
        origin = np.datetime64(f[ORIGIN_KEY].bytes_list.value[0].decode())
        assert origin + horizon <= cutoff[f["Store"].bytes_list.value[0].decode()]
        assert f[FOLD_KEY].int64_list.value[0] == 0
    first_folds = [e for e in _examples(result, "eval") if e.features.feature[FOLD_KEY].int64_list.value[0] == 1]
    assert len(first_folds) == 12
    for e in first_folds:
        f = e.features.feature
        # The history is the lookback steps before the origin, which is the cut-off itself.
        assert np.datetime64(f[ORIGIN_KEY].bytes_list.value[0].decode()) == cutoff[f["Store"].bytes_list.value[0].decode()]
        assert len(f["Units sold"].float_list.value) == spec.forecast.lookback
        assert len(f[HORIZON_KEY].float_list.value) == spec.forecast.horizon


def _recent_history(path, stores=("Store 01", "Store 07"), days=33, future=7, drop_future_promo=False):
    """The last `days` rows of some stores, then `future` rows with the promotion and a blank target."""
    rows = list(csv.reader(open(os.path.join(EXAMPLE, "sales.csv"), encoding="utf-8-sig")))
    out = [rows[0]]
    for store in stores:
        mine = [r for r in rows[1:] if r[0] == store][-(days + future):]
        for i, r in enumerate(mine):
            out.append(r if i < days else [r[0], r[1], "", "" if drop_future_promo else r[3], ""])
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f, delimiter=";").writerows(out)  # a ';' export this time
    return path


def test_served_forecasts_equal_the_in_process_ones(forecast_run, forecast_server, tmp_path, capsys):
    spec, result = forecast_run
    recent = _recent_history(str(tmp_path / "recent.csv"))
    spec_path = os.path.join(spec.base_dir, "spec.yaml")
    assert cli.main(["predict", "--model", "sales", "--target", forecast_server.target, "--spec", spec_path,
                     recent]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["series"] for p in printed] == ["Store 01", "Store 07"]
    assert [f["time"] for f in printed[0]["forecast"]] == [
        "2024-12-26", "2024-12-27", "2024-12-28", "2024-12-29", "2024-12-30", "2024-12-31", "2025-01-01"]
    served = np.array([[f["Units sold"] for f in p["forecast"]] for p in printed])

    requests = read_requests(recent, WindowSettings.from_spec(spec))
    model = tf.saved_model.load(result.pushed_model_dir)
    inputs = {"Units sold": tf.float32.as_datatype_enum, "On promotion": tf.float32.as_datatype_enum,
              "Temperature (°C)": tf.float32.as_datatype_enum, "Store": tf.string.as_datatype_enum}
    examples = tf.constant([row_to_example(r.row, inputs).SerializeToString() for r in requests])
    in_process = model.signatures["serving_default"](inputs=examples)["forecast"].numpy()
    np.testing.assert_allclose(served, in_process, rtol=1e-5)
    with RestClient(forecast_server.rest_url) as rest:
        # TF Serving's REST API names no output when there is one: the client calls it 'outputs'.
        np.testing.assert_allclose(rest.predict_raw("sales", [r.row for r in requests])["outputs"], in_process,
                                   rtol=1e-5)
    # And they are forecasts: within 25% of what each store sold on those days (the CSV holds them).
    actual = np.array([[float(r[2]) for r in csv.reader(open(os.path.join(EXAMPLE, "sales.csv"), encoding="utf-8-sig"))
                        if r[0] == store][-7:] for store in ("Store 01", "Store 07")])
    assert np.mean(np.abs(served - actual) / actual) < 0.25


def test_recent_history_without_the_planned_promotions_is_refused_by_name(forecast_run, forecast_server, tmp_path,
                                                                          capsys):
    spec, _ = forecast_run
    recent = _recent_history(str(tmp_path / "recent.csv"), drop_future_promo=True)
    code = cli.main(["predict", "--model", "sales", "--target", forecast_server.target, "--spec",
                     os.path.join(spec.base_dir, "spec.yaml"), recent])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith(
        "series 'Store 01': 'On promotion' (forecast.known_future) is needed for the 7 steps after 2024-12-25, the "
        "last 'Units sold' value, and 7 of them are missing; add rows for 2024-12-26 to 2025-01-01 with "
        "'On promotion' and a blank 'Units sold'.")
