"""lamina.rows: a user's file as rows, in every format `lamina predict` reads, and the same tf.Examples from each."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from lamina.rows import RowError, read_rows, row_to_example

RECORDS = [{"Island": "Biscoe", "Bill (mm)": 45.1, "Year": 2008, "Log": [1.5, 2.0, 3.0]},
           {"Island": "Dream", "Bill (mm)": None, "Year": 2009, "Log": [4.0]}]
INPUTS = {"Island": tf.string.as_datatype_enum, "Bill (mm)": tf.float32.as_datatype_enum,
          "Year": tf.int64.as_datatype_enum, "Log": tf.float32.as_datatype_enum}


def _write_all(folder):
    (folder / "rows.csv").write_text("\ufeffIsland,Bill (mm),Year,Log\nBiscoe,45.1,2008,1.5;2;3\nDream,NA,2009,4\n",
                                     encoding="utf-8")
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (folder / "rows.json").write_text(json.dumps(RECORDS))
    pq.write_table(pa.Table.from_pylist(RECORDS), str(folder / "rows.parquet"))
    with tf.io.TFRecordWriter(str(folder / "rows.tfrecords.gz"), options="GZIP") as writer:
        for r in RECORDS:
            example = tf.train.Example()
            feature = example.features.feature
            feature["Island"].bytes_list.value.append(r["Island"].encode())
            if r["Bill (mm)"] is not None:
                feature["Bill (mm)"].float_list.value.append(r["Bill (mm)"])
            feature["Year"].int64_list.value.append(r["Year"])
            feature["Log"].float_list.value.extend(r["Log"])
            writer.write(example.SerializeToString())


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.parquet", "rows.tfrecords.gz"])
def test_every_format_gives_the_csvs_examples(tmp_path, name):
    _write_all(tmp_path)
    expected = [row_to_example(r, INPUTS, n) for n, r in enumerate(read_rows(str(tmp_path / "rows.csv")), 1)]
    assert [list(e.features.feature["Log"].float_list.value) for e in expected] == [[1.5, 2.0, 3.0], [4.0]]
    assert "Bill (mm)" not in expected[1].features.feature  # 'NA' is missing: left out, as ingestion leaves it
    got = [row_to_example(r, INPUTS, n) for n, r in enumerate(read_rows(str(tmp_path / name)), 1)]
    for e, g in zip(expected, got):  # float32 values: 45.1 read from text and from a double agree
        assert {k: v for k, v in g.features.feature.items()} == {k: v for k, v in e.features.feature.items()}
    assert len(got) == len(expected)


def test_a_bad_record_names_the_file_and_the_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(RowError) as info:
        read_rows(str(path))
    assert str(info.value).startswith(f"{path}: line 2 is not valid JSON")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(RowError) as info:
        read_rows(str(broken))
    assert str(info.value).startswith(f"{broken}: not a Parquet file")


def test_json_keys_are_stripped_as_ingestion_strips_them(tmp_path):
    """A pandas export of a spreadsheet with ' Island ' in its header trains a column 'Island': predict reads it so."""
    _write_all(tmp_path)
    spaced = [{f" {k} " if k != "Log" else k: v for k, v in r.items()} for r in RECORDS]
    (tmp_path / "spaced.jsonl").write_text("".join(json.dumps(r) + "\n" for r in spaced))
    expected = [row_to_example(r, INPUTS, n) for n, r in enumerate(read_rows(str(tmp_path / "rows.csv")), 1)]
    got = [row_to_example(r, INPUTS, n) for n, r in enumerate(read_rows(str(tmp_path / "spaced.jsonl")), 1)]
    assert sorted(read_rows(str(tmp_path / "spaced.jsonl"))[0]) == ["Bill (mm)", "Island", "Log", "Year"]
    assert [dict(e.features.feature) for e in got] == [dict(e.features.feature) for e in expected]
