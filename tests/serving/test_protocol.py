"""The full TF Serving protocol on small real SavedModels: versions, labels, MultiInference,
status, reload, warmup, REST, metrics, TLS. A real server on loopback ports, real gRPC stubs."""

import base64
import os
import shutil
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2, inference_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from lamina.serving.batching import BatchingParameters
from lamina.serving.registry import ConfigError, read_models_config
from lamina.serving.server import LaminaServer
from tests.serving.certs import self_signed
from tests.serving.toy import example, expected_y, write_toy_model

X = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for version, scale in ((1, 1.0), (2, 2.0), (3, 3.0)):
        write_toy_model(str(root / "toy"), version, scale)
    write_toy_model(str(root / "other"), 7, 10.0)
    return root


def _config(root, policy="model_version_policy { all {} }", labels=""):
    path = root / "models.config"
    path.write_text("model_config_list {\n"
                    f'  config {{ name: "toy" base_path: "{root / "toy"}" model_platform: "tensorflow"\n'
                    f"           {policy} {labels} }}\n"
                    f'  config {{ name: "other" base_path: "other" }}\n'
                    "}\n")
    return str(path)


@pytest.fixture(scope="module")
def server(toy_root):
    config = _config(toy_root, labels='version_labels { key: "stable" value: 1 } '
                                      'version_labels { key: "canary" value: 3 }')
    srv = LaminaServer(config, port=0, rest_port=0, poll_seconds=0.2).start()
    yield srv
    srv.stop()


def _stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.target))


def _predict(name="toy", version=None, label=None, signature=None, x=X):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    if signature:
        request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, np.float32)))
    return request


def test_models_config_serves_several_models_by_version_and_label(server):
    stub = _stub(server)
    for spec, (scale, version) in [({}, (3.0, 3)), ({"version": 1}, (1.0, 1)), ({"version": 2}, (2.0, 2)),
                                   ({"label": "stable"}, (1.0, 1)), ({"label": "canary"}, (3.0, 3)),
                                   ({"name": "other"}, (10.0, 7))]:
        response = stub.Predict(_predict(**spec), 10.0)
        assert response.model_spec.version.value == version, spec
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), expected_y(X, scale, version))


@pytest.mark.parametrize("spec, code, message", [
    ({"name": "walrus"}, grpc.StatusCode.NOT_FOUND, "Model 'walrus' not found; serving: other, toy."),
    ({"version": 9}, grpc.StatusCode.NOT_FOUND, "Model 'toy' has no version 9; serving versions: 3, 2, 1."),
    ({"label": "beta"}, grpc.StatusCode.NOT_FOUND,
     "Model 'toy' has no version label 'beta'; labels: canary=3, stable=1."),
    ({"signature": "nope"}, grpc.StatusCode.NOT_FOUND,
     "Serving signature key 'nope' not found in model 'toy' version 3; available signatures: classify, regress, "
     "serving_default, text."),
])
def test_unknown_names_versions_labels_and_signatures_are_not_found(server, spec, code, message):
    with pytest.raises(grpc.RpcError) as info:
        _stub(server).Predict(_predict(**spec), 10.0)
    assert (info.value.code(), info.value.details()) == (code, message)


def test_classify_regress_and_multi_inference_agree(server):
    stub = _stub(server)
    examples = [example(x) for x in X]
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = "toy", "classify"
    classify.input.example_list.examples.extend(examples)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = "toy", "regress"
    regress.input.example_list.examples.extend(examples)
    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", "tensorflow/serving/classify"), ("regress", "tensorflow/serving/regress")):
        task = multi.tasks.add()
        task.model_spec.name, task.model_spec.signature_name, task.method_name = "toy", signature, method
    multi.input.example_list.examples.extend(examples)

    c = stub.Classify(classify, 10.0).result
    r = stub.Regress(regress, 10.0).result
    m = stub.MultiInference(multi, 10.0)
    y = expected_y(X, 3.0, 3)
    np.testing.assert_allclose([v.value for v in r.regressions], y, rtol=1e-6)
    p = 1 / (1 + np.exp(-y))
    np.testing.assert_allclose([[k.score for k in row.classes] for row in c.classifications],
                               np.stack([1 - p, p], 1), rtol=1e-5)
    assert [[k.label for k in row.classes] for row in c.classifications] == [["neg", "pos"]] * 2
    assert [res.model_spec.signature_name for res in m.results] == ["classify", "regress"]
    assert m.results[0].classification_result == c
    assert m.results[1].regression_result == r
    assert m.results[0].model_spec.version.value == 3

    multi.tasks[1].model_spec.name = "other"
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(multi, 10.0)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "All MultiInference tasks must name the same model; got other, toy."


