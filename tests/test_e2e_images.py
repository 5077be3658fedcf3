"""End to end on images: scikit-learn's digits as PNG folders, through ImageExampleGen, a small
ResNet, TFMA, BulkInferrer and the Pusher, then PNG bytes over gRPC."""

import glob
import io
import json
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from lamina.models.export import COLUMNS_FILE
from lamina.models.images import BACKBONE_CONFIG, BACKBONE_DIR, BACKBONE_WEIGHTS
from lamina.pipeline import cli
from lamina.rows import read_image_rows
from lamina.serving.client import PredictionClient
from tests.helpers import read_prediction_logs, serving

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def in_process(digits_run):
    _, result = digits_run
    return tf.saved_model.load(result.pushed_model_dir)


@pytest.fixture(scope="module")
def image_server(digits_run):
    spec, _ = digits_run
    yield from serving(spec.push_dir)


def eval_files(digits_run):
    """(path, digit) of every image in the eval split, read back from the examples TFMA scored."""
    from lamina.pipeline.runs.summary import latest_run_outputs

    spec, _ = digits_run
    examples = latest_run_outputs(spec)[("ImageExampleGen", "examples")]
    files = glob.glob(os.path.join(examples.uri, "Split-eval", "*.gz"))
    root = spec.resolve(spec.data.path)
    out = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.train.Example.FromString(record.numpy())
        rel = ex.features.feature["source_path"].bytes_list.value[0].decode()
        out.append((os.path.join(root, rel), ex.features.feature["label"].bytes_list.value[0].decode()))
    return sorted(out)


def test_pipeline_ingests_trains_and_pushes_an_accurate_model(digits_run):
    spec, result = digits_run
    assert result.pushed and result.blessed
    assert [c.name for c in result.components][0] == "ImageExampleGen"
    assert result.ingest["files"] == 1797 and result.ingest["examples"] == 1797 and result.ingest["bad"] == 0
    assert result.ingest["classes"] == {str(d): n for d, n in
                                        zip(range(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])}
    assert result.metrics["sparse_categorical_accuracy"] >= 0.9
    assert 250 <= result.metrics["example_count"] <= 450
    # The pushed model carries its backbone for a later run's transfer.
    backbone = os.path.join(result.pushed_model_dir, BACKBONE_DIR)
    assert sorted(os.listdir(backbone)) == sorted([BACKBONE_CONFIG, BACKBONE_WEIGHTS, COLUMNS_FILE, "features.json",
                                                   "model.keras", "tflite"])
    with open(os.path.join(backbone, COLUMNS_FILE)) as f:
        assert json.load(f) == {"columns": {"image": "image"}, "dtypes": {"image": "string"}, "sequences": []}
    assert "1797 examples from 1797 files" in open(result.report).read()


def test_signatures_take_examples_and_raw_bytes(in_process):
    sigs = in_process.signatures
    assert sorted(sigs) == ["serving_default", "serving_raw", "transform_features", "transform_label"]
    raw = sigs["serving_raw"].structured_input_signature[1]
    assert list(raw) == ["image"] and raw["image"].dtype == tf.string and raw["image"].shape.as_list() == [None]


def test_held_out_accuracy_and_example_signature_agree(digits_run, in_process):
    files = eval_files(digits_run)
    data = [open(p, "rb").read() for p, _ in files]
    raw = in_process.signatures["serving_raw"](image=tf.constant(data))
    predicted = raw["classes"].numpy()[np.arange(len(files)), raw["scores"].numpy().argmax(1)]
    accuracy = np.mean([p.decode() == label for p, (_, label) in zip(predicted, files)])
    assert accuracy >= 0.9
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[d]))})).SerializeToString() for d in data[:32]]
    by_example = in_process.signatures["serving_default"](inputs=tf.constant(examples))
    np.testing.assert_allclose(by_example["scores"].numpy(), raw["scores"].numpy()[:32], atol=1e-6)


