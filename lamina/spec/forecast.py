"""The forecast section: a long table of time series turned into lookback/horizon windows.

The data is one row per series and time step: a timestamp, a series ID when there are several
series, the target (`data.label`), and covariates. A covariate in `known_future` (a promotion, a
holiday) is known for the horizon too; one in `past_only` (a temperature reading) only up to the
forecast origin. `frequency` is the step between rows; a missing step is a gap, which `gaps`
masks (the encoder skips it), fills by linear interpolation, or refuses.

The split is by time: the last `horizon` steps of each series are the eval targets, forecast
from the `lookback` steps before them; every training window's targets end at or before that
cut-off. `backtest: k` moves the cut-off back k horizons and scores the model at k rolling
origins after it (each forecast from the actual values before its origin).
"""

from typing import List, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from lamina.spec.base import StrictModel, repeated

# Step per frequency, and the season the seasonal-naive forecast and MASE use by default.
FREQUENCIES = {"H": "hourly", "D": "daily", "W": "weekly", "M": "monthly"}
DEFAULT_SEASONALITY = {"H": 24, "D": 7, "W": 52, "M": 12}
# A timestamp split over columns: their parts, in this order, and how many of them each frequency needs.
TIME_PARTS = ("year", "month", "day", "hour")
PARTS_NEEDED = {"M": 2, "W": 3, "D": 3, "H": 4}
FORECAST_BASELINES = ("seasonal_naive", "last_value")


class ForecastSpec(StrictModel):
    """`forecast: {timestamp: date, series_id: store, frequency: D, lookback: 28, horizon: 7}`."""

    timestamp: Union[str, List[str]] = Field(
        description="The column of each row's time: YYYY-MM-DD, optionally with a time, YYYY-MM (a month), or one of "
                    "data.DATE_FORMATS. Or a list of 2 to 4 columns holding the year, month, day and hour as numbers, "
                    "in that order: [year, month] for a monthly series, [year, month, day, hour] for an hourly one.")
    series_id: Optional[str] = Field(default=None, description="The column naming each series; omitted: one series.")
    frequency: Literal[tuple(FREQUENCIES)] = Field(description="H (hourly), D (daily), W (weekly), M (monthly).")
    lookback: int = Field(ge=2, le=4096, description="Steps of history each forecast reads.")
    horizon: int = Field(ge=1, le=1000, description="Steps each forecast answers, in one call.")
    known_future: List[str] = Field(default_factory=list, description="Covariates known for the horizon too.")
    past_only: List[str] = Field(default_factory=list, description="Covariates known up to the origin only.")
    gaps: Literal["mask", "interpolate", "fail"] = "mask"
    seasonality: Optional[int] = Field(default=None, ge=1, le=10000, description="Default: 24 (H), 7 (D), 52 (W), "
                                       "12 (M).")
    stride: int = Field(default=1, ge=1, le=10000, description="Steps between training windows' origins.")
    backtest: int = Field(default=0, ge=0, le=100, description="Rolling origins to score after the cut-off; 0: the "
                                                                "last horizon of each series only.")

    @field_validator("timestamp")
    @classmethod
    def _timestamp_columns(cls, v: Union[str, List[str]]) -> Union[str, List[str]]:
        if isinstance(v, list):
            if not 2 <= len(v) <= len(TIME_PARTS):
                raise ValueError(f"a list names 2 to 4 columns: the year, month, day and hour, in that order. "
                                 f"Received {len(v)} column(s): {v}")
            dupes = repeated(v)
            if dupes:
                raise ValueError(f"each column at most once. Received {dupes[0]!r} twice")
        return v

    @field_validator("known_future", "past_only")
    @classmethod
    def _unique(cls, v: List[str]) -> List[str]:
        dupes = repeated(v)
        if dupes:
            raise ValueError(f"each column at most once. Received {dupes[0]!r} twice")
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> "ForecastSpec":
        both = sorted(set(self.known_future) & set(self.past_only))
        if both:
            raise ValueError(f"{both[0]!r} is in both known_future and past_only; a covariate is one or the other.")
        columns = self.timestamp_columns
        if len(columns) > 1 and len(columns) < PARTS_NEEDED[self.frequency]:
            needed = TIME_PARTS[:PARTS_NEEDED[self.frequency]]
            raise ValueError(f"a {FREQUENCIES[self.frequency]} series' timestamp split over columns names its "
                             f"{', '.join(needed)}; timestamp names {len(columns)} ({', '.join(columns)}), the "
                             f"{', '.join(TIME_PARTS[:len(columns)])}.")
        named = columns + ([self.series_id] if self.series_id else [])
        clash = sorted(set(named) & set(self.known_future + self.past_only))
        if clash:
            raise ValueError(f"{clash[0]!r} is the timestamp or series ID column; it cannot be a covariate too.")
        return self

    @property
    def timestamp_columns(self) -> List[str]:
        """The timestamp's column, or its year, month[, day[, hour]] columns."""
        return [self.timestamp] if isinstance(self.timestamp, str) else list(self.timestamp)

    @property
    def season(self) -> int:
        return self.seasonality or DEFAULT_SEASONALITY[self.frequency]

    @property
    def covariates(self) -> List[str]:
        return self.known_future + self.past_only
