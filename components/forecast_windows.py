"""Forecast windows: a long table of time series -> lookback/horizon examples, split by time.

Pure functions, shared by ForecastExampleGen (on Beam, one series at a time after a GroupByKey),
`lamina predict` (the windows of a CSV of recent history) and the tests.

Each row is (series, timestamp, target, covariates). A series' rows are placed on its grid of
steps (`frequency`); a step with no row is a gap, masked (NaN), interpolated or refused. The
windows of one series:

    steps:    0 ............................ cutoff ............. T
    train:    [history L][targets H]   (every origin whose targets end at or before the cutoff)
    eval:                 [history L][targets H]   origins cutoff, cutoff + H, ... (backtest)

so no training window's targets and no (first) eval window's inputs come from after the cutoff.

An example holds: the target's history under the target's column name (L values), each
past-only covariate (L values), each known-future covariate (L + H values), the series ID,
`HORIZON_KEY` (the H target values: the label), `ORIGIN_KEY` (the first forecast step's time)
and `FOLD_KEY` (0 for training, 1... for the eval origins).
"""

import dataclasses
import datetime
import re
import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from lamina.constants import FOLD_KEY, HORIZON_KEY, ORIGIN_KEY, table_format_of
from lamina.cells import CsvInputError, date_layout, is_missing_number, parse_number
from lamina.spec.forecast import TIME_PARTS

RESERVED_KEYS = (HORIZON_KEY, ORIGIN_KEY, FOLD_KEY)
_EPOCH = datetime.datetime(1970, 1, 1)


@dataclasses.dataclass(frozen=True)
class WindowSettings:
    """The spec's forecast section, as ForecastExampleGen and `lamina predict` receive it."""

    target: str
    timestamp: Tuple[str, ...]  # one column, or the year, month[, day[, hour]] columns
    frequency: str
    lookback: int
    horizon: int
    series_id: str = ""
    known_future: Tuple[str, ...] = ()
    past_only: Tuple[str, ...] = ()
    gaps: str = "mask"
    stride: int = 1
    backtest: int = 0
    season: int = 7

    def __post_init__(self):
        if isinstance(self.timestamp, str):  # one column, named alone
            object.__setattr__(self, "timestamp", (self.timestamp,))

    @classmethod
    def from_spec(cls, spec) -> "WindowSettings":
        fc = spec.forecast
        return cls(target=spec.data.label, timestamp=tuple(fc.timestamp_columns), frequency=fc.frequency, lookback=fc.lookback,
                   horizon=fc.horizon, series_id=fc.series_id or "", known_future=tuple(fc.known_future),
                   past_only=tuple(fc.past_only), gaps=fc.gaps, stride=fc.stride, backtest=fc.backtest,
                   season=fc.season)

    @property
    def covariates(self) -> Tuple[str, ...]:
        return self.known_future + self.past_only

    @property
    def eval_origins(self) -> int:
        return max(self.backtest, 1)


# -- time ------------------------------------------------------------------------------------------


_YEAR_MONTH = re.compile(r"^(\d{4})[-/](\d{1,2})$")


def parse_time(text: str) -> Optional[datetime.datetime]:
    """A timestamp cell: ISO 8601 (2024-03-05, 2024-03-05 14:00, 2024-03-05T14:00:00Z), a month
    (1949-01, 1949/1), or a data.DATE_FORMATS layout (05/03/2024, 05.03.2024) with an optional time;
    None when it is none."""
    s = text.strip()
    if not s:
        return None
    month = _YEAR_MONTH.match(s)
    if month:  # 1949-01, 1949/1: a monthly series' first day of the month
        year, number = int(month.group(1)), int(month.group(2))
        return datetime.datetime(year, number, 1) if 1 <= number <= 12 else None
    iso = s[:-1] if s.endswith("Z") else s
    try:
        t = datetime.datetime.fromisoformat(iso)
        return t.replace(tzinfo=None) - (t.utcoffset() or datetime.timedelta(0)) if t.tzinfo else t
    except ValueError:
        pass
    layout = date_layout(s)
    if layout is None:
        return None
    date_part, _, time_part = s.replace("T", " ").partition(" ")
    try:
        day = datetime.datetime.strptime(date_part, layout)
        if time_part:
            clock = datetime.datetime.strptime(time_part.strip()[:8], "%H:%M:%S" if time_part.count(":") == 2
                                               else "%H:%M")
            day = day.replace(hour=clock.hour, minute=clock.minute, second=clock.second)
        return day
    except ValueError:
        return None


