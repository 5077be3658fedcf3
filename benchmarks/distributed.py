"""Training throughput on 1 and 2 workers (and several devices), and the share of a step spent talking.

For each model (the penguins MLP, the digits ResNet), the pipeline runs once up to Transform on one
device; then the Trainer's own launcher (`lamina.models.launcher.launch_workers`, what run_fn does)
trains on the same Transform output under each setting, with the same global batch:

- `multi_worker` with 1 worker and with 2 workers (MultiWorkerMirroredStrategy, TF_CONFIG on
  loopback ports, real processes: on this CPU machine the 2 workers share its cores);
- `mirrored` over 2 devices: 2 logical CPU devices here, the GPUs where there are some.

Examples/s come from the chief's epoch lines (the median epoch after the first, which traces).
The communication share: 2 worker processes all-reduce tensors of the model's trainable weight
shapes in one batched call, as Keras' optimizer sums a step's gradients, `--reduces` times; the
time per all-reduce over the 2-worker step time. (The loop's other collectives per step, the
example count and the summed metrics, are a few scalars.)

On a machine with GPUs the same command measures them (`mirrored` uses every GPU; each worker of
`multi_worker` uses the GPUs it sees; give each worker its own with CUDA_VISIBLE_DEVICES per
process if they share a machine).

Usage:
    .venv/bin/python benchmarks/distributed.py [--models penguins digits] [--epochs 6] [--work /tmp/lamina-dist]
                                               [--json results.json]
"""

import argparse
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ALLREDUCE_WORKER = r"""
import json, os, sys, time
import numpy as np
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
shapes, reduces = json.loads(sys.argv[1]), int(sys.argv[2])
values = [tf.constant(np.ones(s, np.float32)) for s in shapes]

@tf.function
def reduce_all():  # one batched all-reduce of every tensor, as Keras' optimizer sums the gradients
    return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.identity(v) for v in values]))

reduce_all()
started = time.perf_counter()
for _ in range(reduces):
    reduce_all()
print(json.dumps({"ms": 1000 * (time.perf_counter() - started) / reduces}))
"""


def prepare(model: str, work: Path):
    """(spec, transform graph dir, train pattern, eval pattern, train examples) after one local run."""
    from lamina.pipeline.local_runner import run_pipeline
    from lamina.pipeline.runs.summary import latest_run_outputs
    from tests.helpers import digits_spec, make_spec

    root = work / model
    if model == "penguins":
        from lamina.pipeline.cli.datasets import write_penguins_csv

        write_penguins_csv(str(root / "data" / "penguins.csv"))
        spec = make_spec(root, training={"epochs": 1})
    else:
        from lamina.pipeline.cli.datasets import write_digits_folder

        write_digits_folder(str(root / "data" / "digits"))
        spec = digits_spec(root, training={"epochs": 1})
    from lamina.pipeline.runs.summary import ModelNotBlessedError

    try:  # one epoch: only the examples and the transform graph matter here, blessed or not
        run_pipeline(spec, stream=io.StringIO())
    except ModelNotBlessedError:
        pass
    outputs = latest_run_outputs(spec)
    examples = [v.uri for (_, key), v in outputs.items() if key == "examples"][0]  # the ExampleGen's
    train = os.path.join(examples, "Split-train", "*")
    from lamina.models.datasets import count_records, expand_file_patterns

    return spec, outputs[("Transform", "transform_graph")].uri, train, os.path.join(examples, "Split-eval", "*"), \
        count_records(expand_file_patterns([train]))


def trained(spec, graph, train, evals, out: Path, strategy: str, workers: int, epochs: int, global_batch: int):
    """(seconds per epoch after the first, the chief's output) of one launch."""
    from lamina.models.launcher import launch_workers
    from lamina.spec import DistributionSpec

    replicas = workers if strategy == "multi_worker" else 2
    changed = spec.model_copy(update={"training": spec.training.model_copy(update={
        "epochs": epochs, "batch_size": global_batch // replicas, "early_stopping": None,
        "distribution": DistributionSpec(strategy=strategy, workers=workers)})})
    stream = io.StringIO()
    launch_workers(changed, graph, [train], [evals], str(out / "serving"), str(out / "model_run" / "1"),
                   stream=stream)
    seconds = [float(s) for s in re.findall(r"^    epoch +\d+/\d+ +([\d.]+)s", stream.getvalue(), re.M)]
    return statistics.median(seconds[1:]), stream.getvalue()


def allreduce_ms(shapes, reduces: int) -> float:
    from lamina.models.launcher import free_ports

    ports = free_ports(2)
    hosts = [f"127.0.0.1:{p}" for p in ports]
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen([sys.executable, "-c", ALLREDUCE_WORKER, json.dumps(shapes), str(reduces)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    return max(json.loads(o.strip().splitlines()[-1])["ms"] for o in outs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["penguins", "digits"], choices=["penguins", "digits"])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--reduces", type=int, default=200)
    parser.add_argument("--work", default="/tmp/lamina-dist")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    import shutil

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    from lamina.models.artifacts import load_keras_model

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "models": {}}
    for model in args.models:
        spec, graph, train, evals, count = prepare(model, work)
        global_batch = spec.training.batch_size * 2
        rows = {}
        for name, strategy, workers in (("1 worker", "multi_worker", 1), ("2 workers", "multi_worker", 2),
                                        ("2 devices (mirrored)", "mirrored", 1)):
            started = time.perf_counter()
            epoch_s, _ = trained(spec, graph, train, evals, work / model / name.replace(" ", "_"), strategy,
                                 workers, args.epochs, global_batch)
            rows[name] = {"epoch_s": epoch_s, "examples_per_s": count / epoch_s,
                          "launch_to_end_s": time.perf_counter() - started}
            print(f"{model:9} {name:22} {count / epoch_s:9.0f} examples/s  (epoch {epoch_s:.3f}s, "
                  f"whole launch {rows[name]['launch_to_end_s']:.1f}s)", flush=True)
        weights = load_keras_model(str(work / model / "2_workers" / "serving")).trainable_weights
        shapes = [list(w.shape) for w in weights]
        steps = -(-count // global_batch)
        reduce_ms = allreduce_ms(shapes, args.reduces)
        step_ms = 1000 * rows["2 workers"]["epoch_s"] / steps
        results["models"][model] = {"train_examples": count, "global_batch": global_batch,
                                    "parameters": int(sum(math.prod(s) for s in shapes)),
                                    "settings": rows, "allreduce_ms": reduce_ms, "step_ms_2_workers": step_ms,
                                    "communication_share": reduce_ms / step_ms}
        print(f"{model:9} all-reduce of the gradients {reduce_ms:.2f} ms; a 2-worker step {step_ms:.2f} ms: "
              f"{100 * reduce_ms / step_ms:.0f}% of the step", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
