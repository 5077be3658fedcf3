"""TableExampleGen's fast path: a CSV read by pyarrow in record batches, its cells typed with
`pyarrow.compute`, and each row serialized as a tf.Example by vectorized steps.

`record_to_example` (components/table_example_gen.py) stays the rule book. This path writes, for
every row, the bytes `record_to_example(...).SerializeToString(deterministic=True)` gives: features
sorted by name, a blank cell left out. Those bytes are what TFX's split hashes, so a row lands in
the split it would land in on the Python path, and `tests/components/test_table_arrow.py` holds the
two paths to byte equality on real, messy files.

A Parquet file takes the same path: pyarrow reads it a batch at a time, and `parquet_cells` turns
each column into the cells `lamina.tables.value_cell` writes (integers, strings, booleans and floats by
vectorized steps, other types value by value), so the rest is the CSV's. So does a JSON Lines file:
Python's json module reads each line (pyarrow 10's JSON reader turns a column of 1 and 2.5 into 1.0
and 2.5, and refuses one of 1 and "a"), and `json_cells` turns each column of values into cells the
same way, by the type the column's values have.

A file takes this path when its scan was read this way (`table_source.arrow_scan`: a CSV that
pyarrow reads row for row as Python's csv reader does, a Parquet or a JSON Lines file), found no
bad row, and every column is a number, an integer or a string on the wire (no sequence, image or
audio column). Inside it, a cell that is not a plain number (`$1,234.50`, `12%`) is read by
`parse_number`, one cell at a time. A batch whose cells pyarrow cannot type exactly as Python
would (an integer past int64, digits of another script) goes through `record_to_example`, row by
row, so the rules and messages stay those of the Python path.
"""

import itertools
from typing import Callable, Collection, Dict, Iterator, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from lamina import storage
from lamina.cells import INTEGER, NUMERIC_MISSING_TOKENS, PLAIN_NUMBER, parse_number
from lamina.tables import BadCell, JsonKeys, JsonLinesRows, value_cell

FLOAT, INT, BYTES = "float", "int", "bytes"  # wire types (components/table_example_gen.py has the others)
BLOCK_BYTES = 16 << 20  # pyarrow's read block: about 100k rows of a 25-column table
PARQUET_BATCH_ROWS = JSONL_BATCH_ROWS = 65536
FORMATS = ("csv", "parquet", "jsonl")  # the formats this path reads
# What Python's str.strip() removes (every character whose isspace() is true), so that pyarrow trims exactly
# these. Written out: working it out over all 1.1M code points took 0.1 s of every `lamina` start.
# tests/components/test_table_arrow.py checks it against this Python's Unicode tables.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
              "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_EMPTY = pa.scalar(b"", pa.binary())
# The protobuf tags on the way from a value to an Example: a list's values (field 1); a Feature's
# bytes_list (1), float_list (2) or int64_list (3); a map entry's key (1) and value (2); the map's
# entries (Features.feature, 1); Example.features (1).
VALUES_TAG = b"\x0a"
KIND_TAGS = {BYTES: b"\x0a", FLOAT: b"\x12", INT: b"\x1a"}
KEY_TAG, VALUE_TAG, ENTRY_TAG, FEATURES_TAG = b"\x0a", b"\x12", b"\x0a", b"\x0a"


class Unsupported(Exception):
    """A batch this path cannot type exactly as `record_to_example` would."""


def applies(scan, types: Dict[str, str]) -> bool:
    """Whether ExampleGen converts the file of `scan` (a table_source.TableScan) on this path."""
    return scan.by_arrow and scan.bad_row_count == 0 and set(types.values()) <= {FLOAT, INT, BYTES}


