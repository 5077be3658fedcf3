"""ForecastEvaluator: the forecast's metrics against its baselines, the gates, and one blessing.

The model forecasts every eval window (the served signature, on the raw window examples, as TF
Serving would); the seasonal-naive and last-value forecasts are computed from the same windows'
histories. MAE, RMSE, MAPE, sMAPE and MASE (lamina.models.forecast_metrics) are reported for all
three, overall, per backtest origin and per series, in `forecast.json` beside the blessing.

The model is blessed when every `evaluation.thresholds` bound holds and, with
`evaluation.baseline.must_beat`, its `baseline.metric` (default: the first metric) is no worse
than that baseline's (or both's, with `best`) plus `tolerance`.
"""

import math
import os
from typing import Dict, List

import numpy as np
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing

from lamina import storage
from lamina.components.gates import write_blessing

FORECAST_FILE = "forecast.json"


def read_windows(files: List[str], settings) -> Dict[str, np.ndarray]:
    """The eval windows' serialized examples, histories, targets, series and folds."""
    import tensorflow as tf

    from lamina.constants import FOLD_KEY, HORIZON_KEY, ORIGIN_KEY

    spec = {settings.target: tf.io.VarLenFeature(tf.float32), HORIZON_KEY: tf.io.VarLenFeature(tf.float32),
            ORIGIN_KEY: tf.io.FixedLenFeature([], tf.string), FOLD_KEY: tf.io.FixedLenFeature([], tf.int64)}
    if settings.series_id:
        spec[settings.series_id] = tf.io.FixedLenFeature([], tf.string)
    out = {"serialized": [], "history": [], "actual": [], "series": [], "origin": [], "fold": []}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        parsed = tf.io.parse_single_example(record, spec)
        out["serialized"].append(record)
        out["history"].append(_padded(parsed[settings.target], settings.lookback))
        out["actual"].append(_padded(parsed[HORIZON_KEY], settings.horizon))
        out["series"].append(parsed[settings.series_id].numpy().decode() if settings.series_id else "")
        out["origin"].append(parsed[ORIGIN_KEY].numpy().decode())
        out["fold"].append(int(parsed[FOLD_KEY].numpy()))
    return {k: np.array(v, dtype=object if k in ("serialized", "series", "origin") else None) for k, v in out.items()}


def _padded(sparse, length: int) -> np.ndarray:
    values = sparse.values.numpy().astype(np.float64)
    return np.concatenate([values, np.full(max(0, length - len(values)), np.nan)])[:length]


def model_forecasts(saved_model_dir: str, serialized: np.ndarray, batch: int = 256) -> np.ndarray:
    import tensorflow as tf

    from lamina.models.export import SERVING_DEFAULT

    fn = tf.saved_model.load(saved_model_dir).signatures[SERVING_DEFAULT]
    parts = [fn(inputs=tf.constant(list(serialized[i:i + batch])))["forecast"].numpy()
             for i in range(0, len(serialized), batch)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 0))


def evaluate(spec, model_dir: str, examples_uri: str) -> dict:
    """forecast.json's content: metrics of the model and its baselines, overall, per origin, per series, and the gates."""
    from lamina.components.forecast_example_gen import read_report
    from lamina.components.forecast_windows import WindowSettings
    from lamina.models.forecast_metrics import NAMES, forecast_metrics, last_value, seasonal_naive
    from lamina.models.datasets import expand_file_patterns

    settings = WindowSettings.from_spec(spec)
    files = expand_file_patterns([os.path.join(examples_uri, "Split-eval", "*")])
    windows = read_windows(files, settings)
    report = read_report(examples_uri) or {"series": []}
    scale_of = {r["series"]: r["mase_scale"] for r in report["series"]}
    scales = np.array([scale_of.get(s) if scale_of.get(s) is not None else math.nan for s in windows["series"]],
                      np.float64)
    forecasts = {"model": model_forecasts(model_dir, windows["serialized"]),
                 "seasonal_naive": seasonal_naive(windows["history"], settings.horizon, settings.season),
                 "last_value": last_value(windows["history"], settings.horizon)}
    actual = windows["actual"]

    def scored(mask) -> Dict[str, dict]:
        return {name: forecast_metrics(actual[mask], f[mask], scales[mask]) for name, f in forecasts.items()}

    everything = np.ones(len(actual), bool)
    record = {"windows": int(len(actual)), "horizon": settings.horizon, "season": settings.season,
              "metrics": scored(everything),
              "folds": {str(k): scored(windows["fold"] == k) for k in sorted(set(windows["fold"].tolist()))},
              "series": {s: scored(windows["series"] == s) for s in sorted(set(windows["series"].tolist()))}
              if settings.series_id else {},
              "baseline_names": NAMES}
    record.update(gates(spec, record["metrics"]))
    return record


def gates(spec, metrics: Dict[str, dict]) -> dict:
    """{"gates": [...], "failures": [...], "blessed": bool} from the spec's thresholds and must_beat."""
    from lamina.models.forecast_metrics import NAMES

    model = metrics["model"]
    out = []
    for name, t in spec.evaluation.thresholds.items():
        value = model.get(name, math.nan)
        ok = not math.isnan(value) and (t.lower_bound is None or value >= t.lower_bound) and \
            (t.upper_bound is None or value <= t.upper_bound)
        bounds = " and ".join(b for b in (f">= {t.lower_bound}" if t.lower_bound is not None else "",
                                          f"<= {t.upper_bound}" if t.upper_bound is not None else "") if b)
        out.append({"gate": "threshold", "metric": name, "value": value, "passed": ok,
                    "message": f"{name} is {value:.4f}; the gate wants {bounds}"})
    baseline = spec.evaluation.baseline
    if baseline.must_beat:
        metric = spec.evaluation.baseline_metric
        rivals = list(NAMES) if baseline.must_beat == "best" else [baseline.must_beat]
        for rival in rivals:
            value, theirs = model.get(metric, math.nan), metrics[rival].get(metric, math.nan)
            ok = not math.isnan(value) and (math.isnan(theirs) or value <= theirs + baseline.tolerance)
            out.append({"gate": "baseline", "metric": metric, "baseline": rival, "value": value, "passed": ok,
                        "message": f"the model's {metric} is {value:.4f} and the {NAMES[rival]} forecast's is "
                                   f"{theirs:.4f} (tolerance {baseline.tolerance})"})
    failures = [g["message"] for g in out if not g["passed"]]
    return {"gates": out, "failures": failures, "blessed": not failures}


def read_forecast(blessing_uri: str):
    return storage.read_json_if_exists(os.path.join(blessing_uri, FORECAST_FILE))


@component
def ForecastEvaluator(  # pylint: disable=invalid-name
    model: InputArtifact[Model],
    examples: InputArtifact[Examples],
    blessing: OutputArtifact[ModelBlessing],
    spec_json: Parameter[str],
):
    """Scores the forecast and its seasonal-naive and last-value baselines on the eval windows; blesses it."""
    from lamina.models.artifacts import saved_model_dir
    from lamina.spec import Spec

    spec = Spec.from_json(spec_json)
    record = evaluate(spec, saved_model_dir(model.uri), examples.uri)
    storage.write_json(os.path.join(blessing.uri, FORECAST_FILE), record)
    names = {"model": "network", **record["baseline_names"]}
    for name, m in record["metrics"].items():
        print(f"    {names[name]:<16} " + "  ".join(f"{k}={m[k]:.4f}" for k in spec.evaluation.metrics if k in m),
              flush=True)
    write_blessing(blessing, model, {k: record[k] for k in ("gates", "failures", "blessed")})
