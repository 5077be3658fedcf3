"""A column's counts, from its cells: what the scan profiles (`ColumnStats`) for the checks, `lamina
init`'s roles and the wire types. `ColumnStats.add` counts one cell at a time (the Python reader);
`add_cells` counts a pyarrow batch of cells to the same result (components/table_source.py's
`arrow_scan`), or raises NeedsPython where it cannot.
"""

import dataclasses
import math
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lamina.cells import BOOLEAN_SPELLINGS, INTEGER, LIST_SEPARATOR, NUMERIC_MISSING_TOKENS, PLAIN_NUMBER, date_layout, parse_number

# Distinct values remembered per column; past it a column only counts as "many distinct".
MAX_DISTINCT = 20_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Japanese kana and CJK
# ideographs (Korean is written with spaces and is left out).
SPACELESS_SCRIPTS = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf"
                               "\u4e00-\u9fff\uf900-\ufaff]")


@dataclasses.dataclass
class ColumnStats:
    """What one pass learns about a column (bounded memory: at most MAX_DISTINCT values kept)."""

    name: str
    position: int  # 1-based
    present: int = 0  # non-blank cells
    blank: int = 0
    numbers: int = 0  # cells parse_number reads (missing tokens excluded)
    plain_numbers: int = 0  # of those, written as plain numbers (no symbols)
    integers: int = 0  # plain integers
    wide_integers: int = 0  # of those, past int64 (a 20-digit ID): an Int64List cannot hold them
    number_tokens: int = 0  # missing-value tokens such as 'NA', 'n/a', '-', and infinities ('inf')
    booleans: int = 0
    dates: Dict[str, int] = dataclasses.field(default_factory=dict)  # layout -> cells
    not_numbers: List[Tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, cell), first few
    distinct: Dict[str, int] = dataclasses.field(default_factory=dict)
    distinct_overflow: bool = False
    total_length: int = 0
    max_length: int = 0
    words: int = 0
    total: float = 0.0  # of the numbers: their sum, sum of squares and count
    total_sq: float = 0.0
    sum_count: int = 0
    lists: int = 0  # list values (JSON Lines, Parquet, TFRecord)
    first_list_line: int = 0
    ascii_cells: int = 0  # cells of ASCII characters only
    # Characters of scripts written without spaces between words (Chinese, Japanese, Thai, ...): each
    # counts as a word, so a Chinese review is as wordy as an English one.
    spaceless: int = 0

    @property
    def missing(self) -> int:
        """Blank cells and missing-value tokens."""
        return self.blank + self.number_tokens if self.numbers else self.blank

    @property
    def all_numbers(self) -> bool:
        """Every cell a number or missing, and at least one number."""
        return self.numbers > 0 and self.numbers + self.number_tokens == self.present

    @property
    def all_integers(self) -> bool:
        return self.all_numbers and self.integers == self.numbers

    @property
    def n_distinct(self) -> int:
        return len(self.distinct)

    def add(self, cell: str, line: int) -> None:
        s = cell.strip()
        if not s:
            self.blank += 1
            return
        self.present += 1
        if LIST_SEPARATOR in s:
            self.lists += 1
            self.first_list_line = self.first_list_line or line
            return
        n = len(s)
        self.total_length += n
        if n > self.max_length:
            self.max_length = n
        if s.isascii():
            self.ascii_cells += 1
        else:
            self.spaceless += len(SPACELESS_SCRIPTS.findall(s))
        self.words += s.count(" ") + 1
        if not self.distinct_overflow:
            distinct = self.distinct
            distinct[s] = distinct.get(s, 0) + 1
            if len(distinct) > MAX_DISTINCT:
                self.distinct_overflow = True
                self.distinct = {}
        if PLAIN_NUMBER.match(s):  # the common case first, inline: `classify` and `_tally` say the same
            self.numbers += 1
            self.plain_numbers += 1
            if INTEGER.match(s):
                self.integers += 1
                self.wide_integers += _past_int64(s)
                if s in BOOLEAN_SPELLINGS:  # '1' and '0'
                    self.booleans += 1
            value = float(s)
            if value - value == 0.0:  # finite
                self.total += value
                self.total_sq += value * value
                self.sum_count += 1
            return
        kind = classify(s)
        self._tally(kind, 1)
        if kind.not_number and len(self.not_numbers) < 5:
            self.not_numbers.append((line, s))
        if kind.value is not None and math.isfinite(kind.value):
            self.total += kind.value
            self.total_sq += kind.value * kind.value
            self.sum_count += 1

    def _tally(self, kind: "CellKind", count: int) -> None:
        """`count` cells of `kind`, but for their sum and their lines."""
        if kind.plain:
            self.plain_numbers += count
            self.integers += count if kind.integer else 0
        if kind.token:
            self.number_tokens += count
        elif kind.value is not None:
            self.numbers += count
        if kind.boolean:
            self.booleans += count
        if kind.layout:
            self.dates[kind.layout] = self.dates.get(kind.layout, 0) + count

    def add_cells(self, cells: pa.Array, first: int, wanted: int) -> List[Tuple[int, str]]:
        """`add` for a batch of stripped cells (pyarrow strings) whose first is row `first` (0-based, in
        the file's data rows). Returns up to `wanted` (row, cell) of cells that are not numbers, in row
        order: their lines are found afterwards (`arrow_scan`). Raises NeedsPython for a list value."""
        blank = pc.equal(cells, "").to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(~blank)
        self.blank += len(cells) - len(rows)
        self.present += len(rows)
        if not len(rows):
            return []
        s = pc.filter(cells, pa.array(~blank))
        if pc.any(pc.match_substring(s, LIST_SEPARATOR)).as_py():
            raise NeedsPython()
        lengths = pc.utf8_length(s).to_numpy()
        self.total_length += int(lengths.sum())
        self.max_length = max(self.max_length, int(lengths.max()))
        ascii_ = pc.string_is_ascii(s).to_numpy(zero_copy_only=False)
        self.ascii_cells += int(ascii_.sum())
        if not ascii_.all():
            found = pc.count_substring_regex(pc.filter(s, pa.array(~ascii_)), SPACELESS_SCRIPTS.pattern)
            self.spaceless += int(pc.sum(found).as_py())
        self.words += int(pc.sum(pc.count_substring(s, " ")).as_py()) + len(rows)
        if not self.distinct_overflow:
            counted = pc.value_counts(s)  # in order of first appearance, as `add` inserts them
            distinct = self.distinct
            for value, count in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()):
                distinct[value] = distinct.get(value, 0) + count
            if len(distinct) > MAX_DISTINCT:
                self.distinct_overflow, self.distinct = True, {}
        values = np.full(len(s), np.nan)
        plain = pc.match_substring_regex(s, PLAIN_NUMBER.pattern).to_numpy(zero_copy_only=False)
        if plain.any():
            p = pc.filter(s, pa.array(plain))
            self.numbers += len(p)
            self.plain_numbers += len(p)
            integer = pc.match_substring_regex(p, INTEGER.pattern)
            self.integers += int(pc.sum(integer).as_py())
            long = pc.filter(p, pc.and_(integer, pc.greater(pc.utf8_length(p), 18)))
            self.wide_integers += sum(map(_past_int64, long.to_pylist()))
            self.booleans += int(pc.sum(pc.is_in(p, value_set=pa.array(["0", "1"]))).as_py())
            try:
                values[plain] = pc.cast(pc.replace_substring_regex(p, r"^\+", ""), pa.float64()).to_numpy()
            except pa.ArrowInvalid:
                raise NeedsPython() from None
        found = []
        if not plain.all():  # each distinct other cell is classified once, as `add` would
            other = np.flatnonzero(~plain)
            o = pc.filter(s, pa.array(~plain))
            counted = pc.value_counts(o)
            kinds = [classify(v) for v in counted.field("values").to_pylist()]
            for kind, count in zip(kinds, counted.field("counts").to_pylist()):
                self._tally(kind, count)
            at = pc.index_in(o, value_set=counted.field("values")).to_numpy()
            values[other] = np.array([np.nan if k.value is None else k.value for k in kinds])[at]
            bad = np.flatnonzero(np.array([k.not_number for k in kinds])[at])[:wanted]
            found = [(first + int(rows[other[i]]), o[int(i)].as_py()) for i in bad]
        v = values[np.isfinite(values)]
        if len(v):  # summed in row order, one after another, as `add` sums
            self.total = float(np.cumsum(np.concatenate([[self.total], v]))[-1])
            self.total_sq = float(np.cumsum(np.concatenate([[self.total_sq], v * v]))[-1])
            self.sum_count += len(v)
        return found


