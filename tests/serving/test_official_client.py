"""TF Serving's own client code, unchanged in shape, against `lamina serve`.

The request building follows tensorflow-serving-api's examples (tensorflow_serving/example/
mnist_client.py, resnet_client_grpc.py, resnet_client.py): stubs from
prediction_service_pb2_grpc, `tf.make_tensor_proto`, `stub.Predict(request, timeout)` and
`stub.Predict.future`, and for REST a hand-written JSON string posted with `requests`.
"""

import base64
import io
import json

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from lamina.serving.server import LaminaServer

pytestmark = pytest.mark.e2e

PENGUIN = {"island": b"Biscoe", "sex": b"female", "bill_length_mm": 46.1, "bill_depth_mm": 13.2,
           "flipper_length_mm": 211, "body_mass_g": 4500}


def _penguin_example():
    """As TF Serving's example clients build one: every number a float feature, 211 included."""
    feature = {}
    for key, value in PENGUIN.items():
        if isinstance(value, bytes):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


@pytest.fixture(scope="module")
def served(penguins_run):
    spec, result = penguins_run
    server = LaminaServer(spec.push_dir, port=0, rest_port=0).start()
    yield server, tf.saved_model.load(result.pushed_model_dir)
    server.stop()


def test_grpc_client_as_in_tf_serving_examples(served):
    server, model = served
    # --- as resnet_client_grpc.py / mnist_client.py do it ---
    channel = grpc.insecure_channel(server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "penguins"
    request.model_spec.signature_name = "serving_default"
    data = _penguin_example().SerializeToString()
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(data, shape=[1]))
    result = stub.Predict(request, 10.0)  # 10 secs timeout
    future = stub.Predict.future(request, 5.0)
    # ---
    expected = model.signatures["serving_default"](inputs=tf.constant([data]))["scores"].numpy()
    np.testing.assert_array_equal(tf.make_ndarray(result.outputs["scores"]), expected)
    np.testing.assert_array_equal(tf.make_ndarray(future.result().outputs["scores"]), expected)
    classes = [c.decode() for c in tf.make_ndarray(result.outputs["classes"])[0]]
    assert sorted(classes) == ["Adelie", "Chinstrap", "Gentoo"]
    assert classes[int(np.argmax(expected[0]))] == "Gentoo"  # a real Gentoo's measurements

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "penguins"
    classify.input.example_list.examples.append(_penguin_example())
    answer = stub.Classify(classify, 10.0)
    np.testing.assert_allclose([c.score for c in answer.result.classifications[0].classes], expected[0], rtol=1e-6)
    channel.close()


def test_rest_client_as_in_tf_serving_examples(served):
    server, model = served
    # --- as resnet_client.py does it: a JSON string with {"b64": ...} instances, posted with requests ---
    server_url = f"{server.rest_url}/v1/models/penguins:predict"
    encoded = base64.b64encode(_penguin_example().SerializeToString())
    predict_request = '{"instances" : [{"b64": "%s"}]}' % encoded.decode()
    response = requests.post(server_url, data=predict_request)
    response.raise_for_status()
    prediction = response.json()["predictions"][0]
    # ---
    expected = model.signatures["serving_default"](inputs=tf.constant([_penguin_example().SerializeToString()]))
    np.testing.assert_allclose(prediction["scores"], expected["scores"].numpy()[0], rtol=1e-6)
    assert prediction["classes"][int(np.argmax(prediction["scores"]))] == "Gentoo"
    # The REST classify API, with a JSON example as TF Serving's REST docs write it.
    body = json.dumps({"examples": [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in PENGUIN.items()}]})
    results = requests.post(f"{server.rest_url}/v1/models/penguins:classify", data=body).json()["results"]
    np.testing.assert_allclose([s for _, s in results[0]], expected["scores"].numpy()[0], rtol=1e-6)


