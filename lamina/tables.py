"""The row sources of tables: one per format, each reading a file into cells (strings, as a CSV has them).

`ROW_SOURCES` registers them. CSV: Python's `csv` (quotes, line breaks in cells), the delimiter
sniffed or set. JSON Lines: one object per line (keys may differ between lines; a missing key is a
blank cell). Parquet: its columns, a batch at a time with pyarrow (a list column is a sequence
feature's; structs and nested lists are refused). TFRecord: tf.Examples, gzipped or not (several
values in a feature are a sequence feature's). A list reaches its cell joined by LIST_SEPARATOR.
Each source yields `Row`s: (line or record number, the cells or None for a bad row, the problem).
The scan and its checks are in components/table_source.py; `lamina.rows` reads a user's file for
`lamina predict` through the same sources.
"""

import csv
import dataclasses
import json
import math
from typing import Dict, Iterator, List, Optional, Tuple

from lamina import storage
from lamina.constants import TABLE_FORMATS
from lamina.cells import LIST_SEPARATOR, SNIFF_BYTES, CsvInputError, clean_header, open_text, sniff_delimiter


@dataclasses.dataclass(frozen=True)
class TableOptions:
    """What a row source's `header` reads a file with (ingestion's TablePolicy adds its checks)."""

    delimiter: Optional[str] = None
    encoding: str = "utf-8"


def _reader(f, delimiter: str):
    return csv.reader(f, delimiter=delimiter, quotechar='"', doublequote=True, skipinitialspace=False, strict=False)


def read_dialect(path: str, policy: TableOptions) -> Tuple[str, List[str]]:
    """(the delimiter, the cleaned header) of a CSV whose encoding is already checked."""
    with open_text(path, policy.encoding) as f:
        sample = f.read(SNIFF_BYTES)
    if not sample.strip():
        raise CsvInputError(f"no data rows in {path}: the file is empty.")
    delimiter = policy.delimiter or sniff_delimiter(sample)
    with open_text(path, policy.encoding) as f:
        header = next(_reader(f, delimiter), [])
    return delimiter, clean_header(path, header)


# -- row sources: one per format ----------------------------------------------------------------

# (line, row or record number; the row's cells, or None for a bad row; what is wrong with a bad one)
Row = Tuple[int, Optional[List[str]], str]


class BadCell(Exception):
    """A value no cell can hold (a struct, bytes that are not UTF-8 text): its row is a bad row."""


class CsvRows:
    """A CSV with a header row, in the dialect `read_dialect` finds."""

    unit = "line"
    text = True

    def header(self, path: str, policy: TableOptions) -> Tuple[str, List[str]]:
        return read_dialect(path, policy)

    def rows(self, path: str, dialect: str, names: List[str], encoding: str) -> Iterator[Row]:
        width = len(names)
        with open_text(path, encoding) as f:
            reader = _reader(f, dialect)
            next(reader, None)
            line = reader.line_num + 1
            try:
                for row in reader:
                    start, line = line, reader.line_num + 1
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # a blank line
                    if len(row) != width:
                        yield start, None, f"{len(row)} fields, the header has {width}"
                    else:
                        yield start, row, ""
            except csv.Error as e:  # a NUL byte, a cell past csv.field_size_limit()
                raise CsvInputError(f"{path}, line {line}: cannot be read as CSV: {e}.") from None


def value_cell(value, key: str) -> str:
    """A JSON, Parquet or tf.Example value as the cell text a CSV would hold (raises BadCell).

    components/table_arrow.py gives a Parquet column's cells by vectorized steps; they must equal these."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadCell(f"{key!r} holds bytes that are not UTF-8 text") from None
    if hasattr(value, "isoformat"):  # dates and timestamps
        return value.isoformat()
    if type(value).__name__ == "Decimal":
        return str(value)
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (list, tuple, dict)) for v in value):
        # A list of scalars: a sequence feature's values (any other column refuses it by name).
        return LIST_SEPARATOR.join(value_cell(v, key) or "nan" for v in value) + (LIST_SEPARATOR if len(value) < 2 else "")
    kind = ("a list of lists or objects" if isinstance(value, (list, tuple)) else "an object"
            if isinstance(value, dict) else type(value).__name__)
    raise BadCell(f"{key!r} holds {kind}; expected a number, a string, true/false, null, or a list of numbers "
                  f"(a sequence)")


def no_repeated_keys(pairs: List[Tuple[str, object]]) -> dict:
    """json's object_pairs_hook: the object as a dict; raises BadCell where a key appears twice."""
    value = dict(pairs)
    if len(value) < len(pairs):
        keys = [k for k, _ in pairs]
        raise BadCell(f"key {sorted({k for k in keys if keys.count(k) > 1})[0]!r} appears twice in the object")
    return value


_JSON = json.JSONDecoder(object_pairs_hook=no_repeated_keys)


def _json_object(text: str):
    """`json.loads(text, object_pairs_hook=no_repeated_keys)`, with one decoder for every line (json.loads
    builds a decoder per call when given a hook)."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _JSON.decode(text)


class JsonKeys:
    """JSON keys -> column names. The header is every key in the order first seen, cleaned (`clean_header`:
    `" Age "` is column `Age`, a blank key `column_<position>`), so reading the file again in the same order
    names each key's column."""

    def __init__(self, names: List[str]):
        self.names = names
        self.column: Dict[str, str] = {}
        self.renamed = False

    def by_column(self, value: dict) -> dict:
        """The object keyed by column names."""
        if len(self.column) < len(self.names):  # a key not seen before can still come
            for key in value:
                if key not in self.column and len(self.column) < len(self.names):
                    self.column[key] = self.names[len(self.column)]
                    self.renamed |= self.column[key] != key
        if not self.renamed:
            return value
        return {self.column.get(k, k): v for k, v in value.items()}


