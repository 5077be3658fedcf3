"""Server-side batching, in-process: no batching vs Lamina's Python batcher vs TensorFlow's
in-graph batching (`tf.nondifferentiable_batch_function`), side by side in one run.

    .venv/bin/python benchmarks/batching.py [--model VERSION_DIR] [--clients 32] [--seconds 5]

VERSION_DIR is a pushed penguins version (`<push_dir>/penguins/<version>`; `make demo` writes
one); without it the penguins pipeline runs first in a temporary folder. Each of `--clients`
threads sends one serialized tf.Example to serving_default at a time, as a gRPC client would;
the figures are requests answered per second and the p50/p99 latency of one call. The three
runs use the same batching parameters (max_batch_size 32, batch_timeout_micros 2000, 4 batch
threads), so the difference is where the batching happens: Python threads merging tensors
(serving/batching.py) or TensorFlow's BatchFunction op inside the graph.
"""

import argparse
import csv
import os
import sys
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lamina.serving.batching import Batcher, BatchingParameters

PARAMS = BatchingParameters(max_batch_size=32, batch_timeout_micros=2000, num_batch_threads=4)


def penguin_model(path=None):
    if path:
        return path
    from lamina.pipeline.local_runner import run_pipeline
    from tests.helpers import make_spec

    from lamina.pipeline.cli.datasets import write_penguins_csv

    root = tempfile.mkdtemp(prefix="lamina-batching-")
    write_penguins_csv(os.path.join(root, "data", "penguins.csv"))
    return run_pipeline(make_spec(root, training={"epochs": 2}), stream=open(os.devnull, "w")).pushed_model_dir


def examples(model):
    from lamina.pipeline.cli.datasets import write_penguins_csv
    from lamina.rows import row_to_example

    path = os.path.join(tempfile.mkdtemp(), "penguins.csv")
    write_penguins_csv(path)
    dtypes = {k: v.dtype.as_datatype_enum for k, v in model.signatures["serving_raw"].structured_input_signature[1].items()}
    with open(path, newline="") as f:
        rows = [{k: v for k, v in r.items() if k != "species"} for r in list(csv.DictReader(f))[:64]]
    return [tf.constant([row_to_example(r, dtypes).SerializeToString()]) for r in rows]


def measure(call, inputs, clients, seconds):
    """(requests per second, p50 ms, p99 ms) with `clients` threads calling `call(x)` back to back."""
    latencies, stop = [[] for _ in range(clients)], threading.Event()

    def worker(k):
        i = k
        while not stop.is_set():
            started = time.perf_counter()
            call(inputs[i % len(inputs)])
            latencies[k].append(time.perf_counter() - started)
            i += clients

    for x in inputs[:4]:  # traced and warm before the clock starts
        call(x)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)  # the measuring window itself: the clients run for exactly this long
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = np.concatenate([np.asarray(v) for v in latencies]) * 1000
    return len(flat) / elapsed, float(np.percentile(flat, 50)), float(np.percentile(flat, 99))


def in_graph(fn):
    """serving_default wrapped in TensorFlow's BatchFunction op with the same parameters."""
    @tf.nondifferentiable_batch_function(PARAMS.num_batch_threads, PARAMS.max_batch_size,
                                         PARAMS.batch_timeout_micros, max_enqueued_batches=PARAMS.max_enqueued_batches)
    def batched(inputs):
        out = fn(inputs=inputs)
        return out["classes"], out["scores"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def call(inputs):
        return batched(inputs)

    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    model = tf.saved_model.load(penguin_model(args.model))
    fn = model.signatures["serving_default"]
    inputs = examples(model)
    batcher = Batcher(PARAMS).start()
    graph = in_graph(fn)
    runs = {
        "no batching": lambda x: fn(inputs=x)["scores"].numpy(),
        "Python batcher (lamina)": lambda x: batcher.run(fn, {"inputs": x}, key="penguins")["scores"],
        "in-graph BatchFunction": lambda x: graph(x)[1].numpy(),
    }
    expected = fn(inputs=inputs[0])["scores"].numpy()
    for name, call in runs.items():  # all three give the same answer
        np.testing.assert_allclose(call(inputs[0]), expected, rtol=1e-6)
    print(f"{args.clients} client threads, {args.seconds:.0f}s each, one tf.Example per request; "
          f"{os.cpu_count()} CPUs; TensorFlow {tf.__version__}")
    print(f"{'':26s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, call in runs.items():
        rate, p50, p99 = measure(call, inputs, args.clients, args.seconds)
        print(f"{name:26s} {rate:8.0f} {p50:8.2f} {p99:8.2f}", flush=True)
    batcher.stop()


if __name__ == "__main__":
    main()
