"""Load and fault tests on loopback: many clients with batching, a hot swap under load, a few
hundred bad requests, SIGTERM during load. Bounded in count and time; no timing assertions."""

import base64
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from lamina.serving.batching import BatchingParameters
from lamina.rows import row_to_example
from lamina.serving.server import LaminaServer
from tests.helpers import read_csv
from tests.serving.toy import expected_y, write_toy_model

CLIENTS = 32


def _run_clients(n_requests: int, clients: int, send):
    """Calls send(i) for i in range(n_requests) from `clients` threads; returns the results by i."""
    results = [None] * n_requests
    counter = itertools.count()
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(counter)
            if i >= n_requests:
                return
            try:
                results[i] = send(i)
            except Exception as e:  # noqa: BLE001 - every failure is reported by the caller
                results[i] = e

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture(scope="module")
def penguin_requests(penguins_run):
    """Serialized tf.Examples of every penguin row, and the in-process model's scores for each alone."""
    spec, result = penguins_run
    model = tf.saved_model.load(result.pushed_model_dir)
    raw = model.signatures["serving_raw"].structured_input_signature[1]
    dtypes = {k: v.dtype.as_datatype_enum for k, v in raw.items()}
    rows = read_csv(os.path.join(spec.base_dir, "data", "penguins.csv"))
    examples = [row_to_example(r, dtypes, n).SerializeToString() for n, r in enumerate(rows, 1)]
    fn = model.signatures["serving_default"]
    expected = [fn(inputs=tf.constant([e]))["scores"].numpy()[0] for e in examples]
    return examples, expected


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_32_clients_10000_predicts_with_batching_all_equal_in_process(penguins_run, penguin_requests):
    spec, _ = penguins_run
    examples, expected = penguin_requests
    params = BatchingParameters(max_batch_size=32, batch_timeout_micros=2000, num_batch_threads=2)
    srv = LaminaServer(spec.push_dir, port=0, batching=params, max_workers=CLIENTS).start()
    try:
        channel = grpc.insecure_channel(srv.target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def send(i):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "penguins"
            request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([examples[i % len(examples)]]))
            return tf.make_ndarray(stub.Predict(request, 60.0).outputs["scores"])[0]

        started = time.perf_counter()
        results = _run_clients(10_000, CLIENTS, send)
        elapsed = time.perf_counter() - started
        labels = {"model": "penguins", "version": str(srv.registry.get("penguins").version),
                  "signature": "serving_default"}
        calls = srv.metrics.registry.get_sample_value("lamina_batch_size_count", labels)
        rows = srv.metrics.registry.get_sample_value("lamina_batch_size_sum", labels)
        channel.close()
    finally:
        srv.stop()
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    worst = max(float(np.max(np.abs(r - expected[i % len(examples)]))) for i, r in enumerate(results))
    # Merged calls run the same float32 kernels on more rows; the answers match to float32 rounding.
    assert worst <= 1e-6, worst
    assert rows == 10_000
    assert calls < 10_000  # requests were merged
    print(f"10000 Predicts from {CLIENTS} clients in {elapsed:.1f}s, {calls:.0f} model calls, max |diff| {worst:.2e}")


@pytest.mark.timeout(300)
def test_hot_swap_under_load_fails_nothing_and_then_answers_from_the_new_version(tmp_path):
    root = tmp_path / "models"
    write_toy_model(str(root / "toy"), 1, scale=1.0)
    write_toy_model(str(tmp_path / "staging"), 2, scale=2.0)
    params = BatchingParameters(max_batch_size=32, batch_timeout_micros=1000, num_batch_threads=2)
    srv = LaminaServer(str(root), port=0, poll_seconds=0.05, batching=params, max_workers=CLIENTS).start()
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(3000, 1, 3)).astype(np.float32)
    swapped_at = {}
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.target))

        def send(i):
            if i == 1000:  # push version 2 while the others are in flight (a rename: the push appears whole)
                os.rename(tmp_path / "staging" / "2", root / "toy" / "2")
            if i > 1000 and "t" not in swapped_at and srv.registry.versions("toy") == [2]:
                swapped_at["t"] = i
            sent = time.monotonic()
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "toy"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(inputs[i]))
            response = stub.Predict(request, 30.0)
            return sent, response.model_spec.version.value, tf.make_ndarray(response.outputs["y"])

        results = _run_clients(len(inputs), CLIENTS, send)
        events = list(srv.registry.events)
    finally:
        srv.stop()
    assert [r for r in results if isinstance(r, Exception)] == []
    for i, (_, version, y) in enumerate(results):
        np.testing.assert_allclose(y, expected_y(inputs[i], float(version), version), rtol=1e-6)
    assert events[:2] == ["serving toy version 1", "serving toy version 2 (was 1)"]
    assert events[-1] == "released toy version 1"
    first_new = swapped_at["t"]
    assert all(v == 2 for _, v, _ in results[first_new + CLIENTS:])  # requests started after the swap
    assert sum(v == 1 for _, v, _ in results) >= 1000


