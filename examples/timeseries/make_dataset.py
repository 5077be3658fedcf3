"""Writes examples/timeseries/sales.csv: daily units sold in 12 stores over three years.

Synthetic, with a fixed seed: no package here ships a multi-series dataset with covariates (statsmodels,
which ships classic single series, is not a dependency). The CSV is committed and this script is
how it was made (`python examples/timeseries/make_dataset.py`). Each store's series is

    level x (1 + trend x years)                       its own level (40-400) and trend (-5% to +25% a year)
      x (1 + weekly[day of week])                     a weekly season: its own weekend lift
      x (1 + 0.15 sin(2 pi (day of year - phase) / 365.25))   a yearly season
      x (1.35 if on promotion)                        `On promotion` (0/1): planned, so known in the future
      + 0.4 x (temperature - 15)                      `Temperature (°C)`: only known up to today
      x (1 + AR(1) noise, sd 6%)

rounded to whole units. Like a real export: a byte-order mark, headers with spaces and a unit, rows
of one store after another, and about 1% of the days missing (a closed store, a lost upload).
"""

import csv
import datetime
import math
import os
import random

STORES = 12
DAYS = 3 * 365
START = datetime.date(2022, 1, 3)


def write(path: str, seed: int = 11) -> str:
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        out = csv.writer(f)
        out.writerow(["Store", "Date", "Units sold", "On promotion", "Temperature (°C)"])
        for s in range(STORES):
            store = f"Store {s + 1:02d}"
            level = rng.uniform(40, 400)
            trend = rng.uniform(-0.05, 0.25)
            weekend = rng.uniform(0.1, 0.6)
            weekly = [0.0, -0.05, -0.05, 0.0, 0.1, weekend, weekend * 0.7]
            phase = rng.uniform(0, 365)
            noise = 0.0
            for d in range(DAYS):
                day = START + datetime.timedelta(days=d)
                promo = 1 if rng.random() < (0.25 if day.weekday() in (3, 4) else 0.08) else 0
                temperature = 12 + 11 * math.sin(2 * math.pi * (day.timetuple().tm_yday - 110) / 365.25) \
                    + rng.gauss(0, 3)
                noise = 0.5 * noise + rng.gauss(0, 0.06)
                y = level * (1 + trend * d / 365) * (1 + weekly[day.weekday()]) \
                    * (1 + 0.15 * math.sin(2 * math.pi * (day.timetuple().tm_yday - phase) / 365.25)) \
                    * (1.35 if promo else 1.0)
                y = (y + 0.4 * (temperature - 15)) * (1 + noise)
                if rng.random() < 0.01 and 30 < d < DAYS - 30:
                    continue  # a missing day
                out.writerow([store, day.isoformat(), max(0, round(y)), promo, f"{temperature:.1f}"])
    return path


if __name__ == "__main__":
    print(write(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sales.csv")))