def batches(path: str, names: List[str], delimiter: str, encoding: str, fmt: str = "csv",
            numbers: Collection[str] = ()) -> Iterator[pa.RecordBatch]:
    """The data rows of a CSV, every cell a string as it is written (raises pa.ArrowInvalid on a row of
    the wrong width), or of a Parquet or JSON Lines file as `parquet_cells` and `json_cells` write them
    (raises Unsupported for a line or value that makes a bad row). The file is opened by `lamina.storage`:
    tf.io.gfile for gs://, s3:// and other URIs.

    `numbers`: columns that are floats on the wire. In a Parquet or JSON Lines file, such a column whose
    values are all floats stays float64 values (NaN for a blank), not cells: their cells would be
    `repr`s, which parse back to the same values."""
    if fmt == "parquet":
        yield from parquet_batches(path, names, numbers)
        return
    if fmt == "jsonl":
        yield from jsonl_batches(path, names, encoding, numbers)
        return
    read = pa_csv.ReadOptions(column_names=names, skip_rows=1, block_size=BLOCK_BYTES,
                              encoding="utf8" if encoding.lower().replace("-", "") in ("utf8", "utf8sig") else encoding)
    parse = pa_csv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
                                newlines_in_values=True, ignore_empty_lines=True)
    convert = pa_csv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                                    quoted_strings_can_be_null=False)
    with storage.open_stream(path) as f:
        yield from pa_csv.open_csv(f, read_options=read, parse_options=parse, convert_options=convert)


def parquet_batches(path: str, names: List[str], numbers: Collection[str] = ()) -> Iterator[pa.RecordBatch]:
    """A Parquet file's rows, a batch at a time, each column as `parquet_cells` (`names`: the cleaned header),
    or float64 values (`numbers`, as in `batches`)."""
    import pyarrow.parquet as pq

    with storage.open_binary(path) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield pa.RecordBatch.from_arrays([parquet_cells(batch.column(i), name, name in numbers)
                                              for i, name in enumerate(names)], names=names)


def parquet_cells(column: pa.Array, name: str, floats: bool = False) -> pa.Array:
    """A Parquet column as strings equal to `value_cell` of each value: null and NaN blank, integers in
    decimal, booleans 'true'/'false', floats as Python's `repr`. A type without a vectorized rule
    (dates, decimals, lists) goes value by value through `value_cell`. Raises Unsupported where
    `value_cell` refuses a value (the Python path makes that row a bad row). With `floats`, a float column
    stays float64 values."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.dictionary_decode(), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        cells = column.cast(pa.string())
    elif pa.types.is_boolean(kind):
        cells = pc.if_else(column, "true", "false")
    elif pa.types.is_float32(kind) or pa.types.is_float64(kind):
        column = column.cast(pa.float64())  # float32 widened, as Python reads it
        return column if floats else _float_cells(column)
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            cells = column.cast(pa.string())  # checks that every value is UTF-8
        except pa.ArrowInvalid:
            raise Unsupported() from None
    else:
        try:
            return pa.array([value_cell(v, name) for v in column.to_pylist()], pa.string())
        except BadCell:
            raise Unsupported() from None
    return pc.fill_null(cells, "")


def jsonl_batches(path: str, names: List[str], encoding: str, numbers: Collection[str] = ()) -> Iterator[pa.RecordBatch]:
    """A JSON Lines file's objects, a batch at a time, each column as `json_cells` writes it (`names`: the
    header `lamina.tables.JsonLinesRows` gives), or float64 values (`numbers`, as in `batches`). Raises
    Unsupported at a line the Python reader makes a bad row (not JSON, not an object, a key twice, a value
    no cell holds)."""
    keys = JsonKeys(names)
    objects: List[dict] = []
    for _, value, _ in JsonLinesRows.objects(path, encoding):  # the Python reader's lines, bad ones None
        if value is None:
            raise Unsupported()
        objects.append(keys.by_column(value))
        if len(objects) == JSONL_BATCH_ROWS:
            yield _json_batch(objects, names, numbers)
            objects = []
    if objects:
        yield _json_batch(objects, names, numbers)


def jsonl_batches_learning(path: str, encoding: str) -> Iterator[Tuple[List[str], pa.RecordBatch]]:
    """A JSON Lines file's objects without knowing its keys first: (every key seen so far, as written, in the
    order first seen; the batch, a column per such key, as `json_cells` writes it). A key's column is blank in the
    rows before it first appears, as in the Python reader's. Raises Unsupported as `jsonl_batches` does."""
    keys: Dict[str, None] = {}
    objects: List[dict] = []
    for _, value, _ in JsonLinesRows.objects(path, encoding):
        if value is None:
            raise Unsupported()
        if not keys.keys() >= value.keys():
            keys.update(dict.fromkeys(value))
        objects.append(value)
        if len(objects) == JSONL_BATCH_ROWS:
            yield list(keys), _json_batch(objects, list(keys), ())
            objects = []
    if objects:
        yield list(keys), _json_batch(objects, list(keys), ())