def _bad_requests(rng: random.Random, n: int):
    """(kind, request-builder args) for n generated bad Predict requests against the penguins model."""
    good = {"island": ["Biscoe"], "sex": ["female"], "bill_length_mm": [45.0], "bill_depth_mm": [15.0],
            "flipper_length_mm": [210.0], "body_mass_g": [4500.0]}
    kinds = ["wrong_dtype", "wrong_shape", "missing_input", "extra_input", "unknown_signature", "unknown_model",
             "oversize", "ragged"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        inputs = {k: np.array(v, dtype=object if isinstance(v[0], str) else np.float32) for k, v in good.items()}
        signature, model = "serving_raw", "penguins"
        key = rng.choice(sorted(good))
        if kind == "wrong_dtype":
            inputs[key] = np.array([1], np.int64) if inputs[key].dtype == object else np.array(["x"], object)
        elif kind == "wrong_shape":
            inputs[key] = np.repeat(inputs[key], 2).reshape(1, 2)
        elif kind == "missing_input":
            inputs.pop(key)
        elif kind == "extra_input":
            inputs[f"feature_{rng.randint(0, 999)}"] = np.array([1.0], np.float32)
        elif kind == "unknown_signature":
            signature = f"sig_{rng.randint(0, 999)}"
        elif kind == "unknown_model":
            model = f"model_{rng.randint(0, 999)}"
        elif kind == "oversize":
            inputs["island"] = np.array(["x" * 70_000], object)
        elif kind == "ragged":
            inputs[key] = np.repeat(inputs[key], rng.randint(2, 5))
        yield kind, model, signature, inputs


EXPECTED_CODE = {"wrong_dtype": grpc.StatusCode.INVALID_ARGUMENT, "wrong_shape": grpc.StatusCode.INVALID_ARGUMENT,
                 "missing_input": grpc.StatusCode.INVALID_ARGUMENT, "extra_input": grpc.StatusCode.INVALID_ARGUMENT,
                 "unknown_signature": grpc.StatusCode.NOT_FOUND, "unknown_model": grpc.StatusCode.NOT_FOUND,
                 "oversize": grpc.StatusCode.RESOURCE_EXHAUSTED, "ragged": grpc.StatusCode.INVALID_ARGUMENT}


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_hundreds_of_bad_requests_get_the_right_codes_and_the_server_stays_up(penguins_run, penguin_requests):
    spec, _ = penguins_run
    examples, expected = penguin_requests
    srv = LaminaServer(spec.push_dir, port=0, rest_port=0, max_request_bytes=64 * 1024,
                       batching=BatchingParameters()).start()
    rng = random.Random(7)
    seen = {}
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.target))
        good = predict_pb2.PredictRequest()
        good.model_spec.name = "penguins"
        good.inputs["inputs"].CopyFrom(tf.make_tensor_proto(examples[:3]))
        for n, (kind, model, signature, inputs) in enumerate(_bad_requests(rng, 240)):
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = model, signature
            for k, v in inputs.items():
                request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(request, 10.0)
            assert info.value.code() == EXPECTED_CODE[kind], (kind, info.value.details())
            seen[kind] = seen.get(kind, 0) + 1
            if n % 20 == 0:
                np.testing.assert_allclose(tf.make_ndarray(stub.Predict(good, 10.0).outputs["scores"]),
                                           expected[:3], atol=1e-6)
        # Bad examples (a string where a float goes, a feature the model requires left out) and bytes
        # that are no tf.Example at all, through Classify.
        for n in range(40):
            request = classification_pb2.ClassificationRequest()
            request.model_spec.name = "penguins"
            ex = request.input.example_list.examples.add()
            ex.features.feature["bill_length_mm"].bytes_list.value.append(os.urandom(8))
            with pytest.raises(grpc.RpcError) as info:
                stub.Classify(request, 10.0)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        garbage = predict_pb2.PredictRequest()
        garbage.model_spec.name = "penguins"
        garbage.inputs["inputs"].CopyFrom(tf.make_tensor_proto([b"\xff\x00not an example"]))
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(garbage, 10.0)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # REST: invalid base64, non-UTF-8 bodies, bodies over the limit, unknown models.
        url = f"{srv.rest_url}/v1/models/penguins:predict"
        rest_cases = [
            (b'{"instances": [{"b64": "%%%%"}]}', 400),
            (b'{"instances": ["\xc3\x28"]}', 400),
            (b'{"instances": [' + b'1,' * 40_000 + b'1]}', 413),
            (b'{"signature_name": "serving_raw", "instances": [{"island": 3}]}', 400),
        ]
        for n in range(60):
            body, status = rest_cases[n % len(rest_cases)]
            answer = requests.post(url, data=body, timeout=10)
            assert answer.status_code == status, (body[:40], answer.text)
            assert answer.json()["error"]
        assert requests.post(f"{srv.rest_url}/v1/models/walrus:predict", json={"instances": []},
                             timeout=10).status_code == 404
        b64 = [{"b64": base64.b64encode(e).decode()} for e in examples[:3]]
        answer = requests.post(url, json={"instances": b64}, timeout=10)
        np.testing.assert_allclose([p["scores"] for p in answer.json()["predictions"]], expected[:3], atol=1e-6)
        np.testing.assert_allclose(tf.make_ndarray(stub.Predict(good, 10.0).outputs["scores"]), expected[:3],
                                   atol=1e-6)
    finally:
        srv.stop()
    assert sorted(seen) == sorted(EXPECTED_CODE) and sum(seen.values()) == 240


