"""Checking a user's table as it is: CSV, JSON Lines, Parquet or TFRecord, cell by cell.

Spreadsheet exports carry byte-order marks, `;` or tab delimiters, quoted cells with line
breaks inside, headers with spaces and symbols, blank or repeated column names, rows with a
field too many, numbers written as `$1,234.50` or `12%`, and bytes of another encoding. Each
problem becomes a `CsvInputError` naming the file, the line and, for encodings, the byte offset.

Every format is read into the same cells (strings, as a CSV has them) by its row source in
lamina/tables.py, so one set of rules here types, checks and profiles every format.
A sequence cell must be a list of numbers and an image cell must name an image file inside the
data root (components/image_paths.py); a row that breaks either is a bad row.

`scan_table` is one streaming pass that checks a file and counts what the ingestion policy and
the column-role inference need (components/column_stats.py, in memory bounded by `MAX_DISTINCT`
values per column); the pipeline's preflight (`lamina validate`, `lamina run`) and the
TableExampleGen executor both call it, so the same message stops the run before Beam starts,
locally and on Kubeflow.
`iter_records` yields the rows the scan accepted. What a cell may hold (numbers, missing
values, dates, header names, delimiters, encodings) is in lamina/cells.py.
"""

import collections
import copy
import dataclasses
import hashlib
from typing import Dict, Iterator, List, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from lamina import storage
from lamina.components import table_arrow
from lamina.components.column_stats import ColumnStats, NeedsPython
from lamina.components.image_paths import audio_cell_wav, image_cell_problem
from lamina.cells import LIST_SEPARATOR, CsvInputError, check_encoding, clean_header, parse_sequence
from lamina.constants import DEFAULT_MAX_AUDIO_SECONDS, DEFAULT_MAX_IMAGE_PIXELS
from lamina.tables import ROW_SOURCES, Row, TableOptions

# -- the scan --------------------------------------------------------------------------------------


@dataclasses.dataclass
class TableScan:
    """A file's dialect, header and counts, from one pass."""

    path: str
    delimiter: str  # CSV only ('' for the other formats)
    encoding: str
    columns: List[ColumnStats]
    rows: int = 0  # data rows read, bad ones included
    bad_rows: List[Tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, problem), first 20
    format: str = "csv"
    bad_row_count: int = 0
    missing_label: int = 0
    blank_lines: int = 0
    # Read by pyarrow (`arrow_scan`): ExampleGen may then convert the file on the Arrow path, which reads
    # it with the same options. Not part of what a scan counts.
    by_arrow: bool = dataclasses.field(default=False, compare=False)

    @property
    def names(self) -> List[str]:
        return [c.name for c in self.columns]

    @property
    def kept_rows(self) -> int:
        return self.rows - self.bad_row_count - self.missing_label

    def column(self, name: str) -> ColumnStats:
        return self.columns[self.names.index(name)]


@dataclasses.dataclass(frozen=True)
class TablePolicy(TableOptions):
    """What a scan accepts (the spec's data section, as the executor receives it): the row source's
    options (delimiter, encoding) and the checks."""

    format: str = "csv"
    bad_rows: str = "fail"
    max_bad_rows: float = 0.01
    label: str = ""
    max_missing_labels: float = 0.5
    profile: bool = True  # count the per-column statistics (off: only check and count rows)
    # Sequence features: (column, delimiter or '') pairs; a cell that is not a list of numbers is a bad row.
    sequences: Tuple[Tuple[str, str], ...] = ()
    # Image features: columns of image file paths, relative to `image_root` (the table's folder), which they
    # may not leave; a cell whose file is missing or not an image is a bad row.
    images: Tuple[str, ...] = ()
    image_root: str = ""
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # Audio features: columns of audio file paths, under the same rule; a file that is not usable audio
    # (lamina.components.audio_files) makes a bad row.
    audio: Tuple[str, ...] = ()
    max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS




# The last scans, by file (its size, mtime and a hash of its first and last bytes) and policy: the
# preflight's scan serves ExampleGen's in the same process (`lamina run` on the local runner).
_SCANS: "collections.OrderedDict[tuple, TableScan]" = collections.OrderedDict()
SCAN_CACHE_SIZE = 8
SAMPLE_BYTES = 1 << 16


