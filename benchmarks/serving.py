"""Serving latency and throughput: gRPC and REST, batching off and on, 1/8/32 clients, side by side
with the in-process model call on the same inputs (the floor).

    .venv/bin/python benchmarks/serving.py --penguins PUSH_DIR [--image PUSH_DIR] [--seconds 3]

PUSH_DIR is a pushed model folder (`<push_dir>/<model name>`), e.g. after `make demo`:
lamina_demo/penguins/serving_models/penguins; after `lamina demo --images`:
lamina_demo/digits/serving_models/digits. Without --penguins the penguins pipeline is run first
in a temporary folder. The servers are `lamina serve` subprocesses (one with batching, one
without) over one models.config naming both models. Each gRPC or REST client is a process of
its own (forked from this one, with its own channel or HTTP connection), so the server's share
of the CPU is what the figures show, not a client thread's fight for this process's GIL; each
sends requests that were serialized before the clock starts, one row per request. Penguins
requests are one serialized tf.Example to serving_default; image requests are one PNG to
serving_raw. The in-process row calls the loaded signature from threads here: the floor. The
"served call" row makes, in this process, the call the server makes (serving.signature).
"""

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def penguin_inputs(model_dir):
    import csv

    from lamina.pipeline.cli.datasets import write_penguins_csv
    from lamina.rows import row_to_example

    path = os.path.join(tempfile.mkdtemp(), "penguins.csv")
    write_penguins_csv(path)
    model = tf.saved_model.load(model_dir)
    raw = model.signatures["serving_raw"].structured_input_signature[1]
    dtypes = {k: v.dtype.as_datatype_enum for k, v in raw.items()}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))[:64]
    return [{"inputs": np.array([row_to_example(r, dtypes, n).SerializeToString()], dtype=object)}
            for n, r in enumerate(rows, 1)], "serving_default"


def image_inputs(model_dir):
    from PIL import Image
    from sklearn.datasets import load_digits

    model = tf.saved_model.load(model_dir)
    key = next(iter(model.signatures["serving_raw"].structured_input_signature[1]))
    images = load_digits().images[:64]
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
        out.append({key: np.array([buffer.getvalue()], dtype=object)})
    return out, "serving_raw"


def run_clients(clients, seconds, make_sender):
    """Each client thread sends requests back to back for `seconds`; returns latencies and throughput."""
    latencies, lock = [], threading.Lock()
    stop = time.perf_counter() + seconds
    errors = []

    def worker(k):
        send = make_sender(k)
        local = []
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                send(i)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e)[:200])
            local.append(time.perf_counter() - t0)
            i += clients
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "rps": len(latencies) / elapsed, "requests": len(latencies), "errors": len(errors)}


PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


