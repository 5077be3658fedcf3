"""The grammar of a table's cells and files: what a number, a missing value, a date and a header
look like, which delimiter and encoding a file has, and the error that names where it went wrong.

Spreadsheet exports carry byte-order marks, `;` or tab delimiters, headers with spaces and
symbols, blank or repeated column names, numbers written as `$1,234.50` or `12%`, and bytes of
another encoding. `parse_number` is the one home of what a number may look like in a cell; the
scan (components/table_source.py) and the rows sent to a served model (lamina.rows) both use it.
Every problem is a `CsvInputError` naming the file, the line and, for encodings, the byte offset.
"""

import codecs
import csv
import io
import math
import re
from typing import Dict, List, Optional

from lamina import storage

# Cells that mean "no value" in a numeric column (compared stripped and lower-cased). A categorical
# column reads them as missing too.
MISSING_NUMBER_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?", "#n/a", "missing"})
# Infinities, as Python, pandas and spreadsheets write them (a ratio with a zero below the line).
# In a numeric column they are missing values: no mean or deviation can hold them. A categorical
# column keeps them as categories.
NOT_FINITE_TOKENS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "#div/0!"})
NUMERIC_MISSING_TOKENS = MISSING_NUMBER_TOKENS | NOT_FINITE_TOKENS
BOOLEAN_SPELLINGS = {"true": True, "false": False, "yes": True, "no": False, "y": True, "n": False,
                     "t": True, "f": False, "1": True, "0": False, "on": True, "off": False}
SNIFF_BYTES = 64 * 1024
_CURRENCY = "$€£¥₹"
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$")
PLAIN_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
INTEGER = re.compile(r"^[-+]?\d+$")
_DATE = re.compile(r"^(\d{4})([-/])(\d{1,2})\2(\d{1,2})|^(\d{1,2})([/.])(\d{1,2})\6(\d{4})")
_TIME = re.compile(r"^([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


class CsvInputError(ValueError):
    """A CSV that cannot be read as it is; the message names the file and the place."""


def parse_number(text: str) -> Optional[float]:
    """A cell's number, or None when the cell is not one (missing cells are None too).

    Accepts plain numbers, thousands separators (`1,234.5`), a currency symbol before or after
    (`$12`, `12 €`), a trailing percent sign (`12%` is 0.12) and surrounding spaces. Infinities
    (`inf`, `-Infinity`, `#DIV/0!`) are missing values, as `NaN` is. `1_000` and European decimal
    commas (`3,5`) are not numbers.

    >>> parse_number("$1,234.50"), parse_number("12%"), parse_number("n/a")
    (1234.5, 0.12, None)
    """
    s = text.strip()
    if PLAIN_NUMBER.match(s):
        return float(s)
    if s.lower() in NUMERIC_MISSING_TOKENS:
        return None
    sign = 1.0
    if s[:1] in "+-":
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:].strip()
    s = s.strip(_CURRENCY).strip()
    if s[:1] in "+-" and sign == 1.0:
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:].strip()
    scale = 1.0
    if s.endswith("%"):
        scale, s = 0.01, s[:-1].strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if not PLAIN_NUMBER.match(s):
        return None
    value = sign * float(s) * scale
    return value if math.isfinite(value) else None


# How JSON Lines, Parquet and TFRecord lists reach a cell: their values joined by this separator,
# which no spreadsheet cell holds. A sequence feature splits on it; any other column refuses it.
LIST_SEPARATOR = "\x1a"
_SEQUENCE_SPLIT = re.compile(r"[\s,;|]+")


def parse_sequence(text: str, delimiter: Optional[str] = None) -> List[float]:
    """A sequence cell's values: numbers split by `delimiter` (default any run of spaces, commas,
    semicolons or bars, inside optional brackets), or a list from a non-CSV format. Missing-value
    tokens ('NA', '?') become NaN, a step with no reading. A blank cell is an empty sequence.

    Raises ValueError naming the first value that is not a number.

    >>> parse_sequence("[1.5, 2, NA, $3]")
    [1.5, 2.0, nan, 3.0]
    """
    s = text.strip()
    if LIST_SEPARATOR in s:
        parts = s.split(LIST_SEPARATOR)
    else:
        if s[:1] in "[(" and s[-1:] in "])":
            s = s[1:-1]
        parts = s.split(delimiter) if delimiter else _SEQUENCE_SPLIT.split(s)
    values = []
    for i, part in enumerate(parts):
        part = part.strip()
        if not part and (not delimiter or not s):
            continue
        value = parse_number(part)
        if value is None:
            if not is_missing_number(part):
                raise ValueError(f"value {i + 1}, {part!r}, is not a number")
            value = float("nan")
        values.append(value)
    return values


def is_missing_number(text: str) -> bool:
    """A missing value in a numeric column: a marker such as 'NA' or '?', or an infinity ('inf')."""
    return text.strip().lower() in NUMERIC_MISSING_TOKENS


