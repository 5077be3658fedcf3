"""Lamina's TableExampleGen: the wire types it picks, and real runs through TFX on Beam."""

import os

import pytest
import tensorflow as tf

from lamina.components.table_example_gen import TableExampleGen, read_report, record_to_example, wire_types
from lamina.components.table_source import CsvInputError, TablePolicy, scan_table
from tests.messy import LABEL, write_messy_csv


def _scan(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_text(text)
    return scan_table(str(path), TablePolicy())


def test_wire_types_follow_the_declarations_and_the_cells(tmp_path):
    scan = _scan(tmp_path, "id,code,mass,price,note,y\n1,7,3750,$1.50,a,1\n2,8,,12%,b,0\n")
    assert wire_types([scan], None, "y", "classification", ["id"]) == {
        "id": "int", "code": "float", "mass": "float", "price": "float", "note": "bytes", "y": "bytes"}
    declared = {"code": "categorical", "mass": "numeric", "note": "numeric"}
    assert wire_types([scan], declared, "y", "regression", []) == {
        "id": "float", "code": "int", "mass": "float", "price": "float",
        "note": "bytes",  # declared numeric but not numbers: schema validation reports it
        "y": "float"}


def test_files_with_different_headers_are_refused(tmp_path):
    a = _scan(tmp_path, "x,y\n1,2\n")
    (tmp_path / "e.csv").write_text("x,z\n1,2\n")
    b = scan_table(str(tmp_path / "e.csv"), TablePolicy())
    with pytest.raises(CsvInputError, match=r"e.csv: its header differs from .*d.csv's; every file matched by "
                                            r"data.path must have the same columns"):
        wire_types([a, b], None, "y", "classification", [])


def test_a_row_becomes_an_example_by_the_columns_own_names():
    example = record_to_example({"monthly spend": " $1,234.50 ", "Größe": "n/a", "plan": "pro", "notes": "",
                                 "id": "17"}, {"monthly spend": "float", "Größe": "float", "plan": "bytes",
                                              "notes": "bytes", "id": "int"})
    f = example.features.feature
    assert sorted(f) == ["id", "monthly spend", "plan"]  # missing cells are left out
    assert f["monthly spend"].float_list.value == [1234.5]
    assert f["plan"].bytes_list.value == [b"pro"] and f["id"].int64_list.value == [17]


def run_csv_example_gen(root, tmp_path, **kwargs):
    """TableExampleGen alone in a real TFX pipeline; returns (report, examples of both splits)."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline

    from lamina.pipeline.pipeline import split_config, sqlite_metadata_config
    from lamina.pipeline.runs.summary import latest_run_outputs
    from tests.helpers import make_spec

    spec = make_spec(tmp_path)
    gen = TableExampleGen(input_base=str(root), output_config=split_config(spec), **kwargs)
    pipeline = Pipeline(pipeline_name=spec.name, pipeline_root=spec.pipeline_root, components=[gen],
                        enable_cache=False, metadata_connection_config=sqlite_metadata_config(spec.metadata_path),
                        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    os.makedirs(spec.run_dir, exist_ok=True)
    LocalDagRunner().run(pipeline)
    examples = latest_run_outputs(spec)[(gen.id, "examples")]
    files = tf.io.gfile.glob(os.path.join(examples.uri, "Split-*", "*.gz"))
    return read_report(examples.uri), [tf.train.Example.FromString(r.numpy())
                                       for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_a_messy_export_becomes_typed_examples_under_its_own_names(tmp_path):
    rows = write_messy_csv(str(tmp_path / "data" / "churn.csv"), n=120)
    report, examples = run_csv_example_gen(tmp_path / "data", tmp_path, pattern="churn.csv", label=LABEL,
                                           task="classification", exclude=["customer_id"])
    labelled = [r for r in rows if r[LABEL]]
    assert (report["rows"], report["examples"], report["missing_label"], report["bad_rows"]) == (
        120, len(labelled), 120 - len(labelled), 0)
    assert report["delimiter"] == ";" and report["columns"] == {
        "customer_id": "int", "Signup Date": "bytes", "monthly spend": "float", "monthly_spend": "float",
        "Preis (€)": "float", "Größe": "float", "2nd_choice": "bytes", "column_8": "float", "plan": "bytes",
        "country": "bytes", "notes": "bytes", "auto_renew": "bytes", "discount": "float", LABEL: "bytes"}
    assert len(examples) == len(labelled)
    by_id = {e.features.feature["customer_id"].int64_list.value[0]: e.features.feature for e in examples}
    for row in labelled:
        f = by_id[int(row["customer_id"])]
        spend = row["monthly spend"]
        if spend in ("", "n/a"):
            assert "monthly spend" not in f
        else:
            assert f["monthly spend"].float_list.value[0] == pytest.approx(float(spend.strip("$").replace(",", "")))
        assert f["discount"].float_list.value[0] == pytest.approx(float(row["discount"].rstrip("%")) / 100)
        assert f["notes"].bytes_list.value[0].decode() == row["notes"].strip()
        assert f[LABEL].bytes_list.value[0].decode() == row[LABEL]


def test_the_executor_stops_on_bad_input_before_beam(tmp_path):
    """On Kubeflow no preflight runs: the component's own scan stops the run with the same message."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "d.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(CsvInputError, match=r"column name 'a' appears twice in the header, at columns 1 and 3"):
        run_csv_example_gen(data, tmp_path, pattern="d.csv", label="b", task="classification")
