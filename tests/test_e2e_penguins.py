"""End to end on the penguins data: the real pipeline, the pushed SavedModel, BulkInferrer,
and the gRPC server on a loopback port answering exactly as the in-process model does."""

import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from lamina.constants import CLASSIFY_METHOD
from lamina.pipeline.local_runner import run_pipeline
from lamina.pipeline.runs.summary import latest_run_states
from lamina.rows import row_to_example, rows_to_tensors
from lamina.serving.client import PredictionClient
from tests.helpers import make_spec, read_csv, read_prediction_logs

pytestmark = pytest.mark.e2e

CLASSES = {"Adelie", "Chinstrap", "Gentoo"}


@pytest.fixture(scope="module")
def rows(penguins_dir):
    """Seven complete penguins of all three species, as a client would send them."""
    all_rows = read_csv(penguins_dir / "data" / "penguins.csv")
    picked = all_rows[0:3] + all_rows[150:152] + all_rows[300:302]
    return [{k: v for k, v in r.items() if k != "species"} for r in picked]


@pytest.fixture(scope="module")
def rows_with_missing(penguins_dir, rows):
    """The same plus row 4 of the data, every measurement missing, and one with only `sex` missing."""
    all_rows = read_csv(penguins_dir / "data" / "penguins.csv")
    blank = {k: v for k, v in all_rows[3].items() if k != "species"}
    assert blank["bill_length_mm"] == "" and blank["sex"] == ""
    return rows + [blank, dict(rows[0], sex="")]


@pytest.fixture(scope="module")
def in_process(penguins_run):
    """The pushed SavedModel loaded in this process."""
    _, result = penguins_run
    return tf.saved_model.load(result.pushed_model_dir)


def raw_dtypes(model):
    return {k: v.dtype.as_datatype_enum for k, v in model.signatures["serving_raw"].structured_input_signature[1].items()}


def test_pipeline_pushes_an_accurate_model(penguins_run):
    spec, result = penguins_run
    assert result.pushed and result.blessed
    assert result.pushed_model_dir.startswith(os.path.join(spec.push_dir, "penguins") + os.sep)
    assert os.path.basename(result.pushed_model_dir).isdigit()
    # Held-out accuracy on the eval split, as TFMA computed it.
    assert result.metrics["sparse_categorical_accuracy"] >= 0.9
    assert result.metrics["example_count"] >= 50
    ran = [c.name for c in result.components]
    assert sorted(ran) == sorted([
        "CsvExampleGen", "LatestBlessedModelResolver", "StatisticsGen", "SchemaGen", "ExampleValidator",
        "AnomalyGate", "Transform", "Tuner", "Baselines", "Trainer", "EvaluationSchema", "Evaluator", "PushGate",
        "Explainer", "TFLiteExporter", "Pusher", "BulkInferrer"])
    assert ran.index("AnomalyGate") < ran.index("Transform") < ran.index("Trainer") < ran.index("Evaluator")
    assert ran.index("Evaluator") < ran.index("Pusher")
    # StatisticsGen, Transform and the Evaluator read their examples with tf.data (the statistics and
    # metrics above came that way)
    from tfx_bsl.tfxio import record_based_tfxio
    from lamina.pipeline.tfrecord_reader import read_tfrecords
    assert record_based_tfxio.ReadTfRecord is read_tfrecords
    assert os.path.isdir(result.anomalies_dir) and result.failed_thresholds == []
    assert os.path.isdir(result.tensorboard_dir) and os.listdir(result.tensorboard_dir)
    report = open(result.report).read()
    assert "model pushed" in report and result.pushed_model_dir in report
    for slice_name in ("all examples", "island=Biscoe", "island=Dream", "island=Torgersen", "sex=female"):
        assert f"<td>{slice_name}<td class=num>" in report


def test_run_pipeline_leaves_the_callers_warnings_and_logging_alone(penguins_run):
    """The Python API is a library call: no global warning filter, handler or level is changed (the CLI
    quiets TFX's logs in its own entry point)."""
    from tests.conftest import CALLER_STATE

    before, after = CALLER_STATE["penguins"]
    assert after == before