def test_model_status_over_grpc_and_rest(server):
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.target))
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "toy"
    response = stub.GetModelStatus(request, 10.0)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (3, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    answer = requests.get(f"{server.rest_url}/v1/models/toy/labels/stable", timeout=10).json()
    assert answer == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                "status": {"error_code": "OK", "error_message": ""}}]}
    missing = requests.get(f"{server.rest_url}/v1/models/toy/versions/8", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"error": "Model 'toy' has no version 8; known versions: 3, 2, 1."}


def test_rest_predict_row_and_columnar_formats_classify_regress_and_metadata(server):
    url = f"{server.rest_url}/v1/models/toy"
    rows = requests.post(f"{url}:predict", json={"instances": X}, timeout=10).json()
    assert rows == {"predictions": expected_y(X, 3.0, 3).tolist()}
    named = requests.post(f"{url}/versions/2:predict", json={"instances": [{"x": x} for x in X]}, timeout=10).json()
    assert named == {"predictions": expected_y(X, 2.0, 2).tolist()}
    columns = requests.post(f"{url}/labels/stable:predict", json={"inputs": {"x": X}}, timeout=10).json()
    assert columns == {"outputs": expected_y(X, 1.0, 1).tolist()}
    text = requests.post(f"{url}:predict", json={"signature_name": "text", "instances": [
        "Zürich", {"b64": base64.b64encode("crème".encode()).decode()}, ""]}, timeout=10).json()
    assert text == {"predictions": [6, 5, 0]}
    classify = requests.post(f"{url}:classify", json={"signature_name": "classify", "context": {"x": [0.0, 0.0, 0.0]},
                                                      "examples": [{}, {"x": [1.0, 1.0, 1.0]}]}, timeout=10).json()
    p = 1 / (1 + np.exp(-expected_y([[0, 0, 0], [1, 1, 1]], 3.0, 3)))
    np.testing.assert_allclose([[s for _, s in row] for row in classify["results"]], np.stack([1 - p, p], 1),
                               atol=1e-6)
    assert [[label for label, _ in row] for row in classify["results"]] == [["neg", "pos"]] * 2
    regress = requests.post(f"{url}:regress", json={"signature_name": "regress", "examples": [{"x": X[0]}]},
                            timeout=10).json()
    assert regress == {"results": [pytest.approx(float(expected_y(X[:1], 3.0, 3)[0]))]}
    metadata = requests.get(f"{url}/versions/1/metadata", timeout=10).json()
    assert metadata["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    sig = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT" and sig["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize("path, body, status, error", [
    ("/v1/models/toy:predict", {"instances": [{"b64": "!!"}], "signature_name": "text"}, 400,
     "Input 's': invalid base64 in {\"b64\": ...}: Non-base64 digit found."),
    ("/v1/models/toy:predict", {"instances": [[1, 2]]}, 400,
     "Input 'x' has shape [1, 2]; signature 'serving_default' expects [None, 3] (None: any size)."),
    ("/v1/models/toy:predict", {"instances": [["a", 2, 3]]}, 400,
     "Input 'x': value 'a' is not a number; the input is float32."),
    ("/v1/models/toy:predict", {"instances": [{"x": [1, 2, 3], "z": 1}]}, 400,
     "instances[0]: Unknown input 'z' for signature 'serving_default'; expected inputs: x."),
    ("/v1/models/toy:predict", {"inputs": {}}, 400,
     "Missing input 'x' for signature 'serving_default'; expected inputs: x."),
    ("/v1/models/toy:predict", {"instances": X, "inputs": X}, 400,
     "The request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)."),
    ("/v1/models/toy:predict", {"instances": [[1, 2, 3], [1, 2]]}, 400,
     "Input 'x': the values do not form a rectangular float32 array (all rows must have the same shape)."),
    ("/v1/models/toy:predict", {"signature_name": "text", "instances": [{"b64": "/w=="}]}, 400, None),
    ("/v1/models/toy:classify", {"examples": [{"x": [1, 2, 3]}]}, 400,
     "Signature 'serving_default' of model 'toy' has method 'tensorflow/serving/predict'; Classify needs "
     "'tensorflow/serving/classify'."),
    ("/v1/models/seal:predict", {"instances": X}, 404, "Model 'seal' not found; serving: other, toy."),
    ("/v1/models/toy:explain", {"instances": X}, 404, None),
])
def test_rest_bad_requests_get_the_right_status_and_message(server, path, body, status, error):
    answer = requests.post(server.rest_url + path, json=body, timeout=10)
    assert answer.status_code == status, answer.text
    if error is not None:
        assert answer.json() == {"error": error}
    else:
        assert answer.json()["error"]
    assert requests.post(f"{server.rest_url}/v1/models/toy:predict", json={"instances": X}, timeout=10).ok