class JsonLinesRows:
    """One JSON object per line; the columns are every key seen, in the order first seen."""

    unit = "line"
    text = True

    @staticmethod
    def objects(path: str, encoding: str) -> Iterator[Tuple[int, Optional[dict], str]]:
        """(line, the object or None, what is wrong with the line) for each line that is not blank."""
        with open_text(path, encoding) as f:
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    value = _json_object(text.rstrip("\r\n"))
                except json.JSONDecodeError as e:
                    yield line, None, f"not valid JSON: {e.msg} at column {e.colno}"
                    continue
                except BadCell as e:
                    yield line, None, str(e)
                    continue
                if not isinstance(value, dict):
                    yield line, None, f"a JSON {type(value).__name__}, not an object of column names to values"
                    continue
                yield line, value, ""

    def header(self, path: str, policy: TableOptions) -> Tuple[str, List[str]]:
        names: Dict[str, None] = {}
        for _, value, _ in self.objects(path, policy.encoding):
            if value is not None:
                names.update(dict.fromkeys(value))
        if not names:
            raise CsvInputError(f"no data rows in {path}: no line holds a JSON object.")
        return "", clean_header(path, list(names))

    def rows(self, path: str, dialect: str, names: List[str], encoding: str) -> Iterator[Row]:
        keys = JsonKeys(names)
        for line, value, problem in self.objects(path, encoding):
            if value is None:
                yield line, None, problem
                continue
            value = keys.by_column(value)
            try:
                yield line, [value_cell(value.get(n), n) for n in names], ""
            except BadCell as e:
                yield line, None, str(e)


class ParquetRows:
    """A Parquet file's columns, read a batch at a time with pyarrow."""

    unit = "row"
    text = False

    def header(self, path: str, policy: TableOptions) -> Tuple[str, List[str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with storage.open_binary(path) as f:
                schema = pq.ParquetFile(f).schema_arrow
        except (pa.ArrowException, OSError) as e:
            raise CsvInputError(f"{path}: not a Parquet file: {e}") from None
        def scalar_list(t):
            return (pa.types.is_list(t) or pa.types.is_large_list(t)) and not pa.types.is_nested(t.value_type)

        nested = [f"{field.name!r} ({field.type})" for field in schema
                  if pa.types.is_nested(field.type) and not scalar_list(field.type)]
        if nested:
            raise CsvInputError(f"{path}: column {nested[0]} holds structs or nested lists; expected numbers, "
                                f"strings, booleans, dates, or lists of numbers (sequence features).")
        names = clean_header(path, [field.name for field in schema])
        return "", names

    def rows(self, path: str, dialect: str, names: List[str], encoding: str) -> Iterator[Row]:
        import pyarrow.parquet as pq

        with storage.open_binary(path) as f:
            number = 0
            for batch in pq.ParquetFile(f).iter_batches(batch_size=4096):
                columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                for values in zip(*columns):
                    number += 1
                    try:
                        yield number, [value_cell(v, n) for v, n in zip(values, names)], ""
                    except BadCell as e:
                        yield number, None, str(e)


class TfRecordRows:
    """TFRecord files of tf.Example, gzipped or not; at most one value per feature."""

    unit = "record"
    text = False

    @staticmethod
    def _examples(path: str):
        import tensorflow as tf

        with storage.open_binary(path) as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        records = tf.data.TFRecordDataset(path, compression_type="GZIP" if gzipped else "")
        number = 0
        iterator = iter(records.as_numpy_iterator())
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                return
            except tf.errors.DataLossError as e:
                raise CsvInputError(f"{path}: record {number + 1} is corrupt or cut off: "
                                    f"{e.message.splitlines()[0]}") from None
            number += 1
            try:
                yield number, tf.train.Example.FromString(record), ""
            except Exception:  # noqa: BLE001 - protobuf's DecodeError
                yield number, None, "not a serialized tf.Example"

    @staticmethod
    def _cell(feature, key: str) -> str:
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if len(values) > 1:
            return value_cell(values, key)  # a sequence feature's values
        return value_cell(values[0], key) if values else ""

    def header(self, path: str, policy: TableOptions) -> Tuple[str, List[str]]:
        names: Dict[str, None] = {}
        for _, example, _ in self._examples(path):
            if example is not None:
                names.update(dict.fromkeys(sorted(example.features.feature)))
        if not names:
            raise CsvInputError(f"no data rows in {path}: the file holds no tf.Example.")
        return "", clean_header(path, list(names))

    def rows(self, path: str, dialect: str, names: List[str], encoding: str) -> Iterator[Row]:
        for number, example, problem in self._examples(path):
            if example is None:
                yield number, None, problem
                continue
            features = example.features.feature
            try:
                yield number, [self._cell(features[n], n) if n in features else "" for n in names], ""
            except BadCell as e:
                yield number, None, str(e)


# Every format a table can come in, once, with its row source (the names and file endings are in
# lamina.constants: TABLE_FORMATS, FORMAT_EXTENSIONS).
ROW_SOURCES = {"csv": CsvRows(), "jsonl": JsonLinesRows(), "parquet": ParquetRows(), "tfrecord": TfRecordRows()}
if tuple(ROW_SOURCES) != TABLE_FORMATS:  # a new format is named in lamina.constants and read here
    raise ImportError(f"lamina.tables reads {tuple(ROW_SOURCES)}, lamina.constants names {TABLE_FORMATS}")