def test_rest_rows_with_integers_or_floats_answer_alike(served):
    server, model = served
    example = model.signatures["serving_default"](inputs=tf.constant([_penguin_example().SerializeToString()]))
    as_json = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in PENGUIN.items()}
    answers = []
    for instance in (as_json, {k: float(v) if isinstance(v, int) else v for k, v in as_json.items()}):
        body = json.dumps({"signature_name": "serving_raw", "instances": [instance]})
        response = requests.post(f"{server.rest_url}/v1/models/penguins:predict", data=body)
        response.raise_for_status()
        answers.append(response.json()["predictions"][0]["scores"])
    assert isinstance(as_json["flipper_length_mm"], int)
    np.testing.assert_allclose(answers[0], example["scores"].numpy()[0], rtol=1e-6)
    np.testing.assert_allclose(answers[1], answers[0], rtol=0, atol=0)
    # A string where a number goes names the feature.
    body = json.dumps({"signature_name": "serving_raw", "instances": [dict(as_json, body_mass_g="heavy")]})
    response = requests.post(f"{server.rest_url}/v1/models/penguins:predict", data=body)
    assert response.status_code == 400
    assert "'body_mass_g'" in response.json()["error"] and "not a number" in response.json()["error"]


def test_rest_image_bytes_as_in_resnet_client(digits_run):
    spec, result = digits_run
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    server = LaminaServer(spec.push_dir, port=0, rest_port=0).start()
    try:
        model = tf.saved_model.load(result.pushed_model_dir)
        for index in (0, 1, 2):
            buffer = io.BytesIO()
            Image.fromarray((digits.images[index] * 16).astype(np.uint8)).save(buffer, format="PNG")
            jpeg_bytes = base64.b64encode(buffer.getvalue()).decode("utf-8")
            predict_request = '{"signature_name": "serving_raw", "instances" : [{"b64": "%s"}]}' % jpeg_bytes
            response = requests.post(f"{server.rest_url}/v1/models/{spec.serving.model_name}:predict",
                                     data=predict_request)
            response.raise_for_status()
            prediction = response.json()["predictions"][0]
            expected = model.signatures["serving_raw"](image=tf.constant([buffer.getvalue()]))["scores"].numpy()[0]
            np.testing.assert_allclose(prediction["scores"], expected, rtol=1e-5, atol=1e-7)
    finally:
        server.stop()


def test_pusher_writes_warmup_requests_that_the_server_replays(served, penguins_run):
    from lamina.constants import WARMUP_FILE
    from lamina.serving.warmup import read_warmup_requests

    server, _ = served
    _, result = penguins_run
    logs = read_warmup_requests(f"{result.pushed_model_dir}/{WARMUP_FILE}")
    assert [entry.WhichOneof("log_type") for entry in logs] == ["predict_log", "classify_log"]
    examples = logs[1].classify_log.request.input.example_list.examples
    assert len(examples) == 8 and all("island" in ex.features.feature for ex in examples)
    predicted = [tf.train.Example.FromString(b) for b in tf.make_ndarray(logs[0].predict_log.request.inputs["inputs"])]
    assert predicted == list(examples)
    version = int(result.pushed_model_dir.rstrip("/").split("/")[-1])
    assert f"serving penguins version {version} after 2 warmup request(s)" in server.registry.events


def test_lamina_predict_over_rest_matches_grpc(served, tmp_path, capsys):
    from lamina.pipeline.cli.commands import main

    server, _ = served
    rows = [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in PENGUIN.items()},
            {"island": "Torgersen", "sex": "", "bill_length_mm": 39.1, "bill_depth_mm": 18.7,
             "flipper_length_mm": 181, "body_mass_g": 3750}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    outputs = {}
    for name, flags in (("grpc", ["--target", server.target]), ("rest", ["--rest", server.rest_url]),
                        ("rest_raw", ["--rest", server.rest_url, "--raw"]), ("grpc_raw", ["--target", server.target,
                                                                                           "--raw"]),
                        ("rest_classify", ["--rest", server.rest_url, "--classify"])):
        assert main(["predict", str(path), "--model", "penguins", "--timeout", "5"] + flags) == 0
        outputs[name] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["class"] for o in outputs["grpc"]] == ["Gentoo", "Adelie"]
    for name in ("rest", "rest_raw", "grpc_raw", "rest_classify"):
        assert [o["class"] for o in outputs[name]] == ["Gentoo", "Adelie"], name
        for got, want in zip(outputs[name], outputs["grpc"]):
            for label, score in want["scores"].items():
                assert abs(got["scores"][label] - score) <= 1e-5, (name, label)
    assert main(["predict", str(path), "--model", "walrus", "--rest", server.rest_url]) == 1
    assert capsys.readouterr().err.strip() == (f"{server.rest_url}: NOT_FOUND: Model 'walrus' not found; "
                                               "serving: penguins.")