def test_rest_refuses_non_utf8_and_oversize_bodies(server):
    url = f"{server.rest_url}/v1/models/toy:predict"
    bad = requests.post(url, data=b'{"instances": ["\xff\xfe"]}', timeout=10)
    assert (bad.status_code, bad.json()) == (400, {"error": "The request body is not valid UTF-8 (byte 16)."})
    broken = requests.post(url, data=b'{"instances": [1,', timeout=10)
    assert broken.status_code == 400 and broken.json()["error"].startswith("The request body is not valid JSON")
    huge = requests.post(url, data=b" " * (server.max_request_bytes + 1), timeout=30)
    assert huge.status_code == 413
    assert huge.json() == {"error": f"The request body is {server.max_request_bytes + 1} bytes; the limit is "
                                    f"{server.max_request_bytes} bytes."}
    assert requests.get(f"{server.rest_url}/v1/models/toy:predict", timeout=10).status_code == 405
    assert requests.post(url, json={"instances": X}, timeout=10).ok


def test_metrics_count_requests_per_model_version_method_and_status(toy_root):
    srv = LaminaServer(_config(toy_root), port=0, rest_port=0).start()
    try:
        stub = _stub(srv)
        for _ in range(3):
            stub.Predict(_predict(version=2), 10.0)
        with pytest.raises(grpc.RpcError):
            stub.Predict(_predict(version=2, x=[[1.0]]), 10.0)
        requests.post(f"{srv.rest_url}/v1/models/other:predict", json={"instances": X}, timeout=10).raise_for_status()
        text = requests.get(f"{srv.rest_url}/monitoring/prometheus/metrics", timeout=10).text
    finally:
        srv.stop()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    grpc_ok = dict(model="toy", version="2", method="Predict", api="grpc", status="OK")
    assert value("lamina_requests_total", **grpc_ok) == 3
    assert value("lamina_requests_total", **{**grpc_ok, "status": "INVALID_ARGUMENT"}) == 1
    assert value("lamina_request_latency_seconds_count", **grpc_ok) == 3
    assert value("lamina_requests_total", model="other", version="7", method="Predict", api="rest", status="OK") == 1
    assert value("lamina_batch_size_count", model="toy", version="2", signature="serving_default") == 3
    assert value("lamina_batch_size_sum", model="toy", version="2", signature="serving_default") == 6
    for version in ("1", "2", "3"):
        assert value("lamina_model_load_events_total", model="toy", version=version, event="loaded") == 1
    assert value("lamina_model_versions_available", model="toy") == 3


