"""A user's file as rows, and rows as what a model takes: one home for `lamina predict`, `lamina explain`,
the TFLite path and the clients.

A row is a dict of feature name -> raw value, as the user's file has it. `read_rows` reads CSV, JSON
(an array of objects), JSON Lines, Parquet and TFRecord (the format from the file's ending, by
`lamina.constants.table_format_of`), through the same row sources and cell grammar as ingestion
(`lamina.tables`, `lamina.cells`): a row sent to a model is read as its training rows were read.
`row_to_example` and `rows_to_tensors` make the tf.Example or the `serving_raw` tensors of a row,
as TF Serving's clients send them.
"""

import csv
import io
import json
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from lamina.cells import (SNIFF_BYTES, CsvInputError, clean_header, is_missing_number, parse_number, parse_sequence,
                          sniff_delimiter)
from lamina.constants import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, table_format_of
from lamina.tables import ROW_SOURCES, TableOptions


class RowError(ValueError):
    """A row cannot be sent: names the row number and the feature."""


def read_rows(path: str, text: Optional[str] = None) -> List[Dict[str, object]]:
    """Rows from a CSV file (header row), a JSON array of objects, JSON Lines, Parquet or TFRecord
    (tf.Examples, gzipped or not); `text` holds the file's text when it comes from stdin ('-').

    Raises RowError naming the file and the line, row or record that cannot be read.
    """
    fmt = table_format_of(path) if text is None else "csv"
    if fmt in ("parquet", "tfrecord"):
        return _read_table(path, fmt)
    if text is None:
        with open(path, encoding="utf-8-sig") as f:  # a spreadsheet's byte-order mark is not a column name
            text = f.read()
    text = text.lstrip("\ufeff")
    stripped = text.lstrip()
    if path.endswith((".json", ".jsonl")) or stripped.startswith(("{", "[")):
        if stripped.startswith("["):
            rows = json.loads(text)
        else:
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise RowError(f"{path}: line {n} is not valid JSON: {e.msg}") from None
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise RowError(f"{path}: row {n} is not an object of feature names to values.")
        # Keys are column names, stripped as ingestion strips a header's (`" Age "` trained as `Age`).
        return [{k.strip(): v for k, v in row.items()} for row in rows]
    # The same dialect and header rules as ingestion: a sniffed delimiter, names stripped.
    delimiter = sniff_delimiter(text[:SNIFF_BYTES])
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = clean_header(path, next(reader, []))
    return [dict(zip(header, r)) for r in reader if r]


def _read_table(path: str, fmt: str) -> List[Dict[str, object]]:
    """A Parquet or TFRecord file's rows, cells as ingestion reads them (a list: a sequence's values)."""
    source = ROW_SOURCES[fmt]
    try:
        dialect, names = source.header(path, TableOptions())
        rows = []
        for number, cells, problem in source.rows(path, dialect, names, "utf-8"):
            if cells is None:
                raise RowError(f"{path}: {source.unit} {number} cannot be read: {problem}.")
            rows.append(dict(zip(names, cells)))
    except CsvInputError as e:
        raise RowError(str(e)) from None
    return rows


def _to_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def is_image_path(path: str) -> bool:
    return path.lower().endswith(tuple(IMAGE_EXTENSIONS))


def is_audio_path(path: str) -> bool:
    return path.lower().endswith(tuple(AUDIO_EXTENSIONS))


def read_image_rows(paths: Sequence[str], inputs: Dict[str, int]) -> List[Dict[str, object]]:
    """One row per image or audio file: its bytes under the model's one string input (an image or audio
    model's). FLAC and Ogg files are sent as WAV (the served model decodes WAV), turned by soundfile."""
    from lamina.audio_headers import to_wav

    strings = [k for k, v in inputs.items() if v == tf.string.as_datatype_enum]
    if len(strings) != 1 or len(inputs) != 1:
        raise RowError(f"image and audio files need a model with one image or audio input; this one takes "
                       f"{', '.join(f'{k} ({tf.dtypes.as_dtype(v).name})' for k, v in inputs.items())}.")
    rows = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        if is_audio_path(path):
            try:
                data = to_wav(data, path)
            except ValueError as e:
                raise RowError(str(e)) from None
        rows.append({strings[0]: data})
    return rows


def read_image_cells(rows: List[Dict[str, object]], base_dir: str, inputs: Dict[str, int]) -> List[Dict[str, object]]:
    """Rows whose string cells naming an image or audio file (.png, .jpg, .wav, .ogg, ...; relative to
    `base_dir`, the rows file's folder) hold that file's bytes instead (audio as WAV): a multimodal
    model's image and audio inputs, from a CSV.

    A cell that looks like such a path (one word ending in an image extension) whose file is missing
    raises RowError naming the row, the feature and where it looked.
    """
    strings = [k for k, v in inputs.items() if v == tf.string.as_datatype_enum]
    out = []
    for n, row in enumerate(rows, 1):
        row = dict(row)
        for name in strings:
            value = row.get(name)
            if not isinstance(value, str) or not (is_image_path(value.strip()) or is_audio_path(value.strip())):
                continue
            path = os.path.join(base_dir, os.path.expanduser(value.strip()))
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    row[name] = f.read()
                if is_audio_path(path):
                    from lamina.audio_headers import to_wav

                    try:
                        row[name] = to_wav(row[name], path)
                    except ValueError as e:
                        raise RowError(f"row {n}: feature {name!r}: {e}") from None
            elif not any(c.isspace() for c in value.strip()):
                raise RowError(f"row {n}: feature {name!r} names the file {value.strip()!r}, and there is no "
                               f"{path}; image and audio paths are relative to the rows file's folder.")
        out.append(row)
    return out