@pytest.mark.timeout(300)
def test_sigterm_during_load_finishes_in_flight_requests_and_exits_0(tmp_path):
    write_toy_model(str(tmp_path / "toy"), 1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # A 200 ms batch window keeps requests in flight (queued) when the signal arrives.
    proc = subprocess.Popen([sys.executable, "-m", "lamina.pipeline.cli.commands", "serve", "--model-dir", str(tmp_path),
                             "--port", "0", "--rest-port", "-1", "--enable-batching",
                             "--batch-timeout-micros", "200000", "--max-batch-size", "64"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = ""
        while "gRPC on" not in line and proc.poll() is None:
            line = proc.stdout.readline()
        target = line.split("gRPC on ")[1].split(" ")[0].rstrip(",")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
        stop_sending = threading.Event()
        loaded = threading.Event()  # set once 100 requests have been answered
        outcomes = []

        def client():
            while not stop_sending.is_set():
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "toy"
                request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones([1, 3], np.float32)))
                try:
                    response = stub.Predict(request, 30.0)
                    outcomes.append(("OK", float(tf.make_ndarray(response.outputs["y"])[0])))
                    if len(outcomes) >= 100:
                        loaded.set()
                except grpc.RpcError as e:
                    outcomes.append((e.code().name, e.details()))
                    stop_sending.set()

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        assert loaded.wait(60), f"100 answers did not come: {outcomes[-3:]}"  # signal once the load is on
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        stop_sending.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    ok = [o for o in outcomes if o[0] == "OK"]
    assert ok and all(v == 4.0 for _, v in ok)
    # Every request the server accepted (counted on its side, in the handler) was answered OK ...
    answered = int(out.split("Server stopped after ")[1].split(" ")[0])
    failures = sorted({o for o in outcomes if o[0] != "OK"})
    if os.environ.get("LAMINA_SIGTERM_LOG"):
        with open(os.environ["LAMINA_SIGTERM_LOG"], "a") as log:
            log.write(f"answered={answered} ok={len(ok)} failures={failures}\n")
    assert answered == len(ok), (answered, len(ok), failures)
    assert "none left in flight" in out
    # ... so a failure is a request the server never accepted: refused once it stopped accepting
    # (UNAVAILABLE), or cancelled by the gRPC transport as the server shut down before any
    # handler saw it (CANCELLED).
    assert {code for code, _ in failures} <= {"UNAVAILABLE", "CANCELLED"}, failures
