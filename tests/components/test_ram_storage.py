"""Every custom component's executor on TensorFlow's in-memory `ram://` filesystem.

Data, pipeline root and push destination are all `ram://` URIs, where `open`, `os.listdir` and
`glob` find nothing (as on `gs://`); only ML Metadata's SQLite file is local. A component that
reached for the local disk fails here. tests/ramfs.py gives Beam the `ram://` scheme.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from lamina import storage
from tests import ramfs
from tests.helpers import make_spec
from tests.messy import LABEL, write_messy_csv


def _copy_to_ram(local_root: str, ram_root: str) -> None:
    for folder, _, names in os.walk(local_root):
        for name in names:
            src = os.path.join(folder, name)
            dest = os.path.join(ram_root, os.path.relpath(src, local_root).replace(os.sep, "/"))
            tf.io.gfile.makedirs(os.path.dirname(dest))
            tf.io.gfile.copy(src, dest, overwrite=True)


def run_on_ram(components, tmp_path):
    """The components in a real TFX pipeline whose root is on ram://; returns (outputs, pipeline root)."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline

    from lamina.pipeline.pipeline import sqlite_metadata_config
    from lamina.pipeline.runs.summary import latest_run_outputs

    spec = make_spec(tmp_path)
    root = ramfs.ram_root("pipeline")
    os.makedirs(spec.run_dir, exist_ok=True)
    pipeline = Pipeline(pipeline_name=spec.name, pipeline_root=root, components=components, enable_cache=False,
                        metadata_connection_config=sqlite_metadata_config(spec.metadata_path),
                        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    LocalDagRunner().run(pipeline)
    return latest_run_outputs(spec), root


def read_examples(examples_uri: str):
    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", "*.gz"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_storage_paths_on_a_uri_are_confined_by_prefix():
    assert storage.resolve("gs://b/data/imgs/../x.png") == "gs://b/data/x.png"
    assert storage.inside("gs://b/data", "gs://b/data/cats/1.png")
    assert not storage.inside("gs://b/data", "gs://b/data/../secrets/k.png")
    assert not storage.inside("gs://b/data", "gs://b/database/1.png")  # a prefix of the name is not a folder
    assert storage.relative("gs://b/data/cats/./1.png", "gs://b/data") == "cats/1.png"
    assert storage.parent("gs://b/data/x.csv") == "gs://b/data"
    with pytest.raises(FileNotFoundError, match=r"ram://nowhere/x.json"):
        storage.read_json("ram://nowhere/x.json")


def test_table_example_gen_reads_and_writes_only_ram(tmp_path):
    from lamina.components.table_example_gen import TableExampleGen, read_report

    rows = write_messy_csv(str(tmp_path / "local" / "churn.csv"), n=60)
    data = ramfs.ram_root("data")
    _copy_to_ram(str(tmp_path / "local"), data)
    gen = TableExampleGen(input_base=data, pattern="churn.csv", label=LABEL, task="classification",
                          exclude=["customer_id"], output_config=__import__(
                              "lamina.pipeline.pipeline", fromlist=["x"]).split_config(make_spec(tmp_path)))
    outputs, root = run_on_ram([gen], tmp_path)
    examples = outputs[(gen.id, "examples")]
    assert examples.uri.startswith(root)
    report = read_report(examples.uri)
    labelled = [r for r in rows if r[LABEL]]
    assert (report["rows"], report["examples"], report["delimiter"]) == (60, len(labelled), ";")
    assert report["files"] == [f"{data}/churn.csv"]
    got = sorted(e.features.feature["customer_id"].int64_list.value[0] for e in read_examples(examples.uri))
    assert got == sorted(int(r["customer_id"]) for r in labelled)


def test_image_example_gen_lists_reads_and_reports_on_ram(tmp_path):
    from lamina.components.image_example_gen import ImageExampleGen, read_report
    from lamina.pipeline.cli.datasets import write_digits_folder
    from lamina.pipeline.pipeline import split_config
    from lamina.constants import SOURCE_PATH_KEY
    from tests.helpers import digits_spec

    write_digits_folder(str(tmp_path / "local"), digits=range(2), size=16, per_class=6)
    (tmp_path / "local" / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = ramfs.ram_root("images")
    _copy_to_ram(str(tmp_path / "local"), data)
    gen = ImageExampleGen(root=data, format="image_folder", image_key="image", label_key="label",
                          output_config=split_config(digits_spec(tmp_path), SOURCE_PATH_KEY), max_bad_fraction=0.2)
    outputs, _ = run_on_ram([gen], tmp_path)
    examples = outputs[("ImageExampleGen", "examples")]
    report = read_report(examples.uri)
    assert (report["files"], report["examples"], report["classes"]) == (13, 12, {"0": 6, "1": 6})
    assert [(b["path"], b["problem"]) for b in report["bad_files"]] == [("1/broken.png", "corrupt")]
    paths = sorted(e.features.feature["source_path"].bytes_list.value[0].decode() for e in read_examples(examples.uri))
    assert paths == sorted(os.path.relpath(p, tmp_path / "local").replace(os.sep, "/")
                           for p in glob.glob(str(tmp_path / "local" / "*" / "*.png"))
                           if not p.endswith("broken.png"))


def test_an_image_csv_on_ram_cannot_name_a_file_outside_its_folder(tmp_path):
    from lamina.components.image_example_gen import list_image_csv

    data = ramfs.ram_root("csv")
    png = _one_png(tmp_path)
    for name in ("imgs/a.png", "other/b.png"):
        with tf.io.gfile.GFile(f"{data}/{name}", "wb") as f:
            f.write(png)
    with tf.io.gfile.GFile(f"{data}/imgs/list.csv", "w") as f:
        f.write("\ufefffile,label\na.png,cat\n../other/b.png,dog\nmissing.png,cat\n")
    files, bad = list_image_csv(f"{data}/imgs/list.csv", "file", "label", [".png"])
    assert [(f.path, f.relpath, f.label) for f in files] == [(f"{data}/imgs/a.png", "a.png", "cat")]
    assert [(b.path, b.problem) for b in bad] == [("../other/b.png", "outside_root"), ("missing.png", "missing")]
    assert f"resolves to {data}/other/b.png, outside the data root {data}/imgs" in bad[0].detail


def _one_png(tmp_path) -> bytes:
    from lamina.pipeline.cli.datasets import write_digits_folder

    root = write_digits_folder(str(tmp_path / "digits"), digits=range(1), size=8, per_class=1)
    folder = os.path.join(str(root), "0")
    with open(os.path.join(folder, os.listdir(folder)[0]), "rb") as f:
        return f.read()


def test_anomaly_gate_reads_anomalies_and_passes_the_schema_on_ram():
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.types import standard_artifacts

    from lamina.components.anomaly_gate import ANOMALIES_FILE, SCHEMA_FILE, AnomalyGate, DataAnomaliesError

    root = ramfs.ram_root("gate")
    anomalies, schema, out = (standard_artifacts.ExampleAnomalies(), standard_artifacts.Schema(),
                              standard_artifacts.Schema())
    anomalies.uri, schema.uri, out.uri = f"{root}/anomalies", f"{root}/schema", f"{root}/validated"
    anomalies.split_names = '["train", "eval"]'
    for split in ("train", "eval"):
        tf.io.gfile.makedirs(f"{anomalies.uri}/Split-{split}")
        with tf.io.gfile.GFile(f"{anomalies.uri}/Split-{split}/{ANOMALIES_FILE}", "wb") as f:
            f.write(anomalies_pb2.Anomalies().SerializeToString())
    tf.io.gfile.makedirs(schema.uri)
    with tf.io.gfile.GFile(f"{schema.uri}/{SCHEMA_FILE}", "w") as f:
        f.write('feature { name: "x" type: FLOAT }\n')
    executor = AnomalyGate.EXECUTOR_SPEC.executor_class()
    inputs, outputs = {"anomalies": [anomalies], "schema": [schema]}, {"validated_schema": [out]}
    executor.Do(inputs, outputs, {})
    with tf.io.gfile.GFile(f"{out.uri}/{SCHEMA_FILE}") as f:
        assert f.read() == 'feature { name: "x" type: FLOAT }\n'

    found = anomalies_pb2.Anomalies()
    found.anomaly_info["island"].short_description = "Unexpected string values"
    found.anomaly_info["island"].reason.add(description="Examples contain values missing from the schema: Atlantis.")
    with tf.io.gfile.GFile(f"{anomalies.uri}/Split-eval/{ANOMALIES_FILE}", "wb") as f:
        f.write(found.SerializeToString())
    with pytest.raises(DataAnomaliesError, match=r"eval +island +Unexpected string values +Examples contain values "
                                                 r"missing from the schema: Atlantis\."):
        executor.Do(inputs, outputs, {})


def _pusher_inputs(root, examples_split_files):
    from tfx.types import standard_artifacts

    from tests.serving.toy import example, write_toy_model

    model, blessing, examples, pushed = (standard_artifacts.Model(), standard_artifacts.ModelBlessing(),
                                         standard_artifacts.Examples(), standard_artifacts.PushedModel())
    model.uri, blessing.uri, examples.uri, pushed.uri = (f"{root}/model", f"{root}/blessing", f"{root}/examples",
                                                          f"{root}/pushed")
    write_toy_model(f"{model.uri}/Format-Serving", 0)  # <model>/Format-Serving/0: move it up one level
    for name in tf.io.gfile.listdir(f"{model.uri}/Format-Serving/0"):
        tf.io.gfile.rename(f"{model.uri}/Format-Serving/0/{name.rstrip('/')}", f"{model.uri}/Format-Serving/"
                           f"{name.rstrip('/')}")
    blessing.set_int_custom_property("blessed", 1)
    examples.split_names = '["train", "eval"]'
    tf.io.gfile.makedirs(f"{examples.uri}/Split-eval")
    if examples_split_files:
        with tf.io.TFRecordWriter(f"{examples.uri}/Split-eval/data.gz", "GZIP") as w:
            for i in range(examples_split_files):
                w.write(example([i, 1.0, 2.0]).SerializeToString())
    return {"model": [model], "model_blessing": [blessing], "examples": [examples]}, {"pushed_model": [pushed]}


@pytest.mark.parametrize("eval_examples", [3, 0], ids=["with-examples", "empty-eval-split"])
def test_warmup_pusher_pushes_to_ram_and_says_when_it_has_no_warmup(tmp_path, capsys, eval_examples, monkeypatch):
    from tfx.dsl.components.base.base_executor import BaseExecutor
    from tfx.proto import pusher_pb2
    from tfx.utils import proto_utils

    from lamina.components.warmup_pusher import Executor
    from lamina.serving.warmup import WARMUP_FILE

    ramfs.as_gcs(monkeypatch)
    root = ramfs.ram_root("push")
    inputs, outputs = _pusher_inputs(root, eval_examples)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=f"{root}/serving/toy"))
    Executor(BaseExecutor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="1")).Do(
        inputs, outputs, {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "{}",
                          "warmup_examples": 8})
    pushed = outputs["pushed_model"][0]
    assert pushed.get_int_custom_property("pushed") == 1
    version_dir = pushed.get_string_custom_property("pushed_destination")
    assert version_dir.startswith(f"{root}/serving/toy/")
    assert tf.io.gfile.exists(f"{version_dir}/saved_model.pb")
    assert tf.io.gfile.exists(f"{version_dir}/{WARMUP_FILE}") == bool(eval_examples)
    out = capsys.readouterr().out
    if eval_examples:
        assert "warning" not in out
    else:
        assert (f"warning: no examples in the eval split ({root}/examples/Split-eval); the model is pushed "
                f"without warmup requests") in out


def test_a_scheme_tensorflow_lacks_is_a_spec_error_with_the_fix(tmp_path):
    from lamina.pipeline.local_runner import prepare_spec
    from lamina.spec import SpecError

    spec = make_spec(tmp_path, data={"path": "s3://acme/data/penguins.csv"},
                     runner={"pipeline_root": "hdfs://namenode/lamina"})
    with pytest.raises(SpecError) as info:
        prepare_spec(spec)
    assert info.value.problems == [
        "runner.pipeline_root: hdfs://namenode/lamina: TensorFlow here has no hdfs:// filesystem; install "
        "tensorflow-io and Hadoop's native libraries (HADOOP_HDFS_HOME), or copy the data to gs://."]
    with pytest.raises(SpecError) as info:
        prepare_spec(make_spec(tmp_path, data={"path": "s3://acme/data/penguins.csv"}))
    assert info.value.problems == [
        "data.path: s3://acme/data/penguins.csv: TensorFlow here has no s3:// filesystem; install tensorflow-io "
        "(pip install tensorflow-io==0.37.1) and import tensorflow_io in every process, or copy the data to gs://."]