def _client_process(kind, target, payloads, seconds, barrier, queue, k):
    """One client in its own process: sends pre-serialized requests back to back, reports latencies."""
    latencies, errors = [], 0
    if kind == "grpc":
        channel = grpc.insecure_channel(target)
        call = channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out: no client-side proto work

        def send(payload):
            call(payload, timeout=60.0)
    else:
        import http.client
        from urllib.parse import urlparse

        url = urlparse(target)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)

        def send(payload):
            conn.request("POST", url.path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(response.status)
    for i in range(20):  # warm: connection, server threads, the model's first calls
        send(payloads[i % len(payloads)])
    barrier.wait()  # every client warm: all start together
    stop, i = time.perf_counter() + seconds, k
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        try:
            send(payloads[i % len(payloads)])
        except Exception:  # noqa: BLE001 - counted and reported
            errors += 1
        latencies.append(time.perf_counter() - t0)
        i += 1
    queue.put((latencies, errors))


def run_client_processes(clients, seconds, kind, target, payloads):
    """`clients` forked processes send requests for `seconds` from the same start; latencies and throughput."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # the payloads are inherited; nothing gRPC is open here
    queue, barrier = ctx.Queue(), ctx.Barrier(clients)
    procs = [ctx.Process(target=_client_process, args=(kind, target, payloads, seconds, barrier, queue, k))
             for k in range(clients)]
    for p in procs:
        p.start()
    latencies, errors = [], 0
    for _ in procs:
        local, failed = queue.get(timeout=seconds + 120)
        latencies += local
        errors += failed
    for p in procs:
        p.join()
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "rps": len(latencies) / seconds, "requests": len(latencies), "errors": errors}


def grpc_payloads(model, signature, inputs):
    out = []
    for x in inputs:
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = model, signature
        for key, value in x.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        out.append(request.SerializeToString())
    return out


def rest_payloads(signature, inputs):
    return [json.dumps({"signature_name": signature, "instances": [
        {k: {"b64": base64.b64encode(v[0]).decode()} for k, v in x.items()}]}).encode() for x in inputs]


def in_process_sender(model_dir, signature, inputs, served=False):
    """The public call of the loaded signature, or (`served`) the call the server makes (ServedSignature:
    the graph function called directly, on the caller's thread)."""
    from lamina.serving.signature import ServedSignature

    fn = tf.saved_model.load(model_dir).signatures[signature]
    if served:
        fn = ServedSignature(fn, signature)
    tensors = [{k: tf.constant(v) for k, v in x.items()} for x in inputs]
    fn(**tensors[0])  # traced before timing

    def make(_k):
        return lambda i: {k: v.numpy() for k, v in fn(**tensors[i % len(tensors)]).items()}
    return make


def start_server(config, batching):
    args = [sys.executable, "-m", "lamina.pipeline.cli.commands", "serve", "--model-config-file", config, "--port", "0",
            "--rest-port", "0"]
    if batching:
        args += ["--enable-batching", "--max-batch-size", "32", "--batch-timeout-micros", "2000",
                 "--num-batch-threads", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    line = ""
    while "gRPC on" not in line:
        line = proc.stdout.readline()
        if proc.poll() is not None:
            raise RuntimeError("lamina serve did not start")
    target = line.split("gRPC on ")[1].split(",")[0].strip()
    url = line.split("REST on ")[1].split(" ")[0].strip()
    return proc, target, url


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--penguins", help="pushed penguins model folder (<push_dir>/penguins)")
    parser.add_argument("--image", help="pushed image model folder (<push_dir>/digits)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if not args.penguins:
        import shutil

        from lamina.pipeline.cli.datasets import write_penguins_csv
        from lamina.pipeline.local_runner import run_pipeline
        from lamina.spec import load_spec

        work = tempfile.mkdtemp()
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "penguins",
                                 "spec.yaml"), os.path.join(work, "spec.yaml"))
        write_penguins_csv(os.path.join(work, "data", "penguins.csv"))
        spec = load_spec(os.path.join(work, "spec.yaml"))
        run_pipeline(spec)
        args.penguins = os.path.join(spec.push_dir, spec.serving.model_name)

    models = {"penguins": (args.penguins, penguin_inputs)}
    if args.image and os.path.isdir(args.image):
        models[os.path.basename(os.path.normpath(args.image))] = (args.image, image_inputs)
    config = os.path.join(tempfile.mkdtemp(), "models.config")
    with open(config, "w") as f:
        f.write("model_config_list {\n" + "".join(
            f'  config {{ name: "{name}" base_path: "{os.path.abspath(path)}" }}\n'
            for name, (path, _) in models.items()) + "}\n")
    clients = [int(c) for c in args.clients.split(",")]
    results = []
    servers = {False: start_server(config, False), True: start_server(config, True)}
    try:
        for name, (path, make_inputs) in models.items():
            version = max(int(v) for v in os.listdir(path) if v.isdigit())
            inputs, signature = make_inputs(os.path.join(path, str(version)))
            floors = {label: in_process_sender(os.path.join(path, str(version)), signature, inputs,
                                               served=label == "served call")
                      for label in ("in-process", "served call")}
            senders = {("in-process", "-"): None, ("served call", "-"): None}
            for batching, (_, target, url) in servers.items():
                label = "on" if batching else "off"
                senders[("grpc", label)] = (target, grpc_payloads(name, signature, inputs))
                senders[("rest", label)] = (f"{url}/v1/models/{name}:predict", rest_payloads(signature, inputs))
            for n in clients:  # every configuration at one client count runs back to back
                for (api, batching), sender in senders.items():
                    if sender is None:
                        run_clients(1, 0.3, floors[api])  # warm the path
                        r = run_clients(n, args.seconds, floors[api])
                    else:
                        r = run_client_processes(n, args.seconds, api, *sender)
                    r.update(model=name, api=api, batching=batching, clients=n)
                    results.append(r)
                    print(f"{name:9s} {api:10s} batching={batching:3s} clients={n:2d}  p50 {r['p50_ms']:7.2f} ms  "
                          f"p99 {r['p99_ms']:7.2f} ms  {r['rps']:8.1f} req/s  errors {r['errors']}", flush=True)
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)

    print("\nSummary")
    for name in models:
        def get(api, batching, n):
            return next(r for r in results if r["model"] == name and r["api"] == api and r["batching"] == batching
                        and r["clients"] == n)
        floor = get("in-process", "-", 1)["p50_ms"]
        served = get("served call", "-", 1)["p50_ms"]
        grpc_p50 = get("grpc", "off", 1)["p50_ms"]
        rest_p50 = get("rest", "off", 1)["p50_ms"]
        print(f"  {name}: in-process p50 {floor:.2f} ms (the server's own call {served:.2f} ms); gRPC p50 "
              f"{grpc_p50:.2f} ms (overhead {grpc_p50 - floor:.2f} ms; {grpc_p50 - served:.2f} ms over the server's "
              f"call); REST p50 {rest_p50:.2f} ms (overhead {rest_p50 - floor:.2f} ms)")
        top = max(clients)
        on, off = get("grpc", "on", top)["rps"], get("grpc", "off", top)["rps"]
        print(f"  {name}: gRPC throughput at {top} clients: batching {on:.0f} req/s vs {off:.0f} without "
              f"({on / off:.2f}x)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