# Boolean spellings whose case a categorical column ignores ('Yes', 'YES' and 'yes' are one value).
CATEGORY_BOOLEANS = frozenset(k for k in BOOLEAN_SPELLINGS if not k.isdigit())


def normalize_category(text: str) -> str:
    """A categorical cell as the model reads it, in training and in serving alike: surrounding spaces
    dropped, a missing marker ('?', 'NA', 'n/a', ...) is '' (missing), and a boolean spelling is
    lower-cased. `lamina.models.preprocessing.normalize_categories` is the same rule in the graph.

    >>> normalize_category(" male"), normalize_category(" ?"), normalize_category("Yes")
    ('male', '', 'yes')
    """
    s = text.strip()
    low = s.lower()
    if low in MISSING_NUMBER_TOKENS:
        return ""
    return low if low in CATEGORY_BOOLEANS else s


def date_layout(text: str) -> Optional[str]:
    """The DATE_FORMATS layout a cell is written in ('%Y-%m-%d', '%d/%m/%Y', ...), or None.

    Day-first and month-first are told apart by values above 12; '%m/%d/%Y' when undecided.
    """
    s = text.strip()
    m = _DATE.match(s)
    if not m or not _TIME.match(s[m.end():]):
        return None
    if m.group(1):
        month, day = int(m.group(3)), int(m.group(4))
        return f"%Y{m.group(2)}%m{m.group(2)}%d" if 1 <= month <= 12 and 1 <= day <= 31 else None
    a, b, sep = int(m.group(5)), int(m.group(7)), m.group(6)
    if sep == ".":
        return "%d.%m.%Y" if 1 <= a <= 31 and 1 <= b <= 12 else None
    if a > 12 and b <= 12:
        return "%d/%m/%Y"
    return "%m/%d/%Y" if a <= 12 and 1 <= b <= 31 else None


# -- opening files -----------------------------------------------------------------------------


def _python_encoding(encoding: str) -> str:
    # utf-8-sig drops a byte-order mark (a spreadsheet's "CSV UTF-8") and reads plain UTF-8 alike.
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def open_text(path: str, encoding: str = "utf-8") -> io.TextIOWrapper:
    return storage.open_text(path, _python_encoding(encoding))


def check_encoding(path: str, encoding: str = "utf-8") -> None:
    """Raises CsvInputError naming the line and byte offset of the first byte `encoding` cannot decode."""
    utf8 = codecs.lookup(encoding).name == "utf-8"
    decoder = codecs.getincrementaldecoder("utf-8" if utf8 else encoding)()
    offset, line = 0, 1
    with storage.open_binary(path) as f:
        while True:
            chunk = f.read(1 << 20)
            if offset == 0 and utf8 and chunk.startswith(codecs.BOM_UTF8):
                chunk, offset = chunk[3:], 3
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                # The error's offsets count from the bytes the decoder held back (an unfinished
                # character from the last chunk, never a line break) plus this chunk.
                held = len(e.object) - len(chunk)
                line += chunk[: max(0, e.start - held)].count(b"\n")
                raise CsvInputError(
                    f"{path}: not valid {encoding} at line {line}, byte offset {offset - held + e.start} "
                    f"(bytes {e.object[e.start:e.start + 4]!r}). Set data.encoding to the file's encoding "
                    f"(for example 'latin-1' or 'cp1252'), or save the file as UTF-8.") from None
            if not chunk:
                return
            line += chunk.count(b"\n")
            offset += len(chunk)


def sniff_delimiter(sample: str, candidates=(",", ";", "\t", "|")) -> str:
    """The candidate that splits the sample's first rows into the same number (> 1) of fields.

    Ties go to the one giving more fields; a single-column file reads as ','.
    """
    lines = sample.splitlines(keepends=True)
    if len(sample) >= SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut off
    text = "".join(lines[:200])
    best, best_score = ",", (0, 0)
    for d in candidates:
        try:
            rows = [r for r in csv.reader(io.StringIO(text), delimiter=d) if r][:50]
        except csv.Error:
            continue
        if not rows:
            continue
        widths = {len(r) for r in rows}
        width = len(rows[0])
        score = (1 if len(widths) == 1 and width > 1 else 0, width if width > 1 else 0)
        if score > best_score:
            best, best_score = d, score
    return best


# -- the header ----------------------------------------------------------------------------------


def clean_header(path: str, names: List[str]) -> List[str]:
    """Header names stripped of spaces around them; a blank one becomes `column_<position>`.

    Raises CsvInputError when a name repeats, naming both positions (1-based).
    """
    cleaned = [n.strip() or f"column_{i}" for i, n in enumerate(names, start=1)]
    seen: Dict[str, int] = {}
    for i, name in enumerate(cleaned, start=1):
        if name in seen:
            raise CsvInputError(
                f"{path}: column name {name!r} appears twice in the header, at columns {seen[name]} and {i}; "
                f"rename one of them (each column must have its own name).")
        seen[name] = i
    return cleaned
