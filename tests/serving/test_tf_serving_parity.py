"""What moving to the official `tensorflow_model_server` must not change: batching parameters as
TF Serving reads them, its metric names, models.config polling, and its command-line flags."""

import os
import subprocess
import sys
import threading

import grpc
import numpy as np
import prometheus_client
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from lamina.serving.batching import Batcher, BatchingParameters, read_batching_config
from lamina.serving.protocol import ServingError
from lamina.serving.server import LaminaServer
from tests.serving.toy import expected_y, write_toy_model


def double(x):
    return {"y": x * 2.0}


def recording_batcher(params, calls, gate=None, entered=None):
    """A started Batcher whose model doubles its input and records the rows of every call.

    With `gate`, each call sets `entered` and then waits for the gate to open."""
    def call(fn, tensors):
        if gate is not None:
            entered.set()
            gate.wait(10)
        calls.append(int(tensors["x"].shape[0]))
        return {k: v.numpy() for k, v in fn(**tensors).items()}

    return Batcher(params, call=call).start()


def rows(n, start=0):
    return tf.constant(np.arange(start, start + n, dtype=np.float32).reshape(n, 1))


def test_calls_are_padded_to_the_next_allowed_batch_size_and_answers_trimmed():
    calls = []
    batcher = recording_batcher(BatchingParameters(max_batch_size=8, allowed_batch_sizes=(2, 4, 8),
                                                   batch_timeout_micros=0), calls)
    try:
        out = batcher.run(double, {"x": rows(3)}, key="k")
        np.testing.assert_array_equal(out["y"], [[0.0], [2.0], [4.0]])
        out = batcher.run(double, {"x": rows(5, 10)}, key="k")
        np.testing.assert_array_equal(out["y"][:, 0], [20.0, 22.0, 24.0, 26.0, 28.0])
    finally:
        batcher.stop()
    assert calls == [4, 8]


def test_a_request_over_max_batch_size_is_refused_as_tf_serving_refuses_it():
    batcher = recording_batcher(BatchingParameters(max_batch_size=4), [])
    try:
        with pytest.raises(ServingError) as info:
            batcher.run(double, {"x": rows(5)}, key="k")
    finally:
        batcher.stop()
    assert (info.value.code, str(info.value)) == ("INVALID_ARGUMENT",
                                                     "Task size 5 is larger than maximum input batch size 4.")


def test_large_batch_splitting_runs_a_big_request_in_pieces_and_joins_the_answer():
    calls = []
    params = BatchingParameters(max_batch_size=64, enable_large_batch_splitting=True, max_execution_batch_size=8,
                                allowed_batch_sizes=(4, 8), batch_timeout_micros=0, num_batch_threads=2)
    batcher = recording_batcher(params, calls)
    try:
        out = batcher.run(double, {"x": rows(21)}, key="k")
    finally:
        batcher.stop()
    np.testing.assert_array_equal(out["y"][:, 0], np.arange(21) * 2.0)
    assert sorted(calls) == [8, 8, 8]  # 8 + 8 + 5, the last padded to 8
    assert max(calls) <= 8


def test_max_enqueued_batches_counts_batches_not_requests():
    gate, entered, calls = threading.Event(), threading.Event(), []
    params = BatchingParameters(max_batch_size=4, max_enqueued_batches=2, num_batch_threads=1,
                                batch_timeout_micros=0)
    batcher = recording_batcher(params, calls, gate, entered)
    results, errors = [], []

    def send(n):
        try:
            results.append(batcher.run(double, {"x": rows(n)}, key="k"))
        except ServingError as e:
            errors.append(e)

    threads = [threading.Thread(target=send, args=(4,))]
    threads[0].start()
    assert entered.wait(10)  # the worker holds the first batch at the gate; the queue is empty again
    assert batcher.queued_rows() == 0
    queued = 0
    for n in (1, 1, 1, 1, 2, 2):  # 8 rows: exactly 2 batches of 4
        threads.append(threading.Thread(target=send, args=(n,)))
        threads[-1].start()
        queued += n
        assert batcher.wait_for_queued(queued, timeout=10)
    assert errors == [] and batcher.queued_rows() == 8
    send(1)  # a ninth row would need a third batch
    assert [(e.code, str(e)) for e in errors] == [
        ("UNAVAILABLE", "The batch queue is full (2 batches of 2 waiting); retry later.")]
    gate.set()
    for t in threads:
        t.join(10)
    batcher.stop()
    assert len(results) == 7 and sum(calls) == 12