def test_exported_signatures(in_process, penguins_run):
    _, result = penguins_run
    sigs = in_process.signatures
    assert sorted(sigs) == ["serving_default", "serving_raw", "transform_features", "transform_label"]
    default_inputs = sigs["serving_default"].structured_input_signature[1]
    assert list(default_inputs) == ["inputs"] and default_inputs["inputs"].dtype == tf.string
    assert {k: v.dtype for k, v in sigs["serving_raw"].structured_input_signature[1].items()} == {
        "bill_length_mm": tf.float32, "bill_depth_mm": tf.float32, "flipper_length_mm": tf.float32,
        "body_mass_g": tf.float32, "island": tf.string, "sex": tf.string}  # numbers are float32 on the wire
    assert set(sigs["serving_default"].structured_outputs) == {"classes", "scores"}
    from lamina.serving.saved_model import read_signature_defs
    assert read_signature_defs(result.pushed_model_dir)["serving_default"].method_name == CLASSIFY_METHOD


def test_transform_label_is_transform_features_label(in_process, penguins_dir):
    """What TFMA calls for the label (models/export.py): the same values as the full Transform signature's."""
    all_rows = read_csv(penguins_dir / "data" / "penguins.csv")
    dtypes = {**raw_dtypes(in_process), "species": tf.string.as_datatype_enum}  # the label rides along, as in the data
    examples = tf.constant([row_to_example(r, dtypes).SerializeToString() for r in all_rows[::8]])
    label = in_process.signatures["transform_label"](examples=examples)
    full = in_process.signatures["transform_features"](examples=examples)
    assert list(label) == ["species_xf"] and len(full) > 6
    np.testing.assert_array_equal(label["species_xf"].numpy(), full["species_xf"].numpy())
    assert sorted(set(label["species_xf"].numpy().ravel().tolist())) == [0, 1, 2]


def test_the_evaluators_cut_schema_gives_the_metrics_of_every_column_read(penguins_run, tmp_path):
    """TFMA on the run's model and eval split, with the EvaluationSchema's columns and with every column read
    (no schema, as before it): the same metrics, overall and in every slice."""
    import glob

    import tensorflow_model_analysis as tfma
    from tfx.utils import io_utils

    from lamina.pipeline.pipeline import eval_config

    spec, result = penguins_run
    pipeline_dir = spec.pipeline_root
    schema_dir = sorted(glob.glob(os.path.join(pipeline_dir, "EvaluationSchema", "evaluation_schema", "*")))[-1]
    schema = io_utils.SchemaReader().read(os.path.join(schema_dir, "schema.pbtxt"))
    assert sorted((f.name, f.HasField("shape")) for f in schema.feature) == [("island", False), ("sex", False),
                                                                             ("species", False)]
    config = eval_config(spec)
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            for threshold in metric.per_slice_thresholds:
                threshold.threshold.ClearField("change_threshold")  # no baseline model here
    model = sorted(glob.glob(os.path.join(pipeline_dir, "Trainer", "model", "*", "Format-Serving")))[-1]
    data = sorted(glob.glob(os.path.join(pipeline_dir, "CsvExampleGen", "examples", "*", "Split-eval")))[-1]
    metrics = []
    for cut in (schema, None):
        out = tfma.run_model_analysis(eval_shared_model=tfma.default_eval_shared_model(model, eval_config=config),
                                      eval_config=config, data_location=os.path.join(data, "*"), schema=cut,
                                      output_path=str(tmp_path / ("cut" if cut else "every")))
        metrics.append({key: value for key, value in out.slicing_metrics})
    assert sorted(metrics[0], key=str) == sorted(metrics[1], key=str)
    assert len(metrics[0]) >= 6  # overall, three islands, two or more sexes
    assert metrics[0] == metrics[1]


