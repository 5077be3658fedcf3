"""End to end on each table format besides CSV, from `lamina init` to a pushed model: the penguins as
JSON Lines, Parquet and gzipped TFRecord, the format inferred from the file name. Each trains and
pushes, every number is float32 on the wire whatever the file held, and the run counts its rows."""

import json

import pytest
import tensorflow as tf

from lamina.pipeline.cli.datasets import penguins_rows
from lamina.pipeline.cli.commands import main
from lamina.pipeline.local_runner import run_pipeline
from lamina.spec import load_spec
from lamina.serving.saved_model import read_signature_defs

pytestmark = pytest.mark.e2e


def _typed(row):
    """A CSV row of the penguins as the other formats hold it: ints, floats, strings, and nulls."""
    out = {}
    for k, v in row.items():
        if v == "":
            out[k] = None
        elif k in ("flipper_length_mm", "body_mass_g"):
            out[k] = int(v)
        elif k in ("bill_length_mm", "bill_depth_mm"):
            out[k] = float(v)
        else:
            out[k] = v
    return out


def _value(v):
    if v is None or (isinstance(v, float) and v != v):
        return None
    return v


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({k: _value(v) for k, v in r.items()}) + "\n")


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {k: [_value(r[k]) for r in rows] for k in rows[0]}
    pq.write_table(pa.table(columns), path)


def write_tfrecord(path, rows):
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for r in rows:
            f = {}
            for k, v in r.items():
                v = _value(v)
                if v is None:
                    continue
                if isinstance(v, str):
                    f[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
                elif isinstance(v, int):
                    f[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
                else:
                    f[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
            w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())


FORMATS = {"jsonl": ("penguins.jsonl", write_jsonl, "JsonExampleGen"),
           "parquet": ("penguins.parquet", write_parquet, "ParquetExampleGen"),
           "tfrecord": ("penguins.tfrecord.gz", write_tfrecord, "TFRecordExampleGen")}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_from_lamina_init_to_a_pushed_model(tmp_path, fmt, capsys):
    """`lamina init` on the file, then `lamina run` on the spec it wrote, unchanged."""
    name, write, component = FORMATS[fmt]
    rows = [_typed(r) for r in penguins_rows()]
    assert isinstance(rows[0]["flipper_length_mm"], int)  # integers in the file ...
    (tmp_path / "data").mkdir()
    write(str(tmp_path / "data" / name), rows)
    spec_path = str(tmp_path / "spec.yaml")
    assert main(["init", str(tmp_path / "data" / name), "--label", "species", "-o", spec_path]) == 0
    spec = load_spec(spec_path)
    assert spec.data.format == fmt and spec.data.feature_types == {
        "island": "categorical", "bill_length_mm": "numeric", "bill_depth_mm": "numeric",
        "flipper_length_mm": "numeric", "body_mass_g": "numeric", "sex": "categorical"}
    result = run_pipeline(spec)
    assert result.pushed and component in [c.name for c in result.components]
    assert result.metrics["sparse_categorical_accuracy"] >= 0.9
    assert (result.rows["rows"], result.rows["examples"], result.rows["format"]) == (len(rows), len(rows), fmt)
    raw = read_signature_defs(result.pushed_model_dir)["serving_raw"].inputs
    # ... float32 in the served model.
    assert {k: tf.dtypes.as_dtype(v.dtype) for k, v in raw.items()} == {
        "bill_length_mm": tf.float32, "bill_depth_mm": tf.float32, "flipper_length_mm": tf.float32,
        "body_mass_g": tf.float32, "island": tf.string, "sex": tf.string}