@pytest.mark.parametrize("text, message", [
    ("max_batch_size { value: 8 }\npad_variable_length_inputs: true\n",
     "pad_variable_length_inputs is not supported: Lamina merges only requests whose inner shapes agree"),
    ("max_batch_size { value: 8 }\nallowed_batch_sizes: 2\nallowed_batch_sizes: 4\n",
     "the last of allowed_batch_sizes (4) must equal max_batch_size (8)."),
    ("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 2\nallowed_batch_sizes: 8\n",
     "allowed_batch_sizes must be positive and strictly increasing, got [4, 2, 8]."),
    ("max_batch_size { value: 8 }\nmax_execution_batch_size { value: 4 }\n",
     "max_execution_batch_size applies only with enable_large_batch_splitting true."),
    ("enable_large_batch_splitting { value: maybe }\n", "enable_large_batch_splitting must be true or false"),
], ids=["pad-variable-length", "last-size", "not-increasing", "execution-without-splitting", "bad-bool"])
def test_batching_config_fields_are_honoured_or_refused_by_name(tmp_path, text, message):
    path = tmp_path / "batching.config"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_batching_config(str(path))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_a_tf_serving_batching_config_reads_into_every_field(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 500 }\n"
                    "max_enqueued_batches { value: 16 }\nnum_batch_threads { value: 2 }\n"
                    "thread_pool_name { value: \"pool_a\" }\nenable_large_batch_splitting { value: true }\n"
                    "max_execution_batch_size { value: 32 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 32\n"
                    "pad_variable_length_inputs: false\n")
    assert read_batching_config(str(path)) == BatchingParameters(
        max_batch_size=128, batch_timeout_micros=500, max_enqueued_batches=16, num_batch_threads=2,
        thread_pool_name="pool_a", enable_large_batch_splitting=True, max_execution_batch_size=32,
        allowed_batch_sizes=(8, 32))


def _predict(stub, name, x):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.asarray(x, np.float32)))
    return tf.make_ndarray(stub.Predict(request, 10.0).outputs["y"])


def test_tf_serving_metric_names_sit_beside_lamina_ones(tmp_path):
    write_toy_model(str(tmp_path / "models" / "toy"), 3, warmup=True)
    params = BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8), batch_timeout_micros=0,
                                thread_pool_name="toy_pool")
    server = LaminaServer(str(tmp_path / "models"), port=0, rest_port=0, batching=params).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            np.testing.assert_allclose(_predict(stub, "toy", [[1, 2, 3]]), expected_y([[1, 2, 3]], 1.0, 3))
            with pytest.raises(grpc.RpcError):
                _predict(stub, "toy", [[1, 2, 3]] * 9)  # over max_batch_size: INVALID_ARGUMENT
        page = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10).text
    finally:
        server.stop()
    lines = page.splitlines()
    assert ':tensorflow:serving:request_count{model_name="toy",status="OK"} 1' in lines
    assert ':tensorflow:serving:request_count{model_name="toy",status="INVALID_ARGUMENT"} 1' in lines
    assert ':tensorflow:serving:request_latency_count{model_name="toy",API="predict",entrypoint="GRPC"} 2' in lines
    assert ':tensorflow:serving:runtime_latency_count{model_name="toy",API="predict",runtime="TF2"} 1' in lines
    assert ':tensorflow:serving:batching_session:padding_size_sum{thread_pool_name="toy_pool"} 3' in lines
    assert ':tensorflow:serving:batching_session:processed_batch_size_sum{thread_pool_name="toy_pool"} 4' in lines
    assert ':tensorflow:serving:batching_session:wrapped_run_count 1' in lines
    warm = [line for line in lines if line.startswith(":tensorflow:serving:model_warmup_latency_count")]
    assert warm == [f':tensorflow:serving:model_warmup_latency_count{{model_path="{tmp_path}/models/toy/3",'
                    f'status="OK"}} 1']
    # Each bucket line is cumulative and in microseconds (TF Serving's 10 * 1.8**i bounds).
    assert ':tensorflow:serving:request_latency_bucket{model_name="toy",API="predict",entrypoint="GRPC",le="10"}' \
        in page
    assert any(line.startswith("lamina_requests_total{") for line in lines)
    assert not [line for line in lines if "_created" in line]
    # The process-wide setting is the host application's: a counter of its own still has its _created series.
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("host_app_events", "A host application's counter.", registry=registry).inc()
    assert registry.get_sample_value("host_app_events_created") is not None


