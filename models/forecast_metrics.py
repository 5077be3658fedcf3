"""Forecast metrics and the two baselines every forecast is measured against.

Each metric is over every (window, step) whose actual value is known:
  mae    mean |y - f|
  rmse   sqrt(mean (y - f)^2)
  mape   mean |y - f| / |y| (steps with y = 0 left out), as a fraction
  smape  mean 2 |y - f| / (|y| + |f|) (0 where both are 0), as a fraction in [0, 2]
  mase   mean |y - f| / s, s the series' in-sample seasonal-naive error (its mean absolute change
         over one season before the cutoff); below 1 beats that naive forecast on average

Baselines, from each window's own history (so they see exactly what the model sees):
  seasonal_naive  f[h] = the value one season before the forecast step (history[L - m + h mod m])
  last_value      f[h] = the last known value of the history
"""

import math
from typing import Dict, Optional, Sequence

import numpy as np

NAMES = {"seasonal_naive": "seasonal naive", "last_value": "last value"}


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """[windows, horizon] forecasts repeating each history's last season; a missing value there takes the
    one a season before it, else the last known value."""
    history = np.asarray(history, np.float64)
    n, length = history.shape
    out = np.empty((n, horizon))
    last = last_value(history, horizon)[:, 0]
    for h in range(horizon):
        value = np.full(n, np.nan)
        at = length - season + (h % season)
        while at >= 0 and np.isnan(value).any():
            value = np.where(np.isnan(value), history[:, at], value)
            at -= season
        out[:, h] = np.where(np.isnan(value), last, value)
    return out


def last_value(history: np.ndarray, horizon: int) -> np.ndarray:
    """[windows, horizon] forecasts of each history's last known value (NaN when it has none)."""
    history = np.asarray(history, np.float64)
    known = ~np.isnan(history)
    index = np.where(known.any(axis=1), history.shape[1] - 1 - np.argmax(known[:, ::-1], axis=1), 0)
    values = history[np.arange(len(history)), index]
    values = np.where(known.any(axis=1), values, np.nan)
    return np.repeat(values[:, None], horizon, axis=1)


def forecast_metrics(actual: np.ndarray, forecast: np.ndarray, scales: Optional[Sequence[float]] = None
                     ) -> Dict[str, float]:
    """The metrics of the module docstring; `scales`: each window's MASE denominator."""
    actual = np.asarray(actual, np.float64)
    forecast = np.asarray(forecast, np.float64)
    known = ~np.isnan(actual) & ~np.isnan(forecast)
    error = np.abs(actual - forecast)[known]
    y, f = actual[known], forecast[known]
    out = {"mae": float(error.mean()) if error.size else math.nan,
           "rmse": float(np.sqrt((error ** 2).mean())) if error.size else math.nan}
    nonzero = np.abs(y) > 0
    out["mape"] = float((error[nonzero] / np.abs(y[nonzero])).mean()) if nonzero.any() else math.nan
    denominator = np.abs(y) + np.abs(f)
    out["smape"] = float(np.where(denominator > 0, 2 * error / np.where(denominator > 0, denominator, 1), 0).mean()) \
        if error.size else math.nan
    if scales is not None:
        s = np.broadcast_to(np.asarray(scales, np.float64)[:, None], actual.shape)[known]
        usable = np.isfinite(s) & (s > 0)
        out["mase"] = float((error[usable] / s[usable]).mean()) if usable.any() else math.nan
    out["points"] = int(error.size)
    return out