def read_text_rows(texts: Sequence[str], inputs: Dict[str, int], feature: Optional[str] = None
                   ) -> List[Dict[str, object]]:
    """One row per string, under `feature` or else the model's one string input (a text model's)."""
    strings = [k for k, v in inputs.items() if v == tf.string.as_datatype_enum]
    if feature is None:
        if len(strings) != 1:
            raise RowError(f"texts need a model with one string input, or --feature NAME; this one takes "
                           f"{', '.join(f'{k} ({tf.dtypes.as_dtype(v).name})' for k, v in inputs.items())}.")
        feature = strings[0]
    elif feature not in strings:
        raise RowError(f"--feature {feature!r} is not a string input of the model; its string inputs: "
                       f"{', '.join(strings) or 'none'}.")
    return [{feature: t} for t in texts]


def is_missing(value) -> bool:
    """None, NaN or a blank string: a value the row does not have."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value))


def _missing_number(value) -> bool:
    """Missing, or a cell such as 'NA', 'n/a' or '-' in a number column (as ingestion reads it)."""
    return is_missing(value) or (isinstance(value, str) and is_missing_number(value))


def _number(value) -> float:
    """A cell as ingestion reads it (`$1,234.50`, `12%`); ValueError when it is not a number."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    number = parse_number(str(value))
    if number is None:
        raise ValueError(value)
    return number


def _integer(value) -> int:
    """An integer, never a truncated float: 2.9 is an error, not 2."""
    number = _number(value)
    if not float(number).is_integer():
        raise ValueError(value)
    return int(number)


def sequence_values(value) -> Optional[List[float]]:
    """A sequence feature's values from a list, or from a cell such as "1.5 2 3" or "[1.5, 2, 3]" (as
    ingestion reads it); None when `value` is one number or missing. Missing values become NaN.

    Raises ValueError when a value is not a number.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [float("nan") if _missing_number(v) else _number(v) for v in value]
    if isinstance(value, str) and not _missing_number(value) and parse_number(value) is None:
        return parse_sequence(value)
    return None


def rows_to_tensors(rows: Sequence[Dict[str, object]], inputs: Dict[str, int],
                    sequences: Sequence[str] = ()) -> Dict[str, tf.Tensor]:
    """Columns for a raw signature. `inputs`: name -> DataType enum. Missing values: NaN or ''.

    A sequence feature (named in `sequences`, or any float column with a list in it) becomes
    [rows, longest] float32, each row's values followed by NaN.
    """
    columns: Dict[str, list] = {name: [] for name in inputs}
    lists = set(sequences)
    for n, row in enumerate(rows, 1):
        for name, dtype in inputs.items():
            value = row.get(name)
            try:
                if dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum):
                    values = sequence_values(value)
                    if values is not None or name in lists:
                        lists.add(name)
                        columns[name].append(values if values is not None else
                                             [] if _missing_number(value) else [_number(value)])
                        continue
                    columns[name].append(float("nan") if _missing_number(value) else _number(value))
                elif dtype in (tf.int64.as_datatype_enum, tf.int32.as_datatype_enum):
                    if is_missing(value):
                        raise RowError(f"row {n}: feature {name!r} is missing; serving_raw takes no missing "
                                       "integers (send the row as a tf.Example instead: predict or classify).")
                    columns[name].append(_integer(value))
                else:
                    columns[name].append(b"" if is_missing(value) else _to_bytes(value))
            except (TypeError, ValueError) as e:
                if isinstance(e, RowError):
                    raise
                raise RowError(f"row {n}: feature {name!r} has value {value!r}, which is not a "
                               f"{tf.dtypes.as_dtype(dtype).name}" + (f" ({e})" if str(e).startswith("value") else "")
                               + ".") from None
    out = {}
    for name, values in columns.items():
        if name in lists:
            values = [v if isinstance(v, list) else [v] for v in values]
            width = max([len(v) for v in values] + [1])
            values = [v + [float("nan")] * (width - len(v)) for v in values]
        out[name] = tf.constant(values, dtype=tf.dtypes.as_dtype(inputs[name]))
    return out


def row_to_example(row: Dict[str, object], inputs: Dict[str, int], n: int = 1) -> tf.train.Example:
    """A tf.Example for Classify; missing values are left out (the model imputes them)."""
    example = tf.train.Example()
    for name, dtype in inputs.items():
        value = row.get(name)
        numeric = dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum)
        if _missing_number(value) if numeric else is_missing(value):
            continue
        feature = example.features.feature[name]
        try:
            if dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum):
                values = sequence_values(value)
                feature.float_list.value.extend(values if values is not None else [_number(value)])
            elif dtype in (tf.int64.as_datatype_enum, tf.int32.as_datatype_enum):
                feature.int64_list.value.append(_integer(value))
            else:
                feature.bytes_list.value.append(_to_bytes(value))
        except (TypeError, ValueError) as e:
            raise RowError(f"row {n}: feature {name!r} has value {value!r}, which is not a "
                           f"{tf.dtypes.as_dtype(dtype).name}" + (f" ({e})" if str(e).startswith("value") else "")
                           + ".") from None
    return example