def step_of(t: datetime.datetime, frequency: str) -> int:
    """The step index of time `t` on the frequency's grid (hours, days, weeks or months since 1970)."""
    if frequency == "M":
        return (t.year - 1970) * 12 + t.month - 1
    days = (t - _EPOCH).days
    if frequency == "H":
        return days * 24 + t.hour
    return days if frequency == "D" else days // 7


def time_of(step: int, frequency: str, anchor: datetime.datetime) -> datetime.datetime:
    """The time of `step` on the grid of a series whose first row was at `anchor`."""
    offset = step - step_of(anchor, frequency)
    if frequency == "M":
        months = anchor.month - 1 + offset
        year, month = anchor.year + months // 12, months % 12 + 1
        return anchor.replace(year=year, month=month, day=min(anchor.day, 28))
    unit = {"H": datetime.timedelta(hours=1), "D": datetime.timedelta(days=1), "W": datetime.timedelta(days=7)}
    return anchor + offset * unit[frequency]


def format_time(t: datetime.datetime, frequency: str) -> str:
    return t.strftime("%Y-%m-%d %H:%M" if frequency == "H" else "%Y-%m-%d")


# -- rows ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    """One row on its series' grid: the step, its time, the target and the covariates (NaN when blank)."""

    step: int
    time: datetime.datetime
    target: float
    covariates: Tuple[float, ...]
    where: str  # 'file, line n', for messages


def _number(cell: str, column: str, where: str) -> float:
    text = cell.strip()
    if not text or is_missing_number(text):
        return math.nan
    value = parse_number(text)
    if value is None:
        raise CsvInputError(f"{where}: column {column!r} holds {text!r}, which is not a number; a forecast's target "
                            f"and covariates are numbers (leave a cell blank for a missing value).")
    return value


def row_time(record: Dict[str, str], columns: Sequence[str], where: str) -> datetime.datetime:
    """The time of one row, from its timestamp column or its year, month[, day[, hour]] columns; raises
    CsvInputError naming the place, the column and what is allowed."""
    if len(columns) == 1:
        text = record.get(columns[0], "")
        t = parse_time(text)
        if t is None:
            raise CsvInputError(f"{where}: column {columns[0]!r} (forecast.timestamp) holds {text.strip()!r}, which "
                                f"is not a time; expected YYYY-MM-DD, optionally with HH:MM[:SS], YYYY-MM, or one of "
                                f"05/03/2024, 05.03.2024.")
        return t
    parts = {"month": 1, "day": 1, "hour": 0}
    for part, column in zip(TIME_PARTS, columns):
        text = record.get(column, "").strip()
        value = parse_number(text) if text else None
        if value is None or value != int(value):
            raise CsvInputError(f"{where}: column {column!r} (forecast.timestamp, the {part}) holds {text!r}, which "
                                f"is not a whole number; the timestamp's columns hold the "
                                f"{', '.join(TIME_PARTS[:len(columns)])} as numbers.")
        parts[part] = int(value)
    try:
        return datetime.datetime(parts["year"], parts["month"], parts["day"], parts["hour"])
    except ValueError as e:
        named = ", ".join(f"{part} {parts[part]}" for part in TIME_PARTS[:len(columns)])
        raise CsvInputError(f"{where}: columns {', '.join(repr(c) for c in columns)} (forecast.timestamp) make "
                            f"{named}, which is not a time ({e}).") from None


def row_point(record: Dict[str, str], settings: WindowSettings, where: str) -> Tuple[str, Point]:
    """(series ID, Point) of one row; raises CsvInputError naming the place and the column."""
    t = row_time(record, settings.timestamp, where)
    series = record.get(settings.series_id, "").strip() if settings.series_id else ""
    if settings.series_id and not series:
        raise CsvInputError(f"{where}: column {settings.series_id!r} (forecast.series_id) is blank; every row "
                            f"names its series.")
    target = _number(record.get(settings.target, ""), settings.target, where)
    covs = tuple(_number(record.get(c, ""), c, where) for c in settings.covariates)
    return series, Point(step_of(t, settings.frequency), t, target, covs, where)


def file_points(path: str, names: List[str], delimiter: str, settings: WindowSettings, fmt: str = "csv",
                encoding: str = "utf-8") -> Iterator[Tuple[str, Point]]:
    """(series ID, Point) of every readable row of a table file (`names` and `delimiter` from its scan);
    raises CsvInputError on the first cell that is not what the forecast section says."""
    from lamina.components.table_source import iter_records

    for line, record in iter_records(path, names, "", fmt, delimiter, encoding):
        yield row_point(record, settings, f"{path}, line {line}")


