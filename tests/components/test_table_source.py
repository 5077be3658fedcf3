"""Reading users' CSVs as they are: dialects, encodings, headers, bad rows, labels, numbers, dates."""

import pytest

from lamina.cells import CsvInputError, date_layout, parse_number, sniff_delimiter
from lamina.components.table_source import TablePolicy, iter_records, scan_table


def _write(tmp_path, content, name="data.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_delimiter_is_sniffed(tmp_path, delimiter):
    text = delimiter.join(["a", "b c", "d"]) + "\n" + delimiter.join(["1", '"x, y; z | w"', "3"]) + "\n"
    scan = scan_table(_write(tmp_path, text), TablePolicy())
    assert scan.delimiter == delimiter
    assert scan.names == ["a", "b c", "d"]
    assert [r for _, r in iter_records(scan.path, scan.names, dialect=delimiter)] == [
        {"a": "1", "b c": "x, y; z | w", "d": "3"}]


def test_a_set_delimiter_wins_over_sniffing(tmp_path):
    path = _write(tmp_path, "a;b,c\n1;2,3\n")
    assert scan_table(path, TablePolicy(delimiter=",")).names == ["a;b", "c"]
    assert scan_table(path, TablePolicy(delimiter=";")).names == ["a", "b,c"]


def test_bom_crlf_quotes_and_embedded_newlines(tmp_path):
    content = b"\xef\xbb\xbfcustomer_id;notes;spend\r\n1;\"two\r\nlines; and \"\"quotes\"\"\";$1,234.50\r\n2;plain;12%\r\n"
    scan = scan_table(_write(tmp_path, content), TablePolicy())
    assert scan.names == ["customer_id", "notes", "spend"]  # no '\ufeff' in the first name
    records = list(iter_records(scan.path, scan.names, dialect=scan.delimiter))
    assert records == [(2, {"customer_id": "1", "notes": 'two\r\nlines; and "quotes"', "spend": "$1,234.50"}),
                       (4, {"customer_id": "2", "notes": "plain", "spend": "12%"})]
    assert scan.rows == 2 and scan.column("spend").all_numbers


def test_any_header_works_and_a_blank_one_is_named_by_its_position(tmp_path):
    scan = scan_table(_write(tmp_path, "monthly spend,Preis (€),Größe,,2nd_choice\n1,2,3,4,5\n"), TablePolicy())
    assert scan.names == ["monthly spend", "Preis (€)", "Größe", "column_4", "2nd_choice"]


def test_latin1_bytes_stop_with_the_line_and_byte_offset(tmp_path):
    path = _write(tmp_path, "name,city\nAnna,Berlin\nJosé,Zürich\n".encode("latin-1"))
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy())
    assert str(e.value) == (f"{path}: not valid utf-8 at line 3, byte offset 25 (bytes b'\\xe9,Z\\xfc'). Set "
                            f"data.encoding to the file's encoding (for example 'latin-1' or 'cp1252'), or save the "
                            f"file as UTF-8.")
    scan = scan_table(path, TablePolicy(encoding="latin-1"))
    assert sorted(scan.column("name").distinct) == ["Anna", "José"]


def test_a_bad_byte_after_the_first_megabyte_is_placed_exactly(tmp_path):
    body = "x,y\n" + "".join(f"{i},é\n" for i in range(300_000))  # > 1 MiB, multi-byte characters throughout
    data = body.encode("utf-8") + b"1,\xff\n"
    path = _write(tmp_path, data)
    with pytest.raises(CsvInputError, match=rf"at line 300002, byte offset {len(data) - 2} \(bytes b'\\xff\\n'\)"):
        scan_table(path, TablePolicy())


def test_a_repeated_column_name_names_both_positions(tmp_path):
    path = _write(tmp_path, "island,bill_length_mm,year,bill_length_mm\nBiscoe,40,2007,41\n")
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy())
    assert str(e.value) == (f"{path}: column name 'bill_length_mm' appears twice in the header, at columns 2 and 4; "
                            f"rename one of them (each column must have its own name).")


def test_empty_and_header_only_files(tmp_path):
    empty = _write(tmp_path, "", "empty.csv")
    with pytest.raises(CsvInputError) as e:
        scan_table(empty, TablePolicy())
    assert str(e.value) == f"no data rows in {empty}: the file is empty."
    header = _write(tmp_path, "a,b,label\n", "header.csv")
    with pytest.raises(CsvInputError) as e:
        scan_table(header, TablePolicy(label="label"))
    assert str(e.value) == f"no data rows in {header}: the file has only a header (3 column(s): 'a', 'b', 'label')."