def test_raw_and_example_signatures_agree(in_process, rows, rows_with_missing):
    dtypes = raw_dtypes(in_process)
    raw = in_process.signatures["serving_raw"](**rows_to_tensors(rows, dtypes))
    examples = [row_to_example(r, dtypes).SerializeToString() for r in rows]
    ex = in_process.signatures["serving_default"](inputs=tf.constant(examples))
    np.testing.assert_allclose(raw["scores"].numpy(), ex["scores"].numpy(), rtol=0, atol=1e-6)
    assert set(c.decode() for c in raw["classes"].numpy()[0]) == CLASSES
    np.testing.assert_allclose(raw["scores"].numpy().sum(axis=1), 1.0, atol=1e-5)
    # Missing values: NaN / '' in the raw signature, an absent feature in the tf.Example.
    last = rows_with_missing[-1]
    raw_missing = in_process.signatures["serving_raw"](**rows_to_tensors([last], dtypes))["scores"].numpy()
    ex_missing = in_process.signatures["serving_default"](
        inputs=tf.constant([row_to_example(last, dtypes).SerializeToString()]))["scores"].numpy()
    np.testing.assert_allclose(raw_missing, ex_missing, rtol=0, atol=1e-6)


def test_model_runs_in_a_tf1_session(penguins_run, rows, in_process):
    """BulkInferrer loads models into a TF1 session; TFX's own Keras 3 example fails there."""
    _, result = penguins_run
    dtypes = raw_dtypes(in_process)
    examples = [row_to_example(r, dtypes).SerializeToString() for r in rows]
    expected = in_process.signatures["serving_default"](inputs=tf.constant(examples))["scores"].numpy()
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], result.pushed_model_dir)
        sig = meta.signature_def["serving_default"]
        got = sess.run(sig.outputs["scores"].name, {sig.inputs["inputs"].name: examples})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_bulk_inferrer_scored_the_eval_split(penguins_run, in_process):
    _, result = penguins_run
    logs = read_prediction_logs(result.inference_dir)
    assert len(logs) == int(result.metrics["example_count"])
    correct = 0
    for log in logs:
        example = log.classify_log.request.input.example_list.examples[0]
        classes = log.classify_log.response.result.classifications[0].classes
        expected = in_process.signatures["serving_default"](inputs=tf.constant([example.SerializeToString()]))
        np.testing.assert_allclose([c.score for c in classes], expected["scores"].numpy()[0], atol=1e-6)
        best = max(classes, key=lambda c: c.score).label
        correct += best == example.features.feature["species"].bytes_list.value[0].decode()
    assert correct / len(logs) >= 0.9


def test_grpc_predict_and_classify_match_in_process(server, in_process, rows, rows_with_missing):
    dtypes = raw_dtypes(in_process)
    expected_raw = in_process.signatures["serving_raw"](**rows_to_tensors(rows, dtypes))
    examples = [row_to_example(r, dtypes).SerializeToString() for r in rows_with_missing]
    expected_ex = in_process.signatures["serving_default"](inputs=tf.constant(examples))
    with PredictionClient(server.target) as client:
        assert client.raw_inputs("penguins") == dtypes
        got = client.predict_raw("penguins", rows)
        np.testing.assert_array_equal(got["scores"], expected_raw["scores"].numpy())
        np.testing.assert_array_equal(got["classes"], expected_raw["classes"].numpy())
        got = client.predict("penguins", rows_with_missing)
        np.testing.assert_array_equal(got["scores"], expected_ex["scores"].numpy())
        classified = client.classify("penguins", rows_with_missing)
    assert len(classified) == len(rows_with_missing)
    for i, pairs in enumerate(classified):
        labels = [l for l, _ in pairs]
        assert labels == [c.decode() for c in expected_ex["classes"].numpy()[i]]
        np.testing.assert_allclose([s for _, s in pairs], expected_ex["scores"].numpy()[i], rtol=0, atol=1e-7)


