"""Is a table a time series? What `lamina init FILE --label TARGET` asks of a numeric label before it
writes a regression spec.

A table is a time series when some column (or a year, month[, day[, hour]] group of columns) reads as a
time in nearly every row, and the times are unique: in the whole table (one series), or within each value
of one categorical column (the series ID). Its frequency is the step most consecutive times are apart:
an hour, a day, a week or a calendar month, for at least 80% of the steps (the others are gaps, which the
forecast masks). What `guess_series` finds comes with the reasons `lamina init` prints.
"""

import collections
import dataclasses
import datetime
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

from lamina.components.forecast_windows import parse_time, row_time
from lamina.cells import CsvInputError
from lamina.spec.forecast import DEFAULT_SEASONALITY, TIME_PARTS

MAX_ROWS = 500_000  # rows read to decide
MIN_TIME_SHARE = 0.98  # of the rows whose column reads as a time
MIN_STEP_SHARE = 0.8  # of the consecutive times one step apart
MAX_SERIES = 10_000
# The horizon and lookback `lamina init` proposes per frequency: a season ahead from two seasons back (a
# week ahead from four for daily data; a month from a year for weekly data).
HORIZON = {"H": 24, "D": 7, "W": 4, "M": 12}
LOOKBACK = {"H": 72, "D": 28, "W": 52, "M": 24}
_PART_NAMES = {"year": ("year", "yr", "yyyy"), "month": ("month", "mo", "mon", "mm"),
               "day": ("day", "dd", "dom"), "hour": ("hour", "hr", "hh")}
_WORD = re.compile(r"[^a-z]")
STEP_NAMES = {"H": "hour", "D": "day", "W": "week", "M": "month"}


@dataclasses.dataclass
class SeriesGuess:
    timestamp: Union[str, List[str]]
    series_id: Optional[str]
    frequency: str
    lookback: int
    horizon: int
    past_only: List[str]
    backtest: int
    series: int
    median_length: int
    gaps: int
    reason: str

    @property
    def season(self) -> int:
        return DEFAULT_SEASONALITY[self.frequency]


def _time_part_columns(names: Sequence[str]) -> List[str]:
    """The year, month[, day[, hour]] columns by name (`Year`, `month`, `HOUR`), in that order, or []."""
    by_part = {}
    for name in names:
        word = _WORD.sub("", name.lower())
        for part, spellings in _PART_NAMES.items():
            if word in spellings and part not in by_part:
                by_part[part] = name
    found = []
    for part in TIME_PARTS:
        if part not in by_part:
            break
        found.append(by_part[part])
    return found if len(found) >= 2 else []


def _candidates(names: Sequence[str], records: List[Dict[str, str]], label: str) -> List[Union[str, List[str]]]:
    out: List[Union[str, List[str]]] = []
    parts = _time_part_columns([n for n in names if n != label])
    if parts:
        out.append(parts)
    for name in names:
        if name == label or name in parts:
            continue
        cells = [r.get(name, "") for r in records[:500]]
        present = [c for c in cells if c.strip()]
        if present and sum(parse_time(c) is not None for c in present) >= MIN_TIME_SHARE * len(cells):
            out.append(name)
    return out


def _times(records: List[Dict[str, str]], timestamp: Union[str, List[str]]) -> Optional[List[datetime.datetime]]:
    columns = [timestamp] if isinstance(timestamp, str) else timestamp
    times, bad = [], 0
    for r in records:
        try:
            times.append(row_time(r, columns, ""))
        except CsvInputError:
            times.append(None)
            bad += 1
    return None if bad > (1 - MIN_TIME_SHARE) * len(records) else times


def _step(a: datetime.datetime, b: datetime.datetime) -> Optional[str]:
    """The frequency whose single step takes `a` to `b`, or None."""
    delta = b - a
    if delta == datetime.timedelta(hours=1):
        return "H"
    if delta == datetime.timedelta(days=1):
        return "D"
    if delta == datetime.timedelta(days=7):
        return "W"
    if (b.year * 12 + b.month) - (a.year * 12 + a.month) == 1 and a.day == b.day and 28 <= delta.days <= 31:
        return "M"
    return None