def _file_key(path: str) -> tuple:
    size, mtime = storage.stat(path)
    digest = hashlib.sha256()
    with storage.open_binary(path) as f:
        digest.update(f.read(SAMPLE_BYTES))
        if size > 2 * SAMPLE_BYTES:
            f.seek(size - SAMPLE_BYTES)
            digest.update(f.read(SAMPLE_BYTES))
    return path, size, mtime, digest.hexdigest()


def scan_table(path: str, policy: TablePolicy) -> TableScan:
    """`scan_uncached`, or its result for the same file and policy earlier in this process (a copy)."""
    key = (_file_key(path), policy)
    if key not in _SCANS:
        _SCANS[key] = scan_uncached(path, policy)
        while len(_SCANS) > SCAN_CACHE_SIZE:
            _SCANS.popitem(last=False)
    _SCANS.move_to_end(key)
    return copy.deepcopy(_SCANS[key])


def scan_uncached(path: str, policy: TablePolicy, arrow: bool = True) -> TableScan:
    """Checks `path` and counts its rows and columns in one streaming pass.

    Raises CsvInputError for: bytes the encoding cannot decode (line and byte offset), an empty
    or header-only file, a repeated column name, a label column the header lacks, rows that cannot
    be read (with `bad_rows: fail`, or more than `max_bad_rows` of them: a CSV row whose field count
    differs from the header's, a line that is not a JSON object ...), and more than
    `max_missing_labels` of the rows without a label.

    A CSV is counted from pyarrow's record batches where `arrow_scan` can (the same counts, about 10x
    faster); the Python reader scans the rest, and every file with a bad row.
    """
    source = ROW_SOURCES[policy.format]
    if source.text:
        check_encoding(path, policy.encoding)
    if arrow and policy.format == "jsonl":  # its header is every key, so the scan learns it: one pass, not two
        scan = arrow_scan_jsonl(path, policy)
        if scan is not None:
            _check_label(path, policy, scan.names)
            _enforce(scan, policy, source.unit)
            return scan
    dialect, names = source.header(path, policy)
    _check_label(path, policy, names)
    scan = arrow_scan(path, policy, dialect, names) if arrow and policy.format != "jsonl" else None
    if scan is not None:
        _enforce(scan, policy, source.unit)
        return scan
    scan = TableScan(path, dialect, policy.encoding, [ColumnStats(n, i) for i, n in enumerate(names, start=1)],
                     format=policy.format)
    label_at = names.index(policy.label) if policy.label else -1
    for line, cells, problem in _checked_rows(source, path, dialect, names, policy):
        scan.rows += 1
        if cells is None:
            scan.bad_row_count += 1
            if len(scan.bad_rows) < 20:
                scan.bad_rows.append((line, problem))
            continue
        if label_at >= 0 and not cells[label_at].strip():
            scan.missing_label += 1
        if policy.profile:
            for stats, cell in zip(scan.columns, cells):
                stats.add(cell, line)
    _enforce(scan, policy, source.unit)
    return scan


def _check_label(path: str, policy: TablePolicy, names: List[str]) -> None:
    if policy.label and policy.label not in names:
        from difflib import get_close_matches

        close = get_close_matches(policy.label, names, n=1, cutoff=0.6)
        raise CsvInputError(f"{path}: no column {policy.label!r} (data.label) in the header; the columns are "
                            f"{', '.join(repr(n) for n in names)}." + (f" Did you mean {close[0]!r}?" if close else ""))


def arrow_scan(path: str, policy: TablePolicy, dialect: str, names: List[str]) -> Optional[TableScan]:
    """The scan of a CSV, Parquet or JSON Lines file from record batches, equal to the Python reader's; None
    for a file it cannot count the same way (a row of the wrong width, a list value, a value that makes a
    bad row, a sequence, image or audio column, a CSV of one column, where a line of spaces is a blank
    line to Python and a row to pyarrow)."""
    is_csv = policy.format == "csv"
    if (policy.format not in table_arrow.FORMATS or policy.sequences or policy.images or policy.audio
            or (is_csv and len(names) < 2)):
        return None
    scan = TableScan(path, dialect, policy.encoding, [ColumnStats(n, i) for i, n in enumerate(names, start=1)],
                     format=policy.format, by_arrow=True)
    label_at = names.index(policy.label) if policy.label else -1
    lines_wanted: List[Tuple[int, int, str]] = []
    try:
        for batch in table_arrow.batches(path, names, dialect, policy.encoding, policy.format):
            if is_csv and any(_python_refuses(c) for c in batch.columns):
                return None  # the Python reader stops the run there, with the line
            _count_batch(scan, batch, label_at, policy, lines_wanted)
    except (NeedsPython, table_arrow.Unsupported, pa.ArrowInvalid, UnicodeDecodeError):
        return None
    _place_lines(scan, policy, dialect, names, lines_wanted)
    return scan


