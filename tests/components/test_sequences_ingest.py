"""Sequence features at ingestion: cells of delimited numbers, lists in JSON Lines, Parquet and
TFRecord, the float lists ExampleGen writes, and the errors that name the file, row and feature."""

import json
import math

import pytest
import tensorflow as tf

from lamina.cells import LIST_SEPARATOR, parse_sequence
from lamina.components.table_example_gen import record_to_example, wire_types
from lamina.components.table_source import CsvInputError, TablePolicy, iter_records, scan_table

SEQUENCES = (("log", ""),)


@pytest.mark.parametrize("cell, delimiter, expected", [
    ("21.5 22 22.5", None, [21.5, 22.0, 22.5]),
    ("[1.5, 2, 3]", None, [1.5, 2.0, 3.0]),
    ("1|2 | 3", None, [1.0, 2.0, 3.0]),
    ("1;NA;3", ";", [1.0, math.nan, 3.0]),
    ("1;;3", ";", [1.0, math.nan, 3.0]),       # an empty place between delimiters: a missing reading
    ("$1,200;12%", ";", [1200.0, 0.12]),       # spreadsheet spellings of numbers, with a ';' delimiter
    ("", None, []),
    ("  ", ";", []),
    (f"4{LIST_SEPARATOR}", None, [4.0]),     # a one-value list from JSON Lines
])
def test_parse_sequence(cell, delimiter, expected):
    got = parse_sequence(cell, delimiter)
    assert len(got) == len(expected)
    assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got, expected))


def test_a_csv_with_sequence_cells_becomes_float_lists(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("\ufeffMachine ID,log,status\nM-1,21.5;22;NA,ok\nM-2,,fault\nM-3,30,ok\n", encoding="utf-8")
    policy = TablePolicy(label="status", sequences=(("log", ";"),))
    scan = scan_table(str(path), policy)
    types = wire_types([scan], {"log": "sequence"}, "status", "classification", ["Machine ID"])
    assert types == {"Machine ID": "bytes", "log": "floats", "status": "bytes"}
    examples = [record_to_example(r, types, {"log": ";"})
                for _, r in iter_records(str(path), scan.names, "status", sequences=policy.sequences)]
    logs = [list(e.features.feature["log"].float_list.value) if "log" in e.features.feature else None
            for e in examples]
    assert logs[0][:2] == [21.5, 22.0] and math.isnan(logs[0][2])
    assert logs[1:] == [None, [30.0]]  # a blank cell is an empty sequence: no values


def test_a_value_that_is_not_a_number_names_the_file_line_and_feature(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("log,status\n1;2;3,ok\n4;5;6,ok\n4;x5;6,fault\n", encoding="utf-8")
    with pytest.raises(CsvInputError) as info:
        scan_table(str(path), TablePolicy(label="status", sequences=(("log", ";"),)))
    assert str(info.value) == (
        f"{path}: 1 row(s) cannot be read: line 4: sequence feature 'log': value 2, 'x5', is not "
        f"a number in '4;x5;6'; expected numbers separated by ';'. Fix them, or set data.bad_rows: skip to leave "
        f"such rows out.")
    # With bad_rows: skip, the row is left out by the scan and by the rows ExampleGen reads alike.
    policy = TablePolicy(label="status", sequences=(("log", ";"),), bad_rows="skip", max_bad_rows=0.5)
    scan = scan_table(str(path), policy)
    assert (scan.rows, scan.bad_row_count) == (3, 1)
    assert [r["log"] for _, r in iter_records(str(path), scan.names, "status", sequences=policy.sequences)] == [
        "1;2;3", "4;5;6"]


def test_lists_in_json_lines_parquet_and_tfrecord_are_sequences(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"log": [1.5, 2.0, None], "y": "a"}, {"log": [7], "y": "b"}, {"log": [], "y": "a"}]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    parquet = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"log": [r["log"] for r in rows], "y": [r["y"] for r in rows]}), parquet)
    tfrecord = str(tmp_path / "d.tfrecord")
    with tf.io.TFRecordWriter(tfrecord) as w:
        for r in rows:
            e = tf.train.Example()
            e.features.feature["log"].float_list.value.extend(float("nan") if v is None else v for v in r["log"])
            e.features.feature["y"].bytes_list.value.append(r["y"].encode())
            w.write(e.SerializeToString())
    for fmt, path in (("jsonl", str(jsonl)), ("parquet", parquet), ("tfrecord", tfrecord)):
        policy = TablePolicy(format=fmt, label="y", sequences=SEQUENCES)
        scan = scan_table(path, policy)
        # A tf.Example cannot tell one value from a list of one, nor an empty list from none.
        assert scan.column("log").lists == (1 if fmt == "tfrecord" else 3), fmt
        types = wire_types([scan], {"log": "sequence"}, "y", "classification", [])
        logs = [list(record_to_example(r, types).features.feature["log"].float_list.value)
                for _, r in iter_records(path, scan.names, "y", fmt, sequences=SEQUENCES)]
        assert logs[0][:2] == [1.5, 2.0] and math.isnan(logs[0][2]), fmt
        assert logs[1:] == [[7.0], []], fmt


def test_a_list_column_not_declared_a_sequence_is_refused_by_name(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"y": "a", "log": 1}\n{"y": "b", "log": [1, 2]}\n')
    scan = scan_table(str(path), TablePolicy(format="jsonl", label="y"))
    with pytest.raises(CsvInputError) as info:
        wire_types([scan], {"log": "numeric"}, "y", "classification", [])
    assert str(info.value) == (f"{path}, row 2: column 'log' holds a list of values; declare it a sequence feature "
                               f"({{name: 'log', type: sequence}} in data.features) or leave it out (data.exclude).")