def check_columns(names: Sequence[str], settings: WindowSettings, path: str) -> None:
    """Raises CsvInputError naming each column the forecast section names that the header lacks."""
    from difflib import get_close_matches

    wanted = [("forecast.timestamp", c) for c in settings.timestamp] + [("data.label", settings.target)]
    wanted += [("forecast.series_id", settings.series_id)] if settings.series_id else []
    wanted += [("forecast.known_future", c) for c in settings.known_future]
    wanted += [("forecast.past_only", c) for c in settings.past_only]
    for key, column in wanted:
        if column not in names:
            close = get_close_matches(column, list(names), n=1, cutoff=0.6)
            raise CsvInputError(f"{path}: no column {column!r} ({key}) in the header; the columns are "
                                f"{', '.join(repr(n) for n in names)}." + (f" Did you mean {close[0]!r}?" if close else ""))
    reserved = [n for n in names if n in RESERVED_KEYS]
    if reserved:
        raise CsvInputError(f"{path}: column {reserved[0]!r} has a name Lamina's forecast windows use; rename it.")


# -- a series on its grid -------------------------------------------------------------------------------


@dataclasses.dataclass
class Series:
    """One series on its grid of steps: values[i] is step first + i (NaN in a gap)."""

    key: str
    first: int
    anchor: datetime.datetime  # the time of the first row, for naming steps
    target: List[float]
    covariates: List[List[float]]  # one list per covariate, aligned with target
    gaps: int = 0  # steps with no row

    def time(self, i: int, frequency: str) -> str:
        return format_time(time_of(self.first + i, frequency, self.anchor), frequency)

    def __len__(self) -> int:
        return len(self.target)


def build_series(key: str, points: Sequence[Point], settings: WindowSettings) -> Series:
    """The series' rows on its grid. Raises CsvInputError for a repeated step, and for a gap when
    `gaps: fail`; fills gaps linearly with `gaps: interpolate`."""
    points = sorted(points, key=lambda p: p.step)
    name = f"series {key!r}" if settings.series_id else "the series"
    for a, b in zip(points, points[1:]):
        if a.step == b.step:
            raise CsvInputError(f"{b.where}: {name} has two rows for {format_time(b.time, settings.frequency)} "
                                f"(the other at {a.where}); a {settings.frequency} series has one row per step.")
    first, last = points[0].step, points[-1].step
    n = last - first + 1
    target = [math.nan] * n
    covs = [[math.nan] * n for _ in settings.covariates]
    for p in points:
        i = p.step - first
        target[i] = p.target
        for j, v in enumerate(p.covariates):
            covs[j][i] = v
    gaps = n - len(points)
    series = Series(key, first, points[0].time, target, covs, gaps)
    if gaps and settings.gaps == "fail":
        at = next(i for i in range(n) if i + first not in {p.step for p in points})
        raise CsvInputError(f"{name} has {gaps} missing step(s), the first at {series.time(at, settings.frequency)}; "
                            f"set forecast.gaps to 'mask' (the model skips them) or 'interpolate'.")
    if settings.gaps == "interpolate":
        series.target = interpolate(target)
        series.covariates = [interpolate(c) for c in covs]
    return series


def interpolate(values: List[float]) -> List[float]:
    """NaNs between two values filled linearly; NaNs before the first or after the last stay."""
    out = list(values)
    known = [i for i, v in enumerate(values) if not math.isnan(v)]
    for a, b in zip(known, known[1:]):
        for i in range(a + 1, b):
            out[i] = values[a] + (values[b] - values[a]) * (i - a) / (b - a)
    return out


# -- windows ---------------------------------------------------------------------------------------


def cutoff_index(length: int, settings: WindowSettings) -> int:
    """The first step no training target reaches: the first eval origin."""
    return length - settings.eval_origins * settings.horizon


def window_values(series: Series, origin: int, settings: WindowSettings) -> Dict[str, List[float]]:
    """The inputs and targets of the window whose first forecast step is `origin`."""
    L, H = settings.lookback, settings.horizon
    out = {settings.target: series.target[origin - L:origin], HORIZON_KEY: series.target[origin:origin + H]}
    for j, name in enumerate(settings.covariates):
        end = origin + H if name in settings.known_future else origin
        out[name] = series.covariates[j][origin - L:end]
    return out


def series_windows(series: Series, settings: WindowSettings
                   ) -> Iterator[Tuple[str, int, int, Dict[str, List[float]]]]:
    """(split, fold, origin, values) for every window of the series: 'train' windows (fold 0) whose targets end at
    or before the cutoff, then one 'eval' window per eval origin (folds 1...).

    A training window is left out when any of its targets is missing, or all of its history is.
    """
    L, H = settings.lookback, settings.horizon
    cutoff = cutoff_index(len(series), settings)
    for origin in range(L, cutoff - H + 1, settings.stride):
        values = window_values(series, origin, settings)
        if any(math.isnan(v) for v in values[HORIZON_KEY]) or all(math.isnan(v) for v in values[settings.target]):
            continue
        yield "train", 0, origin, values
    for fold in range(settings.eval_origins):
        origin = cutoff + fold * H
        if origin >= L:
            yield "eval", fold + 1, origin, window_values(series, origin, settings)