def _status(stub, name):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return [(s.version, s.state) for s in stub.GetModelStatus(request, 5.0).model_version_status]


def _write_config(path, models):
    entries = "".join(f'  config {{ name: "{n}" base_path: "{b}" model_platform: "tensorflow" }}\n'
                      for n, b in models)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"model_config_list {{\n{entries}}}\n")
    os.replace(tmp, path)


def test_models_config_is_polled_adding_and_removing_models(tmp_path):
    write_toy_model(str(tmp_path / "a"), 1)
    write_toy_model(str(tmp_path / "b"), 2, scale=2.0)
    config = tmp_path / "models.config"
    _write_config(config, [("alpha", tmp_path / "a")])
    server = LaminaServer(str(config), port=0, poll_seconds=0.1, config_poll_seconds=0.2).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            models = model_service_pb2_grpc.ModelServiceStub(channel)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert _status(models, "alpha") == [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
            _write_config(config, [("beta", tmp_path / "b")])
            assert server.registry.wait_for_version("beta", 2, timeout=20)
            assert server.registry.wait_for_event(lambda ev: any("released alpha version 1" in e for e in ev), 20)
            np.testing.assert_allclose(_predict(stub, "beta", [[1, 1, 1]]), expected_y([[1, 1, 1]], 2.0, 2))
            with pytest.raises(grpc.RpcError) as info:
                _predict(stub, "alpha", [[1, 1, 1]])
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            config.write_text("model_config_list { config { name: ")  # a half-written edit
            assert server.registry.wait_for_event(lambda ev: "kept the model config that serves" in ev[-1], 20)
            np.testing.assert_allclose(_predict(stub, "beta", [[1, 1, 1]]), expected_y([[1, 1, 1]], 2.0, 2))
    finally:
        server.stop()


def test_tensorflow_model_server_flags_run_lamina_serve(tmp_path):
    """A script written for tensorflow_model_server: its single-model flags, =true booleans, REST off."""
    write_toy_model(str(tmp_path / "toy"), 4)
    (tmp_path / "batching.config").write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 0 }\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lamina.pipeline.cli.commands", "serve", "--port=0", "--rest_api_port=0",
         "--model_name=penguin_toy", f"--model_base_path={tmp_path / 'toy'}", "--enable_batching=true",
         f"--batching_parameters_file={tmp_path / 'batching.config'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        line = ""
        while "gRPC on" not in line and proc.poll() is None:
            line = proc.stdout.readline()
        assert "gRPC on" in line, line
        assert "REST on" not in line and "batching on" in line and "penguin_toy" in line
        target = line.split("gRPC on ")[1].split(" ")[0].rstrip(",")
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            np.testing.assert_allclose(_predict(stub, "penguin_toy", [[1, 2, 3]]), expected_y([[1, 2, 3]], 1.0, 4))
    finally:
        proc.terminate()
        proc.wait(30)
