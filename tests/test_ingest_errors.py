"""Broken files stop `lamina run` before anything runs, naming the file and the place; specs that
expand through YAML aliases are refused within a few MB."""

import os
import tracemalloc

import pytest
import yaml

from lamina.pipeline.cli.commands import main
from lamina.spec import SpecError, load_spec


def _project(tmp_path, content: bytes, **data):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "d.csv").write_bytes(content)
    spec = {"name": "broken", "data": {"path": "data/d.csv", "label": "species", **data},
            "training": {"epochs": 1}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "spec.yaml", str(tmp_path / "data" / "d.csv")


def _run(spec_path, capsys):
    code = main(["run", str(spec_path)])
    return code, capsys.readouterr().err.strip()


def _nothing_ran(spec_path):
    spec = load_spec(spec_path)
    return not os.path.exists(spec.metadata_path)  # no ML Metadata: no component, so no Trainer, ran


PENGUINS = b"species,island,bill_length_mm\nAdelie,Biscoe,39.1\nGentoo,Dream,46.5\nAdelie,Biscoe,38.0\n"


@pytest.mark.parametrize("case, content, data, message", [
    ("duplicate columns", b"species,bill_length_mm,year,bill_length_mm\nAdelie,39.1,2007,40\n", {},
     "{path}: column name 'bill_length_mm' appears twice in the header, at columns 2 and 4; rename one of them "
     "(each column must have its own name)."),
    ("empty file", b"", {}, "no data rows in {path}: the file is empty."),
    ("header only", b"species,island\n", {},
     "no data rows in {path}: the file has only a header (2 column(s): 'species', 'island')."),
    ("a field too many", PENGUINS + b"Adelie,Biscoe,40.2,EXTRA\n", {},
     "{path}: 1 row(s) do not match the header's 3 columns: line 5: 4 fields, the header has 3. Fix them, or set "
     "data.bad_rows: skip to leave such rows out."),
    ("latin-1 bytes", "species,island\nAdelie,Biscoe\nAdelie,Bergün\n".encode("latin-1"), {},
     "{path}: not valid utf-8 at line 3, byte offset 40 (bytes b'\\xfcn\\n'). Set data.encoding to the file's "
     "encoding (for example 'latin-1' or 'cp1252'), or save the file as UTF-8."),
    ("too many missing labels", b"species,x\n" + b"".join(b"%s,%d\n" % (b"" if i % 2 else b"A", i) for i in range(10)),
     {"max_missing_labels": 0.2},
     "{path}: 5 of 10 rows (50.0%) have no label in column 'species', more than data.max_missing_labels 20.0%."),
])
def test_a_broken_csv_stops_the_run_before_anything_runs(tmp_path, capsys, case, content, data, message):
    spec_path, path = _project(tmp_path, content, **data)
    code, err = _run(spec_path, capsys)
    assert code == 1, case
    assert err == "The run stopped before it started: " + message.format(path=path)
    assert _nothing_ran(spec_path)
    # `lamina validate` says the same, and that the spec itself is fine.
    assert main(["validate", str(spec_path)]) == 1
    assert capsys.readouterr().err.strip() == (f"{spec_path}: the spec is valid, but its data is not: "
                                               + message.format(path=path))


def test_the_encoding_can_be_set(tmp_path, capsys):
    spec_path, _ = _project(tmp_path, "species,island\nAdelie,Biscoe\nGentoo,Bergün\n".encode("latin-1"),
                            encoding="latin-1")
    assert main(["validate", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert "  island   categorical  categorical  2 distinct values" in out
    assert "  2 rows in 1 file(s), delimiter ',', encoding latin-1" in out


BOMB = """name: bomb
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
data: {path: d.csv, label: y}
training: {epochs: *h}
evaluation: {slices: *h}
"""


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_yaml_alias_bomb_is_refused_in_a_few_megabytes(tmp_path, capsys, command):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    tracemalloc.start()
    try:
        code = main([command, str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"Invalid spec in {path}:\n  - the spec expands to more than 100,000 values (YAML anchors and aliases repeat "
        f"parts of it); a spec this large is refused.")
    assert peak < 20 * 1024 * 1024


def test_an_alias_that_refers_to_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\ndata: {path: d.csv, label: y}\nevaluation: {slices: &s [*s]}\n")
    with pytest.raises(SpecError, match="the spec nests deeper than 64 levels"):
        load_spec(path)


def test_a_huge_spec_file_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("name: huge\n" + "# padding\n" * 120_000)
    with pytest.raises(SpecError, match=r"the file is 1,200,011 bytes; a spec may be at most 1,048,576."):
        load_spec(path)


@pytest.mark.parametrize("content, expected", [
    (None, "data.path: no file matches"),
    (b"\xef\xbb\xbfspecies,mass\nAdelie,1\nGentoo,2,extra\n", "d.csv: 1 row(s) do not match the header's 2 columns"),
])
def test_bad_data_is_reported_before_tensorflow_is_imported(tmp_path, content, expected):
    """`lamina run` checks the spec and the data before it imports TFX, Beam and TensorFlow
    (about 14 s on 2 cores), so a wrong path or a broken row is reported at once."""
    import subprocess
    import sys

    spec_path, csv_path = _project(tmp_path, content or b"species,mass\nAdelie,1\n")
    if content is None:
        os.remove(csv_path)
    code = ("import sys\nfrom lamina.pipeline.cli.commands import main\nrc = main(['run', sys.argv[1]])\n"
            "print('imported:', sorted(m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules))\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(spec_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == (2 if content is None else 1), proc.stderr
    assert expected in proc.stderr
    assert "imported: []" in proc.stdout


def test_a_forecast_table_with_a_bad_date_stops_before_tensorflow_is_imported(tmp_path):
    """A forecast's rows are checked as ForecastExampleGen reads them (timestamp, target, covariates) before
    TFX, Beam and TensorFlow are imported: the message names the file, line and column."""
    import subprocess
    import sys

    rows = ["\ufeffStore;Date;Units sold"] + [f"A;2024-01-{d:02d};{10 + d}" for d in range(1, 29)]
    rows[17] = "A;2024-01-17;12 pcs"
    (tmp_path / "sales.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "spec.yaml").write_text(
        "task: forecast\ndata: {path: sales.csv, label: Units sold}\n"
        "forecast: {timestamp: Date, series_id: Store, frequency: D, lookback: 7, horizon: 2}\n")
    code = ("import sys\nfrom lamina.pipeline.cli.commands import main\nrc = main(['run', sys.argv[1]])\n"
            "print('imported:', sorted(m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules))\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "spec.yaml")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().endswith(
        f"{tmp_path / 'sales.csv'}, line 18: column 'Units sold' holds '12 pcs', which is not a number; a forecast's "
        f"target and covariates are numbers (leave a cell blank for a missing value).")
    assert "imported: []" in proc.stdout
