"""Ingestion, side by side on one CSV: Lamina's TableExampleGen against TFX 1.16's own CsvExampleGen,
each alone in a TFX pipeline on Beam's DirectRunner (SQLite ML Metadata, a fresh root), and the
preflight scan (`lamina validate`'s check of the file) on its Arrow and Python paths.

With `--format parquet`, the same table as a Parquet file (typed columns, nulls for the blanks, as
pandas writes one): Lamina's TableExampleGen on its Arrow path and on its Python path (the Arrow
scan switched off in the child), and TFX 1.16's own Parquet executor (`parquet_executor`, beam's
ReadFromParquet and TFX's dict-to-Example) in a FileBasedExampleGen.

With `--format jsonl`, the same table as JSON Lines (pandas' `to_json(orient="records", lines=True)`:
null for the blanks): Lamina's TableExampleGen on its Arrow path (Python's json per line, the cells
by column) and on its Python path. TFX 1.16 has no JSON executor to compare with.

The file is `benchmarks/scale.py`'s table (20 numeric and 5 categorical columns, 2% blank cells,
a binary label). Both ExampleGens split 4:1 by hash and write gzipped TFRecords of tf.Examples.
Each is run in a child process of its own, so neither pays for the other's imports or caches;
the figure is the component's own time, as TFX's launcher reports it, and the child's wall time.

With `--conversion`, only the Arrow path's conversion of the file into serialized examples is timed,
in this process (no Beam, no writing), two ways, alternating: float columns kept as their values (as
ExampleGen does), and as cells, each a `repr` parsed back (as before). The two must give equal bytes.

Usage:
    .venv/bin/python benchmarks/ingest.py [--rows 1000000] [--work /tmp/lamina-ingest] [--json out.json]
                                          [--format csv|parquet|jsonl] [--conversion [--rounds 2]]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {repo!r}); sys.path.insert(0, os.path.join({repo!r}, "benchmarks"))
which, csv_path, root = sys.argv[1:4]
t0 = time.perf_counter()
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration import metadata
from tfx.proto import example_gen_pb2
output = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
    example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)]))
folder = os.path.dirname(csv_path)
if which == "tfx" and csv_path.endswith(".parquet"):
    from tfx.components import FileBasedExampleGen
    from tfx.components.example_gen.custom_executors import parquet_executor
    from tfx.dsl.components.base import executor_spec
    from tfx.proto import example_gen_pb2 as pb
    component = FileBasedExampleGen(input_base=folder, output_config=output,
                                    input_config=pb.Input(splits=[pb.Input.Split(name="all", pattern=os.path.basename(csv_path))]),
                                    custom_executor_spec=executor_spec.BeamExecutorSpec(parquet_executor.Executor))
elif which == "tfx":
    from tfx.components import CsvExampleGen
    component = CsvExampleGen(input_base=folder, output_config=output)
elif which.startswith("lamina"):
    if which == "lamina-python":  # the Python path: the scan does not use pyarrow, so neither does ExampleGen
        from lamina.components import table_source
        table_source.arrow_scan = lambda *args, **kwargs: None
    from lamina.components.table_example_gen import TableExampleGen
    from scale import CATEGORICAL, LABEL, NUMERIC
    component = TableExampleGen(input_base=folder, pattern=os.path.basename(csv_path), label=LABEL,
                                task="classification", output_config=output,
                                format=os.path.splitext(csv_path)[1].lstrip("."),
                                features={{**{{c: "numeric" for c in NUMERIC}}, **{{c: "categorical" for c in CATEGORICAL}}}})
imported = time.perf_counter()
p = tfx_pipeline.Pipeline(pipeline_name="ingest-" + which, pipeline_root=os.path.join(root, "root"),
                          components=[component], enable_cache=False,
                          metadata_connection_config=metadata.sqlite_metadata_connection_config(
                              os.path.join(root, "metadata.sqlite")),
                          beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
start = time.perf_counter()
LocalDagRunner().run(p)
end = time.perf_counter()
out = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "root")) for f in fs if ".gz" in f]
print("RESULT " + json.dumps({{"imports_s": imported - t0, "component_s": end - start,
                              "bytes": sum(os.path.getsize(f) for f in out)}}))
"""


def run_child(which: str, csv_path: str, root: str) -> dict:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    script = os.path.join(root, "child.py")
    with open(script, "w") as f:
        f.write(CHILD.format(repo=REPO))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, script, which, csv_path, root], capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{which} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = wall
    return result


def count_examples(root: str) -> dict:
    """{split: count} of the examples under a run's root, and {split: digest}: a hash of the sorted
    hashes of its records, equal for two runs that wrote the same examples in any order."""
    import hashlib

    import tensorflow as tf

    hashes = {}
    for d, _, files in os.walk(os.path.join(root, "root")):
        for f in files:
            if ".gz" in f:
                split = os.path.basename(d).replace("Split-", "")
                hashes.setdefault(split, []).extend(
                    hashlib.sha1(r).digest() for r in tf.data.TFRecordDataset(os.path.join(d, f), compression_type="GZIP")
                    .as_numpy_iterator())
    return ({split: len(h) for split, h in hashes.items()},
            {split: hashlib.sha1(b"".join(sorted(h))).hexdigest() for split, h in hashes.items()})


def time_scans(csv_path: str, fmt: str = "csv") -> dict:
    from lamina.components import table_source
    from lamina.components.table_source import TablePolicy
    from scale import LABEL

    policy = TablePolicy(label=LABEL, format=fmt)
    out = {}
    for name, arrow in (("scan_arrow_s", True), ("scan_python_s", False)):
        start = time.perf_counter()
        scan = table_source.scan_uncached(csv_path, policy, arrow=arrow)
        out[name] = time.perf_counter() - start
        out.setdefault("scans", []).append(scan)
    a, b = out.pop("scans")
    out["scans_equal"] = a == b
    return out