def test_models_config_errors_name_the_file_and_entry(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/m/a" } config { name: "a" base_path: "/b" } }')
    with pytest.raises(ConfigError, match=f"^{path}: config 2 \\('a'\\): model name 'a' appears twice.$"):
        read_models_config(str(path))
    path.write_text('model_config_list { config { name: "a" base_path: "/m/a" model_platform: "onnx" } }')
    with pytest.raises(ConfigError) as info:
        read_models_config(str(path))
    assert str(info.value) == f"{path}: config 1 ('a'): model_platform 'onnx' is not served; allowed: 'tensorflow'."
    path.write_text('model_config_list { config { name: "a" base_path: "/m/a" '
                    'model_version_policy { specific { versions: 2 } } version_labels { key: "x" value: 3 } } }')
    with pytest.raises(ConfigError) as info:
        read_models_config(str(path))
    assert str(info.value) == (f"{path}: config 1 ('a'): version label 'x' points to version 3, which the "
                               "specific policy does not serve; served: [2].")
    path.write_text("model_config_list { config { nme: 'a' } }")
    with pytest.raises(ConfigError, match="not a ModelServerConfig in text format: 1:30 : .*no field named \"nme\""):
        read_models_config(str(path))


def test_reload_config_changes_policy_and_models(toy_root):
    srv = LaminaServer(_config(toy_root), port=0, allow_config_reload=True).start()
    try:
        assert srv.registry.versions("toy") == [3, 2, 1]
        config = model_server_config_pb2.ModelServerConfig()
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path = "toy", str(toy_root / "toy")
        entry.model_version_policy.specific.versions.append(2)
        request = model_management_pb2.ReloadConfigRequest(config=config)
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(srv.target))
        assert stub.HandleReloadConfigRequest(request, 30.0).status.error_code == 0
        assert srv.registry.versions("toy") == [2]
        assert srv.registry.names() == ["toy"]
        response = _stub(srv).Predict(_predict(), 10.0)
        assert response.model_spec.version.value == 2
        request.config.model_config_list.config[0].model_platform = "pytorch"
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(request, 30.0)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == ("ReloadConfigRequest: config 1 ('toy'): model_platform 'pytorch' is not "
                                        "served; allowed: 'tensorflow'.")
    finally:
        srv.stop()


def test_warmup_runs_before_serving_and_a_failing_warmup_keeps_the_old_version(tmp_path):
    from lamina.serving.warmup import predict_log, write_warmup_requests

    write_toy_model(str(tmp_path / "models" / "toy"), 1, warmup=True)
    srv = LaminaServer(str(tmp_path / "models"), port=0, poll_seconds=0.1).start()
    try:
        assert srv.registry.events == ["serving toy version 1 after 3 warmup request(s)"]
        # Version 2's warmup asks for a signature it does not have: the load fails, version 1 serves on.
        staging = tmp_path / "staging"
        write_toy_model(str(staging), 2, scale=2.0)
        write_warmup_requests(str(staging / "2"), [], extra=[predict_log({"x": np.ones([1, 3], np.float32)},
                                                                          signature="missing")])
        shutil.move(str(staging / "2"), str(tmp_path / "models" / "toy" / "2"))
        assert srv.registry.wait_for_event(lambda events: len(events) >= 2, timeout=20)
        assert srv.registry.events[1].startswith(f"skipped toy version 2 at {tmp_path / 'models' / 'toy' / '2'}: ValueError: "
                                                 "warmup request 1 in assets.extra/tf_serving_warmup_requests "
                                                 "failed: Serving signature key 'missing' not found")
        assert _stub(srv).Predict(_predict(), 10.0).model_spec.version.value == 1
    finally:
        srv.stop()