def _past_int64(integer: str) -> bool:
    """Whether a plain integer's cell is past what an Int64List holds (only 19 digits or more can be)."""
    return len(integer) > 18 and not INT64_MIN <= int(integer) <= INT64_MAX


class NeedsPython(Exception):
    """A file the Arrow scan cannot count as `ColumnStats.add` does: the Python reader scans it."""


@dataclasses.dataclass(frozen=True)
class CellKind:
    """What a non-blank, stripped cell is, for the counts."""

    plain: bool = False  # a plain number (no symbols)
    integer: bool = False
    token: bool = False  # a missing-value token ('NA', 'n/a', '?')
    value: Optional[float] = None  # its number, or None
    boolean: bool = False
    layout: Optional[str] = None  # a date's layout

    @property
    def not_number(self) -> bool:
        return self.value is None and not self.token


def classify(s: str) -> CellKind:
    if PLAIN_NUMBER.match(s):
        integer = bool(INTEGER.match(s))
        return CellKind(plain=True, integer=integer, value=float(s), boolean=integer and s in BOOLEAN_SPELLINGS)
    low = s.lower()
    token = low in NUMERIC_MISSING_TOKENS
    return CellKind(token=token, value=None if token else parse_number(s), boolean=low in BOOLEAN_SPELLINGS,
                    layout=date_layout(s) if len(s) >= 8 and s[:1].isdigit() else None)