def test_png_and_jpeg_over_grpc_match_in_process(digits_run, in_process, image_server):
    spec, _ = digits_run
    paths = [p for p, _ in eval_files(digits_run)[:12]]
    jpeg = io.BytesIO()
    Image.open(paths[0]).convert("RGB").save(jpeg, "JPEG", quality=95)
    data = [open(p, "rb").read() for p in paths] + [jpeg.getvalue()]
    expected = in_process.signatures["serving_raw"](image=tf.constant(data))
    with PredictionClient(image_server.target) as client:
        rows = read_image_rows(paths, client.raw_inputs("digits"))
        assert rows[0]["image"] == data[0]
        served = client.predict_tensors("digits", {"image": np.array(data, dtype=object)}, signature="serving_raw")
        classified = client.classify("digits", rows)
    np.testing.assert_allclose(served["scores"], expected["scores"].numpy(), atol=1e-6)
    assert sorted(served["classes"][0]) == [str(d).encode() for d in range(10)]  # by frequency in training
    np.testing.assert_array_equal(served["scores"].argmax(1), expected["scores"].numpy().argmax(1))
    for got, want in zip(classified, expected["scores"].numpy()):
        np.testing.assert_allclose([s for _, s in got], want, atol=1e-6)


def test_bulk_inferrer_scored_the_eval_split(digits_run, in_process):
    _, result = digits_run
    logs = read_prediction_logs(result.inference_dir)
    assert len(logs) == int(result.metrics["example_count"])
    for log in logs[:40]:
        example = log.classify_log.request.input.example_list.examples[0]
        scores = [c.score for c in log.classify_log.response.result.classifications[0].classes]
        expected = in_process.signatures["serving_default"](inputs=tf.constant([example.SerializeToString()]))
        np.testing.assert_allclose(scores, expected["scores"].numpy()[0], atol=1e-5)


def test_bad_image_bytes_get_invalid_argument_and_the_server_stays_up(digits_run, image_server):
    channel = grpc.insecure_channel(image_server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "serving_raw"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto([b"this is not an image"]))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unknown image file format. One of JPEG, PNG, GIF, BMP required." in info.value.details()
    good = open(eval_files(digits_run)[0][0], "rb").read()
    request.inputs["image"].CopyFrom(tf.make_tensor_proto([good]))
    assert stub.Predict(request, timeout=30).outputs["scores"].tensor_shape.dim[1].size == 10
    channel.close()


def test_cli_predict_sends_image_files_and_prints_classes(digits_run, image_server, capsys):
    files = eval_files(digits_run)[:5]
    code = cli.main(["predict", *[p for p, _ in files], "--model", "digits", "--target", image_server.target])
    assert code == 0
    lines = [__import__("json").loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["file"] for row in lines] == [p for p, _ in files]
    assert sum(row["class"] == label for row, (_, label) in zip(lines, files)) >= 4
    assert all(abs(sum(row["scores"].values()) - 1) < 1e-4 for row in lines)


