"""What a gRPC Predict costs before Lamina's servicer does anything: one server process, several
handlers side by side, one client in another process sending one request at a time.

    .venv/bin/python benchmarks/serving_floor.py --penguins PUSH_DIR/penguins [--requests 3000] [--rounds 3]

The handlers, all in one `grpc.server` (a pool of 64 threads, as `lamina serve` has):
- fixed bytes: returns 10 bytes without reading the request (the round trip's floor);
- fixed protos: parses the PredictRequest and returns a PredictResponse made once;
- Python 0.7 ms: spins for 0.7 ms in Python, then returns fixed bytes;
- model call only: the call the server makes (the request's tf.Example to a tensor, the loaded
  signature on the single-threaded executor, numpy answers), then fixed bytes.
Beside them, `lamina serve`'s own gRPC server (LaminaServer, in the same process) answers the same
PredictRequest. Before the rounds, the model call is timed in a loop here, back to back and after a
0.5 ms sleep each, and the handler's own model call is timed inside it.

The client process is forked before gRPC starts in this one, and sends requests serialized before the
clock starts. Rounds alternate the handlers. Latencies are per request, p50 and p90, in ms.
"""

import argparse
import multiprocessing as mp
import os
import tempfile
import time

PREDICT = "/tensorflow.serving.PredictionService/Predict"


def _client_loop(jobs, results, requests):
    while True:
        job = jobs.get()
        if job is None:
            return
        import grpc

        target, method, payload = job
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(method)
            for _ in range(200):
                call(payload)
            latencies = []
            for _ in range(requests):
                started = time.perf_counter()
                call(payload)
                latencies.append(time.perf_counter() - started)
        results.put(latencies)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--penguins", required=True, help="pushed penguins model folder (<push_dir>/penguins)")
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per handler and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    ctx = mp.get_context("fork")  # before gRPC starts here: a fork after it would inherit its threads
    jobs, results = ctx.Queue(), ctx.Queue()
    client = ctx.Process(target=_client_loop, args=(jobs, results, args.requests), daemon=True)
    client.start()

    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from lamina.serving.server import LaminaServer
    from lamina.serving.signature import ServedSignature
    from serving import grpc_payloads, penguin_inputs, percentile  # benchmarks/ is on sys.path, as for scripts in it

    versions = sorted((d for d in os.listdir(args.penguins) if d.isdigit()), key=int)
    model_dir = os.path.join(args.penguins, versions[-1])
    inputs, key = penguin_inputs(model_dir)
    payload = grpc_payloads("penguins", key, inputs[:1])[0]
    signature = ServedSignature(tf.saved_model.load(model_dir).signatures[key], key)
    examples = inputs[0]["inputs"]

    def model_call():
        return {k: v.numpy() for k, v in signature(inputs=tf.constant(examples)).items()}

    model_call()
    loop, paused = [], []
    for _ in range(2000):
        started = time.perf_counter()
        model_call()
        loop.append(time.perf_counter() - started)
    for _ in range(1000):
        time.sleep(0.0005)  # the pause itself is what is measured: a request arriving after an idle gap
        started = time.perf_counter()
        model_call()
        paused.append(time.perf_counter() - started)

    inside = []

    def model_handler(_request, _context):
        started = time.perf_counter()
        model_call()
        inside.append(time.perf_counter() - started)
        return b"0123456789"

    def spin_handler(_request, _context):
        until = time.perf_counter() + 0.0007
        while time.perf_counter() < until:
            pass
        return b"0123456789"

    response = predict_pb2.PredictResponse()
    response.model_spec.name = "penguins"
    response.outputs["scores"].float_val.extend([0.1, 0.2, 0.7])
    handlers = {
        "fixed bytes": grpc.unary_unary_rpc_method_handler(lambda _r, _c: b"0123456789"),
        "fixed protos": grpc.unary_unary_rpc_method_handler(
            lambda _r, _c: response, request_deserializer=predict_pb2.PredictRequest.FromString,
            response_serializer=predict_pb2.PredictResponse.SerializeToString),
        "Python 0.7 ms": grpc.unary_unary_rpc_method_handler(spin_handler),
        "model call only": grpc.unary_unary_rpc_method_handler(model_handler),
    }
    bare = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    bare.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "floor.Floor", {name.replace(" ", "_").replace(".", "_"): h for name, h in handlers.items()}),))
    bare_target = f"127.0.0.1:{bare.add_insecure_port('127.0.0.1:0')}"
    bare.start()
    source = tempfile.mkdtemp()
    os.symlink(os.path.abspath(args.penguins), os.path.join(source, "penguins"))
    server = LaminaServer(source, port=0, rest_port=None).start()

    targets = [(name, bare_target, "/floor.Floor/" + name.replace(" ", "_").replace(".", "_")) for name in handlers]
    targets.append(("lamina serve Predict", server.target, PREDICT))
    figures = {name: [] for name, _, _ in targets}
    try:
        for _ in range(args.rounds):
            for name, target, method in targets:
                jobs.put((target, method, payload))
                figures[name].append(results.get(timeout=600))
    finally:
        jobs.put(None)
        client.join(timeout=30)
        server.stop()
        bare.stop(None)

    print(f"model call in a loop here: p50 {percentile(loop, 50):.3f} ms; after a 0.5 ms sleep: "
          f"{percentile(paused, 50):.3f} ms; inside the handler: {percentile(inside, 50):.3f} ms")
    print(f"{'handler':22s} " + "  ".join(f"round {r + 1} p50/p90" for r in range(args.rounds)))
    for name, rounds in figures.items():
        print(f"{name:22s} " + "  ".join(f"{percentile(v, 50):6.3f} /{percentile(v, 90):6.3f}" for v in rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
