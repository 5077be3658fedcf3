"""Transform alone, on a finished run's examples: the analysis, and what writing the transformed splits adds.

TFX's Transform executor runs in a fresh process per round on the run's ExampleGen output and validated
schema, with Lamina's preprocessing_fn, custom_config and local Beam settings (as `lamina run` installs
them: tf.data's TFRecord reader, the memoized DoFn specs), alternating:
  - materialize: as the pipeline ran it until 2026-12-07: analyze the train split, then transform and write
    both splits;
  - analyze-only: the same analysis, no split transformed or written (`splits_config.transform` empty), as the
    pipeline runs it now (`materialize=False`): the Trainer and the others apply the graph as they read.
Reported: the seconds `Executor.Do` took (imports excluded), and the records written.

`--reads N` then times what analyze-only moves to the readers: the run's train split read in batches of
1,024 through tf.data, N times each, alternating, in this process: the transformed examples parsed (as the
Trainer read them before), and the raw examples parsed and put through the transform graph
(`TFTransformOutput.transform_features_layer`, as the Trainer reads them now). A run with no transformed
examples (any run since the change) gets them written first, by one materialize round in this process.

Usage:
    .venv/bin/python benchmarks/scale.py --rows 200000 --keep --work /tmp/lamina-scale
    .venv/bin/python benchmarks/transform_alone.py --spec /tmp/lamina-scale/rows_200000/spec.yaml [--rounds 3]
                                                   [--reads 2]
"""

import argparse
import glob
import json
import os
import shutil
import tempfile
import time

from evaluator_metrics import alternate, finished_run_parser, median_table, pipeline_dir_of

MODES = ["materialize", "analyze-only"]


def transform(spec_path: str, pipeline_dir: str, mode: str, keep: str = "") -> dict:
    """One run of TFX's Transform executor; `keep`: write into this folder and leave it there."""
    from google.protobuf import json_format
    from tfx.components.transform import executor
    from tfx.proto import transform_pb2
    from tfx.types import artifact_utils, standard_artifacts

    from lamina.pipeline.beam_dofn_specs import memoize_dofn_specs
    from lamina.pipeline.local_runner import local_beam_args
    from lamina.pipeline.pipeline import PREPROCESSING_FN, installed_version
    from lamina.pipeline.tfrecord_reader import read_tfrecords_with_tf_data
    from lamina.spec import load_spec

    memoize_dofn_specs()
    read_tfrecords_with_tf_data()
    spec = load_spec(spec_path)
    examples = standard_artifacts.Examples()
    examples.uri = sorted(glob.glob(os.path.join(pipeline_dir, "*ExampleGen", "examples", "*")))[-1]
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    schema = standard_artifacts.Schema()
    schema.uri = sorted(glob.glob(os.path.join(pipeline_dir, "AnomalyGate", "validated_schema", "*")))[-1]
    out = keep or tempfile.mkdtemp(prefix="lamina-transform-")
    try:
        graph = standard_artifacts.TransformGraph()
        graph.uri = os.path.join(out, "transform_graph")
        outputs = {"transform_graph": [graph]}
        splits = transform_pb2.SplitsConfig(analyze=["train"])
        if mode == "materialize":
            transformed = standard_artifacts.Examples()
            transformed.uri = os.path.join(out, "transformed_examples")
            outputs["transformed_examples"] = [transformed]
            splits.transform[:] = ["train", "eval"]
        properties = {"preprocessing_fn": PREPROCESSING_FN,
                      "custom_config": json.dumps({"spec": spec.to_json(), "lamina_version": installed_version()}),
                      "splits_config": json_format.MessageToJson(splits), "disable_statistics": 1,
                      "disable_analyzer_cache": 1, "force_tf_compat_v1": 0}
        context = executor.Executor.Context(beam_pipeline_args=local_beam_args(spec.runner.beam_args),
                                            tmp_dir=os.path.join(out, "tmp"))
        start = time.perf_counter()
        executor.Executor(context).Do({"examples": [examples], "schema": [schema]}, outputs, properties)
        seconds = time.perf_counter() - start
        written = 0
        if mode == "materialize":
            import tensorflow as tf

            files = glob.glob(os.path.join(out, "transformed_examples", "Split-*", "*"))
            written = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
        return {"mode": mode, "seconds": seconds, "records_written": written}
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def read_passes(spec_path: str, pipeline_dir: str, passes: int) -> None:
    import tensorflow as tf
    import tensorflow_transform as tft

    graph_dir = sorted(glob.glob(os.path.join(pipeline_dir, "Transform", "transform_graph", "*")))[-1]
    transformed = os.path.join(pipeline_dir, "Transform", "transformed_examples", "*", "Split-train", "*")
    kept = ""
    if not glob.glob(transformed):  # the run did not write them: one materialize round does, with its own graph
        kept = tempfile.mkdtemp(prefix="lamina-transformed-")
        print(f"materialized: {transform(spec_path, pipeline_dir, 'materialize', keep=kept)}", flush=True)
        graph_dir = os.path.join(kept, "transform_graph")
        transformed = os.path.join(kept, "transformed_examples", "Split-train", "*")
    output = tft.TFTransformOutput(graph_dir)
    layer = output.transform_features_layer()
    raw_spec, transformed_spec = output.raw_feature_spec(), output.transformed_feature_spec()
    split = {"transformed": transformed,
             "raw + graph": os.path.join(pipeline_dir, "*ExampleGen", "examples", "*", "Split-train", "*")}
    parse = {"transformed": lambda s: tf.io.parse_example(s, transformed_spec),
             "raw + graph": lambda s: layer(tf.io.parse_example(s, raw_spec))}
    times = {name: [] for name in split}
    for i in range(passes):
        for name in split if i % 2 == 0 else list(split)[::-1]:
            files = sorted(glob.glob(split[name]))
            ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
            ds = ds.batch(1024).map(parse[name], num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
            start, rows = time.perf_counter(), 0
            for batch in ds:
                rows += int(tf.shape(next(iter(batch.values())))[0])
            times[name].append(time.perf_counter() - start)
            print(f"read {i + 1}: {name:12s} {times[name][-1]:6.2f} s  {rows} rows", flush=True)
    print("\n" + median_table("the train split read", times, digits=2))
    if kept:
        shutil.rmtree(kept, ignore_errors=True)


def main():
    parser = finished_run_parser(__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=0, help="then time the train split's reads, this many each")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.pipeline_dir = pipeline_dir_of(args)
    if args.child:
        print(json.dumps(transform(args.spec, args.pipeline_dir, args.child)))
        return
    runs = {mode: [] for mode in MODES}
    for i, mode, run in alternate(__file__, args, MODES):
        runs[mode].append(run["seconds"])
        print(f"round {i}: {mode:12s} {run['seconds']:6.1f} s  {run['records_written']} records written", flush=True)
    if args.rounds:
        print("\n" + median_table("Transform", runs))
    if args.reads:
        read_passes(args.spec, args.pipeline_dir, args.reads)


if __name__ == "__main__":
    main()