def test_a_row_with_a_field_too_many_names_its_line(tmp_path):
    path = _write(tmp_path, 'a,b,label\n1,2,x\n"multi\nline",2,y\n3,4,z,EXTRA\n5,6,x\n')
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy(label="label"))
    assert str(e.value) == (f"{path}: 1 row(s) do not match the header's 3 columns: line 5: 4 fields, the header "
                            f"has 3. Fix them, or set data.bad_rows: skip to leave such rows out.")
    scan = scan_table(path, TablePolicy(label="label", bad_rows="skip", max_bad_rows=0.5))
    assert (scan.rows, scan.bad_row_count, scan.kept_rows) == (4, 1, 3)
    assert [line for line, _ in iter_records(path, scan.names, "label")] == [2, 3, 6]
    with pytest.raises(CsvInputError, match=r"1 of 4 rows \(25.0%\) do not match the header, more than "
                                            r"data.max_bad_rows 10.0%: line 5: 4 fields, the header has 3."):
        scan_table(path, TablePolicy(label="label", bad_rows="skip", max_bad_rows=0.1))


def test_rows_without_a_label_are_counted_and_bounded(tmp_path):
    rows = "".join(f"{i},{'' if i % 5 == 0 else 'yes'}\n" for i in range(100))
    path = _write(tmp_path, "x,churned\n" + rows)
    scan = scan_table(path, TablePolicy(label="churned"))
    assert (scan.rows, scan.missing_label, scan.kept_rows) == (100, 20, 80)
    assert all(r["churned"] == "yes" for _, r in iter_records(path, scan.names, "churned"))
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy(label="churned", max_missing_labels=0.1))
    assert str(e.value) == (f"{path}: 20 of 100 rows (20.0%) have no label in column 'churned', more than "
                            f"data.max_missing_labels 10.0%.")


def test_a_label_the_header_lacks_suggests_the_nearest(tmp_path):
    path = _write(tmp_path, "Churned,x\nyes,1\n")
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy(label="churned"))
    assert str(e.value) == (f"{path}: no column 'churned' (data.label) in the header; the columns are 'Churned', 'x'. "
                            f"Did you mean 'Churned'?")


def test_a_nul_byte_is_an_error_with_its_line(tmp_path):
    path = _write(tmp_path, b"a,b\n1,2\n3,\x004\n")
    with pytest.raises(CsvInputError, match=r"data.csv, line 3: cannot be read as CSV: line contains NUL"):
        scan_table(path, TablePolicy())


@pytest.mark.parametrize("cell, value", [
    ("12", 12.0), (" -3.5 ", -3.5), ("1e3", 1000.0), (".5", 0.5), ("1,234", 1234.0), ("$1,234.50", 1234.5),
    ("-$3", -3.0), ("$-3", -3.0), ("4.90 €", 4.9), ("£7", 7.0), ("12%", 0.12), ("12 %", 0.12),
    ("", None), ("n/a", None), ("NA", None), ("-", None), ("inf", None), ("1_000", None), ("3,5", None),
    ("12,34,5", None), ("abc", None), ("1.234,5 €", None),
])
def test_parse_number(cell, value):
    assert parse_number(cell) == (pytest.approx(value) if value is not None else None)


@pytest.mark.parametrize("cell, layout", [
    ("2024-01-31", "%Y-%m-%d"), ("2024/01/31", "%Y/%m/%d"), ("2024-01-31T12:30:00Z", "%Y-%m-%d"),
    ("2024-01-31 12:30", "%Y-%m-%d"), ("31/01/2024", "%d/%m/%Y"), ("01/31/2024", "%m/%d/%Y"),
    ("31.12.2023 10:00", "%d.%m.%Y"), ("2024-13-01", None), ("12345678", None), ("2024-01-31 lunch", None),
])
def test_date_layout(cell, layout):
    assert date_layout(cell) == layout


def test_sniffing_a_single_column_reads_commas():
    assert sniff_delimiter("only\n1\n2\n") == ","


# -- JSON Lines, Parquet, TFRecord: the same cells, checks and messages ----------------------------


def test_json_lines_read_as_cells_with_every_key_seen(tmp_path):
    path = _write(tmp_path, '{"species": "Adelie", "mass": 3750, "ok": true}\n\n'
                            '{"species": "Gentoo", "mass": 4500.5, "island": "Biscoe", "ok": null}\n', "d.jsonl")
    scan = scan_table(path, TablePolicy(format="jsonl", label="species"))
    assert scan.names == ["species", "mass", "ok", "island"] and scan.rows == 2
    assert [r for _, r in iter_records(path, scan.names, "species", "jsonl")] == [
        {"species": "Adelie", "mass": "3750", "ok": "true", "island": ""},
        {"species": "Gentoo", "mass": "4500.5", "ok": "", "island": "Biscoe"}]
    assert scan.column("mass").all_numbers