def write_parquet(csv_path: str) -> str:
    """The CSV as a Parquet file beside it, in its own folder: numbers float64, text strings, blanks null."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = os.path.join(os.path.dirname(os.path.dirname(csv_path)), "parquet",
                        os.path.basename(csv_path).replace(".csv", ".parquet"))
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(pa_csv.read_csv(csv_path), path + ".part", row_group_size=100_000)
        os.replace(path + ".part", path)
    return path


def write_jsonl(csv_path: str) -> str:
    """The CSV as JSON Lines beside it, in its own folder, as pandas writes a data frame (blanks null)."""
    import pandas as pd

    path = os.path.join(os.path.dirname(os.path.dirname(csv_path)), "jsonl",
                        os.path.basename(csv_path).replace(".csv", ".jsonl"))
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".part", "w", encoding="utf-8") as f:
            for chunk in pd.read_csv(csv_path, chunksize=100_000):
                f.write(chunk.to_json(orient="records", lines=True, force_ascii=False).rstrip("\n") + "\n")
        os.replace(path + ".part", path)
    return path


def time_conversion(path: str, fmt: str, rounds: int) -> dict:
    """Seconds to turn the file into serialized examples on the Arrow path, float columns as values or as cells."""
    import hashlib

    from lamina.components import table_arrow
    from lamina.components.table_example_gen import wire_types
    from lamina.components.table_source import TablePolicy, scan_uncached
    from scale import CATEGORICAL, LABEL, NUMERIC

    scan = scan_uncached(path, TablePolicy(label=LABEL, format=fmt))
    types = wire_types([scan], {**{c: "numeric" for c in NUMERIC}, **{c: "categorical" for c in CATEGORICAL}},
                       LABEL, "classification", [])
    numbers = {n for n, kind in types.items() if kind == table_arrow.FLOAT}
    out = {"values_s": [], "cells_s": [], "digests": set()}
    for i in range(rounds):
        for way in ("values", "cells") if i % 2 == 0 else ("cells", "values"):
            digest = hashlib.sha1()
            start = time.perf_counter()
            for batch in table_arrow.batches(path, scan.names, scan.delimiter, "utf-8", fmt,
                                             numbers if way == "values" else ()):
                for example in table_arrow.batch_examples(batch, types, LABEL):
                    digest.update(example)
            out[f"{way}_s"].append(time.perf_counter() - start)
            out["digests"].add(digest.hexdigest())
            print(f"  conversion, float columns as {way}: {out[f'{way}_s'][-1]:.1f} s", flush=True)
    out["equal"] = len(out.pop("digests")) == 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", default="/tmp/lamina-ingest")
    parser.add_argument("--json")
    parser.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="csv")
    parser.add_argument("--conversion", action="store_true", help="time only the Arrow path's conversion")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=["lamina", "lamina-python", "tfx"],
                        help="run only these ExampleGens (the ratios need their pairs)")
    args = parser.parse_args()
    from scale import write_table

    os.makedirs(args.work, exist_ok=True)
    csv_path = os.path.join(args.work, "data", f"table_{args.rows}.csv")
    if not os.path.exists(csv_path):
        os.makedirs(os.path.dirname(csv_path), exist_ok=True)
        write_table(csv_path, args.rows)
    variants = ("lamina", "tfx")
    if args.format == "parquet":
        csv_path = write_parquet(csv_path)
        variants = ("lamina", "lamina-python", "tfx")
    elif args.format == "jsonl":
        csv_path = write_jsonl(csv_path)
        variants = ("lamina", "lamina-python")
    variants = [v for v in variants if v in (args.only or variants)]
    if args.conversion:
        result = time_conversion(csv_path, args.format, args.rounds)
        print(f"  the two ways gave the same examples: {result['equal']}", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return
    print(f"{platform.node()}: {os.cpu_count()} CPUs; {args.rows:,} rows, "
          f"{os.path.getsize(csv_path) / 1e6:.1f} MB {args.format}", flush=True)
    results = {"rows": args.rows, "format": args.format, "file_bytes": os.path.getsize(csv_path)}
    for which in variants:
        root = os.path.join(args.work, which)
        r = run_child(which, csv_path, root)
        r["examples"], r["digests"] = count_examples(root)
        results[which] = r
        print(f"  {which:<7} ExampleGen {r['component_s']:7.1f} s (process {r['wall_s']:.1f} s, imports "
              f"{r['imports_s']:.1f} s), {sum(r['examples'].values()):,} examples {r['examples']}, "
              f"{r['bytes'] / 1e6:.1f} MB written", flush=True)
    if "tfx" in results and "lamina" in results:
        results["speedup"] = results["tfx"]["component_s"] / results["lamina"]["component_s"]
        print(f"  TFX's ExampleGen / Lamina TableExampleGen: {results['speedup']:.2f}x", flush=True)
    if "lamina-python" in results and "lamina" in results:
        results["paths_equal"] = results["lamina"]["digests"] == results["lamina-python"]["digests"]
        print(f"  Lamina's Arrow and Python paths wrote the same examples to the same splits: "
              f"{results['paths_equal']}", flush=True)
        results["arrow_speedup"] = results["lamina-python"]["component_s"] / results["lamina"]["component_s"]
        print(f"  Lamina's Python path / its Arrow path: {results['arrow_speedup']:.2f}x", flush=True)
    results.update(time_scans(csv_path, args.format))
    print(f"  preflight scan: Arrow {results['scan_arrow_s']:.1f} s, Python {results['scan_python_s']:.1f} s "
          f"({results['scan_python_s'] / results['scan_arrow_s']:.1f}x); equal: {results['scans_equal']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