def test_official_stub_usage(server):
    """Request building as in tensorflow-serving-api's own examples: tensors by hand, plain stubs."""
    channel = grpc.insecure_channel(server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "penguins"
    request.model_spec.signature_name = "serving_raw"
    for key, value in {"bill_length_mm": [46.1], "bill_depth_mm": [13.2]}.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=tf.float32))
    for key, value in {"flipper_length_mm": [211], "body_mass_g": [4500]}.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=tf.int64))
    for key, value in {"island": ["Biscoe"], "sex": ["female"]}.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    response = stub.Predict(request, 10.0)
    scores = tf.make_ndarray(response.outputs["scores"])[0]
    classes = [c.decode() for c in tf.make_ndarray(response.outputs["classes"])[0]]
    assert classes[int(np.argmax(scores))] == "Gentoo"
    assert response.model_spec.name == "penguins" and response.model_spec.version.value > 0

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "penguins"}), 10.0)
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.model_version_status[0].version == response.model_spec.version.value
    channel.close()


def _predict_request(**inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = inputs.pop("_model", "penguins")
    request.model_spec.signature_name = inputs.pop("_signature", "serving_raw")
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(v)
    return request


GOOD = {
    "bill_length_mm": tf.make_tensor_proto([39.1], dtype=tf.float32),
    "bill_depth_mm": tf.make_tensor_proto([18.7], dtype=tf.float32),
    "flipper_length_mm": tf.make_tensor_proto([181], dtype=tf.int64),
    "body_mass_g": tf.make_tensor_proto([3750], dtype=tf.int64),
    "island": tf.make_tensor_proto(["Torgersen"]),
    "sex": tf.make_tensor_proto(["male"]),
}


@pytest.mark.parametrize("change, code, message", [
    ({"_model": "walrus"}, grpc.StatusCode.NOT_FOUND, "Model 'walrus' not found; serving: penguins."),
    ({"_signature": "nope"}, grpc.StatusCode.NOT_FOUND,
     "Serving signature key 'nope' not found in model 'penguins' version {version}; available signatures: "
     "serving_default, serving_raw, transform_features, transform_label."),
    ({"bill_length_mm": tf.make_tensor_proto(["long"])}, grpc.StatusCode.INVALID_ARGUMENT,
     "Input 'bill_length_mm' has dtype DT_STRING; signature 'serving_raw' expects DT_FLOAT."),
    ({"bill_length_mm": tf.make_tensor_proto([[39.1]], dtype=tf.float32)}, grpc.StatusCode.INVALID_ARGUMENT,
     "Input 'bill_length_mm' has shape [1, 1]; signature 'serving_raw' expects [None] (None: any size)."),
    ({"sex": None}, grpc.StatusCode.INVALID_ARGUMENT,
     "Missing input 'sex' for signature 'serving_raw'; expected inputs: bill_depth_mm, bill_length_mm, "
     "body_mass_g, flipper_length_mm, island, sex."),
    ({"wings": tf.make_tensor_proto([2])}, grpc.StatusCode.INVALID_ARGUMENT,
     "Unknown input 'wings' for signature 'serving_raw'; expected inputs: bill_depth_mm, bill_length_mm, "
     "body_mass_g, flipper_length_mm, island, sex."),
    ({"island": tf.make_tensor_proto(["Biscoe", "Dream"])}, grpc.StatusCode.INVALID_ARGUMENT,
     "Inputs have different batch sizes: {'bill_depth_mm': 1, 'bill_length_mm': 1, 'body_mass_g': 1, "
     "'flipper_length_mm': 1, 'island': 2, 'sex': 1}."),
], ids=["unknown_model", "unknown_signature", "wrong_dtype", "wrong_shape", "missing_feature", "extra_feature",
        "ragged_batch"])
def test_bad_requests_get_clear_errors_and_server_stays_up(server, change, code, message):
    inputs = dict(GOOD)
    for k, v in change.items():
        if v is None:
            inputs.pop(k)
        else:
            inputs[k] = v
    version = server.registry.get("penguins").version
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(_predict_request(**inputs), 10.0)
        assert info.value.code() == code
        assert info.value.details() == message.replace("{version}", str(version))
        ok = stub.Predict(_predict_request(**GOOD), 10.0)  # still serving
        assert tf.make_ndarray(ok.outputs["scores"]).shape == (1, 3)


def test_a_bad_example_gets_invalid_argument_naming_the_feature(server):
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "penguins"
        example = request.input.example_list.examples.add()
        example.features.feature["bill_length_mm"].bytes_list.value.append(b"long")
        with pytest.raises(grpc.RpcError) as info:
            stub.Classify(request, 10.0)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == ("Model 'penguins' rejected the input: Key: bill_length_mm, Index: 0.  "
                                        "Data types don't match. Expected type: float, Actual type: string")
        fixed = request.input.example_list.examples[0].features.feature["bill_length_mm"]
        fixed.Clear()
        fixed.float_list.value.append(40.0)
        # The other features are absent: each takes Transform's imputation (island was never missing in
        # training, and is still not required), so the answer is the one for NaN / '' on serving_raw.
        imputed = stub.Classify(request, 10.0).result.classifications[0].classes
        assert len(imputed) == 3 and abs(sum(c.score for c in imputed) - 1.0) < 1e-5
        raw = predict_pb2.PredictRequest()
        raw.model_spec.name = "penguins"
        raw.model_spec.signature_name = "serving_raw"
        for key in ("bill_depth_mm", "flipper_length_mm", "body_mass_g"):
            raw.inputs[key].CopyFrom(tf.make_tensor_proto([float("nan")], dtype=tf.float32))
        raw.inputs["bill_length_mm"].CopyFrom(tf.make_tensor_proto([40.0], dtype=tf.float32))
        for key in ("island", "sex"):
            raw.inputs[key].CopyFrom(tf.make_tensor_proto([""]))
        scores = tf.make_ndarray(stub.Predict(raw, 10.0).outputs["scores"])[0]
        np.testing.assert_allclose([c.score for c in imputed], scores, atol=1e-6)
        request.input.example_list.examples[0].features.feature["island"].bytes_list.value.append(b"Dream")
        assert len(stub.Classify(request, 10.0).result.classifications[0].classes) == 3


def test_oversize_requests_are_refused_and_the_server_stays_up(penguins_run):
    from lamina.serving.server import LaminaServer

    spec, _ = penguins_run
    small = LaminaServer(spec.push_dir, port=0, max_request_bytes=4096).start()
    try:
        with grpc.insecure_channel(small.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            huge = dict(GOOD, island=tf.make_tensor_proto(["x" * 10_000]))
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(_predict_request(**huge), 10.0)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "Received message larger than max" in info.value.details()
            assert tf.make_ndarray(stub.Predict(_predict_request(**GOOD), 10.0).outputs["scores"]).shape == (1, 3)
    finally:
        small.stop()


def test_classify_rejects_a_signature_that_is_not_for_classification(server):
    with grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "penguins"
        request.model_spec.signature_name = "serving_raw"
        request.input.example_list.examples.add()
        with pytest.raises(grpc.RpcError) as info:
            stub.Classify(request, 10.0)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == ("Signature 'serving_raw' of model 'penguins' has method "
                                        "'tensorflow/serving/predict'; Classify needs 'tensorflow/serving/classify'.")


def test_cli_predict_prints_classes(server, penguins_dir, rows, capsys):
    import json

    from lamina.pipeline.cli.commands import main

    path = penguins_dir / "query.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:3]))
    assert main(["predict", str(path), "--target", server.target, "--model", "penguins"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["class"] for o in out] == ["Adelie", "Adelie", "Adelie"]
    assert main(["predict", str(path), "--target", server.target, "--model", "walrus"]) == 1
    assert capsys.readouterr().err.strip() == f"{server.target}: NOT_FOUND: Model 'walrus' not found; serving: penguins."


def test_a_broken_push_is_skipped_and_the_previous_version_keeps_serving(server, rows):
    current = server.registry.get("penguins")
    broken = os.path.join(os.path.dirname(current.path), str(current.version + 1))
    os.makedirs(os.path.join(broken, "variables"))
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
        f.write(b"\x00 not a SavedModel")
    with open(os.path.join(broken, "variables", "variables.index"), "wb") as f:
        f.write(b"")
    try:
        server.registry.refresh()
        assert server.registry.get("penguins").version == current.version
        assert any(e.startswith(f"skipped penguins version {current.version + 1} at {broken}:")
                   for e in server.registry.events)
        with PredictionClient(server.target) as client:
            out = client.predict("penguins", rows[:1])
        assert out["scores"].shape == (1, 3)
    finally:
        import shutil
        shutil.rmtree(broken)


def test_tflite_files_take_transformed_inputs_the_input_spec_describes(penguins_run, in_process, rows_with_missing,
                                                                       capsys, tmp_path):
    import json

    from lamina.models.tflite import predict_rows
    from lamina.pipeline.cli.commands import main

    spec, result = penguins_run
    folder = os.path.join(result.pushed_model_dir, "assets.extra", "lamina", "tflite")
    inputs = {i["name"]: i for i in json.load(open(os.path.join(folder, "input_spec.json")))["inputs"]}
    # The z-score's constants, read off the Transform graph: the training split's mean and spread.
    assert 40 < inputs["bill_length_mm"]["mean"] < 48 and 4 < inputs["bill_length_mm"]["std"] < 7
    assert 3900 < inputs["body_mass_g"]["mean"] < 4500
    assert sorted(open(os.path.join(folder, inputs["island"]["vocabulary"])).read().split()) == [
        "Biscoe", "Dream", "Torgersen"]
    # The float file answers as the SavedModel does, missing values included.
    dtypes = raw_dtypes(in_process)
    expected = in_process.signatures["serving_raw"](**rows_to_tensors(rows_with_missing, dtypes))["scores"].numpy()
    got = predict_rows(os.path.join(folder, "model_float.tflite"), rows_with_missing)
    classes = [c.decode() for c in in_process.signatures["serving_raw"](
        **rows_to_tensors(rows_with_missing[:1], dtypes))["classes"].numpy()[0]]
    np.testing.assert_allclose([[g["scores"][c] for c in classes] for g in got], expected, atol=1e-5)
    # From the command line, on a CSV of rows; a number that is not one names the row and the column.
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows_with_missing))
    assert main(["predict", str(path), "--tflite", os.path.join(folder, "model_int8.tflite")]) == 0
    answers = [json.loads(line)["class"] for line in capsys.readouterr().out.splitlines()]
    assert answers[:7] == [classes[i] for i in expected[:7].argmax(axis=1)]
    path.write_text(json.dumps(dict(rows_with_missing[0], bill_length_mm="long")))
    assert main(["predict", str(path), "--tflite", os.path.join(folder, "model_float.tflite")]) == 2
    assert capsys.readouterr().err.strip().endswith("row 1: column 'bill_length_mm' is numeric; received 'long'")


def test_lamina_report_writes_the_page_again_from_ml_metadata(penguins_run, capsys, tmp_path):
    from lamina.pipeline.cli.commands import main

    spec, result = penguins_run
    before = open(result.report).read()
    os.remove(result.report)
    assert main(["report", spec.run_dir]) == 0
    assert capsys.readouterr().out.strip() == result.report
    after = open(result.report).read()
    # The same sections from the same run: only the time it was written differs.
    strip = lambda page: page.split("</nav>", 1)[1]  # noqa: E731
    assert strip(after).count('data-plot="histogram"') == strip(before).count('data-plot="histogram"') == 7
    assert 'data-plot="confusion"' in after and "<tr><td>int8<td class=num>" in after
    assert main(["report", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (f"{tmp_path}: not a run directory (expected metadata.sqlite and "
                                               f"resolved_spec.yaml, as `lamina run` writes them)")


def test_explanations_are_complete_cover_every_class_and_are_recorded_against_the_model(penguins_run):
    import json

    from ml_metadata.proto import metadata_store_pb2

    from lamina.pipeline.runs.summary import latest_run_outputs, open_store

    spec, result = penguins_run
    record = json.load(open(os.path.join(result.explanations_dir, "explanations.json")))
    assert record["task"] == "classification" and record["baseline"] == "zeros"
    assert len(record["examples"]) == spec.explain.samples == 8
    assert {e["label"] for e in record["examples"]} == CLASSES  # a sample of every species, not the first rows
    assert sorted(r["feature"] for r in record["tabular"]) == sorted(
        ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "island", "sex"])
    for e in record["examples"]:  # completeness, example by example
        assert sum(e["attributions"].values()) == pytest.approx(e["score"] - e["baseline_score"], rel=0.01, abs=1e-4)
    assert record["completeness_error"] < 0.01
    # In ML Metadata the explanations are an output of the Explainer, whose input is the Trainer's model.
    outputs = latest_run_outputs(spec)
    store = open_store(spec, readonly=True)
    explanations, model = outputs[("Explainer", "explanations")], outputs[("Trainer", "model")]
    produced_by = [e.execution_id for e in store.get_events_by_artifact_ids([explanations.id])
                   if e.type == metadata_store_pb2.Event.OUTPUT]
    inputs = {e.artifact_id for e in store.get_events_by_execution_ids(produced_by)
              if e.type == metadata_store_pb2.Event.INPUT}
    assert model.id in inputs
    assert store.get_artifact_types_by_id([explanations.type_id])[0].name == "lamina.Explanations"


def test_lamina_explain_on_the_pushed_model_explains_raw_rows(penguins_run, in_process, rows_with_missing, tmp_path,
                                                              capsys):
    import json

    from lamina.pipeline.cli.commands import main

    _, result = penguins_run
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows_with_missing))
    out = tmp_path / "why"
    assert main(["explain", str(path), "--model", result.pushed_model_dir, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    record = json.load(open(out / "explanations.json"))
    dtypes = raw_dtypes(in_process)
    served = in_process.signatures["serving_raw"](**rows_to_tensors(rows_with_missing, dtypes))
    classes = [c.decode() for c in served["classes"].numpy()[0]]
    expected = [classes[i] for i in served["scores"].numpy().argmax(axis=1)]
    assert [e["predicted"] for e in record["examples"]] == expected
    np.testing.assert_allclose([e["score"] for e in record["examples"]], served["scores"].numpy().max(axis=1),
                               atol=1e-5)
    for e in record["examples"]:
        assert sum(e["attributions"].values()) == pytest.approx(e["score"] - e["baseline_score"], rel=0.01, abs=1e-4)
    assert printed[0].startswith(f"row 1: {expected[0]} (score ")
    top = max(record["examples"][0]["attributions"].items(), key=lambda kv: abs(kv[1]))
    assert printed[1].split() == [f"{top[1]:+.4f}", top[0]]
    assert printed[-1] == f"explanations: {out / 'explanations.json'}"
    assert main(["explain", str(path), "--model", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"{tmp_path}: no saved_model.pb; --model takes a pushed version "
                                               f"folder (<push dir>/<name>/<version>)")


def evaluator_baselines(spec):
    """The URIs of the baseline models the newest run's Evaluator was given (its `baseline_model` input)."""
    from ml_metadata.proto import metadata_store_pb2

    from lamina.pipeline.runs.metadata import latest_run
    from lamina.pipeline.runs.summary import open_store

    store = open_store(spec)
    run = latest_run(store, spec.name)
    evaluator = [i for i, name in run.component_of.items() if name == "Evaluator"]
    events = [e for e in store.get_events_by_execution_ids(evaluator) if e.type == metadata_store_pb2.Event.INPUT
              and e.path.steps and e.path.steps[0].key == "baseline_model"]
    return [a.uri for a in store.get_artifacts_by_id([e.artifact_id for e in events])]


def test_rerun_is_cached_and_a_second_push_is_served(penguins_run, server, rows, capsys):
    spec, first = penguins_run
    # Same spec, same data: every component comes from the cache. The Evaluator's baseline leaves out the
    # candidate (the model the first run pushed), so it is what the first run had, and nothing downstream runs.
    rerun = run_pipeline(spec)
    states = latest_run_states(spec)
    # A resolver is not an execution TFX caches: it resolves afresh every run, in milliseconds.
    assert {name: state for name, state in states.items() if state != "CACHED"} == {
        "LatestBlessedModelResolver": "COMPLETE"}
    assert {"Trainer", "Evaluator", "PushGate", "Explainer", "TFLiteExporter", "Pusher"} <= set(states)
    assert rerun.model_dir == first.model_dir
    assert rerun.pushed_model_dir == first.pushed_model_dir

    # A changed training section retrains and pushes a new version; the running server switches to it.
    changed = make_spec(spec.base_dir, training={"epochs": 12, "seed": 7}, inference={"enabled": False})
    second = run_pipeline(changed)
    assert latest_run_states(changed)["Trainer"] == "COMPLETE"
    # Its baseline is the model the first run pushed.
    assert evaluator_baselines(changed) == [first.model_dir.rsplit("/Format-Serving", 1)[0]]
    new_version = int(os.path.basename(second.pushed_model_dir))
    assert new_version > int(os.path.basename(first.pushed_model_dir))
    # The server's poller (every 0.2 s here) loads it; nobody calls refresh() by hand.
    # Now with a baseline model in TFMA's results: the report still finds the candidate's confusion matrix.
    assert 'data-plot="confusion"' in open(second.report).read()
    assert server.registry.wait_for_version("penguins", new_version, timeout=30)
    assert server.registry.get("penguins").version == new_version
    model = tf.saved_model.load(second.pushed_model_dir)
    expected = model.signatures["serving_raw"](**rows_to_tensors(rows, raw_dtypes(model)))["scores"].numpy()
    with PredictionClient(server.target) as client:
        np.testing.assert_array_equal(client.predict_raw("penguins", rows)["scores"], expected)
        sigs = client.signature_defs("penguins")
    assert sorted(sigs) == ["serving_default", "serving_raw", "transform_features", "transform_label"]

    # `lamina runs` lists the runs, newest first, from ML Metadata: every one pushed, the newest the second push.
    from lamina.pipeline import cli
    from lamina.pipeline.runs.history import list_runs

    capsys.readouterr()  # the runs' own progress lines
    assert cli.main(["runs", os.path.dirname(spec.run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["when", "pipeline", "outcome", "metric", "version", "run"]
    runs = list_runs(os.path.dirname(spec.run_dir))
    assert len(lines) == len(runs) + 1 and len(runs) >= 3
    assert [r.outcome for r in runs] == ["pushed"] * len(runs)
    assert runs[0].version == os.path.basename(second.pushed_model_dir)
    assert runs[-1].version == os.path.basename(first.pushed_model_dir)
    assert runs[0].value == pytest.approx(second.metrics["sparse_categorical_accuracy"])
    assert lines[1].split()[2:] == ["penguins", "pushed", "sparse_categorical_accuracy",
                                    f"{second.metrics['sparse_categorical_accuracy']:.4f}", runs[0].version,
                                    runs[0].run_id]

    # Its lineage, from the run id forwards and from the served version backwards: the same lines.
    root = os.path.dirname(spec.run_dir)
    assert cli.main(["runs", "show", runs[0].run_id, "--root", root]) == 0
    forwards = capsys.readouterr().out
    model_dir, version = os.path.split(second.pushed_model_dir)
    assert cli.main(["runs", "show", "--version", version, model_dir, "--root", root]) == 0
    assert capsys.readouterr().out == forwards
    lineage = dict(line.split(None, 1) if not line.startswith(("data fingerprint", "transform graph", "key metric",
                                                                 "model spec")) else
                   (" ".join(line.split()[:2]), line.split(None, 2)[2]) for line in forwards.splitlines())
    assert lineage["data"] == str(spec.resolve(spec.data.path))
    assert lineage["data fingerprint"].startswith("split:") and "num_files:1" in lineage["data fingerprint"]
    assert lineage["transform graph"].startswith(spec.pipeline_root) and lineage["model"] == second.model_dir.rsplit(
        "/Format-Serving", 1)[0]
    assert "epochs=12" in lineage["hyperparameters"] and "seed=7" in lineage["hyperparameters"]
    assert lineage["Lamina"] == "0.1.0" and lineage["pushed"] == second.pushed_model_dir
    assert lineage["key metric"] == f"sparse_categorical_accuracy {second.metrics['sparse_categorical_accuracy']:.4f}"