def test_a_version_is_loaded_before_traffic_and_the_old_one_released(tmp_path):
    write_toy_model(str(tmp_path / "models" / "toy"), 1)
    srv = LaminaServer(str(tmp_path / "models"), port=0, poll_seconds=0.1).start()
    try:
        held = srv.registry.acquire("toy")  # a request in flight on version 1
        write_toy_model(str(tmp_path / "staging"), 2, scale=2.0)
        os.rename(tmp_path / "staging" / "2", tmp_path / "models" / "toy" / "2")
        assert srv.registry.wait_for_version("toy", 2, timeout=20)
        # version 1 is retired right after version 2 is in
        assert srv.registry.wait_for_event(lambda events: events[-1].startswith("retiring"), timeout=20)
        assert srv.registry.versions("toy") == [2]
        assert srv.registry.events[-1] == ("retiring toy version 1; released when its 1 in-flight request(s) "
                                           "finish")
        np.testing.assert_array_equal(held.signature("serving_default")(x=tf.constant(X))["y"].numpy(),
                                      expected_y(X, 1.0, 1))  # still answers on the old version
        held.release()
        assert srv.registry.events[-1] == "released toy version 1"
    finally:
        srv.stop()


def test_half_written_and_corrupt_versions_are_skipped_then_retried_when_fixed(tmp_path, caplog):
    write_toy_model(str(tmp_path / "models" / "toy"), 1)
    srv = LaminaServer(str(tmp_path / "models"), port=0, poll_seconds=3600).start()
    try:
        good = write_toy_model(str(tmp_path / "staging"), 2, scale=2.0)
        half = tmp_path / "models" / "toy" / "2"
        shutil.copytree(os.path.join(good, "variables"), half / "variables")  # saved_model.pb not there yet
        srv.registry.refresh()
        assert srv.registry.versions("toy") == [1] and len(srv.registry.events) == 1  # not touched, not reported
        data = next(p for p in (half / "variables").iterdir() if p.name.startswith("variables.data"))
        data.write_bytes(data.read_bytes()[:3])  # corrupt weights
        shutil.copy(os.path.join(good, "saved_model.pb"), half / "saved_model.pb")
        srv.registry.refresh()
        assert srv.registry.versions("toy") == [1]
        assert srv.registry.events[-1].startswith(f"skipped toy version 2 at {half}: ")
        logged = [r for r in caplog.records if r.name == "lamina.serving" and r.levelname == "WARNING"]
        assert [r.getMessage() for r in logged] == [srv.registry.events[-1]]
        srv.registry.refresh()  # unchanged: not retried, not reported again
        assert len(srv.registry.events) == 2
        assert _stub(srv).Predict(_predict(), 10.0).model_spec.version.value == 1
        shutil.rmtree(half / "variables")
        shutil.copytree(os.path.join(good, "variables"), half / "variables")  # the push is completed
        srv.registry.refresh()
        assert srv.registry.versions("toy") == [2]
    finally:
        srv.stop()


def test_batching_merges_concurrent_requests_and_answers_equal_unbatched(tmp_path):
    write_toy_model(str(tmp_path / "toy"), 1, scale=0.37)
    params = BatchingParameters(max_batch_size=16, batch_timeout_micros=20_000, num_batch_threads=2)
    srv = LaminaServer(str(tmp_path), port=0, batching=params).start()
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 3)).astype(np.float32) for _ in range(64)]
    try:
        stub = _stub(srv)
        results = [None] * len(inputs)

        def send(i):
            try:
                results[i] = tf.make_ndarray(stub.Predict(_predict(x=inputs[i]), 30.0).outputs["y"])
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                results[i] = repr(e)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        labels = {"model": "toy", "version": "1", "signature": "serving_default"}
        merged = srv.metrics.registry.get_sample_value("lamina_batch_size_sum", labels)
        calls = srv.metrics.registry.get_sample_value("lamina_batch_size_count", labels)
    finally:
        srv.stop()
    assert not [r for r in results if isinstance(r, str)]
    model = tf.saved_model.load(str(tmp_path / "toy" / "1"))
    for x, got in zip(inputs, results):
        np.testing.assert_array_equal(got, model.signatures["serving_default"](x=tf.constant(x))["y"].numpy())
    assert merged == sum(len(x) for x in inputs)
    assert calls < len(inputs)  # some requests shared a model call