def _json_batch(objects: List[dict], names: List[str], numbers: Collection[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([json_cells(list(map(dict.get, objects, itertools.repeat(n, len(objects)))), n,
                                                  n in numbers) for n in names], names=names)


def json_cells(values: list, name: str, floats: bool = False) -> pa.Array:
    """JSON values (str, int, float, bool, None; lists and objects) as strings equal to `value_cell` of
    each. A column of one type (and nulls) takes a vectorized step; a mixed one (1 and 2.5, 1 and "a"),
    an integer past int64 or a list goes value by value. Raises Unsupported where `value_cell` refuses.
    With `floats`, a column of floats (and nulls) stays float64 values."""
    kinds = set(map(type, values)) - {type(None)}
    try:
        if kinds <= {str}:
            return pc.fill_null(pa.array(values, pa.string()), "")
        if kinds == {float}:
            column = pa.array(values, pa.float64())
            return column if floats else _float_cells(column)
        if kinds == {int}:
            return pc.fill_null(pa.array(values, pa.int64()).cast(pa.string()), "")
        if kinds == {bool}:
            return pc.fill_null(pc.if_else(pa.array(values, pa.bool_()), "true", "false"), "")
    except (OverflowError, pa.ArrowException, UnicodeEncodeError):  # past int64; a lone surrogate (below)
        pass
    try:
        return pa.array([value_cell(v, name) for v in values], pa.string())
    except (BadCell, pa.ArrowException, UnicodeEncodeError):  # "\ud800" is a str that is not UTF-8 text
        raise Unsupported() from None


def _float_cells(column: pa.Array) -> pa.Array:
    """float64 values as Python's `repr` writes them, NaN blank. Arrow writes the same shortest digits;
    where it also writes them in fixed notation (Python's range, 1e-4 <= |x| < 1e16, without an 'e'),
    only an integer's '.0' is missing. The rest (1e+16, 1e-05, inf) go through `repr`."""
    values = column.to_numpy(zero_copy_only=False)  # a null is NaN here
    text = column.cast(pa.string())
    size = np.abs(values)
    nan = np.isnan(values)
    python = ~(((size >= 1e-4) & (size < 1e16)) | (values == 0)) & ~nan
    python |= pc.fill_null(pc.match_substring(text, "e"), False).to_numpy(zero_copy_only=False)
    whole = ~python & ~nan & (values == np.floor(values))
    if whole.any():
        text = pc.if_else(pa.array(whole), pc.binary_join_element_wise(text, ".0", ""), text)
    if python.any():
        text = pc.replace_with_mask(text, pa.array(python),
                                    pa.array([repr(v) for v in values[python].tolist()], pa.string()))
    if nan.any():
        text = pc.if_else(pa.array(nan), "", text)
    return text


def strip(cells: pa.Array) -> pa.Array:
    """The cells without the spaces around them, as Python's str.strip() leaves them."""
    return pc.utf8_trim(cells, characters=WHITESPACE)


def examples(path: str, names: List[str], delimiter: str, encoding: str, label: str, types: Dict[str, str],
             to_example: Callable[[Dict[str, str]], bytes], fmt: str = "csv") -> Iterator[List[bytes]]:
    """Each batch's serialized examples, in the file's order, rows without a label left out.

    `to_example` serializes one row's cells the Python way (for a batch this path cannot type)."""
    numbers = {n for n, kind in types.items() if kind == FLOAT and n != label}
    for batch in batches(path, names, delimiter, encoding, fmt, numbers):
        try:
            yield batch_examples(batch, types, label)
        except Unsupported:
            rows = pa.RecordBatch.from_arrays([_float_cells(c) if pa.types.is_floating(c.type) else c
                                               for c in batch.columns], names=batch.schema.names).to_pylist()
            yield [to_example(r) for r in rows if not label or r[label].strip()]


def batch_examples(batch: pa.RecordBatch, types: Dict[str, str], label: str = "") -> List[bytes]:
    """A record batch of cells (strings, or float64 values of a float column) -> one serialized tf.Example
    per row with a label."""
    columns = {name: c if pa.types.is_floating(c.type) else strip(c) for name, c in zip(batch.schema.names,
                                                                                       batch.columns)}
    if label:
        keep = pc.not_equal(columns[label], "")
        columns = {name: pc.filter(c, keep) for name, c in columns.items()}
    entries = [_entries(name, columns[name], types[name]) for name in sorted(columns, key=lambda n: n.encode())]
    if not entries:
        return []
    features = pc.binary_join_element_wise(*entries, _EMPTY, null_handling="skip")
    return _wrap(FEATURES_TAG, features).to_pylist()


def _entries(name: str, cells: pa.Array, kind: str) -> pa.Array:
    """One column's map entries (`feature { key: name value {...} }`, tagged), null where the cell is left out."""
    if pa.types.is_floating(cells.type):  # a float column's own values (`batches`' numbers)
        values = cells.to_numpy(zero_copy_only=False)  # a null is NaN: a blank cell
        present = np.isfinite(values)  # an infinity is missing, as `parse_number` reads 'inf'
        payload = _fixed(np.where(present, values, 0.0).astype("<f4").tobytes(), 4, len(cells))
    else:
        present = pc.not_equal(cells, "")
        if kind != BYTES:
            present = pc.and_(present, pc.invert(pc.is_in(pc.utf8_lower(cells), value_set=pa.array(
                sorted(NUMERIC_MISSING_TOKENS)))))
        present = present.to_numpy(zero_copy_only=False)
        if kind == BYTES:
            payload = cells.cast(pa.binary())
        elif kind == FLOAT:
            payload = _fixed(_floats(cells, present).astype("<f4").tobytes(), 4, len(cells))
        else:
            payload = _varints(_integers(cells, present))
    payload = pc.if_else(pa.array(present), payload, pa.scalar(None, pa.binary()))
    key = name.encode("utf-8")
    value = _wrap(VALUE_TAG, _wrap(KIND_TAGS[kind], _wrap(VALUES_TAG, payload)))
    body = pc.binary_join_element_wise(pa.scalar(KEY_TAG + _varint(len(key)) + key, pa.binary()), value, _EMPTY)
    return _wrap(ENTRY_TAG, body)


def _floats(cells: pa.Array, present: np.ndarray) -> np.ndarray:
    """float64 values of the present cells (0 elsewhere), as `parse_number` reads them."""
    values = np.zeros(len(cells))
    plain = present & pc.match_substring_regex(cells, PLAIN_NUMBER.pattern).to_numpy(zero_copy_only=False)
    if plain.any():
        text = pc.replace_substring_regex(pc.filter(cells, pa.array(plain)), r"^\+", "")
        try:
            values[plain] = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            raise Unsupported() from None
    for i in np.flatnonzero(present & ~plain):  # '$1,234.50', '12%', digits of another script
        value = parse_number(cells[int(i)].as_py())
        if value is None:
            raise Unsupported()
        values[i] = value
    return values


def _integers(cells: pa.Array, present: np.ndarray) -> np.ndarray:
    values = np.zeros(len(cells), np.int64)
    if present.any():
        text = pc.filter(cells, pa.array(present))
        if not pc.all(pc.match_substring_regex(text, INTEGER.pattern)).as_py():
            raise Unsupported()
        try:
            values[present] = pc.cast(pc.replace_substring_regex(text, r"^\+", ""), pa.int64()).to_numpy()
        except pa.ArrowInvalid:  # past int64: Int64List refuses it on the Python path too
            raise Unsupported() from None
    return values


def _fixed(data: bytes, width: int, n: int) -> pa.Array:
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _varints(values: np.ndarray) -> pa.Array:
    """Each value's protobuf varint (negative int64 as ten bytes, as protobuf writes them)."""
    rest = values.astype(np.int64).view(np.uint64).copy()
    n = len(rest)
    out = np.zeros((n, 10), np.uint8)
    lengths = np.ones(n, np.int64)
    for i in range(10):
        out[:, i] = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
        more = rest > 0
        if not more.any():
            break
        out[more, i] |= 0x80
        lengths += more
    data = out[np.arange(10) < lengths[:, None]]
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())])


def _wrap(tag: bytes, values: pa.Array) -> pa.Array:
    """tag + varint(length) + value, for each value: a length-delimited protobuf field; null stays null."""
    lengths = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    return pc.binary_join_element_wise(pa.scalar(tag, pa.binary()), _varints(lengths), values, _EMPTY)