def _frequency(groups: Dict[str, List[datetime.datetime]]) -> Tuple[Optional[str], float]:
    counts = collections.Counter()
    steps = 0
    for times in groups.values():
        ordered = sorted(times)
        for a, b in zip(ordered, ordered[1:]):
            counts[_step(a, b)] += 1
            steps += 1
    if not steps:
        return None, 0.0
    frequency, n = max(((f, c) for f, c in counts.items() if f), key=lambda fc: fc[1], default=(None, 0))
    return frequency, n / steps


def _grid_length(times: List[datetime.datetime], frequency: str) -> int:
    from lamina.components.forecast_windows import step_of

    steps = [step_of(t, frequency) for t in times]
    return max(steps) - min(steps) + 1


def read_records(scans, label: str, fmt: str, encoding: str, limit: int = MAX_ROWS) -> List[Dict[str, str]]:
    """Up to `limit` labelled rows of the scanned files, as ingestion reads them."""
    from lamina.components.table_source import iter_records

    out = []
    for scan in scans:
        for _, record in iter_records(scan.path, scan.names, label, fmt, scan.delimiter, encoding):
            out.append(record)
            if len(out) >= limit:
                return out
    return out


def guess_series(names: Sequence[str], records: List[Dict[str, str]], label: str,
                 categorical: Sequence[str], numeric: Sequence[str]) -> Optional[SeriesGuess]:
    """The forecast a table's rows make, or None when they are not a time series (see the module docstring).
    `categorical` are the columns that may name the series, `numeric` those that may be covariates."""
    for timestamp in _candidates(names, records, label):
        times = _times(records, timestamp)
        if times is None:
            continue
        used = [(r, t) for r, t in zip(records, times) if t is not None]
        for series_id in [None] + [c for c in categorical if c not in (timestamp if isinstance(timestamp, list)
                                                                        else [timestamp])]:
            groups: Dict[str, List[datetime.datetime]] = collections.defaultdict(list)
            for r, t in used:
                groups[r.get(series_id, "").strip() if series_id else ""].append(t)
            if (len(groups) > min(MAX_SERIES, len(used) // 10) and series_id
                    or any(len(set(ts)) != len(ts) for ts in groups.values())):
                continue  # an ID with a handful of rows each, or a time repeated within a series
            frequency, share = _frequency(groups)
            if frequency is None or share < MIN_STEP_SHARE:
                continue  # unique times but no regular step
            lengths = sorted(_grid_length(ts, frequency) for ts in groups.values())
            median = lengths[len(lengths) // 2]
            horizon = HORIZON[frequency]
            lookback = LOOKBACK[frequency]
            if median < lookback + 2 * horizon:  # room for training windows and the eval horizon
                horizon = max(1, min(horizon, median // 6))
                lookback = max(2, min(lookback, median - 2 * horizon))
            if median < lookback + 2 * horizon:
                continue
            backtest = min(4, (median - lookback - 2 * horizon) // horizon)
            gaps = sum(_grid_length(ts, frequency) - len(ts) for ts in groups.values())
            named = (f"column {timestamp!r} reads" if isinstance(timestamp, str) else
                     f"columns {', '.join(repr(c) for c in timestamp)} read")
            reason = (f"{named} as a time in every row, unique "
                      + (f"within each {series_id!r} ({len(groups)} series)" if series_id else "in the table (one series)")
                      + f", {share:.0%} of consecutive times one {STEP_NAMES[frequency]} apart")
            skip = set([timestamp] if isinstance(timestamp, str) else timestamp) | {series_id, label}
            return SeriesGuess(timestamp=timestamp, series_id=series_id, frequency=frequency, lookback=lookback,
                               horizon=horizon, past_only=[c for c in numeric if c not in skip], backtest=backtest,
                               series=len(groups), median_length=median, gaps=gaps, reason=reason)
    return None