def arrow_scan_jsonl(path: str, policy: TablePolicy) -> Optional[TableScan]:
    """`arrow_scan` of a JSON Lines file, learning its header as it reads (`table_arrow.jsonl_batches_learning`)
    instead of reading every line once more for the keys first: the same scan as `JsonLinesRows.header` and
    `arrow_scan` give. A column whose key first appears at row r has r blanks before it. None where `arrow_scan`
    gives None, or no line holds an object; raises CsvInputError for two keys that are one name once cleaned."""
    if policy.sequences or policy.images or policy.audio:
        return None
    scan = TableScan(path, "", policy.encoding, [], format="jsonl", by_arrow=True)
    keys: List[str] = []
    label_at = -1
    lines_wanted: List[Tuple[int, int, str]] = []
    try:
        for keys, batch in table_arrow.jsonl_batches_learning(path, policy.encoding):
            for position in range(len(scan.columns), len(keys)):
                stats = ColumnStats(keys[position].strip() or f"column_{position + 1}", position + 1)
                stats.blank = scan.rows if policy.profile else 0
                scan.columns.append(stats)
                if stats.name == policy.label and label_at < 0:
                    label_at = position
                    scan.missing_label += scan.rows
            _count_batch(scan, batch, label_at, policy, lines_wanted)
    except (NeedsPython, table_arrow.Unsupported, pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if not scan.rows:
        return None
    names = clean_header(path, keys)  # the header's own check: a name twice
    _place_lines(scan, policy, "", names, lines_wanted)
    return scan


def _count_batch(scan: TableScan, batch: pa.RecordBatch, label_at: int, policy: TablePolicy,
                 lines_wanted: List[Tuple[int, int, str]]) -> None:
    """Counts one record batch into `scan`; adds to `lines_wanted` (row, column, cell) the first few cells of
    each column that are not numbers, whose lines `_place_lines` finds."""
    cells = [table_arrow.strip(c) for c in batch.columns]
    if label_at >= 0:
        scan.missing_label += int(pc.sum(pc.equal(cells[label_at], "")).as_py() or 0)
    for i, (stats, column) in enumerate(zip(scan.columns, cells) if policy.profile else ()):
        wanted = 5 - sum(1 for _, at, _ in lines_wanted if at == i)
        lines_wanted += [(row, i, cell) for row, cell in stats.add_cells(column, scan.rows, wanted)]
    scan.rows += batch.num_rows


def _place_lines(scan: TableScan, policy: TablePolicy, dialect: str, names: List[str],
                 lines_wanted: List[Tuple[int, int, str]]) -> None:
    if lines_wanted and policy.format == "parquet":  # a Parquet row's number is its line
        for row, i, cell in sorted(lines_wanted):
            scan.columns[i].not_numbers.append((row + 1, cell))
    elif lines_wanted:
        rows = {row for row, _, _ in lines_wanted}
        lines = {}
        for row, (line, _, _) in enumerate(ROW_SOURCES[policy.format].rows(scan.path, dialect, names, policy.encoding)):
            if row in rows:
                lines[row] = line
                if len(lines) == len(rows):
                    break
        for row, i, cell in sorted(lines_wanted):
            scan.columns[i].not_numbers.append((lines[row], cell))


def _python_refuses(cells: pa.Array) -> bool:
    """Whether Python's csv reader refuses a cell: a NUL byte, or more than csv.field_size_limit() characters."""
    import csv

    return bool(pc.any(pc.match_substring(cells, "\x00")).as_py()
                or (pc.max(pc.utf8_length(cells)).as_py() or 0) > csv.field_size_limit())


def _checked_rows(source, path: str, dialect: str, names: List[str], policy: TablePolicy) -> Iterator[Row]:
    """The source's rows; a row whose sequence cell is not a list of numbers, or whose image cell names no
    image file, becomes a bad row."""
    sequences = [(names.index(n), n, d or None) for n, d in policy.sequences if n in names]
    images = [(names.index(n), n) for n in policy.images if n in names]
    audio = [(names.index(n), n) for n in policy.audio if n in names]
    for line, cells, problem in source.rows(path, dialect, names, policy.encoding):
        for at, name in images if cells is not None else ():
            found = image_cell_problem(cells[at], policy.image_root, f"{path}, line {line}, column {name!r}",
                                       policy.max_pixels)
            if found:
                cells, problem = None, f"image column {name!r}: {found}"
                break
        for at, name in audio if cells is not None else ():
            _, found = audio_cell_wav(cells[at], policy.image_root, f"{path}, line {line}, column {name!r}",
                                      policy.max_seconds)
            if found:
                cells, problem = None, f"audio column {name!r}: {found}"
                break
        if cells is not None:
            for at, name, delimiter in sequences:
                try:
                    parse_sequence(cells[at], delimiter)
                except ValueError as e:
                    shown = cells[at].replace(LIST_SEPARATOR, ", ")
                    cells, problem = None, (f"sequence feature {name!r}: {e} in {shown[:80]!r}; expected numbers "
                                            f"separated by {repr(delimiter) if delimiter else 'spaces, commas, ; or |'}")
                    break
        yield line, cells, problem


def _enforce(scan: TableScan, policy: TablePolicy, unit: str) -> None:
    path = scan.path
    if scan.rows == 0:
        raise CsvInputError(f"no data rows in {path}: the file has only a header "
                            f"({len(scan.columns)} column(s): {', '.join(repr(n) for n in scan.names[:8])}"
                            f"{', ...' if len(scan.columns) > 8 else ''}).")
    if scan.bad_row_count:
        where = "; ".join(f"{unit} {line}: {problem}" for line, problem in scan.bad_rows[:5])
        more = f" (and {scan.bad_row_count - 5} more)" if scan.bad_row_count > 5 else ""
        # A CSV's bad rows are rows of the wrong width, unless a sequence or image cell is the problem.
        csv_rows = policy.format == "csv" and all(p.endswith(f"the header has {len(scan.columns)}")
                                                  for _, p in scan.bad_rows)
        what = f"do not match the header's {len(scan.columns)} columns" if csv_rows else "cannot be read"
        if policy.bad_rows == "fail":
            raise CsvInputError(f"{path}: {scan.bad_row_count} row(s) {what}: {where}{more}. Fix them, or set "
                                f"data.bad_rows: skip to leave such rows out.")
        if scan.bad_row_count / scan.rows > policy.max_bad_rows:
            raise CsvInputError(f"{path}: {scan.bad_row_count} of {scan.rows} rows "
                                f"({scan.bad_row_count / scan.rows:.1%}) {'do not match the header' if csv_rows else what}, more "
                                f"than data.max_bad_rows {policy.max_bad_rows:.1%}: {where}{more}.")
    usable = scan.rows - scan.bad_row_count
    if policy.label and scan.missing_label:
        if usable == scan.missing_label:
            raise CsvInputError(f"no data rows in {path}: every row's label {policy.label!r} is blank.")
        if scan.missing_label / usable > policy.max_missing_labels:
            raise CsvInputError(f"{path}: {scan.missing_label} of {usable} rows ({scan.missing_label / usable:.1%}) "
                                f"have no label in column {policy.label!r}, more than data.max_missing_labels "
                                f"{policy.max_missing_labels:.1%}.")


def iter_records(path: str, names: List[str], label: str = "", fmt: str = "csv", dialect: str = ",",
                 encoding: str = "utf-8", sequences: Tuple[Tuple[str, str], ...] = (),
                 policy: Optional[TablePolicy] = None) -> Iterator[Tuple[int, Dict[str, str]]]:
    """(line, {column: cell}) for every row `scan_table` accepts: readable rows whose label is not
    blank. `names` and `dialect` are the scan's; `sequences` (or the whole `policy`) the policy's."""
    label_at = names.index(label) if label in names else -1
    policy = policy or TablePolicy(format=fmt, encoding=encoding, sequences=tuple(sequences))
    for line, cells, _ in _checked_rows(ROW_SOURCES[fmt], path, dialect, names, policy):
        if cells is None or (label_at >= 0 and not cells[label_at].strip()):
            continue
        yield line, dict(zip(names, cells))