def test_a_deadline_that_passes_in_the_batch_queue_is_not_run(tmp_path):
    write_toy_model(str(tmp_path / "toy"), 1)
    params = BatchingParameters(max_batch_size=64, batch_timeout_micros=1_500_000, num_batch_threads=1)
    srv = LaminaServer(str(tmp_path), port=0, batching=params).start()
    dropped = threading.Event()
    count_it = srv.batcher.on_expire  # the server's own hook (the metric), then ours
    srv.batcher.on_expire = lambda key: (count_it(key), dropped.set())
    try:
        with pytest.raises(grpc.RpcError) as info:
            _stub(srv).Predict(_predict(), 0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert dropped.wait(30)  # the batch closed and dropped the expired request
        labels = {"model": "toy", "version": "1", "signature": "serving_default"}
        assert srv.metrics.registry.get_sample_value("lamina_batch_size_count", labels) in (None, 0.0)
        assert srv.metrics.registry.get_sample_value(
            "lamina_batch_expired_total", {"model": "toy", "version": "1", "signature": "serving_default"}) == 1
        ok = _stub(srv).Predict(_predict(), 5.0)
        assert ok.model_spec.version.value == 1
    finally:
        srv.stop()


def test_tls_on_grpc_and_rest(tmp_path):
    from lamina.serving.client import PredictionClient, RestClient

    write_toy_model(str(tmp_path / "models" / "toy"), 1)
    cert, key = self_signed(tmp_path)
    srv = LaminaServer(str(tmp_path / "models"), port=0, rest_port=0, tls_cert=cert, tls_key=key).start()
    try:
        assert srv.rest_url.startswith("https://127.0.0.1:")
        with PredictionClient(srv.target, tls_ca=cert) as client:
            out = client.predict_tensors("toy", {"x": np.array(X, np.float32)})
        np.testing.assert_array_equal(out["y"], expected_y(X, 1.0, 1))
        with RestClient(srv.rest_url, verify=cert) as client:
            assert client.predict_instances("toy", X) == expected_y(X, 1.0, 1).tolist()
        with pytest.raises(grpc.RpcError) as info:  # plain text to a TLS port
            _stub(srv).Predict(_predict(), 5.0)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(requests.exceptions.SSLError):  # an untrusted certificate
            requests.get(f"{srv.rest_url}/v1/models/toy", timeout=5)
    finally:
        srv.stop()
    with pytest.raises(ValueError, match="TLS needs both a certificate"):
        LaminaServer(str(tmp_path / "models"), tls_cert=cert)


def test_lamina_serve_binds_loopback_and_exits_0_on_sigterm(tmp_path):
    write_toy_model(str(tmp_path / "toy"), 1)
    proc = subprocess.Popen([sys.executable, "-m", "lamina.pipeline.cli.commands", "serve", "--model-dir", str(tmp_path),
                             "--port", "0", "--rest-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        line = ""
        while "gRPC on" not in line and proc.poll() is None:
            line = proc.stdout.readline()
        assert "gRPC on 127.0.0.1:" in line and "REST on http://127.0.0.1:" in line, line
        proc.send_signal(15)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Server stopped after 0 requests; none left in flight." in out


def test_output_tensor_protos_equal_tensorflows():
    """The server's fast TensorProto for model outputs decodes, and compares, as TF's own does."""
    import numpy as np
    import tensorflow as tf

    from lamina.serving.inference import tensor_proto

    arrays = [np.array([[0.1, 0.7, 0.2]], np.float32), np.arange(6, dtype=np.int64).reshape(2, 3),
              np.array([1.5, -2.0]), np.array([3, 4], np.int32), np.zeros((0, 3), np.float32),
              np.array([[b"Adelie", b"Gentoo", b"Chinstrap"]], dtype=object), np.array([True, False]),
              np.array(["caf\u00e9"], dtype=object), np.array([[1.0, 2.0]], np.float32)[:, ::-1]]
    for a in arrays:
        fast, reference = tensor_proto(a), tf.make_tensor_proto(a)
        assert fast.dtype == reference.dtype and fast.tensor_shape == reference.tensor_shape, a
        got = tf.make_ndarray(fast)
        assert got.dtype == tf.make_ndarray(reference).dtype and got.shape == a.shape
        assert got.tolist() == tf.make_ndarray(reference).tolist(), a