def test_pushed_model_transfers_its_backbone_to_a_new_run(digits_run, tmp_path):
    """Pipeline-to-pipeline transfer: `weights: <push dir>/digits` loads the newest pushed backbone."""
    from lamina.models.builder import build_model
    from lamina.models.features import IMAGE, FeatureInfo
    from lamina.models.images import image_backbones
    from tests.helpers import digits_spec

    spec, result = digits_run
    features = [FeatureInfo("image", IMAGE, image_size=(16, 16))]

    def backbone(weights):
        s = digits_spec(tmp_path, model={"encoders": {"image": {
            "type": "resnet", "architecture": "resnet_small", "width": 16, "image_size": [16, 16],
            "weights": weights}}, "combiner": {"hidden_units": []}, "head": {"type": "classification"}})
        return image_backbones(build_model(s, features, num_classes=5))[0]

    transferred = backbone(os.path.join(spec.push_dir, "digits"))
    from_file = backbone(os.path.join(result.pushed_model_dir, BACKBONE_DIR, BACKBONE_WEIGHTS))
    fresh = backbone("random")
    assert len(transferred.weights) == len(from_file.weights) > 20
    for a, b in zip(transferred.weights, from_file.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(transferred.weights[0].numpy(), fresh.weights[0].numpy())


def test_tflite_int8_is_three_times_smaller_within_the_bound_and_answers_like_the_model(digits_run, in_process,
                                                                                        capsys):
    spec, result = digits_run
    forms = {f["form"]: f for f in result.tflite["forms"]}
    assert [f for f in forms.values() if not f["exported"]] == []
    assert forms["float"]["size_bytes"] >= 3 * forms["int8"]["size_bytes"]
    assert forms["float"]["size_bytes"] > 2.5 * forms["dynamic_range"]["size_bytes"]
    # Measured through the interpreter on the whole eval split, beside the SavedModel's own figure.
    assert result.tflite["examples"] == int(result.metrics["example_count"])
    assert result.tflite["reference"] == pytest.approx(result.metrics["sparse_categorical_accuracy"], abs=1e-6)
    assert forms["float"]["metric"] == pytest.approx(result.tflite["reference"], abs=1e-6)
    assert 0 <= forms["int8"]["drop"] <= spec.export.max_metric_drop or forms["int8"]["drop"] < 0
    assert forms["int8"]["metric"] >= 0.9

    # Pushed beside the SavedModel, with the input spec a caller needs.
    folder = os.path.join(result.pushed_model_dir, "assets.extra", "lamina", "tflite")
    assert sorted(os.listdir(folder)) == ["input_spec.json", "model_dynamic_range.tflite", "model_float.tflite",
                                          "model_int8.tflite", "tflite_report.json"]
    inputs = json.load(open(os.path.join(folder, "input_spec.json")))
    assert [(i["name"], i["dtype"], i["shape"]) for i in inputs["inputs"]] == [("image", "float32", [-1, 16, 16, 3])]
    assert "resized to 16x16" in inputs["inputs"][0]["how"]
    assert inputs["output"]["classes"] == [c.decode() for c in in_process.signatures["serving_raw"](
        image=tf.constant([open(eval_files(digits_run)[0][0], "rb").read()]))["classes"].numpy()[0]]

    # `lamina predict --tflite`: the float file answers as the SavedModel does on the same PNG files.
    files = eval_files(digits_run)[:6]
    expected = in_process.signatures["serving_raw"](image=tf.constant([open(p, "rb").read() for p, _ in files]))
    assert cli.main(["predict", *[p for p, _ in files], "--tflite", os.path.join(folder, "model_float.tflite")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    classes = [c.decode() for c in expected["classes"].numpy()[0]]
    got = np.array([[row["scores"][c] for c in classes] for row in rows])
    np.testing.assert_allclose(got, expected["scores"].numpy(), atol=1e-5)
    assert cli.main(["predict", *[p for p, _ in files], "--tflite", os.path.join(folder, "model_int8.tflite")]) == 0
    int8 = [json.loads(line)["class"] for line in capsys.readouterr().out.splitlines()]
    assert sum(a == b["class"] for a, b in zip(int8, rows)) >= 5


def test_grad_cam_overlays_per_class_and_lamina_explain_on_image_files(digits_run, in_process, tmp_path, capsys):
    spec, result = digits_run
    record = json.load(open(os.path.join(result.explanations_dir, "explanations.json")))
    images = record["images"]
    labels = [record["examples"][im["example"]]["label"] for im in images]
    assert sorted(set(labels)) == [str(d) for d in range(10)]  # every class
    assert all(labels.count(c) <= spec.explain.images_per_class for c in set(labels))
    for im in images:
        with Image.open(os.path.join(result.explanations_dir, im["file"])) as png:
            assert png.size[0] >= 128 and png.mode == "RGB"
    # Right and wrong answers are both there when the model made mistakes on the eval split.
    correct = [record["examples"][im["example"]]["correct"] for im in images]
    assert any(correct)
    if result.metrics["sparse_categorical_accuracy"] < 1.0:
        assert not all(correct)

    files = [p for p, _ in eval_files(digits_run)[:3]]
    out = tmp_path / "why"
    assert cli.main(["explain", *files, "--model", result.pushed_model_dir, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = in_process.signatures["serving_raw"](image=tf.constant([open(p, "rb").read() for p in files]))
    classes = [c.decode() for c in expected["classes"].numpy()[0]]
    answers = [classes[i] for i in expected["scores"].numpy().argmax(axis=1)]
    heads = [line for line in printed if not line.startswith(" ")]
    assert [h.split(": ", 1)[1].split(" (")[0] for h in heads[:3]] == answers
    overlays = [line.split("Grad-CAM: ")[1] for line in printed if "Grad-CAM: " in line]
    assert len(overlays) == 3 and all(os.path.isfile(o) for o in overlays)