def too_short(series: Series, settings: WindowSettings) -> bool:
    """Whether the series is too short for one training window and its eval windows."""
    return len(series) < settings.lookback + settings.horizon * (settings.eval_origins + 1)


def window_example(series: Series, origin_index: int, fold: int, values: Dict[str, List[float]],
                   settings: WindowSettings):
    """A tf.Example of one window (see the module docstring)."""
    import tensorflow as tf

    example = tf.train.Example()
    features = example.features.feature
    for name, vals in values.items():
        features[name].float_list.value.extend(vals)
    if settings.series_id:
        features[settings.series_id].bytes_list.value.append(series.key.encode("utf-8"))
    features[ORIGIN_KEY].bytes_list.value.append(series.time(origin_index, settings.frequency).encode())
    features[FOLD_KEY].int64_list.value.append(fold)
    return example


def seasonal_scale(series: Series, settings: WindowSettings) -> float:
    """MASE's denominator for the series: the mean absolute change over one season, on the steps
    before the cutoff (the in-sample seasonal-naive error). NaN when there is none."""
    m = settings.season
    history = series.target[:cutoff_index(len(series), settings)]
    diffs = [abs(a - b) for a, b in zip(history[m:], history[:-m]) if not (math.isnan(a) or math.isnan(b))]
    return sum(diffs) / len(diffs) if diffs else math.nan


# -- requests: the next horizon of each series, from a table of its recent history ------------------


@dataclasses.dataclass
class ForecastRequest:
    """One series' request: the raw feature values the served model takes, and the horizon's times."""

    series: str
    origin: str
    times: List[str]
    row: Dict[str, object]


def request_windows(points: Dict[str, List[Point]], settings: WindowSettings) -> List[ForecastRequest]:
    """The request of each series: its last `lookback` steps up to its last known target (NaN before the
    series starts), and for each known-future covariate the `horizon` steps after it, which the table
    must hold (rows with the covariates and a blank target).

    Raises CsvInputError naming the series and what is missing.
    """
    L, H = settings.lookback, settings.horizon
    out = []
    for key in sorted(points):
        series = build_series(key, points[key], settings)
        name = f"series {key!r}" if settings.series_id else "the series"
        known = [i for i, v in enumerate(series.target) if not math.isnan(v)]
        if not known:
            raise CsvInputError(f"{name} has no value of {settings.target!r} to forecast from.")
        last = known[-1]

        def steps(values: List[float], start: int, end: int) -> List[float]:
            return [values[i] if 0 <= i < len(values) else math.nan for i in range(start, end)]

        row: Dict[str, object] = {settings.target: steps(series.target, last - L + 1, last + 1)}
        for j, column in enumerate(settings.covariates):
            values = series.covariates[j]
            if column in settings.known_future:
                future = steps(values, last + 1, last + 1 + H)
                if any(math.isnan(v) for v in future):
                    missing = sum(math.isnan(v) for v in future)
                    raise CsvInputError(
                        f"{name}: {column!r} (forecast.known_future) is needed for the {H} steps after "
                        f"{series.time(last, settings.frequency)}, the last {settings.target!r} value, and {missing} "
                        f"of them are missing; add rows for {series.time(last + 1, settings.frequency)} to "
                        f"{series.time(last + H, settings.frequency)} with {column!r} and a blank {settings.target!r}.")
                row[column] = steps(values, last - L + 1, last + 1) + future
            else:
                row[column] = steps(values, last - L + 1, last + 1)
        if settings.series_id:
            row[settings.series_id] = key
        times = [series.time(last + 1 + h, settings.frequency) for h in range(H)]
        out.append(ForecastRequest(key, times[0], times, row))
    return out


def read_requests(path: str, settings: WindowSettings, encoding: str = "utf-8") -> List[ForecastRequest]:
    """The requests for a table of recent history (CSV, JSON Lines, Parquet or TFRecord, by the file's
    ending as `lamina.constants.table_format_of` reads it), read as ingestion reads tables."""
    from lamina.components.table_source import TablePolicy, scan_table

    fmt = table_format_of(path)
    scan = scan_table(path, TablePolicy(format=fmt, encoding=encoding, profile=False))
    check_columns(scan.names, settings, path)
    points: Dict[str, List[Point]] = {}
    for key, point in file_points(path, scan.names, scan.delimiter, settings, fmt, encoding):
        points.setdefault(key, []).append(point)
    return request_windows(points, settings)