def test_bad_json_lines_name_the_line_and_the_problem(tmp_path):
    path = _write(tmp_path, '{"y": "a", "x": 1}\n{"y": "b", "x": [[1, 2]]}\n{"y": "c", "x": 3\n[1, 2]\n'
                            '{"y": "d", "x": 1, "x": 2}\n', "d.jsonl")
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy(format="jsonl", label="y"))
    assert str(e.value) == (
        f"{path}: 4 row(s) cannot be read: line 2: 'x' holds a list of lists or objects; expected a number, a "
        f"string, true/false, null, or a list of numbers (a sequence); line 3: not valid JSON: Expecting ',' delimiter at column 18; line 4: a JSON list, not an object of "
        f"column names to values; line 5: key 'x' appears twice in the object. Fix them, or set data.bad_rows: skip "
        f"to leave such rows out.")


def test_parquet_columns_read_as_cells(tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"species": ["Adelie", "Gentoo", None], "mass": [3750, 4500, None],
                             "seen": [datetime.date(2024, 1, 31), datetime.date(2024, 2, 1), None]}), path)
    scan = scan_table(path, TablePolicy(format="parquet", label="species"))
    assert scan.names == ["species", "mass", "seen"] and (scan.rows, scan.missing_label) == (3, 1)
    assert [r for _, r in iter_records(path, scan.names, "species", "parquet")] == [
        {"species": "Adelie", "mass": "3750", "seen": "2024-01-31"},
        {"species": "Gentoo", "mass": "4500", "seen": "2024-02-01"}]
    assert scan.column("seen").dates == {"%Y-%m-%d": 2}


def test_parquet_struct_columns_and_other_files_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"y": ["a"], "where": [{"x": 1, "y": 2}]}), path)
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy(format="parquet", label="y"))
    assert str(e.value) == (f"{path}: column 'where' (struct<x: int64, y: int64>) holds structs or nested lists; "
                            f"expected numbers, strings, booleans, dates, or lists of numbers (sequence features).")
    not_parquet = _write(tmp_path, "y,x\n1,2\n", "e.parquet")
    with pytest.raises(CsvInputError, match=r"e.parquet: not a Parquet file: "):
        scan_table(not_parquet, TablePolicy(format="parquet"))


def _write_examples(path, examples, gzip=False):
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    with tf.io.TFRecordWriter(path, options) as w:
        for e in examples:
            w.write(e if isinstance(e, bytes) else e.SerializeToString())


def _example(**features):
    import tensorflow as tf

    f = {}
    for k, v in features.items():
        vs = v if isinstance(v, list) else [v]
        if isinstance(vs[0], bytes):
            f[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=vs))
        elif isinstance(vs[0], int):
            f[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=vs))
        else:
            f[k] = tf.train.Feature(float_list=tf.train.FloatList(value=vs))
    return tf.train.Example(features=tf.train.Features(feature=f))


@pytest.mark.parametrize("gzip", [False, True])
def test_tfrecords_of_examples_read_as_cells(tmp_path, gzip):
    path = str(tmp_path / "d.tfrecord")
    _write_examples(path, [_example(y=b"Adelie", mass=3750, bill=39.5),
                           _example(y=b"Gentoo", mass=4500, bill=46.5, island="Biscoe".encode())], gzip)
    scan = scan_table(path, TablePolicy(format="tfrecord", label="y"))
    assert scan.names == ["bill", "mass", "y", "island"]
    assert [r for _, r in iter_records(path, scan.names, "y", "tfrecord")] == [
        {"bill": "39.5", "mass": "3750", "y": "Adelie", "island": ""},
        {"bill": "46.5", "mass": "4500", "y": "Gentoo", "island": "Biscoe"}]


def test_bad_tfrecords_name_the_record(tmp_path):
    path = str(tmp_path / "d.tfrecord")
    _write_examples(path, [_example(y=b"a", x=1), _example(y=b"b", x=[1, 2]), b"\xff\xfe not a proto"])
    with pytest.raises(CsvInputError) as e:
        scan_table(path, TablePolicy(format="tfrecord", label="y"))
    assert str(e.value) == (f"{path}: 1 row(s) cannot be read: record 3: not a serialized tf.Example. Fix them, or "
                            f"set data.bad_rows: skip to leave such rows out.")
    # Record 2's two values are a list: a sequence feature's, or refused by name (tests/components/test_sequences_ingest.py).
    data = open(path, "rb").read()
    cut = str(tmp_path / "cut.tfrecord")
    open(cut, "wb").write(data[: len(data) - 5])
    with pytest.raises(CsvInputError, match=r"cut.tfrecord: record 3 is corrupt or cut off: "):
        scan_table(cut, TablePolicy(format="tfrecord", label="y", bad_rows="skip", max_bad_rows=1.0))
